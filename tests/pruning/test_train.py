"""The training loop: DemP kills and prunes units; checkpoints resume exactly."""

import functools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import data, nn, pruning
from toolkit.pruning._checkpoint import read_header

from .plant import plant


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _mlp(widths=(64, 64), seed=0):
    key = jr.key(seed, impl="rbg")
    return eqx.nn.make_with_state(nn.MLP)(64, 10, widths, key=key, dtype=jnp.float32)


def _train(*args, **kwargs):
    # optax's bias correction raises a float to an int32 count, which strict dtype
    # promotion (tests/conftest.py) refuses; a user's script runs with the default.
    with jax.numpy_dtype_promotion("standard"):
        return pruning.train(*args, progress=False, **kwargs)


@pytest.fixture(scope="module")
def demp_run(digits, tmp_path_factory):
    model, state = _mlp()
    log = tmp_path_factory.mktemp("demp") / "log.json"
    method = pruning.DemP(
        penalty="positive_l2",
        reg=0.1,
        noise=2e-2,
        prune_every=150,
        dead_test=pruning.TrainingWindow(1000),
    )
    out = _train(
        model,
        state,
        digits,
        method,
        optimiser=optax.adam(3e-3),
        steps=300,
        batch_size=64,
        key=jr.key(1, impl="rbg"),
        eval_every=150,
        log=log,
    )
    return model, out, log


def test_demp_kills_and_prunes(demp_run):
    initial, (model, state, history), _ = demp_run
    first, last = history["evaluations"][0], history["evaluations"][-1]
    assert [r["step"] for r in history["evaluations"]] == [0, 150, 300]
    assert first["params"] == pruning.count_params(initial) == 8970
    assert first["widths"] == {"hidden.0": 64, "hidden.1": 64}
    # Units died and were removed: the network is smaller, and still accurate.
    assert history["prunes"], "no unit was pruned"
    assert last["params"] < 0.9 * first["params"]
    assert last["flops"] < first["flops"]
    assert last["widths"] == pruning.widths(model)
    assert last["params"] == pruning.count_params(model)
    assert last["test_accuracy"] > 0.9
    # Every prune is logged with what it removed, and the widths add up.
    widths = dict(first["widths"])
    for prune in history["prunes"]:
        assert prune["step"] in (150, 300)
        assert sum(prune["removed"].values()) > 0
        widths = {k: widths[k] - prune["removed"][k] for k in widths}
        assert prune["widths"] == widths
    assert widths == last["widths"]

    # The prune at 150 is the last before the end, with half of training to go: the
    # arrays shrink to the live units (whatever the buckets), one more compilation.
    assert history["config"]["buckets"] == {"name": "WidthBuckets", "ratio": 2.0}
    shrinks = any(p["step"] == 150 for p in history["prunes"])
    assert history["compilations"]["train_step"] == 1 + shrinks
    assert last["compilations"] == history["compilations"]
    # The schedules are logged; at the end they have decayed to (almost) zero.
    assert first["reg"] == pytest.approx(0.1 / 25)
    assert last["reg"] < 1e-5 and last["noise"] < 1e-5
    for r in history["evaluations"][1:]:
        assert r["train_loss"] > 0 and r["step_time"] > 0
        assert all(0 <= r["live"][k] <= r["widths"][k] for k in r["widths"])
    assert history["done"]


def test_pruned_units_were_dead(demp_run, digits):
    # The final prune removed what was dead on the last window; what is left is a
    # network whose held-out predictions match its log.
    _, (model, state, history), _ = demp_run
    logits, _ = jax.vmap(
        eqx.nn.inference_mode(model), axis_name="batch", in_axes=(0, None), out_axes=(0, None)
    )(digits.x_test, state)
    accuracy = float(jnp.mean(jnp.argmax(logits, axis=1).astype(jnp.int32) == digits.y_test))
    assert accuracy == pytest.approx(history["evaluations"][-1]["test_accuracy"])


def test_log_file(demp_run):
    _, (_, _, history), log = demp_run
    assert json.loads(log.read_text()) == json.loads(json.dumps(history))


def test_dense_changes_nothing(digits):
    model, state = _mlp(widths=(16,))
    trained, _, history = _train(
        model, state, digits, steps=30, batch_size=64, key=jr.key(0, impl="rbg"), eval_every=15
    )
    assert pruning.widths(trained) == {"hidden.0": 16}
    assert history["prunes"] == []
    assert history["config"]["method"] == {"name": "Dense"}
    assert [r["step"] for r in history["evaluations"]] == [0, 15, 30]
    assert history["compilations"] == {"train_step": 1, "eval_step": 1}


def test_min_dead_prunes_less_often_and_only_in_bulk(digits):
    def run(min_dead):
        model, state = _mlp(widths=(32, 32))
        method = pruning.DemP(
            penalty="positive_l2",
            reg=0.3,
            noise=3e-2,
            prune_every=10,
            dead_test=pruning.TrainingWindow(64),
            min_dead=min_dead,
        )
        return _train(
            model,
            state,
            digits,
            method,
            optimiser=optax.adamw(1e-2, weight_decay=1e-4),
            steps=120,
            batch_size=32,
            key=jr.key(2, impl="rbg"),
            eval_every=60,
            buckets=pruning.ExactWidths(),  # a compilation per prune
        )[2]

    every, bulk = run(0.0), run(0.25)
    assert len(every["prunes"]) > len(bulk["prunes"]) >= 1
    units = 64
    for p in bulk["prunes"]:
        removed = sum(p["removed"].values())
        if p["step"] < 120:  # the last prune takes whatever is dead
            assert removed >= 0.25 * units
        units -= removed
    assert bulk["compilations"]["train_step"] < every["compilations"]["train_step"]
    with pytest.raises(ValueError, match="min_dead"):
        pruning.DemP(min_dead=1.0)


def test_divergence_is_an_error(digits, tmp_path):
    model, state = _mlp(widths=(16,))
    log = tmp_path / "log.json"
    with pytest.raises(FloatingPointError, match=r"diverged.*step 10.*nan.*log\.json"):
        _train(
            model,
            state,
            digits,
            optimiser=optax.sgd(1e30),
            steps=20,
            batch_size=64,
            key=jr.key(0, impl="rbg"),
            eval_every=10,
            log=log,
        )
    # The log keeps the evaluation that found it.
    assert [r["step"] for r in json.loads(log.read_text())["evaluations"]] == [0, 10]


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _strip_times(history):
    out = json.loads(json.dumps(history))
    for r in out["evaluations"]:
        for k in ("step_time", "compile_time", "compilations"):
            r.pop(k)
    out.pop("compilations")
    return out


_METHOD = pruning.DemP(
    penalty="positive_l2", reg=0.3, noise=3e-2, prune_every=20, dead_test=pruning.TrainingWindow(64)
)
_KWARGS = dict(
    optimiser=optax.adamw(1e-2, weight_decay=1e-4),
    steps=40,
    batch_size=32,
    eval_every=20,
    checkpoint_every=10,
    key=jr.key(2, impl="rbg"),
)


def _planted():
    model, state = _mlp(widths=(32, 32))
    masks = {"hidden.0": np.arange(32) < 4, "hidden.1": np.arange(32) >= 28}
    return plant(model, masks), state


@pytest.fixture(scope="module")
def straight(digits):
    model, state = _planted()
    return _train(model, state, digits, _METHOD, **_KWARGS)


@pytest.mark.parametrize("stop_at", [20, 30])
def test_resume_is_exact(digits, straight, tmp_path, stop_at):
    # Prunes at 20 and 40: interrupted at 30, the checkpoint holds a pruned network,
    # its optimiser state and an activity window mid-way; interrupted at 20, the prune
    # is the first thing the resumed run does.
    assert [p["step"] for p in straight[2]["prunes"]] == [20, 40]
    model, state = _planted()
    path = tmp_path / "run.ckpt"
    half = _train(model, state, digits, _METHOD, checkpoint=path, stop_at=stop_at, **_KWARGS)
    assert not half[2]["done"]
    assert pruning.count_params(half[0]) < pruning.count_params(model) or stop_at == 20
    resumed = _train(model, state, digits, _METHOD, checkpoint=path, **_KWARGS)
    assert resumed[2]["done"]
    # Identical parameters, BatchNorm state and log.
    assert pruning.widths(resumed[0]) == pruning.widths(straight[0])
    for a, b in zip(_leaves(resumed[:2]), _leaves(straight[:2])):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert _strip_times(resumed[2]) == _strip_times(straight[2])
    if stop_at == 30:
        return
    # A finished checkpoint gives the run back without training.
    again = _train(model, state, digits, _METHOD, checkpoint=path, **_KWARGS)
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(again[0]), _leaves(resumed[0])))
    # Another run's checkpoint is refused.
    with pytest.raises(ValueError, match="another run"):
        _train(model, state, digits, _METHOD, checkpoint=path, **{**_KWARGS, "steps": 50})


def _with_noise_schedule(**shape):
    return eqx.tree_at(
        lambda m: m.noise_schedule,
        _METHOD,
        functools.partial(pruning.one_cycle, **shape),
        is_leaf=lambda x: x is None,
    )


def test_resume_checks_the_noise_schedule(digits, tmp_path):
    model, state = _planted()
    path = tmp_path / "run.ckpt"
    half = _with_noise_schedule(span=0.5)
    _train(model, state, digits, half, checkpoint=path, stop_at=20, **_KWARGS)
    # Another schedule is another run...
    with pytest.raises(ValueError, match="another run"):
        _train(model, state, digits, _with_noise_schedule(span=0.7), checkpoint=path, **_KWARGS)
    # ...while the same one, made anew (as by a restarted script), resumes.
    resumed = _train(
        model, state, digits, _with_noise_schedule(span=0.5), checkpoint=path, **_KWARGS
    )
    assert resumed[2]["done"]
    assert resumed[2]["config"]["method"]["noise_schedule"] == (
        "partial(toolkit.pruning._method.one_cycle, span=0.5)"
    )


# Without buckets, so that every prune shrinks the arrays and compiles ahead.
_AHEAD = {**_KWARGS, "compile_ahead": 5, "buckets": pruning.ExactWidths()}


@pytest.fixture(scope="module")
def ahead(digits):
    model, state = _planted()
    return _train(model, state, digits, _METHOD, **_AHEAD)


def test_compile_ahead_trains_the_pruned_network(digits):
    # The prune at 20 compiles in the background; steps 20-24 train the silenced
    # network on the old shapes, then the switch prunes it. Without noise (whose draw
    # depends on the shapes) this is the run without compiling ahead: same prunes,
    # same widths, the same parameters up to rounding.
    quiet = pruning.DemP(
        penalty="positive_l2",
        reg=0.3,
        noise=0.0,
        prune_every=20,
        dead_test=pruning.TrainingWindow(64),
    )
    runs = [_train(*_planted(), digits, quiet, **{**_AHEAD, "compile_ahead": k}) for k in (0, 5)]
    assert [p["step"] for p in runs[0][2]["prunes"]] == [20, 40]
    for key in ("prunes", "compilations"):
        assert runs[1][2][key] == runs[0][2][key]
    assert pruning.widths(runs[1][0]) == pruning.widths(runs[0][0])
    for a, b in zip(_leaves(runs[1][:2]), _leaves(runs[0][:2])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    accs = [[r["test_accuracy"] for r in run[2]["evaluations"]] for run in runs]
    assert accs[0] == accs[1]


def test_compile_ahead_silences_then_resumes_exactly(digits, ahead, tmp_path):
    model, state = _planted()
    path = tmp_path / "run.ckpt"
    # Stopped at 23, between the prune (20) and the switch (25): the checkpoint holds
    # the old shapes with the removed units' entries at zero; the run returns the
    # network pruned.
    half = _train(model, state, digits, _METHOD, checkpoint=path, stop_at=23, **_AHEAD)
    assert read_header(path)["widths"] == pruning.widths(model)
    assert pruning.widths(half[0]) == ahead[2]["prunes"][0]["widths"]
    resumed = _train(model, state, digits, _METHOD, checkpoint=path, **_AHEAD)
    assert pruning.widths(resumed[0]) == pruning.widths(ahead[0])
    for a, b in zip(_leaves(resumed[:2]), _leaves(ahead[:2])):
        assert np.array_equal(a, b)
    assert _strip_times(resumed[2]) == _strip_times(ahead[2])
    with pytest.raises(ValueError, match="compile_ahead"):
        _train(model, state, digits, _METHOD, **{**_KWARGS, "compile_ahead": -1})


def test_arguments_are_checked(digits):
    model, state = _mlp(widths=(8,))
    key = jr.key(0, impl="rbg")
    with pytest.raises(ValueError, match="exactly one"):
        _train(model, state, digits, key=key)
    with pytest.raises(ValueError, match="exactly one"):
        _train(model, state, digits, key=key, steps=1, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        _train(model, state, digits, key=key, steps=1, batch_size=10**6)
    with pytest.raises(ValueError, match="AbstractMethod"):
        _train(model, state, digits, "demp", key=key, steps=1)
    with pytest.raises(ValueError, match="stop_at"):
        _train(model, state, digits, key=key, steps=1, stop_at=2)


def test_noise_spares_dead_units_in_training(digits):
    model, state = _mlp(widths=(16,))
    dead = np.arange(16) < 3
    model = plant(model, {"hidden.0": dead})
    # The window test, which the 640 examples do not fill: no prune at the end either.
    method = pruning.DemP(
        penalty="positive_l2",
        reg=0.0,
        noise=0.05,
        prune_every=10**6,
        dead_test=pruning.TrainingWindow(),
    )
    trained, _, _ = _train(
        model,
        state,
        digits,
        method,
        optimiser=optax.adam(1e-3),
        steps=10,
        batch_size=64,
        key=jr.key(4, impl="rbg"),
        eval_every=10,
    )
    before, after = model.layers, trained.layers
    # The dead units' incoming weights, biases and outgoing weights did not move...
    for a, b in ((before[0].weight, after[0].weight), (before[0].bias, after[0].bias)):
        assert np.array_equal(np.asarray(a)[dead], np.asarray(b)[dead])
    assert np.array_equal(
        np.asarray(before[1].weight)[:, dead], np.asarray(after[1].weight)[:, dead]
    )
    # ...while every parameter of the live ones did.
    assert np.all(np.asarray(before[0].bias)[~dead] != np.asarray(after[0].bias)[~dead])
    moved = np.asarray(before[1].weight)[:, ~dead] != np.asarray(after[1].weight)[:, ~dead]
    assert moved.all()


def test_noise_schedule_is_the_noise_of_training(digits):
    # With a zero learning rate and no regulariser, the noise alone moves parameters.
    model, state = _mlp(widths=(16,))

    def run(**kwargs):
        method = pruning.DemP(
            penalty="positive_l2",
            reg=0.0,
            noise=0.05,
            prune_every=10**6,
            dead_test=pruning.TrainingWindow(),
            **kwargs,
        )
        trained, _, history = _train(
            model,
            state,
            digits,
            method,
            optimiser=optax.sgd(0.0),
            steps=10,
            batch_size=64,
            key=jr.key(4, impl="rbg"),
            eval_every=10,
        )
        return _leaves(eqx.filter(trained, eqx.is_inexact_array)), history

    before = _leaves(eqx.filter(model, eqx.is_inexact_array))
    silent, history = run(noise_schedule=lambda peak, steps: optax.constant_schedule(0.0))
    assert all(np.array_equal(a, b) for a, b in zip(before, silent))
    assert [r["noise"] for r in history["evaluations"]] == [0.0, 0.0]
    assert history["evaluations"][-1]["reg"] == 0.0
    flat, history = run(noise_schedule=lambda peak, steps: optax.constant_schedule(peak))
    assert [r["noise"] for r in history["evaluations"]] == [0.05, 0.05]
    assert any(not np.array_equal(a, b) for a, b in zip(before, flat))
    # The default: the one-cycle shape, 0.05 / 25 at the start.
    default, history = run()
    assert history["evaluations"][0]["noise"] == pytest.approx(0.05 / 25)
    assert any(not np.array_equal(a, b) for a, b in zip(flat, default))


def test_checkpoint_written_atomically(tmp_path, monkeypatch):
    from toolkit.pruning import _checkpoint

    model, state = _mlp(widths=(4,))
    path = tmp_path / "run.ckpt"
    _checkpoint.save_checkpoint(path, {"step": 1}, (model, state))
    good = path.read_bytes()

    def crash(f, tree):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-save

    monkeypatch.setattr(_checkpoint.eqx, "tree_serialise_leaves", crash)
    with pytest.raises(KeyboardInterrupt):
        _checkpoint.save_checkpoint(path, {"step": 2}, (model, state))
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
    monkeypatch.undo()
    header, (m, s) = _checkpoint.load_checkpoint(path, lambda h: (model, state))
    assert header == {"step": 1}
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(m), _leaves(model)))
    # A checkpoint of a pruned network is read into a skeleton pruned to its widths.
    small = pruning.prune(model, {"hidden.0": np.array([True, False, True, False])})
    _checkpoint.save_checkpoint(path, {"widths": pruning.widths(small)}, small)
    _, back = _checkpoint.load_checkpoint(
        path, lambda h: _checkpoint.shrink_to(model, model, h["widths"])
    )
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(back), _leaves(small)))
    with pytest.raises(ValueError, match="do not fit"):
        _checkpoint.shrink_to(model, model, {"hidden.0": 5})
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a toolkit.pruning checkpoint"):
        _checkpoint.read_header(tmp_path / "junk")


def _noisy(key, x):
    return x + 0.5 * jr.normal(key, x.shape, x.dtype)


def test_augment_gets_a_fresh_key_per_step_and_example(digits, tmp_path):
    kwargs = dict(optimiser=optax.adam(1e-3), steps=6, batch_size=8, eval_every=3)
    key = jr.key(5, impl="rbg")
    seen = []

    def spy(k, x):
        jax.debug.callback(lambda d: seen.append(np.asarray(d).tobytes()), jr.key_data(k))
        return x

    model, state = _mlp(widths=(16,))
    plain = _train(model, state, digits, pruning.Dense(), key=key, **kwargs)
    spied = _train(model, state, digits, pruning.Dense(), key=key, augment=spy, **kwargs)
    # An augmentation that changes nothing changes nothing...
    for a, b in zip(_leaves(spied[:2]), _leaves(plain[:2])):
        assert np.array_equal(a, b)
    # ... and saw, at step t, the keys split from `fold_in(augment_key, t)`, one per
    # example: 48 different keys.
    augment_key = jr.split(key, 4)[3]
    expected = {
        np.asarray(d).tobytes()
        for t in range(6)
        for d in jr.key_data(jr.split(jr.fold_in(augment_key, t), 8))
    }
    assert len(seen) == 48 and set(seen) == expected
    # A random augmentation changes the run, reproducibly, and resumes exactly.
    noisy = _train(model, state, digits, pruning.Dense(), key=key, augment=_noisy, **kwargs)
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(noisy[0]), _leaves(plain[0])))
    path = tmp_path / "aug.ckpt"
    _train(
        model,
        state,
        digits,
        pruning.Dense(),
        key=key,
        augment=_noisy,
        checkpoint=path,
        stop_at=3,
        **kwargs,
    )
    resumed = _train(
        model, state, digits, pruning.Dense(), key=key, augment=_noisy, checkpoint=path, **kwargs
    )
    for a, b in zip(_leaves(resumed[:2]), _leaves(noisy[:2])):
        assert np.array_equal(a, b)


class _OwnSnapshot(pruning.EvalSnapshot):
    """The evaluation-mode test compiling its own program, not the trainer's."""

    def with_snapshot(self, model, state, activity, xs, snapshot):
        return self(model, state, activity, xs)


def test_the_snapshot_is_the_evaluation_steps(digits, monkeypatch):
    from toolkit.pruning import _activity

    # 100 examples in evaluation batches of 64: two batches, the second padded.
    kwargs = {**_KWARGS, "eval_batch_size": 64}
    method, by_itself = (
        eqx.tree_at(lambda m: m.dead_test, _METHOD, test)
        for test in (pruning.EvalSnapshot(100), _OwnSnapshot(100))
    )
    own = _train(*_planted(), digits, by_itself, **kwargs)

    def compiled_apart(*args, **kwargs):
        raise AssertionError("the snapshot compiled a program of its own")

    monkeypatch.setattr(_activity, "update_activity", compiled_apart)
    run = _train(*_planted(), digits, method, **kwargs)
    assert [p["step"] for p in run[2]["prunes"]] == [20, 40]
    assert run[2]["prunes"] == own[2]["prunes"]
    assert pruning.widths(run[0]) == pruning.widths(own[0])
    for a, b in zip(_leaves(run[:2]), _leaves(own[:2])):
        assert np.array_equal(a, b)


def test_an_event_waits_for_the_steps_before_it(digits, monkeypatch):
    # Events (evaluations, prunes) time themselves apart from the steps: steps still
    # running when one starts would be counted as the event's time.
    from toolkit.pruning import _train_run

    ready = []
    at_event = _train_run.Run.at_event

    def checking(self, ts, progress):
        arrays = jax.tree.leaves(eqx.filter(ts.arrays, eqx.is_array))
        ready.append(all(a.is_ready() for a in arrays))
        return at_event(self, ts, progress)

    monkeypatch.setattr(_train_run.Run, "at_event", checking)
    # Wide enough that the dispatched steps are still running at the event.
    model, state = _mlp(widths=(1024, 1024))
    kwargs = {**_KWARGS, "steps": 20, "eval_every": 10, "batch_size": 512}
    _train(model, state, digits, pruning.Dense(), **{**kwargs, "checkpoint_every": 20})
    assert len(ready) == 3 and all(ready)  # evaluations at 0, 10 and 20


def test_evaluation_batches_default_to_the_training_batch(digits, monkeypatch):
    from toolkit.pruning import _train as trainer

    sizes = []
    made = trainer.TrainingData

    def spy(*args):
        data = made(*args)
        sizes.append([x.shape[0] for x, _, _ in data.eval_batches])
        return data

    monkeypatch.setattr(trainer, "TrainingData", spy)
    kwargs = {k: v for k, v in _KWARGS.items() if k != "checkpoint_every"}
    default = _train(*_mlp(), digits, pruning.Dense(), **kwargs)
    other = _train(*_mlp(), digits, pruning.Dense(), eval_batch_size=1000, **kwargs)
    # The 359 held-out digits: 12 batches of 32, the last padded; or one batch of all.
    assert sizes == [[32] * 12, [359]]
    for a, b in zip(default[2]["evaluations"], other[2]["evaluations"]):
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a["live"] == b["live"]
        np.testing.assert_allclose(a["test_loss"], b["test_loss"], rtol=1e-5)
