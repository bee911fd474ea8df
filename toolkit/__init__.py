"""toolkit: pruning by dying neurons, and differentiable planning for optimal control."""

import importlib.metadata

from . import control as control, data as data, nn as nn, pruning as pruning
from ._compilation_cache import (
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
)


__version__ = importlib.metadata.version("toolkit")
