"""`python -m toolkit learn` on tiny settings."""

import argparse
import json
import re

import jax
import pytest

from toolkit._cli import main
from toolkit.control.learning import _cli as learning_cli


@pytest.mark.slow  # about a minute, mostly compiling the gradient through the planner
def test_learn_hybrid_end_to_end_writes_json_and_plot(tmp_path, capsys):
    js, png = tmp_path / "learn.json", tmp_path / "learn.png"
    argv = ["learn", "van_der_pol", "--model", "hybrid", "--method", "e2e"]
    argv += ["--N", "10", "--steps", "4", "--e2e-steps", "2", "--trajectories", "4"]
    argv += ["--samples", "5", "--width", "4", "--sysid-weight", "0", "--seed", "1"]
    argv += ["--smoothness", "1e-2", "--json", str(js), "--plot", str(png)]
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        assert main(argv) == 0
    data = json.loads(js.read_text())
    assert data["problem"] == "van_der_pol"
    assert data["model"] == "hybrid" and data["method"] == "e2e"
    assert data["smoothness"] == 1e-2
    for key in ("curves", "costs", "plan_ok", "before", "after", "true_model_cost", "plans"):
        assert key in data
    assert {"sysid_train", "sysid_valid", "e2e_loss", "e2e_sysid"} <= set(data["curves"])
    assert len(data["curves"]["e2e_loss"]) == 2
    assert set(data["costs"]) == {"true_model", "initial", "sysid", "end_to_end"}
    assert data["before"] == data["costs"]["sysid"]
    assert data["after"] == data["costs"]["end_to_end"]
    assert len(data["plans"]["end_to_end"]["us"]) == 11
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "true model's own plan" in out and "before -> after" in out
    assert "plans on Trapezoidal(10) + control smoothness 0.01, scored" in out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["no_such_problem"], "argument problem: unknown problem 'no_such_problem'.*van_der_pol"),
        (["van_der_pol", "--trajectories", "1"], "--trajectories must be >= 2"),
        (["van_der_pol", "--N", "0"], "argument --N: must be a positive integer"),
        (["van_der_pol", "--lr", "-1"], "argument --lr: must be a positive number"),
        (["van_der_pol", "--noise", "nan"], "argument --noise: must be a number >= 0"),
        (["van_der_pol", "--perturb", "2"], "argument --perturb: must be a fraction"),
        (["van_der_pol", "--smoothness", "-1"], "argument --smoothness: must be a number >= 0"),
        (["van_der_pol", "--steps", "-5"], "argument --steps: must be an integer >= 0"),
        (["van_der_pol", "--json", "{missing}/out.json"], "argument --json: folder .* not exist"),
        (["van_der_pol", "--model", "parametric", "--curriculum"], "--curriculum grows the segm"),
        (["invasive_plant"], "invasive_plant has discrete-time dynamics"),
    ],
)
def test_learn_input_errors_are_one_line(argv, words, tmp_path, capsys):
    # Issue 25, item 22: one line naming the option, exit status 2, no traceback.
    argv = [a.format(missing=tmp_path / "missing") for a in argv]
    with pytest.raises(SystemExit) as e:
        main(["learn", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("python -m toolkit learn: error: ")
    assert re.search(words, last), err


def test_learn_a_diverged_fit_is_one_line_with_status_1(capsys):
    # Issue 26: a planted divergence (a huge --lr) stops before end-to-end training.
    argv = ["learn", "simple_case", "--model", "neural_ode", "--method", "e2e", "--lr", "1e200"]
    argv += [
        "--N",
        "10",
        "--steps",
        "3",
        "--e2e-steps",
        "1",
        "--trajectories",
        "3",
        "--samples",
        "6",
    ]
    argv += ["--width", "4"]
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("python -m toolkit learn: error: ")
    assert re.search(r"system identification diverged: .* is (nan|inf) at step 1.*--lr", last), err


def test_learn_reports_the_full_horizon_rollout_error_and_runs_the_curriculum(tmp_path, capsys):
    # Issue 26: next to the segment loss, the error of whole-horizon predictions; and
    # segments growing from 4 sampling intervals to the whole horizon (5 here).
    js = tmp_path / "learn.json"
    argv = ["learn", "simple_case", "--model", "neural_ode", "--method", "sysid", "--N", "5"]
    argv += ["--steps", "3", "--trajectories", "3", "--samples", "6", "--width", "4"]
    argv += ["--curriculum", "--json", str(js)]
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        assert main(argv) == 0
    data = json.loads(js.read_text())
    rollout = data["rollout_error"]
    assert set(rollout) == {"initial", "sysid"}
    assert all(0 < v < 10 for v in rollout.values()), rollout
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("sysid: "))
    assert "multiple-shooting loss" in line
    assert (
        f"rollout error (relative RMS) {rollout['initial']:.3e} -> {rollout['sysid']:.3e}" in line
    )
    # Lengths (4, 5) over 3 steps: floor(i * 2 / 3) = 0, 0, 1.
    assert data["curves"]["sysid_segment"] == [4, 4, 5]
    assert "curriculum: segments of 4, 5 sampling intervals" in out


def test_learn_redraws_trajectories_that_blew_up(monkeypatch, capsys):
    # bacteria's true system blows up (x -> -inf in finite time) under many random
    # controls: those are drawn again, and learning runs on finite data; where the
    # draws run out, one line says so rather than blaming the model (issue 26).
    import jax.numpy as jnp
    import jax.random as jr

    from toolkit import control
    from toolkit.control import learning

    ex = control.problems.get("bacteria")
    sim = learning.FixedStepRK4(3)
    ns = argparse.Namespace(trajectories=24, noise=1e-3)
    keys = tuple(jr.split(jr.key(0), 3))
    ts = jnp.linspace(0.0, 1.0, 41)
    data, drawn, blown_up = learning_cli._finite_data(learning, keys, ex, ts, sim, ns)
    assert data.size == 24 and bool(jnp.all(jnp.isfinite(data.xs)))
    assert drawn % 24 == 0 and drawn > 24 and 0 < blown_up <= drawn - 24
    monkeypatch.setattr(learning_cli, "_DRAWS", 1)
    argv = ["learn", "bacteria", "--model", "neural_ode", "--method", "sysid", "--steps", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("python -m toolkit learn: error: ")
    assert re.search(r"non-finite states: the true bacteria system blew up under \d+ of the", last)
    assert re.search(r"leaving \d+ finite trajectories of the 24 needed", last)


def test_learn_says_what_a_non_finite_rollout_error_means():
    from toolkit.control.learning._cli import _blew_up

    assert _blew_up(0.12) == ""
    for bad in (float("nan"), float("inf")):
        assert "blows up under a held-out control" in _blew_up(bad)


def test_learn_suggests_the_problems_own_grid_when_the_true_plan_fails():
    from toolkit.control.learning._cli import _unconverged_truth

    coarse = _unconverged_truth("Trapezoidal(30)", 30, 100)
    assert "Trapezoidal(30)" in coarse and "--N 100 (the problem's own)" in coarse
    assert "--N" not in _unconverged_truth("Trapezoidal(100)", 100, 100)
