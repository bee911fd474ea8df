"""Block-Thomas elimination split into independent chains (partitioned, as in the
SPIKE / Wang family of parallel tridiagonal solvers).

Blocks `0 .. M-2` are laid out as `P` groups, each of `L` interior blocks followed
by one separator block; block `M-1` follows the last separator. The interiors of all
groups are eliminated at once (one `lax.scan` of `L` steps over a batch of `P`
chains), which leaves a block-tridiagonal system on the `P` separators and the last
block, solved by the sequential elimination; the interiors are then recovered in one
batched product. A sequential elimination of `M` blocks runs `M` dependent steps of
a few tiny kernels each, and on a CPU the per-kernel cost, not the arithmetic,
dominates for blocks this small: the partitioned one runs about `2 sqrt(2 M)` steps
for about 2.5 times the arithmetic.

The last block is kept out of the groups because a group's elimination starts from
a bare diagonal block, and the leading blocks of the group that would hold the
final node and its terminal constraints can be singular where the same blocks,
eliminated after everything before them, are not (tumour's KKT system at its
optimum). Every other group starts at an interior node: a saddle-point block
[[0, ∂c/∂z], [.ᵀ, ∇²L]] as the sequential elimination meets them.
"""

import math

import jax
import jax.lax as lax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._block_thomas import _pivoted_inverse, _small_matmul, factorise, substitute


def _matvec(A, x, outer: bool = False):
    """A @ x over the last axes; `outer` as for `_small_matmul`."""
    if not outer:
        return jnp.sum(A * x[..., None, :], axis=-1)
    out = A[..., 0] * x[..., 0, None]
    for i in range(1, A.shape[-1]):
        out = out + A[..., i] * x[..., i, None]
    return out


def group_length(M: int, P: int) -> int:
    """Interior blocks per group so that `P` groups and their separators hold blocks
    `0 .. M-2` (padded at the front)."""
    return -(-(M - 1) // P) - 1


def default_partitions(M: int) -> int:
    """About sqrt(M / 2) groups, which balances the `L` steps of the groups against
    the `P` steps of the reduced system (their per-step costs differ by about 2x)."""
    return max(2, round(math.sqrt(M / 2)))


def _layout(a, P: int, L: int, fill):
    """`a` of shape `(M, ...)` as `(P, L + 1, ...)` (blocks 0 .. M-2, padded at the
    front with `fill`), and its last block."""
    pad = P * (L + 1) - (a.shape[0] - 1)
    padding = jnp.broadcast_to(jnp.asarray(fill, a.dtype), (pad,) + a.shape[1:])
    grouped = jnp.concatenate([padding, a[:-1]]).reshape((P, L + 1) + a.shape[1:])
    return grouped, a[-1]


def factorise_partitioned(blocks, P: int, outer: bool = False):
    """Factorise the block-tridiagonal `(lower, diag, upper)` in `P` groups; `outer`:
    how block products are written (see `_block_thomas._small_matmul`).

    **Returns:**

    A pytree for `substitute_partitioned`: the interiors' lower blocks and the
    separators' off-diagonal blocks, the groups' factors (pivot-block inverses S⁻¹,
    X = S⁻¹U, and the couplings P, Q of each interior unknown to its group's left
    and right separators), and the reduced system with its sequential factors.
    """
    lower, diag, upper = blocks
    M, b = diag.shape[:2]
    L = group_length(M, P)

    _matmul = jax.vmap(lambda A, B: _small_matmul(A, B, outer))

    eye = jnp.eye(b, dtype=diag.dtype)
    lo, lo_last = _layout(lower, P, L, 0.0)
    di, di_last = _layout(diag, P, L, eye)
    up, _ = _layout(upper, P, L, 0.0)

    def interior(a):
        return jnp.swapaxes(a[:, :L], 0, 1)  # (L, P, b, b): scan over L, batch over P

    # Forward: S_i = D_i - L_i X_{i-1}, X_i = S_i⁻¹ U_i, and W_i = -S_i⁻¹ L_i W_{i-1}
    # (W_{-1} = -I), the coupling of the eliminated row to the left separator.
    def forward(carry, inputs):
        X_prev, W_prev = carry
        L_i, D_i, U_i = inputs
        S_inv = jax.vmap(_pivoted_inverse)(D_i - _matmul(L_i, X_prev))
        X = _matmul(S_inv, U_i)
        W = -_matmul(S_inv, _matmul(L_i, W_prev))
        return (X, W), (S_inv, X, W)

    zero = jnp.zeros((P, b, b), diag.dtype)
    minus_eye = jnp.broadcast_to(-eye, (P, b, b))
    L_in = interior(lo)
    _, (S_inv, X, W) = lax.scan(forward, (zero, minus_eye), (L_in, interior(di), interior(up)))

    # Backward: x_i = y_i + P_i x_left + Q_i x_right for every interior block.
    def backward(carry, inputs):
        P_next, Q_next = carry
        X_i, W_i = inputs
        P_i = -W_i - _matmul(X_i, P_next)
        Q_i = -_matmul(X_i, Q_next)
        return (P_i, Q_i), (P_i, Q_i)

    eyes = jnp.broadcast_to(eye, (P, b, b))
    _, (Pm, Qm) = lax.scan(backward, (zero, eyes), (X, W), reverse=True)

    # The separators' rows with the neighbouring interiors substituted; the last
    # separator's right neighbour is block M-1 itself (P = 0, Q = I there).
    L_s, D_s, U_s = lo[:, L], di[:, L], up[:, L]
    P_right = jnp.concatenate([Pm[0, 1:], zero[:1]])
    Q_right = jnp.concatenate([Qm[0, 1:], eye[None]])
    reduced = (
        jnp.concatenate([_matmul(L_s, Pm[L - 1]), lo_last[None]]),
        jnp.concatenate([D_s + _matmul(L_s, Qm[L - 1]) + _matmul(U_s, P_right), di_last[None]]),
        jnp.concatenate([_matmul(U_s, Q_right), zero[:1]]),
    )
    # The solves need the interiors' lower blocks in scan order and the separators'
    # rows: kept in that form, not re-sliced at every solve.
    return (L_in, L_s, U_s), (S_inv, X, Pm, Qm), reduced, factorise(reduced, outer)


def substitute_partitioned(
    factors, rhs: Float[Array, "M b"], outer: bool = False
) -> Float[Array, "M b"]:
    """Solve with the factors of `factorise_partitioned`; `outer` as there."""
    (L_in, L_s, U_s), (S_inv, X, Pm, Qm), reduced, reduced_factors = factors
    M, b = rhs.shape
    L, P = S_inv.shape[:2]
    r, r_last = _layout(rhs, P, L, 0.0)
    zeros = jnp.zeros((P, b), rhs.dtype)

    def forward(y_prev, inputs):
        L_i, S_inv_i, r_i = inputs
        y = _matvec(S_inv_i, r_i - _matvec(L_i, y_prev, outer), outer)
        return y, y

    interior = (L_in, S_inv, jnp.swapaxes(r[:, :L], 0, 1))
    _, y = lax.scan(forward, zeros, interior)

    def backward(y_next, inputs):
        y_i, X_i = inputs
        y_i = y_i - _matvec(X_i, y_next, outer)
        return y_i, y_i

    _, y = lax.scan(backward, zeros, (y, X), reverse=True)
    y_right = jnp.concatenate([y[0, 1:], zeros[:1]])
    r_reduced = r[:, L] - _matvec(L_s, y[L - 1], outer) - _matvec(U_s, y_right, outer)
    x_reduced = substitute(reduced, reduced_factors, jnp.concatenate([r_reduced, r_last[None]]))
    x_sep = x_reduced[:P]
    x_left = jnp.concatenate([zeros[:1], x_sep[:-1]])
    x_in = y + _matvec(Pm, x_left[None], outer) + _matvec(Qm, x_sep[None], outer)
    grouped = jnp.concatenate([jnp.swapaxes(x_in, 0, 1), x_sep[:, None]], axis=1)
    pad = P * (L + 1) - (M - 1)
    return jnp.concatenate([grouped.reshape(-1, b)[pad:], x_reduced[P:]])
