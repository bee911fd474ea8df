"""Run tutorials/demp_fashion_mnist.py on small settings and check the numbers it returns."""

import importlib.util
import pathlib

import jax
import pytest


TUTORIAL = pathlib.Path(__file__).resolve().parents[2] / "tutorials" / "demp_fashion_mnist.py"


@pytest.fixture(scope="module")
def tutorial():
    spec = importlib.util.spec_from_file_location("tutorial_demp_fashion_mnist", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tutorial, tmp_path_factory):
    plot = tmp_path_factory.mktemp("plots") / "demp.png"
    # optax's bias correction raises a float to an int32 count, which the strict dtype
    # promotion of tests/conftest.py refuses; a user's script runs with the default.
    with jax.numpy_dtype_promotion("standard"):
        return tutorial.main(
            dataset="digits",
            steps=60,
            regs=(0.3,),
            noise=3e-2,
            batch_size=64,
            prune_every=30,
            eval_every=30,
            plot_path=plot,
            progress=False,
        )


def test_demp_prunes_lenet(run):
    assert run["dataset"] == "digits" and run["steps"] == 60
    dense, (demp,) = run["dense"], run["demp"]
    assert dense["params_kept"] == 1.0 and dense["compilations"] == 1
    assert demp["reg"] == 0.3
    assert demp["params_kept"] < 0.9 and demp["flops_kept"] < 1.0
    # The prune at 30 is the last before the end, with half of training to go: the
    # arrays shrink to the live units, and the step compiles again.
    assert [p["step"] for p in demp["history"]["prunes"]] in ([30, 60], [30], [60])
    assert demp["compilations"] == 1 + sum(p["step"] < 60 for p in demp["history"]["prunes"])
    assert 0.0 <= demp["test_accuracy"] <= 1.0 and dense["test_accuracy"] > 0.5


def test_plot_written(run):
    plot = pathlib.Path(run["plot"])
    assert plot.is_file() and plot.stat().st_size > 10_000


def test_falls_back_without_fashion_mnist(tutorial, monkeypatch, capsys):
    real = tutorial.data.load

    def missing(name, **kwargs):
        if name == "fashion_mnist":
            raise FileNotFoundError("Install the Debian package with `apt-get install ...`")
        return real(name, **kwargs)

    monkeypatch.setattr(tutorial.data, "load", missing)
    assert tutorial.load("fashion_mnist").name == "digits"
    assert "apt-get install" in capsys.readouterr().out
