import os
import pathlib

import numpy as np

from ._dataset import Dataset, make_dataset
from ._idx import read_idx


FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get update && apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _find(root: pathlib.Path, stem: str) -> pathlib.Path:
    # Debian's dataset-fashion-mnist ships the gzipped files; a user may have
    # decompressed them.
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {os.fspath(root)!r}. Install the "
        f"Debian package with `{FASHION_MNIST_INSTALL}` (it puts the idx files in "
        f"{FASHION_MNIST_ROOT}), or pass the folder holding them as `root`."
    )


def _read_split(root: pathlib.Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{os.fspath(images_path)!r} holds {images.dtype} of shape {images.shape}, not "
            "uint8 images (N, H, W)."
        )
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{os.fspath(labels_path)!r} holds {labels.dtype} of shape {labels.shape}, not "
            f"{images.shape[0]} uint8 labels, one per image of {os.fspath(images_path)!r}."
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{os.fspath(labels_path)!r} has labels outside [0, 10).")
    return images[:, None], labels


def load_fashion_mnist(
    root: str | os.PathLike = FASHION_MNIST_ROOT, *, normalise: bool = True
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017), read from its idx files.

    The files come from Debian's `dataset-fashion-mnist` package, installed with
    `apt-get update && apt-get install -y dataset-fashion-mnist`:
    `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
    `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (or the same names
    without `.gz`).

    **Arguments:**

    - `root`: the folder holding the idx files; default
        `/usr/share/datasets/fashion-mnist`, where the Debian package puts them.
    - `normalise`: standardise with the training split's mean and standard deviation;
        otherwise the pixels are scaled to `[0, 1]`.

    **Returns:**

    A [`toolkit.data.Dataset`][] of `(1, 28, 28)` images, 60000 training and 10000 test.

    **Raises:**

    `FileNotFoundError`, whose message gives the install command, if the files are
    missing.
    """
    root = pathlib.Path(root)
    x_train, y_train = _read_split(root, "train")
    x_test, y_test = _read_split(root, "t10k")
    return make_dataset(
        "fashion_mnist",
        x_train,
        y_train,
        x_test,
        y_test,
        FASHION_MNIST_CLASSES,
        scale=255.0,
        normalise=normalise,
    )
