from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, Bool, Int, PyTree, Scalar
from optimistix import RESULTS

from .._nlp import bound_masks
from .backtracking import halving_search
from .regularised_step import linearised, next_shift, regularised_newton_step
from .restart import RestartPoint


_FILTER_SIZE = 16


class _InteriorPointState(eqx.Module):
    f: Array
    nu_lower: Array
    nu_upper: Array
    mu: Scalar
    error: Scalar
    delta: Scalar
    theta_min: Scalar
    theta_max: Scalar
    filter_theta: Array
    filter_phi: Array
    filter_next: Int[Array, ""]
    backtracks: Int[Array, ""]
    regularised: Int[Array, ""]
    corrections: Int[Array, ""]
    failures: Int[Array, ""]
    restarted: Bool[Array, ""]
    result: RESULTS


def _slacks(y, nlp, has_lower, has_upper):
    s_lower = jnp.where(has_lower, y - jnp.where(has_lower, nlp.lower, 0), 1.0)
    s_upper = jnp.where(has_upper, jnp.where(has_upper, nlp.upper, 0) - y, 1.0)
    return s_lower, s_upper


class InteriorPointRootFinder(optx.AbstractRootFinder):
    """A primal-dual interior-point method for the KKT conditions of a nonlinear
    program with box bounds (a root finder for `optimistix.root_find`), after IPOPT
    (Wächter & Biegler 2006).

    It needs the `options` that [`toolkit.control.BarrierPath`][] passes
    (`{"nlp": NLPInfo(...)}`), and an initial point strictly inside the box
    ([`toolkit.control.BarrierPath`][] moves it there). The bounds are replaced by
    barrier terms -μ Σ log(z_i - lo_i) (and likewise for upper bounds) whose
    multipliers ν are iterated with the primal unknowns, with IPOPT's default
    constants (μ₀ = 0.1, in the NLP's own units). Each iteration takes one
    regularised Newton step on the barrier problem (the same inertia-free curvature
    test as [`toolkit.control.SemismoothNewtonRootFinder`][]), keeps the unknowns and ν inside
    the box by the fraction-to-the-boundary rule, and searches along it with a filter
    on (‖c‖₁, barrier objective) that remembers its last 16 entries and IPOPT's
    switching condition. A rejected full step that raised ‖c‖₁ is first corrected
    for the constraints' curvature, as IPOPT does (second-order corrections, up to
    `max_soc`, each one more solve with the step's factorisation). μ decreases
    superlinearly (μ ← min(μ/5, μ^1.5)) once the barrier problem is solved to 10 μ,
    several times in one iteration if the iterate also solves the next barrier
    problems (IPOPT's monotone update). No restoration phase: a failed search grows
    the curvature shift.

    The smooth barrier path does not jump between active sets as a semismooth step
    does, which is what a start far from the solution needs; the method stops once
    the KKT conditions hold to `tol` (in a scaled norm), a point from which
    semismooth Newton converges in a few steps to the exact active set.
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar] = optx.max_norm
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)
    tol: float = 1e-8
    mu_init: float = 0.1
    max_backtracks: int = 30
    sigma_armijo: float = 1e-4
    kappa: float = 1e-8
    delta_init: float = 1e-4
    delta_max: float = 1e10
    max_regularisations: int = 12
    restart_after: int = 15
    max_soc: int = 4
    kappa_soc: float = 0.99
    shift_jump: bool = True

    def _error(self, y, g, nu_lower, nu_upper, mu, nlp):
        """IPOPT's KKT error E_μ of the barrier problem, in the NLP's own units: the
        constraint rows of the residual are c / h, the stationarity rows are not
        scaled."""
        has_lower, has_upper = bound_masks(nlp)
        s_lower, s_upper = _slacks(y, nlp, has_lower, has_upper)
        h = jnp.max(nlp.regularisation)
        stationarity = jnp.where(nlp.primal_mask, g - nu_lower + nu_upper, h * g)
        complementarity = jnp.maximum(
            jnp.where(has_lower, jnp.abs(nu_lower * s_lower - mu), 0),
            jnp.where(has_upper, jnp.abs(nu_upper * s_upper - mu), 0),
        )
        return jnp.maximum(jnp.max(jnp.abs(stationarity)), jnp.max(complementarity))

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del f_struct, aux_struct, tags
        nlp = options["nlp"]
        f, _ = fn(y, args)
        dtype = f.dtype
        has_lower, has_upper = bound_masks(nlp)
        s_lower, s_upper = _slacks(y, nlp, has_lower, has_upper)
        mu = jnp.asarray(self.mu_init, dtype)
        nu_lower = jnp.where(has_lower, mu / s_lower, 0)
        nu_upper = jnp.where(has_upper, mu / s_upper, 0)
        g = nlp.unprojected(y, args)
        error = self._error(y, g, nu_lower, nu_upper, 0.0, nlp)
        theta = jnp.sum(jnp.abs(nlp.constraints(y, args)))
        finite = jnp.isfinite(jnp.sum(f)) & jnp.isfinite(error)
        inside = jnp.all((s_lower > 0) & (s_upper > 0))
        converged = self.norm(f) <= self.atol
        result = RESULTS.where(finite & (inside | converged), RESULTS.successful, RESULTS.nonfinite)
        return _InteriorPointState(
            f=f,
            nu_lower=nu_lower,
            nu_upper=nu_upper,
            mu=mu,
            error=error,
            delta=jnp.zeros((), dtype),
            theta_min=1e-4 * jnp.maximum(1.0, theta),
            theta_max=1e4 * jnp.maximum(1.0, theta),
            filter_theta=jnp.full(_FILTER_SIZE, jnp.inf, dtype),
            filter_phi=jnp.full(_FILTER_SIZE, jnp.inf, dtype),
            filter_next=jnp.array(0),
            backtracks=jnp.array(0),
            regularised=jnp.array(0),
            corrections=jnp.array(0),
            failures=jnp.array(0),
            restarted=jnp.array(False),
            result=result,
        )

    def step(self, fn, y, args, options, state: _InteriorPointState, tags):
        nlp = options["nlp"]
        has_lower, has_upper = bound_masks(nlp)
        mu = state.mu
        s_lower, s_upper = _slacks(y, nlp, has_lower, has_upper)
        nu_lower, nu_upper = state.nu_lower, state.nu_upper

        g, lin_fn, blocks, _ = linearised(
            lambda _y, a: (nlp.unprojected(_y, a), None), y, args, nlp, project=False
        )
        sigma = jnp.where(has_lower, nu_lower / s_lower, 0) + jnp.where(
            has_upper, nu_upper / s_upper, 0
        )
        rhs = g - jnp.where(has_lower, mu / s_lower, 0) + jnp.where(has_upper, mu / s_upper, 0)
        struct = jax.eval_shape(lambda: y)
        dy, solved, delta, n_reg, resolve = regularised_newton_step(
            lin_fn,
            rhs,
            struct,
            nlp,
            sigma,
            state.delta,
            self,
            tags,
            keep_factors=self.max_soc > 0,
            blocks=blocks,
            jump=self.shift_jump,
        )
        # Fraction to the boundary: neither the unknowns nor ν may come closer than a
        # factor 1 - τ to their bounds (0) in one step.
        tau = jnp.maximum(0.99, 1 - mu)
        inf = jnp.full_like(dy, jnp.inf)

        def max_step(value, step, mask):
            ratio = jnp.where(mask & (step < 0), -tau * value / jnp.where(step < 0, step, -1), inf)
            return jnp.minimum(1.0, jnp.min(ratio))

        def primal_step(dy):
            return jnp.minimum(max_step(s_lower, dy, has_lower), max_step(s_upper, -dy, has_upper))

        def dual_step(dy):
            d_lower = jnp.where(has_lower, mu / s_lower - nu_lower - nu_lower / s_lower * dy, 0)
            d_upper = jnp.where(has_upper, mu / s_upper - nu_upper + nu_upper / s_upper * dy, 0)
            alpha = jnp.minimum(
                max_step(nu_lower, d_lower, has_lower), max_step(nu_upper, d_upper, has_upper)
            )
            return d_lower, d_upper, alpha

        alpha_max = primal_step(dy)

        def phi(y):
            s_lower, s_upper = _slacks(y, nlp, has_lower, has_upper)
            barrier = jnp.sum(jnp.where(has_lower, jnp.log(s_lower), 0)) + jnp.sum(
                jnp.where(has_upper, jnp.log(s_upper), 0)
            )
            return nlp.objective(y, args) - mu * barrier

        def theta(y):
            return jnp.sum(jnp.abs(nlp.constraints(y, args)))

        phi0, slope = jax.jvp(phi, (y,), (dy,))
        theta0 = theta(y)
        gamma_theta, gamma_phi = 1e-5, 1e-5

        def accept(alpha, y_t):
            phi_t, theta_t = phi(y_t), theta(y_t)
            # IPOPT's switching condition: where the step is a good descent direction
            # for φ and the iterate nearly feasible, demand Armijo decrease of φ.
            switching = (slope < 0) & (alpha * (-slope) ** 2.3 > theta0**1.1)
            armijo = phi_t <= phi0 + self.sigma_armijo * alpha * slope
            f_type = switching & (theta0 <= state.theta_min)
            sufficient = (theta_t <= (1 - gamma_theta) * theta0) | (
                phi_t <= phi0 - gamma_phi * theta0
            )
            in_filter = jnp.any((theta_t >= state.filter_theta) & (phi_t >= state.filter_phi))
            ok = (
                jnp.where(f_type, armijo, sufficient)
                & jnp.invert(in_filter)
                & (theta_t <= state.theta_max)
            )
            ok = ok & jnp.isfinite(phi_t) & jnp.isfinite(theta_t)
            return ok, f_type & armijo, theta_t

        def trial(alpha, out):
            y_t = y + alpha * dy
            ok, armijo_step, _ = accept(alpha, y_t)
            return ok, (y_t, armijo_step)

        y_first = y + alpha_max * dy
        first_ok, armijo_first, theta_first = accept(alpha_max, y_first)

        # IPOPT's second-order correction (Wächter & Biegler 2006, A-5.5 to ): a
        # rejected full step that raised the infeasibility is corrected for the
        # constraints' curvature, c ← α c(y) + c(y + α dy) in the constraint rows, with
        # the step's own factorisation; up to `max_soc` times while θ keeps falling.
        def constraint_rows(y):
            return jnp.where(nlp.primal_mask, 0, nlp.unprojected(y, args))

        need = solved & jnp.invert(first_ok) & (theta_first >= theta0)

        def soc_cond(carry):
            p, done, *_ = carry
            return jnp.invert(done) & (p < self.max_soc)

        # c ← α c + c(y_last): the first pass from (α_max, c(y), the full step's point),
        # each later one from the last correction's. Every term depends on the carry,
        # so XLA cannot hoist a residual evaluation out of the (mostly idle) loop.
        def soc_body(carry):
            p, _, _, scale, c_prev, y_last, theta_old, _, _ = carry
            c_soc = scale * c_prev + constraint_rows(y_last)
            d = -resolve(jnp.where(nlp.primal_mask, rhs, c_soc))
            alpha_soc = primal_step(d)
            y_soc = y + alpha_soc * d
            ok, armijo_soc, theta_soc = accept(alpha_max, y_soc)
            stop = ok | (theta_soc > self.kappa_soc * theta_old)
            return p + 1, stop, ok, alpha_soc, c_soc, y_soc, theta_soc, d, armijo_soc

        false = jnp.array(False)
        c_here = jnp.where(nlp.primal_mask, 0, g)  # c(y) in the residual's rows
        init = (jnp.array(0), jnp.invert(need), false, alpha_max, c_here, y_first, theta0, dy)
        init = (*init, false)
        if self.max_soc > 0:
            out = lax.while_loop(soc_cond, soc_body, init)
            soc_ok, dy_soc, armijo_soc = out[2], out[7], out[8]
        else:
            soc_ok, dy_soc, armijo_soc = false, dy, false
        alpha_soc = primal_step(dy_soc)
        y_soc = y + alpha_soc * dy_soc
        first = (
            first_ok | soc_ok,
            (jnp.where(soc_ok, y_soc, y_first), jnp.where(soc_ok, armijo_soc, armijo_first)),
        )
        # Without a step (the linear solve or the curvature shifts failed) there is
        # nothing to search along: the step is refused without evaluating φ and θ again.
        max_backtracks = jnp.where(solved, self.max_backtracks, -1)
        _, k, accepted, (y_t, armijo_step) = halving_search(
            trial, alpha_max, max_backtracks, (y, jnp.array(False)), first=first
        )
        moved = solved & accepted
        corrected = soc_ok & (k == 0)
        d_nu_lower, d_nu_upper, alpha_nu = dual_step(jnp.where(corrected, dy_soc, dy))

        # An h-type step (one accepted by the filter rather than by Armijo) adds the
        # current iterate to the filter, as in IPOPT.
        augment = moved & jnp.invert(armijo_step)
        slot = state.filter_next % _FILTER_SIZE
        filter_theta = jnp.where(
            augment,
            state.filter_theta.at[slot].set((1 - gamma_theta) * theta0),
            state.filter_theta,
        )
        filter_phi = jnp.where(
            augment, state.filter_phi.at[slot].set(phi0 - gamma_phi * theta0), state.filter_phi
        )
        filter_next = state.filter_next + augment.astype(state.filter_next.dtype)

        y_new = jnp.where(moved, y_t, y)
        nu_lower = jnp.where(moved, nu_lower + alpha_nu * d_nu_lower, nu_lower)
        nu_upper = jnp.where(moved, nu_upper + alpha_nu * d_nu_upper, nu_upper)
        # Stuck: after `restart_after` failed searches in a row (the curvature shift
        # has grown from delta_init to about delta_max, the steps to nothing), start
        # once more from the restart point in `options`, as IPOPT would enter its
        # restoration phase.
        failures = jnp.where(moved, 0, state.failures + 1)
        restart_point = options.get("restart")
        if restart_point is None:
            restart = jnp.array(False)
        else:
            restart = (failures >= self.restart_after) & jnp.invert(state.restarted)
            if isinstance(restart_point, RestartPoint):
                y_new = restart_point.where(restart, y_new)
            else:
                y_new = jnp.where(restart, restart_point, y_new)
            s_lower, s_upper = _slacks(y_new, nlp, has_lower, has_upper)
            mu0 = jnp.asarray(self.mu_init, mu.dtype)
            nu_lower = jnp.where(restart, jnp.where(has_lower, mu0 / s_lower, 0), nu_lower)
            nu_upper = jnp.where(restart, jnp.where(has_upper, mu0 / s_upper, 0), nu_upper)
            mu = jnp.where(restart, mu0, mu)
            failures = jnp.where(restart, 0, failures)
        # Keep ν within a factor κ_Σ of the primal estimate μ r / s, so that Σ stays a
        # sensible approximation of the barrier Hessian (IPOPT's safeguard).
        s_lower, s_upper = _slacks(y_new, nlp, has_lower, has_upper)
        kappa_sigma = 1e10

        def safeguard(nu, s, mask):
            return jnp.where(mask, jnp.clip(nu, mu / (kappa_sigma * s), kappa_sigma * mu / s), 0)

        nu_lower = safeguard(nu_lower, s_lower, has_lower)
        nu_upper = safeguard(nu_upper, s_upper, has_upper)

        g_new = nlp.unprojected(y_new, args)
        error_mu = self._error(y_new, g_new, nu_lower, nu_upper, mu, nlp)
        error = self._error(y_new, g_new, nu_lower, nu_upper, 0.0, nlp)
        # Monotone barrier update (Fiacco-McCormick): as in IPOPT, μ keeps decreasing
        # within one iteration while the iterate already solves the next barrier
        # problem to 10 μ. The filter starts afresh for the new barrier problem.
        mu_min = self.tol / 11

        def mu_cond(carry):
            mu, error_mu = carry
            return moved & (error_mu <= 10 * mu) & (mu > mu_min)

        def mu_body(carry):
            mu, _ = carry
            mu = jnp.maximum(mu_min, jnp.minimum(0.2 * mu, mu**1.5))
            return mu, self._error(y_new, g_new, nu_lower, nu_upper, mu, nlp)

        mu_new, _ = lax.while_loop(mu_cond, mu_body, (mu, error_mu))
        decrease = mu_new < mu
        filter_theta = jnp.where(decrease, jnp.inf, filter_theta)
        filter_phi = jnp.where(decrease, jnp.inf, filter_phi)

        f_new, aux = fn(y_new, args)
        delta = next_shift(delta, moved, self, floor=True)
        delta = jnp.where(restart, 0.0, delta)
        filter_theta = jnp.where(restart, jnp.inf, filter_theta)
        filter_phi = jnp.where(restart, jnp.inf, filter_phi)
        new_state = _InteriorPointState(
            f=f_new,
            nu_lower=nu_lower,
            nu_upper=nu_upper,
            mu=mu_new,
            error=error,
            delta=delta,
            theta_min=state.theta_min,
            theta_max=state.theta_max,
            filter_theta=filter_theta,
            filter_phi=filter_phi,
            filter_next=filter_next,
            backtracks=state.backtracks + k,
            regularised=state.regularised + (n_reg > 0).astype(state.regularised.dtype),
            corrections=state.corrections + (moved & corrected).astype(state.corrections.dtype),
            failures=failures,
            restarted=state.restarted | restart,
            result=RESULTS.successful,
        )
        return y_new, new_state, aux

    def terminate(self, fn, y, args, options, state: _InteriorPointState, tags):
        del fn, y, args, options, tags
        converged = (self.norm(state.f) <= self.atol) | (state.error <= self.tol)
        failed = state.result != RESULTS.successful
        return converged | failed, RESULTS.where(converged, RESULTS.successful, state.result)

    def postprocess(self, fn, y, aux, args, options, state: _InteriorPointState, tags, result):
        del fn, args, options, tags, result
        return (
            y,
            aux,
            {
                "backtracks": state.backtracks,
                "regularised_steps": state.regularised,
                "second_order_corrections": state.corrections,
                "restarted": state.restarted,
            },
        )


InteriorPointRootFinder.__init__.__doc__ = """**Arguments:**

- `rtol`: unused (kept for the optimistix interface).
- `atol`: stops when the max-norm of the residual passed to `root_find` is at most
    this.
- `norm`: the norm of that test.
- `linear_solver`: the lineax solver for the Newton systems.
- `tol`: also stops when the KKT error (stationarity, complementarity and
    feasibility in the NLP's units) is at most this.
- `mu_init`: the first barrier parameter.
- `max_backtracks`: halvings of the step before giving up on this iteration.
- `kappa`, `delta_init`, `delta_max`, `max_regularisations`: the curvature test and
    Hessian shifts, as in [`toolkit.control.SemismoothNewtonRootFinder`][].
- `sigma_armijo`: the Armijo constant.
- `max_soc`: second-order corrections tried for a rejected full step that raised
    the infeasibility (IPOPT's default 4; 0 switches them off). On the library's
    cart_pole with tenfold shifts only (`shift_jump=False`) they take the barrier
    path from 23 iterations to 15.
- `kappa_soc`: the corrections stop once one fails to reduce the infeasibility by
    this factor (IPOPT's 0.99).
- `shift_jump`: a failed curvature test grows the shift to twice what the failed
    direction needed (κ - dzᵀ(H + D)dz / ‖dz‖²_R) where that is more than tenfold,
    saving the factorisations of the shifts in between (cart_pole's barrier path:
    24 factorisations for 15 steps without, 17 for 14 with). `False`: tenfold only.
- `restart_after`: failed line searches in a row after which the method starts once
    more from `options["restart"]`, where the caller gives one: a point, or a
    `RestartPoint` computed only then ([`toolkit.control.BarrierPath`][] passes
    one, from its [`toolkit.control.Restart`][]).
"""
