import dataclasses
from typing import Any, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PyTree

from ._batch_aware_elimination import factorise_batch_aware, substitute_batch_aware
from ._block_thomas import Blocks as _Blocks, factorise, substitute
from ._partitioned_elimination import (
    default_partitions,
    factorise_partitioned,
    substitute_partitioned,
)


# The blocks, their factors (sequential or partitioned), the input structure and
# ‖A‖∞ (for the backward error).
_State: TypeAlias = tuple[_Blocks, PyTree[Array], Any, Float[Array, ""]]


_REACH = ("both", "previous", "next")


def _check_reach(column_reach) -> None:
    if not set(column_reach) <= set(_REACH):
        raise ValueError(
            f"`column_reach` entries must each be one of {_REACH}, got {tuple(column_reach)}."
        )


def _as_reach(column_reach) -> tuple[str, ...] | None:
    return None if column_reach is None else tuple(column_reach)


def probe_vectors(M: int, column_reach: tuple[str, ...]):
    """The 0/1 probe vectors of `probe_blocks`, shape `(P, M, b)`: one per column `i`
    and colour `c`, holding column `(k, i)` of every block `k` with `k % n_i == c`,
    where a column reaching both neighbours has `n_i = 3` colours and one reaching
    one side `n_i = 2`. Also returns the index of each column's first probe and
    the `n_i`."""
    b = len(column_reach)
    colours = np.array([3 if r == "both" else 2 for r in column_reach], dtype=int)
    column = np.repeat(np.arange(b), colours)
    colour = np.concatenate([np.arange(n) for n in colours])
    first = np.concatenate([[0], np.cumsum(colours)[:-1]])
    k = np.arange(M)
    probes = (k[None, :, None] % colours[column][:, None, None] == colour[:, None, None]) & (
        np.arange(b)[None, None, :] == column[:, None, None]
    )
    return probes, first, colours


def probe_blocks(
    operator: lx.AbstractLinearOperator, column_reach: tuple[str, ...] | None = None
) -> _Blocks:
    """Materialise the three block diagonals of a block-tridiagonal operator.

    The operator acts on arrays of shape `(M, b)`: `M` blocks (time steps) of `b`
    unknowns each. Columns whose block indices are congruent modulo 3 never touch
    the same row block, so `3 b` products with 0/1 probe vectors (compressed
    Jacobian-vector products, Curtis–Powell–Reid colouring) recover every
    non-zero, whatever `M` is. A column known to reach only one neighbouring
    block (`column_reach`) needs 2 products instead of 3: its blocks congruent
    modulo 2 never touch the same row block.

    **Arguments:**

    - `operator`: a square lineax operator whose input structure is one array of
        shape `(M, b)`, and which is block-tridiagonal in that layout.
    - `column_reach`: for each of the `b` columns of a block, which neighbouring row
        blocks it may have non-zeros in besides its own: `"both"`, `"previous"` (the
        block above: A[k-1, k] has this column, A[k+1, k] does not) or `"next"`.
        Default: `"both"` for every column.

    **Returns:**

    `(lower, diag, upper)`, each of shape `(M, b, b)`.
    """
    struct = operator.in_structure()
    if not isinstance(struct, jax.ShapeDtypeStruct) or len(struct.shape) != 2:
        raise ValueError(
            "BlockTridiagonal needs an operator acting on one array of shape "
            f"(blocks, block_size), got input structure {struct}."
        )
    if operator.out_structure() != struct:
        raise ValueError("BlockTridiagonal needs a square operator (same in/out structure).")
    M, b = struct.shape
    reach = ("both",) * b if column_reach is None else tuple(column_reach)
    if len(reach) != b:
        raise ValueError(
            f"`column_reach` has {len(reach)} entries, but the operator's blocks have {b} columns."
        )
    _check_reach(reach)
    probes, first, colours = probe_vectors(M, reach)
    ys = jax.vmap(operator.mv)(jnp.asarray(probes, struct.dtype))
    k = np.arange(M)

    def column_block(offset, reaches):
        # Column i of block A[r, r + offset] is row r of the probe holding column
        # (r + offset, i), the only column of that probe reaching row block r.
        probe = first[None, :] + (k[:, None] + offset) % colours[None, :]
        block = jnp.swapaxes(ys[probe, k[:, None], :], 1, 2)
        if all(reaches):
            return block
        return jnp.where(np.asarray(reaches), block, 0)

    diag = column_block(0, [True] * b)
    lower = column_block(-1, [r != "previous" for r in reach]).at[0].set(0)
    upper = column_block(1, [r != "next" for r in reach]).at[M - 1].set(0)
    return lower, diag, upper


def block_matvec(blocks: _Blocks, x: Float[Array, "M b"]) -> Float[Array, "M b"]:
    """A x for the block-tridiagonal A given by its three block diagonals."""
    lower, diag, upper = blocks
    zero = jnp.zeros_like(x[:1])
    x_prev = jnp.concatenate([zero, x[:-1]])
    x_next = jnp.concatenate([x[1:], zero])
    # One fused broadcast-and-sum, not three batched dots of tiny blocks and two
    # scatters (which made the backward-error check cost twice a substitution).
    products = lower * x_prev[:, None, :] + diag * x[:, None, :] + upper * x_next[:, None, :]
    return jnp.sum(products, axis=-1)


def max_norm(blocks: _Blocks) -> Float[Array, ""]:
    """‖A‖∞, the largest absolute row sum of the block-tridiagonal A."""
    lower, diag, upper = blocks
    return jnp.max(jnp.sum(jnp.abs(lower) + jnp.abs(diag) + jnp.abs(upper), axis=-1))


def backward_error(
    blocks: _Blocks,
    x: Float[Array, "M b"],
    rhs: Float[Array, "M b"],
    norm: Float[Array, ""] | None = None,
):
    """Normwise backward error of x as a solution of A x = rhs (Rigal–Gaches):
    ‖A x - rhs‖∞ / (‖A‖∞ ‖x‖∞ + ‖rhs‖∞), the smallest relative perturbation of A and
    rhs that x solves exactly; `norm` is ‖A‖∞ if already known."""
    residual = jnp.max(jnp.abs(block_matvec(blocks, x) - rhs))
    if norm is None:
        norm = max_norm(blocks)
    scale = norm * jnp.max(jnp.abs(x)) + jnp.max(jnp.abs(rhs))
    return residual / jnp.maximum(scale, jnp.finfo(x.dtype).tiny)


def _transpose_blocks(blocks: _Blocks) -> _Blocks:
    lower, diag, upper = blocks

    def t(a):
        return jnp.swapaxes(a, -1, -2)

    # (A^T)[r, r-1] = A[r-1, r]^T and (A^T)[r, r+1] = A[r+1, r]^T.
    new_lower = jnp.concatenate([jnp.zeros_like(upper[:1]), t(upper[:-1])])
    new_upper = jnp.concatenate([t(lower[1:]), jnp.zeros_like(lower[:1])])
    return new_lower, t(diag), new_upper


class BlockTridiagonal(lx.AbstractLinearSolver[_State]):
    """Block-tridiagonal linear solver (block-Thomas LU with partial pivoting inside
    each block), for operators acting on arrays of shape `(M, b)`.

    The operator is materialised with `3 b` compressed matrix-vector products (for a
    Jacobian operator these are Jacobian-vector products), so the cost of `init` and
    of every solve grows linearly with `M`; a column whose non-zeros reach only the
    previous or only the next block (`column_reach`) takes 2 products instead of 3.
    In the KKT system of a plan, a multiplier's column reaches only the previous
    block, and an unknown's only the next one where no nonlinear term of the
    transcription shares it with the previous block (every unknown with
    trapezoidal collocation and discrete time, the states with multiple shooting,
    the midpoint controls with Hermite–Simpson; see
    [`toolkit.control.AbstractTranscription`][]'s `unknowns_reach`). This is the
    structure of the KKT system of a transcription whose unknowns are interleaved
    by time step. It plugs into
    any lineax / optimistix consumer, `optimistix.ImplicitAdjoint` included. A
    caller that has the blocks already passes them as
    `options={"blocks": (lower, diag, upper)}` (each of shape `(M, b, b)`, those of
    the operator), and nothing is probed: the planner does so where the
    transcription computes its KKT blocks itself (`lagrangian_derivatives`).

    There is no pivoting across blocks: the diagonal Schur complements must be
    non-singular, which holds for the KKT systems of the direct transcriptions
    away from degenerate points. A solve is reported as `lineax.RESULTS.singular`
    when its solution is not finite (a zero pivot) or when its normwise backward
    error ‖A x - b‖∞ / (‖A‖∞ ‖x‖∞ + ‖b‖∞) exceeds `max_backward_error` (a pivot so
    small that the elimination lost the answer to rounding).

    Scalar blocks (`b = 1`, a tridiagonal matrix) are solved by LAPACK's
    tridiagonal solver (`jax.lax.linalg.tridiagonal_solve`, Gaussian elimination
    with partial pivoting) in one call.

    The elimination runs as one chain of `M` dependent steps, or split into `P`
    chains eliminated side by side, which leave a small block-tridiagonal system
    on the blocks between them (a partitioned elimination, as in SPIKE-type
    parallel solvers): about `2 sqrt(2 M)` dependent steps for about 2.5 times
    the arithmetic. On a CPU, blocks this small make each step's cost mostly
    per-kernel overhead, so by default the split is used where it was measured
    to pay: blocks of at most 10 unknowns and at least 32 of them. Under `jax.vmap`
    the batch already fills the kernels and the split's extra arithmetic costs time
    (3.1x for 64 plans at N = 1000): a plan traced inside your own `jax.jit`,
    `jax.vmap` or `jax.grad` (and [`toolkit.control.plan_batch`][]) gets a solver
    marked `in_user_program`, which splits one system and eliminates a vmapped
    batch of systems in one chain, chosen where JAX batches the factorisation
    (`jax.custom_batching.custom_vmap`), so the split holds inside your `jit` and
    one chain if you later vmap that program. Pass `partitions` to choose for
    yourself. Each chain starts from a bare
    diagonal block, so the split asks the same of the system's blocks as the
    sequential elimination does of its Schur complements (non-singular); the last
    block, which in a KKT system holds the final-state constraints' multipliers, is
    never a chain's.
    """

    max_backward_error: float | None = None
    partitions: int | None = None
    column_reach: tuple[str, ...] | None = eqx.field(default=None, static=True, converter=_as_reach)
    in_user_program: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        if self.partitions is not None and (
            not isinstance(self.partitions, int) or self.partitions < 1
        ):
            raise ValueError(
                f"BlockTridiagonal(partitions={self.partitions!r}): the number of "
                "chains must be a positive integer (1: one sequential chain) or None "
                "(automatic)."
            )
        if self.column_reach is not None:
            _check_reach(self.column_reach)

    def chains(self, M: int, b: int) -> int:
        """The number of independent chains for `M` blocks of `b` unknowns: 1 (the
        sequential elimination) or at least 2, with at least 2 blocks per chain."""
        if self.partitions is None:
            P = default_partitions(M) if (M >= 32 and b <= 10) else 1
        else:
            P = self.partitions
        P = min(P, (M - 1) // 3)
        return P if P >= 2 else 1

    def _factorise(self, blocks: _Blocks) -> PyTree[Array]:
        M, b = blocks[1].shape[:2]
        if b == 1:
            # Scalar blocks: LAPACK's tridiagonal solve (gtsv) factorises at each
            # solve, in one call instead of a scan of small kernels.
            return ()
        P = self.chains(M, b)
        if P == 1:
            return factorise(blocks)
        if self._batch_aware():
            return factorise_batch_aware(blocks, P)
        return factorise_partitioned(blocks, P)

    def _batch_aware(self) -> bool:
        return self.in_user_program and self.partitions is None

    def tolerance(self, dtype) -> float:
        """The backward-error bound in `dtype`: `max_backward_error`, or eps^(1/3)."""
        if self.max_backward_error is not None:
            return self.max_backward_error
        return float(jnp.finfo(dtype).eps) ** (1 / 3)

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]) -> _State:
        blocks = options.get("blocks")
        if blocks is None:
            blocks = probe_blocks(operator, self.column_reach)
        else:
            shape = operator.in_structure().shape
            if tuple(blocks[1].shape) != (shape[0], shape[1], shape[1]):
                raise ValueError(
                    f"options['blocks'] has diagonal blocks of shape {blocks[1].shape}, "
                    f"but the operator acts on arrays of shape {shape}."
                )
            blocks = tuple(blocks)
        # ‖A‖∞ once per factorisation, not at each of the solves that share it.
        return blocks, self._factorise(blocks), operator.in_structure(), max_norm(blocks)

    def compute(self, state: _State, vector, options: dict[str, Any]):
        del options
        blocks, factors, _, norm = state
        M, b = vector.shape
        if b == 1:
            lower, diag, upper = (a[:, 0, 0] for a in blocks)
            x = jax.lax.linalg.tridiagonal_solve(lower, diag, upper, vector)
        elif self.chains(M, b) == 1:
            x = substitute(blocks, factors, vector)
        elif self._batch_aware():
            x = substitute_batch_aware(blocks, factors, vector)
        else:
            x = substitute_partitioned(factors, vector)
        # Without pivoting across blocks a tiny (not zero) Schur-complement pivot
        # gives a finite but wrong x; the backward error catches it.
        eta = backward_error(blocks, x, vector, norm)
        ok = jnp.all(jnp.isfinite(x)) & (eta <= self.tolerance(x.dtype))
        result = lx.RESULTS.where(ok, lx.RESULTS.successful, lx.RESULTS.singular)
        return x, result, {}

    def transpose(self, state: _State, options: dict[str, Any]):
        blocks, _, struct, _ = state
        blocks_t = _transpose_blocks(blocks)
        return (blocks_t, self._factorise(blocks_t), struct, max_norm(blocks_t)), options

    def conj(self, state: _State, options: dict[str, Any]):
        blocks, factors, struct, norm = state

        def conj(tree):
            return jax.tree_util.tree_map(jnp.conj, tree)

        return (conj(blocks), conj(factors), struct, norm), options

    def assume_full_rank(self):
        return True


BlockTridiagonal.__init__.__doc__ = """**Arguments:**

- `max_backward_error`: the largest normwise backward error of a solve reported as
    successful; by default eps^(1/3) of the system's dtype (6e-6 in float64, 5e-3 in
    float32), far above what a stable elimination leaves (a few eps) and far below a
    solve ruined by pivot growth.
- `partitions`: the number of independent chains the elimination is split into;
    `None` (default) chooses by the system's size, `1` is the sequential
    elimination. Capped so that each chain has at least 2 blocks.
- `column_reach`: for each column of a block, which neighbouring row blocks its
    non-zeros may reach besides its own: `"both"`, `"previous"` (A[k-1, k] has
    this column, A[k+1, k] does not) or `"next"`. A column that reaches one side
    costs 2 matrix-vector products instead of 3. Default: `"both"` everywhere, which
    holds for any block-tridiagonal operator; a wrong claim gives a wrong matrix. A
    plan tells the solver what its KKT system's columns reach (it knows its
    transcription).
- `in_user_program`: the solver runs in a program compiled with XLA's default
    options that JAX may vmap (a plan inside your `jax.jit`, `jax.vmap` or
    `jax.grad`; such a plan sets it): with `partitions=None`, one system is split
    and a vmapped batch of systems is one chain, and the split's block products
    are written so that those options keep them fused. `False` (default): the
    choice by size alone, products written for the options toolkit compiles its
    own programs with.
"""


def for_user_program(linear_solver: lx.AbstractLinearSolver) -> lx.AbstractLinearSolver:
    """`linear_solver` as a plan inside a user's transformation (or a batch) should
    use it: a [`BlockTridiagonal`][] marked `in_user_program` (see its docstring);
    any other solver is returned unchanged."""
    if isinstance(linear_solver, BlockTridiagonal):
        return dataclasses.replace(linear_solver, in_user_program=True)
    return linear_solver


def with_column_reach(
    linear_solver: lx.AbstractLinearSolver, column_reach: tuple[str, ...]
) -> lx.AbstractLinearSolver:
    """`linear_solver` for operators whose columns reach `column_reach` (see
    `probe_blocks`): a [`BlockTridiagonal`][] not told already is told; any other
    solver is returned unchanged."""
    if isinstance(linear_solver, BlockTridiagonal) and linear_solver.column_reach is None:
        return dataclasses.replace(linear_solver, column_reach=column_reach)
    return linear_solver
