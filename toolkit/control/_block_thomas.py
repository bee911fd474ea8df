"""Sequential block-Thomas elimination of a block-tridiagonal system, pivoting inside
blocks: the kernels of [`toolkit.control.BlockTridiagonal`][]."""

from typing import TypeAlias

import jax.lax as lax
import jax.numpy as jnp
from jaxtyping import Array, Float


# Blocks of A: lower[r] = A[r, r-1], diag[r] = A[r, r], upper[r] = A[r, r+1]
# (lower[0] and upper[M-1] are zero), and the block-Thomas factors.
Blocks: TypeAlias = tuple[Float[Array, "M b b"], Float[Array, "M b b"], Float[Array, "M b b"]]
Factors: TypeAlias = tuple[Float[Array, "M b b"], Float[Array, "M b b"]]


def _pivoted_inverse(A: Float[Array, "b b"]) -> Float[Array, "b b"]:
    """Gauss–Jordan inversion with partial pivoting, unrolled over the (small) block
    size: inside a `lax.scan` this is a few fused vector operations per column,
    several times faster on CPU than a LAPACK call per block."""
    b = A.shape[0]
    M = jnp.concatenate([A, jnp.eye(b, dtype=A.dtype)], axis=1)
    rows = jnp.arange(b)
    for j in range(b):
        p = j + jnp.argmax(jnp.abs(M[j:, j]))
        swap = jnp.where(rows == j, p, jnp.where(rows == p, j, rows))
        M = M[swap]
        pivot_row = M[j] / M[j, j]
        # A select rather than `.at[j].set`: one fused kernel per column instead of
        # an update and a scatter.
        eliminated = M - M[:, j][:, None] * pivot_row[None, :]
        M = jnp.where((rows == j)[:, None], pivot_row[None, :], eliminated)
    return M[:, b:]


def _small_matmul(A, B, outer: bool = False):
    """A @ B over the last two axes of small blocks.

    A broadcast-and-sum rather than a dot: for blocks this small, XLA fuses it into
    the scan body instead of calling a matrix-multiply kernel per step, under the
    options toolkit compiles its own programs with. With `outer`, a sum of outer
    products, which XLA's default CPU options also keep an elementwise fusion
    instead of making it a library (YNNPACK) call per product (the partitioned
    elimination inside a user's `jit`); toolkit's own programs keep the first form,
    which they run faster (cart_pole's 9-unknown blocks: about 20 %)."""
    if not outer:
        return jnp.sum(A[:, :, None] * B[None, :, :], axis=1)
    out = A[..., :, 0, None] * B[..., 0, None, :]
    for i in range(1, A.shape[-1]):
        out = out + A[..., :, i, None] * B[..., i, None, :]
    return out


def factorise(blocks: Blocks, outer: bool = False) -> Factors:
    """Block-Thomas LU: S_r = D_r - L_r S_{r-1}^{-1} U_{r-1}, pivoting inside blocks.

    Returns the inverses S_r^{-1} and X_r = S_r^{-1} U_r. `outer`: how block
    products are written (`_small_matmul`).
    """
    lower, diag, upper = blocks

    def body(X_prev, inputs):
        L, D, U = inputs
        S_inv = _pivoted_inverse(D - _small_matmul(L, X_prev, outer))
        X = _small_matmul(S_inv, U, outer)
        return X, (S_inv, X)

    X0 = jnp.zeros_like(diag[0])
    _, factors = lax.scan(body, X0, (lower, diag, upper))
    return factors


def substitute(blocks: Blocks, factors: Factors, rhs: Float[Array, "M b"]):
    lower = blocks[0]
    S_inv, X = factors

    def forward(y_prev, inputs):
        L, S_inv_r, b_r = inputs
        y = S_inv_r @ (b_r - L @ y_prev)
        return y, y

    _, y = lax.scan(forward, jnp.zeros_like(rhs[0]), (lower, S_inv, rhs))

    def backward(x_next, inputs):
        y_r, X_r = inputs
        x = y_r - X_r @ x_next
        return x, x

    _, x = lax.scan(backward, jnp.zeros_like(rhs[0]), (y, X), reverse=True)
    return x
