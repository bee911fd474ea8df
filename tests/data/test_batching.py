import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import data


def _xy(n=10):
    x = jnp.arange(n * 3, dtype=jnp.float32).reshape(n, 3)
    return x, jnp.arange(n, dtype=jnp.int32)


def test_same_key_same_batches(getkey):
    x, y = _xy()
    key = getkey()
    first = list(data.batches(x, y, 4, key=key))
    second = list(data.batches(x, y, 4, key=key))
    assert [len(b) for b, _ in first] == [4, 4, 2]
    for (xa, ya), (xb, yb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = np.concatenate([b for _, b in data.batches(x, y, 4, key=getkey())])
    assert not np.array_equal(other, np.concatenate([b for _, b in first]))


def test_batches_cover_an_epoch(getkey):
    x, y = _xy()
    seen = [(xb, yb) for xb, yb in data.batches(x, y, 3, key=getkey())]
    labels = np.concatenate([yb for _, yb in seen])
    assert sorted(labels.tolist()) == list(range(10))
    assert not np.array_equal(labels, np.arange(10))
    for xb, yb in seen:  # examples stay with their labels
        np.testing.assert_array_equal(xb[:, 0], 3 * yb)


def test_drop_last_and_no_shuffle():
    x, y = _xy()
    dropped = list(data.batches(x, y, 4, key=None, drop_last=True))
    assert len(dropped) == 2
    np.testing.assert_array_equal(np.concatenate([b for _, b in dropped]), np.arange(8))
    # numpy in, numpy out.
    (xb, yb), *_ = data.batches(np.asarray(x), np.asarray(y), 5, key=None)
    assert isinstance(xb, np.ndarray) and xb.shape == (5, 3)


def test_epoch_batches_under_jit(getkey):
    x, y = _xy(11)
    key = getkey()
    fn = jax.jit(data.epoch_batches, static_argnums=2)
    xs, ys = fn(x, y, 4, key=key)
    assert xs.shape == (2, 4, 3) and ys.shape == (2, 4)
    assert xs.dtype == jnp.float32 and ys.dtype == jnp.int32
    xs2, ys2 = data.epoch_batches(x, y, 4, key=key)
    np.testing.assert_array_equal(ys, ys2)
    np.testing.assert_array_equal(xs[..., 0], 3 * ys)
    assert len(set(np.asarray(ys).ravel().tolist())) == 8


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_bad_batch_size(batch_size, getkey):
    x, y = _xy()
    with pytest.raises(ValueError, match="batch_size"):
        data.batches(x, y, batch_size, key=getkey())


def test_mismatched_lengths(getkey):
    x, _ = _xy()
    with pytest.raises(ValueError, match="leading"):
        data.epoch_batches(x, jnp.arange(3), 2, key=getkey())
    with pytest.raises(ValueError, match="batch_size.*exceeds"):
        data.epoch_batches(x, jnp.arange(10), 11, key=getkey())
