import json
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from .._problem import OptimalControlProblem


_REFERENCE_FILE = pathlib.Path(__file__).with_name("reference_optima.json")


class Example(eqx.Module):
    """One problem of the library: the problem, its default parameters and grid.

    **Fields:**

    - `name`: the registry name, e.g. `"van_der_pol"`.
    - `description`: one line, shown by `python -m toolkit plan --list`.
    - `problem`: the [`toolkit.control.OptimalControlProblem`][].
    - `args`: default parameters (a dict of scalars), passed to `control.plan`.
    - `N`: the default number of intervals of the discretisation.
    - `ranges`: `{parameter: (lo, hi)}`, the physically meaningful range of each
        parameter that has one; `get` builds the problem's `args_check` from it.
    """

    name: str = eqx.field(static=True)
    description: str = eqx.field(static=True)
    problem: OptimalControlProblem
    args: PyTree[Any]
    N: int = eqx.field(static=True)
    ranges: dict[str, tuple[float, float]] = eqx.field(static=True, default_factory=dict)


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
    ranges = tuple((k, float(lo), float(hi)) for k, (lo, hi) in example.ranges.items())
    check = ParameterCheck(tuple(example.args), ranges)
    problem = eqx.tree_at(
        lambda p: p.args_check, example.problem, check, is_leaf=lambda x: x is None
    )
    return eqx.tree_at(lambda e: e.problem, example, problem)


def reference_optima() -> dict[str, dict[str, dict[str, float]]]:
    """Reference optima computed by CasADi + IPOPT on identical transcriptions.

    Written by `benchmarks/reference_optima.py`. Keyed by problem name, then by
    transcription key (`"trapezoidal"`, `"hermite_simpson"`, `"multiple_shooting_rk4"`,
    `"single_shooting_rk4"`; `"discrete"` alone for a discrete-time problem); each
    entry holds `N` and `cost`.
    """
    return json.loads(_REFERENCE_FILE.read_text())


class ParameterCheck(eqx.Module):
    """Validates the `args` of a library problem (its `args_check`): a dict with
    exactly the default's keys, each a finite scalar within its physical range.

    Wrong keys, types or shapes raise `ValueError` naming the parameter, and so does a
    concrete value out of its range or not finite (checked on the host: the compiled
    plan holds no host callback). A traced value (under a user's `jit`, `vmap` or
    `grad`) gets an `eqx.error_if` check naming the parameter and the range instead.

    **Fields:**

    - `names`: the parameter names.
    - `ranges`: `((name, lo, hi), ...)`, closed intervals (±inf for a one-sided
        range); parameters without an entry only need to be finite.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    ranges: tuple[tuple[str, float, float], ...] = eqx.field(static=True)

    def __call__(self, args):
        if not isinstance(args, dict):
            raise ValueError(
                f"`args` must be a dict with the parameters {list(self.names)}, "
                f"got {type(args).__name__}."
            )
        missing = [k for k in self.names if k not in args]
        unknown = [k for k in args if k not in self.names]
        if missing or unknown:
            raise ValueError(
                f"`args` has missing parameter(s) {missing} and unknown parameter(s) "
                f"{unknown}; expected exactly {list(self.names)}."
            )
        ranges = {k: (a, b) for k, a, b in self.ranges}
        out = {}
        for name in self.names:
            try:
                value = jnp.asarray(args[name])
            except TypeError:
                raise ValueError(
                    f"parameter {name!r} must be a number, got {args[name]!r}."
                ) from None
            if value.shape != ():
                raise ValueError(f"parameter {name!r} must be a scalar, got shape {value.shape}.")
            lo, hi = ranges.get(name, (-np.inf, np.inf))
            message = f"parameter {name!r} must be finite and in [{lo}, {hi}]."
            if isinstance(value, jax.core.Tracer):
                bad = jnp.invert(jnp.isfinite(value) & (value >= lo) & (value <= hi))
                out[name] = eqx.error_if(value, bad, message)
            else:
                v = np.asarray(value)
                if not (np.isfinite(v) and lo <= v <= hi):
                    raise ValueError(f"{message[:-1]}, got {v}.")
                out[name] = value
        return out
