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

    def lagrangian_derivatives(self, z, multipliers, problem, args):
        # Every nonlinear term is at one node: f_k enters defects k-1 and k (each
        # with -h/2), L_k the cost with h/2 or h; so ∂²ℒ is block-diagonal, and each
        # block is the Hessian of one node's weighted L and λ-weighted f, taken
        # for all nodes at once.
        nx, nu = problem.nx, problem.nu
        h = self.step(problem)
        dtype = z.dtype
        weights = jnp.full((self.N + 1,), h, dtype).at[0].set(h / 2).at[-1].set(h / 2)
        defect = multipliers[:-1]
        zero = jnp.zeros((1, nx), dtype)
        on_f = -(h / 2) * (jnp.concatenate([zero, defect]) + jnp.concatenate([defect, zero]))

        def node(t, zk, weight, coefficient):
            def dynamics(zz):
                return problem.dynamics(t, zz[:nx], zz[nx:], args)

            def lagrangian(zz):
                running = problem.running_cost(t, zz[:nx], zz[nx:], args)
                return weight * running + coefficient @ dynamics(zz)

            return jax.jacfwd(dynamics)(zk), jax.hessian(lagrangian)(zk)

        F, H = jax.vmap(node)(grid(problem, self.N), z, weights, on_f)
        if problem.terminal_cost is not None:
            xN = z[-1, :nx]
            phi = jax.hessian(lambda x: problem.terminal_cost(x, args))(xN)
            H = H.at[-1, :nx, :nx].add(phi)
        eye = jnp.eye(nx, nx + nu, dtype=dtype)
        # Defect k: x_{k+1} - x_k - h/2 (f_k + f_{k+1}); block N: x_N - xT.
        A = jnp.concatenate([-eye[None] - (h / 2) * F[:-1], eye[None]])
        B = jnp.concatenate([eye[None] - (h / 2) * F[1:], jnp.zeros_like(eye)[None]])
        return H, None, A, B

    def _defects(self, xs, f, problem):
        h = self.step(problem)
        defects = xs[1:] - xs[:-1] - (h / 2) * (f[:-1] + f[1:])
        return defects_with_final_state(defects, xs[-1], problem)


Trapezoidal.__init__.__doc__ = """**Arguments:**

- `N`: the number of intervals (>= 1).
"""
