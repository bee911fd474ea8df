import json
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
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
    """

    name: str = eqx.field(static=True)
    description: str = eqx.field(static=True)
    problem: OptimalControlProblem
    args: PyTree[Any]
    N: int = eqx.field(static=True)


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
    return fn()


def reference_optima() -> dict[str, dict[str, dict[str, float]]]:
    """Reference optima computed by CasADi + IPOPT on identical transcriptions.

    Written by `benchmarks/reference_optima.py`. Keyed by problem name, then by
    transcription key (`"trapezoidal"`, `"hermite_simpson"`, `"multiple_shooting_rk4"`,
    `"single_shooting_rk4"`); each entry holds `N` and `cost`.
    """
    return json.loads(_REFERENCE_FILE.read_text())
