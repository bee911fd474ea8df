"""The structured-pruning baselines: one prune to a target sparsity per group."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import data, nn, pruning
from toolkit.pruning._baseline_scores import gate_hvp, gate_loss, gated, ones_gates
from toolkit.pruning._baselines import units_to_remove


def _mlp(batch_norm=False, seed=0, widths=(5, 6)):
    key = jr.key(seed, impl="rbg")
    return eqx.nn.make_with_state(nn.MLP)(4, 3, widths, batch_norm, key=key, dtype=jnp.float64)


def _batch(seed=1, n=16):
    kx, ky = jr.split(jr.key(seed, impl="rbg"))
    return jr.normal(kx, (n, 4), jnp.float64), jr.randint(ky, (n,), 0, 3).astype(jnp.int32)


def _select(method, model, state, key=None, batch=None):
    key = jr.key(0, impl="rbg") if key is None else key
    batch = _batch() if batch is None else batch
    activity = pruning.init_activity(model)
    return method.select(model, state, activity, batch, step=0, total_steps=10, key=key)


_METHODS = [
    pruning.RandomStructured(0.5),
    pruning.L1Norm(0.5),
    pruning.NetworkSlimming(0.5),
    pruning.SNAP(0.5, ranking="layer", steps=1),
    pruning.CroPS(0.5, ranking="layer", steps=1),
]  # EarlySNAP and EarlyCroPS score as SNAP and CroPS: see the training test.


def test_units_to_remove():
    assert [units_to_remove(0.5, n) for n in (1, 2, 5, 6)] == [0, 1, 3, 3]
    assert [units_to_remove(0.3, 10), units_to_remove(0.7, 10)] == [3, 7]
    assert units_to_remove(0.99, 4) == 3  # a group always keeps a unit
    assert units_to_remove(0.0, 7) == 0


@pytest.mark.parametrize("method", _METHODS, ids=lambda m: type(m).__name__)
def test_counts_never_empty_deterministic(method):
    model, state = _mlp(batch_norm=True)
    dead = _select(method, model, state)
    # round(0.5 * 5) = 3 (halves up) and 0.5 * 6 = 3.
    assert {k: int(np.sum(v)) for k, v in dead.masks.items()} == {"hidden.0": 3, "hidden.1": 3}
    again = _select(method, model, state)
    for k in dead.masks:
        np.testing.assert_array_equal(dead.masks[k], again.masks[k])
    pruned, _ = pruning.prune((model, state), dead)
    assert pruning.widths(pruned) == {"hidden.0": 2, "hidden.1": 3}
    # Near-total sparsity still leaves a unit in every group.
    tight = _select(eqx.tree_at(lambda m: m.sparsity, method, 0.99), model, state)
    assert {k: int(np.sum(~np.asarray(v))) for k, v in tight.masks.items()} == {
        "hidden.0": 1,
        "hidden.1": 1,
    }


def test_random_depends_on_key():
    model, state = _mlp(widths=(40, 40))
    method = pruning.RandomStructured(0.5)
    a = _select(method, model, state, key=jr.key(0, impl="rbg"))
    b = _select(method, model, state, key=jr.key(1, impl="rbg"))
    assert any(np.any(a.masks[k] != b.masks[k]) for k in a.masks)


def test_prune_at():
    assert pruning.SNAP(0.5).prune_at(0, 10) and not pruning.SNAP(0.5).prune_at(1, 10)
    late = pruning.L1Norm(0.5, at_step=300)
    assert late.prune_at(300, 1000) and not late.prune_at(0, 1000)
    assert late.prune_at(100, 100)  # clipped to the end of training
    # Slimming prunes once its penalty has trained the scales: half of training.
    slimming = pruning.NetworkSlimming(0.5)
    assert slimming.prune_at(500, 1000) and not slimming.prune_at(0, 1000)
    assert pruning.NetworkSlimming(0.5, at_step=7).prune_at(7, 1000)
    with pytest.raises(ValueError, match="sparsity"):
        pruning.L1Norm(1.0)
    with pytest.raises(ValueError, match="at_step"):
        pruning.L1Norm(0.5, at_step=-1)
    with pytest.raises(ValueError, match="reg"):
        pruning.NetworkSlimming(0.5, reg=-1.0)
    with pytest.raises(ValueError, match="at_step"):
        pruning.NetworkSlimming(0.5, at_step=0)
    with pytest.raises(ValueError, match="ranking"):
        pruning.SNAP(0.5, ranking="per-layer")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="steps"):
        pruning.CroPS(0.5, steps=0)
    assert pruning.SNAP(0.5) == pruning.SNAP(0.5, ranking="global", steps=5)
    assert pruning.CroPS(0.5) == pruning.CroPS(0.5, ranking="global", steps=5)


def test_l1norm_removes_smallest_planted_rows():
    model, state = _mlp()
    # Rows of the first layer with L1 norms 4, 0.4, 8, 0.8, 2.
    rows = np.array([1.0, 0.1, 2.0, 0.2, 0.5])[:, None] * np.ones((5, 4))
    model = eqx.tree_at(lambda m: m.layers[0].weight, model, jnp.asarray(rows))
    # Second layer: norms 6 * 0.1 * (1, ..., 6) with signs mixed.
    signs = np.where(np.arange(5) % 2, -1.0, 1.0)
    w1 = 0.1 * np.arange(1, 7)[:, None] * signs[None, :] * np.ones((6, 5))
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, jnp.asarray(w1[[3, 0, 5, 1, 4, 2]]))
    dead = _select(pruning.L1Norm(0.4), model, state)
    np.testing.assert_array_equal(dead.masks["hidden.0"], [False, True, False, True, False])
    # round(0.4 * 6) = 2: the rows of norms 0.5 and 1.0 (scaled), at indices 1 and 3.
    np.testing.assert_array_equal(dead.masks["hidden.1"], [False, True, False, True, False, False])


def test_network_slimming():
    model, state = _mlp()
    with pytest.raises(ValueError, match="BatchNorm"):
        _select(pruning.NetworkSlimming(0.5), model, state)
    with pytest.raises(ValueError, match="BatchNorm"):
        pruning.NetworkSlimming(0.5).regulariser(model, jnp.asarray(0), 10)
    bn, state = _mlp(batch_norm=True)
    bn = eqx.tree_at(lambda m: m.norms[0].weight, bn, jnp.asarray([1.0, -0.1, 0.5, 0.05, -2.0]))
    dead = _select(pruning.NetworkSlimming(0.4, reg=0.5), bn, state)
    np.testing.assert_array_equal(dead.masks["hidden.0"], [False, True, False, True, False])
    reg = pruning.NetworkSlimming(0.4, reg=0.5).regulariser(bn, jnp.asarray(0), 10)
    assert np.isclose(float(reg), 0.5 * (3.65 + 6.0))


def test_gates_of_zero_are_the_pruned_network():
    model, state = _mlp(batch_norm=True, widths=(5, 6))
    model = eqx.nn.inference_mode(model)
    dead = _select(pruning.SNAP(0.5), model, state)
    gates = {k: jnp.asarray(~np.asarray(v), jnp.float64) for k, v in dead.masks.items()}
    xs, _ = _batch()
    small, small_state = pruning.prune((model, state), dead)
    run = eqx.filter_jit(lambda m, s, xs: jax.vmap(lambda x: m(x, s)[0])(xs))
    want = run(small, small_state, xs)
    got = run(gated(model, gates), state, xs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("saliency", [pruning.snap_saliency, pruning.crops_saliency])
def test_saliency_of_silent_unit_is_zero(saliency):
    model, state = _mlp()
    w1 = model.layers[1].weight.at[:, 2].set(0.0)  # unit 2 of hidden.0 reaches nothing
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, w1)
    w2 = model.layers[2].weight.at[:, 4].set(0.0)
    model = eqx.tree_at(lambda m: m.layers[2].weight, model, w2)
    scores = saliency(model, state, _batch())
    assert float(scores["hidden.0"][2]) == 0.0 and float(scores["hidden.1"][4]) == 0.0
    assert np.all(np.delete(np.asarray(scores["hidden.0"]), 2) > 0)


def test_snap_is_sum_of_w_times_grad():
    model, state = _mlp()
    xs, ys = _batch()
    grads = eqx.filter_jit(
        eqx.filter_grad(lambda m: pruning.classification_loss(m, state, xs, ys)[0])
    )(model)
    expected = np.abs(np.sum(np.asarray(model.layers[1].weight * grads.layers[1].weight), axis=0))
    got = pruning.snap_saliency(model, state, (xs, ys))["hidden.0"]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_hvp_matches_finite_differences():
    model, state = _mlp(batch_norm=True)
    # Trained running statistics, so that inference mode differs from training mode.
    state = jax.tree.map(
        lambda x: 0.5 * x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x, state
    )
    fn = gate_loss(eqx.nn.inference_mode(model), state, _batch(), pruning.classification_loss)
    gates = ones_gates(model, jnp.float64)
    v = {
        k: jr.normal(jr.key(i, impl="rbg"), g.shape, jnp.float64)
        for i, (k, g) in enumerate(gates.items())
    }
    hv = jax.jit(lambda v: gate_hvp(fn, gates, v))(v)
    grad = jax.jit(jax.grad(fn))
    eps = 1e-5
    plus = grad({k: gates[k] + eps * v[k] for k in gates})
    minus = grad({k: gates[k] - eps * v[k] for k in gates})
    for k in gates:
        np.testing.assert_allclose(hv[k], (plus[k] - minus[k]) / (2 * eps), rtol=1e-6, atol=1e-9)
    # And CroP-S is |H g| at the gates c = 1.
    hg = jax.jit(lambda v: gate_hvp(fn, gates, v))(grad(gates))
    crops = pruning.crops_saliency(model, state, _batch())
    for k in gates:
        np.testing.assert_allclose(crops[k], np.abs(hg[k]), rtol=1e-10)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.mark.parametrize(
    "method, at",
    [
        (pruning.RandomStructured(0.5), 0),
        (pruning.L1Norm(0.5), 0),
        (pruning.NetworkSlimming(0.5, reg=1e-3, at_step=8), 8),  # after training
        (pruning.SNAP(0.5, ranking="layer", steps=1), 0),
        (pruning.CroPS(0.5, ranking="layer", steps=1), 0),
        # The Early-CroP test cannot pass before the third period (step 6): so at
        # `latest`.
        (pruning.EarlySNAP(0.5, ranking="layer", every=2, latest=4), 4),
        (pruning.EarlyCroPS(0.5, ranking="layer", every=2, latest=4), 4),
    ],
    ids=lambda m: type(m).__name__ if isinstance(m, eqx.Module) else None,
)
def test_train_ends_with_expected_widths(digits, method, at):
    key = jr.key(0, impl="rbg")
    batch_norm = isinstance(method, pruning.NetworkSlimming)
    model, state = eqx.nn.make_with_state(nn.MLP)(
        64, 10, (16, 9), batch_norm, key=key, dtype=jnp.float32
    )
    with jax.numpy_dtype_promotion("standard"):
        model, state, history = pruning.train(
            model,
            state,
            digits,
            method,
            optimiser=optax.adam(1e-3),
            steps=8,
            batch_size=32,
            key=key,
            eval_every=8,
            progress=False,
        )
    assert pruning.widths(model) == {"hidden.0": 8, "hidden.1": 4}
    (prune,) = history["prunes"]
    assert prune["step"] == at
    assert prune["removed"] == {"hidden.0": 8, "hidden.1": 5}


def test_cli_builds_baselines():
    import argparse

    from toolkit.pruning import _cli

    train, sweep = argparse.ArgumentParser(), argparse.ArgumentParser()
    _cli.add_train_arguments(train)
    _cli.add_sweep_arguments(sweep)
    expected = {
        "random": pruning.RandomStructured(0.3, at_step=7),
        "l1norm": pruning.L1Norm(0.3, at_step=7),
        "slimming": pruning.NetworkSlimming(0.3, reg=1e-4, at_step=7),
        "early-snap": pruning.EarlySNAP(0.3, latest=7),
        "early-crops": pruning.EarlyCroPS(0.3, latest=7),
    }
    for name, method in expected.items():
        ns = train.parse_args(["--method", name, "--sparsity", "0.3", "--prune-at", "7"])
        assert _cli.build_method(ns) == method
    ns = train.parse_args(["--method", "snap", "--sparsity", "0.3"])
    assert _cli.build_method(ns) == pruning.SNAP(0.3)
    ns = sweep.parse_args(["--method", "crops", "--sparsities", "0.1", "0.2"])
    assert _cli.build_method(ns, ns.method, sparsity=0.2) == pruning.CroPS(0.2)
    argv = ["--method", "snap", "--ranking", "layer", "--prune-steps", "1"]
    assert _cli.build_method(train.parse_args(argv)) == pruning.SNAP(0.5, "layer", 1)
    argv = ["--method", "slimming", "--ranking", "global"]
    assert _cli.build_method(train.parse_args(argv)) == pruning.NetworkSlimming(
        0.5, ranking="global"
    )
    with pytest.raises(ValueError, match="early-snap"):
        _cli.build_method(train.parse_args(["--method", "snap", "--prune-at", "5"]))


def _planted():
    """An MLP 4 -> (8, 6) -> 3 whose units 0-5 of hidden.0 and unit 0 of hidden.1 reach
    nothing (zero outgoing weights): they, and only they, have zero SNAP and CroP-S
    saliency. Large biases keep every unit active on the batch, so that the others
    score above zero."""
    model, state = _mlp(widths=(8, 6))
    for i in range(3):
        bias = jnp.full_like(model.layers[i].bias, 5.0)
        model = eqx.tree_at(lambda m: m.layers[i].bias, model, bias)
    w1 = model.layers[1].weight.at[:, :6].set(0.0)
    w2 = model.layers[2].weight.at[:, 0].set(0.0)
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, w1)
    model = eqx.tree_at(lambda m: m.layers[2].weight, model, w2)
    planted = {"hidden.0": np.arange(8) < 6, "hidden.1": np.arange(6) < 1}
    return model, state, planted


@pytest.mark.parametrize("cls", [pruning.SNAP, pruning.CroPS], ids=lambda c: c.__name__)
def test_global_ranking_removes_the_planted_units(cls):
    model, state, planted = _planted()
    saliency = pruning.snap_saliency if cls is pruning.SNAP else pruning.crops_saliency
    scores = saliency(model, state, _batch())
    for k in planted:  # the premise: zero exactly on the planted units
        np.testing.assert_array_equal(np.asarray(scores[k]) == 0, planted[k])
    # round(0.5 * 14) = 7 units of lowest saliency over both layers: the 7 planted,
    # six from hidden.0 and one from hidden.1. (0.5 is the schedule's first round, so
    # the default five steps are one round here.)
    for method in (cls(0.5), cls(0.5, steps=1)):
        dead = _select(method, model, state)
        for k in planted:
            np.testing.assert_array_equal(dead.masks[k], planted[k])
    # Ranked per layer, the same fraction of each: 4 of hidden.0, 3 of hidden.1.
    dead = _select(cls(0.5, ranking="layer", steps=1), model, state)
    assert {k: int(np.sum(v)) for k, v in dead.masks.items()} == {"hidden.0": 4, "hidden.1": 3}
    assert not np.any(dead.masks["hidden.0"][6:])  # the live units of hidden.0 stay


def test_global_ranking_never_empties_a_layer():
    model, state, _ = _planted()
    # 0.8 of 14 units is 11: more than the 7 planted; hidden.0 keeps a unit whatever
    # the scores, and every layer keeps one.
    dead = _select(pruning.SNAP(0.8, steps=1), model, state)
    kept = {k: int(np.sum(~np.asarray(v))) for k, v in dead.masks.items()}
    assert min(kept.values()) >= 1 and sum(kept.values()) == 14 - 11
    tight = _select(pruning.CroPS(0.99), model, state)
    assert {k: int(np.sum(~np.asarray(v))) for k, v in tight.masks.items()} == {
        "hidden.0": 1,
        "hidden.1": 1,
    }


def test_slimming_prunes_after_the_scales_have_moved(digits):
    key = jr.key(0, impl="rbg")

    def run(method, **kwargs):
        model, state = eqx.nn.make_with_state(nn.MLP)(
            64, 10, (16, 9), True, key=key, dtype=jnp.float32
        )
        with jax.numpy_dtype_promotion("standard"):
            return pruning.train(
                model,
                state,
                digits,
                method,
                optimiser=optax.adam(1e-2),
                steps=8,
                batch_size=32,
                key=key,
                eval_every=8,
                progress=False,
                **kwargs,
            )

    method = pruning.NetworkSlimming(0.5, reg=1e-2, ranking="global")
    *_, history = run(method)
    (prune,) = history["prunes"]
    assert prune["step"] == 4  # the default: half of training, not step 0
    # The same run up to the prune (the sparsity does not enter training): its scales
    # have moved from their initial 1, and the prune removes the round(0.5 * 25) = 13
    # smallest |gamma| over both layers.
    model, state, _ = run(eqx.tree_at(lambda m: m.sparsity, method, 0.0), stop_at=4)
    gammas = {
        k: np.abs(np.asarray(n.weight)) for k, n in zip(("hidden.0", "hidden.1"), model.norms)
    }
    assert all(np.all(g != 1) for g in gammas.values())
    flat = np.concatenate(list(gammas.values()))
    threshold = np.sort(flat)[12]
    expected = {k: g <= threshold for k, g in gammas.items()}
    assert sum(int(m.sum()) for m in expected.values()) == 13  # no ties at the threshold
    dead = _select(method, model, state)
    for k in expected:
        np.testing.assert_array_equal(dead.masks[k], expected[k])
    assert prune["removed"] == {k: int(m.sum()) for k, m in expected.items()}
