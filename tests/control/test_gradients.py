"""Implicit gradients of the optimal cost on every transcription against central
finite differences (the most expensive programs of the suite to compile, so they sit
in a file of their own that the test runner can give to another core)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from toolkit import control

from ..helpers import central_difference, cost_gradient_error, relative_error


@pytest.fixture(scope="module")
def vdp():
    return control.problems.get("van_der_pol")


@pytest.mark.parametrize(
    "transcription",
    [
        control.Trapezoidal(60),
        control.HermiteSimpson(30),
        control.MultipleShooting(40),
        # A diffrax solver with substeps: the most expensive gradient to compile
        # (minutes); RK4 above covers multiple shooting's gradient in CI.
        pytest.param(
            control.MultipleShooting(20, diffrax.Heun(), substeps=3), marks=pytest.mark.slow
        ),
    ],
    ids=lambda t: type(t).__name__,
)
def test_gradient_matches_finite_differences(vdp, transcription):
    def cost(args, x0):
        problem = eqx.tree_at(lambda p: p.x0, vdp.problem, x0)
        return control.plan(problem, transcription, args=args).cost

    x0 = vdp.problem.x0
    g_args, g_x0 = jax.grad(cost, argnums=(0, 1))(vdp.args, x0)
    fd_mu = central_difference(lambda a: cost(a, x0), vdp.args, {"mu": jnp.array(1.0)}, 1e-5)
    assert relative_error(g_args["mu"], fd_mu) < 1e-5
    for i in range(2):
        e = jnp.zeros(2).at[i].set(1.0)
        fd = central_difference(lambda x: cost(vdp.args, x), x0, e, 1e-5)
        assert relative_error(g_x0[i], fd) < 1e-5


@pytest.mark.parametrize(
    "name, arg, N",
    [
        ("simple_case", "C", 20),
        # Its plan needs the interior-point fallback: a minute more to compile.
        pytest.param("cancer_treatment", "delta", 100, marks=pytest.mark.slow),
    ],
)
def test_single_shooting_gradient_matches_finite_differences(name, arg, N):
    ex = control.problems.get(name)
    assert cost_gradient_error(ex, control.SingleShooting(N), arg, 1e-5) < 1e-5
