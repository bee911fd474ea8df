"""Run the tutorials on small settings and check the numbers they return."""

import importlib.util
import math
import pathlib

import pytest


TUTORIALS = pathlib.Path(__file__).resolve().parent.parent / "tutorials"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


N = 20
NS = (10, 20, 40)


@pytest.fixture(scope="module")
def lqr(tmp_path_factory):
    tutorial = _load("plan_your_own_problem")
    plot = tmp_path_factory.mktemp("plots") / "lqr.png"
    return tutorial.main(N=N, Ns=NS, batch=8, plot=plot)


def test_plan_converges(lqr):
    assert lqr["converged"]
    # Unbounded LQ: the KKT conditions are linear, so Newton needs one step.
    assert lqr["num_steps"] <= 2


def test_cost_converges_at_second_order(lqr):
    errors = lqr["cost_errors"]
    assert lqr["Ns"] == list(NS)
    # The discretised optimum approaches the Riccati optimum from above...
    assert all(e > 0 for e in errors)
    assert all(e1 < e0 for e0, e1 in zip(errors[:-1], errors[1:]))
    # ...at the trapezoidal rule's rate: error ~ C h², order log2(e_N / e_2N) ≈ 2.
    for order in lqr["orders"]:
        assert 1.9 < order < 2.1, lqr["orders"]
    assert errors[-1] < 0.5 / NS[-1] ** 2
    # Hermite–Simpson, fourth order, is far closer at the same N.
    assert abs(lqr["hermite_simpson_error"]) < 1e-3 * errors[-1]


def test_states_and_costates_match_riccati(lqr):
    h2 = (1.0 / N) ** 2
    assert lqr["state_error"] < 0.5 * h2
    # sol.costates follows H = L + p·f, so it must match p = +2 P x, not -2 P x.
    assert lqr["costate_error"] < 0.5 * h2


def test_implicit_gradient_matches_finite_differences(lqr):
    assert set(lqr["grad"]) == {"a", "b", "q", "r"}
    for k, rel in lqr["grad_rel_error"].items():
        assert rel < 1e-5, (k, lqr["grad"][k], lqr["grad_fd"][k])
    # and the continuous-time derivative up to the discretisation error.
    h2 = (1.0 / N) ** 2
    for k in lqr["grad"]:
        assert abs(lqr["grad"][k] - lqr["grad_analytic"][k]) < h2, k


def test_vmap_equals_loop(lqr):
    assert lqr["vmap_loop_diff"] <= 1e-12
    assert lqr["vmap_analytic_diff"] < 3 * (1.0 / N) ** 2


def test_bounded_control(lqr):
    h = lqr["h"]
    assert math.isclose(h, 1.0 / N)
    assert lqr["bounded_converged"]
    assert abs(lqr["bounded_cost_error"]) < h**2
    # The bound is active on an initial arc ending at the analytic switching time...
    assert lqr["active_nodes"] >= 2
    assert lqr["switch_time"] - h < lqr["last_active_time"] <= lqr["switch_time"] + h
    # ...where the multipliers are positive (lower bound), and zero off it.
    assert lqr["multipliers_active_min"] > 1e-6
    assert lqr["multipliers_free_max"] < 1e-10
    # Discrete minimum principle: u_k = clip(-b p_k / 2r, lo, hi).
    assert lqr["pmp_error"] < 1e-9


def test_plot_written(lqr):
    plot = pathlib.Path(lqr["plot"])
    assert plot.is_file() and plot.stat().st_size > 10_000


def _check_gallery(rows, out):
    for row in rows:
        assert row["successful"], row
        assert row["relative_difference"] <= 1e-6, row
        assert (out / f"{row['name']}.png").stat().st_size > 0


def test_gallery_plans_to_the_references(tmp_path):
    rows = _load("gallery").main(["simple_case", "invasive_plant"], tmp_path)
    assert [r["name"] for r in rows] == ["simple_case", "invasive_plant"]
    assert [r["has_costates"] for r in rows] == [True, True]
    _check_gallery(rows, tmp_path)


@pytest.mark.slow
def test_gallery_of_the_whole_library(tmp_path):
    from toolkit import control

    rows = _load("gallery").main(None, tmp_path)
    assert [r["name"] for r in rows] == control.problems.names()
    _check_gallery(rows, tmp_path)


def test_more_devices():
    # In this process, one device: the mesh of one runs the sharded code paths.
    out = _load("more_devices").main(batch=4, N=20, steps=300)
    assert out["devices"] >= 1 and out["mesh"]["devices"] == out["devices"]
    assert out["converged"]
    # d(sum of costs)/d(mu_i) is plan i's own sensitivity: positive, as cost grows
    # with mu here.
    assert all(math.isfinite(g) and g > 0 for g in out["grad"])
    # Cost grows with mu on this range (a stiffer oscillator is harder to stop).
    assert out["costs"] == sorted(out["costs"])
    assert out["accuracy"] > 0.8 and out["prunes"]
