"""`python -m toolkit learn` on tiny settings."""

import json

import jax
import pytest

from toolkit._cli import main


@pytest.mark.slow  # about a minute, mostly compiling the gradient through the planner
def test_learn_hybrid_end_to_end_writes_json_and_plot(tmp_path, capsys):
    js, png = tmp_path / "learn.json", tmp_path / "learn.png"
    argv = ["learn", "van_der_pol", "--model", "hybrid", "--method", "e2e"]
    argv += ["--N", "10", "--steps", "4", "--e2e-steps", "2", "--trajectories", "4"]
    argv += ["--samples", "5", "--width", "4", "--sysid-weight", "0", "--seed", "1"]
    argv += ["--json", str(js), "--plot", str(png)]
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        assert main(argv) == 0
    data = json.loads(js.read_text())
    assert data["problem"] == "van_der_pol"
    assert data["model"] == "hybrid" and data["method"] == "e2e"
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


def test_learn_rejects_unknown_problem_and_incompatible_choices():
    with pytest.raises(ValueError, match="Unknown problem.*van_der_pol"):
        main(["learn", "no_such_problem"])
    with pytest.raises(ValueError, match="--trajectories"):
        main(["learn", "van_der_pol", "--trajectories", "1"])
