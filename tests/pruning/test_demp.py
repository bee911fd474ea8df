"""DemP's pieces: one-cycle schedules, regularisers, live-only noise, the method object."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import nn, pruning


def _mlp(batch_norm=False, seed=0):
    key = jr.key(seed, impl="rbg")
    return eqx.nn.make_with_state(nn.MLP)(4, 3, (5, 6), batch_norm, key=key, dtype=jnp.float64)


def test_one_cycle_values():
    # T = 100 steps, span 0.9: the cycle lasts 90 steps and peaks at 0.3 * 90 = 27.
    s = pruning.one_cycle(2.0, 100)
    assert math.isclose(float(s(0)), 2.0 / 25, rel_tol=1e-6)
    assert math.isclose(float(s(27)), 2.0, rel_tol=1e-6)
    # Cosine rise: halfway up at step 13.5, i.e. between 13 and 14.
    half = (2.0 / 25 + 2.0) / 2
    assert float(s(13)) < half < float(s(14))
    # Cosine fall over 63 steps: halfway down from the peak to 2/25/1e4 at 27 + 31.5.
    low = 2.0 / 25 / 1e4
    assert float(s(58)) > (2.0 + low) / 2 > float(s(59))
    assert math.isclose(float(s(90)), low, rel_tol=1e-5)
    assert math.isclose(float(s(100)), low, rel_tol=1e-5)
    other = pruning.one_cycle(1.0, 200, span=0.5, pct_start=0.2, div_factor=10, final_div_factor=5)
    assert math.isclose(float(other(0)), 0.1, rel_tol=1e-6)
    assert math.isclose(float(other(20)), 1.0, rel_tol=1e-6)
    assert math.isclose(float(other(100)), 0.02, rel_tol=1e-5)


@pytest.mark.parametrize("total", [3, 7, 100, 1001])
def test_one_cycle_is_optax_over_the_span(total):
    ours = pruning.one_cycle(0.3, total)
    transition = max(1, round(0.9 * total))
    with jax.numpy_dtype_promotion("standard"):  # optax's schedule needs it
        theirs = optax.cosine_onecycle_schedule(transition, 0.3)
        expected = np.asarray(jax.vmap(theirs)(jnp.arange(total + 3)))
    got = np.asarray(ours(jnp.arange(total + 3)))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def _set(model, where, value):
    return eqx.tree_at(where, model, jnp.asarray(value, jnp.float64))


def test_regularisers_by_hand():
    model, _ = _mlp()
    w0 = np.arange(-10, 10, dtype=np.float64).reshape(5, 4) / 10
    b0 = np.array([-1.0, 2.0, 0.0, 0.5, -3.0])
    model = _set(model, lambda m: m.layers[0].weight, w0)
    model = _set(model, lambda m: m.layers[0].bias, b0)
    arrays = [w0, b0] + [np.asarray(a) for a in jax.tree.leaves(model.layers[1:])]
    positive = 0.5 * sum(np.sum(np.maximum(a, 0) ** 2) for a in arrays)
    weights = 0.5 * sum(np.sum(np.asarray(layer.weight) ** 2) for layer in model.layers)
    assert math.isclose(float(pruning.positive_l2(model)), positive, rel_tol=1e-12)
    assert math.isclose(float(pruning.weights_l2(model)), weights, rel_tol=1e-12)
    # Half the squared positive part of w0: (0.1² + ... + 0.9²) / 2, b0: (4 + 0.25) / 2.
    assert math.isclose(0.5 * np.sum(np.maximum(w0, 0) ** 2), 2.85 / 2)

    bn_model, _ = _mlp(batch_norm=True)
    bn_model = _set(bn_model, lambda m: m.norms[0].weight, [1.0, -2.0, 0.5, 0.0, 3.0])
    assert math.isclose(float(pruning.bn_scale_l1(bn_model)), 6.5 + 6.0)  # second: ones(6)
    with pytest.raises(ValueError, match="BatchNorm"):
        pruning.bn_scale_l1(model)

    # The positive parts of the scales and shifts: norms[0] scales 1 + 0.5 + 3, shifts
    # 0.25 + 2; norms[1] scales ones(6), shifts zeros(6).
    bn_model = _set(bn_model, lambda m: m.norms[0].bias, [-1.0, 0.25, 0.0, 2.0, -0.5])
    assert math.isclose(float(pruning.bn_positive_l1(bn_model)), 4.5 + 2.25 + 6.0)
    with pytest.raises(ValueError, match="bn_positive_l1.*BatchNorm"):
        pruning.bn_positive_l1(model)

    method = pruning.DemP(reg=0.5, penalty="l2")
    for t in (0, 27, 60, 95):
        strength = float(pruning.one_cycle(0.5, 100)(t))
        got = float(method.regulariser(model, jnp.asarray(t), 100))
        assert math.isclose(got, strength * weights, rel_tol=1e-6), t
    assert math.isclose(
        float(
            pruning.DemP(reg=0.5, penalty="positive_l2").regulariser(model, jnp.asarray(27), 100)
        ),
        0.5 * positive,
    )
    # The default penalty: L1 on the BatchNorm scales.
    assert math.isclose(
        float(pruning.DemP(reg=0.5).regulariser(bn_model, jnp.asarray(27), 100)), 0.5 * 12.5
    )


def test_fired_and_live_parameters():
    model, _ = _mlp()
    pre = {
        "hidden.0": (jnp.array([[1.0, -1, 0, -2, 3], [-1, -1, 0, 2, -3]]),),
        "hidden.1": (jnp.array([[1.0, -1, 1, 1, 1, -1], [1, -1, 1, 1, 1, 1]]),),
    }
    live = pruning.fired(pre)
    assert live["hidden.0"].tolist() == [True, False, False, True, True]
    assert live["hidden.1"].tolist() == [True, False, True, True, True, True]
    mask = pruning.live_parameters(model, live)
    full = jax.tree.map(
        lambda m, p: np.broadcast_to(m, p.shape), mask, eqx.filter(model, eqx.is_array)
    )
    l0, l1 = np.asarray(live["hidden.0"]), np.asarray(live["hidden.1"])
    assert np.array_equal(full.layers[0].weight, np.repeat(l0[:, None], 4, axis=1))
    assert np.array_equal(full.layers[0].bias, l0)
    assert np.array_equal(full.layers[1].weight, l1[:, None] & l0[None, :])
    assert np.array_equal(full.layers[1].bias, l1)
    assert np.array_equal(full.layers[2].weight, np.repeat(l1[None, :], 3, axis=0))
    assert full.layers[2].bias.all()  # the classifier's bias belongs to no unit


def test_live_parameters_of_a_flattened_conv():
    # The last convolution's channels own blocks of height × width columns.
    model, _ = eqx.nn.make_with_state(nn.ConvNet)(
        1, 3, 8, channels=(2, 3), hidden=(4,), kernel_size=3, key=jr.key(0, impl="rbg")
    )
    live = {"conv.0": jnp.array([True, True]), "conv.1": jnp.array([True, False, True])}
    live["fc.0"] = jnp.ones(4, bool)
    mask = pruning.live_parameters(model, live)
    w = np.broadcast_to(mask.linears[0].weight, model.linears[0].weight.shape)
    assert w.shape == (4, 3 * 2 * 2)
    assert np.array_equal(w[0], np.repeat([True, False, True], 4))


def test_noise_touches_live_units_only():
    model, _ = _mlp()
    params = eqx.filter(model, eqx.is_inexact_array)
    live = {"hidden.0": jnp.array([True, False, True, True, False]), "hidden.1": jnp.ones(6, bool)}
    mask = pruning.live_parameters(model, live)
    zeros = jax.tree.map(jnp.zeros_like, params)
    noise = pruning.live_noise(0.1, jr.key(3))
    state = noise.init(params)
    updates, state = noise.update(zeros, state, params, live=mask)
    dead = ~np.asarray(live["hidden.0"])
    w0, b0, w1 = (
        np.asarray(a)
        for a in (updates.layers[0].weight, updates.layers[0].bias, updates.layers[1].weight)
    )
    # A dead unit's incoming weights, bias and outgoing weights get nothing...
    assert not w0[dead].any() and not b0[dead].any() and not w1[:, dead].any()
    # ...the live ones all get noise of scale 0.1.
    assert np.all(w0[~dead] != 0) and np.all(w1[:, ~dead] != 0)
    everything = np.concatenate([np.ravel(a) for a in jax.tree.leaves(updates)])
    assert 0.05 < np.std(everything[everything != 0]) < 0.2
    # Deterministic: the same key and count give the same noise; the next count or
    # another key give other noise.
    again, _ = noise.update(zeros, noise.init(params), params, live=mask)
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(again))
    )
    later, state = noise.update(zeros, state, params, live=mask)
    assert int(state.count) == 2
    assert not np.array_equal(later.layers[2].weight, updates.layers[2].weight)
    other = pruning.live_noise(0.1, jr.key(4))
    elsewhere, _ = other.update(zeros, other.init(params), params, live=mask)
    assert not np.array_equal(elsewhere.layers[2].weight, updates.layers[2].weight)
    # A schedule: sigma(0) = 0 adds nothing; without a mask every parameter moves.
    silent = pruning.live_noise(lambda t: jnp.zeros(()), jr.key(3))
    quiet, _ = silent.update(zeros, silent.init(params), params, live=mask)
    assert not any(np.any(a) for a in jax.tree.leaves(quiet))
    loud, _ = noise.update(zeros, noise.init(params), params)
    assert np.all(np.asarray(loud.layers[0].weight) != 0)


def test_noise_under_jit_and_prune():
    model, _ = _mlp()
    params = eqx.filter(model, eqx.is_inexact_array)
    noise = pruning.live_noise(pruning.one_cycle(0.1, 10), jr.key(0))
    state = noise.init(params)
    live = {"hidden.0": jnp.ones(5, bool), "hidden.1": jnp.ones(6, bool)}
    step = jax.jit(lambda u, s, m: noise.update(u, s, None, live=m))
    mask = pruning.live_parameters(model, live)
    _, state = step(params, state, mask)
    dead = pruning.dead_from_masks(
        model, {"hidden.0": np.eye(5, dtype=bool)[0], "hidden.1": np.zeros(6, bool)}
    )
    # The state is only a count: prune leaves it as it is.
    assert pruning.prune((model, state), dead)[1] == state


def test_method_hooks():
    demp = pruning.DemP(
        reg=1e-3, noise=1e-2, prune_every=10, prune_after=15, dead_test=pruning.TrainingWindow()
    )
    assert [t for t in range(0, 41) if demp.prune_at(t, 40)] == [20, 30, 40]
    assert [t for t in range(0, 26) if pruning.DemP(prune_every=10).prune_at(t, 25)] == [10, 20, 25]
    assert pruning.DemP().every(1000) == 62
    assert set(demp.schedules(100)) == {"reg", "noise"}
    dense = pruning.Dense()
    assert not any(dense.prune_at(t, 10) for t in range(11))
    assert dense.schedules(10) == {}
    model, state = _mlp()
    activity = pruning.init_activity(model)
    assert demp.select(model, state, activity, None, step=20, total_steps=40, key=None) is None
    for bad in (
        dict(reg=-1.0),
        dict(noise=-1.0),
        dict(penalty="l3"),
        dict(prune_every=0),
        dict(span=0.0),
        dict(pct_start=1.0),
    ):
        with pytest.raises(ValueError):
            pruning.DemP(**bad)
    for bad_test in (lambda: pruning.TrainingWindow(0), lambda: pruning.EvalSnapshot(0)):
        with pytest.raises(ValueError):
            bad_test()
    with pytest.raises(TypeError, match="dead_test"):
        pruning.DemP(dead_test=4)


def test_noise_schedule_is_its_own():
    T = 100
    default = pruning.DemP(reg=0.1, noise=0.02).schedules(T)
    # The reference shape for both: one cycle over 90 steps, peaking at step 27.
    for t in (0, 27, 60, 95):
        assert float(default["noise"](t)) == pytest.approx(float(pruning.one_cycle(0.02, T)(t)))
    assert float(default["noise"](27)) == pytest.approx(0.02)
    # A flat regulariser with the noise still annealed, and the other way round.
    flat_reg = pruning.DemP(
        reg=0.1,
        noise=0.02,
        span=1.0,
        div_factor=1.0,
        final_div_factor=1.0,
        noise_schedule=pruning.one_cycle,
    ).schedules(T)
    assert [float(flat_reg["reg"](t)) for t in (0, 50, 99)] == pytest.approx([0.1] * 3)
    for t in (0, 27, 95):
        assert float(flat_reg["noise"](t)) == pytest.approx(float(default["noise"](t)))
    flat_noise = pruning.DemP(
        reg=0.1, noise=0.02, noise_schedule=lambda peak, steps: optax.constant_schedule(peak)
    ).schedules(T)
    assert float(flat_noise["noise"](95)) == 0.02
    assert float(flat_noise["reg"](27)) == pytest.approx(0.1)
    assert float(flat_noise["reg"](95)) < 1e-5
    # The schedule is called with the peak and the number of steps.
    seen = []
    pruning.DemP(noise=0.3, noise_schedule=lambda *a: seen.append(a) or (lambda t: 0.0)).schedules(
        7
    )
    assert seen == [(0.3, 7)]
    with pytest.raises(TypeError, match="noise_schedule"):
        pruning.DemP(noise_schedule=0.5)


def test_noise_schedule_is_logged():
    from toolkit.pruning._train import describe

    assert describe(pruning.DemP())["noise_schedule"] is None
    half = functools.partial(pruning.one_cycle, span=0.5)
    assert (
        describe(pruning.DemP(noise_schedule=half))["noise_schedule"]
        == "partial(toolkit.pruning._method.one_cycle, span=0.5)"
    )
    flat = describe(pruning.DemP(noise_schedule=lambda peak, steps: lambda t: peak))
    assert flat["noise_schedule"] == f"{__name__}.test_noise_schedule_is_logged.<locals>.<lambda>"
    # A partial of a callable object is named by the object's class.
    wrapped = functools.partial(_Shape(), span=0.5)
    assert describe(pruning.DemP(noise_schedule=wrapped))["noise_schedule"] == (
        f"partial({__name__}._Shape, span=0.5)"
    )


class _Shape:
    def __call__(self, peak, steps, span=1.0):
        return lambda t: peak


def test_select_waits_for_a_window():
    model, state = _mlp()
    demp = pruning.DemP(dead_test=pruning.TrainingWindow(4))
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    activity = pruning.update_activity(pruning.init_activity(model), model, state, xs)
    assert demp.select(model, state, activity, None, step=1, total_steps=2, key=None) is None
    activity = pruning.update_activity(activity, model, state, xs)
    dead = demp.select(model, state, activity, None, step=1, total_steps=2, key=None)
    assert isinstance(dead, pruning.DeadUnits)
    assert dead.masks["hidden.0"].shape == (5,)


def test_bn_positive_l1_acts_on_positive_batchnorm_parameters_only():
    model, _ = _mlp(batch_norm=True)
    model = _set(model, lambda m: m.norms[0].bias, [-1.0, 0.25, 0.0, 2.0, -0.5])
    params = eqx.filter(model, eqx.is_inexact_array)
    grads = jax.grad(lambda p: pruning.bn_positive_l1(eqx.combine(p, model)))(params)
    # Gradient 1 on every positive scale and shift, 0 on the rest and on every layer.
    np.testing.assert_array_equal(grads.norms[0].bias, [0.0, 1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(grads.norms[0].weight, np.ones(5))
    np.testing.assert_array_equal(grads.norms[1].bias, np.zeros(6))
    for layer in grads.layers:
        assert not np.any(layer.weight) and (layer.bias is None or not np.any(layer.bias))


def test_bn_positive_l1_kills_a_unit_that_bn_scale_l1_leaves_constant():
    # One BatchNorm unit with its scale at 0 and a positive shift outputs relu(shift)
    # on every input: constant, not dead. Under DemP's regulariser and plain gradient
    # descent, L1 on the scales leaves the shift where it is; the positive parts of the
    # scales and shifts take it to 0 in shift / (lr * reg) steps, after which no input
    # makes the unit fire.
    model, _ = _mlp(batch_norm=True)
    model = _set(model, lambda m: m.norms[0].weight, np.zeros(5))
    model = _set(model, lambda m: m.norms[0].bias, np.full(5, 0.3))
    lr, reg = 0.01, 1.0
    for penalty in ("bn_scale_l1", "bn_positive_l1"):
        method = pruning.DemP(reg=reg, penalty=penalty, div_factor=1.0, span=1.0)
        m = model
        for t in range(40):
            params = eqx.filter(m, eqx.is_inexact_array)
            g = jax.grad(lambda p: method.regulariser(eqx.combine(p, m), jnp.asarray(t), 1000))
            m = eqx.apply_updates(m, jax.tree.map(lambda x: -lr * x, g(params)))
        # At steps 0..39 the one-cycle rise is still at its peak / div_factor = reg.
        shift = np.asarray(m.norms[0].bias)
        if penalty == "bn_scale_l1":
            np.testing.assert_array_equal(shift, np.full(5, 0.3))
        else:  # 30 steps of 0.01 to 0, then no pull at or below 0
            assert np.all(np.abs(shift) < 1e-12) or np.all(shift <= 0), shift
        hidden = jax.vmap(lambda x: m.layers[0](x))(jr.normal(jr.key(1), (64, 4)))
        out = jax.nn.relu(m.norms[0].weight[None] * hidden + shift[None])
        assert (penalty == "bn_scale_l1") == bool(np.all(out > 0))
