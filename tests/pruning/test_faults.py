"""Bad inputs and faults of the pruning side (issue 25): one case per item, each
asserting the clear error (its type and the words that name the input) or the right
behaviour, and a run killed with SIGKILL again and again that resumes to the
uninterrupted run's weights and log. The planner's items (1, 2, 10-14) are tested
under tests/control."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import data, nn, pruning


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _mlp(widths=(8,), seed=0):
    key = jr.key(seed, impl="rbg")
    return eqx.nn.make_with_state(nn.MLP)(64, 10, widths, key=key, dtype=jnp.float32)


def _train(*args, **kwargs):
    # optax's bias correction under tests/conftest.py's strict promotion: see test_train.
    with jax.numpy_dtype_promotion("standard"):
        return pruning.train(*args, progress=False, **kwargs)


_RUN = dict(steps=8, batch_size=32, eval_every=4, checkpoint_every=2, key=jr.key(1, impl="rbg"))


# --- networks, dead units, prune ---------------------------------------------------


def _stale():
    model, state = _mlp(widths=(16,))
    dead = pruning.dead_from_masks(model, {"hidden.0": np.arange(16) < 8})
    # Pruned by another set that keeps as many units: the stale set fits its shapes.
    other = pruning.prune(model, {"hidden.0": np.arange(16) >= 8})
    return pruning.prune(other, dead)


def _images(network, shape):
    model, state = eqx.nn.make_with_state(network)(1, 10, key=jr.key(0), **shape)
    return lambda x: model(x, state)


_ERRORS = [
    (
        5,
        "dead_units of no example",
        lambda: pruning.dead_units(*_mlp(), jnp.zeros((0, 64), jnp.float32)),
        ValueError,
        "no example seen",
    ),
    (15, "a stale dead set", _stale, ValueError, "'hidden.0' has 8 units.*already pruned"),
    (
        16,
        "MLP input of 63 values",
        lambda: _mlp()[0](jnp.zeros(63), _mlp()[1]),
        ValueError,
        r"MLP expects one example of shape \(64,\).*got an input of shape \(63,\)",
    ),
    (
        16,
        "MLP given a batch",
        lambda: _mlp()[0](jnp.zeros((5, 64)), _mlp()[1]),
        ValueError,
        r"shape \(5, 64\); for a batch, vmap",
    ),
    (
        16,
        "ConvNet input of another size",
        lambda: _images(nn.ConvNet, dict(image_size=8))(jnp.zeros((1, 9, 8))),
        ValueError,
        r"ConvNet expects one example of shape \(1, 8, 8\), got an input of shape \(1, 9, 8\)",
    ),
    (
        16,
        "VGG input with other channels",
        lambda: _images(nn.VGG, dict(image_size=8, config="small"))(jnp.zeros((3, 8, 8))),
        ValueError,
        r"VGG expects one example of shape \(1, 8, 8\), got an input of shape \(3, 8, 8\)",
    ),
    (
        16,
        "ResNet input with other channels",
        lambda: _images(nn.ResNet, dict(blocks=(1,), widths=(4,)))(jnp.zeros((3, 8, 8))),
        ValueError,
        r"ResNet expects one example of shape \(1, any, any\), got an input of shape \(3, 8, 8\)",
    ),
]


@pytest.mark.parametrize(
    "item, what, run, error, match", _ERRORS, ids=[f"item{c[0]:02d}-{c[1]}" for c in _ERRORS]
)
def test_library_clear_errors(item, what, run, error, match):
    with pytest.raises(error, match=match):
        run()


def test_item05_empty_batch_adds_nothing():
    model, state = _mlp()
    activity = pruning.init_activity(model)
    empty = pruning.update_activity(activity, model, state, jnp.zeros((0, 64), jnp.float32))
    assert int(empty.examples) == 0
