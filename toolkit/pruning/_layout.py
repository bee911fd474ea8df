"""A network's wiring resolved to key paths and state markers: plain, hashable data
that says where each unit group lives in any pytree laid out like the network."""

import dataclasses
import functools
from collections.abc import Hashable
from typing import Any

import equinox as eqx
import jax.tree_util as jtu

from ..nn import AbstractNetwork, Leaf, SizeField, StateLeaf


KeyPath = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class LeafSlot:
    path: KeyPath
    axis: int
    block: int


@dataclasses.dataclass(frozen=True)
class StateSlot:
    path: KeyPath  # of the eqx.nn.StateIndex inside the model
    marker: Hashable  # its key inside an eqx.nn.State
    axis: int


@dataclasses.dataclass(frozen=True)
class SizeSlot:
    path: KeyPath  # of the layer inside the model
    name: str
    block: int


@dataclasses.dataclass(frozen=True)
class GroupLayout:
    name: str
    size: int
    leaves: tuple[LeafSlot, ...]
    states: tuple[StateSlot, ...]
    sizes: tuple[SizeSlot, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    model_type: type
    groups: tuple[GroupLayout, ...]

    # Hashed once: a prune looks its plans up by layout, and a ResNet's has hundreds of
    # key paths.
    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.model_type, self.groups))

    def __hash__(self) -> int:
        return self._hash

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    @property
    def widths(self) -> dict[str, int]:
        return {g.name: g.size for g in self.groups}


class _Path:
    # An opaque leaf, so that a `where` applied to a tree of paths returns one.
    __slots__ = ("path",)

    def __init__(self, path):
        self.path = path


def _is_index(x) -> bool:
    return isinstance(x, eqx.nn.StateIndex)


def _node_paths(tree) -> dict[int, KeyPath]:
    """The key path of every node of `tree` (its first, in flattening order, for a node
    that occurs twice), by `id`: one walk, where a search per node flattens the whole
    tree once per slot of the wiring."""
    paths: dict[int, KeyPath] = {}
    stack = [((), tree)]
    while stack:
        path, node = stack.pop()
        if id(node) in paths:
            continue
        paths[id(node)] = path
        children = jtu.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0]
        if len(children) == 1 and children[0][1] is node:  # a leaf
            continue
        stack += [(path + tuple(p), child) for p, child in reversed(children)]
    return paths


def _node_path(paths: dict[int, KeyPath], node) -> KeyPath:
    path = paths.get(id(node))
    if path is None:
        raise ValueError(f"the wiring names a node that is not inside the model: {node!r}")
    return path


def resolve(model: AbstractNetwork) -> Layout:
    """Resolve `model.wiring()` to key paths and state markers."""
    if not isinstance(model, AbstractNetwork):
        raise ValueError(
            f"expected a `toolkit.nn.AbstractNetwork` (a network with explicit units), "
            f"got {type(model).__name__}."
        )
    paths = jtu.tree_map_with_path(lambda p, _: _Path(tuple(p)), model)
    nodes = _node_paths(model)
    groups = []
    for name, group in model.wiring().items():
        leaves, states, sizes = [], [], []
        for slot in group.slots:
            if isinstance(slot, Leaf):
                found = slot.where(paths)
                if not isinstance(found, _Path):
                    raise ValueError(f"group {name!r}: a `Leaf` must select one array leaf.")
                leaves.append(LeafSlot(found.path, slot.axis, slot.block))
            elif isinstance(slot, StateLeaf):
                index = slot.where(model)
                if not _is_index(index):
                    raise ValueError(f"group {name!r}: a `StateLeaf` must select a StateIndex.")
                states.append(StateSlot(_node_path(nodes, index), index.marker, slot.axis))
            elif isinstance(slot, SizeField):
                layer = slot.where(model)
                sizes.append(SizeSlot(_node_path(nodes, layer), slot.name, slot.block))
            else:
                raise ValueError(f"group {name!r}: unknown slot {slot!r}.")
        groups.append(GroupLayout(name, group.size, tuple(leaves), tuple(states), tuple(sizes)))
    return Layout(type(model), tuple(groups))


def get_at(tree, path: KeyPath):
    """The node of `tree` at a key path."""
    for key in path:
        if isinstance(key, jtu.GetAttrKey):
            tree = getattr(tree, key.name)
        elif isinstance(key, jtu.SequenceKey):
            tree = tree[key.idx]
        elif isinstance(key, jtu.DictKey):
            tree = tree[key.key]
        else:
            raise ValueError(f"cannot follow the key {key!r}.")
    return tree
