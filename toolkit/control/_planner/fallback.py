from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array

from .interior_point import InteriorPoint, push_into_box


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
    nlp = residual.nlp_info(*data)
    dynamic, static = eqx.partition(data, eqx.is_array)
    frozen = eqx.combine(jax.lax.stop_gradient(dynamic), static)
    w0 = jax.lax.stop_gradient(w0)
    if interior_point_first:
        first_value, first_steps, solved = w0, jnp.asarray(0, jnp.int32), jnp.asarray(False)
    else:
        first = solve(w0, frozen, min(planner.fallback_after, max_steps), adjoint)
        found = jnp.max(jnp.abs(residual(first.value, frozen))) <= atol
        solved = (first.result == optx.RESULTS.successful) & found
        first_value, first_steps = first.value, first.stats["num_steps"]

    def run_interior_point():
        # Where the barrier method gets stuck from the default guess, it restarts from
        # one whose states follow the dynamics under the default controls.
        restart = push_into_box(residual.initial_guess(*frozen, simulate=True), nlp)
        interior = optx.root_find(
            residual,
            InteriorPoint(rtol=0.0, atol=atol, linear_solver=linear_solver, tol=10 * atol),
            # Under `jax.vmap` this branch runs for solved elements too: they start at
            # their root and stop at once.
            jnp.where(solved, first_value, push_into_box(w0, nlp)),
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

    # A while loop that runs its body at most once, rather than a `lax.cond`: under
    # `jax.vmap` a cond runs both branches for every element, while a loop runs its
    # body only if some element still needs it.
    def not_done(carry):
        return jnp.invert(carry[-1])

    def once(carry):
        return (*run_interior_point(), jnp.asarray(True))

    init = (first_value, jnp.asarray(0, jnp.int32), jnp.asarray(False), solved)
    start, interior_steps, restarted, _ = jax.lax.while_loop(not_done, once, init)
    final = solve(jax.lax.stop_gradient(start), data, max_steps, adjoint)
    stats = dict(final.stats)
    stats["num_steps"] = first_steps + interior_steps + final.stats["num_steps"]
    stats["interior_point_steps"] = interior_steps
    stats["interior_point_restarted"] = restarted
    return optx.Solution(
        value=final.value, result=final.result, aux=final.aux, stats=stats, state=final.state
    )
