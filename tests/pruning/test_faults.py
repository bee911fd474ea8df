"""Bad inputs and faults of the pruning side (issue 25): one case per item, each
asserting the clear error (its type and the words that name the input) or the right
behaviour, and a run killed with SIGKILL again and again that resumes to the
uninterrupted run's weights and log. The planner's items (1, 2, 10-14) are tested
under tests/control."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import data, nn, pruning
from toolkit._cli import main
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


def _cli(argv):
    with jax.numpy_dtype_promotion("standard"):
        return main(argv)


_TRAIN = ["train", "--widths", "8", "--steps", "4", "--eval-every", "2", "--batch-size", "32"]
_TRAIN += ["--no-progress", "--plot", ""]


def _one_line_error(capsys, argv, option, status=2):
    """Run the command line; it must exit with `status` and one `error:` line that
    names `option`, without a traceback."""
    with pytest.raises(SystemExit) as e:
        _cli(argv)
    assert e.value.code == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("python -m toolkit train: error: ") and option in line, err
    return line


# --- the command line: every numeric option is checked as it is parsed --------------

# (item, the options given, the option the error must name)
_CLI_ERRORS = [
    (3, ["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
    (3, ["--steps", "0"], "argument --steps"),
    (4, ["--lr", "-1"], "argument --lr: must be a positive number, got '-1'"),
    (4, ["--lr", "nan"], "argument --lr"),
    (4, ["--weight-decay", "-1"], "argument --weight-decay"),
    (4, ["--momentum", "1"], "argument --momentum"),
    (4, ["--reg", "-0.1"], "argument --reg"),
    (4, ["--noise", "-1"], "argument --noise"),
    (4, ["--min-dead", "1.5"], "argument --min-dead"),
    (4, ["--sparsity", "1"], "argument --sparsity"),
    (4, ["--slimming-reg", "-1"], "argument --slimming-reg"),
    (4, ["--width-buckets", "1"], "argument --width-buckets"),
    (4, ["--validation", "0"], "argument --validation"),
    (17, ["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    (17, ["--batch-size", "5000"], "argument --batch-size: 5000 exceeds the 1438"),
    (17, ["--eval-every", "0"], "argument --eval-every"),
    (17, ["--prune-every", "0"], "argument --prune-every"),
    (17, ["--prune-at", "-1"], "argument --prune-at"),
    (17, ["--compile-ahead", "-1"], "argument --compile-ahead"),
    (17, ["--widths", "8", "0"], "argument --widths"),
    (22, ["--method", "snap", "--prune-at", "5"], "`--method snap` prunes at initialisation"),
    # Output paths are checked before any training (issue 25, item 14's twin).
    (14, ["--json", "/nonexistent-folder/run.json"], "argument --json: folder"),
    (14, ["--plot", "/nonexistent-folder/run.png"], "argument --plot: folder"),
    (14, ["--checkpoint", "/nonexistent-folder/run.ckpt"], "argument --checkpoint: folder"),
]


@pytest.mark.parametrize(
    "item, options, named",
    _CLI_ERRORS,
    ids=[f"item{i:02d}-{' '.join(o)}" for i, o, _ in _CLI_ERRORS],
)
def test_cli_refuses_bad_options(capsys, item, options, named):
    _one_line_error(capsys, [*_TRAIN, *options], named)


def test_item22_missing_data_one_line_or_traceback_with_debug(capsys, tmp_path):
    argv = [*_TRAIN, "--dataset", "fashion_mnist", "--data-root", str(tmp_path)]
    line = _one_line_error(capsys, argv, "argument --data-root: Fashion-MNIST file")
    assert "apt-get install -y dataset-fashion-mnist" in line
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        _cli([*argv, "--debug"])


def test_item22_internal_errors_keep_their_traceback(monkeypatch):
    # A ValueError from inside another library is a bug, not an input error.
    from toolkit.pruning import _cli as pruning_cli

    monkeypatch.setattr(pruning_cli, "build_buckets", lambda ns: np.reshape(np.zeros(3), 2))
    with pytest.raises(ValueError, match="reshape"):
        _cli(_TRAIN)


# --- resuming from the command line -------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished command-line run and its checkpoint."""
    folder = tmp_path_factory.mktemp("finished")
    ckpt = folder / "run.ckpt"
    assert _cli([*_TRAIN, "--checkpoint", str(ckpt), "--json", str(folder / "a.json")]) == 0
    return ckpt


# (item, the options that change the run, the option the error must name)
_CLI_RESUME = [
    (8, ["--lr", "0.01"], "argument --lr: the checkpoint"),
    (8, ["--weight-decay", "0.1"], "argument --weight-decay"),
    (8, ["--augment"], "argument --augment: the checkpoint"),
    (8, ["--method", "dense"], "argument --method"),
    (8, ["--reg", "0.2"], "argument --reg"),
    (8, ["--width-buckets", "0"], "argument --width-buckets"),
    (8, ["--seed", "3"], "argument --seed"),
    (19, ["--optimiser", "sgd"], "argument --optimiser: the checkpoint"),
    (19, ["--lr-schedule", "cosine"], "argument --lr-schedule"),
]


@pytest.mark.parametrize(
    "item, options, named",
    _CLI_RESUME,
    ids=[f"item{i:02d}-{' '.join(o)}" for i, o, _ in _CLI_RESUME],
)
def test_cli_resume_refuses_other_settings(capsys, finished, item, options, named):
    line = _one_line_error(capsys, [*_TRAIN, "--checkpoint", str(finished), *options], named)
    assert str(finished) in line  # and says which file


def test_item08_log_records_every_setting(finished):
    config = read_header(finished)["history"]["config"]
    settings = config["settings"]
    for name in ("optimiser", "lr", "lr_schedule", "weight_decay", "momentum", "augment"):
        assert name in settings
    assert settings["batch_size"] == 32 and settings["width_buckets"] == 2.0
    # The optimiser as built (adamw's learning rate, decay and moments), the data
    # and the initial network are recorded by the library.
    text = json.dumps(config["optimiser"])
    # The default learning rate: 5e-3 on a one-cycle schedule.
    assert '"peak": 0.005' in text and '"b1": 0.9' in text
    assert len(config["data"]) == 16 and len(config["initial_model"]) == 16


def test_item09_item20_completed_run_writes_its_log_and_says_so(capsys, finished, tmp_path):
    log = tmp_path / "new.json"
    capsys.readouterr()
    assert _cli([*_TRAIN, "--checkpoint", str(finished), "--json", str(log)]) == 0
    out = capsys.readouterr()
    assert f"wrote {log}" in out.out
    assert json.loads(log.read_text())["done"]
    assert "is already complete (4 steps): nothing to train" in out.err


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_item06_item18_cli_damaged_checkpoint(capsys, finished, tmp_path, damage):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(_damaged(finished.read_bytes(), damage))
    word = "corrupted" if damage == "corrupt" else "truncated"
    line = _one_line_error(capsys, [*_TRAIN, "--checkpoint", str(path)], "argument --checkpoint")
    assert f"{path}' is {word}" in line and "delete it" in line


# --- SIGKILL at random steps, resumed each time ------------------------------------

# Runs the command line, killing itself with SIGKILL at step `kill_at` ("step": as it
# draws that step's batch; "write": at the rename of the first checkpoint written
# after that step, its temporary file complete).
_VICTIM = textwrap.dedent(
    """
    import os, signal, sys
    from toolkit._cli import main
    from toolkit.pruning._train_data import TrainingData

    kill_at, mode, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    passed = False
    host_batch, replace = TrainingData.host_batch, os.replace

    def killing_host_batch(self, step):
        global passed
        if kill_at >= 0 and step >= kill_at:
            passed = True
            if mode == "step":
                os.kill(os.getpid(), signal.SIGKILL)
        return host_batch(self, step)

    def killing_replace(src, dst):
        if passed and mode == "write" and str(dst).endswith(".ckpt"):
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)

    TrainingData.host_batch = killing_host_batch
    os.replace = killing_replace
    sys.exit(main(argv))
    """
)


def _victim(argv, kill_at=-1, mode="step") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _VICTIM, str(kill_at), mode, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _arrays(path) -> bytes:
    """The arrays of a checkpoint: the bytes after its header."""
    raw = path.read_bytes()
    start = raw.index(b"\n") + 1 + 32 + 8  # the magic line, the digest, the length
    size = int.from_bytes(raw[start : start + 8], "little")
    return raw[start + 8 + size :]


def _log(path) -> dict:
    log = json.loads(path.read_text())
    for record in log["evaluations"]:
        for k in ("step_time", "compile_time", "compilations"):
            record.pop(k)
    log.pop("compilations")
    return log


def test_sigkill_at_random_steps_resumes_exactly(tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    steps = 300
    argv = ["train", "--widths", "16", "16", "--steps", str(steps), "--eval-every", "50"]
    argv += ["--batch-size", "32", "--reg", "0.3", "--prune-every", "50", "--no-progress"]
    argv += ["--plot", ""]
    straight = tmp_path / "straight"
    # The uninterrupted run, alongside the killed ones.
    first = _victim([*argv, "--checkpoint", f"{straight}.ckpt", "--json", f"{straight}.json"])
    try:
        killed = tmp_path / "killed"
        argv += ["--checkpoint", f"{killed}.ckpt", "--json", f"{killed}.json"]
        kills = sorted(rng.sample(range(1, steps), 3))
        modes = [rng.choice(["step", "write"]) for _ in kills]
        context = f"random seed {seed}: killed at steps {kills} ({modes})"
        for kill_at, mode in zip(kills, modes):
            # A kill before the first checkpoint was complete leaves none to resume.
            saved = killed.with_suffix(".ckpt").exists()
            code, err = _wait(_victim(argv, kill_at, mode))
            assert code == -signal.SIGKILL, f"{context}\n{err}"
            assert ("resuming from step" in err) == saved, f"{context}\n{err}"
        saved = killed.with_suffix(".ckpt").exists()
        code, err = _wait(_victim(argv))
        assert code == 0, f"{context}\n{err}"
        assert ("resuming from step" in err) == saved, context
        code, err = _wait(first)
        assert code == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    # The same weights, bit for bit, and the same log (times and compilation counts
    # aside: every process compiles afresh).
    assert _arrays(killed.with_suffix(".ckpt")) == _arrays(straight.with_suffix(".ckpt")), context
    assert _log(killed.with_suffix(".json")) == _log(straight.with_suffix(".json")), context
