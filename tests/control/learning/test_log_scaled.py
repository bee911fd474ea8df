import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from toolkit.control import learning


def _decay(t, x, u, args):
    return -args["k"] * x + args["gain"] * u


ARGS = {"k": jnp.array(2.4e-5), "gain": jnp.array(-0.1), "n": 3, "off": None}


def test_resolve_undoes_log_scaled_and_leaves_other_leaves_alone():
    wrapped = learning.log_scaled(ARGS)
    assert isinstance(wrapped["k"], learning.LogScaled)
    assert wrapped["n"] == 3 and wrapped["off"] is None
    resolved = learning.resolve(wrapped)
    assert float(resolved["k"]) == 2.4e-5 and float(resolved["gain"]) == -0.1
    # Wrapping twice changes nothing.
    again = learning.log_scaled(wrapped)
    assert jax.tree_util.tree_structure(again) == jax.tree_util.tree_structure(wrapped)


def test_the_model_passes_values_and_learns_only_the_log_ratios():
    model = learning.Model(_decay, learning.log_scaled(ARGS))
    x, u = jnp.array([2.0]), jnp.array([0.5])
    np.testing.assert_allclose(model(0.0, x, u), _decay(0.0, x, u, ARGS), rtol=1e-15)
    spec = learning.trainable(model)
    assert spec.args["k"].reference is False and spec.args["k"].log_ratio is True

    # d f / d log_ratio = value * d f / d value: the chain rule through exp.
    params, static = eqx.partition(model, spec)
    grads = jax.grad(lambda p: eqx.combine(p, static)(0.0, x, u)[0])(params)
    np.testing.assert_allclose(grads.args["k"].log_ratio, -2.4e-5 * 2.0, rtol=1e-12)
    np.testing.assert_allclose(grads.args["gain"].log_ratio, -0.1 * 0.5, rtol=1e-12)
    assert grads.args["k"].reference is None


def test_an_adam_step_moves_a_log_scaled_parameter_by_a_relative_amount():
    # The failure this guards against: Adam's first step moves every array by about
    # its learning rate, so a plain 2.4e-5 rate becomes ~0.1 (4000 times larger),
    # while its log-scaled twin changes by a factor of about exp(0.1).
    x, u = jnp.array([2.0]), jnp.array([0.5])
    optimiser = optax.adam(0.1)

    def one_step(model):
        params, static = eqx.partition(model, learning.trainable(model))
        grads = jax.grad(lambda p: eqx.combine(p, static)(0.0, x, u)[0] ** 2)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction
            updates, _ = optimiser.update(grads, optimiser.init(params), params)
        return learning.resolve(eqx.combine(eqx.apply_updates(params, updates), static).args)

    plain = one_step(learning.Model(_decay, ARGS))
    scaled = one_step(learning.Model(_decay, learning.log_scaled(ARGS)))
    assert abs(float(plain["k"]) / 2.4e-5) > 1000
    for name, value in (("k", 2.4e-5), ("gain", -0.1)):
        ratio = float(scaled[name]) / value
        assert np.exp(-0.11) < ratio < np.exp(0.11) and ratio != 1.0


def test_split_optimiser_updates_the_weights_and_the_parameters_apart():
    field = learning.NeuralVectorField(1, 1, width_size=4, known=_decay, key=jax.random.key(0))
    model = learning.Model(field, learning.log_scaled(ARGS))
    params, static = eqx.partition(model, learning.trainable(model))
    ones = jax.tree_util.tree_map(jnp.ones_like, params)

    def step(optimiser):
        updates, _ = optimiser.update(ones, optimiser.init(params), params)
        return eqx.apply_updates(params, updates)

    # Plain SGD with a rate of 0 on one side and 1 on the other: each part moves by
    # exactly -1 where its rate is 1 and not at all where it is 0.
    frozen_args = step(learning.split_optimiser(dynamics=optax.sgd(1.0), args=optax.sgd(0.0)))
    frozen_field = step(learning.split_optimiser(dynamics=optax.sgd(0.0), args=optax.sgd(1.0)))
    cases = ((frozen_args, "dynamics", "args"), (frozen_field, "args", "dynamics"))
    for new, moved, still in cases:
        for old, now in zip(
            jax.tree_util.tree_leaves(getattr(params, moved)),
            jax.tree_util.tree_leaves(getattr(new, moved)),
        ):
            np.testing.assert_array_equal(now, old - 1.0)
        for old, now in zip(
            jax.tree_util.tree_leaves(getattr(params, still)),
            jax.tree_util.tree_leaves(getattr(new, still)),
        ):
            np.testing.assert_array_equal(now, old)
    assert jax.tree_util.tree_leaves(params.args)  # the check above was not vacuous
