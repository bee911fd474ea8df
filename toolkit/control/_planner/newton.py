import lineax as lx
import optimistix as optx

from .base import AbstractPlanner
from .fallback import solve_in_passes, solve_with_fallback
from .semismooth_newton import SemismoothNewton


class KKTNewton(AbstractPlanner):
    """Solve the KKT conditions as a root-finding problem, `optimistix.root_find`
    with [`toolkit.control.SemismoothNewton`][], and differentiate through the
    solution with `optimistix.ImplicitAdjoint`.

    Semismooth Newton converges fast from a good guess but its active-set steps can
    stall far from the solution (a pendulum swing-up against a torque limit, from a
    straight-line guess). If it has not converged after `fallback_after` iterations,
    the solve restarts from the initial guess with the
    [`toolkit.control.InteriorPoint`][] method, which follows the smooth barrier path
    to near the solution, and semismooth Newton then finishes from there. Only the
    last solve carries the implicit derivative.
    """

    atol: float = 1e-9
    max_steps: int = 100
    linear_solver: lx.AbstractLinearSolver | None = None
    max_backtracks: int = 30
    fallback_after: int = 30
    interior_point_steps: int = 300

    def solve(self, residual, w0, data, linear_solver, adjoint):
        nlp = residual.nlp_info(*data)
        newton = SemismoothNewton(
            rtol=0.0,
            atol=self.atol,
            linear_solver=linear_solver,
            max_backtracks=self.max_backtracks,
        )

        def solve(w0, data, max_steps, adjoint, step_limit=None):
            options = {"nlp": nlp}
            if step_limit is not None:
                options["step_limit"] = step_limit
            return optx.root_find(
                residual,
                newton,
                w0,
                data,
                options=options,
                max_steps=max_steps,
                adjoint=adjoint,
                throw=False,
            )

        if self.fallback_after > 0 and isinstance(adjoint, optx.ImplicitAdjoint):

            def limited(w0, data, step_limit):
                return solve(w0, data, self.max_steps, adjoint, step_limit)

            return solve_in_passes(self, limited, residual, w0, data, linear_solver, adjoint)
        return solve_with_fallback(self, solve, residual, w0, data, linear_solver, adjoint)


KKTNewton.__init__.__doc__ = """**Arguments:**

- `atol`: converged when the max-norm of the (1/h-scaled) KKT residual is at most
    this. 1e-9 suits float64; use ~1e-4 in float32.
- `max_steps`: semismooth Newton iterations of the final solve before giving up
    (reported in `result`).
- `linear_solver`: a lineax solver for the Newton and adjoint systems; by default
    the transcription's own choice (block-tridiagonal for the banded ones).
- `max_backtracks`: step halvings allowed in the line search.
- `fallback_after`: semismooth Newton iterations before falling back to the
    interior-point method; 0 disables the fallback.
- `interior_point_steps`: the most iterations of the interior-point method.
"""
