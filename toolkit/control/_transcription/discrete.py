import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Scalar

from .._discrete_dynamics import DiscreteDynamics as DiscreteDynamics
from .._problem import OptimalControlProblem
from .base import (
    AbstractTranscription,
    default_controls,
    default_states,
    defects_with_final_state,
    final_state_mask,
    grid,
    node_state_bounds,
    terminal,
)


class Discrete(AbstractTranscription):
    """The transcription of a discrete-time problem, whose `dynamics` is a map wrapped
    in [`toolkit.control.DiscreteDynamics`][].

    Grid t_k = t0 + k h, h = (t1 - t0)/N. Unknowns x_1..x_N and u_0..u_{N-1}; defects
    x_{k+1} - g(t_k, x_k, u_k) = 0 for k = 0..N-1; cost
    sum_{k=0}^{N-1} L(t_k, x_k, u_k) + phi(x_N); control bounds at k = 0..N-1, state
    bounds at k = 1..N, x_N = xT when given. This is the problem itself, not an
    approximation of it.

    Block k holds [x_k, u_k] as in [`toolkit.control.Trapezoidal`][], so the KKT
    Jacobian keeps its block-tridiagonal structure; u_N does not exist: it is fixed
    at 0 among the unknowns and reported as NaN in `Solution.us`.
    """

    N: int

    def unknowns_reach(self, problem):
        # The nonlinear terms, g and L, are at one node each.
        return ("next",) * (problem.nx + problem.nu)

    def check(self, problem: OptimalControlProblem) -> None:
        dynamics = problem.dynamics
        if not isinstance(dynamics, DiscreteDynamics):
            raise ValueError(
                "`Discrete` transcribes a discrete-time map, but this problem's "
                "`dynamics` is not wrapped in `control.DiscreteDynamics`: it is read as "
                "dx/dt = f(t, x, u, args). Plan it with a continuous-time transcription "
                "(`control.Trapezoidal(N)`, ...), or wrap a map g as "
                "`dynamics=control.DiscreteDynamics(g)`."
            )
        if dynamics.steps is not None and dynamics.steps != self.N:
            raise ValueError(
                f"This discrete-time problem has {dynamics.steps} steps, but "
                f"`Discrete(N={self.N})` was asked for: use `Discrete({dynamics.steps})`."
            )

    def step(self, problem: OptimalControlProblem) -> Scalar:
        # The scale of the defects and of the cost terms, which the KKT residual divides
        # out: a map's are O(1), not O(h) as for an integrated vector field.
        return jnp.ones((), problem.t0.dtype)

    def layout(self, problem: OptimalControlProblem):
        return self.N + 1, problem.nx + problem.nu, problem.nx

    def _split(self, z, problem):
        return z[:, : problem.nx], z[:, problem.nx :]

    def initial_guess(self, problem, args, states=None):
        xs = default_states(problem, self.N) if states is None else states
        us = jnp.broadcast_to(default_controls(problem), (self.N + 1, problem.nu))
        return jnp.concatenate([xs, us.at[-1].set(0)], axis=1)

    def bounds(self, problem, args):
        xlo, xhi = node_state_bounds(problem, self.N)
        ulo, uhi = (jnp.broadcast_to(b, (self.N + 1, problem.nu)) for b in problem.u_bounds)
        lo = jnp.concatenate([xlo, ulo.at[-1].set(0)], axis=1)
        hi = jnp.concatenate([xhi, uhi.at[-1].set(0)], axis=1)
        return lo, hi

    def _steps(self, z, problem, args):
        xs, us = self._split(z, problem)
        ts = grid(problem, self.N)[:-1]
        next_xs = jax.vmap(problem.dynamics, in_axes=(0, 0, 0, None))(ts, xs[:-1], us[:-1], args)
        L = jax.vmap(problem.running_cost, in_axes=(0, 0, 0, None))(ts, xs[:-1], us[:-1], args)
        return xs, next_xs, L

    def objective(self, z, problem, args):
        xs, _, L = self._steps(z, problem, args)
        return jnp.sum(L) + terminal(problem, xs[-1], args)

    def constraints(self, z, problem, args):
        xs, next_xs, _ = self._steps(z, problem, args)
        return defects_with_final_state(xs[1:] - next_xs, xs[-1], problem)

    def constraint_mask(self, problem) -> np.ndarray:
        return final_state_mask(problem, self.N + 1, problem.nx)

    def trajectory(self, z, problem, args):
        xs, us = self._split(z, problem)
        return grid(problem, self.N), xs, us.at[-1].set(jnp.nan)

    def costates(self, multipliers, problem):
        # The multiplier of the defect of step k is -p_{k+1} for the discrete
        # Hamiltonian H_k = L_k + p_{k+1}.g_k (as for the collocation transcriptions).
        return -multipliers[:-1]


Discrete.__init__.__doc__ = """**Arguments:**

- `N`: the number of steps (>= 1); the problem's own number when its
    `DiscreteDynamics` fixes one.
"""
