import gzip
import importlib.util
import os

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
    images, labels = _read_digits()
    images = images[:, None]
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


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `digits.csv.gz` as `(images (1797, 8, 8), labels)`, read the way
    `sklearn.datasets.load_digits` reads it: each row 64 grey levels, then the label.

    The file is read where scikit-learn keeps it, without importing scikit-learn
    (about 2 s of imports, in every process that trains on digits); should a release
    keep it elsewhere, its `load_digits` is used.
    """
    spec = importlib.util.find_spec("sklearn")
    folders = [] if spec is None else list(spec.submodule_search_locations or ())
    for folder in folders:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            with gzip.open(path, "rt") as f:
                table = np.loadtxt(f, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return np.asarray(bunch.images), np.asarray(bunch.target)  # pyright: ignore
