"""A root already found: whether it is one, and its implicit derivative."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array


def is_root(residual, sol: optx.Solution, problem_args, atol) -> Array:
    """Whether `sol` converged to a point whose residual is within `atol`."""
    found = jnp.max(jnp.abs(residual(sol.value, problem_args))) <= atol
    return (sol.result == optx.RESULTS.successful) & found


class _AtRoot(optx.AbstractRootFinder):
    """A root finder that takes no step: the root is already known, and the solve is
    only there to carry its implicit derivative."""

    rtol: float = 0.0
    atol: float = 0.0
    norm: Callable = optx.max_norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        return None

    def step(self, fn, y, args, options, state, tags):
        return y, state, None

    def terminate(self, fn, y, args, options, state, tags):
        return jnp.asarray(True), optx.RESULTS.successful

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return y, aux, {}


def attach_at_root(
    residual, root: Array, problem_args, adjoint: optx.AbstractAdjoint
) -> optx.Solution:
    """A root find that starts at the known `root` and takes no step: it only carries
    the implicit derivative of the root w.r.t. `problem_args`."""
    return optx.root_find(
        residual,
        _AtRoot(),
        jax.lax.stop_gradient(root),
        problem_args,
        max_steps=1,
        adjoint=adjoint,
        throw=False,
    )
