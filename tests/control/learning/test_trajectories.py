import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import control
from toolkit.control import learning


def _linear(t, x, u, args):
    return args["a"] * x + args["b"] * u


def _square(t, x, u, args):
    return x[0] ** 2


def _scalar_problem(u_bounds=(-1.0, 1.0)):
    # x' = a x + b u, L = x², on [0, 2]: analytic solutions for constant controls.
    return control.OptimalControlProblem(
        dynamics=_linear,
        running_cost=_square,
        x0=jnp.array([1.0]),
        t1=2.0,
        u_bounds=(jnp.array([u_bounds[0]]), jnp.array([u_bounds[1]])),
    )


ARGS = {"a": jnp.array(-0.7), "b": jnp.array(2.0)}


def test_controls_interpolation():
    ts = jnp.array([0.0, 1.0, 3.0])
    values = jnp.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]])
    lin = learning.Controls(ts, values)
    const = learning.Controls(ts, values, kind="constant")
    for t in (0.0, 0.5, 1.0, 2.0, 2.999, 3.0, 4.0, -1.0):
        expected = np.array([np.interp(t, ts, values[:, i]) for i in range(2)])
        assert np.allclose(lin(jnp.array(t)), expected)
    assert np.allclose(const(jnp.array(0.5)), values[0])
    assert np.allclose(const(jnp.array(1.0)), values[1])
    assert np.allclose(const(jnp.array(2.9)), values[1])
    assert np.allclose(const(jnp.array(3.0)), values[2])
    with pytest.raises(ValueError, match="kind"):
        learning.Controls(ts, values, kind="cubic")


@pytest.mark.parametrize("kind", ["piecewise_constant", "smooth"])
def test_random_controls_stay_in_the_box(kind):
    problem = control.problems.get("van_der_pol").problem  # u in [-0.3, 1]
    c = learning.random_controls(jr.key(0), problem, 20, batch=16, kind=kind)
    assert c.values.shape == (16, 21, 1) and c.ts.shape == (16, 21)
    assert float(c.values.min()) >= -0.3 and float(c.values.max()) <= 1.0
    # They use the box, not a corner of it.
    assert float(c.values.max() - c.values.min()) > 0.8
    again = learning.random_controls(jr.key(0), problem, 20, batch=16, kind=kind)
    assert np.array_equal(c.values, again.values)
    other = learning.random_controls(jr.key(1), problem, 20, batch=16, kind=kind)
    assert not np.allclose(c.values, other.values)


def test_random_controls_on_a_half_infinite_box():
    problem = control.problems.get("cancer_treatment").problem  # u >= 0
    c = learning.random_controls(jr.key(0), problem, 10, batch=4, scale=2.0)
    assert float(c.values.min()) >= 0.0 and float(c.values.max()) <= 2.0


def test_simulate_matches_the_analytic_solution():
    problem = _scalar_problem()
    a, b, u = -0.7, 2.0, 0.4
    controls = learning.Controls(jnp.array([0.0, 2.0]), jnp.array([[u], [u]]))
    ts = jnp.linspace(0.0, 2.0, 9)
    xs = learning.simulate(problem.dynamics, problem.x0, controls, ts, args=ARGS)
    exact = (1.0 + b * u / a) * jnp.exp(a * ts) - b * u / a
    assert xs.shape == (9, 1)
    assert np.allclose(xs[:, 0], exact, rtol=1e-7, atol=1e-9)
    # Fixed RK4 steps agree to O(dt⁴).
    rk4 = learning.Simulator(control.RK4(), diffrax.ConstantStepSize(), dt0=0.01)
    xs4 = learning.simulate(problem.dynamics, problem.x0, controls, ts, args=ARGS, simulator=rk4)
    assert np.allclose(xs4[:, 0], exact, rtol=1e-8)


def test_evaluate_matches_the_analytic_cost():
    problem = _scalar_problem()
    controls = learning.Controls(jnp.array([0.0, 2.0]), jnp.zeros((2, 1)))
    cost = learning.evaluate(problem, controls, args=ARGS)
    # x = exp(a t), ∫_0^2 x² dt = (exp(2 a T) - 1) / (2 a).
    a = -0.7
    assert np.isclose(float(cost), (np.exp(2 * a * 2.0) - 1) / (2 * a), rtol=1e-7)


def test_generate_is_deterministic_batched_and_noisy():
    problem = _scalar_problem()
    controls = learning.random_controls(jr.key(0), problem, 8, batch=32)
    x0s = learning.initial_states(jr.key(1), problem, 32, 0.3)
    ts = jnp.linspace(0.0, 2.0, 41)
    clean = learning.generate(jr.key(2), problem, controls, ts, args=ARGS, x0s=x0s)
    noisy = learning.generate(jr.key(2), problem, controls, ts, args=ARGS, x0s=x0s, noise_std=0.05)
    again = learning.generate(jr.key(2), problem, controls, ts, args=ARGS, x0s=x0s, noise_std=0.05)
    other = learning.generate(jr.key(3), problem, controls, ts, args=ARGS, x0s=x0s, noise_std=0.05)
    assert noisy.xs.shape == (32, 41, 1) and noisy.ts.shape == (32, 41)
    assert np.array_equal(noisy.xs, again.xs)
    assert not np.allclose(noisy.xs, other.xs)
    # Each trajectory follows its own initial state and control.
    assert np.allclose(clean.xs[:, 0], x0s)
    for i in (0, 17):
        xs = learning.simulate(
            problem.dynamics,
            x0s[i],
            jax.tree_util.tree_map(lambda v: v[i], controls),
            ts,
            args=ARGS,
        )
        assert np.allclose(clean.xs[i], xs, rtol=1e-12)
    # Gaussian observation noise of the requested size (initial states are exact).
    err = np.asarray(noisy.xs - clean.xs)
    assert np.all(err[:, 0] == 0)
    assert abs(err[:, 1:].std() - 0.05) < 0.005 and abs(err[:, 1:].mean()) < 0.005
    train, valid = learning.split(noisy, 24)
    assert train.size == 24 and valid.size == 8
    assert np.array_equal(valid.xs, noisy.xs[24:]) and np.array_equal(valid.x0s, x0s[24:])
    with pytest.raises(ValueError):
        learning.split(noisy, 32)


def test_perturbed_controls():
    problem = _scalar_problem(u_bounds=(-0.5, 0.5))
    base = learning.Controls(jnp.linspace(0.0, 2.0, 5), jnp.full((5, 1), 0.45))
    c = learning.perturb_controls(jr.key(0), base, problem, 0.1, batch=10)
    assert c.values.shape == (10, 5, 1)
    assert float(c.values.max()) <= 0.5 and float(c.values.min()) >= -0.5
    assert np.array_equal(c.ts[3], base.ts)
