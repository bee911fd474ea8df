"""EarlySNAP and EarlyCroP-S: the Early-CroP test of when to prune."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import nn, pruning


def _trajectory(second):
    """Weights `[1, x_n]` after each step `n`, `x` given per step."""
    return [{"w": jnp.asarray([1.0, x])} for x in second]


def _stable_at(weights, every, latest, factor):
    transform = pruning.early_time(every, latest, factor)
    state = transform.init(weights[0])
    update = jax.jit(transform.update)
    for before, after in zip(weights[:-1], weights[1:]):
        updates = jax.tree.map(jnp.subtract, after, before)
        out, state = update(updates, state, before, live=None)
        assert out is updates or np.array_equal(out["w"], updates["w"])
    return int(state.stable_at)


def test_early_time_on_a_planted_trajectory():
    # every = 2: the tests see the weights after steps 2, 4, 6, 8, ...; w_1 (step 2) =
    # [1, 0] is the reference, of norm 1, so d_p is the second entry.
    # d_2 = 1 (step 4): threshold 0.4 * 1; d_3 = 1.5: |1.5 - 1| = 0.5, not settled;
    # d_4 = 1.8: |1.8 - 1.5| = 0.3 < 0.4, settled at step 8.
    x = [0.0, 0.3, 0.0, 0.5, 1.0, 1.2, 1.5, 1.7, 1.8, 1.8, 1.8]
    assert _stable_at(_trajectory(x), every=2, latest=10, factor=0.4) == 8
    # A smaller factor (a higher sparsity) waits for a smaller change: 0.25 > 0.2, then
    # 0 < 0.2 at step 10.
    assert _stable_at(_trajectory(x), every=2, latest=10, factor=0.2) == 10
    # Not by `latest`: never.
    assert _stable_at(_trajectory(x), every=2, latest=7, factor=0.4) == -1
    # Steady drift never settles.
    drift = [0.1 * n * n for n in range(21)]
    assert _stable_at(_trajectory(drift), every=2, latest=20, factor=0.4) == -1


@pytest.mark.parametrize("cls", [pruning.EarlySNAP, pruning.EarlyCroPS], ids=lambda c: c.__name__)
def test_early_prunes_at_the_adaptive_moment(cls):
    method = cls(0.5, every=2, latest=10)
    assert method.factor() == pytest.approx(0.4)  # min(1 - 0.5 - 0.1, 0.99)
    assert cls(0.3).factor() == pytest.approx(0.6)
    # Checked every period from the second, and at `latest`.
    assert [t for t in range(13) if method.prune_at(t, 100)] == [4, 6, 8, 10]
    weights = _trajectory([0.0, 0.3, 0.0, 0.5, 1.0, 1.2, 1.5, 1.7, 1.8])
    transform = method.transform(100, None)
    state = transform.init(weights[0])
    for before, after in zip(weights[:-1], weights[1:]):
        _, state = transform.update(jax.tree.map(jnp.subtract, after, before), state, before)
    assert int(state.stable_at) == 8
    # `select` prunes at that step only: not before, not after.
    key = jr.key(0, impl="rbg")
    model, mstate = eqx.nn.make_with_state(nn.MLP)(4, 3, (5, 6), key=key, dtype=jnp.float64)
    kx, ky = jr.split(key)
    batch = jr.normal(kx, (16, 4), jnp.float64), jr.randint(ky, (16,), 0, 3).astype(jnp.int32)
    activity = pruning.init_activity(model)

    def select(t, state):
        kw = dict(step=t, total_steps=100, key=key, transform_state=state)
        return method.select(model, mstate, activity, batch, **kw)

    assert select(6, state) is None and select(10, state) is None
    dead = select(8, state)
    assert dead is not None and sum(int(np.sum(m)) for m in dead.masks.values()) == 6
    # If the test never passes, the prune comes at `latest`.
    never = transform.init(weights[0])
    assert select(8, never) is None and select(10, never) is not None


def test_defaults():
    method = pruning.EarlyCroPS(0.5)
    assert method.ranking == "global" and method.steps == 1
    assert method.period(8000) == 100 and method.deadline(8000) == 4000
    with pytest.raises(ValueError, match="every"):
        pruning.EarlySNAP(0.5, every=0)
