import re

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


@pytest.mark.parametrize("M", [1, 2, 7, 50])
def test_column_reach_takes_two_probes_per_one_sided_column(getkey, M):
    from toolkit.control._block_tridiagonal import probe_blocks, probe_vectors

    reach = ("previous", "previous", "next", "both", "next")
    b = len(reach)
    lower, diag, upper = _random_blocks(getkey(), M, b)
    # A column reaching only the previous block has no entries in the block below
    # its diagonal one (lower), one reaching only the next none above (upper).
    previous = np.array([r == "previous" for r in reach])
    following = np.array([r == "next" for r in reach])
    lower = jnp.where(previous[None, None, :], 0, lower)
    upper = jnp.where(following[None, None, :], 0, upper)
    blocks = (lower, diag, upper)
    op = _operator(blocks, M, b)
    probes, _, _ = probe_vectors(M, reach)
    assert probes.shape == (2 + 2 + 2 + 3 + 2, M, b)
    # Every column of every block is in exactly one probe.
    np.testing.assert_array_equal(probes.sum(axis=0), np.ones((M, b)))
    assert tree_allclose(probe_blocks(op, reach), blocks, rtol=0, atol=1e-12)
    rhs = jr.normal(getkey(), (M, b))
    sol = lx.linear_solve(op, rhs, control.BlockTridiagonal(column_reach=reach))
    expected = np.linalg.solve(_dense(*blocks), np.asarray(rhs).ravel())
    np.testing.assert_allclose(np.asarray(sol.value).ravel(), expected, rtol=1e-9, atol=1e-9)


def test_a_false_column_reach_claim_is_read_as_true(getkey):
    # The claim is what saves the probes: a column claimed to reach one side only is
    # not probed for the other (a plan's claims are tested in test_kkt.py).
    from toolkit.control._block_tridiagonal import probe_blocks

    M, b = 9, 3
    blocks = _random_blocks(getkey(), M, b)
    op = _operator(blocks, M, b)
    lower, diag, upper = probe_blocks(op, ("both", "previous", "both"))
    # Column 1's entries below the diagonal are dropped, and folded into those above.
    np.testing.assert_allclose(lower[:, :, 1], 0)
    true_lower, _, true_upper = (np.asarray(x) for x in blocks)
    np.testing.assert_allclose(upper[:-1, :, 1], (true_upper + true_lower)[:-1, :, 1])
    for got, want in zip((lower, diag, upper), blocks):
        np.testing.assert_allclose(got[:, :, [0, 2]], want[:, :, [0, 2]], atol=1e-12)


def test_column_reach_is_checked():
    with pytest.raises(ValueError, match="must each be one of"):
        control.BlockTridiagonal(column_reach=("both", "sideways"))
    # A list is kept as a tuple: the field is static, so it must hash.
    assert control.BlockTridiagonal(column_reach=["next", "both"]).column_reach == (
        "next",
        "both",
    )
    from toolkit.control._block_tridiagonal import probe_blocks

    op = lx.FunctionLinearOperator(lambda x: x, jax.ShapeDtypeStruct((4, 2), jnp.float64))
    with pytest.raises(ValueError, match="has 3 entries, but the operator's blocks have 2"):
        probe_blocks(op, ("both",) * 3)


def test_scalar_blocks_are_a_tridiagonal_solve(getkey):
    # b = 1 goes to LAPACK's tridiagonal solver: the same answers as a dense solve,
    # under vmap, in reverse mode (through the transpose), and singular reported.
    M = 12
    k1, k2, k3 = jr.split(getkey(), 3)
    lower = jr.normal(k1, (3, M, 1, 1)).at[:, 0].set(0)
    upper = jr.normal(k2, (3, M, 1, 1)).at[:, -1].set(0)
    diag = jr.normal(k3, (3, M, 1, 1))
    rhs = jr.normal(getkey(), (3, M, 1))

    def solve(lo, di, up, r):
        op = _operator((lo, di, up), M, 1)
        sol = lx.linear_solve(op, r, control.BlockTridiagonal(), throw=False)
        return sol.value, sol.result

    values, results = jax.vmap(solve)(lower, diag, upper, rhs)
    assert np.all(np.asarray(results._value) == lx.RESULTS.successful._value)
    for i in range(3):
        A = _dense(lower[i], diag[i], upper[i])
        expected = np.linalg.solve(A, np.asarray(rhs[i]).ravel())
        assert np.allclose(np.asarray(values[i]).ravel(), expected, rtol=1e-9, atol=1e-9)
    A = _dense(lower[0], diag[0], upper[0])
    cot = jr.normal(getkey(), (M, 1))
    grad = jax.grad(lambda r: jnp.sum(cot * solve(lower[0], diag[0], upper[0], r)[0]))(rhs[0])
    expected = np.linalg.solve(A.T, np.asarray(cot).ravel())
    assert np.allclose(np.asarray(grad).ravel(), expected, rtol=1e-9, atol=1e-9)
    # Row 0 and column 0 zero: singular.
    _, singular = solve(lower[0].at[1].set(0), diag[0].at[0].set(0), upper[0].at[0].set(0), rhs[0])
    assert singular == lx.RESULTS.singular


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


def _tiny_first_pivot(s, dtype):
    # [[s I, I], [I, I]] is well conditioned for small s (its inverse is about
    # [[-I, I], [I, 0]]), but block-Thomas' first pivot is s: elimination without
    # pivoting across blocks grows entries by 1/s and rounding loses the answer.
    b = 2
    lower = jnp.zeros((2, b, b), dtype).at[1].set(jnp.eye(b, dtype=dtype))
    upper = jnp.zeros((2, b, b), dtype).at[0].set(jnp.eye(b, dtype=dtype))
    diag = jnp.stack([s * jnp.eye(b, dtype=dtype), jnp.eye(b, dtype=dtype)])
    return lower, diag, upper


def test_backward_error_matches_a_dense_computation(getkey):
    from toolkit.control._block_tridiagonal import backward_error, BlockTridiagonal, max_norm

    M, b = 5, 3
    blocks = _random_blocks(getkey(), M, b)
    x, rhs = jr.normal(getkey(), (M, b)), jr.normal(getkey(), (M, b))
    A, xv, bv = _dense(*blocks), np.asarray(x).ravel(), np.asarray(rhs).ravel()
    expected = np.linalg.norm(A @ xv - bv, np.inf) / (
        np.linalg.norm(A, np.inf) * np.linalg.norm(xv, np.inf) + np.linalg.norm(bv, np.inf)
    )
    assert np.isclose(float(backward_error(blocks, x, rhs)), expected, rtol=1e-12)
    # ‖A‖∞, kept with the factors of A and of its transpose (the solver's state).
    assert np.isclose(float(max_norm(blocks)), np.linalg.norm(A, np.inf), rtol=1e-12)
    state = BlockTridiagonal().init(_operator(blocks, M, b), {})
    assert np.isclose(float(state[-1]), np.linalg.norm(A, np.inf), rtol=1e-12)
    transposed, _ = BlockTridiagonal().transpose(state, {})
    assert np.isclose(float(transposed[-1]), np.linalg.norm(A.T, np.inf), rtol=1e-12)


@pytest.mark.parametrize("M", [1, 2, 7])
def test_block_matvec_matches_a_dense_product(getkey, M):
    from toolkit.control._block_tridiagonal import block_matvec

    b = 3
    blocks = _random_blocks(getkey(), M, b)
    x = jr.normal(getkey(), (M, b))
    expected = _dense(*blocks) @ np.asarray(x).ravel()
    np.testing.assert_allclose(np.asarray(block_matvec(blocks, x)).ravel(), expected, rtol=1e-12)


@pytest.mark.parametrize("s", [1e-6, 1e-9])
def test_a_tiny_pivot_in_float32_is_reported_not_returned_wrong(s):
    blocks = _tiny_first_pivot(s, jnp.float32)
    rhs = jnp.array([[1.0, 2.0], [3.0, 4.0]], jnp.float32)
    exact = np.linalg.solve(_dense(*blocks).astype(np.float64), np.asarray(rhs).ravel())
    sol = lx.linear_solve(_operator(blocks, 2, 2), rhs, control.BlockTridiagonal(), throw=False)
    # The elimination's answer is finite but off by percents or more...
    assert np.all(np.isfinite(sol.value))
    assert np.max(np.abs(np.asarray(sol.value).ravel() - exact)) > 1e-2 * np.max(np.abs(exact))
    # ...so it is not passed off as a solution.
    assert sol.result == lx.RESULTS.singular


def test_a_tiny_pivot_in_float64_loses_little_and_passes():
    blocks = _tiny_first_pivot(1e-9, jnp.float64)
    rhs = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    exact = np.linalg.solve(_dense(*blocks), np.asarray(rhs).ravel())
    sol = lx.linear_solve(_operator(blocks, 2, 2), rhs, control.BlockTridiagonal())
    assert sol.result == lx.RESULTS.successful
    np.testing.assert_allclose(np.asarray(sol.value).ravel(), exact, rtol=1e-6)
    # A caller who needs more can tighten the bound.
    strict = control.BlockTridiagonal(max_backward_error=1e-12)
    sol = lx.linear_solve(_operator(blocks, 2, 2), rhs, strict, throw=False)
    assert sol.result == lx.RESULTS.singular


@pytest.mark.parametrize(
    "M,b,partitions,chains",
    [(40, 3, None, 4), (101, 5, None, 7), (12, 4, 3, 3), (9, 2, 2, 2), (33, 6, 16, 10)],
)
def test_partitioned_elimination_solves_like_a_dense_solve(getkey, M, b, partitions, chains):
    from toolkit.control._block_tridiagonal import backward_error

    blocks = _random_blocks(getkey(), M, b)
    solver = control.BlockTridiagonal(partitions=partitions)
    assert solver.chains(M, b) == chains
    rhs = jr.normal(getkey(), (M, b))
    sol = lx.linear_solve(_operator(blocks, M, b), rhs, solver)
    # Random blocks with a zero corner grow the pivots of either elimination a
    # little (backward errors of 1e-16 to 1e-12 over seeds), far below the 6e-6 at
    # which a solve is reported singular.
    eta = float(backward_error(blocks, sol.value, rhs))
    assert eta < 1e-11
    A = _dense(*blocks)
    expected = np.linalg.solve(A, np.asarray(rhs).ravel())
    # Forward error within the condition number's reach of the backward error.
    tol = 10 * max(eta, 1e-15) * np.linalg.cond(A) * np.max(np.abs(expected))
    np.testing.assert_allclose(np.asarray(sol.value).ravel(), expected, rtol=0, atol=tol)


def test_partitioned_transpose_gives_the_gradient(getkey):
    M, b = 45, 4
    blocks = _random_blocks(getkey(), M, b)
    op, A = _operator(blocks, M, b), _dense(*blocks)
    solver = control.BlockTridiagonal()
    assert solver.chains(M, b) > 1
    cot = jr.normal(getkey(), (M, b))
    grad = jax.grad(lambda r: jnp.sum(cot * lx.linear_solve(op, r, solver).value))(
        jr.normal(getkey(), (M, b))
    )
    expected = np.linalg.solve(A.T, np.asarray(cot).ravel())
    tol = 1e-14 * np.linalg.cond(A) * np.max(np.abs(expected))
    np.testing.assert_allclose(np.asarray(grad).ravel(), expected, rtol=0, atol=tol)


def test_partitioned_solve_with_a_zero_last_diagonal_block(getkey):
    # The last block of a KKT system holds the multipliers of the final-state
    # constraints, which couple only to the block before: its diagonal block is zero.
    # The partitioned elimination keeps that block out of its chains.
    M, b = 64, 3
    lower, diag, upper = _random_blocks(getkey(), M, b)
    diag = diag.at[-1].set(0)
    op, A = _operator((lower, diag, upper), M, b), _dense(lower, diag, upper)
    rhs = jr.normal(getkey(), (M, b))
    expected = np.linalg.solve(A, np.asarray(rhs).ravel())
    tol = 1e-14 * np.linalg.cond(A) * np.max(np.abs(expected))
    for partitions in (None, 1):
        sol = lx.linear_solve(op, rhs, control.BlockTridiagonal(partitions=partitions))
        np.testing.assert_allclose(np.asarray(sol.value).ravel(), expected, rtol=0, atol=tol)


def test_chains_are_chosen_by_size_and_batching():
    from toolkit.control._block_tridiagonal import for_user_program

    auto = control.BlockTridiagonal()
    assert auto.chains(1001, 5) == 22
    assert auto.chains(31, 5) == 1  # too few blocks to pay
    assert auto.chains(1001, 11) == 1  # blocks too large to pay
    assert control.BlockTridiagonal(partitions=1).chains(1001, 5) == 1
    assert control.BlockTridiagonal(partitions=50).chains(20, 2) == 6  # >= 2 blocks each
    assert control.BlockTridiagonal(partitions=2).chains(6, 2) == 1
    # A plan in a user's program (or a batch) marks its solver, keeping the rest of
    # what the caller chose; other solvers are returned as they are.
    assert for_user_program(auto) == control.BlockTridiagonal(in_user_program=True)
    assert for_user_program(control.BlockTridiagonal(1e-9)).max_backward_error == 1e-9
    told = control.BlockTridiagonal(column_reach=("next", "both"))
    assert for_user_program(told).column_reach == ("next", "both")
    assert for_user_program(control.BlockTridiagonal(partitions=4)).partitions == 4
    assert isinstance(for_user_program(lx.LU()), lx.LU)
    with pytest.raises(ValueError, match="positive integer"):
        control.BlockTridiagonal(partitions=0)


def test_in_a_user_program_one_system_is_split_and_a_batch_is_one_chain(getkey):
    # Vmapped, the batch fills the kernels and one chain is fastest; the choice is
    # made where JAX batches the factorisation, so it holds inside a user's jit too.
    M, b, B = 40, 3, 3
    systems = [_random_blocks(getkey(), M, b) for _ in range(B)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *systems)
    rhs = jr.normal(getkey(), (B, M, b))

    def solver_of(in_user_program):
        return control.BlockTridiagonal(in_user_program=in_user_program)

    def solve(blocks, r, in_user_program=True):
        solver = solver_of(in_user_program)
        state = solver.init(_operator(blocks, M, b), {})
        x, result, _ = solver.compute(state, r, {})
        return x, result

    def check(x, blocks, r):
        A = _dense(*blocks)
        expected = np.linalg.solve(A, np.asarray(r).ravel())
        # The chains pivot only inside blocks and carry couplings to their
        # separators: their error on such random systems reaches about 5e-14
        # cond(A) max|x|, depending on summation order.
        bound = 2e-13 * np.linalg.cond(A) * np.max(np.abs(expected))
        np.testing.assert_allclose(np.asarray(x).ravel(), expected, rtol=0, atol=bound)

    def scan_lengths(fn, *args):
        text = str(jax.make_jaxpr(fn)(*args))
        return sorted({int(n) for n in re.findall(r"length=(\d+)", text)})

    assert solver_of(True).chains(M, b) > 1
    # One system: chains shorter than M. A batch of systems: one chain of M steps.
    assert max(scan_lengths(solve, systems[0], rhs[0])) < M
    assert scan_lengths(jax.vmap(solve), stacked, rhs) == [M]
    # One system and a batch of right-hand sides: factorised once, split.
    assert max(scan_lengths(jax.vmap(solve, in_axes=(None, 0)), systems[0], rhs)) < M
    # Unmarked, the choice is by size alone: split under vmap too.
    unmarked = jax.vmap(lambda bl, r: solve(bl, r, False))
    assert max(scan_lengths(unmarked, stacked, rhs)) < M

    x, result = jax.jit(solve)(systems[0], rhs[0])
    assert result == lx.RESULTS.successful
    check(x, systems[0], rhs[0])
    xs, results = jax.jit(jax.vmap(solve))(stacked, rhs)
    xr, _ = jax.jit(jax.vmap(solve, in_axes=(None, 0)))(systems[0], rhs)
    assert jnp.all(results == lx.RESULTS.successful)
    for i in range(B):
        check(xs[i], systems[i], rhs[i])
        check(xr[i], systems[0], rhs[i])


@pytest.mark.slow
def test_tumour_plans_alike_with_one_chain_or_many():
    # tumour's KKT system at its optimum is the case that keeps the last block out of
    # the chains (see _partitioned_elimination.py).
    ex = control.problems.get("tumour")
    tr = control.Trapezoidal(ex.N)
    sols = [
        control.plan(
            ex.problem,
            tr,
            control.KKTNewton(linear_solver=control.BlockTridiagonal(partitions=p)),
            args=ex.args,
        )
        for p in (None, 1)
    ]
    assert int(sols[0].stats["num_steps"]) == int(sols[1].stats["num_steps"])
    np.testing.assert_allclose(float(sols[0].cost), float(sols[1].cost), rtol=1e-10)


def test_blocks_given_in_options_are_used_not_probed(getkey):
    M, b = 9, 4
    blocks = _random_blocks(getkey(), M, b)
    rhs = jr.normal(getkey(), (M, b))
    expected = np.linalg.solve(_dense(*blocks), np.asarray(rhs).ravel())

    # An operator whose products would give other blocks (the identity's): the solve
    # follows `blocks`.
    struct = jax.ShapeDtypeStruct((M, b), blocks[1].dtype)
    op = lx.FunctionLinearOperator(lambda x: x, struct)
    sol = lx.linear_solve(op, rhs, control.BlockTridiagonal(), options={"blocks": blocks})
    assert np.allclose(np.asarray(sol.value).ravel(), expected, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="diagonal blocks of shape"):
        short = tuple(x[:-1] for x in blocks)
        control.BlockTridiagonal().init(_operator(blocks, M, b), {"blocks": short})
