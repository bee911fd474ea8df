import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

from toolkit import control

from ..helpers import tree_allclose


def _random_blocks(key, M, b):
    k1, k2, k3 = jr.split(key, 3)
    lower = jr.normal(k1, (M, b, b)).at[0].set(0)
    upper = jr.normal(k2, (M, b, b)).at[-1].set(0)
    # Saddle-point-like diagonal blocks with a structurally zero corner, which needs
    # pivoting inside the block.
    diag = jr.normal(k3, (M, b, b)) + 4 * jnp.eye(b)[None]
    diag = diag.at[:, 0, 0].set(0)
    return lower, diag, upper


def _dense(lower, diag, upper):
    M, b, _ = diag.shape
    A = np.zeros((M * b, M * b))
    for r in range(M):
        A[r * b : (r + 1) * b, r * b : (r + 1) * b] = diag[r]
        if r > 0:
            A[r * b : (r + 1) * b, (r - 1) * b : r * b] = lower[r]
        if r < M - 1:
            A[r * b : (r + 1) * b, (r + 1) * b : (r + 2) * b] = upper[r]
    return A


def _operator(blocks, M, b):
    lower, diag, upper = blocks

    def mv(x):
        y = jnp.einsum("rij,rj->ri", diag, x)
        y = y.at[1:].add(jnp.einsum("rij,rj->ri", lower[1:], x[:-1]))
        y = y.at[:-1].add(jnp.einsum("rij,rj->ri", upper[:-1], x[1:]))
        return y

    return lx.FunctionLinearOperator(mv, jax.ShapeDtypeStruct((M, b), diag.dtype))


@pytest.mark.parametrize("M,b", [(1, 3), (2, 4), (7, 5), (50, 6)])
def test_probe_recovers_blocks_and_solves(getkey, M, b):
    blocks = _random_blocks(getkey(), M, b)
    op = _operator(blocks, M, b)
    from toolkit.control._block_tridiagonal import probe_blocks

    assert tree_allclose(probe_blocks(op), blocks, rtol=0, atol=1e-12)
    rhs = jr.normal(getkey(), (M, b))
    sol = lx.linear_solve(op, rhs, control.BlockTridiagonal())
    expected = np.linalg.solve(_dense(*blocks), np.asarray(rhs).ravel())
    assert np.allclose(np.asarray(sol.value).ravel(), expected, rtol=1e-9, atol=1e-9)


def test_transpose_solve_and_gradient(getkey):
    M, b = 9, 4
    blocks = _random_blocks(getkey(), M, b)
    A = _dense(*blocks)
    rhs = jr.normal(getkey(), (M, b))
    op = _operator(blocks, M, b)
    # Reverse mode through linear_solve uses the solver's transpose.
    cot = jr.normal(getkey(), (M, b))
    grad = jax.grad(
        lambda r: jnp.sum(cot * lx.linear_solve(op, r, control.BlockTridiagonal()).value)
    )(rhs)
    expected = np.linalg.solve(A.T, np.asarray(cot).ravel())
    assert np.allclose(np.asarray(grad).ravel(), expected, rtol=1e-9, atol=1e-9)


def test_singular_is_reported(getkey):
    M, b = 4, 3
    lower, diag, upper = _random_blocks(getkey(), M, b)
    diag = diag.at[0].set(0)
    lower = lower.at[1].set(0)
    upper = upper.at[0].set(0)
    op = _operator((lower, diag, upper), M, b)
    sol = lx.linear_solve(op, jnp.ones((M, b)), control.BlockTridiagonal(), throw=False)
    assert sol.result == lx.RESULTS.singular


def test_rejects_non_block_shapes():
    op = lx.MatrixLinearOperator(jnp.eye(3))
    with pytest.raises(ValueError, match="BlockTridiagonal"):
        lx.linear_solve(op, jnp.ones(3), control.BlockTridiagonal())
