import jax.numpy as jnp
import numpy as np

from toolkit.control import learning


def _linear(t, x, u, args):
    return args["a"] * x + u


def _decay_data(a_true):
    # dx/dt = a x, u = 0: x(t) = x0 exp(a t), per state; the states differ by 1e6.
    ts = np.linspace(0.0, 2.0, 9)
    x0s = np.array([[1000.0, 1e-3], [-500.0, 2e-3]])
    xs = x0s[:, None, :] * np.exp(a_true * ts)[None, :, None]
    controls = learning.Controls(ts=jnp.asarray(np.stack([ts, ts])), values=jnp.zeros((2, 9, 1)))
    data = learning.Trajectories(
        ts=jnp.asarray(np.stack([ts, ts])),
        xs=jnp.asarray(xs),
        x0s=jnp.asarray(x0s),
        controls=controls,
    )
    return data, ts, x0s, xs


def test_rollout_error_of_a_linear_model_is_the_analytic_one():
    data, ts, x0s, xs = _decay_data(-1.0)
    model = learning.Model(_linear, {"a": jnp.array(-0.7)})
    pred = x0s[:, None, :] * np.exp(-0.7 * ts)[None, :, None]
    # By hand: each state's error over its RMS, after the first (known) sample.
    r = np.sqrt(np.mean(xs[:, 1:] ** 2, axis=(0, 1)))
    expected = np.sqrt(np.mean(((pred[:, 1:] - xs[:, 1:]) / r) ** 2))
    error = float(learning.rollout_error(model, data))
    assert 0.05 < expected < 1  # a real error, not a vanishing one
    assert np.isclose(error, expected, rtol=1e-6), (error, expected)
    # The truth scores zero (to the integrator's tolerance).
    truth = learning.Model(_linear, {"a": jnp.array(-1.0)})
    assert float(learning.rollout_error(truth, data)) < 1e-7
    # Each state counts relative to its own size: the error does not change when one
    # state is observed in other units.
    scale = jnp.array([1e-3, 1e4])
    rescaled = learning.Trajectories(
        ts=data.ts,
        xs=data.xs * scale[None, None],
        x0s=data.x0s * scale[None],
        controls=data.controls,
    )
    assert np.isclose(float(learning.rollout_error(model, rescaled)), error, rtol=1e-6)
