"""The elimination of a [`toolkit.control.BlockTridiagonal`][] inside a user's program
(`in_user_program`): split into chains ([`factorise_partitioned`][]) for one system,
one chain under `jax.vmap`.

Vmapped, the batch already fills the small kernels and the split's extra arithmetic
costs time (3.1x for 64 plans at N = 1000), while for one system the split's shorter
chain of dependent steps wins. A plan traced inside a user's `jax.jit` cannot tell
whether that program will later be vmapped, so the choice is made by
`jax.custom_batching.custom_vmap`, when JAX batches the factorisation. The split's
block products are sums of outer products, which XLA's default CPU options (a user's
program) keep fused.

Both kinds of factors travel in one pytree, `(partitioned, one_chain)`, the unused
one as zeros: a factorisation's output must have the same structure however it was
computed. The substitution tells which half holds the factors by whether the
system's blocks are batched where it runs, as they were where the factorisation ran
(the solver's state carries both together). Neither is differentiated: the factors
are a function of the blocks held constant (lineax and `jax.lax.custom_linear_solve`
differentiate a solve through its operator, never through its solver's state), and
`custom_vmap` has no transpose.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ._block_thomas import Blocks, factorise, substitute
from ._partitioned_elimination import factorise_partitioned, substitute_partitioned


def _zeros(shapes):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _axes(batched):
    """`in_axes` for `jax.vmap` from `custom_vmap`'s batched flags."""
    return jax.tree.map(lambda b: 0 if b else None, batched)


def _any(batched) -> bool:
    return any(jax.tree.leaves(batched))


def factorise_batch_aware(blocks: Blocks, partitions: int) -> PyTree[Array]:
    """The factors of the block-tridiagonal `blocks`: of `partitions` chains, or of
    one chain where the call is vmapped; for `substitute_batch_aware`."""
    blocks = jax.lax.stop_gradient(blocks)
    diag = jax.ShapeDtypeStruct(blocks[1].shape, blocks[1].dtype)
    chain_shapes = (diag, diag)  # S⁻¹ and X = S⁻¹ U (`factorise`)
    split_shapes = jax.eval_shape(lambda b: factorise_partitioned(b, partitions, True), blocks)

    @jax.custom_batching.custom_vmap
    def run(blocks):
        return factorise_partitioned(blocks, partitions, True), _zeros(chain_shapes)

    @run.def_vmap
    def run_batched(axis_size, in_batched, blocks):
        del axis_size
        chain = jax.vmap(factorise, in_axes=(_axes(in_batched[0]),))(blocks)
        out = (_zeros(split_shapes), chain)
        out_batched = (
            jax.tree.map(lambda _: False, split_shapes),
            jax.tree.map(lambda _: True, chain_shapes),
        )
        return out, out_batched

    return run(blocks)


def substitute_batch_aware(
    blocks: Blocks, factors: PyTree[Array], rhs: Float[Array, "M b"]
) -> Float[Array, "M b"]:
    """Solve with the factors of `factorise_batch_aware` of `blocks`."""

    def split(factors, rhs):
        return substitute_partitioned(factors, rhs, True)

    @jax.custom_batching.custom_vmap
    def run(blocks, factors, rhs):
        return split(factors[0], rhs)

    @run.def_vmap
    def run_batched(axis_size, in_batched, blocks, factors, rhs):
        del axis_size
        blocks_b, factors_b, rhs_b = in_batched
        if _any(blocks_b):
            # Batched blocks were factorised batched: one chain.
            axes = _axes((blocks_b, factors_b[1], rhs_b))
            return jax.vmap(substitute, in_axes=axes)(blocks, factors[1], rhs), True
        axes = _axes((factors_b[0], rhs_b))
        return jax.vmap(split, in_axes=axes)(factors[0], rhs), True

    return run(blocks, factors, rhs)
