from typing import Any, Literal

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
from jaxtyping import PyTree

from ..nn import AbstractNetwork
from ._dead import check_masks, dead_from_masks, DeadUnits
from ._layout import get_at, KeyPath, Layout


_EMPTY = ("error", "keep_most_active")


def prune(
    tree: PyTree,
    dead: DeadUnits | dict[str, Any],
    *,
    empty: Literal["error", "keep_most_active"] = "error",
) -> PyTree:
    """Remove dead units from a network, or from anything laid out like it.

    Every node of `tree` that is an instance of the network's class (the network
    itself, its gradients, an optimiser moment such as Adam's `mu` and `nu`, a
    momentum trace) loses the slices of the dead units along the axes its wiring
    names, and its layers' size fields shrink to match; every `eqx.nn.State` loses
    them from the running statistics. Everything else is returned unchanged, so an
    optax state (`optax.chain`, `optax.inject_hyperparams`, ...) is pruned wherever
    it holds model-shaped subtrees, and `(model, state, opt_state)` can be pruned in
    one call.

    Pruning is a projection onto the live units: an array that already has only the
    live units along an axis is left as it is, so pruning twice with the same `dead`
    changes nothing the second time.

    This is a pure function but not a jittable one: the shapes change, so jitted
    steps recompile after a prune.

    **Arguments:**

    - `tree`: a [`toolkit.nn.AbstractNetwork`][], an `eqx.nn.State`, an optax state, or
        any pytree containing them.
    - `dead`: a [`toolkit.pruning.DeadUnits`][] of the network (from
        [`toolkit.pruning.dead_units`][]); when `tree` is the network itself, a dict
        of boolean masks per group is accepted too.
    - `empty`: what to do when every unit of a group is dead. `"error"` (the default)
        raises; `"keep_most_active"` keeps the unit whose ReLU input came closest to
        firing (the largest peak; it needs activity statistics, as given by
        [`toolkit.pruning.dead_units`][] or [`toolkit.pruning.dead_from`][]). Keeping
        a dead unit changes no output.

    **Returns:**

    `tree` with the dead units removed: the same classes, smaller arrays.

    **Raises:**

    `ValueError` if `tree` holds nothing laid out like the network, if its arrays do
    not have the sizes that the network's wiring expects, if a mask has the wrong
    shape, or if a group would be emptied and `empty="error"`.
    """
    if isinstance(dead, dict) and isinstance(tree, AbstractNetwork):
        dead = dead_from_masks(tree, dead)
    if not isinstance(dead, DeadUnits):
        raise ValueError(
            "`dead` must be a `toolkit.pruning.DeadUnits` (from `dead_units`, `dead_from` or "
            f"`dead_from_masks`), got {type(dead).__name__}."
        )
    if empty not in _EMPTY:
        raise ValueError(f"`empty` must be one of {_EMPTY}, got {empty!r}.")
    layout = dead.layout
    check_masks(layout, dead.masks)
    keep = keep_indices(dead, empty)
    found = []

    def _prune_node(x):
        if isinstance(x, eqx.nn.State):
            found.append(x)
            return _prune_state(x, layout, keep)
        if isinstance(x, layout.model_type):
            found.append(x)
            return _prune_network(x, layout, keep)
        return x

    out = jtu.tree_map(
        _prune_node, tree, is_leaf=lambda x: isinstance(x, (eqx.nn.State, layout.model_type))
    )
    if not found:
        raise ValueError(
            f"found nothing to prune: `tree` ({type(tree).__name__}) holds no "
            f"{layout.model_type.__name__} (nor a pytree of its class, such as its gradients "
            "or an optimiser moment) and no `eqx.nn.State`."
        )
    return out


def keep_indices(dead: DeadUnits, empty: str) -> dict[str, np.ndarray]:
    keep = {}
    for g in dead.layout.groups:
        mask = dead.masks[g.name]
        if isinstance(mask, jax.core.Tracer):
            raise ValueError("`prune` changes shapes, so it cannot be jitted or vmapped.")
        live = np.flatnonzero(~np.asarray(mask))
        if live.size == 0:
            if empty == "error":
                raise ValueError(
                    f"every unit of group {g.name!r} is dead: pruning would empty it. Pass "
                    "`empty='keep_most_active'` to keep the unit that came closest to firing."
                )
            if dead.peak is None:
                raise ValueError(
                    "`empty='keep_most_active'` needs activity statistics: build `dead` with "
                    "`dead_units` or `dead_from`, not `dead_from_masks`."
                )
            live = np.array([int(np.argmax(np.asarray(dead.peak[g.name])))])
        keep[g.name] = live
    return keep


def _take(leaf, axis: int, block: int, full: int, keep: np.ndarray, where: str, group: str):
    shape = getattr(leaf, "shape", None)
    if shape is None or len(shape) <= axis:
        raise ValueError(
            f"{where}: expected an array with an axis {axis} holding the units of group "
            f"{group!r}, got {type(leaf).__name__} of shape {shape}."
        )
    if len(keep) == full:
        return leaf
    if shape[axis] == full * block:
        index = (keep[:, None] * block + np.arange(block)).ravel()
        return _gather(leaf, index, axis)
    if shape[axis] == len(keep) * block:  # already pruned
        return leaf
    raise ValueError(
        f"{where}: axis {axis} has size {shape[axis]}, but group {group!r} has {full} units "
        f"({len(keep)} live) of {block} entries each: is `tree` laid out like the network "
        "that `dead` was computed for?"
    )


def _gather(leaf, index: np.ndarray, axis: int):
    # On the host: a jitted gather would compile once per leaf shape, every prune.
    if isinstance(leaf, jax.core.Tracer):
        raise ValueError("`prune` changes shapes, so it cannot be jitted or vmapped.")
    if isinstance(leaf, jax.Array):
        out = np.take(np.asarray(leaf), index, axis=axis)
        # Keep the placement and the committedness: a committed array among uncommitted
        # ones is another jit cache key, so a jitted step would compile twice per prune.
        return jax.device_put(out, leaf.sharding) if leaf.committed else jax.device_put(out)
    return np.take(leaf, index, axis=axis)


def _prune_network(tree, layout: Layout, keep: dict[str, np.ndarray]):
    ops: dict[KeyPath, list] = {}
    prefixes: list[tuple[KeyPath, Any, Any]] = []
    for g in layout.groups:
        for s in g.leaves:
            ops.setdefault(s.path, []).append((s.axis, s.block, g))
        for s in g.states:  # the initial state that an eqx.nn.StateIndex may still hold
            prefixes.append((s.path + (jtu.GetAttrKey("init"),), s.axis, g))
    leaves, treedef = jtu.tree_flatten_with_path(tree)
    new_leaves = []
    for path, leaf in leaves:
        path = tuple(path)
        todo = list(ops.get(path, ()))
        todo += [(axis, 1, g) for p, axis, g in prefixes if path[: len(p)] == p]
        for axis, block, g in todo:
            leaf = _take(leaf, axis, block, g.size, keep[g.name], jtu.keystr(path), g.name)
        new_leaves.append(leaf)
    tree = jtu.tree_unflatten(treedef, new_leaves)
    for g in layout.groups:
        for s in g.sizes:
            tree = _set_size(tree, s.path, s.name, len(keep[g.name]) * s.block)
    return tree


def _set_size(tree, path: KeyPath, name: str, value: int):
    try:
        layer = get_at(tree, path)
        old = getattr(layer, name)
    except (AttributeError, IndexError, KeyError, TypeError) as e:
        raise ValueError(
            f"`tree` is not laid out like the network: no layer with a field {name!r} at "
            f"{jtu.keystr(path)}."
        ) from e
    if old == value:
        return tree
    # Static fields live in the treedef: rebuild the layer and set the field on the copy.
    leaves, treedef = jtu.tree_flatten(layer)
    layer = jtu.tree_unflatten(treedef, leaves)
    object.__setattr__(layer, name, value)
    return eqx.tree_at(lambda t: get_at(t, path), tree, layer)


def _prune_state(state: eqx.nn.State, layout: Layout, keep: dict[str, np.ndarray]):
    values, markers = state.tree_flatten()
    values = list(values)
    position = {m: i for i, m in enumerate(markers)}
    slots = [(s, g) for g in layout.groups for s in g.states]
    missing = [s for s, _ in slots if s.marker not in position]
    if missing:
        raise ValueError(
            f"this `eqx.nn.State` does not belong to the {layout.model_type.__name__} that "
            f"`dead` was computed for: it has no entry for {missing[0].marker!r}."
        )
    for s, g in slots:
        i = position[s.marker]
        where = f"State[{s.marker!r}]"
        values[i] = jtu.tree_map(
            lambda a: _take(a, s.axis, 1, g.size, keep[g.name], where, g.name), values[i]
        )
    return eqx.nn.State.tree_unflatten(markers, values)
