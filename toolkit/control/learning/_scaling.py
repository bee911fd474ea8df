import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._problem import OptimalControlProblem
from ._trajectories import Trajectories


class Scaling(eqx.Module):
    """The affine maps around a neural vector field: inputs normalised,
    `((x - x_shift) / x_scale, (u - u_shift) / u_scale)`, and outputs scaled,
    `out_scale * y`, so that an MLP of weights of order one sees inputs of order one
    and produces derivatives of the right size, whatever the units of each state.

    The constants are not learned: [`toolkit.control.learning.trainable`][] leaves
    them out, and they are behind `jax.lax.stop_gradient`.

    **Arguments:**

    - `x_shift`, `x_scale`: `(nx,)` state shift and scale.
    - `u_shift`, `u_scale`: `(nu,)` control shift and scale.
    - `out_scale`: `(nx,)` the typical size of each state's derivative.

    Build one with [`toolkit.control.learning.Scaling.from_data`][] (from the
    training trajectories), `Scaling.from_problem` (from the problem's boxes) or
    `Scaling.identity`.
    """

    x_shift: Float[Array, " nx"]
    x_scale: Float[Array, " nx"]
    u_shift: Float[Array, " nu"]
    u_scale: Float[Array, " nu"]
    out_scale: Float[Array, " nx"]

    def __check_init__(self):
        for name in ("x_scale", "u_scale", "out_scale"):
            value = getattr(self, name)
            if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
                if not np.all(np.asarray(value) > 0):
                    raise ValueError(f"`{name}` must be positive, got {value}.")

    def inputs(self, x: Float[Array, " nx"], u: Float[Array, " nu"]) -> Float[Array, " nx+nu"]:
        """The normalised network input, `concatenate(((x - x_shift) / x_scale,
        (u - u_shift) / u_scale))`."""
        x_shift, x_scale, u_shift, u_scale = jax.lax.stop_gradient(
            (self.x_shift, self.x_scale, self.u_shift, self.u_scale)
        )
        return jnp.concatenate([(x - x_shift) / x_scale, (u - u_shift) / u_scale])

    def outputs(self, y: Float[Array, " nx"]) -> Float[Array, " nx"]:
        """The network output scaled to a derivative, `out_scale * y`."""
        return jax.lax.stop_gradient(self.out_scale) * y

    @classmethod
    def identity(cls, nx: int, nu: int, dtype=None) -> "Scaling":
        """No scaling: shifts 0, scales 1."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        zeros, ones = jnp.zeros((nx,), dtype), jnp.ones((nx,), dtype)
        return cls(zeros, ones, jnp.zeros((nu,), dtype), jnp.ones((nu,), dtype), ones)

    @classmethod
    def from_problem(
        cls,
        problem: OptimalControlProblem,
        *,
        x_scale: ArrayLike | None = None,
        out_scale: ArrayLike = 1.0,
    ) -> "Scaling":
        """From the problem's boxes: each finite interval mapped onto `[-1, 1]`, the
        state box only when `x_scale` is not given (then the states are divided by
        `x_scale`, unshifted); unbounded components are left alone. The outputs are
        multiplied by `out_scale` (default 1)."""
        nx, dtype = problem.nx, problem.x0.dtype
        if problem.x_bounds is not None and x_scale is None:
            x_shift, x_scale_ = _box(*problem.x_bounds)
        else:
            x_shift = jnp.zeros((nx,), dtype)
            x_scale_ = jnp.ones((nx,), dtype) if x_scale is None else x_scale
        u_shift, u_scale = _box(*problem.u_bounds)

        def vector(a, n):
            return jnp.broadcast_to(jnp.asarray(a, dtype), (n,))

        return cls(
            vector(x_shift, nx),
            vector(x_scale_, nx),
            vector(u_shift, problem.nu),
            vector(u_scale, problem.nu),
            vector(out_scale, nx),
        )

    @classmethod
    def from_data(cls, data: Trajectories, *, rtol: float = 1e-3, atol: float = 1e-12) -> "Scaling":
        """From the statistics of training trajectories, so that states spanning
        orders of magnitude (issue 26: `bacteria`, `hiv_treatment`, `timber_harvest`)
        all reach the network at order one:

        - `x_shift`, `x_scale`: the mean and standard deviation of each state over
            every observed sample;
        - `u_shift`, `u_scale`: those of each control, evaluated at the sample times;
        - `out_scale`: the standard deviation of each state's finite-difference
            derivative, `diff(xs) / diff(ts)` between consecutive samples.

        A standard deviation is floored, so that a constant channel does not divide
        by zero: a state's or control's at `max(rtol * |mean|, atol)`, a
        derivative's at `rtol * x_scale / span`, the change of `rtol` of the state's
        scale over the data's mean time span.

        **Arguments:**

        - `data`: the training [`toolkit.control.learning.Trajectories`][].
        - `rtol`, `atol`: the floors above.

        **Returns:**

        A `Scaling`.

        **Raises:**

        `FloatingPointError` if `data` holds non-finite states.
        """
        xs, ts = data.xs, data.ts
        if not isinstance(xs, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(xs))):
            raise FloatingPointError(
                "`data` holds non-finite states: the scaling needs finite trajectories "
                "(leave out those that blew up)."
            )
        us = jax.vmap(lambda c, t: jax.vmap(c)(t))(data.controls, ts)
        dxs = jnp.diff(xs, axis=1) / jnp.diff(ts, axis=1)[..., None]
        span = jnp.mean(ts[:, -1] - ts[:, 0])

        def stats(a):
            mean, std = jnp.mean(a, axis=(0, 1)), jnp.std(a, axis=(0, 1))
            return mean, jnp.maximum(std, jnp.maximum(rtol * jnp.abs(mean), atol))

        x_shift, x_scale = stats(xs)
        u_shift, u_scale = stats(us)
        out_scale = jnp.maximum(jnp.std(dxs, axis=(0, 1)), rtol * x_scale / span)
        return cls(x_shift, x_scale, u_shift, u_scale, out_scale)


def _box(lo: Array, hi: Array) -> tuple[Array, Array]:
    """The centre and half-width of each finite interval; 0 and 1 where a side is
    infinite."""
    finite = jnp.isfinite(lo) & jnp.isfinite(hi)
    shift = jnp.where(finite, 0.5 * (jnp.where(finite, lo, 0) + jnp.where(finite, hi, 0)), 0)
    scale = jnp.where(finite, 0.5 * (jnp.where(finite, hi, 1) - jnp.where(finite, lo, -1)), 1)
    return shift, scale
