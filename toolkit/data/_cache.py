import contextlib
import os
import pathlib
import tempfile
import zipfile
from typing import Any

import numpy as np


def cache_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder where generated data sets are cached.

    In order: `path` if given, `$TOOLKIT_CACHE_DIR`, `$XDG_CACHE_HOME/toolkit`,
    `~/.cache/toolkit`.
    """
    if path is not None:
        return pathlib.Path(path)
    if os.environ.get("TOOLKIT_CACHE_DIR"):
        return pathlib.Path(os.environ["TOOLKIT_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache"
    return base / "toolkit"


def read_arrays(path: pathlib.Path, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays of an `.npz` cache file, or `None` if it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in keys}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def write_arrays(path: pathlib.Path, arrays: dict[str, Any]) -> None:
    """Writes arrays to an `.npz` file atomically: to a temporary file in the same
    folder, renamed into place, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
