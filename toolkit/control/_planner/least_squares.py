from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import PyTree, Scalar

from .base import AbstractPlanner
from .fallback import solve_with_fallback
from .shift_on_failure import ShiftOnFailure


class _GaussNewtonFamily(optx.AbstractGaussNewton):
    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar]
    descent: optx.AbstractDescent
    search: optx.AbstractSearch
    verbose: Callable[..., None]
    residual_atol: float

    def terminate(self, fn, y, args, options, state, tags):
        # optimistix stops on small changes of the iterate and of the loss, which
        # roundoff may never deliver once the residual is at machine precision; a KKT
        # residual within tolerance is a solution, so stop there too.
        terminate, result = super().terminate(fn, y, args, options, state, tags)
        residual = state.f_info.residual
        solved = jnp.invert(state.first_step) & (self.norm(residual) <= self.residual_atol)
        return terminate | solved, result


def _quiet(**kwargs):
    del kwargs


class _InDtype(optx.AbstractDescent):
    """A descent whose initial state's floating scalars take the unknowns' dtype.

    optimistix's `DoglegDescent.init` builds its norms with `jnp.array(0.0)`, float64
    when x64 is enabled; with float32 unknowns its `lax.cond` then meets float32 and
    float64 branches and fails to trace.
    """

    inner: optx.AbstractDescent

    def init(self, y, f_info_struct):
        state = self.inner.init(y, f_info_struct)
        dtype = jnp.result_type(*jax.tree.leaves(y))

        def cast(a):
            if eqx.is_inexact_array(a) and a.ndim == 0 and a.dtype != dtype:
                return a.astype(dtype)
            return a

        return jax.tree.map(cast, state)

    def query(self, y, f_info, state):
        return self.inner.query(y, f_info, state)

    def step(self, step_size, state):
        return self.inner.step(step_size, state)


class KKTLeastSquares(AbstractPlanner):
    """Pose the KKT conditions F(w) = 0 as the least-squares problem min ½‖F(w)‖² and
    solve it with `optimistix.least_squares`, by a Gauss–Newton-family method built
    from an optimistix descent and search:

    - default: `optimistix.DoglegDescent` with `optimistix.ClassicalTrustRegion`
      (Powell's dogleg: a trust region between the Gauss–Newton step, here a Newton
      step solved by the block-tridiagonal solver, and the Cauchy point);
    - `descent=optx.NewtonDescent(), search=optx.BacktrackingArmijo()`: Gauss–Newton
      with a line search;
    - `descent=optx.DampedNewtonDescent(), search=optx.ClassicalTrustRegion()`:
      Levenberg–Marquardt (needs a linear solver for the stacked [J; √λ I] system,
      e.g. `linear_solver=lx.QR()`, so it is dense).

    Differentiated with `optimistix.ImplicitAdjoint` (at a zero-residual solution the
    implicit function theorem on JᵀF = 0 reduces to the one on F). A least-squares
    solve can stop at a local minimum of ‖F‖ that is not a root; `control.plan` then
    reports `RESULTS.nonzero_residual`.

    Gauss–Newton on ‖F‖² does not see the sign of the curvature of the Lagrangian:
    every KKT point is a zero of F, saddle points included. From the default guess of
    cart-pole swing-up on multiple shooting it stops at one (cost 59.1088, one
    negative eigenvalue of the reduced Hessian, against IPOPT's minimum 58.8082). So
    by default (`interior_point_first=True`) the solve starts on the
    [`toolkit.control.InteriorPoint`][] path, whose steps pass the inertia-free
    curvature test (positive curvature along each step, a heuristic for, not a proof
    of, a minimum, as in IPOPT), and Gauss–Newton finishes from there. That finish can
    take tens of steps (Van der Pol at N = 4000: 47 after 14 interior-point steps):
    the first full step from the interior point raises ‖F‖, and a least-squares
    solve, which only accepts decrease, then creeps in its trust region.
    `interior_point_first=False` starts Gauss–Newton at the guess, with the
    interior-point method only as a fallback.
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

    def solve(self, residual, w0, data, linear_solver, adjoint):
        descent = self.descent
        if hasattr(descent, "linear_solver"):
            # A singular block pivot near a degenerate point gets a shifted step (the
            # trust region judges it); the adjoint keeps the plain solver.
            descent = eqx.tree_at(lambda d: d.linear_solver, descent, ShiftOnFailure(linear_solver))
        solver = _GaussNewtonFamily(
            rtol=self.rtol,
            atol=self.atol * 1e-3,
            norm=optx.max_norm,
            descent=_InDtype(descent),
            search=self.search,
            verbose=_quiet,
            residual_atol=self.atol,
        )

        def solve(w0, data, max_steps, adjoint):
            return optx.least_squares(
                residual,
                solver,
                w0,
                data,
                max_steps=max_steps,
                adjoint=adjoint,
                throw=False,
            )

        return solve_with_fallback(
            self,
            solve,
            residual,
            w0,
            data,
            linear_solver,
            adjoint,
            interior_point_first=self.interior_point_first,
        )


KKTLeastSquares.__init__.__doc__ = """**Arguments:**

- `atol`: the solution is accepted when the max-norm of the KKT residual is at most
    this (checked after the solve). Default `None`: follows the problem's dtype, 1e-9
    in float64 and 1e-4 in float32.
- `max_steps`: iterations before giving up.
- `linear_solver`: lineax solver for the steps and the adjoint; by default the
    transcription's own. It replaces the descent's own `linear_solver`.
- `descent`: an optimistix descent (default `optx.DoglegDescent()`).
- `search`: an optimistix search (default `optx.ClassicalTrustRegion()`).
- `rtol`: relative tolerance of optimistix's step-size termination test.
- `fallback_after`: with `interior_point_first=False`, iterations before falling
    back to the interior-point method; 0 disables the fallback.
- `interior_point_steps`: the most iterations of the interior-point method.
- `interior_point_first`: start on the interior-point path and finish with the
    least-squares method (default), rather than start with the least-squares method.
"""
