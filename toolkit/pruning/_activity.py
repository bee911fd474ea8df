import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from .._jit import filter_jit
from ..nn import AbstractNetwork
from ._dead import DeadUnits
from ._layout import Layout, resolve


class Activity(eqx.Module):
    """Activation statistics of a network's units, accumulated over batches.

    A pure accumulator: [`toolkit.pruning.init_activity`][] makes one,
    [`toolkit.pruning.update_activity`][] (or [`toolkit.pruning.record_activity`][],
    from the pre-activations a training step already has) returns an updated one,
    and [`toolkit.pruning.dead_from`][] reads the dead units off it. All of these can
    be jitted, so a training loop can update it every step.

    **Attributes:**

    - `examples`: the number of examples seen.
    - `active`: a dict from group name to the number of examples on which each unit
        fired (was positive somewhere, after its ReLU).
    - `peak`: a dict from group name to the largest ReLU input seen for each unit
        (`-inf` before any example).
    """

    examples: Int[Array, ""]
    active: dict[str, Int[Array, " units"]]
    peak: dict[str, Float[Array, " units"]]
    layout: Layout = eqx.field(static=True)


def init_activity(model: AbstractNetwork) -> Activity:
    """Empty activation statistics for `model`.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][].

    **Returns:**

    An [`toolkit.pruning.Activity`][] that has seen no example.
    """
    layout = resolve(model)
    dtype = jnp.result_type(float)
    # Made with NumPy and transferred: `jnp.zeros` (or `jnp.asarray`) of a new size
    # compiles a kernel, and after every prune the sizes are new.
    put = jax.device_put
    return Activity(
        examples=put(np.zeros((), np.int32)),
        active={g.name: put(np.zeros(g.size, np.int32)) for g in layout.groups},
        peak={g.name: put(np.full(g.size, -np.inf, dtype)) for g in layout.groups},
        layout=layout,
    )


def record_activity(activity: Activity, preactivations: dict[str, tuple[Array, ...]]) -> Activity:
    """Add a batch of pre-activations to the statistics.

    **Arguments:**

    - `activity`: an [`toolkit.pruning.Activity`][].
    - `preactivations`: the third output of `model.preactivations`, vmapped over a
        batch: a dict from group name to a tuple of arrays of shape
        `(batch, units, ...)`.

    **Returns:**

    The updated [`toolkit.pruning.Activity`][].
    """
    layout = activity.layout
    if set(preactivations) != set(layout.names):
        raise ValueError(
            f"pre-activations for groups {sorted(preactivations)} do not match the "
            f"network's groups {list(layout.names)}."
        )
    arrays = [(g, a) for g in layout.groups for a in preactivations[g.name]]
    for g, a in arrays:
        if a.ndim < 2 or a.shape[1] != g.size:
            raise ValueError(
                f"group {g.name!r}: expected pre-activations of shape (batch, {g.size}, "
                f"...), got {a.shape}."
            )
    batch = arrays[0][1].shape[0] if arrays else 0
    if batch == 0:
        # An empty batch adds nothing (and `dead_from` then says no example was seen).
        return activity
    active, peak = {}, {}
    tops = peaks(preactivations)
    for g in layout.groups:
        fired = None
        for a in preactivations[g.name]:
            f = jnp.any(a.reshape(a.shape[0], g.size, -1) > 0, axis=2)
            fired = f if fired is None else fired | f
        assert fired is not None
        active[g.name] = activity.active[g.name] + jnp.sum(fired, axis=0, dtype=jnp.int32)
        top = tops[g.name].astype(activity.peak[g.name].dtype)
        peak[g.name] = jnp.maximum(activity.peak[g.name], top)
    examples = activity.examples + jnp.array(batch, dtype=jnp.int32)
    return Activity(examples, active, peak, layout)


def peaks(preactivations: dict[str, tuple[Array, ...]]) -> dict[str, Array]:
    """Each unit's largest pre-activation on a batch (over its examples and spatial
    positions).

    **Arguments:**

    - `preactivations`: as for [`toolkit.pruning.record_activity`][].

    **Returns:**

    A dict from group name to an array over the group's units.
    """
    out = {}
    for name, arrays in preactivations.items():
        top = None
        for a in arrays:
            t = jnp.max(a.reshape(a.shape[0], a.shape[1], -1), axis=(0, 2))
            top = t if top is None else jnp.maximum(top, t)
        assert top is not None
        out[name] = top
    return out


@filter_jit
def update_activity(
    activity: Activity,
    model: AbstractNetwork,
    state: eqx.nn.State,
    xs: PyTree[Array],
    *,
    inference: bool = True,
) -> Activity:
    """Run `model` on a batch and add its activations to the statistics.

    **Arguments:**

    - `activity`: an [`toolkit.pruning.Activity`][] of this model.
    - `model`: a [`toolkit.nn.AbstractNetwork`][].
    - `state`: its `eqx.nn.State`.
    - `xs`: a batch of inputs, batch axis first.
    - `inference`: whether to run BatchNorm in inference mode (running statistics)
        rather than training mode (batch statistics). The running statistics are
        not updated either way.

    **Returns:**

    The updated [`toolkit.pruning.Activity`][].
    """
    model = eqx.nn.inference_mode(model, inference)
    _, _, pre = jax.vmap(
        model.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
    )(xs, state)
    return record_activity(activity, pre)


def dead_from(activity: Activity) -> DeadUnits:
    """The units that never fired on the examples seen.

    **Arguments:**

    - `activity`: an [`toolkit.pruning.Activity`][] that has seen at least one example.

    **Returns:**

    A [`toolkit.pruning.DeadUnits`][]: a unit is dead when its output after the ReLU
    was zero on every example (and every spatial position) seen.
    """
    message = "no example seen: every unit looks dead."
    arrays = [activity.examples, *activity.active.values()]
    if any(isinstance(a, jax.core.Tracer) for a in arrays):
        masks = {k: v == 0 for k, v in activity.active.items()}
        masks = eqx.error_if(masks, activity.examples == 0, message)
    else:
        # Outside jit, on the host: an eager `v == 0` compiles a kernel per new size.
        if int(activity.examples) == 0:
            raise ValueError(message)
        masks = {k: jax.device_put(np.asarray(v) == 0) for k, v in activity.active.items()}
    return DeadUnits(masks, activity.peak, activity.layout)


def dead_units(model: AbstractNetwork, state: eqx.nn.State, xs: PyTree[Array]) -> DeadUnits:
    """The units of `model` whose output is zero on every example of a batch, with
    BatchNorm in inference mode.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][].
    - `state`: its `eqx.nn.State`.
    - `xs`: a batch of inputs, batch axis first.

    **Returns:**

    A [`toolkit.pruning.DeadUnits`][], to pass to [`toolkit.pruning.prune`][].
    """
    return dead_from(update_activity(init_activity(model), model, state, xs))
