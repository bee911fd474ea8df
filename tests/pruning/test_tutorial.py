"""Run tutorials/prune_dead_units.py on small settings and check the numbers it returns."""

import importlib.util
import pathlib

import jax
import pytest


TUTORIAL = pathlib.Path(__file__).resolve().parents[2] / "tutorials" / "prune_dead_units.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("tutorial_prune_dead_units", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # optax's bias correction raises a float to an int32 count, which the strict dtype
    # promotion of tests/conftest.py refuses; a user's script runs with the default.
    with jax.numpy_dtype_promotion("standard"):
        return module.main(steps=300, widths=(64, 64), after=20)


def test_units_died_and_went(run):
    before, after = run["widths_before"], run["widths_after"]
    assert before == {"hidden.0": 64, "hidden.1": 64}
    assert sum(after.values()) < sum(before.values())
    assert run["params_after"] < run["params_before"]
    assert run["flops_after"] < run["flops_before"]


def test_nothing_changed(run):
    assert run["train_logit_diff"] <= 1e-4  # float32 logits of size ~10
    assert run["train_accuracy_after"] == run["train_accuracy_before"]
    assert run["test_accuracy_after"] == run["test_accuracy_before"]
    assert run["test_accuracy_before"] > 0.9


def test_training_goes_on(run):
    assert run["loss_after_more_training"] < 0.1
    assert run["test_accuracy_after_more_training"] > 0.9
