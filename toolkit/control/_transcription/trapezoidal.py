import jax
import jax.numpy as jnp

from .base import (
    AbstractNodeTranscription,
    defects_with_final_state,
    grid,
    terminal,
)


class Trapezoidal(AbstractNodeTranscription):
    """Trapezoidal direct collocation.

    Grid t_k = t0 + k h, h = (t1 - t0)/N. Unknowns x_1..x_N and u_0..u_N (the control
    is piecewise linear between nodes); defects
    x_{k+1} - x_k - h/2 (f_k + f_{k+1}) = 0; cost sum_k h/2 (L_k + L_{k+1}) + phi(x_N);
    control bounds at every node, state bounds at nodes 1..N, x_N = xT when given.
    Second-order accurate.
    """

    N: int

    def unknowns_reach(self, problem):
        # The nonlinear terms, f and L, are at one node each.
        return ("next",) * (problem.nx + problem.nu)

    def _node_values(self, z, problem, args):
        xs, us = self.split(z, problem)
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
        return self._defects(xs, f, problem)

    def objective_and_constraints(self, z, problem, args):
        xs, f, L = self._node_values(z, problem, args)
        h = self.step(problem)
        objective = h / 2 * jnp.sum(L[:-1] + L[1:]) + terminal(problem, xs[-1], args)
        return objective, self._defects(xs, f, problem)

    def _defects(self, xs, f, problem):
        h = self.step(problem)
        defects = xs[1:] - xs[:-1] - (h / 2) * (f[:-1] + f[1:])
        return defects_with_final_state(defects, xs[-1], problem)


Trapezoidal.__init__.__doc__ = """**Arguments:**

- `N`: the number of intervals (>= 1).
"""
