"""Many plans at once: `jax.vmap` of a plan over a batch of parameter sets, split
along the batch over a mesh of devices by `jax.jit`'s partitioner, or on one CPU
device over its cores by host threads."""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import Array, Float, PyTree

from .._jit import filter_jit
from .._mesh import one_launch_at_a_time
from ._plan import _plan, check_traced_args, report_out_of_range
from ._planner.base import AbstractPlanner
from ._planner.memo import tuned
from ._planner.presets import KKTNewton
from ._problem import OptimalControlProblem
from ._results import raise_if_failed, RESULTS
from ._solution import Solution
from ._transcription.base import AbstractTranscription


def plan_batch(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner = KKTNewton(),
    *,
    args_batch: PyTree[Array] = None,
    x0_batch: Float[Array, "batch nx"] | None = None,
    mesh: Mesh | None = None,
    adjoint: optx.AbstractAdjoint | None = None,
    throw: bool = True,
    chunk: int | Literal["auto"] | None = "auto",
    workers: int | Literal["auto"] = "auto",
) -> Solution:
    """Plan many parameter sets at once: `jax.vmap` of [`toolkit.control.plan`][]
    over the leading axis of `args_batch` (and/or `x0_batch`), split along that axis
    over a 1-D mesh of devices.

    The batch is placed with a `NamedSharding` along the mesh axis and the vmapped
    plan compiled once by `jax.jit`, whose partitioner gives each device its slice;
    the devices only agree, at each iteration, on whether any element still runs, and
    every element is the same plan as `jax.vmap(plan)` gives it. On one device with
    `mesh=None` this *is* the compiled `jax.vmap(plan)`, with no sharding at all. Under
    `jax.distributed.initialize` the default mesh holds every process's devices, so
    the batch is split across processes too; every process calls `plan_batch` with
    the same global batch, and the outputs are global arrays (gather them with
    `jax.experimental.multihost_utils.process_allgather`). To differentiate there,
    pass the batch as a global array (`jax.make_array_from_callback` with the mesh's
    `NamedSharding`): a process-local one cannot take back a global gradient.

    On one device the batch runs in chunks of `chunk` elements: `jax.lax.map` over
    chunks, each chunk one `jax.vmap(plan)`. Every element is the same plan either way;
    what changes is the work. A vmapped plan iterates until its slowest element
    finishes, and on a CPU its vectorised arrays outgrow the caches: 64 Van der Pol
    plans at N = 1000 took 473 ms in chunks of 8 against 529 ms in one vmap, in one
    call (one process, interleaved; in another, chunks of 16 / 8 / 4 took 413 / 422 /
    482 ms). When chunking was introduced the gap was about 2x; the planner's
    kernels have changed since. With a mesh each device runs its slice as one vmap.

    On a CPU the batch also runs in `workers` parts side by side: XLA runs a program
    on the thread that calls it, spreading only some of its operations over the
    other cores, so each part (a whole number of chunks, the last padded with copies
    of the last element) is the same compiled program called from its own host
    thread. The first call compiles that program on the first part alone, then runs
    the others at once. Every element is the same plan as with `workers=1`. A batch
    traced inside your own transformation (`jax.jit`, `jax.grad`, ...) is one
    program whatever `workers` says. On the 2-core benchmark machine, 64 Van der Pol
    plans at N = 1000 took 263-283 ms in two parts against 419-423 ms in one call,
    for about 1.2x the CPU time (two runs of benchmarks/control_vs_ipopt.py; the
    latest is in benchmarks/README.md).

    A batch whose size the number of devices does not divide is padded with copies of
    its last element, and the outputs are trimmed back to the batch size (JAX splits
    arrays only evenly, so trimmed outputs are no longer split along the batch).

    Gradients (`jax.grad`, `jax.jacfwd`) w.r.t. `args_batch`, `x0_batch` or arrays of
    the problem come from the implicit function theorem, element by element, as for
    `plan`.

    **Arguments:**

    - `problem`: the [`toolkit.control.OptimalControlProblem`][].
    - `transcription`: e.g. `Trapezoidal(100)`; the same for every element.
    - `solver`: the planner, [`toolkit.control.KKTNewton`][] (default) or
        [`toolkit.control.KKTLeastSquares`][].
    - `args_batch`: the parameters, each leaf with a leading batch axis: element `i`
        is `jax.tree.map(lambda a: a[i], args_batch)`. `None` when only `x0_batch`
        varies (the problem then gets `args=None`).
    - `x0_batch`: `(batch, nx)` initial states, one per element; default
        `problem.x0` for all.
    - `mesh`: a 1-D `jax.sharding.Mesh` to split the batch over; default all devices
        (`jax.devices()`).
    - `adjoint`: how to differentiate each solve, as for `plan`.
    - `throw`: raise `equinox.EquinoxRuntimeError` with the reason if any element
        fails (default); if `False`, report it in that element's `Solution.result`
        instead.
    - `chunk`: on one device, the elements planned together: a positive int, `None`
        for the whole batch in one vmap, or `"auto"` (default): 8 on a CPU, the whole
        batch on an accelerator, whose parallelism a larger vmap feeds. A batch
        that `chunk` does not divide is padded with copies of its last element.
    - `workers`: on one device, the parts of the batch run side by side, each from
        its own host thread (at most one per chunk): a positive int, or `"auto"`
        (default): one per core this process may use on a CPU, 1 on an accelerator.

    **Returns:**

    A [`toolkit.control.Solution`][] whose every array has the leading batch axis,
    split along it over `mesh` (when the batch size is a multiple of its size).
    """
    _batch_size(args_batch, x0_batch)
    out_of_range = None
    if problem.args_check is not None and args_batch is not None:
        args_batch, out_of_range = _check_args(problem, args_batch, throw)
    solver = tuned(solver, problem.x0.dtype)
    if mesh is None and jax.device_count() > 1:
        mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    if mesh is None:
        size = _chunk_size(chunk)
        n = _batch_size(args_batch, x0_batch)
        chunks = 1 if size is None or size >= n else -(-n // size)
        parts = _parts(workers, chunks)
        inputs = (problem, transcription, solver, adjoint)
        if parts > 1 and not _traced((inputs, args_batch, x0_batch)):
            sol = _in_parts(inputs, args_batch, x0_batch, size, parts)
        else:
            sol = _on_device(inputs, args_batch, x0_batch, size)
    else:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"`mesh` must be 1-D (one axis to split the batch along), got axes "
                f"{mesh.axis_names}."
            )
        sol = _sharded_plan(problem, transcription, solver, adjoint, args_batch, x0_batch, mesh)
    sol = report_out_of_range(sol, out_of_range)
    if throw:
        sol = raise_if_failed(sol, _gathered(sol.result))
    return sol


def _chunk_size(chunk: int | str | None) -> int | None:
    if chunk == "auto":
        return 8 if jax.devices()[0].platform == "cpu" else None
    if chunk is None:
        return None
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f'`chunk` must be a positive int, None or "auto", got {chunk!r}.')
    return chunk


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _parts(workers: int | str, chunks: int) -> int:
    """How many parts of the batch run at once: at most one per chunk."""
    if workers == "auto":
        workers = _cores() if jax.devices()[0].platform == "cpu" else 1
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f'`workers` must be a positive int or "auto", got {workers!r}.')
    return min(workers, chunks)


def _traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _program(inputs, args_batch, x0_batch, chunk: int | None):
    """The program that plans a batch on the device (one vmap, or chunks of `chunk`
    elements), and its arguments."""
    batch = (args_batch, x0_batch)
    if chunk is None or chunk >= _batch_size(*batch):
        return _vmap_plan, (*inputs, *batch)
    return _chunked_plan, (*inputs, *batch, chunk)


def _on_device(inputs, args_batch, x0_batch, chunk: int | None) -> Solution:
    fn, args = _program(inputs, args_batch, x0_batch, chunk)
    return fn(*args)


def _in_parts(inputs, args_batch, x0_batch, chunk: int, parts: int) -> Solution:
    """The batch in `parts` equal parts, each a whole number of chunks (the last padded
    with copies of the batch's last element), run side by side from host threads:
    every part is the same compiled program, and XLA runs each call on the thread
    that makes it."""
    size = _batch_size(args_batch, x0_batch)
    chunks = -(-size // chunk)
    per = -(-chunks // parts) * chunk
    batch = (args_batch, x0_batch)
    pad = per * parts - size
    if pad:
        batch = _padded(batch, pad)
    pieces = [jax.tree.map(lambda x: x[i * per : (i + 1) * per], batch) for i in range(parts)]

    def run(piece):
        return _on_device(inputs, *piece, chunk)

    sols = []
    fn, args = _program(inputs, *pieces[0], chunk)
    if not fn.has_program(*args):
        # The first call compiles the program: alone, not once per thread.
        sols.append(run(pieces[0]))
        pieces = pieces[1:]
    with ThreadPoolExecutor(len(pieces)) as pool:
        sols += list(pool.map(run, pieces))

    def join(*xs):
        return jnp.concatenate(xs)[:size] if eqx.is_array(xs[0]) else xs[0]

    return jax.tree.map(join, *sols)


def _padded(batch, pad: int):
    """Every leaf of `batch` with `pad` copies of its last element appended."""
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), batch)


def _batch_size(args_batch: PyTree[Array], x0_batch: Array | None) -> int:
    leaves = jax.tree.leaves((args_batch, x0_batch))
    if not leaves:
        raise ValueError("give `args_batch` or `x0_batch`: the batch to plan.")
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [jnp.shape(leaf) for leaf in leaves]
        raise ValueError(
            "every leaf of `args_batch` and `x0_batch` needs the same leading batch "
            f"axis, got shapes {shapes}."
        )
    return sizes.pop()


def _check_args(
    problem: OptimalControlProblem, args_batch: PyTree[Array], throw: bool
) -> tuple[PyTree[Array], Array | None]:
    """`problem.args_check` on every element: on the host for a concrete batch (so the
    compiled plan holds no host callback), in the user's program for a traced one
    (as `plan` does, with `throw=False` as a verdict for the result)."""
    check = problem.args_check
    assert check is not None
    leaves = jax.tree.leaves(args_batch)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return check_traced_args(check, args_batch, throw, vmapped=True)
    host = jax.tree.map(_on_host, args_batch)
    for i in range(_batch_size(host, None)):
        try:
            check(jax.tree.map(lambda a: a[i], host))
        except ValueError as e:
            raise ValueError(f"`args_batch` element {i}: {e}") from None
    return args_batch, None


def _on_host(x) -> np.ndarray:
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    # Under `jax.distributed` every process calls `plan_batch` with the same batch.
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _one(problem, transcription, solver, adjoint, args, x0) -> Solution:
    if x0 is not None:
        problem = eqx.tree_at(lambda p: p.x0, problem, x0)
    return _plan(problem, transcription, solver, args, None, adjoint, True)


def _vmapped(problem, transcription, solver, adjoint, args_batch, x0_batch) -> Solution:
    in_axes = (None, None, None, None, 0, None if x0_batch is None else 0)
    return jax.vmap(_one, in_axes=in_axes)(
        problem, transcription, solver, adjoint, args_batch, x0_batch
    )


_vmap_plan = filter_jit(_vmapped, planner=True)


@filter_jit(planner=True)
def _chunked_plan(problem, transcription, solver, adjoint, args_batch, x0_batch, chunk: int):
    size = _batch_size(args_batch, x0_batch)
    pad = -size % chunk
    batch = (args_batch, x0_batch)
    if pad:
        batch = _padded(batch, pad)

    def one(element):
        return _one(problem, transcription, solver, adjoint, *element)

    # A scan over the chunks, each chunk `jax.vmap(one)`.
    sol = jax.lax.map(one, batch, batch_size=chunk)
    return jax.tree.map(lambda a: a[:size], sol) if pad else sol


def _sharded_plan(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    adjoint: optx.AbstractAdjoint | None,
    args_batch: PyTree[Array],
    x0_batch: Array | None,
    mesh: Mesh,
) -> Solution:
    # A JAX array is split evenly or not at all: pad the batch to a multiple of the
    # number of devices with copies of its last element (a plan known to be valid).
    size = _batch_size(args_batch, x0_batch)
    pad = -size % mesh.size
    split = NamedSharding(mesh, P(*mesh.axis_names))

    def place(x):
        if pad:
            x = _padded(x, pad)
        return jax.device_put(x, split)

    batch = jax.tree.map(place, (args_batch, x0_batch))
    dynamic, static = eqx.partition((problem, transcription, solver, adjoint), eqx.is_array)
    dynamic = jax.device_put(dynamic, NamedSharding(mesh, P()))
    sol = _partitioned(dynamic, static, batch, split)
    if one_launch_at_a_time(mesh):
        jax.block_until_ready(sol)
    if pad:
        sol = jax.tree.map(lambda a: a[:size], sol)
    return sol


@filter_jit(planner=True)
def _partitioned(dynamic, static, batch, split: NamedSharding) -> Solution:
    # One program over the whole batch, split along its axis by XLA's partitioner:
    # each device runs the vmapped plan on its slice; the devices only agree, at each
    # Newton iteration, on whether any element still runs.
    problem, transcription, solver, adjoint = eqx.combine(dynamic, static)
    batch = jax.lax.with_sharding_constraint(batch, split)
    sol = _vmapped(problem, transcription, solver, adjoint, *batch)
    return jax.lax.with_sharding_constraint(sol, split)


def _gathered(result: RESULTS) -> RESULTS:
    """`result` readable on this process: under `jax.distributed`, the other
    processes' elements too."""
    value = result._value  # pyright: ignore
    if isinstance(value, jax.core.Tracer) or value.is_fully_addressable:
        return result
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(value, tiled=True)
    return eqx.tree_at(lambda r: r._value, result, jnp.asarray(gathered))
