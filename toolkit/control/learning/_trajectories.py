from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from ..._jit import filter_jit
from .._problem import OptimalControlProblem
from ._controls import Controls
from ._simulate import AbstractSimulator, simulate, Simulator


class Trajectories(eqx.Module):
    """A batch of observed trajectories of a controlled system.

    Every array has a leading batch axis `B`, so that `jax.vmap` maps over
    trajectories and `jax.tree_util.tree_map(lambda a: a[idx], data)` selects some
    (see [`toolkit.control.learning.split`][]).

    **Fields:**

    - `ts`: `(B, T)` sample times (`ts[:, 0]` is the time of the initial state).
    - `xs`: `(B, T, nx)` observed states (with observation noise, if any).
    - `x0s`: `(B, nx)` the initial states, known exactly (they are set by the
        experimenter, as `x0` is in a control problem).
    - `controls`: the control signals applied, a batched
        [`toolkit.control.learning.Controls`][] (`values` of shape `(B, K+1, nu)`).
    """

    ts: Float[Array, "B T"]
    xs: Float[Array, "B T nx"]
    x0s: Float[Array, "B nx"]
    controls: Controls

    @property
    def size(self) -> int:
        return self.xs.shape[0]


def generate(
    key: PRNGKeyArray,
    problem: OptimalControlProblem,
    controls: Controls,
    ts: ArrayLike,
    *,
    args: PyTree[Any] = None,
    x0s: ArrayLike | None = None,
    noise_std: ArrayLike = 0.0,
    simulator: AbstractSimulator = Simulator(),
) -> Trajectories:
    """Trajectories of a problem's (true) dynamics under a batch of controls, sampled
    at given times, with optional Gaussian observation noise.

    **Arguments:**

    - `key`: a PRNG key for the observation noise; the data are a deterministic
        function of it.
    - `problem`: the [`toolkit.control.OptimalControlProblem`][] whose `dynamics`
        (and, by default, `x0` and `t0`) generate the data.
    - `controls`: a batched [`toolkit.control.learning.Controls`][], e.g. from
        [`toolkit.control.learning.random_controls`][] or
        [`toolkit.control.learning.perturb_controls`][]. Its batch size `B` is the
        number of trajectories.
    - `ts`: `(T,)` sample times, `ts[0]` the time of the initial state.
    - `args`: the problem's parameters.
    - `x0s`: `(B, nx)` initial states (default: the problem's `x0` for all).
    - `noise_std`: the standard deviation of the observation noise, a scalar or one
        per state component. Initial states are not observed with noise.
    - `simulator`: a [`toolkit.control.learning.Simulator`][].

    **Returns:**

    [`toolkit.control.learning.Trajectories`][].
    """
    ts = jnp.asarray(ts, problem.x0.dtype)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be a 1-D array of at least 2 times, got shape {ts.shape}.")
    if controls.values.ndim != 3:
        raise ValueError(
            "`controls` must be a batch (values of shape (B, K+1, nu)); got values of "
            f"shape {controls.values.shape}. Use `random_controls(..., batch=B)`."
        )
    B = controls.values.shape[0]
    if x0s is None:
        x0s = jnp.broadcast_to(problem.x0, (B, problem.nx))
    x0s = jnp.asarray(x0s, problem.x0.dtype)
    if x0s.shape != (B, problem.nx):
        raise ValueError(f"`x0s` must have shape {(B, problem.nx)}, got {x0s.shape}.")

    std = jnp.broadcast_to(jnp.asarray(noise_std, problem.x0.dtype), (problem.nx,))
    return _generate(key, problem, controls, ts, args, x0s, std, simulator)


@filter_jit
def _generate(key, problem, controls, ts, args, x0s, std, simulator):
    xs = jax.vmap(
        lambda x0, c: simulate(problem.dynamics, x0, c, ts, args=args, simulator=simulator)
    )(x0s, controls)
    noise = std[None, None] * jr.normal(key, xs.shape, xs.dtype)
    # The first sample is the known initial state.
    noise = noise.at[:, 0].set(0.0)
    B = xs.shape[0]
    return Trajectories(
        ts=jnp.broadcast_to(ts, (B,) + ts.shape), xs=xs + noise, x0s=x0s, controls=controls
    )


def initial_states(
    key: PRNGKeyArray,
    problem: OptimalControlProblem,
    batch: int,
    spread: ArrayLike,
) -> Float[Array, "B nx"]:
    """`batch` initial states scattered around the problem's `x0`: Gaussian with
    standard deviation `spread` (a scalar or one per component), clipped into the
    problem's state box (if any)."""
    spread = jnp.broadcast_to(jnp.asarray(spread, problem.x0.dtype), (problem.nx,))
    x0s = problem.x0[None] + spread[None] * jr.normal(key, (batch, problem.nx), problem.x0.dtype)
    if problem.x_bounds is not None:
        lo, hi = problem.x_bounds
        x0s = jnp.clip(x0s, lo[None], hi[None])
    return x0s


def split(data: Trajectories, n: int) -> tuple[Trajectories, Trajectories]:
    """The first `n` trajectories and the rest (e.g. training and validation sets)."""
    if not 0 < n < data.size:
        raise ValueError(f"`n` must be between 1 and {data.size - 1}, got {n}.")
    first = jax.tree_util.tree_map(lambda a: a[:n], data)
    rest = jax.tree_util.tree_map(lambda a: a[n:], data)
    return first, rest
