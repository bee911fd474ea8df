from typing import Any

import jax.random as jr
import numpy as np
from jaxtyping import PRNGKeyArray

from ._dataset import Dataset, make_dataset
from ._validation import held_out_split


def load_digits(
    *, key: PRNGKeyArray | None = None, test_fraction: float = 0.2, normalise: bool = True
) -> Dataset:
    """The UCI handwritten digits shipped with scikit-learn (`sklearn.datasets.load_digits`).

    1797 grey 8x8 images of the digits 0-9, 16 grey levels. The data set has no test
    split, so a random fraction is held out as the test split.

    **Arguments:**

    - `key`: a JAX PRNG key that fixes the held-out split; default `jax.random.key(0)`,
        so the split is the same on every call.
    - `test_fraction`: the fraction of the examples held out.
    - `normalise`: standardise with the training split's mean and standard deviation;
        otherwise the pixels are scaled to `[0, 1]`.

    **Returns:**

    A [`toolkit.data.Dataset`][] of `(1, 8, 8)` images, 1438 training and 359 test with
    the default `test_fraction`.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch: Any = sklearn_load_digits()
    images = np.asarray(bunch.images)[:, None]
    labels = np.asarray(bunch.target)
    if key is None:
        key = jr.key(0)
    train, test = held_out_split(len(labels), test_fraction, key)
    return make_dataset(
        "digits",
        images[train],
        labels[train],
        images[test],
        labels[test],
        tuple(str(i) for i in range(10)),
        scale=16.0,
        normalise=normalise,
    )
