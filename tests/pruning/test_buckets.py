"""Width buckets: the arrays shrink by buckets, the units in between are masked and
held at exactly zero, and the masked network computes what the pruned one does."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import data, nn, pruning
from toolkit.pruning._buckets import bucket_keep
from toolkit.pruning._checkpoint import load_checkpoint, read_header, shrink_to

from .plant import plant


def test_width_buckets():
    halves = pruning.WidthBuckets()
    for live in range(1, 1025):
        # The smallest of 1024, 512, ..., 1 that holds the live units.
        assert halves.width(live, 1024) == 2 ** math.ceil(math.log2(live))
    # A grid of ceil(100 / 1.5**k): 100, 67, 45, 30, 20, 14, 9, 6, 4, 3, 2, 1.
    grid = pruning.WidthBuckets(ratio=1.5)
    assert [grid.width(n, 100) for n in (100, 68, 67, 46, 45, 31, 7, 2, 1)] == [
        100,
        100,
        67,
        67,
        45,
        45,
        9,
        2,
        1,
    ]
    assert [pruning.ExactWidths().width(n, 100) for n in (100, 7)] == [100, 7]
    with pytest.raises(ValueError, match="ratio"):
        pruning.WidthBuckets(ratio=1.0)


def test_bucket_keep():
    # 5 live units of 16 (bucket 8), 9 of 16 (bucket 16).
    alive = {"a": np.isin(np.arange(16), [1, 4, 6, 9, 15]), "b": np.arange(16) >= 7}
    initial = {"a": 16, "b": 16}
    keep = bucket_keep(alive, pruning.WidthBuckets(), initial)
    # The live units, and the first masked ones up to the bucket.
    np.testing.assert_array_equal(keep["a"], [0, 1, 2, 3, 4, 6, 9, 15])
    np.testing.assert_array_equal(keep["b"], np.arange(16))
    # The last prune: the arrays shrink to the live units if much of training
    # remains, and not at all otherwise.
    keep = bucket_keep(alive, pruning.WidthBuckets(), initial, last=True, long=True)
    np.testing.assert_array_equal(keep["a"], [1, 4, 6, 9, 15])
    np.testing.assert_array_equal(keep["b"], np.arange(7, 16))
    assert bucket_keep(alive, pruning.WidthBuckets(), initial, last=True) is None
    alive["a"] = np.arange(16) >= 4
    assert bucket_keep(alive, pruning.WidthBuckets(), initial) is None
    keep = bucket_keep(alive, pruning.WidthBuckets(), initial, last=True, long=True)
    np.testing.assert_array_equal(keep["a"], np.arange(4, 16))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


_STEPS = 60
# A strong noise, weight decay and the BatchNorm-scale L1 penalty, whose subgradient
# at zero is 1: each would move a masked unit off zero if it were not held there.
_METHOD = pruning.DemP(
    reg=0.3, noise=0.1, penalty="bn_scale_l1", prune_every=20, dead_test=pruning.TrainingWindow(64)
)


def _kwargs(compile_ahead=0):
    return dict(
        compile_ahead=compile_ahead,
        optimiser=optax.adamw(1e-2, weight_decay=0.1),
        steps=_STEPS,
        batch_size=32,
        eval_every=30,
        key=jr.key(3, impl="rbg"),
        progress=False,
    )


def _planted():
    key = jr.key(0, impl="rbg")
    model, state = eqx.nn.make_with_state(nn.MLP)(
        64, 10, (32, 32), batch_norm=True, key=key, dtype=jnp.float32
    )
    # hidden.0: 12 live units, a bucket of 16 (the arrays shrink at the first prune,
    # 4 units masked); hidden.1: 28 live, masked in the arrays of 32.
    masks = {"hidden.0": np.arange(32) >= 12, "hidden.1": np.arange(32) < 4}
    return plant(model, masks), state


def _train(*args, **kwargs):
    with jax.numpy_dtype_promotion("standard"):
        return pruning.train(*args, **kwargs)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _checkpointed(model, state, path):
    """The arrays of a checkpoint of `train`: the network as trained, its masked units
    still in, its state and the optimiser state."""
    params = eqx.filter(model, eqx.is_inexact_array)
    optimiser, transform = _kwargs()["optimiser"], _METHOD.transform(_STEPS, jr.key(0))
    opt_state = (optimiser.init(params), transform.init(params))

    def skeleton(header):
        small = shrink_to((model, state, opt_state), model, header["widths"])
        return (*small, pruning.init_activity(small[0]))

    header, (model, state, opt_state, _) = load_checkpoint(path, skeleton)
    alive = {}
    for name, width in header["widths"].items():
        alive[name] = np.ones(width, bool)
        alive[name][header["masked"][name]] = False
    return model, state, opt_state, alive


def _run(model, state, xs, inference):
    model = eqx.nn.inference_mode(model, inference)
    return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(xs, state)


@pytest.mark.parametrize("ahead, stop_at, width", [(0, 39, 16), (5, 23, 32)])
def test_masked_units_stay_zero_and_compute_the_pruned_network(
    digits, tmp_path, ahead, stop_at, width
):
    # Without compiling ahead, stopped 19 steps after the prune at 20 that shrank
    # hidden.0 to 16 units and masked some; compiling ahead, stopped before the switch
    # to the shapes of that prune (at 25), with every removed unit masked.
    model, state = _planted()
    straight = _train(model, state, digits, _METHOD, **_kwargs(ahead))
    path = tmp_path / "run.ckpt"
    half = _train(model, state, digits, _METHOD, checkpoint=path, stop_at=stop_at, **_kwargs(ahead))
    big, big_state, opt_state, alive = _checkpointed(model, state, path)
    header = read_header(path)
    assert [p["step"] for p in header["history"]["prunes"]] == [20]
    assert pruning.widths(big) == {"hidden.0": width, "hidden.1": 32}
    assert all(0 < (~a).sum() for a in alive.values())
    assert {k: int(a.sum()) for k, a in alive.items()} == pruning.widths(half[0])

    # Every entry of a masked unit, in the network and in Adam's moments, is zero.
    owned = pruning.live_parameters(big, {k: jnp.asarray(a) for k, a in alive.items()})
    adam = opt_state[0][0]
    for tree in (big, adam.mu, adam.nu):
        params = eqx.filter(tree, eqx.is_inexact_array)
        for leaf, mask in zip(jax.tree.leaves(params), jax.tree.leaves(owned)):
            assert np.all(np.where(np.asarray(mask), 0, np.asarray(leaf)) == 0)
    dead0 = ~alive["hidden.0"]
    assert np.all(np.asarray(big.layers[0].weight)[dead0] == 0)
    assert np.all(np.asarray(big.norms[0].weight)[dead0] == 0)
    assert np.all(np.asarray(big.norms[0].bias)[dead0] == 0)
    assert np.all(np.asarray(big.layers[1].weight)[:, dead0] == 0)

    # The masked network computes what the pruned one does, in both BatchNorm modes;
    # the run stopped there returned the pruned one.
    dead = pruning.dead_from_masks(big, {k: ~a for k, a in alive.items()})
    small, small_state = pruning.prune((big, big_state), dead)
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(small), _leaves(half[0])))
    xs = jnp.asarray(digits.x_test[:200], jnp.float32)
    for inference in (True, False):
        ys, new_state = _run(big, big_state, xs, inference)
        ys_small, new_small_state = _run(small, small_state, xs, inference)
        np.testing.assert_allclose(ys, ys_small, rtol=1e-5, atol=1e-5)
        pruned = pruning.prune(new_state, dead)
        for a, b in zip(_leaves(pruned), _leaves(new_small_state)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # Resumed, the run ends where the uninterrupted one does.
    resumed = _train(model, state, digits, _METHOD, checkpoint=path, **_kwargs(ahead))
    assert resumed[2]["done"] and resumed[2]["prunes"] == straight[2]["prunes"]
    assert pruning.widths(resumed[0]) == pruning.widths(straight[0])
    for a, b in zip(_leaves(resumed[:2]), _leaves(straight[:2])):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_one_shot_prune_shrinks_the_arrays(digits, tmp_path):
    # A one-shot method prunes once: masking its units would save no compilation,
    # and the arrays shrink to the live units (not to the bucket of 32).
    model, state = eqx.nn.make_with_state(nn.MLP)(
        64, 10, (32, 32), key=jr.key(0, impl="rbg"), dtype=jnp.float32
    )
    method = pruning.RandomStructured(sparsity=0.25)
    path = tmp_path / "run.ckpt"
    kwargs = dict(steps=20, batch_size=32, eval_every=10, key=jr.key(1, impl="rbg"))
    _, _, history = _train(model, state, digits, method, checkpoint=path, stop_at=10, **kwargs)
    assert read_header(path)["widths"] == {"hidden.0": 24, "hidden.1": 24}
    assert history["compilations"]["train_step"] == 1


@pytest.mark.parametrize(
    "method",
    [
        pruning.DemP(),  # EvalSnapshot
        # 4 of the 44 live units dead: too few for `min_dead` (as 8 of 48 would not be,
        # were the masked units counted).
        pruning.DemP(dead_test=pruning.TrainingWindow(64), min_dead=0.12),
        pruning.L1Norm(sparsity=0.5),  # the default: `select` on the pruned network
    ],
    ids=["snapshot", "window", "l1"],
)
def test_select_on_the_masked_network_is_select_on_the_pruned_one(digits, method):
    from toolkit.pruning._activity import update_activity
    from toolkit.pruning._buckets import mask, spread, unmasked_view

    model, state = _planted()
    # The plant kills hidden.0's units from 12 and hidden.1's first 4. In arrays of 16
    # and 32, mask two of each, so that the other two dead ones are left to select.
    small_shapes = shrink_to((model, state), model, {"hidden.0": 16, "hidden.1": 32})
    big, big_state = small_shapes
    alive = {"hidden.0": np.arange(16) < 14, "hidden.1": np.arange(32) >= 2}
    big = mask(big, big, alive)
    xs = jnp.asarray(digits.x_train[:1536], jnp.float32)
    ys = jnp.asarray(digits.y_train[:1536], jnp.int32)
    activity = update_activity(pruning.init_activity(big), big, big_state, xs[:64])
    kwargs = dict(step=10, total_steps=100, key=jr.key(1))

    got = method.select_masked(big, big_state, activity, alive, (xs, ys), **kwargs)
    want = spread(
        method.select(*unmasked_view(big, big_state, activity, alive), (xs, ys), **kwargs),
        big,
        alive,
    )
    for k, a in alive.items():
        m = np.asarray(got.masks[k])
        np.testing.assert_array_equal(m, np.asarray(want.masks[k]))
        assert not np.any(m & ~a)  # a masked unit is never selected again
        if want.peak is not None:
            np.testing.assert_allclose(got.peak[k][a], want.peak[k][a], rtol=1e-6)
            assert np.all(got.peak[k][~a] == -np.inf)
    if isinstance(method, pruning.DemP):
        selected = sum(int(np.sum(got.masks[k])) for k in alive)
        assert selected == (4 if method.min_dead == 0 else 0)
        if isinstance(method.dead_test, pruning.EvalSnapshot):
            # Another prune within the bucket: the snapshot does not compile again.
            before = update_activity._cached._cache_size()
            fewer = {k: a & (np.arange(a.size) % 5 != 0) for k, a in alive.items()}
            method.select_masked(
                mask(big, big, fewer), big_state, activity, fewer, (xs, ys), **kwargs
            )
            assert update_activity._cached._cache_size() == before
