"""toolkit: pruning by dying neurons, and differentiable planning for optimal control."""

import importlib
from typing import TYPE_CHECKING

from ._compilation_cache import (
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
)
from ._jit import compiler_options as compiler_options


if TYPE_CHECKING:
    from . import control as control, data as data, nn as nn, pruning as pruning

# The halves are imported on first use: a planning script does not pay for the
# pruning half's imports, nor a pruning script for the control half's.
_SUBPACKAGES = ("control", "data", "nn", "pruning")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name == "__version__":
        from importlib.metadata import version

        return version("toolkit")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES, "__version__"})
