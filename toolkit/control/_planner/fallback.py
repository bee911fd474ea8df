from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array

from .._nlp import push_into_box
from .interior_point import InteriorPoint


def solve_with_fallback(
    planner,
    solve: Callable[[Array, object, int, optx.AbstractAdjoint], optx.Solution],
    residual,
    w0: Array,
    data,
    linear_solver: lx.AbstractLinearSolver,
    adjoint: optx.AbstractAdjoint,
    *,
    interior_point_first: bool = False,
) -> optx.Solution:
    """Run a planner's own method `solve(w0, data, max_steps, adjoint)`; if it has not
    found a root after `planner.fallback_after` iterations, restart from `w0` with the
    [`toolkit.control.InteriorPoint`][] method and finish with `solve` from its result.
    If the interior-point method gets stuck, it restarts once from the guess whose
    states the default controls produce (`KKTResidual.initial_guess(simulate=True)`).
    `planner.fallback_after <= 0` is the planner's method alone. With
    `interior_point_first=True` the planner's own first attempt is skipped: the
    interior-point method runs from `w0` and the planner's method finishes from its
    result.

    A solved first attempt skips the interior-point solve, and the final solve then
    starts at a root and stops at once. Under `jax.vmap` the interior-point solve runs
    only when some batch element needs it (solved elements keep their root). Only the
    final solve sees the differentiable `data`; the others find its starting point.
    """
    atol, max_steps = planner.atol, planner.max_steps
    if planner.fallback_after <= 0 and not interior_point_first:
        return solve(w0, data, max_steps, adjoint)
    frozen = freeze(data)
    # From frozen data: a tangent reaching the loops below would make JAX trace their
    # derivatives, only for the implicit derivative to replace them.
    nlp = residual.nlp_info(*frozen)
    w0 = jax.lax.stop_gradient(w0)
    if interior_point_first:
        first_value, first_steps, solved = w0, jnp.asarray(0, jnp.int32), jnp.asarray(False)
    else:
        first = solve(w0, frozen, min(planner.fallback_after, max_steps), adjoint)
        solved = is_root(residual, first, frozen, atol)
        first_value, first_steps = first.value, first.stats["num_steps"]

    # Under `jax.vmap` the interior-point solve runs for solved elements too: they
    # start at their root and stop at once.
    start = jnp.where(solved, first_value, push_into_box(w0, nlp))
    start, interior_steps, restarted = _interior_point_once(
        planner, residual, start, jnp.invert(solved), frozen, nlp, linear_solver, adjoint
    )
    final = solve(jax.lax.stop_gradient(start), data, max_steps, adjoint)
    stats = dict(final.stats)
    stats["num_steps"] = first_steps + interior_steps + final.stats["num_steps"]
    stats["interior_point_steps"] = interior_steps
    stats["interior_point_restarted"] = restarted
    return optx.Solution(
        value=final.value, result=final.result, aux=final.aux, stats=stats, state=final.state
    )


def interior_point_solve(planner, residual, start, frozen, nlp, linear_solver, adjoint):
    """The interior-point solve from `start`: `(value, steps, restarted)`.

    Where the barrier method gets stuck, it restarts from a guess whose states follow
    the dynamics under the default controls.
    """
    restart = push_into_box(residual.initial_guess(*frozen, simulate=True), nlp)
    atol = planner.atol
    interior = optx.root_find(
        residual,
        InteriorPoint(rtol=0.0, atol=atol, linear_solver=linear_solver, tol=10 * atol),
        start,
        frozen,
        options={"nlp": nlp, "restart": restart},
        max_steps=planner.interior_point_steps,
        adjoint=adjoint,
        throw=False,
    )
    return (
        interior.value,
        jnp.asarray(interior.stats["num_steps"], jnp.int32),
        jnp.asarray(interior.stats["restarted"], bool),
    )


def _interior_point_once(planner, residual, start, needed, frozen, nlp, linear_solver, adjoint):
    """The interior-point solve from `start` where `needed`, else `start` unchanged:
    `(value, steps, restarted)`."""

    # A while loop that runs its body at most once, rather than a `lax.cond`: under
    # `jax.vmap` a cond runs both branches for every element, while a loop runs its
    # body only if some element still needs it.
    def not_done(carry):
        return jnp.invert(carry[-1])

    def once(carry):
        solved = interior_point_solve(
            planner, residual, carry[0], frozen, nlp, linear_solver, adjoint
        )
        return (*solved, jnp.asarray(True))

    init = (start, jnp.asarray(0, jnp.int32), jnp.asarray(False), jnp.invert(needed))
    value, steps, restarted, _ = jax.lax.while_loop(not_done, once, init)
    return value, steps, restarted


def freeze(data):
    """`data` with its arrays behind `stop_gradient`: for the solves that only find a
    starting point."""
    dynamic, static = eqx.partition(data, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)


def is_root(residual, sol: optx.Solution, data, atol) -> Array:
    """Whether `sol` converged to a point whose residual is within `atol`."""
    found = jnp.max(jnp.abs(residual(sol.value, data))) <= atol
    return (sol.result == optx.RESULTS.successful) & found


class _AtRoot(optx.AbstractRootFinder):
    """A root finder that takes no step: the root is already known, and the solve is
    only there to carry its implicit derivative."""

    rtol: float = 0.0
    atol: float = 0.0
    norm: Callable = optx.max_norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        return None

    def step(self, fn, y, args, options, state, tags):
        return y, state, None

    def terminate(self, fn, y, args, options, state, tags):
        return jnp.asarray(True), optx.RESULTS.successful

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return y, aux, {}


def attach_at_root(residual, root: Array, data, adjoint: optx.AbstractAdjoint) -> optx.Solution:
    """A root find that starts at the known `root` and takes no step: it only carries
    the implicit derivative of the root w.r.t. `data`."""
    return optx.root_find(
        residual,
        _AtRoot(),
        jax.lax.stop_gradient(root),
        data,
        max_steps=1,
        adjoint=adjoint,
        throw=False,
    )


def solve_in_passes(
    planner,
    solve: Callable[[Array, object, Array], optx.Solution],
    residual,
    w0: Array,
    data,
    linear_solver: lx.AbstractLinearSolver,
    adjoint: optx.ImplicitAdjoint,
) -> optx.Solution:
    """What `solve_with_fallback` computes (without `interior_point_first`), for a
    planner whose method `solve(w0, data, step_limit)` takes its iteration budget as
    an array: the first attempt and the finish after the interior-point method are
    two passes of one loop, so the method is traced and compiled once, not twice.
    The loop sees only frozen `data`; the implicit derivative is attached afterwards
    by a root find that starts at the root and takes no step.
    """
    atol, max_steps = planner.atol, planner.max_steps
    frozen = freeze(data)
    # From frozen data: a tangent reaching the loops below would make JAX trace their
    # derivatives, only for the implicit derivative to replace them.
    nlp = residual.nlp_info(*frozen)
    w0 = jax.lax.stop_gradient(w0)
    # Typed as the body returns them: a weakly typed start makes JAX trace the body twice.
    no_steps, none = jnp.zeros((), jnp.int32), jnp.zeros((), int)

    def not_done(carry):
        return jnp.invert(carry[-1])

    def attempt(carry):
        w, second, steps, interior_steps, restarted, _, _, _, _ = carry
        limit = jnp.where(second, max_steps, min(planner.fallback_after, max_steps))
        sol = solve(w, frozen, limit)
        num_steps = sol.stats["num_steps"]
        solved = is_root(residual, sol, frozen, atol)
        fall_back = jnp.invert(second | solved)
        # Under `jax.vmap` the interior-point solve runs for solved elements too: they
        # start at their root and stop at once.
        start = jnp.where(fall_back, push_into_box(w0, nlp), sol.value)
        value, more_steps, more_restarted = _interior_point_once(
            planner, residual, start, fall_back, frozen, nlp, linear_solver, adjoint
        )
        # Solved at once, the plan reports what a finish from the root would: no
        # backtracks, no regularised steps, success.
        result = optx.RESULTS.where(second, sol.result, optx.RESULTS.successful)
        backtracks = jnp.where(second, sol.stats["backtracks"], 0)
        regularised = jnp.where(second, sol.stats["regularised_steps"], 0)
        return (
            value,
            jnp.asarray(True),
            steps + num_steps + more_steps,
            interior_steps + more_steps,
            restarted | more_restarted,
            result,
            backtracks,
            regularised,
            jnp.invert(fall_back),
        )

    init = (
        w0,
        jnp.asarray(False),
        no_steps,
        no_steps,
        jnp.asarray(False),
        optx.RESULTS.successful,
        none,
        none,
        jnp.asarray(False),
    )
    value, _, steps, interior_steps, restarted, result, backtracks, regularised, _ = (
        jax.lax.while_loop(not_done, attempt, init)
    )
    final = attach_at_root(residual, value, data, adjoint)
    stats = {
        "num_steps": steps,
        "max_steps": max_steps,
        "backtracks": backtracks,
        "regularised_steps": regularised,
        "interior_point_steps": interior_steps,
        "interior_point_restarted": restarted,
    }
    return optx.Solution(
        value=final.value, result=result, aux=final.aux, stats=stats, state=final.state
    )
