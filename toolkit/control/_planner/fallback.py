import dataclasses

import jax
import jax.numpy as jnp
import optimistix as optx

from .._nlp import push_into_box
from .at_root import attach_at_root, is_root
from .base import AbstractLimitedPlanner, AbstractPlanner
from .frozen import at_most_once, freeze


class Fallback(AbstractPlanner):
    """Run `first`; if it has not found a root after `after` iterations, run `rescue`
    from the initial guess, and let `first` finish from the rescue's point.

    The usual composition is a fast local method rescued by a globally convergent
    one: [`toolkit.control.KKTNewton`][] is
    `Fallback(Newton(shift_jump=True), BarrierPath(), after=10)`. `after=0` skips the
    first attempt: the rescue runs from the guess and `first` finishes
    ([`toolkit.control.KKTLeastSquares`][] by default).

    A first attempt that solves skips the rescue, and the finish then starts at a
    root and stops at once. Under `jax.vmap` the rescue runs only when some batch
    element needs it (solved elements keep their root). Only the finish sees the
    differentiable `(problem, args)`; the other solves only find its starting point.
    Where `first` takes its budget as an array ([`toolkit.control.Newton`][]) and the
    adjoint is implicit, the first attempt and the finish are two passes of one loop, so
    `first` is traced and compiled once, and the implicit derivative is attached at
    the root afterwards.

    A first attempt that judges itself stalled (for [`toolkit.control.Newton`][], a
    line search that needs `stall_halvings` halvings or fails) gives up before `after`
    iterations, and the rescue starts at once.

    The solution's statistics count every iteration in `num_steps`, the rescue's in
    `interior_point_steps` (named for the usual rescue), and whether the rescue
    restarted in `interior_point_restarted`.
    """

    first: AbstractPlanner
    rescue: AbstractPlanner
    after: int = 10

    def __check_init__(self):
        if isinstance(self.first, Fallback):
            raise TypeError(
                "`first` of a Fallback must be a single method (such as Newton()), whose "
                "iteration budget the Fallback sets; nest a Fallback as `rescue` instead."
            )
        if self.after < 0:
            raise ValueError(f"`after` must be >= 0, got {self.after}.")

    @property
    def atol(self) -> float | None:
        return self.first.atol

    @property
    def max_steps(self) -> int:
        return self.first.max_steps

    @property
    def linear_solver(self):
        return self.first.linear_solver

    def with_tolerance(self, dtype) -> "Fallback":
        first = self.first.with_tolerance(dtype)
        return dataclasses.replace(self, first=first, rescue=_with_atol(self.rescue, first.atol))

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        passes = isinstance(self.first, AbstractLimitedPlanner) and self.after > 0
        if passes and isinstance(adjoint, optx.ImplicitAdjoint):
            return self._in_passes(residual, w0, problem_args, linear_solver, adjoint)
        return self._in_sequence(residual, w0, problem_args, linear_solver, adjoint)

    def rescue_from(self, residual, start, frozen, linear_solver, adjoint):
        """The rescue's solve from `start` on `frozen` `(problem, args)`: `(value, steps,
        restarted)`."""
        sol = self.rescue.solve(residual, start, frozen, linear_solver, adjoint)
        restarted = sol.stats.get("restarted", jnp.asarray(False))
        return (
            sol.value,
            jnp.asarray(sol.stats["num_steps"], jnp.int32),
            jnp.asarray(restarted, bool),
        )

    def _rescue_once(self, residual, start, needed, frozen, linear_solver, adjoint):
        """The rescue from `start` where `needed`, else `start` unchanged: `(value,
        steps, restarted)`. Under `jax.vmap` it runs only if some element needs it, and
        its work that depends on the problem alone (its restart point: a simulation and
        a multiplier estimate) is not hoisted out to run for every plan (`at_most_once`)."""

        def rescue(operands):
            tied, start = operands
            return self.rescue_from(residual, start, tied, linear_solver, adjoint)

        unchanged = (start, jnp.asarray(0, jnp.int32), jnp.asarray(False))
        return at_most_once(needed, rescue, unchanged, (frozen, start))

    def _in_sequence(self, residual, w0, problem_args, linear_solver, adjoint) -> optx.Solution:
        atol, max_steps = self.atol, self.max_steps

        def solve(w, problem_args, steps, finish=False):
            first = dataclasses.replace(self.first, max_steps=steps)
            if finish and isinstance(first, AbstractLimitedPlanner):
                # A finish, as in `_in_passes` (which never gives up).
                return first.limited(
                    residual, w, problem_args, linear_solver, None, adjoint, jnp.asarray(False)
                )
            return first.solve(residual, w, problem_args, linear_solver, adjoint)

        frozen = freeze(problem_args)
        # From a frozen `(problem, args)`: a tangent reaching the loops below would make
        # JAX trace their derivatives, only for the implicit derivative to replace them.
        nlp = residual.nlp_info(*frozen)
        w0 = jax.lax.stop_gradient(w0)
        if self.after == 0:
            first_value, first_steps, solved = w0, jnp.asarray(0, jnp.int32), jnp.asarray(False)
        else:
            if isinstance(self.first, AbstractLimitedPlanner):
                limit = jnp.asarray(min(self.after, max_steps), jnp.int32)
                first = self.first.limited(
                    residual, w0, frozen, linear_solver, limit, adjoint, jnp.asarray(True)
                )
            else:
                first = solve(w0, frozen, min(self.after, max_steps))
            solved = is_root(residual, first, frozen, atol)
            first_value, first_steps = first.value, first.stats["num_steps"]

        # Under `jax.vmap` the rescue runs for solved elements too: they start at
        # their root and stop at once.
        start = jnp.where(solved, first_value, push_into_box(w0, nlp))
        start, rescue_steps, restarted = self._rescue_once(
            residual, start, jnp.invert(solved), frozen, linear_solver, adjoint
        )
        final = solve(jax.lax.stop_gradient(start), problem_args, max_steps, finish=True)
        stats = dict(final.stats)
        stats["num_steps"] = first_steps + rescue_steps + final.stats["num_steps"]
        stats["interior_point_steps"] = rescue_steps
        stats["interior_point_restarted"] = restarted
        return optx.Solution(
            value=final.value, result=final.result, aux=final.aux, stats=stats, state=final.state
        )

    def _in_passes(self, residual, w0, problem_args, linear_solver, adjoint) -> optx.Solution:
        # What `_in_sequence` computes, with the first attempt and the finish as two
        # passes of one loop over `first.limited`. The loop sees only a frozen `(problem, args)`.
        atol, max_steps = self.atol, self.max_steps
        frozen = freeze(problem_args)
        nlp = residual.nlp_info(*frozen)
        w0 = jax.lax.stop_gradient(w0)
        # Typed as the body returns them: a weakly typed start makes JAX trace the body twice.
        no_steps, none = jnp.zeros((), jnp.int32), jnp.zeros((), int)

        def not_done(carry):
            return jnp.invert(carry[-1])

        def attempt(carry):
            w, second, steps, rescue_steps, restarted, _, _, _, _ = carry
            limit = jnp.where(second, max_steps, min(self.after, max_steps))
            sol = self.first.limited(
                residual, w, frozen, linear_solver, limit, adjoint, jnp.invert(second)
            )
            num_steps = sol.stats["num_steps"]
            solved = is_root(residual, sol, frozen, atol)
            fall_back = jnp.invert(second | solved)
            start = jnp.where(fall_back, push_into_box(w0, nlp), sol.value)
            value, more_steps, more_restarted = self._rescue_once(
                residual, start, fall_back, frozen, linear_solver, adjoint
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
                rescue_steps + more_steps,
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
        value, _, steps, rescue_steps, restarted, result, backtracks, regularised, _ = (
            jax.lax.while_loop(not_done, attempt, init)
        )
        final = attach_at_root(residual, value, problem_args, adjoint)
        stats = {
            "num_steps": steps,
            "max_steps": max_steps,
            "backtracks": backtracks,
            "regularised_steps": regularised,
            "interior_point_steps": rescue_steps,
            "interior_point_restarted": restarted,
        }
        return optx.Solution(
            value=final.value, result=result, aux=final.aux, stats=stats, state=final.state
        )


def _with_atol(planner: AbstractPlanner, atol: float) -> AbstractPlanner:
    """`planner` with `atol` where it leaves its tolerance to the caller."""
    if isinstance(planner, Fallback):
        first = _with_atol(planner.first, atol)
        return dataclasses.replace(planner, first=first, rescue=_with_atol(planner.rescue, atol))
    if planner.atol is None:
        return dataclasses.replace(planner, atol=atol)
    return planner


Fallback.__init__.__doc__ = """**Arguments:**

- `first`: the method tried first and finishing last, a single method such as
    [`toolkit.control.Newton`][] or [`toolkit.control.GaussNewton`][]; its `atol`,
    `max_steps` (of the finish) and `linear_solver` are the composition's.
- `rescue`: the method run from the guess when `first` fails, such as
    [`toolkit.control.BarrierPath`][]; a `None` tolerance takes `first`'s.
- `after`: iterations of the first attempt before the rescue; `0` skips the first
    attempt.
"""
