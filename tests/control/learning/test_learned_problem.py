import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import control
from toolkit.control import learning


def test_learned_problem_uses_the_model_and_keeps_the_rest():
    ex = control.problems.get("cancer_treatment")
    field = learning.init_neural_vector_field(jr.key(0), ex.problem, known=ex.problem.dynamics)
    model = learning.Model(field, {"r": jnp.array(0.3), "delta": jnp.array(0.45)})
    problem = learning.learned_problem(ex.problem, model)
    problem.check(ex.args)
    x, u = jnp.array([0.5]), jnp.array([0.7])
    # A fresh hybrid model is exactly its known part (the MLP's last layer is zero)...
    assert np.allclose(problem.dynamics(0.0, x, u, None), ex.problem.dynamics(0.0, x, u, ex.args))
    # ...and the model's own args are used, whatever `plan`'s args are.
    assert np.allclose(problem.dynamics(0.0, x, u, ex.args), model(0.0, x, u))
    assert problem.running_cost is ex.problem.running_cost
    assert np.array_equal(problem.x0, ex.problem.x0) and problem.x_bounds is not None
    # The input normalisation comes from the boxes and is not trained.
    assert np.allclose(field.x_shift, 0.5005) and np.allclose(field.u_scale, 1.0)
    spec = learning.trainable(model)
    assert spec.dynamics.x_scale is False and spec.args["r"] is True
    d = learning.random_direction(jr.key(1), model)
    assert d.dynamics.x_scale is None and d.args["r"].shape == ()


@pytest.mark.slow  # one plan compile per problem structure
def test_plan_with_the_true_model_equals_plan_with_the_problem():
    ex = control.problems.get("van_der_pol")
    tr = control.Trapezoidal(30)
    model = learning.Model(ex.problem.dynamics, ex.args)
    a = control.plan(ex.problem, tr, args=ex.args)
    b = control.plan(learning.learned_problem(ex.problem, model), tr, args=ex.args)
    assert np.allclose(a.us, b.us, rtol=1e-10, atol=1e-12)
    assert np.isclose(float(a.cost), float(b.cost), rtol=1e-12)


@pytest.mark.slow  # compiles the training step twice (cold and warm-started plans)
def test_fit_end_to_end_with_sysid_and_imitation():
    ex = control.problems.get("van_der_pol")
    tr = control.Trapezoidal(20)
    expert = control.plan(ex.problem, tr, args=ex.args)
    model = learning.Model(ex.problem.dynamics, {"mu": jnp.array(0.4)})
    imitation = learning.Imitation(expert.xs, expert.us)
    controls = learning.random_controls(jr.key(0), ex.problem, 10, batch=3, kind="smooth")
    data = learning.generate(jr.key(1), ex.problem, controls, jnp.linspace(0, 10, 21), args=ex.args)
    fitted, history = learning.fit_end_to_end(
        model,
        ex.problem,
        tr,
        imitation,
        args=ex.args,
        optimiser=optax.adam(5e-2),
        steps=20,
        data=data,
        sysid_weight=1e-2,
    )
    assert history["failed"] == 0 and all(history["successful"])
    assert history["loss"][-1] < 0.1 * history["loss"][0], history["loss"]
    assert abs(float(fitted.args["mu"]) - 1.0) < abs(0.4 - 1.0) / 3
    assert history["sysid"][-1] < history["sysid"][0]
