import jax.numpy as jnp

from toolkit import control


def test_van_der_pol_trapezoidal_matches_ipopt():
    # IPOPT (tol 1e-12) on the identical transcription: 2.8822830588600.
    ex = control.problems.get("van_der_pol")
    sol = control.plan(ex.problem, control.Trapezoidal(100), args=ex.args)
    assert jnp.abs(sol.cost - 2.8822830588600) <= 1e-6 * 2.8822830588600
