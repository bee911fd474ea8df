import jax
import jax.numpy as jnp
import numpy as np

from toolkit import control


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
    g, J = np.asarray(jax.grad(f)(v))[free], np.asarray(jax.jacfwd(c)(v))[:, free]
    lam = np.linalg.lstsq(J.T, -g, rcond=None)[0]
    assert np.max(np.abs(g + J.T @ lam)) < 1e-8  # a KKT point
    H = np.asarray(jax.hessian(lambda v: f(v) + jnp.dot(lam, c(v)))(v))[np.ix_(free, free)]
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
