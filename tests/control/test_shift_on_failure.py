"""ShiftOnFailure: the least-squares planner's step solver."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from toolkit import control
from toolkit.control._planner.shift_on_failure import ShiftOnFailure

from .test_block_tridiagonal import _dense, _operator, _random_blocks, _tiny_first_pivot


def _pivotless_singular(scale=1.0):
    # [[0, I], [I, sI]] is invertible, but its first diagonal block, block-Thomas'
    # first pivot, is zero: no pivoting across blocks fails on it.
    b = 2
    lower = jnp.zeros((2, b, b)).at[1].set(jnp.eye(b))
    upper = jnp.zeros((2, b, b)).at[0].set(jnp.eye(b))
    diag = jnp.zeros((2, b, b)).at[1].set(scale * jnp.eye(b))
    return lower, diag, upper


def test_a_solvable_system_is_solved_by_the_inner_solver(getkey):
    M, b = 6, 3
    blocks = _random_blocks(getkey(), M, b)
    op, rhs = _operator(blocks, M, b), jnp.arange(M * b, dtype=float).reshape(M, b)
    plain = lx.linear_solve(op, rhs, control.BlockTridiagonal())
    shifted = lx.linear_solve(op, rhs, ShiftOnFailure(control.BlockTridiagonal()))
    assert shifted.result == lx.RESULTS.successful
    np.testing.assert_array_equal(shifted.value, plain.value)


def test_a_singular_pivot_gets_the_shifted_solve():
    blocks = _pivotless_singular()
    op, rhs = _operator(blocks, 2, 2), jnp.array([[1.0, 2.0], [3.0, 4.0]])
    plain = lx.linear_solve(op, rhs, control.BlockTridiagonal(), throw=False)
    assert plain.result == lx.RESULTS.singular
    delta = 1e-3
    sol = lx.linear_solve(op, rhs, ShiftOnFailure(control.BlockTridiagonal(), delta=delta))
    assert sol.result == lx.RESULTS.successful
    A = _dense(*blocks) + delta * np.eye(4)
    expected = np.linalg.solve(A, np.asarray(rhs).ravel())
    np.testing.assert_allclose(np.asarray(sol.value).ravel(), expected, rtol=1e-12)


def test_vmap_shifts_only_the_failing_elements(getkey):
    good = _random_blocks(getkey(), 2, 2)
    bad = _pivotless_singular()
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), good, bad)
    rhs = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    solver = ShiftOnFailure(control.BlockTridiagonal(), delta=1e-3)

    def solve(blocks):
        return lx.linear_solve(_operator(blocks, 2, 2), rhs, solver).value

    out = jax.vmap(solve)(stacked)
    r = np.asarray(rhs).ravel()
    np.testing.assert_allclose(
        np.asarray(out[0]).ravel(), np.linalg.solve(_dense(*good), r), rtol=1e-10
    )
    np.testing.assert_allclose(
        np.asarray(out[1]).ravel(),
        np.linalg.solve(_dense(*bad) + 1e-3 * np.eye(4), r),
        rtol=1e-10,
    )


def test_a_non_square_operator_is_left_to_the_inner_solver():
    A = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    rhs = jnp.array([1.0, 2.0, 3.0])
    op = lx.MatrixLinearOperator(A)
    sol = lx.linear_solve(op, rhs, ShiftOnFailure(lx.QR()))
    expected = np.linalg.lstsq(np.asarray(A), np.asarray(rhs), rcond=None)[0]
    np.testing.assert_allclose(sol.value, expected, rtol=1e-12)


def test_the_default_shift_follows_the_dtype():
    assert ShiftOnFailure(control.BlockTridiagonal()).shift(jnp.float64) == 1e-8
    delta = ShiftOnFailure(control.BlockTridiagonal()).shift(jnp.float32)
    assert delta == float(np.finfo(np.float32).eps) ** 0.5
    assert ShiftOnFailure(control.BlockTridiagonal(), delta=0.5).shift(jnp.float32) == 0.5
    # A float32 system with a zero first pivot is shifted by sqrt(eps), as a dense
    # float64 solve of A + sqrt(eps) I confirms (1e-8 would be below the resolution
    # of its O(1) entries).
    blocks = tuple(b.astype(jnp.float32) for b in _pivotless_singular())
    op = _operator(blocks, 2, 2)
    rhs = jnp.array([[1.0, 2.0], [3.0, 4.0]], dtype=jnp.float32)
    sol = lx.linear_solve(op, rhs, ShiftOnFailure(control.BlockTridiagonal()))
    assert sol.value.dtype == jnp.float32
    A = _dense(*blocks).astype(np.float64) + delta * np.eye(4)
    expected = np.linalg.solve(A, np.asarray(rhs, np.float64).ravel())
    np.testing.assert_allclose(np.asarray(sol.value).ravel(), expected, rtol=1e-4)


def test_a_tiny_float32_pivot_gets_the_shifted_solve():
    # The plain elimination is wrong here (see test_block_tridiagonal); the shifted
    # system's first pivot is about sqrt(eps), which the elimination survives.
    blocks = _tiny_first_pivot(1e-9, jnp.float32)
    rhs = jnp.array([[1.0, 2.0], [3.0, 4.0]], jnp.float32)
    solver = ShiftOnFailure(control.BlockTridiagonal())
    sol = lx.linear_solve(_operator(blocks, 2, 2), rhs, solver)
    assert sol.result == lx.RESULTS.successful
    delta = solver.shift(jnp.float32)
    A = _dense(*blocks).astype(np.float64) + delta * np.eye(4)
    expected = np.linalg.solve(A, np.asarray(rhs, np.float64).ravel())
    np.testing.assert_allclose(np.asarray(sol.value).ravel(), expected, rtol=2e-3)
