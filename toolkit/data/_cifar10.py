import os
import pathlib
from typing import Any

import numpy as np

from ._dataset import Dataset, make_dataset
from ._pickle import restricted_load


_FOLDER = "cifar-10-batches-py"
_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = "test_batch"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _folder(root: str | os.PathLike) -> pathlib.Path:
    root = pathlib.Path(root)
    if (root / _FOLDER).is_dir():
        root = root / _FOLDER
    missing = [name for name in (*_TRAIN, _TEST) if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batches {', '.join(missing)} not found in {os.fspath(root)!r}. "
            "CIFAR-10 is user-provided: download the python version "
            "(cifar-10-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html), extract "
            f"it, and pass the {_FOLDER!r} folder (or the folder holding it) as `root`."
        )
    return root


def _text(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _read_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(path)
    if not isinstance(batch, dict):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(batch).__name__}, not a dict.")
    batch = {_text(key): value for key, value in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{os.fspath(path)!r} has no {key!r} entry.")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(
            f"{os.fspath(path)!r}: 'data' must be a uint8 array of shape (N, 3072), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}."
        )
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{os.fspath(path)!r}: 'data' has rows of {data.shape[1]} values, not 3072."
        )
    labels = np.asarray(batch["labels"])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{os.fspath(path)!r}: 'labels' must be {data.shape[0]} integers, one per row of "
            f"'data', got {labels.dtype} of shape {labels.shape}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise ValueError(f"{os.fspath(path)!r}: labels outside [0, 10).")
    # Each row is the red, green then blue 32x32 plane, row-major: already CHW.
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | os.PathLike, *, normalise: bool = True) -> Dataset:
    """CIFAR-10, read from the user's copy of its python-pickle batches.

    The batches are pickles; they are read with a restricted unpickler that admits only
    numpy arrays, lists, dicts, strings and bytes, so a file from the internet cannot
    run code: anything else raises [`toolkit.data.UnsafePickleError`][].

    **Arguments:**

    - `root`: the `cifar-10-batches-py` folder (with `data_batch_1` ... `data_batch_5`
        and `test_batch`), or the folder holding it.
    - `normalise`: standardise each channel with the training split's mean and
        standard deviation; otherwise the pixels are scaled to `[0, 1]`.

    **Returns:**

    A [`toolkit.data.Dataset`][] of `(3, 32, 32)` images: 50000 training and 10000 test
    for the real data set.
    """
    folder = _folder(root)
    train = [_read_batch(folder / name) for name in _TRAIN]
    x_test, y_test = _read_batch(folder / _TEST)
    return make_dataset(
        "cifar10",
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        x_test,
        y_test,
        CIFAR10_CLASSES,
        scale=255.0,
        normalise=normalise,
    )
