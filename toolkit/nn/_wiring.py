"""How a network's hidden units sit in its arrays.

A network declares its wiring as one [`toolkit.nn.Group`][] per group of units. A
group lists every place that holds one slice per unit: array leaves of the model
(producer rows, bias, BatchNorm scale and shift, consumer columns), the
`eqx.nn.StateIndex`es whose values hold per-unit running statistics, and the static
size fields of the layers (`out_features`, `in_channels`, `input_size`, ...). Each
place is named by a `where` function, as in `eqx.tree_at`, so the same wiring
describes the model, its gradients and every optimiser moment laid out like it.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx


class Leaf(eqx.Module):
    """An array leaf holding one slice per unit.

    **Arguments:**

    - `where`: a function from the model to the array, as in `eqx.tree_at`.
    - `axis`: the axis along which the units are laid out.
    - `block`: how many consecutive entries along `axis` each unit owns (a flattened
        `(channels, height, width)` feature map gives each channel `height * width`
        columns of the next linear layer).
    """

    where: Callable[[Any], Any] = eqx.field(static=True)
    axis: int = eqx.field(static=True)
    block: int = eqx.field(static=True, default=1)


class StateLeaf(eqx.Module):
    """An `eqx.nn.StateIndex` whose value (a pytree of arrays, for instance BatchNorm's
    running mean and variance) holds one slice per unit along `axis` of every array.

    **Arguments:**

    - `where`: a function from the model to the `eqx.nn.StateIndex`.
    - `axis`: the axis of every array of the state along which the units are laid out.
    """

    where: Callable[[Any], Any] = eqx.field(static=True)
    axis: int = eqx.field(static=True, default=0)


class SizeField(eqx.Module):
    """A static integer field of a layer that counts the units
    (`eqx.nn.Linear.out_features`, `eqx.nn.Conv2d.in_channels`, ...).

    **Arguments:**

    - `where`: a function from the model to the layer.
    - `name`: the name of the field.
    - `block`: how many it counts per unit (as for [`toolkit.nn.Leaf`][]).
    """

    where: Callable[[Any], Any] = eqx.field(static=True)
    name: str = eqx.field(static=True)
    block: int = eqx.field(static=True, default=1)


class Group(eqx.Module):
    """One group of units that live or die together: the outputs of one layer, or
    the channels of a residual stream that several layers add into.

    **Arguments:**

    - `size`: the number of units.
    - `slots`: every [`toolkit.nn.Leaf`][], [`toolkit.nn.StateLeaf`][] and
        [`toolkit.nn.SizeField`][] that holds the units.
    """

    size: int = eqx.field(static=True)
    slots: tuple[Leaf | StateLeaf | SizeField, ...] = eqx.field(static=True)


def _attr(where: Callable, name: str) -> Callable:
    return lambda m: getattr(where(m), name)


def outputs_of(layer: eqx.nn.Linear | eqx.nn.Conv, where: Callable) -> list:
    """The slots of a linear or convolutional layer's output units."""
    slots: list = [Leaf(_attr(where, "weight"), 0)]
    if layer.bias is not None:
        slots.append(Leaf(_attr(where, "bias"), 0))
    name = "out_features" if isinstance(layer, eqx.nn.Linear) else "out_channels"
    slots.append(SizeField(where, name))
    return slots


def inputs_of(layer: eqx.nn.Linear | eqx.nn.Conv, where: Callable, block: int = 1) -> list:
    """The slots of a linear or convolutional layer's input units."""
    name = "in_features" if isinstance(layer, eqx.nn.Linear) else "in_channels"
    return [Leaf(_attr(where, "weight"), 1, block), SizeField(where, name, block)]


def norm_of(norm: eqx.nn.BatchNorm | None, where: Callable) -> list:
    """The slots of a BatchNorm layer's channels: scale, shift, running statistics."""
    if norm is None:
        return []
    slots: list = []
    if norm.weight is not None:
        slots.append(Leaf(_attr(where, "weight"), 0))
    if norm.bias is not None:
        slots.append(Leaf(_attr(where, "bias"), 0))
    for name in ("batch_state_index", "ema_state_index"):
        if getattr(norm, name) is not None:
            slots.append(StateLeaf(_attr(where, name), 0))
    slots.append(SizeField(where, "input_size"))
    return slots
