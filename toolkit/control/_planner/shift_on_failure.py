from typing import Any

import jax
import jax.numpy as jnp
import lineax as lx

from .frozen import tie


def solve_failed(solution, result: lx.RESULTS):
    """Whether a lineax solve failed: its solver reported a failure (a singular
    pivot), or its solution is not finite."""
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(solution)]))
    return (result != lx.RESULTS.successful) | jnp.invert(finite)


class ShiftOnFailure(lx.AbstractLinearSolver):
    """Solve `A x = b` with `inner`; where that fails (a singular pivot, a non-finite
    solution), solve `(A + delta I) x = b` instead.

    For the Gauss–Newton steps of [`toolkit.control.KKTLeastSquares`][]: the
    block-tridiagonal solver does not pivot across blocks, so near a degenerate KKT
    point (a bound active with a zero multiplier) a diagonal Schur complement can be
    singular although the problem is not. Non-square operators are solved by `inner`
    alone. The shifted step is only a proposal, which
    the trust region accepts or rejects on the actual decrease of the residual. The
    shifted solve runs in a loop that runs at most once, so under `jax.vmap` it runs
    only if some element needs it. Not used for the implicit adjoint.
    """

    inner: lx.AbstractLinearSolver
    delta: float | None = None

    def shift(self, dtype) -> float:
        """The shift used for operands of `dtype`."""
        if self.delta is not None:
            return self.delta
        # 1e-8 is below the resolution of O(1) entries in float32 (eps 1.2e-7) and
        # would shift nothing there.
        return 1e-8 if jnp.dtype(dtype) == jnp.float64 else float(jnp.finfo(dtype).eps) ** 0.5

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        return self.inner.init(operator, options), operator

    def compute(self, state, vector, options: dict[str, Any]):
        inner_state, operator = state
        x, result, stats = self.inner.compute(inner_state, vector, options)
        if operator.in_structure() != operator.out_structure():
            return x, result, stats  # not square (Levenberg–Marquardt's stacked system)
        failed = solve_failed(x, result)

        def shifted(carry):
            # Tied to the carry, or XLA would hoist the shifted solve (loop-invariant)
            # out of the loop and run it at every solve, failed or not.
            (op, rhs, opts), _ = tie((operator, vector, options), carry[0])
            shift = lx.IdentityLinearOperator(op.in_structure(), op.out_structure())
            delta = self.shift(jax.tree.leaves(rhs)[0].dtype)
            sol = lx.linear_solve(op + delta * shift, rhs, self.inner, options=opts, throw=False)
            x = jax.tree.map(lambda a, b: jnp.where(carry[1], a, b), sol.value, carry[0])
            return x, jnp.asarray(False), lx.RESULTS.where(carry[1], sol.result, carry[2])

        x, _, result = jax.lax.while_loop(
            lambda carry: jnp.any(carry[1]), shifted, (x, failed, result)
        )
        return x, result, stats

    def transpose(self, state, options: dict[str, Any]):
        inner_state, operator = state
        inner_state, options = self.inner.transpose(inner_state, options)
        return (inner_state, operator.T), options

    def conj(self, state, options: dict[str, Any]):
        inner_state, operator = state
        inner_state, options = self.inner.conj(inner_state, options)
        return (inner_state, lx.conj(operator)), options

    def assume_full_rank(self):
        return self.inner.assume_full_rank()


ShiftOnFailure.__init__.__doc__ = """**Arguments:**

- `inner`: the lineax solver to try first and to solve the shifted system with.
- `delta`: the shift; by default 1e-8 in float64 and the square root of the dtype's
    machine epsilon otherwise (3.5e-4 in float32).
"""
