"""The training state: it starts as the optimiser and method say, and round-trips
through a run's checkpoint, masked units, pruned shapes and log included."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from toolkit import nn, pruning
from toolkit.pruning._train_checkpoint import load_run, save_run


def _start():
    model, state = eqx.nn.make_with_state(nn.MLP)(
        8, 3, (6, 5), batch_norm=True, key=jr.key(0, impl="rbg"), dtype=jnp.float32
    )
    method = pruning.DemP(reg=0.1, noise=1e-2)
    optimiser = optax.adamw(1e-2, weight_decay=5e-4)
    transform = method.transform(100, jr.key(1, impl="rbg"))
    return pruning.TrainState.start(model, state, optimiser, transform), optimiser, transform


def _leaves(ts):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(ts.arrays, eqx.is_array))]


def test_start_is_the_optimisers_and_methods_initial_state():
    ts, optimiser, transform = _start()
    params = eqx.filter(ts.model, eqx.is_inexact_array)
    expected = (optimiser.init(params), transform.init(params))
    assert ts.step == 0 and ts.activity.examples == 0
    assert all(a.all() for a in ts.alive.values())
    assert {k: a.size for k, a in ts.alive.items()} == pruning.widths(ts.model)
    for a, b in zip(jax.tree.leaves(ts.opt_state), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_state_round_trips_through_a_checkpoint(tmp_path):
    initial, _, _ = _start()
    # Trained a little (the arrays change), pruned (the shapes change), a unit masked.
    dead = pruning.dead_from_masks(
        initial.model,
        {
            "hidden.0": np.array([True, False, False, True, False, False]),
            "hidden.1": np.zeros(5, bool),
        },
    )
    model, state, opt_state = pruning.prune(initial.arrays[:3], dead)
    model = jax.tree.map(lambda x: x + 0.5 if eqx.is_inexact_array(x) else x, model)
    alive = {"hidden.0": np.array([True, True, False, True]), "hidden.1": np.ones(5, bool)}
    activity = pruning.init_activity(model)
    ts = initial.with_arrays((model, state, opt_state, activity)).replace(alive=alive, step=37)
    history = {"config": {"steps": 100}, "evaluations": [{"step": 0}], "done": False}
    pending = {"switch_at": 40, "keep": {"hidden.0": [0, 1, 3], "hidden.1": [0, 1, 2, 3, 4]}}
    path = tmp_path / "run.ckpt"
    save_run(path, ts, [0.5, 0.25], history, pending)

    back, header = load_run(path, initial, {"steps": 100})
    assert back.step == 37 and pruning.widths(back.model) == {"hidden.0": 4, "hidden.1": 5}
    assert {k: v.tolist() for k, v in back.alive.items()} == {
        k: v.tolist() for k, v in alive.items()
    }
    for a, b in zip(_leaves(back), _leaves(ts), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(back.arrays) == jax.tree.structure(ts.arrays)
    assert header["losses"] == [0.5, 0.25] and header["history"] == history
    assert header["pending"] == pending

    with pytest.raises(ValueError, match="another run: its steps is 100, this run's is 200"):
        load_run(path, initial, {"steps": 200})
