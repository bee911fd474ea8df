import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

from toolkit import control
from toolkit.control._block_tridiagonal import probe_blocks
from toolkit.control._kkt import KKTResidual
from toolkit.control._stages import linear_solver_of


def _dense_blocks(residual, w, problem_args):
    """The Jacobian's three block diagonals, cut out of the dense Jacobian."""
    n, b = w.shape
    J = jax.jacfwd(lambda v: residual(v.reshape(n, b), problem_args).ravel())(w.ravel())
    J = np.asarray(J).reshape(n, b, n, b)
    zero = np.zeros((b, b))
    diag = np.stack([J[r, :, r] for r in range(n)])
    lower = np.stack([J[r, :, r - 1] if r > 0 else zero for r in range(n)])
    upper = np.stack([J[r, :, r + 1] if r < n - 1 else zero for r in range(n)])
    # Nothing outside the three diagonals, or the probe would fold it in.
    for r in range(n):
        for c in range(n):
            if abs(r - c) > 1:
                assert not np.any(J[r, :, c])
    return lower, diag, upper


def _check_reach(name, transcription, getkey):
    ex = control.problems.get(name)
    residual = KKTResidual(transcription)
    problem_args = (ex.problem, ex.args)
    w0 = residual.initial_guess(*problem_args)
    # Away from the guess and the optimum, with non-zero multipliers everywhere, so
    # that every second derivative the Lagrangian has shows up.
    w = w0 + 0.05 * jr.normal(getkey(), w0.shape) * (1 + jnp.abs(w0))
    reach = residual.column_reach(ex.problem)
    expected = _dense_blocks(residual, w, problem_args)
    operator = lx.JacobianLinearOperator(residual, w, problem_args)
    for got, want in zip(probe_blocks(operator, reach), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    return reach


N, B = "next", "both"


@pytest.mark.parametrize(
    "name,make,unknowns",
    [
        ("van_der_pol", lambda: control.Trapezoidal(6), (N,) * 3),
        ("rocket_landing", lambda: control.Trapezoidal(5), (N,) * 8),  # xT, state bounds
        ("tumour", lambda: control.Trapezoidal(5), (N,) * 4),  # terminal cost
        ("invasive_plant", lambda: control.Discrete(10), (N,) * 10),
        # [x, u, m]: the midpoint control m_k is in interval k only.
        ("van_der_pol", lambda: control.HermiteSimpson(5), (B, B, B, N)),
        # [x, u]: x_k enters interval k-1 linearly, u_k both integrations.
        ("cart_pole", lambda: control.MultipleShooting(5), (N,) * 4 + (B,)),
        ("rocket_landing", lambda: control.MultipleShooting(4), (N,) * 6 + (B,) * 2),
    ],
)
def test_column_reach_of_the_kkt_jacobian_is_true(getkey, name, make, unknowns):
    transcription = make()
    reach = _check_reach(name, transcription, getkey)
    ex = control.problems.get(name)
    _, bz, bc = transcription.layout(ex.problem)
    assert reach == ("previous",) * bc + unknowns


def test_single_shooting_claims_nothing():
    ex = control.problems.get("van_der_pol")
    tr = control.SingleShooting(4)
    _, bz, _ = tr.layout(ex.problem)
    assert tr.unknowns_reach(ex.problem) == ("both",) * bz


@pytest.mark.slow
@pytest.mark.parametrize("name", control.problems.names())
def test_column_reach_is_true_on_every_library_problem(getkey, name):
    ex = control.problems.get(name)
    if isinstance(ex.problem.dynamics, control.DiscreteDynamics):
        transcriptions = [control.Discrete(ex.N)]
    else:
        transcriptions = [
            control.Trapezoidal(7),
            control.HermiteSimpson(7),
            control.MultipleShooting(7),
        ]
    for transcription in transcriptions:
        _check_reach(name, transcription, getkey)


def test_a_plan_tells_its_linear_solver_the_column_reach():
    ex = control.problems.get("van_der_pol")
    tr = control.Trapezoidal(10)
    reach = ("previous",) * 2 + ("next",) * 3
    solver = linear_solver_of(control.KKTNewton(), tr, ex.problem)
    assert solver.column_reach == reach
    # A solver the user passes is told too, unless it was told already; a plan in a
    # user's program (or a batch) marks it as well.
    mine = control.KKTNewton(linear_solver=control.BlockTridiagonal(partitions=3))
    assert linear_solver_of(mine, tr, ex.problem).column_reach == reach
    assert linear_solver_of(control.KKTNewton(), tr, ex.problem, True) == (
        control.BlockTridiagonal(column_reach=reach, in_user_program=True)
    )
    told = control.BlockTridiagonal(column_reach=("both",) * 5)
    assert linear_solver_of(control.KKTNewton(linear_solver=told), tr, ex.problem) is told
    dense = control.KKTNewton(linear_solver=lx.LU())
    assert isinstance(linear_solver_of(dense, tr, ex.problem), lx.LU)


def _blocks_against_dense(name, N, getkey, transcription=control.Trapezoidal):
    """The Jacobian blocks `KKTResidual.linearised` assembles from the
    transcription's derivatives against the dense Jacobian, of the residual and of
    its unprojected rows, at a point with some unknowns on their bounds (active and
    inactive rows alike) and non-zero multipliers everywhere."""
    ex = control.problems.get(name)
    residual = KKTResidual(transcription(N))
    problem_args = (ex.problem, ex.args)
    w0 = residual.initial_guess(*problem_args)
    w = w0 + 0.1 * jr.normal(getkey(), w0.shape) * (1 + jnp.abs(w0))
    z, lam = residual.split(w, ex.problem)
    lo, hi = residual.transcription.bounds(*problem_args)
    on_bound = jr.uniform(getkey(), z.shape) < 0.3
    z = jnp.where(on_bound | (lo == hi), jnp.clip(z, lo, hi), z)
    w = residual.join(z, lam)
    scaled = KKTResidual(residual.transcription, scaled=True)
    cases = ((residual, True, residual), (residual, False, residual.unprojected))
    for which, project, fn in cases + ((scaled, True, scaled),):
        F, got = which.linearised(w, problem_args, project)
        np.testing.assert_allclose(F, fn(w, problem_args), rtol=1e-13, atol=1e-13)
        for g, want in zip(got, _dense_blocks(fn, w, problem_args)):
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)


_WITH_BLOCKS = [control.Trapezoidal, control.HermiteSimpson, control.MultipleShooting]


# Van der Pol; rocket_landing: xT and state bounds, two controls; tumour: a terminal
# cost; cart_pole: xT, four states.
@pytest.mark.parametrize("transcription", _WITH_BLOCKS)
@pytest.mark.parametrize("name", ["van_der_pol", "rocket_landing", "tumour", "cart_pole"])
def test_kkt_blocks_equal_the_dense_jacobian(getkey, name, transcription):
    _blocks_against_dense(name, 6, getkey, transcription)


@pytest.mark.slow
@pytest.mark.parametrize("transcription", _WITH_BLOCKS)
@pytest.mark.parametrize("name", control.problems.names())
def test_kkt_blocks_on_every_library_problem(getkey, name, transcription):
    ex = control.problems.get(name)
    if not isinstance(ex.problem.dynamics, control.DiscreteDynamics):
        _blocks_against_dense(name, 7, getkey, transcription)


def test_the_scaled_residual_bounds_the_unscaled_one_and_shares_its_roots(getkey):
    # Inside the box every scaled row is at least the unscaled one in magnitude (a
    # point within atol of it is within atol of the unscaled residual), a free
    # unknown's row is g under both, and an active one's is (z - lo) s with
    # s = max(1, |∂²L/∂z_i²|), computed here by hand from the Hessian's diagonal.
    ex = control.problems.get("bear_populations")
    tr = control.Trapezoidal(8)
    plain, scaled = KKTResidual(tr), KKTResidual(tr, scaled=True)
    problem_args = (ex.problem, ex.args)
    w0 = plain.initial_guess(*problem_args)
    z, lam = plain.split(w0 + 0.05 * jr.normal(getkey(), w0.shape), ex.problem)
    lo, hi = tr.bounds(*problem_args)
    near = jr.uniform(getkey(), z.shape) < 0.5
    z = jnp.clip(jnp.where(near, lo + 1e-4 * jr.uniform(getkey(), z.shape), z), lo, hi)
    w = plain.join(z, lam)
    F, F_scaled = plain(w, problem_args), scaled(w, problem_args)
    assert np.all(np.abs(F) <= np.abs(F_scaled) + 1e-15)
    g, _ = plain.stationarity(z, lam, *problem_args)
    mask = tr.constraint_mask(ex.problem)
    H = tr.lagrangian_derivatives(z, jnp.where(mask, lam, 0), *problem_args)[0]
    s = np.maximum(1, np.abs(np.diagonal(np.asarray(H), axis1=-2, axis2=-1)))
    assert np.any(s > 1)  # u_p's cost weight
    z_rows = np.asarray(plain.split(F_scaled, ex.problem)[0])
    v = np.asarray(z - g / s)
    lo_, hi_ = np.asarray(lo), np.asarray(hi)
    want = np.where(
        v <= lo_,
        (np.asarray(z) - lo_) * s,
        np.where(v >= hi_, (np.asarray(z) - hi_) * s, np.asarray(g)),
    )
    want = np.where(lo_ == hi_, np.asarray(z) - lo_, want)
    np.testing.assert_allclose(z_rows, want, rtol=1e-12, atol=1e-15)
    # The same rows as the unscaled residual on the constraints, and both vanish at
    # the optimum.
    np.testing.assert_array_equal(
        plain.split(F_scaled, ex.problem)[1], plain.split(F, ex.problem)[1]
    )
    sol = control.plan(ex.problem, tr, args=ex.args)
    w_star = plain.join(sol.z, sol.multipliers)
    assert float(jnp.max(jnp.abs(plain(w_star, problem_args)))) <= 1e-9
    assert float(jnp.max(jnp.abs(scaled(w_star, problem_args)))) <= 1e-9


def test_single_shooting_leaves_the_blocks_to_the_probe():
    # Its KKT Jacobian is dense (every state depends on every earlier control).
    ex = control.problems.get("van_der_pol")
    residual = KKTResidual(control.SingleShooting(4))
    problem_args = (ex.problem, ex.args)
    w = residual.initial_guess(*problem_args)
    assert residual.linearised(w, problem_args, True) is None
    assert residual.nlp_info(*problem_args).linearised(w, problem_args, False) is None


@pytest.mark.parametrize(
    "name, transcription",
    [
        ("van_der_pol", control.Trapezoidal),
        ("cart_pole", control.Trapezoidal),
        ("cart_pole", control.HermiteSimpson),
        ("van_der_pol", control.MultipleShooting),
    ],
)
def test_a_plan_from_the_blocks_is_the_plan_from_the_probe(monkeypatch, name, transcription):
    # cart_pole takes the interior-point path, Van der Pol semismooth Newton alone.
    ex = control.problems.get(name)
    tr = transcription(ex.N)
    with_blocks = control.plan(ex.problem, tr, args=ex.args)
    monkeypatch.setattr(KKTResidual, "linearised", lambda self, w, a, p: None)
    probed = control.plan(ex.problem, tr, args=ex.args)
    assert int(with_blocks.stats["num_steps"]) == int(probed.stats["num_steps"])
    assert int(with_blocks.stats["interior_point_steps"]) == int(
        probed.stats["interior_point_steps"]
    )
    np.testing.assert_allclose(with_blocks.z, probed.z, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(with_blocks.cost, probed.cost, rtol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: control.Trapezoidal(5),
        lambda: control.HermiteSimpson(5),
        lambda: control.MultipleShooting(5),
    ],
)
def test_the_hessian_diagonal_from_probes_equals_the_dense_hessians(make, getkey):
    # Cart-pole: four states and a control that share nonlinear terms, so every
    # diagonal entry is non-trivial and a probe holding two columns that met in the
    # Hessian would show.
    ex = control.problems.get("cart_pole")
    residual = KKTResidual(make())
    problem_args = (ex.problem, ex.args)
    w = residual.initial_guess(*problem_args)
    z, lam = residual.split(w + 0.1 * jr.normal(getkey(), w.shape), ex.problem)
    n, bz = z.shape

    def gradient(v):
        return residual.stationarity(v.reshape(n, bz), lam, *problem_args)[0].ravel()

    dense = np.diagonal(np.asarray(jax.jacfwd(gradient)(z.ravel()))).reshape(n, bz)
    assert np.count_nonzero(np.abs(dense) > 1e-6) > n
    probed = residual.hessian_diagonal(z, lam, *problem_args)
    np.testing.assert_allclose(probed, dense, rtol=1e-10, atol=1e-12)


def test_single_shooting_keeps_the_unscaled_rows():
    # Its Hessian is dense: no colouring by time block recovers the diagonal.
    ex = control.problems.get("van_der_pol")
    problem_args = (ex.problem, ex.args)
    plain = KKTResidual(control.SingleShooting(6))
    w = plain.initial_guess(*problem_args) + 0.3
    scaled = KKTResidual(control.SingleShooting(6), scaled=True)
    np.testing.assert_array_equal(scaled(w, problem_args), plain(w, problem_args))
