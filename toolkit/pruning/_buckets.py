"""Width buckets: a network pruned while it trains keeps a few shapes, so that its
jitted steps compile a few times rather than at every prune."""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, PyTree

from ..nn import AbstractNetwork
from ._activity import Activity
from ._ahead import prune_activity, silence
from ._dead import dead_from_masks, DeadUnits
from ._layout import resolve
from ._prune import keep_indices, prune


class AbstractBuckets(eqx.Module):
    """How wide [`toolkit.pruning.train`][] keeps each unit group of a network it prunes.

    A prune masks the units it removes: their parameters and optimiser moments are
    set to zero and held there, so the network computes what the pruned one does.
    The arrays shrink only when a group's bucket (`width`) shrinks, to that width,
    so a run compiles its steps once per bucket rather than once per prune.
    """

    @abc.abstractmethod
    def width(self, live: int, initial: int) -> int:
        """The width to keep a group of `initial` units at when `live` of them are
        live (`1 <= live <= initial`): between `live` and `initial`, and
        non-decreasing in `live`."""


class ExactWidths(AbstractBuckets):
    """No buckets: a prune removes its units from the arrays, and the steps compile
    anew for the new shapes (but for the last prune before the end of training, see
    [`toolkit.pruning.train`][])."""

    def width(self, live: int, initial: int) -> int:
        return live


class WidthBuckets(AbstractBuckets):
    """Widths on a geometric grid: a group of `initial` units is kept at the smallest
    `ceil(initial / ratio**k)` (`k = 0, 1, ...`) that holds its live units. With the
    default `ratio=2`, a group of 1024 units is 1024, 512, 256, ... wide: at most
    twice its live units, and one compilation per halving.

    **Arguments:**

    - `ratio`: the ratio of consecutive bucket widths, greater than 1. Smaller ratios
        waste less computation on masked units and compile more often.
    """

    ratio: float = 2.0

    def __check_init__(self):
        if not self.ratio > 1:
            raise ValueError(f"`ratio` must be greater than 1, got {self.ratio}.")

    def width(self, live: int, initial: int) -> int:
        width, k = initial, 1
        while width > live:
            smaller = math.ceil(initial / self.ratio**k)
            if smaller < live:
                break
            width, k = smaller, k + 1
        return width


def hold(tree: PyTree, mask: PyTree) -> PyTree:
    """`tree` (gradients or updates) with the entries outside `mask` (from
    `live_parameters`) set to zero, so that masked parameters stay at zero."""
    return jtu.tree_map(lambda u, m: jnp.where(m, u, jnp.zeros((), u.dtype)), tree, mask)


def unmasked(tree: PyTree, model: AbstractNetwork, alive: dict[str, np.ndarray]) -> PyTree:
    """`tree` (laid out like `model`) pruned to the live units of `alive`: the network
    as [`toolkit.pruning.prune`][] would have left it."""
    if all(a.all() for a in alive.values()):
        return tree
    return prune(tree, dead_from_masks(model, {k: ~a for k, a in alive.items()}))


def unmasked_view(
    model: AbstractNetwork, state: eqx.nn.State, activity: Activity, alive: dict[str, np.ndarray]
) -> tuple[AbstractNetwork, eqx.nn.State, Activity]:
    """The network, its state and its activity statistics without the masked units."""
    if all(a.all() for a in alive.values()):
        return model, state, activity
    small, small_state = unmasked((model, state), model, alive)
    live = {k: np.flatnonzero(a) for k, a in alive.items()}
    return small, small_state, prune_activity(activity, small, live)


def spread(dead: DeadUnits, model: AbstractNetwork, alive: dict[str, np.ndarray]) -> DeadUnits:
    """`dead`, found on the network without its masked units, laid out over `model`'s
    arrays: masked units not dead, their `peak` `-inf`."""
    masks, peak = {}, None if dead.peak is None else {}
    for k, a in alive.items():
        masks[k] = np.zeros(a.size, bool)
        masks[k][a] = np.asarray(dead.masks[k])
        if peak is not None:
            p = np.asarray(dead.peak[k])
            peak[k] = np.full(a.size, -np.inf, p.dtype)
            peak[k][a] = p
    return DeadUnits(masks, peak, resolve(model))


def only_live(dead: DeadUnits, alive: dict[str, np.ndarray]) -> DeadUnits:
    """`dead`, found on a network with masked units (which never fire, so count as
    dead), without them: masked units not dead, their `peak` `-inf`."""
    masks = {k: np.asarray(m) & alive[k] for k, m in dead.masks.items()}
    peak = None
    if dead.peak is not None:
        peak = {k: np.where(alive[k], np.asarray(p), -np.inf) for k, p in dead.peak.items()}
    return DeadUnits(masks, peak, dead.layout)


def survivors(alive: dict[str, np.ndarray], dead: DeadUnits, empty: str) -> dict[str, np.ndarray]:
    """The masks of the units of `alive` that `dead` (laid out over the same arrays,
    masked units not dead) leaves; a group it would empty keeps its most active unit
    with `empty="keep_most_active"`, and is an error with `empty="error"` (as
    [`toolkit.pruning.prune`][])."""
    live = {k: np.flatnonzero(a) for k, a in alive.items()}
    view = DeadUnits(
        {k: np.asarray(m)[live[k]] for k, m in dead.masks.items()},
        None if dead.peak is None else {k: np.asarray(p)[live[k]] for k, p in dead.peak.items()},
        dead.layout,
    )
    return widen(alive, keep_indices(view, empty))


def mask(tree: PyTree, model: AbstractNetwork, alive: dict[str, np.ndarray]) -> PyTree:
    """Zero the masked units' entries of `tree` (the network, optimiser moments)."""
    if all(a.all() for a in alive.values()):
        return tree
    return silence(tree, resolve(model), {k: np.flatnonzero(a) for k, a in alive.items()})


def all_alive(model: AbstractNetwork) -> dict[str, np.ndarray]:
    return {name: np.ones(group.size, bool) for name, group in model.wiring().items()}


def live_widths(alive: dict[str, np.ndarray]) -> dict[str, int]:
    return {k: int(a.sum()) for k, a in alive.items()}


def on_device(alive: dict[str, np.ndarray]) -> dict[str, Array]:
    return {k: jax.device_put(a) for k, a in alive.items()}


def widen(alive: dict[str, np.ndarray], keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The masks of the units of `keep`, indices among the live units of `alive`."""
    out = {}
    for k, a in alive.items():
        out[k] = np.zeros_like(a)
        out[k][np.flatnonzero(a)[keep[k]]] = True
    return out


def bucket_keep(
    alive: dict[str, np.ndarray],
    buckets: AbstractBuckets,
    initial: dict[str, int],
    *,
    last: bool = False,
    long: bool = False,
) -> dict[str, np.ndarray] | None:
    """The units to keep in the arrays: in every group, the live ones and the first
    masked ones up to the group's bucket width; `None` if no group's arrays shrink.

    After the `last` prune before the end of training there is no compilation left to
    save: the arrays shrink to the live units if a `long` stretch of training remains
    (as after a one-shot method's only prune), and not at all otherwise (a compilation
    would cost more than the few steps left would save)."""
    if last and not long:
        return None
    if last:
        buckets = ExactWidths()
    keep, shrinks = {}, False
    for k, a in alive.items():
        live = np.flatnonzero(a)
        width = min(a.size, buckets.width(live.size, initial[k]))
        if not live.size <= width <= initial[k]:
            raise ValueError(f"{buckets!r} gave a width {width} for {live.size} live units.")
        keep[k] = np.sort(np.concatenate([live, np.flatnonzero(~a)[: width - live.size]]))
        shrinks |= width < a.size
    return keep if shrinks else None
