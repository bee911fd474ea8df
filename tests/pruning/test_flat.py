"""FlatStep: a jitted step on the array leaves of its carry."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit.pruning._flat import FlatStep


def _step(model, count, x):
    # A carry of a module (arrays and a non-array leaf, the activation) and an array.
    y = model(x)
    new = eqx.tree_at(lambda m: m.bias, model, model.bias + y.sum())
    return new, count + 1, y


def _carry(width=3):
    return eqx.nn.Linear(2, width, key=jr.key(0)), jnp.asarray(0, jnp.int32)


def test_same_as_filter_jit_and_one_trace_per_shape():
    traces = []

    def step(*args):
        traces.append(1)
        return _step(*args)

    flat = FlatStep(step)
    carry, x = _carry(), jnp.array([1.0, -2.0])
    expected = carry
    leaves, fn, join = flat.split(carry)
    for _ in range(3):
        *expected, y_ref = eqx.filter_jit(_step)(*expected, x)
        leaves, y = fn(leaves, x)
        np.testing.assert_array_equal(y, y_ref)
    model, count = join(leaves)
    assert isinstance(model, eqx.nn.Linear) and int(count) == 3
    for a, b in zip(jax.tree.leaves((model, count)), jax.tree.leaves(tuple(expected))):
        np.testing.assert_array_equal(a, b)
    # Splitting again (same structure and shapes) reuses the traced step...
    leaves, fn2, _ = flat.split((model, count))
    fn2(leaves, x)
    assert fn2 is fn and len(traces) == 1
    # ... a new width is a new function.
    _, fn3, _ = flat.split(_carry(width=5))
    assert fn3 is not fn


def test_install_uses_the_compiled_step():
    flat = FlatStep(_step)
    carry, x = _carry(), jnp.array([1.0, -2.0])
    compiled = flat.lower(carry, x).compile()
    other = FlatStep(_step)
    other.install(carry, compiled)
    leaves, fn, _ = other.split(carry)
    assert fn is compiled
    np.testing.assert_array_equal(fn(leaves, x)[1], _step(*carry, x)[2])


def test_a_step_that_changes_the_structure_is_refused():
    flat = FlatStep(lambda model, count, x: (model, None, x))
    leaves, fn, _ = flat.split(_carry())
    with pytest.raises(ValueError, match="changed the structure"):
        fn(leaves, jnp.ones(2))
