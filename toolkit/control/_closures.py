"""A problem's functions that close over traced values, made into pytrees whose
leaves are those values."""

import functools
import types
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ._discrete_dynamics import DiscreteDynamics
from ._problem import OptimalControlProblem


class _Hoisted(eqx.Module):
    """A closure-converted function: `fn(*inputs, *consts)`, with the closed-over
    traced values `consts` as array leaves."""

    fn: Callable
    consts: list[Array]

    def __call__(self, *inputs):
        return self.fn(*inputs, *self.consts)


def hoist_traced_closures(
    problem: OptimalControlProblem, args: PyTree[Any]
) -> OptimalControlProblem:
    """`problem`, each of whose functions that closes over a traced value (a problem
    built inside the user's `jax.grad` or `jax.jit`, its dynamics scaled by a traced
    parameter, say) replaced by its closure conversion, the value an array leaf.

    A plan differentiates the arrays of `(problem, args)`: the optimal cost by the
    envelope theorem, the solution through the implicit function theorem. A value
    hidden in a closure is neither, so its derivative would be lost; as a leaf it is
    differentiated like any other.

    **Arguments:**

    - `problem`: the problem.
    - `args`: its parameters, as the plan passes them (used to trace the functions).

    **Returns:**

    The problem, unchanged where no function closes over a traced value.
    """
    t = jnp.asarray(problem.t0)
    x = problem.x0
    u = jnp.zeros_like(problem.u_bounds[0])

    def convert(fn, *example):
        if fn is None or not _closes_over_tracer(fn):
            return fn
        converted, consts = jax.closure_convert(fn, *example)
        return _Hoisted(converted, list(consts))

    dynamics = problem.dynamics
    if isinstance(dynamics, DiscreteDynamics):
        dynamics = eqx.tree_at(lambda d: d.fn, dynamics, convert(dynamics.fn, t, x, u, args))
    else:
        dynamics = convert(dynamics, t, x, u, args)
    running_cost = convert(problem.running_cost, t, x, u, args)
    terminal_cost = convert(problem.terminal_cost, x, args)
    return eqx.tree_at(
        lambda p: (p.dynamics, p.running_cost, p.terminal_cost),
        problem,
        (dynamics, running_cost, terminal_cost),
        is_leaf=lambda v: v is None,
    )


def _closes_over_tracer(fn: Callable, depth: int = 8) -> bool:
    """Whether `fn` reaches a traced value that is not one of its pytree leaves:
    through a closure, defaults, `functools.partial` arguments or a bound instance
    (nested up to `depth` deep; deeper counts as traced)."""
    seen: set[int] = set()

    def walk(x, depth: int, hidden: bool) -> bool:
        if isinstance(x, jax.core.Tracer):
            return hidden
        if id(x) in seen or isinstance(x, str | bytes | int | float | complex | type(None)):
            return False
        seen.add(id(x))
        if depth == 0:
            return True
        if isinstance(x, types.FunctionType):
            inner = [c.cell_contents for c in x.__closure__ or () if _filled(c)]
            inner += [*(x.__defaults__ or ()), *(x.__kwdefaults__ or {}).values()]
            hidden = True
        elif isinstance(x, functools.partial):
            inner, hidden = [x.func, *x.args, *x.keywords.values()], True
        elif isinstance(x, types.MethodType):
            inner, hidden = [x.__func__, x.__self__], True
        elif isinstance(x, eqx.Module | list | tuple | dict):
            inner = [y for y in jax.tree.leaves(x) if y is not x]
        else:
            return False
        return any(walk(y, depth - 1, hidden) for y in inner)

    return walk(fn, depth, False)


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell: a name not yet assigned
        return False
    return True
