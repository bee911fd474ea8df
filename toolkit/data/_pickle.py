import importlib
import io
import os
import pickle
from collections.abc import Callable
from typing import Any


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than numpy arrays, lists, dicts, strings and
    bytes, and was refused without running any of it."""


def _numpy_global(name: str) -> Any:
    # numpy >= 2 moved `numpy.core` to `numpy._core` (the old name still imports, with a
    # DeprecationWarning); pickles from either name the function by its module of the
    # day, so map both onto whichever this numpy has.
    module, attribute = name.rsplit(".", 1)
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), attribute)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"this numpy has no {name}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocols < 3 pickle `bytes` as `_codecs.encode(text, "latin1")`.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(
            f"refused `_codecs.encode` with {type(text).__name__} and encoding {encoding!r}: "
            "only the latin-1 encoding that pickles use for bytes is allowed."
        )
    return text.encode("latin-1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    import numpy as np

    reconstruct = _numpy_global("multiarray._reconstruct")
    frombuffer = _numpy_global("numeric._frombuffer")
    return {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("_codecs", "encode"): _latin1_encode,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, *, source: str, **kwargs):
        super().__init__(file, **kwargs)
        self._source = source
        self._globals = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {module}.{name} from {self._source}: this reader admits only "
                "numpy arrays, lists, dicts, strings and bytes, so a pickle cannot run code. "
                "The file is not a plain data pickle; do not load it with `pickle.load`."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused a persistent id in {self._source}.")


def restricted_load(path: str | os.PathLike) -> Any:
    """Unpickles a data file that may hold only numpy arrays, lists, dicts, strings and
    bytes (and numbers, `None` and tuples, which need no code).

    Any other global (a class, or a function such as `os.system`) raises
    `UnsafePickleError` before it is called. Python 2 pickles (the CIFAR-10 batches)
    are read with the latin-1 encoding, the one numpy's arrays need.
    """
    with open(path, "rb") as f:
        data = f.read()
    unpickler = _RestrictedUnpickler(
        io.BytesIO(data), source=repr(os.fspath(path)), encoding="latin1"
    )
    return unpickler.load()
