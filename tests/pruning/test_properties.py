"""Property-based: random widths, depths and dead masks."""

import equinox as eqx
import hypothesis.strategies as st
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, HealthCheck, settings

from toolkit import nn, pruning

from .plant import batched, data, find_dead, max_diff, plant, subset


SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def _masks(draw, sizes):
    masks = []
    for size in sizes:
        mask = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)))
        if mask.all():
            mask[draw(st.integers(0, size - 1))] = False
        masks.append(mask)
    return masks


def _check(model, state, shape, planted, inference):
    model = eqx.nn.inference_mode(plant(model, planted), inference)
    xs = data(shape, 8)
    dead = find_dead(model, state, xs, inference=inference)
    assert subset(planted, dead)
    small = pruning.prune(model, dead, empty="keep_most_active")
    small_state = pruning.prune(state, dead, empty="keep_most_active")
    run = batched(model)
    assert max_diff(run(model, state, xs)[0], run(small, small_state, xs)[0]) <= 1e-5
    if pruning.widths(small) == pruning.widths(model):
        assert eqx.tree_equal(pruning.prune(small, dead, empty="keep_most_active"), small)
    else:  # `dead` is a set of the network before the prune: refused on the pruned one
        with pytest.raises(ValueError, match="already pruned"):
            pruning.prune(small, dead, empty="keep_most_active")
    assert pruning.count_params(small) <= pruning.count_params(model)


@SETTINGS
@given(
    widths=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    batch_norm=st.booleans(),
    inference=st.booleans(),
    data_=st.data(),
)
def test_mlp(widths, batch_norm, inference, data_):
    model, state = eqx.nn.make_with_state(nn.MLP)(
        5, 2, widths, batch_norm=batch_norm, key=jr.key(0, impl="rbg"), dtype=jnp.float32
    )
    masks = data_.draw(_masks(widths))
    planted = {f"hidden.{i}": m for i, m in enumerate(masks)}
    _check(model, state, (5,), planted, inference)


@SETTINGS
@given(
    channels=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    hidden=st.lists(st.integers(1, 5), min_size=0, max_size=1),
    data_=st.data(),
)
def test_convnet(channels, hidden, data_):
    model, state = eqx.nn.make_with_state(nn.ConvNet)(
        1,
        2,
        4,
        channels=channels,
        hidden=hidden,
        kernel_size=3,
        batch_norm=True,
        key=jr.key(0, impl="rbg"),
        dtype=jnp.float32,
    )
    masks = data_.draw(_masks([*channels, *hidden]))
    names = [f"conv.{i}" for i in range(len(channels))] + [f"fc.{j}" for j in range(len(hidden))]
    _check(model, state, (1, 4, 4), dict(zip(names, masks)), inference=False)
