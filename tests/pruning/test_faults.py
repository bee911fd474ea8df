"""Bad inputs and faults of the pruning side (issue 25): one case per item, each
asserting the clear error (its type and the words that name the input) or the right
behaviour, and a run killed with SIGKILL again and again that resumes to the
uninterrupted run's weights and log. The planner's items (1, 2, 10-14) are tested
under tests/control."""

import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import data, nn, pruning
from toolkit.pruning._checkpoint import read_header


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


# --- training: checkpoints and resuming --------------------------------------------


def test_item03_train_refuses_zero_epochs(digits):
    with pytest.raises(ValueError, match="`epochs` must be a positive int, got 0"):
        _train(*_mlp(), digits, epochs=0, key=jr.key(0))


def _damaged(raw: bytes, damage: str) -> bytes:
    if damage == "truncate":
        return raw[: len(raw) // 2]
    raw = bytearray(raw)
    raw[-100] ^= 0x01  # one bit of an array: the same size, a silently different run
    return bytes(raw)


def _adamw(lr=1e-2, wd=1e-4):
    return optax.adamw(lr, weight_decay=wd)


# (item, the setting, the first run's and the resumed run's arguments, the words of the error)
_RESUME = [
    (8, "learning rate", dict(optimiser=_adamw(1e-2)), dict(optimiser=_adamw(1e-3)), "-0.01"),
    (8, "weight decay", dict(optimiser=_adamw(wd=1e-4)), dict(optimiser=_adamw(wd=0.0)), "0.0001"),
    (8, "augmentation", {}, dict(augment=data.augment), "its augment is None"),
    (19, "optimiser", dict(optimiser=_adamw()), dict(optimiser=optax.sgd(1e-2)), "optimiser"),
    (
        19,
        "schedule",
        dict(optimiser=optax.adam(1e-2)),
        dict(optimiser=optax.adam(optax.cosine_decay_schedule(1e-2, 8))),
        "optimiser",
    ),
    (8, "method", dict(method=pruning.Dense()), dict(method=pruning.DemP()), "its method"),
]


@pytest.mark.parametrize(
    "item, what, first, second, words", _RESUME, ids=[f"item{c[0]:02d}-{c[1]}" for c in _RESUME]
)
def test_library_resume_refuses_another_run(digits, tmp_path, item, what, first, second, words):
    path = tmp_path / "run.ckpt"
    _train(*_mlp(), digits, checkpoint=path, stop_at=4, **{**_RUN, **first})
    with pytest.raises(ValueError, match="another run") as e:
        _train(*_mlp(), digits, checkpoint=path, **{**_RUN, **second})
    assert words in str(e.value) and "run.ckpt" in str(e.value)


def test_item08_other_data_or_initial_network(digits, tmp_path):
    path = tmp_path / "run.ckpt"
    _train(*_mlp(), digits, checkpoint=path, stop_at=4, **_RUN)
    # The same name and size, one label changed: another data set.
    y = np.asarray(digits.y_train).copy()
    y[0] = (y[0] + 1) % 10
    other = eqx.tree_at(lambda d: d.y_train, digits, jnp.asarray(y))
    with pytest.raises(ValueError, match="another run: its data is"):
        _train(*_mlp(), other, checkpoint=path, **_RUN)
    with pytest.raises(ValueError, match="another run: its initial_model is"):
        _train(*_mlp(seed=1), digits, checkpoint=path, **_RUN)


def test_item06_corrupted_checkpoint_is_refused(digits, tmp_path):
    path = tmp_path / "run.ckpt"
    _train(*_mlp(), digits, checkpoint=path, stop_at=4, **_RUN)
    path.write_bytes(_damaged(path.read_bytes(), "corrupt"))
    with pytest.raises(ValueError, match=r"run\.ckpt' is corrupted.*checksum.*delete it"):
        _train(*_mlp(), digits, checkpoint=path, **_RUN)


def test_item18_truncated_checkpoint_is_refused(digits, tmp_path):
    path = tmp_path / "run.ckpt"
    _train(*_mlp(), digits, checkpoint=path, stop_at=4, **_RUN)
    raw = path.read_bytes()
    for size in (len(raw) - 1, len(raw) // 2, 40, 10, 0):
        path.write_bytes(raw[:size])
        with pytest.raises(ValueError, match=r"run\.ckpt' is truncated.*delete it"):
            _train(*_mlp(), digits, checkpoint=path, **_RUN)


def test_item07_divergence_keeps_the_last_good_checkpoint(digits, tmp_path):
    path = tmp_path / "run.ckpt"
    # Sane for 4 steps, then a learning rate that makes the parameters NaN.
    lr = lambda t: jnp.where(t < 4, jnp.float32(1e-3), jnp.float32(jnp.nan))  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"diverged.*keeps step 4, the last good one"):
        _train(*_mlp(), digits, optimiser=optax.sgd(lr), checkpoint=path, **_RUN)
    header = read_header(path)
    assert header["step"] == 4


def test_item20_resume_says_from_where(digits, tmp_path, capsys):
    path = tmp_path / "run.ckpt"
    _train(*_mlp(), digits, checkpoint=path, stop_at=4, **_RUN)
    capsys.readouterr()
    _train(*_mlp(), digits, checkpoint=path, **_RUN)
    assert f"resuming from step 4 of 8 ({path})" in capsys.readouterr().err


def test_item09_completed_run_writes_a_new_log(digits, tmp_path):
    path, log = tmp_path / "run.ckpt", tmp_path / "late.json"
    first = _train(*_mlp(), digits, checkpoint=path, **_RUN)
    again = _train(*_mlp(), digits, checkpoint=path, log=log, **_RUN)
    assert json.loads(log.read_text()) == json.loads(json.dumps(again[2]))
    assert again[2]["evaluations"] == json.loads(json.dumps(first[2]))["evaluations"]


def test_item21_files_follow_the_umask(digits, tmp_path):
    path, log = tmp_path / "run.ckpt", tmp_path / "log.json"
    old = os.umask(0o022)
    try:
        _train(*_mlp(), digits, checkpoint=path, log=log, **_RUN)
        os.umask(0o077)
        _train(*_mlp(), digits, checkpoint=tmp_path / "private.ckpt", **_RUN)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert log.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.ckpt").stat().st_mode & 0o777 == 0o600
