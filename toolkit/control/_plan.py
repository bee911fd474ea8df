from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import PyTree

from ._kkt import KKTResidual
from ._planner.base import AbstractPlanner
from ._planner.newton import KKTNewton
from ._problem import OptimalControlProblem
from ._results import raise_if_failed, RESULTS
from ._solution import Solution
from ._transcription.base import AbstractTranscription
from ._value import optimal_cost


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
    - `adjoint`: how to differentiate the solve; default
        `optimistix.ImplicitAdjoint` with the planner's linear solver.
        `optimistix.RecursiveCheckpointAdjoint()` unrolls the iterations instead.
    - `throw`: raise `equinox.EquinoxRuntimeError` with the reason if the plan fails
        (default; the call then waits for the result); if `False`, report it in
        `Solution.result` instead.

    **Returns:**

    A [`toolkit.control.Solution`][].
    """
    if problem.args_check is not None:
        args = problem.args_check(args)
    sol = _plan(problem, transcription, solver, args, init, adjoint)
    if throw:
        sol = raise_if_failed(sol, sol.result)
    return sol


@eqx.filter_jit
def _plan(
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner,
    args: PyTree[Any],
    init: Solution | None,
    adjoint: optx.AbstractAdjoint | None,
) -> Solution:
    problem.check(args)
    transcription.check(problem)
    residual = KKTResidual(transcription)
    data = (problem, args)
    if init is None:
        w0 = residual.initial_guess(problem, args)
    else:
        w0 = residual.join(init.z, init.multipliers)
        expected = eqx.filter_eval_shape(residual.initial_guess, problem, args).shape
        if w0.shape != expected:
            raise ValueError(
                f"`init` has unknowns of shape {w0.shape}, but this transcription needs "
                f"{expected}: warm starts must come from the same transcription and N."
            )
    linear_solver = solver.linear_solver
    if linear_solver is None:
        linear_solver = transcription.linear_solver()
    if adjoint is None:
        adjoint = optx.ImplicitAdjoint(linear_solver=linear_solver)
    sol = solver.solve(residual, w0, data, linear_solver, adjoint)

    w = sol.value
    z, lam = residual.split(w, problem)
    # Only roundoff can leave a converged z outside its box (planners whose iterates
    # are not projected); remove it without touching the implicit derivative.
    lo, hi = transcription.bounds(problem, args)
    z = z + jax.lax.stop_gradient(jnp.clip(z, lo, hi) - z)
    final = jax.lax.stop_gradient(residual(w, data))
    kkt_norm = jnp.max(jnp.abs(final))
    finite = jnp.all(jnp.isfinite(final))
    result = RESULTS.promote(sol.result)
    result = RESULTS.where(
        (result == RESULTS.nonfinite) | ((result == RESULTS.successful) & ~finite),
        RESULTS.nonfinite_kkt,
        result,
    )
    result = RESULTS.where(result == RESULTS.singular, RESULTS.singular_kkt, result)
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
