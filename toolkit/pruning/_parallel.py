"""Data-parallel training: each batch split along its leading axis over a 1-D mesh of
devices, everything else replicated, and `jax.jit`'s partitioner doing the rest."""

from typing import Any

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import PyTree

from .._mesh import one_launch_at_a_time
from ._buckets import on_device


class DataParallel:
    """Where [`toolkit.pruning.train`][] puts its arrays on a 1-D `mesh`.

    Training batches are split along their leading axis over the mesh; the network,
    its BatchNorm state, the optimiser state and the activity statistics are
    replicated. The jitted steps are then partitioned by `jax.jit`: every reduction
    over the batch (the loss, BatchNorm's statistics, which units fired) is one over
    the global batch, so every device holds the same network and every process makes
    the same prune, whatever the number of devices (up to the order of floating-point
    sums). Under `jax.distributed.initialize` the mesh spans every process's devices:
    each process computes the same global batch (from the same key) and places its
    own devices' slices of it.

    `one_launch_at_a_time` is true when this process drives several CPU devices
    (`--xla_force_host_platform_device_count`): `train` then waits for each step
    before it dispatches the next, since XLA:CPU can deadlock with two such
    programs in flight.

    **Arguments:**

    - `mesh`: a 1-D `jax.sharding.Mesh`.
    """

    def __init__(self, mesh: Mesh):
        if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
            raise ValueError(
                "`mesh` must be a 1-D jax.sharding.Mesh, such as "
                "Mesh(jax.devices(), ('data',)), got "
                f"{getattr(mesh, 'axis_names', type(mesh).__name__)!r}."
            )
        self.mesh = mesh
        self.size = mesh.devices.size
        (self.axis,) = mesh.axis_names
        self.split = NamedSharding(mesh, P(self.axis))
        self.replicated = NamedSharding(mesh, P())
        self.one_launch_at_a_time = one_launch_at_a_time(mesh)

    def describe(self) -> dict[str, Any]:
        """The mesh, for the training log."""
        return {
            "axis": self.axis,
            "devices": int(self.size),
            "processes": len({d.process_index for d in self.mesh.devices.flat}),
            "platform": self.mesh.devices.flat[0].platform,
        }

    def check_batch(self, batch_size: int, what: str = "`batch_size`") -> None:
        if batch_size % self.size:
            raise ValueError(
                f"{what}={batch_size} is not a multiple of the {self.size} devices of the "
                "mesh: every device takes an equal slice of each batch."
            )

    def _global(self, x: Any, sharding: NamedSharding) -> jax.Array:
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = self._global(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def batch(self, *arrays: Any) -> tuple[jax.Array, ...]:
        """Host arrays of one global batch, split along their leading axis; replicated
        if the mesh does not divide it (a prune check's examples, say)."""
        out = []
        for x in arrays:
            divides = np.ndim(x) > 0 and np.shape(x)[0] % self.size == 0
            out.append(self._global(x, self.split if divides else self.replicated))
        return tuple(out)

    def replicate(self, tree: PyTree) -> PyTree:
        """`tree` with every array replicated over the mesh."""
        dynamic, static = eqx.partition(tree, eqx.is_array)
        dynamic = jtu.tree_map(lambda x: self._global(x, self.replicated), dynamic)
        return eqx.combine(dynamic, static)


def writes(parallel: "DataParallel | None") -> bool:
    """Whether this process writes logs and checkpoints: process 0 only."""
    return parallel is None or jax.process_index() == 0


class Placement:
    """Where a training run puts its arrays: on the default device, or over the
    devices of a [`toolkit.pruning.DataParallel`][] mesh (`None` for the former)."""

    def __init__(self, parallel: DataParallel | None):
        self.parallel = parallel

    def batch(self, *arrays: Any) -> tuple[jax.Array, ...]:
        """Host arrays of one batch, on the device or split over the mesh."""
        if self.parallel is None:
            return tuple(jax.numpy.asarray(a) for a in arrays)
        return self.parallel.batch(*arrays)

    def replicate(self, tree: PyTree) -> PyTree:
        """`tree` with its arrays on every device of the mesh (unchanged without one)."""
        return tree if self.parallel is None else self.parallel.replicate(tree)

    def alive(self, alive: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """The host masks of the units not masked, as arrays of the steps' carry."""
        if self.parallel is None:
            return on_device(alive)
        return self.parallel.replicate(dict(alive))
