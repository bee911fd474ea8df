"""The slices of the live units, gathered on the host and put back on their devices."""

import math
from collections.abc import Callable

import jax
import numpy as np

from ._layout import Layout


_ALIGN = 64  # bytes: the alignment XLA's CPU client needs to alias a host buffer


class LiveIndices:
    """The indices that keep the live units, per group and block size, made on demand."""

    def __init__(self, layout: Layout, keep: dict[str, np.ndarray]):
        self.groups = layout.groups
        self.keep = [keep[g.name] for g in layout.groups]
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def get(self, group: int, block: int) -> np.ndarray:
        index = self.cache.get((group, block))
        if index is None:
            keep = self.keep[group]
            index = keep if block == 1 else (keep[:, None] * block + np.arange(block)).ravel()
            self.cache[group, block] = index
        return index


def take(leaf, axis: int, block: int, group: int, indices: LiveIndices, where: Callable[[], str]):
    """`leaf` without the dead units of the `group`-th group along `axis` (`block`
    entries each), as a host array; `leaf` itself when no unit is dead. `where()`
    names the leaf in errors."""
    g = indices.groups[group]
    full, live = g.size, len(indices.keep[group])
    shape = getattr(leaf, "shape", None)
    if shape is None or len(shape) <= axis:
        raise ValueError(
            f"{where()}: expected an array with an axis {axis} holding the units of group "
            f"{g.name!r}, got {type(leaf).__name__} of shape {shape}."
        )
    if shape[axis] == full * block:
        if live == full:
            return leaf
        if isinstance(leaf, jax.core.Tracer):
            raise ValueError("`prune` changes shapes, so it cannot be jitted or vmapped.")
        return _gather(np.asarray(leaf), indices.get(group, block), axis)
    if shape[axis] == live * block:
        # The count of the live units, but which units? A stale set, from the network
        # before an earlier prune, would be silently ignored here (issue 25, item 15).
        raise ValueError(
            f"{where()}: group {g.name!r} has {live} units here, not the {full} of the "
            "network that `dead` was computed on: this network is already pruned. Compute "
            "the dead units of the network you prune (`dead_units(model, state, xs)`) "
            "rather than reuse a set from before a prune."
        )
    raise ValueError(
        f"{where()}: axis {axis} has size {shape[axis]}, but group {g.name!r} has {full} "
        f"units ({live} live) of {block} entries each: is `tree` laid out like the network "
        "that `dead` was computed for?"
    )


def _gather(a: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    # On the host: a jitted gather would compile once per leaf shape, every prune. Into
    # a buffer aligned as XLA's CPU client wants it, so that `place` can alias it
    # rather than copy it again.
    shape = a.shape[:axis] + (len(index),) + a.shape[axis + 1 :]
    nbytes = math.prod(shape) * a.itemsize
    buffer = np.empty(nbytes + _ALIGN, np.uint8)
    start = -buffer.ctypes.data % _ALIGN
    out = buffer[start : start + nbytes].view(a.dtype).reshape(shape)
    return np.take(a, index, axis=axis, out=out, mode="clip")  # "raise" would buffer


def place(new: list, old: list) -> list:
    """Put the host arrays gathered from JAX arrays back on their devices, in a few
    batched transfers rather than one per leaf."""
    out = list(new)
    free = [i for i, (a, b) in enumerate(zip(new, old)) if a is not b and isinstance(b, jax.Array)]
    if not free:
        return out
    # Keep the placement and the committedness: a committed array among uncommitted
    # ones is another jit cache key, so a jitted step would compile twice per prune.
    loose = [i for i in free if not old[i].committed]
    fixed = [i for i in free if old[i].committed]
    if loose:
        for i, a in zip(loose, jax.device_put([new[i] for i in loose], may_alias=True)):
            out[i] = a
    if fixed:
        placed = jax.device_put(
            [new[i] for i in fixed], [old[i].sharding for i in fixed], may_alias=True
        )
        for i, a in zip(fixed, placed):
            out[i] = a
    return out
