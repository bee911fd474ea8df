import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import control
from toolkit.control import learning


@pytest.fixture(scope="module")
def simple():
    return control.problems.get("simple_case")


def test_the_penalty_is_the_weighted_sum_of_squared_control_changes(simple):
    problem, args = simple.problem, simple.args
    inner = control.Trapezoidal(4)
    smooth = learning.ControlSmoothness(inner, 0.5)
    z = inner.initial_guess(problem, args)
    z = z.at[:, 1].set(jnp.array([0.0, 1.0, 3.0, 2.0, 2.0]))  # block k: [x_k, u_k]
    # By hand: changes 1, 2, -1, 0; squares 1 + 4 + 1 + 0 = 6; times 0.5.
    assert float(smooth.penalty(z, problem, args)) == 3.0
    J = float(inner.objective(z, problem, args))
    assert np.isclose(float(smooth.objective(z, problem, args)), J + 3.0, rtol=1e-14)
    J2, c2 = smooth.objective_and_constraints(z, problem, args)
    assert np.isclose(float(J2), J + 3.0, rtol=1e-14)
    assert np.array_equal(c2, inner.constraints(z, problem, args))
    assert smooth.N == 4 and smooth.layout(problem) == inner.layout(problem)
    with pytest.raises(ValueError, match="`weight` must be a number >= 0"):
        learning.ControlSmoothness(inner, -1.0)


def test_the_penalty_lowers_the_total_variation_of_the_plan(simple):
    problem, args = simple.problem, simple.args
    inner = control.Trapezoidal(10)
    plain = control.plan(problem, inner, args=args)
    smooth = control.plan(problem, learning.ControlSmoothness(inner, 1.0), args=args)
    assert plain.result == smooth.result == control.RESULTS.successful

    def tv(sol):
        return float(np.sum(np.abs(np.diff(np.asarray(sol.us), axis=0))))

    assert tv(smooth) < 0.8 * tv(plain), (tv(smooth), tv(plain))
    # The plan's cost is the penalised objective: the model's cost plus the penalty.
    z = smooth.z
    penalty = float(np.sum(np.diff(np.asarray(smooth.us), axis=0) ** 2))
    model_cost = float(inner.objective(z, problem, args))
    assert np.isclose(float(smooth.cost), model_cost + penalty, rtol=1e-8)


def test_end_to_end_derivative_through_the_penalised_plan(simple):
    # The implicit derivative of the true cost of a penalised plan w.r.t. a model
    # parameter, against central differences.
    problem, args = simple.problem, simple.args
    sim = learning.FixedStepRK4(2)
    loss = learning.TrueCost(problem, args, sim)
    tr = learning.ControlSmoothness(control.Trapezoidal(10), 0.3)
    model = learning.Model(problem.dynamics, {"A": 1.0, "B": 1.0, "C": jnp.array(3.0)})

    @eqx.filter_jit
    def f(c):
        m = eqx.tree_at(lambda m: m.args["C"], model, c)
        return learning.plan_loss(m, problem, tr, loss, args=args)[0]

    grad = float(eqx.filter_grad(f)(jnp.array(3.0)))
    eps = 1e-4
    fd = (float(f(jnp.array(3.0 + eps))) - float(f(jnp.array(3.0 - eps)))) / (2 * eps)
    assert abs(grad) > 1e-3 and np.isclose(grad, fd, rtol=1e-5), (grad, fd)
