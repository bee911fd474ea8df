"""Noise injected into the parameters of live units only (DemP's asymmetric noise)."""

from collections import defaultdict
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, Bool, Int, PRNGKeyArray, PyTree

from ..nn import AbstractNetwork
from ._layout import resolve
from ._normal import hashed_normal


def fired(preactivations: dict[str, tuple[Array, ...]]) -> dict[str, Bool[Array, " units"]]:
    """Which units fired (were positive after their ReLU) on at least one example of a
    batch.

    **Arguments:**

    - `preactivations`: the third output of `model.preactivations`, vmapped over a
        batch: a dict from group name to a tuple of arrays of shape `(batch, units, ...)`.

    **Returns:**

    A dict from group name to a boolean array, `True` where the unit fired.
    """
    out = {}
    for name, arrays in preactivations.items():
        mask = None
        for a in arrays:
            f = jnp.any(a.reshape(a.shape[0], a.shape[1], -1) > 0, axis=(0, 2))
            mask = f if mask is None else mask | f
        assert mask is not None
        out[name] = mask
    return out


def live_parameters(model: AbstractNetwork, live: dict[str, Bool[Array, " units"]]) -> PyTree:
    """Spread a per-unit mask over the parameters that the units own.

    An entry of a parameter belongs to every unit whose slice holds it: a weight
    `W[i, j]` of a hidden linear layer belongs to output unit `i` and to input unit
    `j`. The entry is live when every unit it belongs to is live, so a dead unit's
    incoming weights, bias, BatchNorm scale and shift, and its outgoing weights are all
    masked out; entries that belong to no unit (the classifier's bias, the first
    layer's input columns) are live.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][].
    - `live`: a dict from every group name to a boolean array of the group's size,
        `True` where the unit is live (for instance [`toolkit.pruning.fired`][] on the
        pre-activations of a training batch).

    **Returns:**

    A pytree shaped like `eqx.filter(model, eqx.is_inexact_array)` whose leaves are
    boolean arrays that broadcast against the parameters.
    """
    layout = resolve(model)
    slots: dict[Any, list] = defaultdict(list)
    for g in layout.groups:
        for s in g.leaves:
            slots[s.path].append((s.axis, s.block, live[g.name]))

    def _mask(path, x):
        mask = jnp.ones((1,) * x.ndim, dtype=bool)
        for axis, block, units in slots.get(tuple(path), ()):
            entries = jnp.repeat(units, block) if block > 1 else units
            shape = [1] * x.ndim
            shape[axis] = entries.shape[0]
            mask = mask & entries.reshape(shape)
        return mask

    return jtu.tree_map_with_path(_mask, eqx.filter(model, eqx.is_inexact_array))


class LiveNoiseState(NamedTuple):
    """The state of [`toolkit.pruning.live_noise`][]: the number of updates so far."""

    count: Int[Array, ""]


def live_noise(
    sigma: optax.ScalarOrSchedule, key: PRNGKeyArray
) -> optax.GradientTransformationExtraArgs:
    """Add Gaussian noise of scale `sigma(t)` to the updates of live units only.

    Chained after an optimiser, it perturbs the parameters themselves:
    `params + updates + sigma(t) * N(0, I) * live`. Dead units receive no noise, so
    they stay dead, while live units keep being shaken; with a regulariser pulling
    them down, this is how Demon Pruning (Dufort-Labbé et al., 2024) makes units die
    in a controlled way.

    The noise of update `t` is drawn by [`toolkit.pruning.hashed_normal`][] from
    `jax.random.fold_in(key, t)`, so it is a pure function of the key and the step:
    the same key gives the same noise, and a resumed run continues the same sequence.
    The state holds only the step count, so it survives [`toolkit.pruning.prune`][]
    unchanged.

    **Arguments:**

    - `sigma`: the noise scale, a float or an optax schedule of the update count.
    - `key`: a JAX PRNG key.

    **Returns:**

    An `optax.GradientTransformationExtraArgs` whose `update(updates, state, params,
    *, live=None)` takes `live`, a pytree of boolean masks shaped like the updates (or
    broadcasting against them), as made by [`toolkit.pruning.live_parameters`][];
    without it every parameter receives noise.
    """

    def init_fn(params):
        del params
        return LiveNoiseState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, live=None, **extra_args):
        del params, extra_args
        scale = sigma(state.count) if callable(sigma) else sigma
        leaves, treedef = jtu.tree_flatten(updates)
        count = optax.safe_int32_increment(state.count)
        if not leaves:
            return updates, LiveNoiseState(count)
        masks = [None] * len(leaves) if live is None else treedef.flatten_up_to(live)
        # One draw for all the leaves: one random-number kernel to compile, not one per
        # leaf; `hashed_normal`, not threefry, whose cost was that of a dense step.
        sizes = [u.size for u in leaves]
        normal = hashed_normal(jr.fold_in(key, state.count), sum(sizes), jnp.result_type(*leaves))
        offsets = np.cumsum([0] + sizes)
        out = []
        for u, m, start, stop in zip(leaves, masks, offsets[:-1], offsets[1:]):
            noise = jnp.asarray(scale, u.dtype) * normal[start:stop].reshape(u.shape).astype(
                u.dtype
            )
            if m is not None:
                noise = jnp.where(m, noise, jnp.zeros((), u.dtype))
            out.append(u + noise)
        return treedef.unflatten(out), LiveNoiseState(count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
