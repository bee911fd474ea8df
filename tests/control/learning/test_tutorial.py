"""Run the learning tutorial on small settings and check the numbers it returns."""

import importlib.util
import pathlib

import pytest


TUTORIAL = (
    pathlib.Path(__file__).resolve().parents[3] / "tutorials" / "learn_through_the_planner.py"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("tutorial_learn", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plot = tmp_path_factory.mktemp("plots") / "learn.png"
    return module.main(N=20, n_trajectories=12, sysid_steps=300, e2e_steps=8, width=16, plot=plot)


@pytest.mark.slow  # trains a neural ODE, then through the planner (several minutes)
def test_tutorial(run):
    valid = run["sysid_valid"]
    assert valid[-1] < 0.05 * valid[0]
    assert run["field_error"] < 0.5 * run["field_scale"]
    assert run["sysid_plan_ok"] and run["e2e_plan_ok"] and run["e2e_failed"] == 0
    # keep_best (on the true cost plus the sysid term): end-to-end training does not
    # return a model materially worse on the true system.
    assert run["e2e_cost"] <= 1.05 * run["sysid_cost"]
    plot = pathlib.Path(run["plot"])
    assert plot.is_file() and plot.stat().st_size > 10_000
