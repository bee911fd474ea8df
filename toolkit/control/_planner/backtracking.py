"""The backtracking loop shared by the semismooth Newton and interior-point root
finders; each brings its own trial point and acceptance test."""

from collections.abc import Callable
from typing import Any

import jax.lax as lax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PyTree, Scalar


def halving_search(
    trial: Callable[[Scalar, PyTree[Any]], tuple[Bool[Array, ""], PyTree[Any]]],
    alpha: Scalar,
    max_backtracks: int | Int[Array, ""],
    out: PyTree[Any],
    first: tuple[Bool[Array, ""], PyTree[Any]] | None = None,
    second: Scalar | None = None,
) -> tuple[Scalar, Int[Array, ""], Bool[Array, ""], PyTree[Any]]:
    """Try the step lengths `alpha`, `alpha / 2`, `alpha / 4`, ... until `trial`
    accepts one, with at most `max_backtracks` halvings.

    **Arguments:**

    - `trial`: `trial(alpha, out) -> (accepted, out)`, given the previous trial's
        `out` (to accumulate over the trials).
    - `alpha`: the first step length.
    - `max_backtracks`: the most halvings.
    - `out`: the `out` before the first trial (its structure is every trial's).
    - `first`: `(accepted, out)` of a trial of `alpha` the caller made itself (to
        try something else before halving, as a second-order correction); the search
        then goes on from `alpha / 2` without repeating it.
    - `second`: the step length to try after `alpha`, where it lies in
        (`alpha / 2`, `alpha`); the halvings then go on from it.

    **Returns:**

    `(alpha, k, accepted, out)`: the last step length tried, the halvings it took
    (0 when the first was accepted), whether it was accepted, and its `out`.
    """

    def cond(carry):
        _, k, accepted, _ = carry
        return jnp.invert(accepted) & (k < max_backtracks)

    def body(carry):
        alpha, k, _, out = carry
        if second is None:
            alpha = alpha / 2
        else:
            longer = (k == 0) & (second > alpha / 2) & (second < alpha)
            alpha = jnp.where(longer, second, alpha / 2)
        accepted, out = trial(alpha, out)
        return alpha, k + 1, accepted, out

    # The first step length is the loop's first pass (2 alpha / 2, k = -1 -> 0), so the
    # trial and its acceptance test are traced once.
    if first is not None:
        # The caller tried `alpha` itself already: go on from its verdict.
        init = (alpha, jnp.array(0), first[0], first[1])
    else:
        init = (2 * alpha, jnp.array(-1), jnp.array(False), out)
    return lax.while_loop(cond, body, init)
