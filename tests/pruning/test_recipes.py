"""`pruning.recipes` builds what `python -m toolkit train` builds, from keywords."""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import data, pruning
from toolkit.pruning import _cli, recipes


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _train_defaults(argv=()):
    p = argparse.ArgumentParser()
    _cli.add_train_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("name", ["demp", "dense", *recipes.BASELINES])
def test_method_defaults_are_the_commands(name):
    assert recipes.method(name) == _cli.build_method(_train_defaults(["--method", name]))


def test_method_keywords():
    assert recipes.method("demp", reg=0.3, noise=0.0, dead_test="window") == pruning.DemP(
        reg=0.3, noise=0.0, dead_test=pruning.TrainingWindow()
    )
    assert recipes.method("slimming", sparsity=0.7, prune_at=9, slimming_reg=1e-3) == (
        pruning.NetworkSlimming(0.7, reg=1e-3, at_step=9)
    )
    assert recipes.method("snap", ranking="layer", prune_steps=1) == pruning.SNAP(0.5, "layer", 1)
    assert recipes.buckets() == pruning.WidthBuckets(2.0)
    assert recipes.buckets(0) == pruning.ExactWidths()
    with pytest.raises(ValueError, match="unknown method 'magnitude'"):
        recipes.method("magnitude")
    with pytest.raises(ValueError, match="early-crops"):
        recipes.method("crops", prune_at=3)


@pytest.mark.parametrize(
    "argv, keywords",
    [
        ([], {}),
        (["--optimiser", "sgd", "--lr", "0.05", "--lr-schedule", "cosine"], {}),
        (["--weight-decay", "0", "--lr-schedule", "constant"], {}),
    ],
)
def test_optimiser_is_the_commands(argv, keywords):
    ns = _train_defaults(argv)
    T = 50
    mine = recipes.optimiser(
        T,
        name=ns.optimiser,
        lr=ns.lr,
        schedule=ns.lr_schedule,
        weight_decay=ns.weight_decay,
        momentum=ns.momentum,
    )
    theirs = _cli.build_optimiser(ns, T, ns.method)
    params = {"w": jr.normal(jr.key(0), (3, 4))}
    with jax.numpy_dtype_promotion("standard"):
        states = [opt.init(params) for opt in (mine, theirs)]
        for t in range(T):
            grads = {"w": jr.normal(jr.key(t + 1), (3, 4))}
            (a, states[0]), (b, states[1]) = (
                opt.update(grads, s, params) for opt, s in zip((mine, theirs), states)
            )
            np.testing.assert_array_equal(a["w"], b["w"])


def test_a_digits_run_from_recipes_is_the_commands(digits, tmp_path):
    # `python -m toolkit train` on digits, and the same run assembled from the recipes.
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        _compare_runs(digits, tmp_path)


def _compare_runs(digits, tmp_path):
    argv = ["--widths", "48", "32", "--steps", "60", "--eval-every", "20", "--reg", "0.3"]
    ns = _train_defaults([*argv, "--no-progress", "--json", str(tmp_path / "cli.json")])
    ns.progress = False
    command = _cli._run(ns, digits, "demp")
    init_key, train_key = jr.split(jr.key(0, impl="rbg"))
    model, state = recipes.model(
        "mlp",
        digits.shape,
        digits.num_classes,
        widths=(48, 32),
        batch_norm=True,
        key=init_key,
        dtype=jnp.float32,
    )
    _, _, history = pruning.train(
        model,
        state,
        digits,
        recipes.method("demp", reg=0.3),
        optimiser=recipes.optimiser(60),
        steps=60,
        batch_size=128,
        key=train_key,
        eval_every=20,
        progress=False,
        buckets=recipes.buckets(),
    )
    keys = ("step", "test_accuracy", "test_loss", "widths", "params")
    assert [{k: e[k] for k in keys} for e in history["evaluations"]] == [
        {k: e[k] for k in keys} for e in command["evaluations"]
    ]
    assert history["prunes"] == command["prunes"]
    assert history["prunes"], "the run should prune (reg 0.3)"


def test_model_channels_build_the_widths_asked_for():
    key = jr.key(0)
    lenet, state = recipes.model(
        "lenet", (1, 28, 28), 10, widths=(10, 7), channels=(3, 5), batch_norm=True, key=key
    )
    assert pruning.widths(lenet) == {"conv.0": 3, "conv.1": 5, "fc.0": 10, "fc.1": 7}
    vgg, _ = recipes.model("vgg", (1, 28, 28), 10, channels=(2, 3, 4, 5, 6), key=key)
    assert pruning.widths(vgg) == {f"conv.{i}": c for i, c in enumerate((2, 3, 4, 5, 6))}
    # Given the configuration's own channels, the same network: the pooling layers
    # stay where the configuration has them.
    default, _ = recipes.model("vgg", (1, 28, 28), 10, key=key)
    same, _ = recipes.model("vgg", (1, 28, 28), 10, channels=(16, 16, 32, 32, 64), key=key)
    leaves = jax.tree.leaves(eqx.filter(default, eqx.is_array))
    assert [x.shape for x in leaves] == [
        x.shape for x in jax.tree.leaves(eqx.filter(same, eqx.is_array))
    ]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(leaves, jax.tree.leaves(eqx.filter(same, eqx.is_array)))
    )


def test_model_channels_refused_where_they_mean_nothing():
    with pytest.raises(ValueError, match="not 'mlp'"):
        recipes.model("mlp", (40,), 10, channels=(3,), key=jr.key(0))
    with pytest.raises(ValueError, match="has 2 entries, but this VGG has 5"):
        recipes.model("vgg", (1, 28, 28), 10, channels=(3, 4), key=jr.key(0))
