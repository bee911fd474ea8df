import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from toolkit import pruning

from ..helpers import tree_allclose
from .plant import data, find_dead, make, plant, random_masks, subset


def _loss(model, state, xs, labels):
    logits, state = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(
        xs, state
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), state


def _stepper(opt):
    @eqx.filter_jit
    def step(model, state, opt_state, xs, labels):
        (_, state), grads = eqx.filter_value_and_grad(_loss, has_aux=True)(model, state, xs, labels)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = opt.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), state, opt_state, grads

    return step


OPTIMISERS = {
    "adamw": optax.adamw(1e-2, weight_decay=1e-2),
    "sgd_momentum": optax.sgd(1e-2, momentum=0.9),
    "chain": optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale(-1e-2)),
    "inject_hyperparams": optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2),
}


def _check(name, opt, seed=0):
    # optax's bias correction raises a float to an int32 count, which strict dtype
    # promotion (tests/conftest.py) refuses.
    with jax.numpy_dtype_promotion("standard"):
        _check_strict(name, opt, seed)


def _check_strict(name, opt, seed):
    # float64: the pruned and unpruned steps then agree to round-off.
    model, state, shape = make(name, seed, batch_norm=True, dtype=jnp.float64)
    planted = random_masks(model, seed + 1)
    model = plant(model, planted)
    xs = data(shape, 16, seed, np.float64)
    labels = jnp.asarray(np.random.default_rng(seed).integers(0, 3, 16))
    step = _stepper(opt)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    for _ in range(2):  # give the optimiser some memory
        model, state, opt_state, _ = step(model, state, opt_state, xs, labels)
    dead = find_dead(model, state, xs, inference=False)  # as the training step sees them
    assert subset(planted, dead)
    small, small_state, small_opt = pruning.prune((model, state, opt_state), dead)
    fresh = opt.init(eqx.filter(small, eqx.is_inexact_array))
    assert jax.tree.structure(small_opt) == jax.tree.structure(fresh)
    assert jax.tree.map(jnp.shape, small_opt) == jax.tree.map(jnp.shape, fresh)

    big_next = step(model, state, opt_state, xs, labels)
    small_next = step(small, small_state, small_opt, xs, labels)
    # Dead units receive zero gradient...
    grads = big_next[3]
    for g in dead.layout.groups:
        for slot in g.leaves:
            if slot.axis == 0:
                leaf = pruning._layout.get_at(grads, slot.path)
                assert not np.any(np.asarray(leaf)[np.asarray(dead.masks[g.name])])
    # ...so one step on the pruned network with the pruned optimiser state gives the
    # live parameters (and BatchNorm statistics, and optimiser state) of the step on
    # the unpruned one.
    arrays = eqx.filter(pruning.prune(big_next, dead), eqx.is_array)
    assert tree_allclose(arrays, eqx.filter(small_next, eqx.is_array), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt", list(OPTIMISERS))
def test_optimiser_states_mlp(opt):
    _check("mlp", OPTIMISERS[opt])


@pytest.mark.slow  # compiling these gradients takes 10-20 s
@pytest.mark.parametrize("name", ["convnet", "resnet"])
def test_adamw_step(name):
    _check(name, OPTIMISERS["adamw"])


def test_unrelated_optimiser_state():
    model, state, shape = make("mlp", batch_norm=True)
    dead = pruning.dead_from_masks(model, random_masks(model, 1))
    # An optax state over a flat list of arrays is not laid out like the network.
    opt_state = optax.adam(1e-3).init(jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    with pytest.raises(ValueError, match="found nothing to prune"):
        pruning.prune(opt_state, dead)
