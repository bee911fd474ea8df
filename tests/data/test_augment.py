import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import data


def _images(key, n=6, shape=(3, 8, 8)):
    return jr.normal(key, (n, *shape), dtype=jnp.float32)


def test_shape_dtype_and_determinism(getkey):
    xs = _images(getkey())
    key = getkey()
    fn = jax.jit(jax.vmap(data.augment))
    out = fn(jr.split(key, 6), xs)
    assert out.shape == xs.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, fn(jr.split(key, 6), xs))
    np.testing.assert_array_equal(out, jax.vmap(data.augment)(jr.split(key, 6), xs))
    assert not np.array_equal(out, fn(jr.split(getkey(), 6), xs))


def test_flip_is_a_flip(getkey):
    x = _images(getkey(), n=1)[0]
    mirror = np.asarray(x)[:, :, ::-1]
    outcomes = [np.asarray(data.random_flip(k, x)) for k in jr.split(getkey(), 32)]
    flipped = [np.array_equal(o, mirror) for o in outcomes]
    same = [np.array_equal(o, x) for o in outcomes]
    assert all(f != s for f, s in zip(flipped, same))  # each is exactly one of the two
    assert 4 < sum(flipped) < 28
    for o, f in zip(outcomes, flipped):
        if f:  # mirrored along the width: the first column becomes the last
            np.testing.assert_array_equal(o[:, :, -1], x[:, :, 0])
            np.testing.assert_array_equal(o[:, 0, :], x[:, 0, ::-1])


def test_crop_is_a_shift(getkey):
    x = _images(getkey(), n=1)[0]
    padding = 2
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    windows = {
        (i, j): padded[:, i : i + 8, j : j + 8]
        for i in range(2 * padding + 1)
        for j in range(2 * padding + 1)
    }
    seen = set()
    for key in jr.split(getkey(), 64):
        out = data.random_crop(key, x, padding)
        (match,) = [ij for ij, w in windows.items() if jnp.array_equal(w, out)]
        seen.add(match)
    assert len(seen) > 10
    np.testing.assert_array_equal(data.random_crop(getkey(), x, 0), x)


def test_signals_and_no_flip(getkey):
    x = _images(getkey(), n=4, shape=(1, 40))
    out = jax.vmap(lambda k, s: data.augment(k, s, padding=3, flip=False))(jr.split(getkey(), 4), x)
    assert out.shape == (4, 1, 40) and out.dtype == jnp.float32


def test_bad_padding(getkey):
    with pytest.raises(ValueError, match="padding"):
        data.random_crop(getkey(), jnp.zeros((1, 4, 4)), -1)
