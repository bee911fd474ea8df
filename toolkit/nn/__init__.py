"""Equinox networks whose hidden units are explicit.

Every network is an [`toolkit.nn.AbstractNetwork`][]: it is called on one example as
`model(x, state) -> (y, state)`, reports the inputs of its ReLUs grouped by unit
group (`model.preactivations`), and declares which arrays hold each group
(`model.wiring()`), so that `toolkit.pruning` can find and remove dead units.
"""

from ._base import AbstractNetwork as AbstractNetwork
from ._conv import convolve as convolve
from ._convnet import AbstractConvClassifier as AbstractConvClassifier, ConvNet as ConvNet
from ._mlp import MLP as MLP
from ._resnet import BasicBlock as BasicBlock, ResNet as ResNet
from ._vgg import VGG as VGG, VGG_CONFIGS as VGG_CONFIGS
from ._wiring import Group as Group, Leaf as Leaf, SizeField as SizeField, StateLeaf as StateLeaf
