import jax
import jax.numpy as jnp
import numpy as np

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


class Trapezoidal(AbstractTranscription):
    """Trapezoidal direct collocation.

    Grid t_k = t0 + k h, h = (t1 - t0)/N. Unknowns x_1..x_N and u_0..u_N (the control
    is piecewise linear between nodes); defects
    x_{k+1} - x_k - h/2 (f_k + f_{k+1}) = 0; cost sum_k h/2 (L_k + L_{k+1}) + phi(x_N);
    control bounds at every node, state bounds at nodes 1..N, x_N = xT when given.
    Second-order accurate.
    """

    N: int

    def layout(self, problem: OptimalControlProblem):
        return self.N + 1, problem.nx + problem.nu, problem.nx

    def _split(self, z, problem):
        return z[:, : problem.nx], z[:, problem.nx :]

    def initial_guess(self, problem, args):
        xs = default_states(problem, self.N)
        us = jnp.broadcast_to(default_controls(problem), (self.N + 1, problem.nu))
        return jnp.concatenate([xs, us], axis=1)

    def bounds(self, problem, args):
        xlo, xhi = node_state_bounds(problem, self.N)
        ulo, uhi = (jnp.broadcast_to(b, (self.N + 1, problem.nu)) for b in problem.u_bounds)
        return jnp.concatenate([xlo, ulo], axis=1), jnp.concatenate([xhi, uhi], axis=1)

    def _node_values(self, z, problem, args):
        xs, us = self._split(z, problem)
        ts = grid(problem, self.N)
        f = jax.vmap(problem.dynamics, in_axes=(0, 0, 0, None))(ts, xs, us, args)
        L = jax.vmap(problem.running_cost, in_axes=(0, 0, 0, None))(ts, xs, us, args)
        return xs, f, L

    def objective(self, z, problem, args):
        xs, _, L = self._node_values(z, problem, args)
        h = self.step(problem)
        return h / 2 * jnp.sum(L[:-1] + L[1:]) + terminal(problem, xs[-1], args)

    def constraints(self, z, problem, args):
        xs, f, _ = self._node_values(z, problem, args)
        h = self.step(problem)
        defects = xs[1:] - xs[:-1] - (h / 2) * (f[:-1] + f[1:])
        return defects_with_final_state(defects, xs[-1], problem)

    def constraint_mask(self, problem) -> np.ndarray:
        return final_state_mask(problem, self.N + 1, problem.nx)

    def trajectory(self, z, problem, args):
        xs, us = self._split(z, problem)
        return grid(problem, self.N), xs, us

    def costates(self, multipliers, problem):
        # The defect multiplier of interval k approximates -p(t_{k+1/2}) for the
        # Hamiltonian H = L + p.f (sign: multipliers enter the Lagrangian as +lambda.c).
        return -multipliers[:-1]


Trapezoidal.__init__.__doc__ = """**Arguments:**

- `N`: the number of intervals (>= 1).
"""
