from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, Bool, Int, PyTree, Scalar
from optimistix import RESULTS

from .._nlp import bound_masks
from .backtracking import halving_search
from .regularised_step import linearised, next_shift, regularised_newton_step


class _NewtonState(eqx.Module):
    f: Array
    theta_max: Scalar
    delta: Scalar
    backtracks: Int[Array, ""]
    regularised: Int[Array, ""]
    steps: Int[Array, ""]
    # Halvings of the last line search; `max_backtracks + 1` if it took no step.
    last_halvings: Int[Array, ""]
    # The last line search failed and met a trial point where F is not finite.
    nonfinite_search: Bool[Array, ""]
    result: RESULTS


def _merit(f: Array) -> Scalar:
    return 0.5 * jnp.sum(f**2)


def _stall_limit(give_up: Bool[Array, ""] | None, stall: int | None, limit: int):
    """`limit`, or at most `stall` where `give_up` is true (an attempt that stops at
    its first stall)."""
    if give_up is None or stall is None:
        return limit
    return jnp.where(give_up, min(stall, limit), limit)


def _where(pred, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


def _breakpoint(y: Array, dy: Array, nlp) -> Scalar:
    """The longest step along `dy` on which no bounded unknown strictly inside its
    bounds crosses one (inf where none would)."""
    has_lower, has_upper = bound_masks(nlp)
    lo = jnp.where(has_lower, nlp.lower, 0)
    hi = jnp.where(has_upper, nlp.upper, 0)
    to_lower = has_lower & (y > lo) & (dy < 0)
    to_upper = has_upper & (y < hi) & (dy > 0)
    steps = jnp.minimum(
        jnp.where(to_lower, (lo - y) / jnp.where(to_lower, dy, -1), jnp.inf),
        jnp.where(to_upper, (hi - y) / jnp.where(to_upper, dy, 1), jnp.inf),
    )
    return jnp.min(steps)


class SemismoothNewtonRootFinder(optx.AbstractRootFinder):
    """Globalised semismooth Newton's method for the KKT conditions of a nonlinear
    program (a root finder for optimistix's `root_find`).

    Each iteration solves J p = F(y), with J an element of the generalised Jacobian of
    the (piecewise smooth) residual, and backtracks along y - α p.

    Used with the `options` that [`toolkit.control.Newton`][] passes (the NLP's
    objective and constraints, the primal/dual layout and the bounds), it is a
    line-search SQP method in the manner of IPOPT:

    - *Inertia-free curvature test* (Chiang & Zavala 2016): if the step's primal part
      dz has dzᵀ H dz < κ ‖dz‖² (H the Hessian block), the Hessian is shifted by δ and
      the step recomputed, with δ grown tenfold until the test passes. The shift
      makes dz a descent direction of the merit function on non-convex problems.
    - *Filter line search without memory* (after Wächter & Biegler 2006): a trial
      point, projected onto the bounds so that iterates stay in the box, is accepted
      when it reduces the infeasibility ‖c‖₁ or the objective; once nearly feasible
      along a descent direction, it must give Armijo decrease of the objective. Full
      steps that reduce ‖F‖ are always accepted, which keeps the fast local
      convergence of Newton's method. A refused full step is followed by the
      longest step on which no unknown inside its bounds reaches one (where that
      is more than half the step), then by halvings: where the full step crosses
      the bound of an unknown that the active set counts as free, clipped it is
      no Newton step, and halving would only halve that unknown's distance to
      its bound at each iteration (bioreactor's finish: 7 steps, now 2).

    Without those options it is plain semismooth Newton with an Armijo search on
    ½‖F‖². Trial points where F is not finite (a NaN in the dynamics, say) are
    rejected like any other failed trial; a search that fails having met one, at the
    largest Hessian shift, stops the solve with `RESULTS.nonfinite` (every later
    iteration would repeat it). Converges when ‖F‖_∞ <= atol.

    `options["step_limit"]`, an integer array, stops the solve after that many
    iterations (reported as `nonlinear_max_steps_reached`, or as `nonfinite` if the
    last line search failed on a non-finite F) within `root_find`'s static
    `max_steps`: one compiled solve then serves several budgets.

    `options["give_up"]`, a boolean array, where true stops the solve as soon as it
    stalls: an iteration whose line search needed `stall_halvings` halvings or took no
    step (reported as `nonlinear_divergence`). On the problem library a first attempt
    that is going to converge takes at most a few halvings per step, while one that
    has stalled fails its searches from then on, at 30 residual evaluations and up to
    12 regularised factorisations each: a [`toolkit.control.Fallback`][] sets it for
    its first attempt, so that its rescue starts at once. With `stall_shifts`, a step
    that needs more curvature shifts than that stalls the same way. Where false (the
    Fallback's finish), the curvature shift decays between steps to `delta_init`
    rather than to zero, as on the barrier path.

    A step without a direction (the linear solve or every curvature shift failed) is
    refused at once, without a line search along it.
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar] = optx.max_norm
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)
    sigma: float = 1e-4
    max_backtracks: int = 30
    kappa: float = 1e-8
    delta_init: float = 1e-4
    delta_max: float = 1e10
    max_regularisations: int = 12
    stall_halvings: int | None = None
    stall_shifts: int | None = None
    stall_singular: int | None = None
    shift_jump: bool = False

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del options, f_struct, aux_struct, tags
        f, _ = fn(y, args)
        result = RESULTS.where(jnp.isfinite(_merit(f)), RESULTS.successful, RESULTS.nonfinite)
        zero = jnp.zeros((), f.dtype)
        return _NewtonState(
            f=f,
            theta_max=jnp.full((), jnp.inf, f.dtype),
            delta=zero,
            backtracks=jnp.array(0),
            regularised=jnp.array(0),
            steps=jnp.array(0),
            last_halvings=jnp.array(0),
            nonfinite_search=jnp.array(False),
            result=result,
        )

    def step(self, fn, y, args, options, state: _NewtonState, tags):
        nlp = options.get("nlp")
        give_up = options.get("give_up")
        # The Jacobian's blocks where the NLP computes them (a KKT residual whose
        # transcription has `lagrangian_derivatives`), else the linearisation.
        f, lin_fn, blocks, aux = linearised(fn, y, args, nlp, project=True)

        struct = jax.eval_shape(lambda: y)

        if nlp is None:
            operator = lx.FunctionLinearOperator(lin_fn, struct, tags=tags)
            sol = lx.linear_solve(operator, f, self.linear_solver, throw=False)
            solved = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))
            dy = -jnp.where(solved, sol.value, 0)
            delta = state.delta
            n_reg = jnp.array(0)
        else:
            # An attempt that gives up at a step needing `stall_shifts` curvature
            # shifts stops shifting there: each further shift is another
            # factorisation, and the step would be a stall all the same.
            max_shifts = _stall_limit(give_up, self.stall_shifts, self.max_regularisations)
            # Past `max_regularisations` failed solves the loop has stopped anyway.
            limit = self.max_regularisations + 1
            max_failed = _stall_limit(give_up, self.stall_singular, limit)
            dy, solved, delta, n_reg, _ = regularised_newton_step(
                lin_fn,
                f,
                struct,
                nlp,
                0.0,
                state.delta,
                self,
                tags,
                max_regularisations=max_shifts,
                blocks=blocks,
                max_failed_solves=max_failed,
                jump=self.shift_jump,
            )

        merit_f = _merit(f)
        if nlp is None:
            theta_max = state.theta_max

            def project(y):
                return y

            def accept(alpha, y_t, f_t):
                m = _merit(f_t)
                return jnp.isfinite(m) & (m <= (1 - 2 * self.sigma * alpha) * merit_f)

        else:
            # A filter line search without memory (after Wächter & Biegler 2006): a
            # trial must reduce the infeasibility θ = ‖c‖₁ or the objective J, and once
            # nearly feasible along a descent direction, give Armijo decrease of J.
            def theta(y):
                return jnp.sum(jnp.abs(nlp.constraints(y, args)))

            J0, slope = jax.jvp(lambda _y: nlp.objective(_y, args), (y,), (dy,))
            theta0 = theta(y)
            theta_max = jnp.where(
                jnp.isinf(state.theta_max), 1e4 * jnp.maximum(1.0, theta0), state.theta_max
            )
            theta_min = 1e-4 * jnp.maximum(1.0, theta_max / 1e4)
            switching = (slope < 0) & (theta0 <= theta_min)
            gamma = 1e-5

            def project(y):
                return jnp.clip(y, nlp.lower, nlp.upper)

            def accept(alpha, y_t, f_t):
                m = _merit(f_t)
                J_t, theta_t = nlp.objective(y_t, args), theta(y_t)
                armijo = J_t <= J0 + self.sigma * alpha * slope
                filter_ok = (theta_t <= (1 - gamma) * theta0) | (J_t <= J0 - gamma * theta0)
                # The filter measures only the primal iterate; a dual step that makes
                # the KKT residual explode is refused all the same.
                bounded = m <= 1e2 * jnp.maximum(merit_f, 1.0)
                by_filter = (
                    bounded & (theta_t <= theta_max) & jnp.where(switching, armijo, filter_ok)
                )
                by_residual = m <= (1 - 2 * self.sigma * alpha) * merit_f
                return jnp.isfinite(m) & jnp.isfinite(J_t) & (by_filter | by_residual)

        def trial(alpha, out):
            nonfinite = out[3]
            y_t = project(y + alpha * dy)
            f_t, aux_t = fn(y_t, args)
            nonfinite = nonfinite | jnp.invert(jnp.isfinite(_merit(f_t)))
            return accept(alpha, y_t, f_t), (y_t, f_t, aux_t, nonfinite)

        alpha0 = jnp.full((), 1.0, f.dtype)
        # An attempt that gives up at a search needing `stall_halvings` halvings stops
        # searching there: further halvings (and the residual evaluations they cost)
        # could only end in the same verdict.
        max_backtracks = _stall_limit(give_up, self.stall_halvings, self.max_backtracks)
        # Without a step (the linear solve or the curvature shifts failed) there is
        # nothing to search along: the step is refused without evaluating F again.
        max_backtracks = jnp.where(solved, max_backtracks, -1)
        _, k, accepted, (y_t, f_t, aux_t, nonfinite) = halving_search(
            trial,
            alpha0,
            max_backtracks,
            (y, f, aux, jnp.array(False)),
            second=None if nlp is None else _breakpoint(y, dy, nlp),
        )

        moved = solved & accepted
        k = jnp.maximum(k, 0)
        nonfinite_search = solved & jnp.invert(accepted) & nonfinite
        y_new = _where(moved, y_t, y)
        f_new = jnp.where(moved, f_t, f)
        aux_new = _where(moved, aux_t, aux)
        if nlp is None:
            result = RESULTS.where(
                solved,
                RESULTS.where(moved, RESULTS.successful, RESULTS.nonfinite),
                RESULTS.promote(lx.RESULTS.singular),
            )
        else:
            # A failed search is not fatal: the next iteration starts from a larger
            # shift (a shorter, more gradient-like step). Running out of iterations is,
            # and so is a search that met a non-finite F at the largest shift: every
            # later iteration would repeat it from the same point (issue 25, item 10).
            stalled = nonfinite_search & (delta >= self.delta_max)
            result = RESULTS.where(stalled, RESULTS.nonfinite, RESULTS.successful)
            # The shift decays after a successful step and grows after a failed one;
            # a finish (`give_up` false) keeps the floor, as the barrier path does.
            floor = False if give_up is None else jnp.invert(give_up)
            delta = next_shift(delta, moved, self, floor=floor)
        new_state = _NewtonState(
            f=f_new,
            theta_max=theta_max,
            delta=delta,
            backtracks=state.backtracks + k,
            regularised=state.regularised + (n_reg > 0).astype(state.regularised.dtype),
            steps=state.steps + 1,
            last_halvings=jnp.where(moved, k, self.max_backtracks + 1),
            nonfinite_search=nonfinite_search,
            result=result,
        )
        return y_new, new_state, aux_new

    def terminate(self, fn, y, args, options, state: _NewtonState, tags):
        del fn, y, args, tags
        converged = self.norm(state.f) <= self.atol
        failed = state.result != RESULTS.successful
        result = RESULTS.where(converged, RESULTS.successful, state.result)
        give_up = options.get("give_up")
        if give_up is not None and self.stall_halvings is not None:
            stalled = (
                give_up
                & (state.steps > 0)
                & (state.last_halvings >= self.stall_halvings)
                & jnp.invert(converged | failed)
            )
            failed = failed | stalled
            result = RESULTS.where(stalled, RESULTS.nonlinear_divergence, result)
        limit = options.get("step_limit")
        if limit is None:
            return converged | failed, result
        out_of_steps = jnp.invert(converged | failed) & (state.steps >= limit)
        # Out of steps with a last search that met a non-finite F: the NaN, not the
        # budget, is what stopped the solve (issue 25, item 10).
        out_of_steps_result = RESULTS.where(
            state.nonfinite_search, RESULTS.nonfinite, RESULTS.nonlinear_max_steps_reached
        )
        result = RESULTS.where(out_of_steps, out_of_steps_result, result)
        return converged | failed | out_of_steps, result

    def postprocess(self, fn, y, aux, args, options, state: _NewtonState, tags, result):
        del fn, args, options, tags, result
        return y, aux, {"backtracks": state.backtracks, "regularised_steps": state.regularised}


SemismoothNewtonRootFinder.__init__.__doc__ = """**Arguments:**

- `rtol`: unused by the termination test (kept for the optimistix interface).
- `atol`: converged when the max-norm of the residual is at most this.
- `norm`: the norm of the termination test.
- `linear_solver`: the lineax solver for the Newton systems.
- `sigma`: the Armijo sufficient-decrease constant.
- `max_backtracks`: halvings of the step before giving up on this iteration.
- `kappa`: the curvature threshold of the inertia-free test.
- `delta_init`: the first Hessian shift tried when the curvature test fails.
- `delta_max`: the largest Hessian shift.
- `max_regularisations`: the most shifts tried in one iteration.
- `stall_halvings`: with `options["give_up"]`, stop once a line search needs this
    many halvings or fails; `None` never stops early.
- `stall_shifts`: with `options["give_up"]`, allow at most this many curvature
    shifts per step (each one another factorisation): a step that needs more finds
    no direction and stops the solve as a stall; `None` allows `max_regularisations`.
- `stall_singular`: with `options["give_up"]`, stop shifting once this many linear
    solves of a step in a row have failed (a singular or unstable system, which a
    larger Hessian shift does not mend when its constraint rows are singular): the
    step finds no direction and the solve stops as a stall; `None` shifts on.
- `shift_jump`: a failed curvature test grows the shift to twice what the failed
    direction needed where that is more than tenfold (see
    [`toolkit.control.InteriorPointRootFinder`][]); `False` (default): tenfold only.
"""
