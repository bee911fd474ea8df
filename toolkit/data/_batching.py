from collections.abc import Iterator

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray, Shaped


def _check(x: ArrayLike, y: ArrayLike, batch_size: int) -> int:
    n = np.shape(x)[0] if np.ndim(x) else 0
    if np.ndim(x) == 0 or np.ndim(y) == 0 or np.shape(y)[0] != n:
        raise ValueError(
            f"`x` of shape {np.shape(x)} and `y` of shape {np.shape(y)} must have the same "
            "leading (example) axis."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"`batch_size` must be an int, got {type(batch_size).__name__}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be positive, got {batch_size}.")
    return n


def batches(
    x: Shaped[ArrayLike, "N ..."],
    y: Shaped[ArrayLike, "N ..."],
    batch_size: int,
    *,
    key: PRNGKeyArray | None,
    drop_last: bool = False,
) -> Iterator[tuple[Shaped[ArrayLike, "B ..."], Shaped[ArrayLike, "B ..."]]]:
    """Iterates over one epoch of `(x, y)` in mini-batches.

    The order is a permutation drawn from `key`, so the same key gives the same batches;
    use a fresh key per epoch (`jax.random.fold_in(key, epoch)`). With `key=None` the
    examples come in order, as for evaluation.

    **Arguments:**

    - `x`: `(N, ...)` examples.
    - `y`: `(N, ...)` labels (or any second array with the same leading axis).
    - `batch_size`: examples per batch.
    - `key`: a JAX PRNG key for the shuffle, or `None` for no shuffle.
    - `drop_last`: drop the last batch if it has fewer than `batch_size` examples, so
        every batch has the same shape (one compilation of a jitted step).

    **Returns:**

    An iterator of `(x_batch, y_batch)` pairs, indexed from `x` and `y` (so numpy
    arrays give numpy batches and JAX arrays give JAX batches).
    """
    n = _check(x, y, batch_size)  # now, not at the first `next`
    if key is None:
        order = np.arange(n)
    else:
        order = np.asarray(jr.permutation(key, n))
    stop = n - n % batch_size if drop_last else n
    return _iterate(x, y, order, batch_size, stop)


def _iterate(x, y, order, batch_size, stop):
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


def epoch_batches(
    x: Shaped[ArrayLike, "N ..."],
    y: Shaped[ArrayLike, "N ..."],
    batch_size: int,
    *,
    key: PRNGKeyArray,
) -> tuple[
    Shaped[Array, "num_batches batch_size ..."], Shaped[Array, "num_batches batch_size ..."]
]:
    """One shuffled epoch of `(x, y)`, stacked into equal mini-batches.

    A pure function that works under `jax.jit` (with `batch_size` static), made for
    `jax.lax.scan` over the batches of an epoch. The last `N % batch_size` examples of
    the permutation are dropped. The same key gives the same batches.

    **Arguments:**

    - `x`: `(N, ...)` examples.
    - `y`: `(N, ...)` labels.
    - `batch_size`: examples per batch, at most `N`.
    - `key`: a JAX PRNG key for the shuffle.

    **Returns:**

    `(xs, ys)` of shapes `(N // batch_size, batch_size, ...)`.
    """
    n = _check(x, y, batch_size)
    if batch_size > n:
        raise ValueError(f"`batch_size`={batch_size} exceeds the {n} examples.")
    num_batches = n // batch_size
    index = jr.permutation(key, n)[: num_batches * batch_size]
    xs = jnp.asarray(x)[index].reshape(num_batches, batch_size, *jnp.shape(x)[1:])
    ys = jnp.asarray(y)[index].reshape(num_batches, batch_size, *jnp.shape(y)[1:])
    return xs, ys
