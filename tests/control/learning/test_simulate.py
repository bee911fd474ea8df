"""learning.FixedStepRK4 against analytic solutions, finite differences and diffrax."""

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
import pytest

from toolkit import control
from toolkit.control import learning


def _linear(t, x, u, args):
    return args["a"] * x + args["b"] * u


def _control(t, x, u, args):
    return u


def _zero(t, x, u, args):
    return jnp.zeros((), x.dtype)


def _last(x, args):
    return x[0]


ARGS = {"a": jnp.array(-0.7), "b": jnp.array(2.0)}
X0 = jnp.array([1.0])


def test_fixed_step_rk4_has_fourth_order_on_the_analytic_solution():
    # x' = a x + b u with u constant: x = (1 + b u / a) exp(a t) - b u / a.
    a, b, u = -0.7, 2.0, 0.4
    controls = learning.Controls(jnp.array([0.0, 2.0]), jnp.array([[u], [u]]))
    ts = jnp.linspace(0.0, 2.0, 5)
    exact = (1.0 + b * u / a) * jnp.exp(a * ts) - b * u / a
    errors = []
    for m in (1, 2, 4):
        sim = learning.FixedStepRK4(m)
        xs = learning.simulate(_linear, X0, controls, ts, args=ARGS, simulator=sim)
        assert xs.shape == (5, 1) and float(xs[0, 0]) == 1.0
        errors.append(float(jnp.max(jnp.abs(xs[:, 0] - exact))))
    # Halving the step divides the error by 2^4.
    assert 13 < errors[0] / errors[1] < 20 and 13 < errors[1] / errors[2] < 20, errors
    assert errors[2] < 1e-6


@pytest.mark.parametrize("kind", ["linear", "constant"])
def test_fixed_step_rk4_steps_onto_the_control_nodes(kind):
    # x' = u, x(0) = 0: x(t1) is the integral of the signal, a polynomial of degree
    # <= 1 between nodes, which RK4 integrates exactly on steps that do not straddle
    # a node; so one step per node interval gives it to roundoff.
    nodes = jnp.array([0.0, 0.5, 1.2, 2.0])
    values = jnp.array([[1.0], [-2.0], [3.0], [0.5]])
    controls = learning.Controls(nodes, values, kind=kind)
    problem = control.OptimalControlProblem(
        dynamics=_control,
        running_cost=_zero,
        terminal_cost=_last,
        x0=jnp.array([0.0]),
        t1=2.0,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
    )
    d, v = np.diff(np.asarray(nodes)), np.asarray(values)[:, 0]
    exact = np.sum(d * (v[:-1] + v[1:]) / 2) if kind == "linear" else np.sum(d * v[:-1])
    cost = learning.evaluate(problem, controls, simulator=learning.FixedStepRK4(1))
    assert abs(float(cost) - exact) < 1e-13
    # The states at the nodes, likewise (they are the requested times).
    xs = learning.simulate(
        _control, jnp.array([0.0]), controls, nodes, simulator=learning.FixedStepRK4(1)
    )
    if kind == "linear":
        partial = np.concatenate([[0.0], np.cumsum(d * (v[:-1] + v[1:]) / 2)])
        assert np.allclose(xs[:, 0], partial, rtol=0, atol=1e-13)


SIM = learning.FixedStepRK4(3)


@pytest.fixture(scope="module")
def vdp():
    """Van der Pol, 4 trajectories of 40 sampling intervals under random smooth
    controls, simulated with `SIM`."""
    ex = control.problems.get("van_der_pol")
    controls = learning.random_controls(jr.key(0), ex.problem, 10, batch=4, kind="smooth")
    ts = jnp.linspace(0.0, 10.0, 41)
    data = learning.generate(jr.key(1), ex.problem, controls, ts, args=ex.args, simulator=SIM)
    return ex, controls, ts, data


def test_fixed_step_rk4_gradients_match_finite_differences_in_both_modes(vdp):
    ex, _, _, data = vdp
    loss = learning.MultipleShootingLoss(segment=4, simulator=SIM)

    def f(mu):
        return loss(learning.Model(ex.problem.dynamics, {"mu": mu}), data)

    mu, eps = jnp.array(0.7), 1e-5
    fd = (f(mu + eps) - f(mu - eps)) / (2 * eps)
    g_rev, g_fwd = jax.grad(f)(mu), jax.jacfwd(f)(mu)
    assert np.isclose(float(g_rev), float(fd), rtol=1e-7)
    assert np.isclose(float(g_fwd), float(g_rev), rtol=1e-12)


def test_fixed_step_rk4_agrees_with_diffrax_and_fits_by_least_squares(vdp):
    # Multiple-shooting system identification of Van der Pol's mu (Levenberg-Marquardt,
    # forward-mode Jacobians through the scan): the data and the model share the
    # simulator, so the truth is recovered to the solver's tolerance.
    ex, controls, ts, data = vdp
    tight = learning.Simulator(stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))
    reference = learning.generate(
        jr.key(1), ex.problem, controls, ts, args=ex.args, simulator=tight
    )
    assert float(jnp.max(jnp.abs(data.xs - reference.xs))) < 1e-3
    guess = learning.Model(ex.problem.dynamics, {"mu": jnp.array(0.3)})
    loss = learning.MultipleShootingLoss(segment=4, simulator=SIM)
    model, sol = learning.fit_least_squares(guess, data, loss=loss)
    assert sol.result == optx.RESULTS.successful
    assert abs(float(model.args["mu"]) - 1.0) < 1e-8


def test_fixed_step_rk4_refuses_a_bad_step_count():
    with pytest.raises(ValueError, match="`steps_per_interval` must be an integer >= 1"):
        learning.FixedStepRK4(0)
