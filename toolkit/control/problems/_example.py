import collections
import functools
import json
import pathlib
import re
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, PyTree

from .._problem import OptimalControlProblem


try:
    from jax._src.core import to_concrete_value
except ImportError:  # pragma: no cover - JAX moved it: check traced values as traced

    def to_concrete_value(value: Any) -> None:
        return None


_REFERENCE_FILE = pathlib.Path(__file__).with_name("reference_optima.json")


class Example(eqx.Module):
    """One problem of the library: the problem, its default parameters and grid.

    **Fields:**

    - `name`: the registry name, e.g. `"van_der_pol"`.
    - `description`: one line, shown by `python -m toolkit plan --list`.
    - `problem`: the [`toolkit.control.OptimalControlProblem`][].
    - `args`: default parameters (a dict of scalars), passed to `control.plan`.
    - `N`: the default number of intervals of the discretisation.
    - `ranges`: `{parameter: interval}`, the physically meaningful range of each
        parameter, written as in mathematics (`"(0, inf)"`, `"[0, 1]"`; see
        [`toolkit.control.problems.ParameterCheck`][]); `"(-inf, inf)"` for one that
        may be any real, which the problem's docstring explains. `get` builds the
        problem's `args_check` from it.
    """

    name: str = eqx.field(static=True)
    description: str = eqx.field(static=True)
    problem: OptimalControlProblem
    args: PyTree[Any]
    N: int = eqx.field(static=True)
    ranges: dict[str, str] = eqx.field(static=True, default_factory=dict)


_REGISTRY: dict[str, Callable[[], Example]] = {}


def register(fn: Callable[[], Example]) -> Callable[[], Example]:
    _REGISTRY[fn.__name__] = fn
    return fn


def names() -> list[str]:
    """The names of every problem in the library, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Example:
    """Build the library problem called `name` (see [`toolkit.control.problems.names`][]).

    **Arguments:**

    - `name`: the registry name.

    **Returns:**

    An [`toolkit.control.problems.Example`][].
    """
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown problem {name!r}; the library has: {', '.join(names())}."
        ) from None
    example = fn()
    check = ParameterCheck(tuple(example.args), tuple(example.ranges.items()), example.name)
    problem = eqx.tree_at(
        lambda p: p.args_check, example.problem, check, is_leaf=lambda x: x is None
    )
    return eqx.tree_at(lambda e: e.problem, example, problem)


def reference_optima() -> dict[str, dict[str, dict[str, float]]]:
    """Reference optima computed by CasADi + IPOPT on identical transcriptions.

    Written by `python -m toolkit.control.problems._ipopt_reference` from a source
    checkout (the problems rewritten in CasADi, solved by IPOPT at tol 1e-12). Keyed
    by problem name, then by transcription key (`"trapezoidal"`, `"hermite_simpson"`,
    `"multiple_shooting_rk4"`, `"single_shooting_rk4"`; `"discrete"` alone for a
    discrete-time problem); each entry holds `N` and `cost`.
    """
    return json.loads(_REFERENCE_FILE.read_text())


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


def _concrete_value(value: Any) -> Any:
    """`value` if it is concrete; the value under an autodiff tracer of a concrete
    value (an eager `jax.grad`); `None` if it is traced."""
    if not isinstance(value, jax.core.Tracer):
        return value
    try:
        return to_concrete_value(value)
    except Exception:  # pragma: no cover - a tracer of this JAX without the method
        return None


@functools.lru_cache(maxsize=256)
def _interval(text: str) -> tuple[float, float, bool, bool]:
    """`"(0, inf)"` -> `(lo, hi, lo_open, hi_open)`; `ValueError` if malformed."""
    match = _INTERVAL.match(text) if isinstance(text, str) else None
    try:
        if match is None:
            raise ValueError
        lo, hi = float(match[2]), float(match[3])
    except ValueError:
        raise ValueError(
            f"a range must be an interval such as '(0, inf)' or '[0, 1]', got {text!r}."
        ) from None
    if not lo <= hi:
        raise ValueError(f"the range {text!r} is empty.")
    return lo, hi, match[1] == "(", match[4] == ")"


class ParameterCheck(eqx.Module):
    """Validates the `args` of a library problem (its `args_check`): a dict with
    exactly the default's keys, each a finite scalar within its physical range.

    Wrong keys, types or shapes raise `ValueError` naming the parameter, and so does a
    concrete value out of its range or not finite (checked on the host: the compiled
    plan holds no host callback). So does a value an eager `jax.grad` (autodiff over
    concrete values, and nothing else) traces, whose value is known: checked on the
    host as well, without compiling a program for it. A traced value (under a user's
    `jit` or `vmap`) gets an `eqx.error_if` check naming the parameter and the range
    instead; `report` returns the verdict on traced values instead of raising, as
    `control.plan(..., throw=False)` uses it (an `eqx.error_if` is a host callback,
    and JAX's persistent compilation cache stores no program that holds one). Every
    message starts with the problem's name, if given.

    **Fields:**

    - `names`: the parameter names.
    - `ranges`: `((name, interval), ...)`, each interval written as in mathematics,
        `"(0, inf)"` for a positive parameter, `"[0, inf)"` for a non-negative one,
        `"[0, 1]"` for a fraction; parameters without an entry only need to be
        finite.
    - `problem`: the problem's name, which starts every message (if given).
    """

    names: tuple[str, ...] = eqx.field(static=True)
    ranges: tuple[tuple[str, str], ...] = eqx.field(static=True)
    problem: str = eqx.field(static=True, default="")

    def __check_init__(self):
        unknown = [k for k, _ in self.ranges if k not in self.names]
        if unknown:
            raise ValueError(f"{self._where}ranges given for unknown parameter(s) {unknown}.")
        for name, text in self.ranges:
            try:
                _interval(text)
            except ValueError as e:
                raise ValueError(f"{self._where}parameter {name!r}: {e}") from None

    @property
    def _where(self) -> str:
        return f"{self.problem}: " if self.problem else ""

    def __call__(self, args):
        """The checked `args`; raises as described above."""
        # A plain function, not a method: each method access on a Module builds a
        # bound-method object, and an eager plan checks its args at every call.
        return _check(self, args, report=False)[0]

    def report(self, args) -> tuple[dict, Bool[Array, ""]]:
        """As calling the check, except on traced values: no `eqx.error_if`, but the
        verdict.

        **Arguments:**

        - `args`: the parameters.

        **Returns:**

        `(args, out_of_range)`: the checked `args`, and whether a traced value is out
        of its range or not finite (a scalar boolean array; `False` if every value is
        concrete, as those raise `ValueError` here as well; an eager `jax.grad`'s
        tracers are reported, checked on the host).
        """
        args, out_of_range = _check(self, args, report=True)
        return args, jnp.asarray(out_of_range)


# Checks that passed, keyed by the identity of each value: an eager plan checks its
# `args` at every call, and reading each parameter back from the device is most of
# that check (about 15 us each). Only immutable values are remembered (JAX arrays that
# are not tracers, Python numbers), and each entry keeps its values alive, so an
# identity cannot be reused by another object while the entry exists.
_PASSED: collections.OrderedDict = collections.OrderedDict()  # in insertion order
_PASSED_SIZE = 64


def _identity(check: ParameterCheck, args) -> tuple | None:
    """The key of `args` in `_PASSED`, or `None` if one of its values may change."""
    if not isinstance(args, dict) or len(args) != len(check.names):
        return None
    key = []
    for name in check.names:
        if name not in args:
            return None
        value = args[name]
        immutable = type(value) in (float, int) or (
            isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer)
        )
        if not immutable:
            return None
        key.append(id(value))
    return (check.names, check.ranges, check.problem, tuple(key))


def _check(check: ParameterCheck, args, report: bool) -> tuple[dict, bool | Bool[Array, ""]]:
    key = _identity(check, args)
    if key is not None:
        entry = _PASSED.get(key)
        if entry is not None:
            return dict(entry[1]), False
    out, out_of_range = _check_values(check, args, report)
    if key is not None and out_of_range is False:
        _PASSED[key] = (tuple(args[k] for k in check.names), out)
        # Oldest first out; another thread may be trimming too.
        while len(_PASSED) > _PASSED_SIZE:
            try:
                _PASSED.popitem(last=False)
            except KeyError:
                break
        out = dict(out)
    return out, out_of_range


def _check_values(check: ParameterCheck, args, report: bool) -> tuple[dict, bool | Bool[Array, ""]]:
    where = check._where
    if not isinstance(args, dict):
        raise ValueError(
            f"{where}`args` must be a dict with the parameters {list(check.names)}, "
            f"got {type(args).__name__}."
        )
    missing = [k for k in check.names if k not in args]
    unknown = [k for k in args if k not in check.names]
    if missing or unknown:
        raise ValueError(
            f"{where}`args` has missing parameter(s) {missing} and unknown "
            f"parameter(s) {unknown}; expected exactly {list(check.names)}."
        )
    ranges = dict(check.ranges)
    out = {}
    out_of_range = False
    for name in check.names:
        try:
            value = args[name]
            if not isinstance(value, jax.Array):
                value = jnp.asarray(value)
        except TypeError:
            raise ValueError(
                f"{where}parameter {name!r} must be a number, got {args[name]!r}."
            ) from None
        if value.shape != ():
            raise ValueError(
                f"{where}parameter {name!r} must be a scalar, got shape {value.shape}."
            )
        text = ranges.get(name, "(-inf, inf)")
        lo, hi, lo_open, hi_open = _interval(text)
        message = f"{where}parameter {name!r} must be finite and in {text}."
        concrete = _concrete_value(value)
        if concrete is None:
            above = value > lo if lo_open else value >= lo
            below = value < hi if hi_open else value <= hi
            bad = jnp.invert(jnp.isfinite(value) & above & below)
            if report:
                out_of_range = out_of_range | bad
                out[name] = value
            else:
                out[name] = eqx.error_if(value, bad, message)
        else:
            # Checked here, also under an eager `jax.grad`: no program to compile.
            v = np.asarray(concrete)
            above = v > lo if lo_open else v >= lo
            below = v < hi if hi_open else v <= hi
            if not (np.isfinite(v) and above and below):
                if not (report and isinstance(value, jax.core.Tracer)):
                    raise ValueError(f"{message[:-1]}, got {v}.")
                out_of_range = True
            out[name] = value
    return out, out_of_range
