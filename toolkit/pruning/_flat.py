"""A jitted step called on the array leaves of its carry, split once per structure."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.tree_util as jtu

from .._jit import jit


class FlatStep:
    """Call `step(*carry, *args) -> (*carry, out)` on the array leaves of `carry`.

    `eqx.filter_jit` splits every argument's pytree into arrays and the rest, and
    rebuilds the modules of its outputs, at every call. For a network pruned to a few
    hundred units that costs as much as the step itself. A training loop instead splits
    its carry once (`split`), steps on the leaves with the function it returns, and
    rebuilds the pytrees (`join`) only where it needs them. One jitted function per
    carry structure and leaf shapes; `install` puts in one compiled ahead of time.
    """

    def __init__(self, step: Callable[..., tuple]):
        self._step = step
        self._fns: dict[Any, Callable] = {}

    @staticmethod
    def _parts(carry: tuple) -> tuple[list, Any, Any, Any]:
        """`(leaves, treedef, static, key)`: the array leaves of `carry`, their
        structure, the rest of `carry`, and the key of its step function."""
        dynamic, static = eqx.partition(carry, eqx.is_array)
        leaves, treedef = jtu.tree_flatten(dynamic)
        static_leaves, static_def = jtu.tree_flatten(static)
        shapes = tuple((x.shape, x.dtype) for x in leaves)
        key = treedef, static_def, tuple(map(_hashable, static_leaves)), shapes
        return leaves, treedef, static, key

    def split(self, carry: tuple) -> tuple[list, Callable, Callable[[list], tuple]]:
        """`(leaves, fn, join)`: the carry's array leaves; `fn(leaves, *args) ->
        (leaves, out)`, the jitted step on them; `join(leaves)`, the carry back."""
        leaves, treedef, static, key = self._parts(carry)

        def join(leaves: list) -> tuple:
            return eqx.combine(jtu.tree_unflatten(treedef, leaves), static)

        if key not in self._fns:
            step = self._step

            def fn(leaves, *args):
                *new, out = step(*join(leaves), *args)
                new_leaves, new_treedef = jtu.tree_flatten(eqx.filter(tuple(new), eqx.is_array))
                if new_treedef != treedef:  # at trace time
                    raise ValueError(
                        "the step changed the structure of its carry: "
                        f"{treedef} became {new_treedef}."
                    )
                return new_leaves, out

            self._fns[key] = jit(fn)
        return leaves, self._fns[key], join

    def lower(self, carry: tuple, *args) -> Any:
        """The step lowered for `carry` and `args` (for `install`ing its compiled form)."""
        leaves, fn, _ = self.split(carry)
        return fn.lower(leaves, *args)

    def install(self, carry: tuple, compiled: Callable) -> None:
        """Use `compiled` (from `lower(carry, ...).compile()`) for carries like `carry`."""
        self._fns[self._parts(carry)[3]] = compiled


def _hashable(x: Any) -> Any:
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return x
