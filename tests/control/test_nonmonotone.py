import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
import pytest

from toolkit import control


class _Dogleg(optx.AbstractGaussNewton):
    """optimistix's dogleg Gauss–Newton with the search as a field."""

    rtol: float
    atol: float
    norm: object
    descent: optx.AbstractDescent
    search: optx.AbstractSearch
    verbose: object = staticmethod(lambda **kwargs: None)


def _solve(fn, y0, search, max_steps=500):
    solver = _Dogleg(1e-12, 1e-12, optx.max_norm, optx.DoglegDescent(), search)
    return optx.least_squares(fn, solver, y0, max_steps=max_steps, throw=False)


def _powell_badly_scaled(y, args):
    # Moré, Garbow & Hillstrom (1981), problem 3: a root at (1.098e-5, 9.106) reached
    # along a narrow curved valley, residuals scaled 1e4 apart.
    return jnp.array([1e4 * y[0] * y[1] - 1, jnp.exp(-y[0]) + jnp.exp(-y[1]) - 1.0001])


def _helical_valley(y, args):
    # Moré, Garbow & Hillstrom (1981), problem 7: root (1, 0, 0) at the end of a helix.
    theta = jnp.arctan2(y[1], y[0]) / (2 * jnp.pi)
    return jnp.array([10 * (y[2] - 10 * theta), 10 * (jnp.sqrt(y[0] ** 2 + y[1] ** 2) - 1), y[2]])


@pytest.mark.parametrize(
    "fn, y0, root",
    [
        (_powell_badly_scaled, [0.0, 1.0], [1.0981593296997543e-05, 9.106146739867048]),
        (_helical_valley, [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    ],
)
def test_a_curved_valley_takes_fewer_steps_than_the_monotone_trust_region(fn, y0, root):
    # Along a curved valley the first steps overshoot its floor and raise the loss; the
    # monotone region shrinks at each and creeps (47 and 25 steps), the window accepts
    # them while its maximum falls (15 and 11).
    y0 = jnp.array(y0)
    monotone = _solve(fn, y0, optx.ClassicalTrustRegion())
    window = _solve(fn, y0, control.NonmonotoneTrustRegion(memory=5))
    for sol in (monotone, window):
        assert sol.result == optx.RESULTS.successful
        assert jnp.allclose(sol.value, jnp.array(root), rtol=1e-9, atol=1e-12)
    assert int(window.stats["num_steps"]) * 2 <= int(monotone.stats["num_steps"])


def test_a_window_of_one_decides_as_the_monotone_trust_region():
    y0 = jnp.array([0.0, 1.0])
    monotone = _solve(_powell_badly_scaled, y0, optx.ClassicalTrustRegion())
    window = _solve(_powell_badly_scaled, y0, control.NonmonotoneTrustRegion(memory=1))
    assert int(window.stats["num_steps"]) == int(monotone.stats["num_steps"])
    assert jnp.array_equal(window.value, monotone.value)


def _info(residual):
    # Loss ½‖r‖²; the identity Jacobian predicts the reduction ½(‖J d + r‖² - ‖r‖²).
    r = jnp.asarray(residual)
    struct = jax.ShapeDtypeStruct(r.shape, r.dtype)
    return optx.FunctionInfo.ResidualJac(r, lx.IdentityLinearOperator(struct))


def test_steps_are_judged_against_the_largest_loss_in_the_window():
    search = control.NonmonotoneTrustRegion(memory=2)
    y = jnp.array([2.0])
    state = search.init(y, None)
    # The first step evaluates the start only: accepted, the window holds its loss 2.
    size, accept, _, state = search.step(jnp.array(True), y, y, _info([0.0]), _info([2.0]), state)
    assert accept and float(size) == 1.0
    assert state.history.tolist() == [2.0, -jnp.inf]
    # From y = 2 (loss 2) to 0, predicted loss 0: the loss 1 is accepted but, short
    # of 99 % of the predicted reduction, keeps the radius.
    size, accept, _, state = search.step(
        jnp.array(False), y, jnp.array([0.0]), _info([2.0]), _info([jnp.sqrt(2.0)]), state
    )
    assert accept and float(size) == 1.0
    assert jnp.allclose(state.history, jnp.array([1.0, 2.0]))
    # From loss 1 a step predicted to reach 0 ends at loss 1.9: worse than the current
    # point, so a monotone region rejects it, but 1.9 - 2 <= 0.01 x (-1): accepted.
    y, y_eval = jnp.array([jnp.sqrt(2.0)]), jnp.array([0.0])
    step = (jnp.array(False), y, y_eval, _info([jnp.sqrt(2.0)]), _info([jnp.sqrt(3.8)]))
    _, monotone_accept, _, _ = optx.ClassicalTrustRegion().step(
        *step, optx.ClassicalTrustRegion().init(y, None)
    )
    size, accept, _, state = search.step(*step, state)
    assert not monotone_accept
    assert accept and float(size) == 1.0
    # The window is now (1.9, 1): its maximum 1.9 is the reference. A step to loss 1.95
    # from loss 1.9 predicted to reach 0 is rejected and the radius shrinks 4x.
    y = jnp.array([jnp.sqrt(3.8)])
    size, accept, _, state = search.step(
        jnp.array(False), y, jnp.array([0.0]), _info([jnp.sqrt(3.8)]), _info([jnp.sqrt(3.9)]), state
    )
    assert not accept and float(size) == 0.25
    assert jnp.allclose(state.history, jnp.array([1.9, 1.0]))


def test_an_empty_window_is_refused():
    with pytest.raises(ValueError, match="memory"):
        control.NonmonotoneTrustRegion(memory=0)
