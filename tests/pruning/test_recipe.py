"""DemP's defaults are the reference recipe (issue 21): L1 on the BatchNorm scales
only, noise 5e-5 on the regulariser's one-cycle schedule, a prune every sixteenth of
training, an evaluation-mode snapshot as the dead-unit test; and for the command line,
AdamW with weight decay 5e-4 on a learning rate that anneals to about zero."""

import argparse
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import pytest

from toolkit import pruning
from toolkit.pruning import _cli

from .plant import data, make


def _one_cycle(t, peak, T, span=0.9):
    # By hand: optax.cosine_onecycle_schedule over span * T steps, 30% rising.
    transition = round(span * T)
    rise = int(0.3 * transition)
    start, final = peak / 25, peak / 25e4
    if t < rise:
        return peak + (start - peak) * (1 + math.cos(math.pi * t / rise)) / 2
    down = min((t - rise) / (transition - rise), 1.0)
    return final + (peak - final) * (1 + math.cos(math.pi * down)) / 2


def test_default_is_the_recipe():
    demp = pruning.DemP()
    assert demp.penalty == "bn_scale_l1"
    assert demp.noise == 5e-5
    assert demp.noise_schedule is None  # the regulariser's shape
    assert demp.dead_test == pruning.EvalSnapshot(1536)
    assert demp.select_examples == 1536
    assert (demp.span, demp.pct_start, demp.div_factor, demp.final_div_factor) == (
        0.9,
        0.3,
        25.0,
        1e4,
    )
    # The prune cadence: every sixteenth of training, and at the end.
    assert [t for t in range(161) if demp.prune_at(t, 160)] == list(range(10, 161, 10))
    assert demp.every(15626) == 976  # the reference: every 1000 of 15626 steps (VGG-16)


def test_penalty_acts_only_on_batchnorm_scales():
    model, _, _ = make("convnet", batch_norm=True, dtype=jnp.float64)
    # Scales of either sign, so the L1's slope is -1 or 1.
    scales = [
        jnp.asarray(np.linspace(-1.0, 1.0, n.weight.shape[0]) + 0.1 * i + 0.05)
        for i, n in enumerate(_norms(model))
    ]
    assert len(scales) >= 2
    model = eqx.tree_at(lambda m: [n.weight for n in _norms(m)], model, scales)
    demp = pruning.DemP(reg=0.3)
    T, t = 100, 27  # the regulariser's peak
    grads = eqx.filter_grad(lambda m: demp.regulariser(m, jnp.asarray(t), T))(model)
    for s, n in zip(scales, _norms(grads)):
        np.testing.assert_allclose(np.asarray(n.weight), 0.3 * np.sign(np.asarray(s)))
    # Every other parameter: weights, biases, BatchNorm shifts, the classifier.
    rest = eqx.tree_at(
        lambda g: [n.weight for n in _norms(g)], grads, replace_fn=lambda x: jnp.zeros_like(x)
    )
    leaves = jtu.tree_leaves(eqx.filter(rest, eqx.is_inexact_array))
    assert len(leaves) > 10
    for leaf in leaves:
        assert not np.any(np.asarray(leaf)), "the penalty moved a parameter other than a scale"


def _norms(tree):
    leaves = jtu.tree_leaves(tree, is_leaf=lambda x: isinstance(x, eqx.nn.BatchNorm))
    return [x for x in leaves if isinstance(x, eqx.nn.BatchNorm)]


def test_noise_scale_and_schedule():
    T, peak = 200, 5e-5
    schedules = pruning.DemP().schedules(T)
    # Rise over 54 steps (30% of 180), fall to step 180, then flat.
    by_hand = {
        0: peak / 25,
        27: (peak + peak / 25) / 2,
        54: peak,
        117: (peak + peak / 25e4) / 2,
        180: peak / 25e4,
        199: peak / 25e4,
    }
    for t, value in by_hand.items():
        assert float(schedules["noise"](t)) == pytest.approx(value, rel=1e-9), t
        assert value == pytest.approx(_one_cycle(t, peak, T), rel=1e-12)
        # The regulariser follows the same shape.
        assert float(schedules["reg"](t)) == pytest.approx(value / peak * 5e-2, rel=1e-9), t
    # The noise that reaches the parameters has that scale, on live entries only.
    transform = pruning.DemP().transform(T, jr.key(0))
    updates = {"w": jnp.zeros(200_000), "dead": jnp.zeros(10)}
    live = {"w": jnp.ones((), bool), "dead": jnp.zeros((), bool)}
    state = transform.init(updates)
    for t in range(55):
        noisy, state = transform.update(updates, state, live=live)
        if t in (0, 27, 54):
            assert float(jnp.std(noisy["w"])) == pytest.approx(by_hand[t], rel=0.01)
            assert not np.any(np.asarray(noisy["dead"]))


def _defaults(command=_cli.add_train_arguments, argv=()):
    p = argparse.ArgumentParser()
    command(p)
    return p.parse_args(list(argv))


def test_cli_demp_is_the_recipe():
    ns = _defaults()
    assert (ns.method, ns.noise, ns.penalty, ns.dead_test) == (
        "demp",
        5e-5,
        "bn_scale_l1",
        "snapshot",
    )
    assert ns.prune_every is None
    assert _cli.build_method(ns) == pruning.DemP(reg=ns.reg)
    window = _cli.build_method(_defaults(argv=["--dead-test", "window"]))
    assert window.dead_test == pruning.TrainingWindow(2048)
    # The demo and the sweep share the defaults; the demo no longer sets its own cadence.
    demo = _defaults(_cli.add_demo_arguments)
    assert demo.prune_every is None and demo.noise == 5e-5 and demo.penalty == "bn_scale_l1"


@pytest.mark.parametrize("method", ["demp", "dense", "snap"])
def test_cli_optimiser_is_the_recipe(method):
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        _check_optimiser(method)


def _check_optimiser(method):
    # AdamW, weight decay 5e-4, learning rate 5e-3 on a one-cycle schedule that ends
    # near zero, for every method alike. Read off the updates: with a zero gradient
    # AdamW's update is -lr(t) * wd * p; at the first step, with p = 0 and gradient 1,
    # it is -lr(0) (Adam's normalised step).
    ns = _defaults(argv=["--method", method])
    T = 100
    opt = _cli.build_optimiser(ns, T, method)
    first, _ = opt.update({"p": jnp.ones(1)}, opt.init({"p": jnp.zeros(1)}), {"p": jnp.zeros(1)})
    lr0 = -float(first["p"][0])
    assert lr0 == pytest.approx(5e-3 / 25, rel=1e-4)
    params, zero = {"p": jnp.ones(1)}, {"p": jnp.zeros(1)}
    state = opt.init(params)
    lrs = []
    for _ in range(T):
        u, state = opt.update(zero, state, params)
        lrs.append(-float(u["p"][0]))
    wd = lrs[0] / lr0
    assert wd == pytest.approx(5e-4, rel=1e-4)
    lr = np.asarray(lrs) / wd
    for t in (0, 15, 30, 65, 99):
        assert lr[t] == pytest.approx(_one_cycle(t, 5e-3, T, span=1.0), rel=1e-4), t
    assert lr.max() == pytest.approx(5e-3, rel=1e-4) and np.argmax(lr) == 30
    assert lr[-1] < 1e-3 * lr.max()  # anneals to about zero


def test_cli_demp_runs_get_batchnorm():
    assert _cli.demp_batch_norm(_defaults()) is True
    assert _cli.demp_batch_norm(_defaults(_cli.add_demo_arguments)) is True
    assert _cli.demp_batch_norm(_defaults(_cli.add_sweep_arguments)) is True
    assert _cli.demp_batch_norm(_defaults(argv=["--method", "dense"])) is None
    assert _cli.demp_batch_norm(_defaults(argv=["--penalty", "positive_l2"])) is None
    assert _cli.demp_batch_norm(_defaults(argv=["--penalty", "bn_positive_l1"])) is True
    assert _cli.demp_batch_norm(_defaults(argv=["--no-batch-norm"])) is False
    model, _ = _cli.build_model("mlp", (64,), 10, batch_norm=True, key=jr.key(0))
    assert pruning.bn_scale_l1(model) > 0


def test_cli_refuses_the_default_penalty_without_batchnorm(capsys):
    from toolkit._cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--no-batch-norm", "--steps", "1", "--no-progress", "--plot", ""])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --penalty: bn_scale_l1" in last and "--no-batch-norm" in last
    with pytest.raises(SystemExit) as e:
        main(["train", "--no-batch-norm", "--penalty", "bn_positive_l1", "--steps", "1"])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --penalty: bn_positive_l1 acts on BatchNorm" in last


def test_eval_snapshot_is_the_evaluation_mode_test():
    model, state, shape = make("mlp", batch_norm=True)
    xs = data(shape, 40)
    # Running statistics far from the batch's, so the two modes differ.
    state = jtu.tree_map(lambda x: x + 3.0 if eqx.is_inexact_array(x) else x, state)
    activity = pruning.init_activity(model)
    snap = pruning.EvalSnapshot()(model, state, activity, xs)
    by_hand = pruning.dead_units(model, state, xs)  # BatchNorm in inference mode
    train_mode = pruning.dead_from(
        pruning.update_activity(activity, model, state, xs, inference=False)
    )
    for k in snap.masks:
        np.testing.assert_array_equal(np.asarray(snap.masks[k]), np.asarray(by_hand.masks[k]))
    assert any(
        np.any(np.asarray(snap.masks[k]) != np.asarray(train_mode.masks[k])) for k in snap.masks
    )
