from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ..._jit import filter_jit
from .._problem import OptimalControlProblem
from .._solution import Solution


class Controls(eqx.Module):
    """A control signal u(t) given by its values at the nodes of a time grid.

    `kind="linear"` interpolates linearly between nodes (the controls of every
    transcription, see [`toolkit.control.learning.Controls.from_solution`][]);
    `kind="constant"` holds `values[k]` on `[ts[k], ts[k+1])` (zero-order hold; the
    last value is used only at `ts[-1]`). Outside the grid the signal is extended by
    its end values.

    A batch of signals is a `Controls` whose arrays have leading batch axes; evaluate
    it under `jax.vmap`.

    **Fields:**

    - `ts`: `(K+1,)` increasing node times.
    - `values`: `(K+1, nu)` control values at the nodes.
    - `kind`: `"linear"` or `"constant"`.
    """

    ts: Float[Array, " K+1"]
    values: Float[Array, "K+1 nu"]
    kind: Literal["linear", "constant"] = eqx.field(static=True, default="linear")

    def __check_init__(self):
        if self.kind not in ("linear", "constant"):
            raise ValueError(f"`kind` must be 'linear' or 'constant', got {self.kind!r}.")

    def __call__(self, t: Scalar) -> Float[Array, " nu"]:
        ts, values = self.ts, self.values
        K = ts.shape[0] - 1
        if K == 0:
            return values[0]
        k = jnp.clip(jnp.searchsorted(ts, t, side="right") - 1, 0, K - 1)
        if self.kind == "constant":
            return jnp.where(t >= ts[K], values[K], values[k])
        s = jnp.clip((t - ts[k]) / (ts[k + 1] - ts[k]), 0.0, 1.0)
        return values[k] + s * (values[k + 1] - values[k])

    @classmethod
    def from_solution(cls, sol: Solution) -> "Controls":
        """The planned control of a [`toolkit.control.Solution`][]: linear between its
        nodes, as every transcription assumes."""
        return cls(ts=sol.ts, values=sol.us, kind="linear")


def _box(problem: OptimalControlProblem, scale: float) -> tuple[Array, Array]:
    """The control box with infinite sides replaced by a finite range of width `scale`."""
    lo, hi = problem.u_bounds
    lo_f, hi_f = jnp.isfinite(lo), jnp.isfinite(hi)
    new_lo = jnp.where(lo_f, lo, jnp.where(hi_f, hi - scale, -scale))
    new_hi = jnp.where(hi_f, hi, jnp.where(lo_f, lo + scale, scale))
    return new_lo, new_hi


def random_controls(
    key: PRNGKeyArray,
    problem: OptimalControlProblem,
    num: int,
    *,
    batch: int | None = None,
    kind: Literal["piecewise_constant", "smooth"] = "piecewise_constant",
    modes: int = 4,
    scale: float = 1.0,
) -> Controls:
    """Random control signals inside the problem's control box, on `[t0, t1]`.

    **Arguments:**

    - `key`: a PRNG key; the same key gives the same signals.
    - `problem`: the [`toolkit.control.OptimalControlProblem`][] whose box and time
        span are used.
    - `num`: the number of intervals of the control grid.
    - `batch`: how many signals (a leading batch axis), or `None` for one.
    - `kind`: `"piecewise_constant"`: independent uniform values held on each of
        the `num` intervals; `"smooth"`: a random Fourier series with `modes` modes
        (amplitudes decaying as 1/j) squashed into the box by a sigmoid, sampled at
        `num + 1` nodes and linearly interpolated.
    - `modes`: the number of Fourier modes of `"smooth"` signals.
    - `scale`: the width of the range used along an infinite side of the box
        (e.g. `u >= 0` draws from `[0, scale]`).

    **Returns:**

    A [`toolkit.control.learning.Controls`][].
    """
    if kind not in ("piecewise_constant", "smooth"):
        raise ValueError(f"`kind` must be 'piecewise_constant' or 'smooth', got {kind!r}.")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"`num` must be an integer >= 1, got {num!r}.")
    return _draw(key, problem, num, batch, kind, modes, scale)


# One compiled program per setting: outside `jit`, each of the operations below (under
# `vmap` for a batch) would compile a small program of its own.
@filter_jit
def _draw(key, problem, num, batch, kind, modes, scale) -> Controls:
    if batch is not None:
        keys = jr.split(key, batch)
        return jax.vmap(lambda k: _draw(k, problem, num, None, kind, modes, scale))(keys)
    dtype = problem.x0.dtype
    lo, hi = _box(problem, scale)
    nu = problem.nu
    ts = problem.t0 + (problem.t1 - problem.t0) * jnp.arange(num + 1, dtype=dtype) / num
    if kind == "piecewise_constant":
        values = jr.uniform(key, (num + 1, nu), dtype, minval=lo, maxval=hi)
        return Controls(ts=ts, values=values, kind="constant")
    a_key, b_key, c_key = jr.split(key, 3)
    j = jnp.arange(1, modes + 1, dtype=dtype)
    a = jr.normal(a_key, (modes, nu), dtype) / j[:, None]
    b = jr.normal(b_key, (modes, nu), dtype) / j[:, None]
    c = jr.normal(c_key, (nu,), dtype)
    phase = jnp.pi * (ts - problem.t0) / (problem.t1 - problem.t0)
    series = c[None] + jnp.sin(phase[:, None] * j[None]) @ a + jnp.cos(phase[:, None] * j[None]) @ b
    values = lo[None] + (hi - lo)[None] * jax.nn.sigmoid(2.0 * series)
    return Controls(ts=ts, values=values, kind="linear")


def perturb_controls(
    key: PRNGKeyArray,
    controls: Controls,
    problem: OptimalControlProblem,
    std: float,
    *,
    batch: int,
) -> Controls:
    """`batch` copies of `controls` with Gaussian noise of standard deviation `std`
    added to every node value, clipped into the problem's control box (e.g. to gather
    data around a planned control, `Controls.from_solution(sol)`)."""
    noise = std * jr.normal(key, (batch,) + controls.values.shape, controls.values.dtype)
    lo, hi = problem.u_bounds
    values = jnp.clip(controls.values[None] + noise, lo[None, None], hi[None, None])
    ts = jnp.broadcast_to(controls.ts, (batch,) + controls.ts.shape)
    return Controls(ts=ts, values=values, kind=controls.kind)
