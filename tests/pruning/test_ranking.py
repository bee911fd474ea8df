"""Global and per-layer ranking, and the iterative schedule of SNAP-it."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import nn, pruning
from toolkit.pruning._ranking import lowest_global, select_iteratively


def test_iterative_sparsities_formula():
    # s_i = 0.9 - (0.9 - 0.5) / 2**i for i = 0..5, then 0.9.
    got = pruning.iterative_sparsities(0.9, 5)
    want = [0.5, 0.7, 0.8, 0.85, 0.875, 0.8875, 0.9]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert pruning.iterative_sparsities(0.9, 1) == [0.9]
    assert pruning.iterative_sparsities(0.4, 5) == [0.4]  # at most the first round
    assert pruning.iterative_sparsities(0.8, 2, start=0.6) == [0.6, 0.7, 0.75, 0.8]


def test_lowest_global_keeps_a_unit_per_group():
    scores = {"a": np.array([0.0, 0.0, 0.0]), "b": np.array([1.0, 3.0, 2.0])}
    masks = lowest_global(scores, 2)
    np.testing.assert_array_equal(masks["a"], [True, True, False])
    np.testing.assert_array_equal(masks["b"], [False, False, False])
    # The four lowest would empty "a": it keeps one (the first of its ties).
    masks = lowest_global(scores, 4)
    np.testing.assert_array_equal(masks["a"], [False, True, True])
    np.testing.assert_array_equal(masks["b"], [True, False, False])


@pytest.mark.parametrize("ranking", ["global", "layer"])
def test_rounds_follow_the_schedule(ranking):
    key = jr.key(0, impl="rbg")
    model, state = eqx.nn.make_with_state(nn.MLP)(4, 3, (40, 24), key=key, dtype=jnp.float64)
    seen = []

    def score(m, s, i):
        widths = pruning.widths(m)
        seen.append(widths)
        # Fresh random scores each round, so no group is emptied.
        rng = np.random.default_rng(i)
        return {k: jnp.asarray(rng.random(n)) for k, n in widths.items()}

    sparsities = pruning.iterative_sparsities(0.9, 5)
    masks = select_iteratively(model, state, score, sparsities, ranking)
    # Round i scores the network left by the rounds before: of the 64 units (or of
    # each group's), round(s_{i-1} * n) are gone.
    assert len(seen) == len(sparsities)
    for before, s in zip(seen[1:], sparsities[:-1]):
        if ranking == "global":
            assert sum(before.values()) == 64 - int(np.floor(s * 64 + 0.5))
        else:
            assert before == {
                k: n - int(np.floor(s * n + 0.5)) for k, n in (("hidden.0", 40), ("hidden.1", 24))
            }
    removed = {k: int(v.sum()) for k, v in masks.items()}
    if ranking == "global":
        assert sum(removed.values()) == 58  # round(0.9 * 64)
    else:
        assert removed == {"hidden.0": 36, "hidden.1": 22}
