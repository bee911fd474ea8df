import jax
import jax.random as jr
import numpy as np
from jaxtyping import PRNGKeyArray

from ._dataset import Dataset


# One program instead of the nine small ones an eager `jr.permutation` compiles
# (0.45 s in a new process).
_permutation = jax.jit(jr.permutation, static_argnums=1)


def held_out_split(
    n: int, test_fraction: float, key: PRNGKeyArray, *, name: str = "test_fraction"
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random training / held-out split of `n` examples, fixed by `key`;
    `name` is the caller's name for `test_fraction`, used in its errors."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"`{name}` must be in (0, 1), got {test_fraction}.")
    num_test = int(round(n * test_fraction))
    if not 0 < num_test < n:
        raise ValueError(f"`{name}`={test_fraction} of {n} examples leaves an empty split.")
    perm = np.asarray(_permutation(key, n))
    return np.sort(perm[num_test:]), np.sort(perm[:num_test])


def validation_split(dataset: Dataset, fraction: float, key: PRNGKeyArray) -> Dataset:
    """Hold out part of the training split as a validation split, for choosing
    hyperparameters without looking at the test split.

    The result is a [`toolkit.data.Dataset`][] whose training split is the training
    examples that remain and whose "test" split is the held-out ones, so everything
    that takes a `Dataset` (`toolkit.pruning.train`, the CLI) evaluates on the
    validation split unchanged; its name is the original's with `:validation`
    appended, so training logs say which split they were scored on. The original test
    split is not in it. The examples keep the original normalisation (`mean` and
    `std`), computed on the whole training split: the held-out examples took part in a
    per-channel mean and standard deviation, nothing more.

    **Arguments:**

    - `dataset`: a `Dataset`.
    - `fraction`: the fraction of the training examples to hold out, in `(0, 1)`.
    - `key`: a JAX PRNG key that fixes which examples are held out (a uniformly random
        subset, not stratified by class).

    **Returns:**

    A `Dataset` with `round(fraction * dataset.num_train)` validation examples and the
    rest for training, each split in its original order.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a toolkit.data.Dataset, got {type(dataset)}.")
    train, held = held_out_split(dataset.num_train, fraction, key, name="fraction")
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    return Dataset(
        x_train=jax.device_put(x[train]),
        y_train=jax.device_put(y[train]),
        x_test=jax.device_put(x[held]),
        y_test=jax.device_put(y[held]),
        mean=dataset.mean,
        std=dataset.std,
        name=f"{dataset.name}:validation",
        num_classes=dataset.num_classes,
        classes=dataset.classes,
    )
