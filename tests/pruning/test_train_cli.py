"""The `train` and `demo` subcommands (toolkit.pruning._cli), on tiny settings."""

import argparse
import json
import os
import subprocess
import sys

import jax
import jax.random as jr
import pytest

from toolkit import pruning
from toolkit.pruning import _cli


def _parser():
    parser = argparse.ArgumentParser(prog="python -m toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    _cli.add_train_arguments(p)
    p.set_defaults(run=_cli.train)
    p = sub.add_parser("sweep")
    _cli.add_sweep_arguments(p)
    p.set_defaults(run=_cli.sweep)
    p = sub.add_parser("demo")
    _cli.add_demo_arguments(p)
    p.set_defaults(run=_cli.demo)
    return parser


def _main(argv):
    ns = _parser().parse_args(argv)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        return ns.run(ns)


def test_train_smoke(tmp_path, capsys):
    js, png = tmp_path / "run.json", tmp_path / "run.png"
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--widths", "16", "--steps", "20"]
    argv += ["--eval-every", "10", "--reg", "0.3", "--prune-every", "10", "--batch-size", "64"]
    argv += ["--json", str(js), "--plot", str(png), "--no-progress"]
    assert _main(argv) == 0
    log = json.loads(js.read_text())
    assert log["done"] and log["config"]["steps"] == 20
    assert log["config"]["method"]["name"] == "DemP" and log["config"]["method"]["reg"] == 0.3
    assert [r["step"] for r in log["evaluations"]] == [0, 10, 20]
    assert log["config"]["buckets"] == {"name": "WidthBuckets", "ratio": 2.0}
    assert png.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "test acc" in out and "demp" in out


def test_train_width_buckets(tmp_path):
    js = tmp_path / "run.json"
    argv = ["train", "--dataset", "digits", "--widths", "16", "--steps", "10", "--no-progress"]
    argv += ["--eval-every", "10", "--batch-size", "64", "--plot", "", "--json", str(js)]
    for ratio, buckets in [
        ("0", {"name": "ExactWidths"}),
        ("1.5", {"name": "WidthBuckets", "ratio": 1.5}),
    ]:
        assert _main([*argv, "--width-buckets", ratio]) == 0
        assert json.loads(js.read_text())["config"]["buckets"] == buckets


def test_train_missing_dataset(tmp_path, capsys):
    # The data set's own error, with its install command, reaches the user unchanged:
    # one line and exit status 2, or the exception itself with --debug.
    argv = ["train", "--dataset", "fashion_mnist", "--data-root", str(tmp_path), "--steps", "1"]
    with pytest.raises(SystemExit) as e:
        _main(argv)
    assert e.value.code == 2
    assert "apt-get install -y dataset-fashion-mnist" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        _main([*argv, "--debug"])


def test_demo_smoke(tmp_path, capsys):
    js, png = tmp_path / "demo.json", tmp_path / "demo.png"
    argv = ["demo", "--steps", "20", "--widths", "16", "--eval-every", "10", "--prune-every", "10"]
    argv += ["--json", str(js), "--plot", str(png), "--no-progress"]
    assert _main(argv) == 0
    out = capsys.readouterr().out
    assert "dense" in out and "demp" in out and "ms/step" in out
    summary = json.loads(js.read_text())["summary"]
    assert [r["method"] for r in summary] == ["dense", "demp"]
    assert png.stat().st_size > 10_000


def test_sweep_smoke(tmp_path, capsys):
    js, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    argv = ["sweep", "--widths", "16", "--steps", "10", "--eval-every", "10", "--no-dense"]
    argv += ["--regs", "0.1", "0.3", "--json", str(js), "--plot", str(png), "--no-progress"]
    assert _main(argv) == 0
    assert "reg 0.3" in capsys.readouterr().out
    out = json.loads(js.read_text())
    assert out["dense"] is None and list(out["demp"]) == ["reg 0.1", "reg 0.3"]
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "name, shape, widths",
    [
        ("mlp", (1, 40), {"hidden.0": 300, "hidden.1": 100}),
        ("lenet", (1, 28, 28), {"conv.0": 6, "conv.1": 16, "fc.0": 120, "fc.1": 84}),
        ("vgg", (1, 8, 8), {f"conv.{i}": w for i, w in enumerate((16, 16, 32, 32, 64))}),
    ],
)
def test_build_model(name, shape, widths):
    model, _ = _cli.build_model(name, shape, 10, key=jr.key(0, impl="rbg"))
    assert pruning.widths(model) == widths


def test_train_channels_set_the_convolutions(tmp_path, capsys):
    js = tmp_path / "run.json"
    argv = ["train", "--dataset", "digits", "--model", "lenet", "--channels", "3", "5"]
    argv += ["--widths", "12", "8", "--steps", "4", "--eval-every", "4", "--method", "dense"]
    assert _main([*argv, "--no-progress", "--json", str(js)]) == 0
    widths = json.loads(js.read_text())["evaluations"][-1]["widths"]
    assert widths == {"conv.0": 3, "conv.1": 5, "fc.0": 12, "fc.1": 8}
    with pytest.raises(SystemExit):
        _main(["train", "--dataset", "digits", "--channels", "3", "--steps", "4", "--no-progress"])
    assert "argument --channels: `channels` sets LeNet's and VGG's" in capsys.readouterr().err


def test_build_model_needs_images():
    with pytest.raises(ValueError, match="needs images"):
        _cli.build_model("resnet", (1, 40), 10, key=jr.key(0, impl="rbg"))
    with pytest.raises(ValueError, match="Unknown model"):
        _cli.build_model("transformer", (1, 40), 10, key=jr.key(0, impl="rbg"))


def test_train_on_a_validation_split(tmp_path, capsys):
    js = tmp_path / "run.json"
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--widths", "16", "--steps", "10"]
    argv += ["--eval-every", "10", "--method", "dense", "--batch-size", "64", "--no-progress"]
    argv += ["--validation", "0.2", "--json", str(js)]
    assert _main(argv) == 0
    log = json.loads(js.read_text())
    # round(0.2 * 1438) training examples held out; the other 1150 train.
    assert log["config"]["dataset"] == "digits:validation"
    assert (log["config"]["num_train"], log["config"]["num_test"]) == (1150, 288)
    out = capsys.readouterr().out
    assert "val acc" in out and "test acc" not in out
    assert "288 of the 1438 training examples held out" in out


def test_train_devices_must_exist(capsys):
    argv = ["train", "--dataset", "digits", "--widths", "16", "--steps", "10", "--no-progress"]
    n = jax.device_count() + 1
    with pytest.raises(SystemExit) as e:
        _main([*argv, "--devices", str(n)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --devices: {n} devices asked for, but JAX sees {n - 1}" in err
    assert "xla_force_host_platform_device_count" in err


def test_train_distributed_options_are_checked(capsys):
    argv = ["train", "--dataset", "digits", "--steps", "1", "--no-progress"]
    for extra, message in [
        (["--coordinator", "127.0.0.1:1"], "give --coordinator, --num-processes and"),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id: 2 is not below --num-processes 2",
        ),
    ]:
        with pytest.raises(SystemExit) as e:
            _main([*argv, *extra])
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    # jax.distributed must start before anything uses a device: a fresh process.
    out = subprocess.run(
        [sys.executable, "-m", "toolkit", *argv, "--coordinator", "auto"],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 2, out.stderr
    assert "'auto' found no cluster that JAX detects" in out.stderr
