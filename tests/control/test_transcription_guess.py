"""The default initial guesses: the straight line and the simulated states."""

import jax.numpy as jnp
import numpy as np

from toolkit import control
from toolkit.control._transcription.base import default_states, simulated_states


def _decay(x_bounds=None, xT=None, rate=1.0):
    return control.OptimalControlProblem(
        dynamics=lambda t, x, u, args: -rate * x + u,
        running_cost=lambda t, x, u, args: jnp.sum(u**2),
        x0=jnp.array([1.0, 2.0]),
        t1=2.0,
        xT=xT,
        u_bounds=(jnp.array([0.0, 0.0]), jnp.array([0.0, 0.0])),
        x_bounds=x_bounds,
    )


def test_simulated_states_follow_the_dynamics():
    # u = 0 (the box is {0}): x(t) = x0 exp(-t); RK4 with 10 substeps of 0.02.
    xs = simulated_states(_decay(), None, 20)
    ts = jnp.linspace(0.0, 2.0, 21)
    exact = jnp.array([1.0, 2.0])[None] * jnp.exp(-ts)[:, None]
    assert xs.shape == (21, 2)
    assert float(jnp.max(jnp.abs(xs - exact))) < 1e-9


def test_simulated_states_are_clipped_pinned_and_finite():
    p = _decay(x_bounds=(jnp.array([0.5, 0.5]), jnp.array([jnp.inf, jnp.inf])))
    xs = simulated_states(p, None, 20)
    assert float(xs.min()) >= 0.5 and np.allclose(xs[0], [1.0, 2.0])
    p = _decay(xT=jnp.array([0.3, 0.4]))
    assert np.allclose(simulated_states(p, None, 20)[-1], [0.3, 0.4])
    # A simulation that overflows keeps the straight line where it is not finite.
    p = _decay(rate=-400.0)
    xs = simulated_states(p, None, 20)
    assert bool(jnp.all(jnp.isfinite(xs)))
    assert np.allclose(xs[-1], default_states(p, 20)[-1])


def test_simulated_states_iterate_a_discrete_map():
    p = control.OptimalControlProblem(
        dynamics=control.DiscreteDynamics(lambda t, x, u, args: 0.5 * x + u),
        running_cost=lambda t, x, u, args: jnp.sum(u**2),
        x0=jnp.array([8.0]),
        t1=3.0,
        u_bounds=(jnp.array([1.0]), jnp.array([1.0])),
    )
    # x_{k+1} = x_k / 2 + 1: 8, 5, 3.5, 2.75
    assert np.allclose(simulated_states(p, None, 3)[:, 0], [8.0, 5.0, 3.5, 2.75])


def test_every_transcription_takes_the_states():
    p = _decay()
    xs = simulated_states(p, None, 10)
    for tr in (control.Trapezoidal(10), control.HermiteSimpson(10), control.MultipleShooting(10)):
        z = tr.initial_guess(p, None, xs)
        _, x_guess, _ = tr.trajectory(z, p, None)
        assert np.allclose(x_guess, xs), type(tr).__name__
