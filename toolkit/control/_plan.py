from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, PyTree

from .._jit import filter_jit
from ._closures import hoist_traced_closures
from ._kkt import KKTResidual
from ._planner.base import AbstractPlanner
from ._planner.implicit_adjoint import ImplicitAdjointWithoutCallback
from ._planner.memo import tuned
from ._planner.presets import KKTNewton
from ._problem import OptimalControlProblem
from ._results import raise_if_failed, RESULTS
from ._solution import Solution
from ._stages import (
    can_run_in_stages,
    linear_solver_of,
    plan_in_stages,
    solution,
    starting_point,
    trace_state_clean,
)
from ._transcription.base import AbstractTranscription


def plan(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner = KKTNewton(),
    *,
    args: PyTree[Any] = None,
    init: Solution | None = None,
    adjoint: optx.AbstractAdjoint | None = None,
    throw: bool = True,
) -> Solution:
    """Plan: transcribe `problem` into a nonlinear program and solve its KKT conditions.

    The solve is an implicit layer: `jax.grad` / `jax.jacfwd` of any output w.r.t.
    `args`, `problem.x0`, `problem.t1` (or any array in the problem, such as the
    weights of a neural vector field) come from the implicit function theorem, one
    linear solve with the KKT Jacobian, never from unrolling the iterations.
    `jax.vmap` over `args` or `x0` works, and the solve is one compiled program.
    Called eagerly, or under an eager `jax.grad`, `jax.jvp` or `jax.vjp`, the plan
    runs as a few programs instead (its interior-point fallback compiled only when a
    plan needs it), and a derivative differentiates only the KKT conditions at the
    root, which compiles several times faster than differentiating the whole solve.

    That program holds no host callback, so JAX's persistent compilation cache can
    store it (see [`toolkit.enable_compilation_cache`][]): `args` are checked, and a
    failure is raised (`throw=True`), in Python around the compiled call. Under your
    own `jax.jit`/`jax.vmap`, where there is no Python to return to, both become
    `eqx.error_if` checks in your program instead.

    **Arguments:**

    - `problem`: the [`toolkit.control.OptimalControlProblem`][].
    - `transcription`: e.g. `Trapezoidal(100)`, `HermiteSimpson(50)`,
        `MultipleShooting(50)`, `SingleShooting(50)`; `Discrete(N)` for a
        discrete-time problem (see [`toolkit.control.DiscreteDynamics`][]).
    - `solver`: the planner, [`toolkit.control.KKTNewton`][] (default) or
        [`toolkit.control.KKTLeastSquares`][].
    - `args`: parameters passed to the problem's functions.
    - `init`: a previous `Solution` on the same transcription to warm-start from
        (its unknowns and multipliers); default is the transcription's guess.
    - `adjoint`: how to differentiate the solve; default the implicit adjoint
        with the planner's linear solver, as `optimistix.ImplicitAdjoint` but
        without host callbacks (a derivative whose linear solve fails is NaN; so
        the persistent cache stores the programs that differentiate a plan).
        `optimistix.RecursiveCheckpointAdjoint()` unrolls the iterations instead.
    - `throw`: raise `equinox.EquinoxRuntimeError` with the reason if the plan fails
        (default; the call then waits for the result); if `False`, report it in
        `Solution.result` instead, a library problem's parameter out of its range
        under the user's `jit`, `vmap` or `grad` included
        (`RESULTS.parameter_out_of_range`), so that the user's program holds no host
        callback and JAX's persistent compilation cache can store it.

    **Returns:**

    A [`toolkit.control.Solution`][].
    """
    out_of_range = None
    if problem.args_check is not None:
        if trace_state_clean():
            args = problem.args_check(args)
        else:
            args, out_of_range = check_traced_args(problem.args_check, args, throw)
    if not trace_state_clean():
        problem = hoist_traced_closures(problem, args)
    solver = tuned(solver, problem.x0.dtype)
    if can_run_in_stages(solver, adjoint, problem, transcription, solver, args, init):
        sol = plan_in_stages(problem, transcription, solver, args, init, adjoint)
    else:
        sol = _plan(problem, transcription, solver, args, init, adjoint, not trace_state_clean())
    sol = report_out_of_range(sol, out_of_range)
    if throw:
        sol = raise_if_failed(sol, sol.result)
    return sol


def check_traced_args(
    check: Callable[[PyTree], PyTree], args: PyTree[Any], throw: bool, vmapped: bool = False
) -> tuple[PyTree[Any], Bool[Array, "..."] | None]:
    """A problem's `args_check` on traced `args` (over their leading axis if
    `vmapped`): with `throw`, or without a `report` method, the check itself (range
    checks by `eqx.error_if` in the user's program); else, since such a check is a
    host callback, which JAX's persistent cache refuses, `report`'s verdict, for
    `report_out_of_range` to put into the result.

    **Returns:**

    `(args, out_of_range)`, `out_of_range` `None` where the check ran itself.
    """
    if throw or not hasattr(check, "report"):
        return (jax.vmap(check) if vmapped else check)(args), None
    return (jax.vmap(check.report) if vmapped else check.report)(args)


def report_out_of_range(sol: Solution, out_of_range: Bool[Array, "..."] | None) -> Solution:
    """`sol` with `RESULTS.parameter_out_of_range` where `out_of_range` (from
    `check_traced_args`) is true; `sol` itself if it is `None`."""
    if out_of_range is None:
        return sol

    def where(bad, result):
        return RESULTS.where(bad, RESULTS.parameter_out_of_range, result)

    for _ in range(jnp.ndim(out_of_range)):  # a batch's verdicts, one per element
        where = jax.vmap(where)
    return eqx.tree_at(lambda s: s.result, sol, where(out_of_range, sol.result))


@filter_jit(planner=True)
def _plan(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    args: PyTree[Any],
    init: Solution | None,
    adjoint: optx.AbstractAdjoint | None,
    in_user_program: bool = False,
) -> Solution:
    """The plan as one program; `in_user_program` if it is traced inside the user's
    transformation or as a batch, where the linear solves run as such a program
    does best (`linear_solver_of`)."""
    residual = KKTResidual(transcription, in_user_program)
    w0 = starting_point(problem, transcription, residual, args, init)
    linear_solver = linear_solver_of(solver, transcription, problem, in_user_program)
    if adjoint is None:
        adjoint = ImplicitAdjointWithoutCallback(linear_solver)
    sol = solver.solve(residual, w0, (problem, args), linear_solver, adjoint)
    return solution(problem, transcription, solver, residual, args, sol)
