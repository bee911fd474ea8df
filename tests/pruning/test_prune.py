import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import nn, pruning

from .plant import (
    ARCHITECTURES,
    batched,
    data,
    find_dead,
    make,
    max_diff,
    plant,
    preactivations,
    random_masks,
    subset,
)


# VGG without BatchNorm takes the same code path as ConvNet without.
CASES = [(name, True) for name in ARCHITECTURES] + [
    ("mlp", False),
    ("convnet", False),
    ("resnet", False),
]


@pytest.mark.parametrize("name, batch_norm", CASES)
def test_outputs_unchanged(name, batch_norm):
    model, state, shape = make(name, batch_norm=batch_norm)
    hard = random_masks(model, 0, p=0.3)
    soft = random_masks(model, 1, p=0.3)
    model = plant(plant(model, soft, -1.0, hard=False), hard)
    xs = data(shape, 16)
    run = batched(model)
    found_soft = False
    # Without BatchNorm, training and inference mode are the same computation.
    for inference in (False, True) if batch_norm else (True,):
        m = eqx.nn.inference_mode(model, inference)
        dead = find_dead(m, state, xs, inference=inference)
        assert subset(hard, dead)
        found_soft |= any(np.any(np.asarray(dead.masks[k]) & ~hard[k]) for k in hard)
        # Dead units on top of the planted ones may empty a small layer.
        small = pruning.prune(m, dead, empty="keep_most_active")
        small_state = pruning.prune(state, dead, empty="keep_most_active")
        assert type(small) is type(m)
        assert pruning.widths(small) == {
            k: max(1, int(np.sum(~np.asarray(v)))) for k, v in dead.masks.items()
        }
        ys, new_state = run(m, state, xs)
        small_ys, small_new_state = run(small, small_state, xs)
        assert max_diff(ys, small_ys) <= 1e-5
        # The running statistics of the live units evolve as before.
        assert eqx.tree_equal(
            pruning.prune(new_state, dead, empty="keep_most_active"),
            small_new_state,
            rtol=1e-5,
            atol=1e-6,
        )
        # The pruned network is an ordinary network of the same class: its own wiring
        # and pre-activations agree.
        _, _, pre = eqx.filter_eval_shape(preactivations, small, small_state, xs)
        for k, group in small.wiring().items():
            assert all(a.shape[1] == group.size for a in pre[k])
    assert found_soft  # some units died on this data only, and went too


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_set_prunes_its_network_once(name):
    model, state, shape = make(name, batch_norm=True)
    model = plant(model, random_masks(model, 2))
    xs = data(shape, 8)
    dead = pruning.dead_units(model, state, xs)
    small = pruning.prune(model, dead)
    small_state = pruning.prune(state, dead)
    # The same set again is a set of the network before the prune: refused, as any
    # stale set would be (it cannot be told apart by shapes)...
    with pytest.raises(ValueError, match="already pruned"):
        pruning.prune(small, dead)
    with pytest.raises(ValueError, match="already pruned"):
        pruning.prune(small_state, dead)
    # ...and the pruned network has no dead unit left on that data.
    again = pruning.dead_units(small, small_state, xs)
    assert not any(np.any(np.asarray(m)) for m in again.masks.values())
    assert eqx.tree_equal(pruning.prune(small, again), small)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_empty_mask_is_identity(name):
    model, state, _ = make(name, batch_norm=True)
    none = {k: np.zeros(g.size, bool) for k, g in model.wiring().items()}
    dead = pruning.dead_from_masks(model, none)
    assert eqx.tree_equal(pruning.prune(model, dead), model)
    assert eqx.tree_equal(pruning.prune(state, dead), state)
    assert eqx.tree_equal(pruning.prune(model, none), model)


def test_state_and_model_in_one_call():
    model, state, shape = make("vgg", batch_norm=True)
    model = plant(model, random_masks(model, 2))
    dead = pruning.dead_units(model, state, data(shape, 4))
    both = pruning.prune((model, state), dead)
    assert eqx.tree_equal(both[0], pruning.prune(model, dead))
    assert eqx.tree_equal(both[1], pruning.prune(state, dead))


def test_initial_state_inside_model_shrinks():
    # A network built without make_with_state keeps its initial state inside its
    # StateIndexes: it must shrink with the units, so that eqx.nn.State(small) works.
    model = nn.MLP(5, 2, (6,), batch_norm=True, key=jr.key(0, impl="rbg"), dtype=jnp.float32)
    masks = {"hidden.0": np.array([True, False, True, False, False, False])}
    small = pruning.prune(model, masks)
    state = eqx.nn.State(small)
    assert jax.tree.map(jnp.shape, state.get(small.norms[0].batch_state_index)) == ((4,), (4,))
    assert small.norms[0].input_size == 4
    assert small.layers[0].out_features == 4 and small.layers[1].in_features == 4
    xs = data((5,), 3)
    ys, _ = batched(small)(small, state, xs)
    assert ys.shape == (3, 2)


def test_residual_groups_are_tied():
    model, state, shape = make("resnet", batch_norm=True)
    xs = data(shape, 8)
    none = {k: np.zeros(g.size, bool) for k, g in model.wiring().items()}
    # Channel 1 of the first stream killed at the stem only: the blocks still write it.
    stem_only = eqx.tree_at(
        lambda m: (m.stem_norm.weight, m.stem_norm.bias),
        model,
        (model.stem_norm.weight.at[1].set(0), model.stem_norm.bias.at[1].set(-1)),
    )
    _, _, pre = preactivations(eqx.nn.inference_mode(stem_only), state, xs)
    assert jnp.all(pre["stage.0"][0][:, 1] <= 0)  # dead at the stem's ReLU...
    dead = pruning.dead_units(stem_only, state, xs)
    assert not dead.masks["stage.0"][1]  # ...but not in every member: kept.
    # Killed in every member of the group (stem and both blocks): removed.
    everywhere = plant(model, {**none, "stage.0": np.array([False, True, False, False])})
    dead = pruning.dead_units(everywhere, state, xs)
    assert dead.masks["stage.0"][1]
    small = pruning.prune(everywhere, dead)
    assert small.stem.out_channels == 3 and small.stem.weight.shape[0] == 3
    for block in small.stages[0]:
        assert block.conv1.weight.shape[1] == 3 and block.conv2.weight.shape[0] == 3
    nxt = small.stages[1][0]
    assert nxt.conv1.weight.shape[1] == 3 and nxt.projection.weight.shape[1] == 3
    run = batched(small)
    m = eqx.nn.inference_mode(everywhere)
    s = eqx.nn.inference_mode(small)
    assert max_diff(run(m, state, xs)[0], run(s, pruning.prune(state, dead), xs)[0]) <= 1e-5
    # The second stage's stream is opened by a projection: the classifier consumes it.
    everywhere = plant(
        model, {**none, "stage.1": np.array([True, False, False, True, False, False])}
    )
    dead = pruning.dead_units(everywhere, state, xs)
    small = pruning.prune(everywhere, dead)
    assert small.fc.in_features == 4
    assert small.stages[1][0].projection.out_channels == 4


def test_empty_group():
    model, state, shape = make("mlp", batch_norm=False)
    masks = random_masks(model, 2)
    masks["hidden.1"][:] = True
    model = plant(model, masks)
    xs = data(shape, 8)
    dead = pruning.dead_units(model, state, xs)
    with pytest.raises(ValueError, match="every unit of group 'hidden.1' is dead"):
        pruning.prune(model, dead)
    small = pruning.prune(model, dead, empty="keep_most_active")
    assert pruning.widths(small)["hidden.1"] == 1
    run = batched(model)
    assert max_diff(run(model, state, xs)[0], run(small, state, xs)[0]) <= 1e-5
    # The kept unit is the one that came closest to firing.
    kept = np.argmax(np.asarray(dead.peak["hidden.1"]))
    np.testing.assert_array_equal(small.layers[1].bias, model.layers[1].bias[kept : kept + 1])
    # Masks given by hand carry no activity to choose from.
    by_hand = pruning.dead_from_masks(model, {k: np.asarray(v) for k, v in dead.masks.items()})
    with pytest.raises(ValueError, match="needs activity statistics"):
        pruning.prune(model, by_hand, empty="keep_most_active")
    with pytest.raises(ValueError, match="`empty`"):
        pruning.prune(model, dead, empty="nope")


def test_errors():
    model, state, shape = make("mlp", batch_norm=True)
    other, other_state, _ = make("vgg", 1, batch_norm=True)
    none = {k: np.zeros(g.size, bool) for k, g in model.wiring().items()}
    some = {k: v.copy() for k, v in none.items()}
    some["hidden.0"][0] = True
    dead = pruning.dead_from_masks(model, some)
    # Unrelated pytrees.
    with pytest.raises(ValueError, match="found nothing to prune"):
        pruning.prune({"w": jnp.ones((8, 3))}, dead)
    with pytest.raises(ValueError, match="found nothing to prune"):
        pruning.prune(other, dead)
    with pytest.raises(ValueError, match="does not belong"):
        pruning.prune(other_state, dead)
    # Same class, other sizes.
    wider, _ = eqx.nn.make_with_state(nn.MLP)(
        12, 3, (9, 6), batch_norm=True, key=jr.key(0, impl="rbg"), dtype=jnp.float32
    )
    with pytest.raises(ValueError, match="axis 0 has size 9"):
        pruning.prune(wider, dead)
    # Masks: wrong shape, wrong dtype, missing or unknown group, not a DeadUnits.
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        pruning.dead_from_masks(model, {**none, "hidden.0": np.zeros(7, bool)})
    with pytest.raises(ValueError, match="boolean"):
        pruning.dead_from_masks(model, {**none, "hidden.0": np.zeros(8)})
    with pytest.raises(ValueError, match="one mask per group"):
        pruning.dead_from_masks(model, {"hidden.0": none["hidden.0"]})
    with pytest.raises(ValueError, match="one mask per group"):
        pruning.dead_from_masks(model, {**none, "hidden.9": none["hidden.0"]})
    with pytest.raises(ValueError, match="DeadUnits"):
        pruning.prune(state, some)
    bad = eqx.tree_at(lambda d: d.masks["hidden.0"], dead, jnp.zeros(5, bool))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        pruning.prune(model, bad)
    with pytest.raises(ValueError, match="AbstractNetwork"):
        pruning.dead_units(wider.layers[0], state, jnp.ones((3, 12)))
    # Not jittable: shapes change.
    with pytest.raises(ValueError, match="cannot be jitted"):
        jax.jit(lambda d: pruning.prune(model, d))(dead)
    with pytest.raises(ValueError, match="cannot be jitted"):
        eqx.filter_jit(lambda m: pruning.prune(m, dead))(model)


def test_plan_reused_by_another_network_and_other_units():
    # prune keeps a plan per layout; a network of the same layout with other weights,
    # and other dead units, must still lose exactly their own dead units.
    model, state, shape = make("resnet", batch_norm=True)
    other, other_state, _ = make("resnet", 1, batch_norm=True)
    xs = data(shape, 8)
    run = batched(model)
    for seed, m, s in ((2, model, state), (3, other, other_state), (4, model, state)):
        masks = random_masks(m, seed)
        m = eqx.nn.inference_mode(plant(m, masks))
        dead = pruning.dead_from_masks(m, masks)
        small, small_state = pruning.prune((m, s), dead)
        assert pruning.widths(small) == {k: int(np.sum(~v)) for k, v in masks.items()}
        assert max_diff(run(m, s, xs)[0], run(small, small_state, xs)[0]) <= 1e-5


def _compose(first, second):
    # The units of the original network that two prunes in a row remove.
    both = first.copy()
    both[np.flatnonzero(~first)[second]] = True
    return both


def test_prune_after_prune():
    model, state, _ = make("resnet", batch_norm=True)
    params = eqx.filter(model, eqx.is_inexact_array)
    opt_state = optax.adamw(1e-3).init(params)
    # Moments that differ from each other and from zero, laid out like the network.
    mu = jax.tree.map(lambda a: a + 1, params)
    nu = jax.tree.map(lambda a: a * a, params)
    opt_state = (opt_state[0]._replace(mu=mu, nu=nu), *opt_state[1:])
    tree = (model, state, opt_state)
    first = random_masks(model, 1)
    once = pruning.prune(tree, pruning.dead_from_masks(model, first))
    second = random_masks(once[0], 2)
    twice = pruning.prune(once, pruning.dead_from_masks(once[0], second))
    both = {k: _compose(first[k], second[k]) for k in first}
    direct = pruning.prune(tree, pruning.dead_from_masks(model, both))
    assert eqx.tree_equal(twice, direct)
    # The optimiser's moments lose the same slices as the network's parameters.
    small_params = eqx.filter(direct[0], eqx.is_inexact_array)
    assert eqx.tree_equal(direct[2][0].mu, jax.tree.map(lambda a: a + 1, small_params))
    assert eqx.tree_equal(direct[2][0].nu, jax.tree.map(lambda a: a * a, small_params))
    assert pruning.widths(direct[0]) == {k: int(np.sum(~v)) for k, v in both.items()}


def test_placement_kept():
    model, state, _ = make("mlp", batch_norm=True)
    dead = pruning.dead_from_masks(model, random_masks(model, 1))

    def arrays(tree):
        return jax.tree.leaves(eqx.filter(tree, eqx.is_array))

    assert not any(a.committed for a in arrays(pruning.prune((model, state), dead)))
    params, static = eqx.partition((model, state), eqx.is_array)
    pinned = eqx.combine(jax.device_put(params, jax.devices()[0]), static)
    small = pruning.prune(pinned, dead)
    assert all(a.committed for a in arrays(small))
    assert eqx.tree_equal(small, pruning.prune((model, state), dead))
