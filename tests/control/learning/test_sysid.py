import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import optimistix as optx
import pytest

from toolkit import control
from toolkit.control import learning


@pytest.fixture(scope="module")
def cancer():
    ex = control.problems.get("cancer_treatment")
    controls = learning.random_controls(jr.key(0), ex.problem, 10, batch=6, scale=2.0)
    return ex, controls, jnp.linspace(0.0, 20.0, 21)


def _relative_errors(model, truth):
    return {k: abs(float(model.args[k]) / float(truth[k]) - 1) for k in model.args}


def test_parametric_sysid_recovers_known_parameters(cancer):
    ex, controls, ts = cancer
    data = learning.generate(jr.key(1), ex.problem, controls, ts, args=ex.args)
    guess = learning.Model(ex.problem.dynamics, {"r": jnp.array(0.5), "delta": jnp.array(0.2)})
    model, sol = learning.fit_least_squares(guess, data)
    assert sol.result == optx.RESULTS.successful
    errors = _relative_errors(model, ex.args)
    assert max(errors.values()) < 1e-4, errors
    assert float(learning.SingleShootingLoss()(model, data)) < 1e-14


def test_parametric_sysid_degrades_gracefully_with_noise(cancer):
    ex, controls, ts = cancer
    guess = learning.Model(ex.problem.dynamics, {"r": jnp.array(0.5), "delta": jnp.array(0.2)})
    noise_levels = (1e-3, 1e-2, 3e-2)
    errors = []
    for std in noise_levels:
        # The same key: the noise is one draw, scaled, so the error must grow with it.
        data = learning.generate(jr.key(1), ex.problem, controls, ts, args=ex.args, noise_std=std)
        model, _ = learning.fit_least_squares(guess, data)
        errors.append(max(_relative_errors(model, ex.args).values()))
    assert all(e0 < e1 for e0, e1 in zip(errors[:-1], errors[1:])), errors
    # ...and stays bounded: of the order of the noise (states are O(0.1–1)).
    for std, e in zip(noise_levels, errors):
        assert e < 2 * std, (std, e)


@pytest.mark.slow  # forward-mode Jacobians through vmapped segments: a long compile
def test_multiple_shooting_sysid_of_van_der_pol():
    ex = control.problems.get("van_der_pol")
    controls = learning.random_controls(jr.key(0), ex.problem, 10, batch=4, kind="smooth")
    data = learning.generate(jr.key(1), ex.problem, controls, jnp.linspace(0, 10, 41), args=ex.args)
    guess = learning.Model(ex.problem.dynamics, {"mu": jnp.array(0.3)})
    loss = learning.MultipleShootingLoss(segment=4)
    assert float(loss(guess, data)) > 1e-3
    model, _ = learning.fit_least_squares(guess, data, loss=loss)
    assert abs(float(model.args["mu"]) - 1.0) < 1e-4
    # Multiple shooting restarts from the data: it equals single shooting for one
    # segment, and vanishes at the truth for any segment length.
    truth = learning.Model(ex.problem.dynamics, ex.args)
    assert float(loss(truth, data)) < 1e-14
    whole = learning.MultipleShootingLoss(segment=40)
    assert np.isclose(float(whole(guess, data)), float(learning.SingleShootingLoss()(guess, data)))


@pytest.fixture(scope="module")
def vdp_data():
    ex = control.problems.get("van_der_pol")
    controls = learning.random_controls(jr.key(2), ex.problem, 20, batch=10, kind="smooth")
    x0s = learning.initial_states(jr.key(3), ex.problem, 10, 0.5)
    data = learning.generate(
        jr.key(4),
        ex.problem,
        controls,
        jnp.linspace(0, 10, 41),
        args=ex.args,
        x0s=x0s,
        noise_std=1e-3,
    )
    return ex, learning.split(data, 8)


# Fixed RK4 steps: fast to compile and to differentiate.
RK4 = learning.FixedStepRK4(2)


@pytest.mark.slow  # ~1 min: trains two MLP vector fields
@pytest.mark.parametrize("hybrid", [False, True], ids=["neural", "hybrid"])
def test_neural_ode_sysid_lowers_the_validation_loss(vdp_data, hybrid):
    ex, (train, valid) = vdp_data
    if hybrid:
        # The structure is known but the damping is wrong; the MLP learns the rest.
        known = learning.NeuralVectorField(
            2, 1, width_size=16, known=ex.problem.dynamics, key=jr.key(5)
        )
        model = learning.Model(known, {"mu": jnp.array(0.3)})
        filter_spec = eqx.tree_at(lambda m: m.args["mu"], learning.trainable(model), False)
    else:
        model = learning.Model(
            learning.init_neural_vector_field(jr.key(5), ex.problem, width_size=16)
        )
        filter_spec = None
    loss = learning.MultipleShootingLoss(segment=4, simulator=RK4)
    fitted, history = learning.fit(
        model,
        train,
        loss=loss,
        optimiser=optax.adam(1e-2),
        steps=150,
        valid=valid,
        eval_every=50,
        filter_spec=filter_spec,
    )
    assert history["step"] == [0, 50, 100, 150]
    assert history["valid"][-1] < 0.2 * history["valid"][0], history
    assert history["train"][-1] < 0.2 * history["train"][0], history
    if hybrid:
        assert float(fitted.args["mu"]) == 0.3  # frozen by the filter


def test_a_diverged_fit_stops_with_a_clear_error():
    # Issue 26: a planted divergence (a huge learning rate) stops at once with what to
    # change, rather than handing a NaN model on.
    ex = control.problems.get("simple_case")
    sim = learning.FixedStepRK4(2)
    controls = learning.random_controls(jr.key(0), ex.problem, 5, batch=4, kind="smooth")
    ts = jnp.linspace(0.0, 1.0, 11)
    data = learning.generate(jr.key(1), ex.problem, controls, ts, args=ex.args, simulator=sim)
    model = learning.Model(learning.init_neural_vector_field(jr.key(2), ex.problem, width_size=4))
    loss = learning.SingleShootingLoss(sim)
    with pytest.raises(FloatingPointError, match=r"diverged.*(nan|inf) at step 1.*learning rate"):
        learning.fit(model, data, loss=loss, optimiser=optax.adam(1e8), steps=5, eval_every=1)


def test_a_non_finite_least_squares_fit_stops_with_a_clear_error(cancer):
    ex, controls, ts = cancer
    data = learning.generate(jr.key(1), ex.problem, controls, ts, args=ex.args)
    guess = learning.Model(ex.problem.dynamics, {"r": jnp.array(jnp.nan), "delta": jnp.array(0.2)})
    with pytest.raises(FloatingPointError, match=r"diverged.*non-finite.*scale"):
        learning.fit_least_squares(guess, data)
    _, sol = learning.fit_least_squares(guess, data, throw=False)
    assert sol.result == optx.RESULTS.nonfinite
