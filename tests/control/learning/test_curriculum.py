import jax.numpy as jnp
import jax.random as jr
import optax
import pytest

from toolkit import control
from toolkit.control import learning


def test_the_curriculum_schedules_the_documented_lengths():
    c = learning.SegmentCurriculum(first=2, factor=2)
    # first, first * factor, ... while below the horizon, then the horizon itself.
    assert c.lengths(10) == (2, 4, 8, 10)
    assert c.lengths(8) == (2, 4, 8)
    assert c.lengths(2) == (2,) and c.lengths(1) == (1,)
    assert learning.SegmentCurriculum().lengths(40) == (4, 8, 16, 32, 40)
    assert learning.SegmentCurriculum(first=1, factor=3).lengths(9) == (1, 3, 9)
    # Step i uses the length of index floor(i K / steps): equal shares, in order.
    assert c.schedule(8, 10) == [2, 2, 4, 4, 8, 8, 10, 10]
    assert c.schedule(7, 10) == [2, 2, 4, 4, 8, 8, 10]
    assert c.schedule(2, 10) == [2, 8]
    assert c.schedule(0, 10) == []
    with pytest.raises(ValueError, match="`factor` must be an integer >= 2"):
        learning.SegmentCurriculum(factor=1)
    with pytest.raises(ValueError, match="`first` must be an integer >= 1"):
        learning.SegmentCurriculum(first=0)


def test_fit_with_the_curriculum_grows_the_segments_and_lowers_the_loss():
    ex = control.problems.get("simple_case")
    sim = learning.FixedStepRK4(3)
    controls = learning.random_controls(jr.key(0), ex.problem, 5, batch=3, kind="smooth")
    ts = jnp.linspace(0.0, 1.0, 9)
    data = learning.generate(jr.key(1), ex.problem, controls, ts, args=ex.args, simulator=sim)
    # Only C enters the dynamics: it is the one array, so the one parameter learned.
    guess = learning.Model(ex.problem.dynamics, {"A": 1.0, "B": 1.0, "C": jnp.array(2.0)})
    loss = learning.MultipleShootingLoss(segment=2, simulator=sim)
    fitted, history = learning.fit(
        guess,
        data,
        loss=loss,
        optimiser=optax.adam(0.1),
        steps=60,
        eval_every=20,
        curriculum=learning.SegmentCurriculum(first=2, factor=2),
    )
    # Lengths (2, 4, 8) over 60 steps: steps 0-19, 20-39 and 40-59.
    assert history["step"] == [0, 20, 40, 60]
    assert history["segment"] == [2, 4, 8, 8]
    whole = learning.SingleShootingLoss(sim)
    before, after = float(whole(guess, data)), float(whole(fitted, data))
    assert after < 1e-3 * before, (before, after)
    assert abs(float(fitted.args["C"]) - 4.0) < 0.05
    with pytest.raises(ValueError, match="grows the segments of a `MultipleShootingLoss`"):
        learning.fit(guess, data, loss=whole, steps=1, curriculum=learning.SegmentCurriculum())
