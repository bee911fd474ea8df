import hashlib
import importlib.metadata
import importlib.util
import json
import os
import random
import types
import warnings
from typing import Any

import numpy as np

from ._cache import cache_dir as _cache_dir, read_arrays, write_arrays
from ._dataset import Dataset, make_dataset


_KEYS = ("x", "y", "x_test", "y_test")


def _default_args() -> dict[str, Any]:
    from mnist1d.data import get_dataset_args

    args: dict[str, Any] = dict(get_dataset_args(as_dict=True))  # pyright: ignore
    # The URL is only for the package's download path, which is never used here.
    args.pop("url", None)
    return args


def generate_mnist1d() -> dict[str, np.ndarray]:
    """Generates MNIST-1D with the `mnist1d` package's generator and default arguments.

    Only `mnist1d.data.make_dataset` is called, never `get_dataset` (which may
    download). The generator seeds numpy's and Python's global random states; they are
    restored afterwards, so the caller's random streams are left as they were.
    """
    from mnist1d.data import make_dataset as mnist1d_make_dataset

    args = types.SimpleNamespace(**_default_args())
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = mnist1d_make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {key: np.asarray(data[key]) for key in _KEYS}


def _cache_name() -> str:
    """The cache file's name: the `mnist1d` version and a digest of the source of its
    generator and default arguments (`mnist1d/data.py`), read without importing it:
    `mnist1d.data` imports matplotlib and scipy (1.4-1.9 s), which a cached load
    does not need."""
    version = importlib.metadata.version("mnist1d")
    spec = importlib.util.find_spec("mnist1d")
    folders = [] if spec is None else list(spec.submodule_search_locations or ())
    source = os.path.join(folders[0], "data.py") if folders else None
    if source is not None and os.path.exists(source):
        with open(source, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    else:
        text = json.dumps(_default_args(), sort_keys=True).encode()
        digest = hashlib.sha256(text).hexdigest()
    return f"mnist1d-{version}-{digest[:12]}.npz"


def load_mnist1d(
    *, cache_dir: str | os.PathLike | None = None, cache: bool = True, normalise: bool = True
) -> Dataset:
    """MNIST-1D (Greydanus and Kobak 2024), generated offline by the `mnist1d` package.

    The package's generator runs with its default arguments (4000 training and 1000
    test signals of length 40, seed 42), so the data are the same on every machine and
    every call; nothing is downloaded. The generated arrays are cached in `cache_dir`,
    written to a temporary file and renamed into place.

    **Arguments:**

    - `cache_dir`: where to cache the generated arrays; default `$TOOLKIT_CACHE_DIR`,
        else `$XDG_CACHE_HOME/toolkit`, else `~/.cache/toolkit`.
    - `cache`: read and write the cache; if `False`, generate afresh (about a second).
    - `normalise`: standardise with the training split's mean and standard deviation
        (the generator already standardises the whole set, so this changes little).

    **Returns:**

    A [`toolkit.data.Dataset`][] of `(1, 40)` signals (channels-first, for
    `equinox.nn.Conv1d`), 4000 training and 1000 test.
    """
    path = _cache_dir(cache_dir) / _cache_name() if cache else None
    arrays = None if path is None else read_arrays(path, _KEYS)
    if arrays is None:
        arrays = generate_mnist1d()
        if path is not None:
            try:
                write_arrays(path, arrays)
            except OSError as e:
                warnings.warn(f"Could not cache MNIST-1D in {os.fspath(path)!r}: {e}")
    return make_dataset(
        "mnist1d",
        arrays["x"][:, None],
        arrays["y"],
        arrays["x_test"][:, None],
        arrays["y_test"],
        tuple(str(i) for i in range(10)),
        scale=1.0,
        normalise=normalise,
    )
