"""`benchmarks/vs_trajax.py` writes multiple shooting's NLP for trajax's rollout: for any
controls, the rollout's states are the RK4 ends and its summed stage costs toolkit's
objective. (trajax itself is not needed: the rollout is written out here.)"""

import pathlib
import sys

import jax.numpy as jnp
import numpy as np

from toolkit import control


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
try:
    import vs_trajax
finally:
    sys.path.remove(str(_BENCHMARKS))


def test_the_rollout_is_multiple_shootings_nlp():
    N = 40  # coarse enough to be quick, fine enough that RK4 stays stable
    ex = control.problems.get("van_der_pol")
    assert float(ex.args["mu"]) == vs_trajax.MU and float(ex.problem.t1) == vs_trajax.T1
    us = np.random.default_rng(0).uniform(-0.3, 1.0, size=N + 1)
    nlp = vs_trajax.StageWise(N)
    s0, U0 = nlp.start()
    assert U0.shape == (N + 1, 1) and np.allclose(s0[:2], ex.problem.x0)
    # trajax's rollout and objective: cost(s_t, v_t, t) for t = 0..N, then the
    # terminal cost(s_{N+1}, 0, N + 1).
    s, total, xs = s0, 0.0, []
    for t in range(N + 1):
        v = jnp.array([us[t]])
        total += nlp.cost(s, v, t)
        s = nlp.dynamics(s, v, t)
        xs.append(s[:2])
        assert float(s[2]) == us[t]
    total += nlp.cost(s, jnp.zeros(1), N + 1)
    # toolkit's unknowns (x_k, u_k) at the rollout's states: every defect is zero.
    tr = control.MultipleShooting(N)
    z = jnp.concatenate([jnp.stack(xs), jnp.asarray(us)[:, None]], axis=1)
    J = tr.objective(z, ex.problem, ex.args)
    assert np.isfinite(float(J))
    np.testing.assert_allclose(float(total), float(J), rtol=1e-13)
    defects = np.asarray(tr.constraints(z, ex.problem, ex.args))[:N]
    np.testing.assert_allclose(defects, 0, atol=1e-13)
    # The bounds: v - 1 <= 0 and -0.3 - v <= 0.
    assert np.allclose(nlp.inequality(s0, jnp.array([1.0]), 3), [0.0, -1.3])
