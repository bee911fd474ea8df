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
    interval_derivatives,
    node_state_bounds,
    terminal,
)


class HermiteSimpson(AbstractTranscription):
    """Hermite–Simpson direct collocation, compressed form, with midpoint controls.

    Grid t_k = t0 + k h. Unknowns x_1..x_N, node controls u_0..u_N and midpoint
    controls m_0..m_{N-1} at t_k + h/2 (the control is piecewise quadratic through
    u_k, m_k, u_{k+1}). With f_k = f(t_k, x_k, u_k),
    x_mid = (x_k + x_{k+1})/2 + h/8 (f_k - f_{k+1}) and
    f_mid = f(t_k + h/2, x_mid, m_k): defects
    x_{k+1} - x_k - h/6 (f_k + 4 f_mid + f_{k+1}) = 0; cost
    sum_k h/6 (L_k + 4 L_mid + L_{k+1}) + phi(x_N). Control bounds at nodes and
    midpoints, state bounds at nodes 1..N, x_N = xT when given. Fourth-order
    accurate in the states for smooth solutions.

    Block k holds [x_k, u_k, m_k]; m_N does not exist and is fixed at 0.
    """

    N: int

    def layout(self, problem: OptimalControlProblem):
        return self.N + 1, problem.nx + 2 * problem.nu, problem.nx

    def unknowns_reach(self, problem):
        # x_k and u_k enter the midpoints of intervals k-1 and k; m_k only interval k's.
        return ("both",) * (problem.nx + problem.nu) + ("next",) * problem.nu

    def _split(self, z, problem):
        nx, nu = problem.nx, problem.nu
        return z[:, :nx], z[:, nx : nx + nu], z[:, nx + nu :]

    def initial_guess(self, problem, args, states=None):
        xs = default_states(problem, self.N) if states is None else states
        u = jnp.broadcast_to(default_controls(problem), (self.N + 1, problem.nu))
        return jnp.concatenate([xs, u, u.at[-1].set(0)], axis=1)

    def bounds(self, problem, args):
        xlo, xhi = node_state_bounds(problem, self.N)
        ulo, uhi = (jnp.broadcast_to(b, (self.N + 1, problem.nu)) for b in problem.u_bounds)
        mlo, mhi = ulo.at[-1].set(0), uhi.at[-1].set(0)
        lo = jnp.concatenate([xlo, ulo, mlo], axis=1)
        hi = jnp.concatenate([xhi, uhi, mhi], axis=1)
        return lo, hi

    def _values(self, z, problem, args):
        xs, us, ms = self._split(z, problem)
        ts = grid(problem, self.N)
        h = self.step(problem)
        f_of = jax.vmap(problem.dynamics, in_axes=(0, 0, 0, None))
        L_of = jax.vmap(problem.running_cost, in_axes=(0, 0, 0, None))
        f = f_of(ts, xs, us, args)
        L = L_of(ts, xs, us, args)
        x_mid = (xs[:-1] + xs[1:]) / 2 + (h / 8) * (f[:-1] - f[1:])
        t_mid = ts[:-1] + h / 2
        f_mid = f_of(t_mid, x_mid, ms[:-1], args)
        L_mid = L_of(t_mid, x_mid, ms[:-1], args)
        return xs, f, L, f_mid, L_mid

    def objective(self, z, problem, args):
        xs, _, L, _, L_mid = self._values(z, problem, args)
        h = self.step(problem)
        running = (h / 6) * jnp.sum(L[:-1] + 4 * L_mid + L[1:])
        return running + terminal(problem, xs[-1], args)

    def constraints(self, z, problem, args):
        xs, f, _, f_mid, _ = self._values(z, problem, args)
        return self._defects(xs, f, f_mid, problem)

    def objective_and_constraints(self, z, problem, args):
        xs, f, L, f_mid, L_mid = self._values(z, problem, args)
        h = self.step(problem)
        running = (h / 6) * jnp.sum(L[:-1] + 4 * L_mid + L[1:])
        objective = running + terminal(problem, xs[-1], args)
        return objective, self._defects(xs, f, f_mid, problem)

    def lagrangian_derivatives(self, z, multipliers, problem, args):
        return interval_derivatives(self._interval, z, multipliers, problem, args)

    def _interval(self, t0, t1, z0, z1, problem, args):
        # Interval k of `_values` and `_defects` alone: `(defect, cost)` from z_k
        # and z_{k+1} (whose midpoint control it does not use).
        nx, nu = problem.nx, problem.nu
        h = self.step(problem)
        x0, u0, m0 = z0[:nx], z0[nx : nx + nu], z0[nx + nu :]
        x1, u1 = z1[:nx], z1[nx : nx + nu]
        f0, f1 = problem.dynamics(t0, x0, u0, args), problem.dynamics(t1, x1, u1, args)
        x_mid = (x0 + x1) / 2 + (h / 8) * (f0 - f1)
        t_mid = t0 + h / 2
        f_mid = problem.dynamics(t_mid, x_mid, m0, args)
        L0, L1 = problem.running_cost(t0, x0, u0, args), problem.running_cost(t1, x1, u1, args)
        L_mid = problem.running_cost(t_mid, x_mid, m0, args)
        defect = x1 - x0 - (h / 6) * (f0 + 4 * f_mid + f1)
        return defect, (h / 6) * (L0 + 4 * L_mid + L1)

    def _defects(self, xs, f, f_mid, problem):
        h = self.step(problem)
        defects = xs[1:] - xs[:-1] - (h / 6) * (f[:-1] + 4 * f_mid + f[1:])
        return defects_with_final_state(defects, xs[-1], problem)

    def constraint_mask(self, problem) -> np.ndarray:
        return final_state_mask(problem, self.N + 1, problem.nx)

    def trajectory(self, z, problem, args):
        xs, us, _ = self._split(z, problem)
        return grid(problem, self.N), xs, us

    def costates(self, multipliers, problem):
        return -multipliers[:-1]


HermiteSimpson.__init__.__doc__ = """**Arguments:**

- `N`: the number of intervals (>= 1).
"""
