import dataclasses
import functools
from typing import Any, Literal

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
from jaxtyping import PyTree

from ..nn import AbstractNetwork
from ._dead import check_masks, dead_from_masks, DeadUnits
from ._gather import LiveIndices, place, take
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

    A `dead` set belongs to the network it was computed on: `tree` must hold that
    network's units, all of them. A network pruned since (even to as many units as
    `dead` keeps) is refused, so that a stale set is never silently ignored: compute
    the dead units of the network being pruned.

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
    not have the sizes that the network's wiring expects (as when it was pruned
    since `dead` was computed), if a mask has the wrong shape, or if a group would
    be emptied and `empty="error"`.
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
    indices = LiveIndices(layout, keep_indices(dead, empty))
    found = []

    def _prune_node(x):
        if isinstance(x, eqx.nn.State):
            found.append(x)
            return _prune_state(x, layout, indices)
        if isinstance(x, layout.model_type):
            found.append(x)
            return _prune_network(x, layout, indices)
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


@dataclasses.dataclass(frozen=True)
class _Slots:
    """A layout's slots by key path, in the form a prune looks them up."""

    ops: dict[KeyPath, tuple[tuple[int, int, int], ...]]  # path -> (axis, block, group)
    inits: tuple[tuple[KeyPath, int, int], ...]  # StateIndex.init prefix, axis, group
    sizes: tuple[tuple[KeyPath, str, int, int], ...]  # layer path, field, block, group
    states: tuple[tuple[Any, int, int], ...]  # marker, axis, group


@functools.lru_cache(maxsize=16)
def _slots(layout: Layout) -> _Slots:
    ops: dict[KeyPath, list] = {}
    inits, sizes, states = [], [], []
    for i, g in enumerate(layout.groups):
        for s in g.leaves:
            ops.setdefault(s.path, []).append((s.axis, s.block, i))
        for s in g.states:  # the initial state that an eqx.nn.StateIndex may still hold
            inits.append((s.path + (jtu.GetAttrKey("init"),), s.axis, i))
            states.append((s.marker, s.axis, i))
        sizes += [(s.path, s.name, s.block, i) for s in g.sizes]
    return _Slots({k: tuple(v) for k, v in ops.items()}, tuple(inits), tuple(sizes), tuple(states))


@functools.lru_cache(maxsize=64)
def _leaf_plan(layout: Layout, treedef) -> tuple[tuple[int, KeyPath, tuple], ...]:
    # Which flat leaves of a model-shaped node hold units, and how: matching key paths
    # is the slow part of a prune, and it depends on the structure only, so it is done
    # once per (layout, structure) and every later prune indexes the flat leaves.
    slots = _slots(layout)
    skeleton = jtu.tree_unflatten(treedef, [0] * treedef.num_leaves)
    plan = []
    for n, (path, _) in enumerate(jtu.tree_flatten_with_path(skeleton)[0]):
        path = tuple(path)
        todo = slots.ops.get(path, ())
        todo += tuple((axis, 1, g) for p, axis, g in slots.inits if path[: len(p)] == p)
        if todo:
            # Leading axes first: each gather then reads fewer, longer runs of memory.
            plan.append((n, path, tuple(sorted(todo, key=lambda op: op[0]))))
    return tuple(plan)


def _plan_for(layout: Layout, treedef):
    try:
        return _leaf_plan(layout, treedef)
    except TypeError:  # a static field that cannot be hashed: no caching
        return _leaf_plan.__wrapped__(layout, treedef)


def _prune_network(tree, layout: Layout, indices: LiveIndices):
    leaves, treedef = jtu.tree_flatten(tree)
    new = list(leaves)
    for n, path, todo in _plan_for(layout, treedef):
        leaf = leaves[n]
        for axis, block, group in todo:
            leaf = take(leaf, axis, block, group, indices, lambda: jtu.keystr(path))
        new[n] = leaf
    # A fresh copy of every node: its size fields (static, so not leaves) are set in
    # place below without touching `tree`.
    tree = jtu.tree_unflatten(treedef, place(new, leaves))
    for path, name, block, group in _slots(layout).sizes:
        try:
            layer = get_at(tree, path)
            getattr(layer, name)
        except (AttributeError, IndexError, KeyError, TypeError) as e:
            raise ValueError(
                f"`tree` is not laid out like the network: no layer with a field {name!r} "
                f"at {jtu.keystr(path)}."
            ) from e
        object.__setattr__(layer, name, len(indices.keep[group]) * block)
    return tree


def _prune_state(state: eqx.nn.State, layout: Layout, indices: LiveIndices):
    values, markers = state.tree_flatten()
    values = list(values)
    position = {m: i for i, m in enumerate(markers)}
    slots = _slots(layout).states
    missing = [m for m, _, _ in slots if m not in position]
    if missing:
        raise ValueError(
            f"this `eqx.nn.State` does not belong to the {layout.model_type.__name__} that "
            f"`dead` was computed for: it has no entry for {missing[0]!r}."
        )
    old, new, rebuild = [], [], []
    for marker, axis, group in slots:
        i = position[marker]
        leaves, treedef = jtu.tree_flatten(values[i])
        rebuild.append((i, treedef, len(old), len(old) + len(leaves)))
        old += leaves
        new += [take(a, axis, 1, group, indices, lambda: f"State[{marker!r}]") for a in leaves]
    new = place(new, old)
    for i, treedef, start, stop in rebuild:
        values[i] = jtu.tree_unflatten(treedef, new[start:stop])
    return eqx.nn.State.tree_unflatten(markers, values)
