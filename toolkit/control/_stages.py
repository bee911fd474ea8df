"""The pieces of a plan shared by its two ways of running.

Under a user's `jax.jit` or `jax.vmap`, a plan is one program (`_plan`). Called
eagerly, it runs in stages, each its own compiled program: a semismooth Newton pass
from the starting point, and only if that pass fails, the interior-point fallback and
a second Newton pass (the same program as the first). Most plans never compile the
fallback, which is about half of the one-program plan's compile time.

Under an eager `jax.grad`, `jax.jvp` or `jax.vjp` (autodiff, and nothing else, over
concrete values; `jax.hessian` and `jax.jacfwd` add `vmap`) the stages find the root
on the inputs' values, and one more program attaches the implicit derivative at that
root: only the residual's linearisation and the KKT solve are differentiated, never
the iterations or the fallback, so that program compiles several times faster than
the one-program plan's derivative.
"""

import dataclasses
import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Int, PyTree

from .._jit import filter_jit
from ._block_tridiagonal import for_user_program, with_column_reach
from ._kkt import KKTResidual
from ._nlp import push_into_box
from ._planner.at_root import attach_at_root
from ._planner.base import AbstractLimitedPlanner, AbstractPlanner
from ._planner.fallback import Fallback
from ._planner.frozen import freeze
from ._planner.implicit_adjoint import ImplicitAdjointWithoutCallback
from ._planner.memo import composition
from ._problem import OptimalControlProblem
from ._results import RESULTS
from ._solution import Solution
from ._transcription.base import AbstractTranscription
from ._value import optimal_cost


try:
    # Whether no JAX transformation is being traced; a closure over a traced value (a
    # problem built inside the user's `jax.grad`) leaves no tracer among the inputs.
    from jax._src.core import EvalTrace, trace_ctx, trace_state_clean
    from jax._src.interpreters.ad import JVPTrace, LinearizeTrace
except ImportError:  # pragma: no cover - JAX moved them: always run as one program

    def trace_state_clean() -> bool:
        return False

    def only_autodiff() -> bool:
        return False

else:

    def only_autodiff() -> bool:
        """Whether the transformations being traced are only forward- and reverse-mode
        autodiff over concrete values (an eager `jax.grad`, `jax.jvp`, ...), so
        that a value behind `stop_gradient` is concrete."""
        try:
            trace = trace_ctx.trace
            while isinstance(trace, JVPTrace | LinearizeTrace):
                trace = trace.parent_trace
            return isinstance(trace, EvalTrace)
        except AttributeError:  # pragma: no cover - JAX changed its traces
            return False


def starting_point(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    residual: KKTResidual,
    args: PyTree[Any],
    init: Solution | None,
) -> Array:
    """Check the problem against the transcription, and return the starting `w`: the
    transcription's guess, or the warm start `init`."""
    problem.check(args)
    transcription.check(problem)
    if init is None:
        return residual.initial_guess(problem, args)
    w0 = residual.join(init.z, init.multipliers)
    expected = eqx.filter_eval_shape(residual.initial_guess, problem, args).shape
    if w0.shape != expected:
        raise ValueError(
            f"`init` has unknowns of shape {w0.shape}, but this transcription needs "
            f"{expected}: warm starts must come from the same transcription and N."
        )
    return w0


def linear_solver_of(
    solver: AbstractPlanner,
    transcription: AbstractTranscription,
    problem: OptimalControlProblem,
    in_user_program: bool = False,
):
    """The planner's linear solver, by default the transcription's own choice, told
    the sparsity of the KKT system of `problem` (`with_column_reach`); for a plan
    traced `in_user_program` (inside the user's transformation, or a batch), with
    its linear solver marked so (`for_user_program`)."""
    linear_solver = solver.linear_solver
    if linear_solver is None:
        linear_solver = transcription.linear_solver()
    reach = KKTResidual(transcription).column_reach(problem)
    linear_solver = with_column_reach(linear_solver, reach)
    return for_user_program(linear_solver) if in_user_program else linear_solver


def solution(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    residual: KKTResidual,
    args: PyTree[Any],
    sol: optx.Solution,
) -> Solution:
    """The [`toolkit.control.Solution`][] of the solve `sol`, with its outcome checked
    against the KKT residual at its value."""
    w = sol.value
    z, lam = residual.split(w, problem)
    # Only roundoff can leave a converged z outside its box (planners whose iterates
    # are not projected); remove it without touching the implicit derivative (written
    # so that the value is exactly the clipped z: z + (clip(z) - z) may round off).
    lo, hi = transcription.bounds(problem, args)
    z = jax.lax.stop_gradient(jnp.clip(z, lo, hi)) + (z - jax.lax.stop_gradient(z))
    final = jax.lax.stop_gradient(residual(w, (problem, args)))
    kkt_norm = jnp.max(jnp.abs(final))
    finite = jnp.all(jnp.isfinite(final))
    result = RESULTS.promote(sol.result)
    result = RESULTS.where(
        (result == RESULTS.nonfinite) | ((result == RESULTS.successful) & ~finite),
        RESULTS.nonfinite_kkt,
        result,
    )
    result = RESULTS.where(result == RESULTS.singular, RESULTS.singular_kkt, result)
    floor = jnp.sqrt(jnp.finfo(w.dtype).eps)
    result = RESULTS.where(
        (result == RESULTS.nonlinear_max_steps_reached) & (kkt_norm <= floor),
        RESULTS.precision_floor,
        result,
    )
    result = RESULTS.where(
        (result == RESULTS.successful) & (kkt_norm > solver.atol),
        RESULTS.nonzero_residual,
        result,
    )
    ts, xs, us = transcription.trajectory(z, problem, args)
    g, _ = residual.stationarity(z, lam, problem, args)
    cost = optimal_cost(z, lam, (problem, args), residual=residual)
    stats = dict(sol.stats)
    stats["kkt_residual"] = kkt_norm
    return Solution(
        cost=cost,
        ts=ts,
        xs=xs,
        us=us,
        costates=transcription.costates(lam, problem),
        multipliers=lam,
        bound_multipliers=g,
        z=z,
        result=result,
        stats=stats,
    )


def can_run_in_stages(
    solver: AbstractPlanner, adjoint: optx.AbstractAdjoint | None, *trees: PyTree
) -> bool:
    """Whether a plan can run as separate programs: called outside any JAX
    transformation but autodiff, with the values of its inputs concrete, by a
    [`toolkit.control.Fallback`][] whose first method takes its budget as an array
    (the default planner's) and the implicit adjoint (whose derivative needs only the
    root)."""
    fallback = composition(solver)
    if not (
        isinstance(fallback, Fallback)
        and isinstance(fallback.first, AbstractLimitedPlanner)
        and fallback.after > 0
    ):
        return False
    if adjoint is not None and not isinstance(adjoint, optx.ImplicitAdjoint):
        return False
    if trace_state_clean():
        # Nothing is traced, so no input holds a tracer but one leaked from an ended
        # trace, which fails in either way of running. (Not scanned for: flattening a
        # problem's pytree is a tenth of a small plan's Python overhead.)
        return True
    if not only_autodiff():
        return False
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(freeze(trees)))


@filter_jit(planner=True)
def _newton(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    args: PyTree[Any],
    init: Solution | None,
    w: Array,
    from_start: Bool[Array, ""],
    step_limit: Int[Array, ""],
    give_up: Bool[Array, ""],
    before: tuple[Int[Array, ""], Int[Array, ""], Bool[Array, ""]],
) -> tuple[Solution, Bool[Array, ""], Array, Array]:
    """A semismooth Newton pass from `w`, or with `from_start` from the plan's starting
    point (computed here: one program for both passes, and a first pass that is one
    call rather than two). `before`: the Newton and interior-point steps of the
    stages that ran before this pass, and whether the interior point restarted.
    Returns the solution (with the whole plan's statistics), whether it solved, its
    root and the point it started from."""
    residual = KKTResidual(transcription)
    shape = eqx.filter_eval_shape(starting_point, problem, transcription, residual, args, init)
    # A branch, not a select: the second pass (after the rescue) would otherwise pay
    # for the starting point's multiplier estimate too, a block factorisation of its
    # own (~0.3 ms of cart_pole's plan).
    w = jax.lax.cond(
        from_start,
        lambda: starting_point(problem, transcription, residual, args, init),
        lambda: w.astype(shape.dtype),
    )
    problem_args = freeze((problem, args))
    linear_solver = linear_solver_of(solver, transcription, problem)
    first = solver.composition().first
    adjoint = ImplicitAdjointWithoutCallback(linear_solver)
    sol = first.limited(residual, w, problem_args, linear_solver, step_limit, adjoint, give_up)
    out = solution(problem, transcription, solver, residual, args, sol)
    # Successful exactly when the pass converged to a point within `atol` (`is_root`).
    solved = out.result == RESULTS.successful
    # The statistics of a plan that ends here, computed in the program rather than on
    # the host (there each conversion is a transfer or a small program of its own:
    # 0.7 ms of a rescued plan): a first pass that solves reports what the one-program
    # plan does, a finish from the root (no backtracks, no regularised steps).
    stats = dict(out.stats)
    at_once = give_up & solved
    for key in ("backtracks", "regularised_steps"):
        stats[key] = jnp.where(at_once, jnp.zeros_like(stats[key]), stats[key])
    newton_before, interior_steps, restarted = before
    interior_steps = jnp.asarray(interior_steps, jnp.int32)
    stats["num_steps"] = jnp.asarray(stats["num_steps"] + newton_before, jnp.int32) + interior_steps
    stats["interior_point_steps"] = interior_steps
    stats["interior_point_restarted"] = jnp.asarray(restarted, bool)
    return dataclasses.replace(out, stats=stats), solved, sol.value, w


def _placeholder(problem: OptimalControlProblem, transcription: AbstractTranscription):
    """A `w` of the residual's shape for a pass that starts from the starting point."""
    # Called through the class: a method looked up on a Module instance is wrapped in
    # a new bound-method Module first, which costs more than the call, at every plan.
    M, bz, bc = type(transcription).layout(transcription, problem)
    return _on_device(0, problem.x0.dtype, (M + 1, bc + bz))


@functools.lru_cache(maxsize=64)
def _on_device(value: bool | int | float, dtype, shape: tuple[int, ...] = ()) -> Array:
    # Made on the device once per value, dtype and shape: an input from the host would
    # be copied there at every plan (the passes' flags and step limits alone cost a
    # plan that converges in its first pass about 4 % of its time).
    return jnp.full(shape, value, dtype)


@filter_jit(planner=True)
def _at_root(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    args: PyTree[Any],
    w: Array,
    adjoint: optx.ImplicitAdjoint | None,
) -> Solution:
    """The solution at the root `w`, with its implicit derivative w.r.t. everything in
    `problem` and `args` (a root find that starts at the root and takes no step), by
    `adjoint` (default: the implicit adjoint with the planner's linear solver)."""
    residual = KKTResidual(transcription)
    if adjoint is None:
        adjoint = ImplicitAdjointWithoutCallback(linear_solver_of(solver, transcription, problem))
    root = attach_at_root(residual, w, (problem, args), adjoint)
    return solution(problem, transcription, solver, residual, args, root)


@filter_jit(planner=True)
def _rescue(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    args: PyTree[Any],
    w0: Array,
) -> tuple[Array, Int[Array, ""], Bool[Array, ""]]:
    residual = KKTResidual(transcription)
    problem_args = freeze((problem, args))
    linear_solver = linear_solver_of(solver, transcription, problem)
    adjoint = ImplicitAdjointWithoutCallback(linear_solver)
    # As the one-program plan starts its rescue: from the guess inside the box, whatever
    # the rescue (a barrier path would move it there itself).
    start = push_into_box(w0, residual.nlp_info(*problem_args))
    return solver.composition().rescue_from(residual, start, problem_args, linear_solver, adjoint)


def plan_in_stages(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    args: PyTree[Any],
    init: Solution | None,
    adjoint: optx.ImplicitAdjoint | None = None,
) -> Solution:
    """What `_plan` computes with `solver`'s fallback, as separate programs: the
    interior-point stage is compiled and run only when the first Newton pass fails.
    The outputs (values, outcome and statistics) are those of the one-program plan.

    Under autodiff the stages run on the inputs' values, and the solution at their
    root is recomputed with its implicit derivative by one more program."""
    if trace_state_clean():
        return _stages(problem, transcription, solver, args, init)[0]
    values = freeze((problem, args, init))
    problem_value, args_value, init_value = values
    sol, w = _stages(problem_value, transcription, solver, args_value, init_value)
    at_root = _at_root(problem, transcription, solver, args, w, adjoint)
    return eqx.tree_at(lambda s: (s.result, s.stats), at_root, (sol.result, sol.stats))


def _direct(stage, *args):
    # The stages run on values (under an eager `jax.grad`, behind `stop_gradient`), so
    # they are the same programs, compiled with the same options, whether or not a
    # derivative is being taken: a plan and its gradient share them.
    return stage.top_level(*args)


def _stages(problem, transcription, solver, args, init, run=_direct) -> tuple[Solution, Array]:
    """The solution of the staged plan, and the root it found. `run(stage, *args)`
    calls each compiled stage (`stage(*args)`, or a stored executable of it)."""
    fallback = composition(solver)
    # The first Newton pass may give up once stalled; the finish may not (one compiled
    # program serves both: the flag is an input).
    yes, no = _on_device(True, bool), _on_device(False, bool)
    limit = _on_device(int(min(fallback.after, fallback.max_steps)), np.int32)
    placeholder = _placeholder(problem, transcription)
    nothing_before = (_on_device(0, np.int32), _on_device(0, np.int32), no)
    first, solved, w, w0 = run(
        _newton,
        problem,
        transcription,
        solver,
        args,
        init,
        placeholder,
        yes,
        limit,
        yes,
        nothing_before,
    )
    # Read as a NumPy array: `bool` of a JAX array takes several times as long.
    if np.asarray(solved):
        return first, w
    w, interior_steps, restarted = run(_rescue, problem, transcription, solver, args, w0)
    limit = _on_device(int(fallback.max_steps), np.int32)
    before = (first.stats["num_steps"], interior_steps, restarted)
    second, _, w, _ = run(
        _newton, problem, transcription, solver, args, init, w, no, limit, no, before
    )
    return second, w
