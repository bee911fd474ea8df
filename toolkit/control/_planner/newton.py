import lineax as lx
import optimistix as optx

from .base import AbstractPlanner
from .semismooth_newton import SemismoothNewton


class KKTNewton(AbstractPlanner):
    """Solve the KKT conditions as a root-finding problem, `optimistix.root_find`
    with [`toolkit.control.SemismoothNewton`][] (Armijo line search on ½‖F‖²), and
    differentiate through the solution with `optimistix.ImplicitAdjoint`.
    """

    atol: float = 1e-9
    max_steps: int = 100
    linear_solver: lx.AbstractLinearSolver | None = None
    state_bound_continuation: bool = True
    max_backtracks: int = 30

    def solve(self, residual, w0, data, linear_solver, adjoint):
        solver = SemismoothNewton(
            rtol=0.0,
            atol=self.atol,
            linear_solver=linear_solver,
            max_backtracks=self.max_backtracks,
        )
        return optx.root_find(
            residual,
            solver,
            w0,
            data,
            options={"nlp": residual.nlp_info(*data)},
            max_steps=self.max_steps,
            adjoint=adjoint,
            throw=False,
        )


KKTNewton.__init__.__doc__ = """**Arguments:**

- `atol`: converged when the max-norm of the (1/h-scaled) KKT residual is at most
    this. 1e-9 suits float64; use ~1e-4 in float32.
- `max_steps`: Newton iterations before giving up (reported in `result`).
- `state_bound_continuation`: if the solve fails on a problem with a state box, solve
    it without the box and retry from that solution (see `control.plan`).
- `linear_solver`: a lineax solver for the Newton and adjoint systems; by default
    the transcription's own choice (block-tridiagonal for the banded ones).
- `max_backtracks`: step halvings allowed in the line search.
"""
