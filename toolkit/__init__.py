"""toolkit: pruning by dying neurons, and differentiable planning for optimal control."""

import importlib.metadata

from . import control as control, data as data, nn as nn, pruning as pruning


__version__ = importlib.metadata.version("toolkit")
