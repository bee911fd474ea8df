"""What a mesh of devices needs from the code that launches programs on it."""

import jax
from jax.sharding import Mesh


def one_launch_at_a_time(mesh: Mesh) -> bool:
    """Whether programs on `mesh` must run one at a time: true when this process
    drives several of its CPU devices (`--xla_force_host_platform_device_count`).

    XLA:CPU runs every local device's share of a program on one thread pool with a
    thread per core. With two programs in flight, each thread can end up waiting in a
    collective for a device that has no thread left, and XLA aborts the process when
    its collective times out. Callers wait for each program before dispatching the
    next.
    """
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    return len(local) > 1 and local[0].platform == "cpu"
