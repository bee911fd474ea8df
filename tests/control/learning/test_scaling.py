import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import control
from toolkit.control import learning


def _perturbed_field(scaling, known=None):
    field = learning.NeuralVectorField(
        2, 1, width_size=8, known=known, scaling=scaling, key=jr.key(0)
    )
    # The last layer starts at zero; move every weight so that the MLP is not.
    d = learning.random_direction(jr.key(1), learning.Model(field))
    return eqx.apply_updates(field, jax.tree_util.tree_map(lambda a: 0.3 * a, d.dynamics))


def test_the_scaled_field_is_the_network_between_the_affine_maps():
    scaling = learning.Scaling(
        x_shift=jnp.array([1.0, -2.0]),
        x_scale=jnp.array([10.0, 0.1]),
        u_shift=jnp.array([0.5]),
        u_scale=jnp.array([4.0]),
        out_scale=jnp.array([100.0, 1e-3]),
    )
    scaled = _perturbed_field(scaling)
    # The same network with no scaling, evaluated on inputs mapped by hand.
    bare = eqx.tree_at(lambda f: f.scaling, scaled, learning.Scaling.identity(2, 1))
    x, u = jnp.array([3.0, -1.9]), jnp.array([2.5])
    x_in = jnp.array([(3.0 - 1.0) / 10.0, (-1.9 + 2.0) / 0.1])
    u_in = jnp.array([(2.5 - 0.5) / 4.0])
    expected = jnp.array([100.0, 1e-3]) * bare(0.0, x_in, u_in, None)
    assert np.allclose(scaled(0.0, x, u, None), expected, rtol=1e-13, atol=0)
    assert float(jnp.min(jnp.abs(expected))) > 0
    # A hybrid adds its known part, unscaled.
    ex = control.problems.get("van_der_pol")
    hybrid = eqx.tree_at(
        lambda f: f.known, scaled, ex.problem.dynamics, is_leaf=lambda v: v is None
    )
    known = ex.problem.dynamics(0.0, x, u, ex.args)
    assert np.allclose(hybrid(0.0, x, u, ex.args), expected + known, rtol=1e-13, atol=0)
    # The scaling is neither trained nor differentiated.
    model = learning.Model(scaled)
    spec = learning.trainable(model)
    assert not any(jax.tree_util.tree_leaves(spec.dynamics.scaling))
    grads = eqx.filter_grad(lambda f: jnp.sum(f(0.0, x, u, None)))(scaled)
    assert all(float(jnp.max(jnp.abs(g))) == 0 for g in jax.tree_util.tree_leaves(grads.scaling))
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree_util.tree_leaves(grads.mlp))


def test_scaling_statistics_are_numpys_on_planted_data():
    rng = np.random.default_rng(0)
    B, T = 3, 7
    ts = np.sort(rng.uniform(0.0, 5.0, (B, T)), axis=1)
    ts[:, 0] = 0.0
    # States of very different sizes, and a constant one.
    xs = np.stack(
        [
            1e4 * (1 + rng.standard_normal((B, T))),
            1e-3 * rng.standard_normal((B, T)),
            7 * np.ones((B, T)),
        ],
        axis=-1,
    )
    us = rng.uniform(-1.0, 3.0, (B, T, 1))
    # Controls given at the sample times: their values there are the nodes' own.
    controls = learning.Controls(ts=jnp.asarray(ts), values=jnp.asarray(us))
    data = learning.Trajectories(
        ts=jnp.asarray(ts), xs=jnp.asarray(xs), x0s=jnp.asarray(xs[:, 0]), controls=controls
    )
    s = learning.Scaling.from_data(data, rtol=1e-3)
    flat = xs.reshape(-1, 3)
    assert np.allclose(s.x_shift, flat.mean(0), rtol=1e-12)
    assert np.allclose(s.x_scale[:2], flat.std(0)[:2], rtol=1e-12)
    assert np.isclose(s.x_scale[2], 1e-3 * 7)  # the constant state's floor
    assert np.allclose(s.u_shift, us.reshape(-1, 1).mean(0), rtol=1e-12)
    assert np.allclose(s.u_scale, us.reshape(-1, 1).std(0), rtol=1e-12)
    dxs = np.diff(xs, axis=1) / np.diff(ts, axis=1)[..., None]
    assert np.allclose(s.out_scale[:2], dxs.reshape(-1, 3).std(0)[:2], rtol=1e-12)
    span = np.mean(ts[:, -1] - ts[:, 0])
    assert np.isclose(s.out_scale[2], 1e-3 * 7e-3 / span, rtol=1e-12)
    # Built into a field, the statistics normalise the data to mean 0 and std 1.
    field = learning.NeuralVectorField(3, 1, scaling=s, key=jr.key(0))
    inputs = jax.vmap(field.scaling.inputs)(jnp.asarray(flat), jnp.asarray(us.reshape(-1, 1)))
    assert np.allclose(np.mean(inputs, 0), 0, atol=1e-12)
    assert np.allclose(np.std(inputs[:, [0, 1, 3]], 0), 1, rtol=1e-12)


def test_scaling_refuses_wrong_shapes_and_non_positive_scales():
    with pytest.raises(ValueError, match="`x_scale` must be positive"):
        learning.Scaling(
            jnp.zeros(2), jnp.array([1.0, 0.0]), jnp.zeros(1), jnp.ones(1), jnp.ones(2)
        )
    with pytest.raises(ValueError, match="needs nx = 3"):
        learning.NeuralVectorField(3, 1, scaling=learning.Scaling.identity(2, 1), key=jr.key(0))
    ts = jnp.linspace(0.0, 1.0, 3)[None]
    controls = learning.Controls(ts=ts, values=jnp.zeros((1, 3, 1)))
    blown_up = learning.Trajectories(
        ts, jnp.array([[[1.0], [2.0], [jnp.nan]]]), jnp.ones((1, 1)), controls
    )
    with pytest.raises(FloatingPointError, match="non-finite states"):
        learning.Scaling.from_data(blown_up)


def test_a_proportional_states_term_is_the_plain_term_times_the_state_over_its_mean():
    scaling = learning.Scaling(
        x_shift=jnp.array([4.0, -2.0]),
        x_scale=jnp.array([2.0, 0.5]),
        u_shift=jnp.array([0.0]),
        u_scale=jnp.array([1.0]),
        out_scale=jnp.array([3.0, 0.2]),
    )
    plain = _perturbed_field(scaling)
    scaled = learning.NeuralVectorField(
        2, 1, width_size=8, scaling=scaling, proportional=(True, False), key=jr.key(0)
    )
    scaled = eqx.tree_at(lambda f: f.mlp, scaled, plain.mlp)
    x, u = jnp.array([3.0, -1.9]), jnp.array([2.5])
    base = plain(0.0, x, u, None)
    assert float(jnp.min(jnp.abs(base))) > 0
    np.testing.assert_allclose(scaled(0.0, x, u, None), base * jnp.array([3.0 / 4.0, 1.0]))
    # At a zero state the network adds nothing to its derivative: a positive state
    # cannot be pushed through zero by the correction.
    at_zero = scaled(0.0, jnp.array([0.0, -1.9]), u, None)
    assert float(at_zero[0]) == 0.0 and float(at_zero[1]) != 0.0
    with pytest.raises(ValueError, match="positive `scaling.x_shift`"):
        learning.NeuralVectorField(2, 1, scaling=scaling, proportional=(False, True), key=jr.key(0))
    with pytest.raises(ValueError, match="`proportional` has 1 entries"):
        learning.NeuralVectorField(2, 1, scaling=scaling, proportional=(True,), key=jr.key(0))
