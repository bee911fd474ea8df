import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float, Scalar


class _NonmonotoneState(eqx.Module):
    step_size: Scalar
    # Losses of the last `memory` accepted iterates, newest first.
    history: Float[Array, " memory"]


class NonmonotoneTrustRegion(optx.AbstractSearch):
    """A trust region that judges a step against the largest loss of the last `memory`
    accepted iterates rather than the current one (Toint, "Non-monotone trust-region
    algorithms for nonlinear optimization subject to convex constraints", Math.
    Program. 77, 1997; the reference value of Grippo, Lampariello & Lucidi's
    non-monotone line search, 1986).

    A step is accepted when its actual reduction measured from that reference is at
    least `low_cutoff` times the predicted one, so the loss may rise for a few
    iterations while the maximum over the window still falls. Near a root of a
    semismooth residual, whose Gauss–Newton steps cross bounds between active and
    inactive and raise ½‖F‖² before they lower it, a monotone trust region answers
    each such rise by shrinking its radius and creeps; this one takes the step. The
    radius grows and shrinks exactly as `trust_region`'s does, from the monotone ratio,
    so it grows only on steps that decrease the loss as predicted. `memory=1` makes
    the same decisions as `trust_region`.
    """

    trust_region: optx.ClassicalTrustRegion = optx.ClassicalTrustRegion()
    memory: int = 10

    def __check_init__(self):
        if self.memory < 1:
            raise ValueError(f"`memory` must be >= 1, got {self.memory}.")

    def init(self, y, f_info_struct) -> _NonmonotoneState:
        del f_info_struct
        dtype = jnp.result_type(*jax.tree.leaves(y))
        return _NonmonotoneState(
            step_size=jnp.asarray(1.0, dtype), history=jnp.full(self.memory, -jnp.inf, dtype)
        )

    def step(
        self,
        first_step: Bool[Array, ""],
        y,
        y_eval,
        f_info,
        f_eval_info,
        state: _NonmonotoneState,
    ):
        tr = self.trust_region
        y_diff = jax.tree.map(lambda a, b: a - b, y_eval, y)
        predicted = tr.predict_reduction(y_diff, f_info)
        f = f_info.as_min()
        f_eval = f_eval_info.as_min()
        reference = jnp.max(state.history)
        accept = first_step | (f_eval - reference <= tr.low_cutoff * predicted)
        good = (f_eval - f < tr.high_cutoff * predicted) & (predicted < 0)
        good = good & jnp.invert(first_step)
        mul = jnp.where(good, tr.high_constant, 1)
        mul = jnp.where(accept, mul, tr.low_constant)
        step_size = (mul * state.step_size).astype(state.step_size.dtype)
        # The first step only evaluates the start: the window holds it alone.
        pushed = jnp.roll(state.history, 1).at[0].set(f_eval)
        started = jnp.full_like(state.history, -jnp.inf).at[0].set(f_eval)
        history = jnp.where(first_step, started, jnp.where(accept, pushed, state.history))
        new_state = _NonmonotoneState(step_size=step_size, history=history)
        return step_size, accept, optx.RESULTS.successful, new_state


NonmonotoneTrustRegion.__init__.__doc__ = """**Arguments:**

- `trust_region`: the trust region whose predicted reduction, cutoffs and radius
    updates are used (default `optimistix.ClassicalTrustRegion()`).
- `memory`: how many of the last accepted losses the reference value is the maximum
    of; 1 is the monotone trust region.
"""
