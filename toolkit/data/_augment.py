import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, PRNGKeyArray, Shaped


def random_crop(
    key: PRNGKeyArray, x: Shaped[Array, "C ..."], padding: int = 4
) -> Shaped[Array, "C ..."]:
    """Pads one example with zeros on every spatial side and crops it back to its size at a
    random offset, i.e. shifts it by up to `padding` pixels along each spatial axis.

    A pure function of one channels-first example, `(C, H, W)` or `(C, L)`: use
    `jax.vmap(random_crop)(jax.random.split(key, n), xs)` for a batch. After
    normalisation, the zero padding is the training mean.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `x`: one example, channels first.
    - `padding`: the padding, and so the largest shift, in pixels.

    **Returns:**

    An array of the shape and type of `x`.
    """
    if padding < 0:
        raise ValueError(f"`padding` must be non-negative, got {padding}.")
    if padding == 0:
        return x
    spatial = x.ndim - 1
    padded = jnp.pad(x, [(0, 0)] + [(padding, padding)] * spatial)
    offsets = jr.randint(key, (spatial,), 0, 2 * padding + 1, dtype=jnp.int32)
    start = (jnp.zeros((), jnp.int32), *offsets)
    return lax.dynamic_slice(padded, start, x.shape)


def random_flip(key: PRNGKeyArray, x: Shaped[Array, "C ..."]) -> Shaped[Array, "C ..."]:
    """Mirrors one example along its last (width) axis with probability 1/2.

    A pure function of one channels-first example: use
    `jax.vmap(random_flip)(jax.random.split(key, n), xs)` for a batch.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `x`: one example, channels first.

    **Returns:**

    `x` or `x[..., ::-1]`, each with probability 1/2.
    """
    return jnp.where(jr.bernoulli(key), jnp.flip(x, axis=-1), x)


def augment(
    key: PRNGKeyArray, x: Shaped[Array, "C ..."], *, padding: int = 4, flip: bool = True
) -> Shaped[Array, "C ..."]:
    """The standard light augmentation of CIFAR-style training: a random crop with
    padding ([`toolkit.data.random_crop`][]), then a random horizontal flip
    ([`toolkit.data.random_flip`][]).

    Pure, so it works under `jax.jit` and `jax.vmap`; for a batch,
    `jax.vmap(augment)(jax.random.split(key, n), xs)`. The same key gives the same
    result.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `x`: one example, channels first: `(C, H, W)`, or `(C, L)` for a signal.
    - `padding`: the crop's padding in pixels; 0 for no crop.
    - `flip`: whether to flip at random. Not for data whose mirror image is another
        class, such as digits.

    **Returns:**

    An array of the shape and type of `x`.
    """
    crop_key, flip_key = jr.split(key)
    x = random_crop(crop_key, x, padding)
    if flip:
        x = random_flip(flip_key, x)
    return x
