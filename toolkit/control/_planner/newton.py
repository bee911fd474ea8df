import lineax as lx
import optimistix as optx
from jaxtyping import Array, Int

from .base import AbstractPlanner
from .fallback import freeze, solve_in_passes, solve_with_fallback
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

    atol: float | None = None
    max_steps: int = 100
    linear_solver: lx.AbstractLinearSolver | None = None
    max_backtracks: int = 30
    fallback_after: int = 10
    interior_point_steps: int = 300

    def solve(self, residual, w0, data, linear_solver, adjoint):
        if self.fallback_after > 0 and isinstance(adjoint, optx.ImplicitAdjoint):

            def limited(w0, data, step_limit):
                return self.newton_pass(residual, w0, data, linear_solver, step_limit, adjoint)

            return solve_in_passes(self, limited, residual, w0, data, linear_solver, adjoint)

        def solve(w0, data, max_steps, adjoint):
            return self.newton_pass(residual, w0, data, linear_solver, None, adjoint, max_steps)

        return solve_with_fallback(self, solve, residual, w0, data, linear_solver, adjoint)

    def newton_pass(
        self,
        residual,
        w0,
        data,
        linear_solver: lx.AbstractLinearSolver,
        step_limit: Int[Array, ""] | None,
        adjoint: optx.AbstractAdjoint,
        max_steps: int | None = None,
    ) -> optx.Solution:
        """One semismooth Newton solve from `w0`, without the fallback, stopping after
        `step_limit` iterations (an array: one compiled program serves every limit)
        or `max_steps` (default `self.max_steps`)."""
        options = {"nlp": residual.nlp_info(*freeze(data))}
        if step_limit is not None:
            options["step_limit"] = step_limit
        newton = SemismoothNewton(
            rtol=0.0,
            atol=self.atol,
            linear_solver=linear_solver,
            max_backtracks=self.max_backtracks,
        )
        return optx.root_find(
            residual,
            newton,
            w0,
            data,
            options=options,
            max_steps=self.max_steps if max_steps is None else max_steps,
            adjoint=adjoint,
            throw=False,
        )


KKTNewton.__init__.__doc__ = """**Arguments:**

- `atol`: converged when the max-norm of the (1/h-scaled) KKT residual is at most
    this. Default `None`: follows the problem's dtype, 1e-9 in float64 and 1e-4 in
    float32.
- `max_steps`: semismooth Newton iterations of the final solve before giving up
    (reported in `result`).
- `linear_solver`: a lineax solver for the Newton and adjoint systems; by default
    the transcription's own choice (block-tridiagonal for the banded ones).
- `max_backtracks`: step halvings allowed in the line search.
- `fallback_after`: semismooth Newton iterations before falling back to the
    interior-point method; 0 disables the fallback. On the problem library,
    semismooth Newton either converges in a few iterations or stalls (see
    benchmarks/README.md): the default falls back soon after, with a margin.
- `interior_point_steps`: the most iterations of the interior-point method.
"""
