"""`benchmarks/fatrop.py` writes the transcriptions' NLPs stage-wise for FATROP: at any
point, its objective and constraints are toolkit's."""

import pathlib
import sys

import casadi as ca
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import control


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
try:
    import fatrop
finally:
    sys.path.remove(str(_BENCHMARKS))


@pytest.mark.parametrize("name", ["trapezoidal", "hermite_simpson", "multiple_shooting"])
def test_the_stage_wise_nlp_is_the_transcriptions(name):
    N = 6
    ex = control.problems.get("van_der_pol")
    assert float(ex.args["mu"]) == fatrop.MU and float(ex.problem.t1) == fatrop.T1
    # toolkit's unknowns: rows (x_k, u_k), and Hermite–Simpson's midpoint control m_k.
    z = np.random.default_rng(0).normal(size=(N + 1, 4 if name == "hermite_simpson" else 3))
    z[0, :2] = fatrop.X0
    w = []
    for k in range(N + 1):
        w += list(z[k, :3])
        if k < N:  # the stage control: the next control, or (m_k and) the next node
            if name == "multiple_shooting":
                w += [z[k + 1, 2]]
            else:
                w += list(z[k, 3:]) + list(z[k + 1, :3])
    stage_wise = fatrop.StageWise(name, N)
    nlp = stage_wise.nlp
    J, g = ca.Function("nlp", [nlp["x"], nlp["p"]], [nlp["f"], nlp["g"]])(w, fatrop.MU)
    g = np.asarray(g).ravel()

    tr = fatrop.TRANSCRIPTIONS[name](N)
    J_toolkit = tr.objective(jnp.asarray(z), ex.problem, ex.args)
    c = np.asarray(tr.constraints(jnp.asarray(z), ex.problem, ex.args))
    mask = np.asarray(tr.constraint_mask(ex.problem))
    assert mask[:N].all() and not mask[N:].any()  # rows past N pad a final-state row
    defects = c[:N]
    np.testing.assert_allclose(float(J), float(J_toolkit), rtol=1e-13)
    np.testing.assert_allclose(g[:2], fatrop.X0)
    rows = g[2:].reshape(N, -1)
    if name == "multiple_shooting":  # s_{k+1} - (RK4 end, v_k)
        np.testing.assert_allclose(rows[:, :2], defects, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(rows[:, 2], 0)
    else:  # s_{k+1} - v_k, then the trapezoidal defect
        np.testing.assert_array_equal(rows[:, :3], 0)
        np.testing.assert_allclose(rows[:, 3:], defects, rtol=1e-12, atol=1e-14)
    assert stage_wise.equality == [True] * len(g)
