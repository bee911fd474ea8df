"""`hashed_normal` against the standard normal distribution."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import pruning


def test_samples_are_standard_normal():
    # Imported here: scipy.stats takes 1.4 s to import, in every test worker's
    # collection otherwise.
    from scipy import stats

    z = np.asarray(pruning.hashed_normal(jr.key(0), 200_000))
    assert z.shape == (200_000,) and z.dtype == np.float32
    # Kolmogorov-Smirnov against N(0, 1): a sampler with the wrong scale (1.01), mean
    # (0.01) or shape (uniform bits) fails at this size.
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 5 * np.sqrt(0.5 / z.size)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / z.size)
    # The tails are there, cut only by the 23-bit uniforms.
    assert 4.0 < np.abs(z).max() < 5.5


def test_keys_and_entries_are_independent():
    key = jr.key(1)
    a, b = (np.asarray(pruning.hashed_normal(jr.fold_in(key, t), 100_000)) for t in (0, 1))
    bound = 5 / np.sqrt(a.size)
    # Consecutive steps (keys fold_in(key, t)) and neighbouring entries are uncorrelated,
    # and so are their squares (no shared magnitude).
    assert abs(np.corrcoef(a, b)[0, 1]) < bound
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < bound
    assert abs(np.corrcoef(a**2, b**2)[0, 1]) < bound
    # Deterministic in the key; another key gives other samples.
    assert np.array_equal(a, np.asarray(pruning.hashed_normal(jr.fold_in(key, 0), 100_000)))


def test_under_jit_dtype_and_bad_size():
    f = jax.jit(pruning.hashed_normal, static_argnums=(1, 2))
    z = f(jr.key(2), 10, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    assert z.shape == (10,) and bool(jnp.all(jnp.isfinite(z)))
    assert pruning.hashed_normal(jr.key(2), 0).shape == (0,)
    with pytest.raises(ValueError, match="size"):
        pruning.hashed_normal(jr.key(2), -1)


def test_extreme_words_map_to_finite_tails():
    # The words that a size-1M draw meets every ~16 draws: the largest must not round to
    # the end of (-1, 1), where erfinv is infinite.
    from toolkit.pruning._normal import bits_to_normal

    words = jnp.array([0, 1, 2**9, 2**31, 2**32 - 2**9, 2**32 - 1], dtype=jnp.uint32)
    z = np.asarray(bits_to_normal(words))
    assert np.all(np.isfinite(z))
    assert z[0] == z[1] < -5.0 and z[-1] == z[-2] > 5.0 and z[-1] == -z[0]
    assert abs(z[3]) < 1e-6
    # Every draw of a size that meets them is finite.
    assert bool(jnp.all(jnp.isfinite(pruning.hashed_normal(jr.key(5), 2**25))))
