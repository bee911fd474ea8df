"""Small networks of every architecture, and dead units planted in them."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from toolkit import nn, pruning


# name -> (constructor, example shape); small enough to compile in a second or two.
ARCHITECTURES = {
    "mlp": (
        lambda key, bn, dtype: nn.MLP(12, 3, (8, 6), batch_norm=bn, key=key, dtype=dtype),
        (12,),
    ),
    "convnet": (
        lambda key, bn, dtype: nn.ConvNet(
            2,
            3,
            8,
            channels=(4, 6),
            hidden=(8,),
            kernel_size=3,
            batch_norm=bn,
            key=key,
            dtype=dtype,
        ),
        (2, 8, 8),
    ),
    "vgg": (
        lambda key, bn, dtype: nn.VGG(
            2, 3, 8, config=(4, "M", 6, 6, "M"), hidden=(8,), batch_norm=bn, key=key, dtype=dtype
        ),
        (2, 8, 8),
    ),
    "resnet": (
        lambda key, bn, dtype: nn.ResNet(
            2, 3, blocks=(2, 1), widths=(4, 6), batch_norm=bn, key=key, dtype=dtype
        ),
        (2, 8, 8),
    ),
}


def make(name, seed=0, *, batch_norm, dtype=jnp.float32):
    build, shape = ARCHITECTURES[name]
    # An "rbg" key: initialisation compiles a random op per layer shape, and threefry's
    # compile is several times slower.
    key = jr.key(seed, impl="rbg")
    model, state = eqx.nn.make_with_state(build)(key, batch_norm, dtype)
    return model, state, shape


def data(shape, batch, seed=0, dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype))


def batched(model):
    """`model` over a batch, jitted: (model, state, xs) -> (ys, state)."""

    @eqx.filter_jit
    def run(model, state, xs):
        return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(xs, state)

    return run


@eqx.filter_jit
def preactivations(model, state, xs):
    return jax.vmap(
        model.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
    )(xs, state)


_PRODUCER_FIELDS = ("out_features", "out_channels", "input_size")


def plant(model, masks, shift=-1.0, *, hard=True):
    """Make the units where `masks` is True dead.

    With `hard=True` they are dead on every input: the layers writing the unit get
    zero weights and a negative bias, BatchNorms a zero scale and a negative shift.
    With `hard=False` only the bias/shift is lowered by `-shift`: the units are dead on
    some data (the data-dependent kind) and alive on other.
    """
    for name, group in model.wiring().items():
        mask = np.asarray(masks[name])
        if not mask.any():
            continue
        for slot in group.slots:
            if not isinstance(slot, nn.SizeField) or slot.name not in _PRODUCER_FIELDS:
                continue
            layer = slot.where(model)
            w = slot.where
            if hard:
                model = eqx.tree_at(lambda m: w(m).weight, model, _set(layer.weight, mask, 0))
            if layer.bias is not None:
                bias = _set(layer.bias, mask, shift) if hard else _add(layer.bias, mask, shift)
                model = eqx.tree_at(lambda m: w(m).bias, model, bias)
    return model


# In numpy: eager jax updates would compile once per shape, and tests should be quick.
def _set(a, mask, value):
    a = np.array(a)
    a[mask] = value
    return jnp.asarray(a)


def _add(a, mask, value):
    a = np.array(a)
    a[mask] += value
    return jnp.asarray(a)


def random_masks(model, seed, p=0.4):
    rng = np.random.default_rng(seed)
    masks = {}
    for name, group in model.wiring().items():
        m = rng.random(group.size) < p
        m[rng.integers(group.size)] = False  # never empty a group
        masks[name] = m
    return masks


def subset(planted, dead):
    return all(not np.any(np.asarray(planted[k]) & ~np.asarray(dead.masks[k])) for k in planted)


def find_dead(model, state, xs, *, inference):
    activity = pruning.update_activity(
        pruning.init_activity(model), model, state, xs, inference=inference
    )
    return pruning.dead_from(activity)


def max_diff(a, b):
    return float(jnp.max(jnp.abs(a - b)))
