"""A fast counter-based sampler of standard normal noise, for DemP's per-step noise."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray


def _mix(x: Array) -> Array:
    # lowbias32 (C. Wellons, "hash-prospector"): a bijection of the 32-bit integers
    # whose output bits each flip with probability ~1/2 when one input bit does.
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def hashed_normal(key: PRNGKeyArray, size: int, dtype=jnp.float32) -> Array:
    """`size` independent standard normal samples, about twice as fast on a CPU as
    `jax.random.normal`.

    Entry `i` is a hash of `i` keyed by 64 random bits drawn from `key`: two rounds of
    a 32-bit integer mixer, `mix(mix(i ^ k0) + k1)`. Its top 23 bits give a uniform
    `v` in (-1, 1), and the inverse normal CDF `sqrt(2) erfinv(v)` turns it into a
    standard normal, exact to float32 rounding, with tails cut at about 5.3.
    Threefry, behind `jax.random.normal`, spends 20 rounds of a block cipher on each
    pair of words. That buys statistical guarantees that Gaussian noise injected into
    training does not need, and it dominated the cost of a DemP step on a CPU.

    **Arguments:**

    - `key`: a JAX PRNG key; the same key gives the same samples.
    - `size`: the number of samples, fewer than 2**32.
    - `dtype`: a floating dtype of the result (the samples are computed in float32).

    **Returns:**

    An array of shape `(size,)`.
    """
    if not 0 <= size < 2**32:
        raise ValueError(f"`size` must be in [0, 2**32), got {size}.")
    k = jr.bits(key, (2,), jnp.uint32)
    index = jnp.arange(size, dtype=jnp.uint32)
    return bits_to_normal(_mix(_mix(index ^ k[0]) + k[1])).astype(dtype)


def bits_to_normal(bits: Array) -> Array:
    """Map uniform 32-bit words to standard normals by the inverse CDF of their top 23
    bits: `v = (b + 1/2) 2^-22 - 1` lies in [-1 + 2^-23, 1 - 2^-23], exactly
    representable in float32, so `sqrt(2) erfinv(v)` is finite (|z| <= 5.3). (With 24
    bits, the largest word would round `v` to 1, and `erfinv(1)` is infinite.)"""
    v = ((bits >> 9).astype(jnp.float32) + 0.5) * jnp.float32(2.0**-22) - 1
    return jnp.sqrt(jnp.float32(2.0)) * jax.lax.erf_inv(v)
