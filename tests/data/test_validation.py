"""`toolkit.data.validation_split`: a held-out part of the training split."""

import jax.random as jr
import numpy as np
import pytest

from toolkit import data


def _rows(x):
    return {tuple(r) for r in np.asarray(x).reshape(x.shape[0], -1).round(5).tolist()}


def test_split_partitions_the_training_examples():
    ds = data.load("digits")
    val = data.validation_split(ds, 0.25, jr.key(3))
    assert val.name == "digits:validation"
    assert (val.num_train, val.num_test) == (1438 - 360, 360)  # round(0.25 * 1438)
    assert val.shape == ds.shape and val.classes == ds.classes
    # Disjoint, and together exactly the original training examples with their labels.
    x = np.concatenate([val.x_train, val.x_test])
    y = np.concatenate([val.y_train, val.y_test])
    order = np.lexsort(x.reshape(x.shape[0], -1).T)
    ref = np.lexsort(np.asarray(ds.x_train).reshape(ds.num_train, -1).T)
    np.testing.assert_array_equal(x[order], np.asarray(ds.x_train)[ref])
    np.testing.assert_array_equal(y[order], np.asarray(ds.y_train)[ref])
    # The test split is not in it (digits has no duplicate images across splits).
    assert not _rows(ds.x_test) & (_rows(val.x_train) | _rows(val.x_test))
    # The normalisation is the original one, from the whole training split.
    np.testing.assert_array_equal(val.mean, ds.mean)
    np.testing.assert_array_equal(val.std, ds.std)
    assert val.x_train.dtype == np.float32 and val.y_test.dtype == np.int32


def test_split_is_fixed_by_the_key():
    ds = data.load("digits")
    a = data.validation_split(ds, 0.1, jr.key(0))
    b = data.validation_split(ds, 0.1, jr.key(0))
    c = data.validation_split(ds, 0.1, jr.key(1))
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1e-5, 0.99999])
def test_bad_fraction(fraction):
    ds = data.load("digits")
    with pytest.raises(ValueError, match="fraction"):
        data.validation_split(ds, fraction, jr.key(0))


def test_needs_a_dataset():
    with pytest.raises(TypeError, match="Dataset"):
        data.validation_split(np.zeros((10, 1, 8, 8)), 0.1, jr.key(0))


def test_building_and_splitting_move_the_arrays_without_compiling(caplog):
    # `jnp.asarray` of a numpy array compiles a small `stage` program for each shape
    # and dtype; the arrays of a data set are moved with `device_put` instead.
    import logging

    import jax

    from toolkit.data._dataset import make_dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (23, 1, 3, 5)).astype(np.uint8)  # shapes no other test uses
    y = rng.integers(0, 3, 23)
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        ds = make_dataset(
            "tiny", x[:17], y[:17], x[17:], y[17:], ("a", "b", "c"), scale=255.0, normalise=True
        )
        data.validation_split(ds, 0.3, jr.key(4))
    staged = [r.getMessage() for r in caplog.records if "jit(stage)" in r.getMessage()]
    assert staged == []
