"""More devices: many plans split over the devices, and data-parallel training.

This tutorial is a notebook written as a script. Both halves of toolkit run on a
1-D `jax.sharding.Mesh` of devices, and JAX's partitioner does the splitting: a batch
of plans is split along the batch, a training batch along its examples, everything
else is replicated. The results are those of one device (up to the order of
floating-point sums), so nothing about a study changes but its wall clock.

On a CPU, ask XLA for several host devices before JAX starts:

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tutorials/more_devices.py

(with one device the script runs the same code on a mesh of one). Across processes or
hosts, call `jax.distributed.initialize(...)` first in each: the mesh of `jax.devices()`
then spans them all (README, "More devices").

`tests/test_tutorials.py` runs `main(...)` on small settings and checks the numbers.
"""

import argparse

import jax


# Planning needs float64; the network below asks for float32 explicitly.
jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import toolkit  # noqa: E402
from toolkit import control, data, nn, pruning  # noqa: E402


def main(batch: int = 16, N: int = 50, steps: int = 300) -> dict:
    toolkit.enable_compilation_cache()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    print(f"{mesh.devices.size} device(s): {jax.devices()}")

    # %% 1. Many plans at once ---------------------------------------------------------
    #
    # `plan_batch` is `jax.vmap(plan)` over the leading axis of `args_batch`, split
    # over the mesh: each device solves its share of the Van der Pol problems. Its
    # gradient (through every plan's implicit derivative) is split the same way.
    ex = control.problems.get("van_der_pol")
    transcription = control.Trapezoidal(N)
    mus = jnp.linspace(0.8, 1.2, batch)
    sol = control.plan_batch(ex.problem, transcription, args_batch={"mu": mus}, mesh=mesh)
    print(f"{batch} plans: costs {float(sol.cost.min()):.4f} .. {float(sol.cost.max()):.4f}")
    print(f"  split as {sol.cost.sharding}")

    def total_cost(m):
        return control.plan_batch(ex.problem, transcription, args_batch={"mu": m}).cost.sum()

    grad = jax.grad(total_cost)(mus)

    # %% 2. Data-parallel training ----------------------------------------------------
    #
    # `pruning.train(..., mesh=mesh)` splits every batch over the mesh and replicates
    # the network, its BatchNorm state and the optimiser state. The loss, BatchNorm's
    # statistics and DemP's dead-unit statistics are reductions over the global batch,
    # so every device makes the same prunes. The batch size must be a multiple of the
    # number of devices.
    dataset = data.load("digits")
    model, state = eqx.nn.make_with_state(nn.MLP)(
        64, 10, (64, 64), batch_norm=True, key=jr.key(0, impl="rbg"), dtype=jnp.float32
    )
    settings = dict(
        optimiser=optax.adamw(5e-3, weight_decay=5e-4),
        steps=steps,
        batch_size=64,
        key=jr.key(1, impl="rbg"),
        eval_every=steps // 3,
        progress=False,
    )
    # A strong penalty and noise, so that this short run prunes (the defaults follow
    # the DemP authors' recipe for long runs).
    method = pruning.DemP(reg=0.3, noise=5e-3, prune_every=50)
    with jax.numpy_dtype_promotion("standard"):
        trained, _, history = pruning.train(model, state, dataset, method, mesh=mesh, **settings)
    last = history["evaluations"][-1]
    print(
        f"DemP on {history['mesh']['devices']} device(s): accuracy {last['test_accuracy']:.4f}, "
        f"widths {pruning.widths(trained)}"
    )
    return {
        "devices": int(mesh.devices.size),
        "costs": np.asarray(sol.cost).tolist(),
        "converged": bool(np.all(np.asarray(sol.result == control.RESULTS.successful))),
        "grad": np.asarray(grad).tolist(),
        "accuracy": last["test_accuracy"],
        "widths": pruning.widths(trained),
        "prunes": history["prunes"],
        "mesh": history["mesh"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="plans in the batch")
    parser.add_argument("--N", type=int, default=100, help="intervals of each plan")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    opts = parser.parse_args()
    main(batch=opts.batch, N=opts.N, steps=opts.steps)
