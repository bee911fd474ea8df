"""The settings of a training run as JSON, for its log and for the check that a
resumed run is the run its checkpoint was written by."""

import dataclasses
import functools
import hashlib
import types
from typing import Any

import numpy as np

from ._method import AbstractMethod


def function_name(fn: types.FunctionType | functools.partial) -> str:
    # Stable across processes (no address), so that a resumed run's check compares
    # equal: `module.qualname`, with a partial's bound arguments.
    if isinstance(fn, functools.partial):
        bound = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"partial({', '.join([function_name(fn.func), *bound])})"
    # A partial may wrap any callable, such as an instance: name it by its class then.
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{named.__module__}.{named.__qualname__}"


def describe(method: AbstractMethod | Any) -> dict[str, Any]:
    """A method's class name and hyperparameters, for the log; a function-valued one
    (such as `DemP.noise_schedule`) by its module and qualified name."""
    out: dict[str, Any] = {"name": type(method).__name__}
    for f in dataclasses.fields(method):
        value = getattr(method, f.name)
        if value is None or isinstance(value, (bool, int, float, str)):
            out[f.name] = value
        elif isinstance(value, (types.FunctionType, functools.partial)):
            out[f.name] = function_name(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = describe(value)  # a strategy object, such as `DemP.dead_test`
    return out


def describe_function(fn: Any, depth: int = 0) -> Any:
    """A JSON description of a value a function closes over, recursively: an optax
    optimiser is a pair of closures whose cells hold its hyperparameters (learning
    rate, schedule, decay, momentum, ...), so two optimisers built alike describe
    alike, in any process, and any other setting shows in the description."""
    if depth > 12:
        return "..."
    if fn is None or isinstance(fn, (bool, int, float, str)):
        return fn
    if isinstance(fn, (np.ndarray, np.generic)) or type(fn).__module__.startswith("jax"):
        try:
            return np.asarray(fn).tolist()
        except Exception:  # a tracer, a key: name its type
            return type(fn).__name__
    if isinstance(fn, (tuple, list)):
        if hasattr(fn, "_fields"):  # a NamedTuple, such as optax's transformations
            return {f: describe_function(getattr(fn, f), depth + 1) for f in fn._fields}
        return [describe_function(x, depth + 1) for x in fn]
    if isinstance(fn, dict):
        return {str(k): describe_function(v, depth + 1) for k, v in fn.items()}
    if isinstance(fn, functools.partial):
        return {
            "partial": describe_function(fn.func, depth + 1),
            "args": describe_function(list(fn.args), depth + 1),
            "keywords": describe_function(dict(fn.keywords), depth + 1),
        }
    if isinstance(fn, types.FunctionType):
        out: dict[str, Any] = {"fn": f"{fn.__module__}.{fn.__qualname__}"}
        cells = zip(fn.__code__.co_freevars, fn.__closure__ or ())
        for name, cell in cells:
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            out[name] = describe_function(value, depth + 1)
        return out
    if dataclasses.is_dataclass(fn) and not isinstance(fn, type):
        fields = {f.name: getattr(fn, f.name, None) for f in dataclasses.fields(fn)}
        return {"type": function_name(type(fn)), **describe_function(fields, depth + 1)}
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(named, '__module__', '')}.{named.__qualname__}"


def fingerprint(arrays) -> str:
    """A short SHA-256 of arrays' shapes, dtypes and values."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


def first_difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first entry (in `new`'s order) where two JSON values differ: its path, such
    as `method.reg`, and both values; `None` if they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*new, *(k for k in old if k not in new)]:
            if k not in old or k not in new:
                return f"{path}{k}", old.get(k, "(absent)"), new.get(k, "(absent)")
            found = first_difference(old[k], new[k], f"{path}{k}.")
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{path.rstrip('.')}[{i}].")
            if found is not None:
                return found
        return None
    return None if old == new else (path.rstrip("."), old, new)
