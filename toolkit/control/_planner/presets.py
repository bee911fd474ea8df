"""The default planners: presets of a composition of strategy objects, with the
settings a user most often changes as their own fields."""

import lineax as lx
import optimistix as optx

from .barrier import BarrierPath
from .base import AbstractPlanner
from .fallback import Fallback
from .gauss_newton import GaussNewton
from .newton import Newton


class KKTNewton(AbstractPlanner):
    """Solve the KKT conditions as a root-finding problem by semismooth Newton,
    rescued by the interior-point method, and differentiate through the solution with
    `optimistix.ImplicitAdjoint`: the preset

        Fallback(Newton(...), BarrierPath(...), after=fallback_after)

    (see [`toolkit.control.Fallback`][], [`toolkit.control.Newton`][] and
    [`toolkit.control.BarrierPath`][]), or `Newton(...)` alone with
    `fallback_after=0`.

    Semismooth Newton converges fast from a good guess but its active-set steps can
    stall far from the solution (a pendulum swing-up against a torque limit, from a
    straight-line guess). If it has not converged after `fallback_after` iterations,
    or stalls before (a line search that needs 3 halvings or fails; see
    [`toolkit.control.Newton`][]'s `stall_halvings`), the solve restarts from the
    initial guess with the [`toolkit.control.InteriorPointRootFinder`][] method, which
    follows the smooth barrier path to near the solution, and semismooth Newton then
    finishes from there. Only the last solve carries the implicit derivative.
    """

    atol: float | None = None
    max_steps: int = 100
    linear_solver: lx.AbstractLinearSolver | None = None
    max_backtracks: int = 30
    fallback_after: int = 10
    interior_point_steps: int = 300

    def composition(self) -> AbstractPlanner:
        # With a rescue behind it, Newton jumps to the shift a step needs (see
        # `Newton.shift_jump`); alone it climbs the tenfold ladder.
        newton = Newton(
            self.atol,
            self.max_steps,
            self.linear_solver,
            self.max_backtracks,
            shift_jump=self.fallback_after > 0,
        )
        if self.fallback_after <= 0:
            return newton
        rescue = BarrierPath(self.atol, self.interior_point_steps, self.linear_solver)
        return Fallback(newton, rescue, after=self.fallback_after)

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        return self.composition().solve(residual, w0, problem_args, linear_solver, adjoint)


KKTNewton.__init__.__doc__ = (
    Newton.__init__.__doc__
    + """- `fallback_after`: semismooth Newton iterations before falling back to the
    interior-point method; 0 disables the fallback. On the problem library,
    semismooth Newton either converges in a few iterations or stalls (see
    benchmarks/README.md): the default falls back soon after, with a margin.
- `interior_point_steps`: the most iterations of the interior-point method.
"""
)


class KKTLeastSquares(AbstractPlanner):
    """Pose the KKT conditions F(w) = 0 as the least-squares problem min ½‖F(w)‖² and
    solve it by a Gauss–Newton-family method ([`toolkit.control.GaussNewton`][]),
    started on the interior-point path: the preset

        Fallback(GaussNewton(...), BarrierPath(...), after=0)

    or with `interior_point_first=False`, `Fallback(..., after=fallback_after)` (and
    `GaussNewton(...)` alone if `fallback_after=0`).

    Gauss–Newton on ‖F‖² does not see the sign of the curvature of the Lagrangian:
    every KKT point is a zero of F, saddle points included. From the default guess of
    cart-pole swing-up on multiple shooting it stops at one (cost 59.1088, one
    negative eigenvalue of the reduced Hessian, against IPOPT's minimum 58.8082). So
    by default the solve starts on the [`toolkit.control.InteriorPointRootFinder`][] path, whose
    steps pass the inertia-free curvature test (positive curvature along each step, a
    heuristic for, not a proof of, a minimum, as in IPOPT), and Gauss–Newton finishes
    from there. The first full step from the interior point often raises ‖F‖ (it
    crosses a bound), which a least-squares search, accepting only decrease,
    answers by creeping in its trust region; so the finish first takes two full
    Newton steps and keeps the best of the three points (a watchdog, `watchdog`).
    """

    atol: float | None = None
    max_steps: int = 200
    linear_solver: lx.AbstractLinearSolver | None = None
    descent: optx.AbstractDescent = optx.DoglegDescent()
    search: optx.AbstractSearch = optx.ClassicalTrustRegion()
    rtol: float = 1e-13
    fallback_after: int = 60
    interior_point_steps: int = 300
    interior_point_first: bool = True
    watchdog: int | None = None

    def composition(self) -> AbstractPlanner:
        watchdog = self.watchdog
        if watchdog is None:
            watchdog = 2 if self.interior_point_first else 0
        gauss_newton = GaussNewton(
            self.atol,
            self.max_steps,
            self.linear_solver,
            self.descent,
            self.search,
            self.rtol,
            watchdog,
        )
        after = 0 if self.interior_point_first else self.fallback_after
        if after <= 0 and not self.interior_point_first:
            return gauss_newton
        rescue = BarrierPath(self.atol, self.interior_point_steps, self.linear_solver)
        return Fallback(gauss_newton, rescue, after=after)

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        return self.composition().solve(residual, w0, problem_args, linear_solver, adjoint)


KKTLeastSquares.__init__.__doc__ = (
    GaussNewton.__init__.__doc__
    + """- `fallback_after`: with `interior_point_first=False`, iterations before falling
    back to the interior-point method; 0 disables the fallback.
- `interior_point_steps`: the most iterations of the interior-point method.
- `interior_point_first`: start on the interior-point path and finish with the
    least-squares method (default), rather than start with the least-squares method.

`search=control.NonmonotoneTrustRegion()` judges each step against the largest of
the last 10 accepted losses: on the problem library's bear_populations (trapezoidal)
it finishes in 110 iterations where the default takes 196, at the same optimum, and
changes no other problem's count at its default transcription by more than 2. It is
not the default because on rocket_landing with single shooting, where the barrier
path runs 235 to 300 iterations depending on rounding, it failed where the default
converged (and the other way round with XLA's optimisations on).

The default `watchdog=None` tries 2 full Newton steps after the interior-point path
(where the first full step often raises ‖F‖ by crossing a bound and the second
lands near the root) and none when Gauss–Newton starts from the guess.
"""
)
