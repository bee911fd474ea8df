import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import pruning

from .plant import data, make, plant, preactivations, random_masks


def test_accumulates_over_batches():
    model, state, shape = make("convnet", batch_norm=True)
    planted = random_masks(model, 3)
    model = plant(model, planted)
    xs = data(shape, 24, seed=3)
    one_shot = pruning.dead_units(model, state, xs)
    activity = pruning.init_activity(model)
    update = eqx.filter_jit(pruning.update_activity)
    for batch in jnp.split(xs, 3):
        activity = update(activity, model, state, batch)
    assert int(activity.examples) == 24
    dead = pruning.dead_from(activity)
    assert eqx.tree_equal(dead.masks, one_shot.masks)
    assert eqx.tree_equal(dead.peak, one_shot.peak)
    for k in planted:
        assert np.all(np.asarray(dead.masks[k])[planted[k]])
        # Dead exactly where the largest ReLU input is <= 0.
        np.testing.assert_array_equal(dead.masks[k], np.asarray(dead.peak[k]) <= 0)
        assert np.all(np.asarray(activity.active[k]) <= 24)
    fractions = pruning.live_fractions(dead)
    assert set(fractions) == set(planted)
    for k, f in fractions.items():
        assert f == pytest.approx(1 - np.mean(np.asarray(dead.masks[k])))
    # More data can only revive units.
    more = update(activity, model, state, data(shape, 8, seed=4))
    for k in planted:
        assert np.all(np.asarray(more.active[k]) >= np.asarray(activity.active[k]))


def test_record_from_a_training_step():
    model, state, shape = make("mlp", batch_norm=True)
    xs = data(shape, 8)
    # A training step computes the pre-activations anyway; record them from there.
    _, _, pre = preactivations(model, state, xs)
    activity = jax.jit(pruning.record_activity)(pruning.init_activity(model), pre)
    by_update = pruning.update_activity(
        pruning.init_activity(model), model, state, xs, inference=False
    )
    # The counts agree exactly. The peaks are float32 pre-activations computed by two
    # programs (this step's and `update_activity`'s), which XLA may fuse and round
    # differently on one CPU and alike on another.
    assert eqx.tree_equal(
        (activity.examples, activity.active), (by_update.examples, by_update.active)
    )
    assert activity.layout == by_update.layout
    assert eqx.tree_equal(activity.peak, by_update.peak, rtol=1e-6, atol=1e-6)
    assert int(activity.examples) == 8
    with pytest.raises(ValueError, match="do not match"):
        pruning.record_activity(activity, {"hidden.0": pre["hidden.0"]})
    with pytest.raises(ValueError, match="expected pre-activations of shape"):
        pruning.record_activity(activity, {**pre, "hidden.0": (pre["hidden.0"][0][:, :3],)})


def test_no_example_seen():
    model, _, _ = make("mlp", batch_norm=False)
    with pytest.raises(Exception, match="no example seen"):
        pruning.dead_from(pruning.init_activity(model))


def test_dead_units_uses_inference_mode():
    # In inference mode, BatchNorm uses its running statistics: a unit whose shift is
    # very negative is dead there, while batch statistics in training mode are
    # irrelevant to dead_units.
    model, state, shape = make("mlp", batch_norm=True)
    xs = data(shape, 8)
    norm = model.norms[0]
    model = eqx.tree_at(lambda m: m.norms[0].bias, model, norm.bias.at[2].set(-100.0))
    dead = pruning.dead_units(model, state, xs)
    assert dead.masks["hidden.0"][2]
    assert float(dead.peak["hidden.0"][2]) < -50
