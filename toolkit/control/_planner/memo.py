"""A planner's derived strategy objects, built once per planner object.

`with_tolerance` and `composition` are pure functions of an immutable planner, but
each builds new modules (tens of microseconds apiece), and an eager plan asks for them
several times per call: a tenth of the whole call at N = 100. They are kept here per
planner object, which the memo holds on to so that its `id` stays its own."""

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np


T = TypeVar("T")

_MAX_ENTRIES = 64
_MEMO: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def memo(fn: Callable[..., T], obj: Any, *key: Any) -> T:
    """`fn(obj, *key)`, computed once per `(fn, obj, key)` while the memo keeps it (the
    last 64 entries); `key` must be hashable."""
    entry = (fn, id(obj), *key)
    hit = _MEMO.get(entry)
    if hit is not None and hit[0] is obj:
        return hit[1]
    value = fn(obj, *key)
    if len(_MEMO) >= _MAX_ENTRIES:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[entry] = (obj, value)
    return value


def _with_tolerance(planner, dtype):
    return planner.with_tolerance(dtype)


def _composition(planner):
    return planner.composition()


def tuned(planner, dtype):
    """`planner.with_tolerance(dtype)`, memoised."""
    return memo(_with_tolerance, planner, np.dtype(dtype))


def composition(planner):
    """`planner.composition()`, memoised."""
    return memo(_composition, planner)
