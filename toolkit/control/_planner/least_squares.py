from collections.abc import Callable

import lineax as lx
import optimistix as optx
from jaxtyping import PyTree, Scalar

from .base import AbstractPlanner


class _ArmijoGaussNewton(optx.AbstractGaussNewton):
    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar]
    descent: optx.NewtonDescent
    search: optx.BacktrackingArmijo
    verbose: Callable[..., None]


def _quiet(**kwargs):
    del kwargs


class KKTLeastSquares(AbstractPlanner):
    """Pose the KKT conditions F(w) = 0 as the least-squares problem min ½‖F(w)‖² and
    solve it with `optimistix.least_squares`: Gauss–Newton steps (with a square
    Jacobian these are Newton steps, solved by the block-tridiagonal solver) and a
    backtracking Armijo line search on ½‖F‖². Differentiated with
    `optimistix.ImplicitAdjoint` (at a zero-residual solution, the implicit function
    theorem on ∇½‖F‖² = JᵀF reduces to the one on F).

    A least-squares solve can stop at a local minimum of ‖F‖ that is not a root;
    `control.plan` then reports `RESULTS.nonzero_residual`.
    """

    atol: float = 1e-9
    max_steps: int = 100
    linear_solver: lx.AbstractLinearSolver | None = None
    rtol: float = 1e-12
    slope: float = 0.1

    def solve(self, residual, w0, data, linear_solver, adjoint):
        solver = _ArmijoGaussNewton(
            rtol=self.rtol,
            atol=self.atol * 1e-3,
            norm=optx.max_norm,
            descent=optx.NewtonDescent(linear_solver=linear_solver),
            search=optx.BacktrackingArmijo(slope=self.slope),
            verbose=_quiet,
        )
        return optx.least_squares(
            residual,
            solver,
            w0,
            data,
            max_steps=self.max_steps,
            adjoint=adjoint,
            throw=False,
        )


KKTLeastSquares.__init__.__doc__ = """**Arguments:**

- `atol`: the solution is accepted when the max-norm of the KKT residual is at most
    this (checked after the solve).
- `max_steps`: Gauss–Newton iterations before giving up.
- `linear_solver`: lineax solver for the steps and the adjoint; by default the
    transcription's own.
- `rtol`: relative tolerance of optimistix's step-size termination test.
- `slope`: the Armijo sufficient-decrease slope.
"""
