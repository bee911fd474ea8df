from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, Bool, Int, PyTree, Scalar

from optimistix import RESULTS


class _NewtonState(eqx.Module):
    f: Array
    merit: Scalar
    step_length: Scalar
    backtracks: Int[Array, ""]
    result: RESULTS


def _merit(f: Array) -> Scalar:
    return 0.5 * jnp.sum(f**2)


class SemismoothNewton(optx.AbstractRootFinder):
    """Semismooth Newton's method with an Armijo backtracking line search on the
    merit function ½‖F‖², for a residual F that is piecewise smooth (the KKT
    conditions with bounds in projection form are).

    Each step solves J p = F with the given linear solver (J an element of the
    generalised Jacobian, obtained by autodiff), then backtracks y - α p until
    ½‖F‖² decreases by the factor (1 - 2 σ α). Trial points at which F is not
    finite (a NaN in the dynamics, say) are rejected like any other failed trial.
    Converges when ‖F‖_∞ <= atol.
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar] = optx.max_norm
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)
    sigma: float = 1e-4
    max_backtracks: int = 30

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del options, f_struct, aux_struct, tags
        f, _ = fn(y, args)
        merit = _merit(f)
        result = RESULTS.where(jnp.isfinite(merit), RESULTS.successful, RESULTS.nonfinite)
        return _NewtonState(
            f=f,
            merit=merit,
            step_length=jnp.array(1.0, merit.dtype),
            backtracks=jnp.array(0),
            result=result,
        )

    def step(self, fn, y, args, options, state: _NewtonState, tags):
        del options
        f, lin_fn, aux = jax.linearize(lambda _y: fn(_y, args), y, has_aux=True)
        operator = lx.FunctionLinearOperator(lin_fn, jax.eval_shape(lambda: y), tags=tags)
        sol = lx.linear_solve(operator, f, self.linear_solver, throw=False)
        direction = sol.value
        merit = _merit(f)

        def trial(alpha):
            y_new = y - alpha * direction
            f_new, aux_new = fn(y_new, args)
            return y_new, f_new, aux_new

        def cond(carry):
            alpha, _, f_new, _, k = carry
            m = _merit(f_new)
            accepted = jnp.isfinite(m) & (m <= (1 - 2 * self.sigma * alpha) * merit)
            return jnp.invert(accepted) & (k < self.max_backtracks)

        def body(carry):
            alpha, _, _, _, k = carry
            alpha = alpha / 2
            y_new, f_new, aux_new = trial(alpha)
            return alpha, y_new, f_new, aux_new, k + 1

        alpha0 = jnp.array(1.0, merit.dtype)
        init = (alpha0, *trial(alpha0), jnp.array(0))
        alpha, y_new, f_new, aux_new, k = lax.while_loop(cond, body, init)
        # A step that never produced a finite residual is not taken.
        ok = jnp.isfinite(_merit(f_new))
        y_new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), y_new, y)
        f_new = jnp.where(ok, f_new, f)
        aux_new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), aux_new, aux)
        linear_failed = sol.result != lx.RESULTS.successful
        result = RESULTS.where(
            linear_failed,
            RESULTS.promote(lx.RESULTS.singular),
            RESULTS.where(ok, RESULTS.successful, RESULTS.nonfinite),
        )
        new_state = _NewtonState(
            f=f_new,
            merit=_merit(f_new),
            step_length=alpha,
            backtracks=state.backtracks + k,
            result=result,
        )
        return y_new, new_state, aux_new

    def terminate(self, fn, y, args, options, state: _NewtonState, tags):
        del fn, y, args, options, tags
        converged = self.norm(state.f) <= self.atol
        failed = state.result != RESULTS.successful
        return converged | failed, RESULTS.where(converged, RESULTS.successful, state.result)

    def postprocess(self, fn, y, aux, args, options, state: _NewtonState, tags, result):
        del fn, args, options, tags, result
        return y, aux, {"backtracks": state.backtracks}


SemismoothNewton.__init__.__doc__ = """**Arguments:**

- `rtol`: unused by the termination test (kept for the optimistix interface).
- `atol`: converged when the max-norm of the residual is at most this.
- `norm`: the norm of the termination test.
- `linear_solver`: the lineax solver for the Newton systems.
- `sigma`: the Armijo sufficient-decrease constant.
- `max_backtracks`: halvings of the step before giving up on decrease.
"""
