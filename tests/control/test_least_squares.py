import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

from toolkit import control
from toolkit.control._planner.gauss_newton import watchdog

from ..helpers import central_difference, relative_error, tree_allclose


def _double_well():
    # x' = u from x(0) = 0.05, cost ∫ u²/2 + w (x² - 1)². A trajectory x ≈ 0 is a KKT
    # point (on top of the well term, cost ≈ w) next to the default guess x ≡ 0.05;
    # the minima head for x = ±1.
    return control.OptimalControlProblem(
        dynamics=lambda t, x, u, args: u,
        running_cost=lambda t, x, u, args: 0.5 * u[0] ** 2 + args * (x[0] ** 2 - 1) ** 2,
        x0=jnp.array([0.05]),
        t1=1.0,
        u_bounds=(jnp.array([-4.0]), jnp.array([4.0])),
    )


def _reduced_hessian_eigenvalues(sol, problem, transcription, args):
    """Eigenvalues of the Lagrangian's Hessian on the null space of the constraints
    and active bounds, by dense linear algebra (independent of the planner)."""
    shape = sol.z.shape
    mask = np.asarray(transcription.constraint_mask(problem)).ravel()

    def f(v):
        return transcription.objective(v.reshape(shape), problem, args)

    def c(v):
        return transcription.constraints(v.reshape(shape), problem, args).ravel()[mask]

    v = sol.z.ravel()
    lo, hi = (np.asarray(b).ravel() for b in transcription.bounds(problem, args))
    free = (np.asarray(v) - lo > 1e-7) & (hi - np.asarray(v) > 1e-7)
    # Each derivative as one compiled program: run eagerly, each of its operations
    # would compile a program of its own.
    g = np.asarray(jax.jit(jax.grad(f))(v))[free]
    J = np.asarray(jax.jit(jax.jacfwd(c))(v))[:, free]
    lam = np.linalg.lstsq(J.T, -g, rcond=None)[0]
    assert np.max(np.abs(g + J.T @ lam)) < 1e-8  # a KKT point
    hessian = jax.jit(jax.hessian(lambda v, lam: f(v) + jnp.dot(lam, c(v))))
    H = np.asarray(hessian(v, lam))[np.ix_(free, free)]
    _, s, vt = np.linalg.svd(J)
    Z = vt[int(np.sum(s > 1e-10 * s[0])) :].T
    return np.linalg.eigvalsh(Z.T @ H @ Z)


def test_default_least_squares_does_not_stop_at_a_maximum():
    # Gauss-Newton on ‖F‖² converges to the nearest KKT point whatever its curvature;
    # started on the interior-point path (the default) it reaches a minimum here, the
    # same as KKTNewton's.
    problem, tr, w = _double_well(), control.Trapezoidal(20), jnp.asarray(10.0)
    gn_first = control.plan(
        problem, tr, control.KKTLeastSquares(interior_point_first=False), args=w, throw=False
    )
    default = control.plan(problem, tr, control.KKTLeastSquares(), args=w, throw=False)
    newton = control.plan(problem, tr, control.KKTNewton(), args=w, throw=False)
    for sol in (gn_first, default, newton):
        assert sol.result == control.RESULTS.successful, control.RESULTS[sol.result]
    assert np.min(_reduced_hessian_eigenvalues(gn_first, problem, tr, w)) < 0
    assert abs(float(gn_first.cost) - 10.0) < 1e-3
    assert np.min(_reduced_hessian_eigenvalues(default, problem, tr, w)) > 0
    assert int(default.stats["interior_point_steps"]) > 0
    assert float(default.cost) < 3.0
    assert abs(float(default.cost) - float(newton.cost)) <= 1e-9 * float(newton.cost)


@pytest.mark.slow
def test_gradient_vmap_and_float32():
    vdp = control.problems.get("van_der_pol")
    # The checks of the default planner, for the least-squares one: gradients
    # w.r.t. args and x0 against central differences, vmap against separate solves,
    # and a float32 solve.
    planner, tr = control.KKTLeastSquares(), control.Trapezoidal(60)

    def solve(args, x0):
        return control.plan(eqx.tree_at(lambda p: p.x0, vdp.problem, x0), tr, planner, args=args)

    x0 = vdp.problem.x0
    g_args, g_x0 = jax.grad(lambda a, x: solve(a, x).cost, argnums=(0, 1))(vdp.args, x0)
    fd = central_difference(lambda a: solve(a, x0).cost, vdp.args, {"mu": jnp.array(1.0)}, 1e-5)
    assert relative_error(g_args["mu"], fd) < 1e-5
    for i in range(2):
        e = jnp.zeros(2).at[i].set(1.0)
        fd = central_difference(lambda x: solve(vdp.args, x).cost, x0, e, 1e-5)
        assert relative_error(g_x0[i], fd) < 1e-5

    mus = jnp.linspace(0.6, 1.4, 8)
    batched = jax.vmap(lambda mu: solve({"mu": mu}, x0))(mus)
    for i, mu in enumerate(mus):
        single = solve({"mu": mu}, x0)
        assert single.result == control.RESULTS.successful
        assert tree_allclose(
            (batched.cost[i], batched.xs[i], batched.us[i]),
            (single.cost, single.xs, single.us),
            rtol=1e-9,
            atol=1e-10,
        )

    f32 = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, vdp.problem
    )
    sol = control.plan(
        f32, tr, control.KKTLeastSquares(atol=1e-4), args={"mu": jnp.array(1.0, jnp.float32)}
    )
    assert sol.result == control.RESULTS.successful
    assert sol.cost.dtype == jnp.float32
    assert abs(float(sol.cost) - float(solve(vdp.args, x0).cost)) < 1e-4 * float(sol.cost)


def _kinked(w, args):
    # F(x) = x + 1 for x >= 0 and 10 x + 1 below: root -0.1. From 0.5 the full Newton
    # step (slope 1) lands at -1, where |F| = 9 > 1.5; the next (slope 10) at the root.
    del args
    return jnp.where(w >= 0, w + 1, 10 * w + 1)


@pytest.mark.parametrize("steps, expected, taken", [(0, 0.5, 0), (1, 0.5, 1), (2, -0.1, 2)])
def test_watchdog_keeps_the_second_full_step_past_a_kink(steps, expected, taken):
    w, n = watchdog(_kinked, jnp.array([0.5]), None, lx.LU(), steps)
    assert float(w[0]) == pytest.approx(expected, abs=1e-15) and int(n) == taken
    # A start that both full steps worsen is kept: F = 2 - x below 0 sends 0.5 to -1
    # (|F| = 3) and then to 2 (|F| = 3).
    w, _ = watchdog(
        lambda w, _: jnp.where(w >= 0, w + 1, 2 - w), jnp.array([0.5]), None, lx.LU(), 2
    )
    assert float(w[0]) == 0.5


def test_watchdog_stops_within_the_tolerance():
    # F(x) = x + 1 is linear: the first full step lands on the root, where the
    # watchdog stops; from the root it takes no step.
    w, n = watchdog(lambda w, _: w + 1, jnp.array([0.5]), None, lx.LU(), 2, 1e-12)
    assert float(w[0]) == -1.0 and int(n) == 1
    w, n = watchdog(lambda w, _: w + 1, jnp.array([-1.0]), None, lx.LU(), 2, 1e-12)
    assert float(w[0]) == -1.0 and int(n) == 0


def test_a_start_at_the_root_takes_no_step():
    # Warm-started at its own solution, Gauss-Newton with a watchdog neither steps nor
    # factorises: the watchdog finds the start within tolerance, and so does the
    # least-squares solve before its first step.
    problem, tr, w = _double_well(), control.Trapezoidal(20), jnp.asarray(10.0)
    planner = control.GaussNewton(watchdog=2)
    first = control.plan(problem, tr, control.KKTNewton(), args=w)
    again = control.plan(problem, tr, planner, args=w, init=first)
    assert again.result == control.RESULTS.successful
    assert int(again.stats["num_steps"]) == 0
    assert tree_allclose(again.z, first.z, rtol=0, atol=0)


def test_watchdog_is_refused_negative():
    with pytest.raises(ValueError, match="watchdog"):
        control.GaussNewton(watchdog=-1)


@pytest.mark.slow  # two plans at N = 1000
def test_the_watchdog_stops_the_creep_after_the_interior_point_path():
    # Van der Pol at N = 1000: from the end of the interior-point path, Gauss-Newton in
    # its trust region takes 9 steps; with the default watchdog, 2 full Newton steps
    # and 1 more, to the same solution.
    vdp, tr = control.problems.get("van_der_pol"), control.Trapezoidal(1000)
    sols = [
        control.plan(vdp.problem, tr, control.KKTLeastSquares(watchdog=k), args=vdp.args)
        for k in (0, None)
    ]
    finish = [int(s.stats["num_steps"] - s.stats["interior_point_steps"]) for s in sols]
    assert finish[0] >= 6 and finish[1] <= 3
    assert abs(float(sols[0].cost) - float(sols[1].cost)) <= 1e-12 * float(sols[0].cost)
