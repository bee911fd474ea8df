import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from toolkit import control
from toolkit.control import _plan as plan_module, _stages as stages
from toolkit.control._planner.implicit_adjoint import ImplicitAdjointWithoutCallback
from toolkit.control._planner.wrapped_solver import WrappedSolver

from ..helpers import (
    central_difference,
    cost_gradient_error,
    relative_error,
    tree_allclose,
)


# IPOPT (tol 1e-12) on the identical trapezoidal transcription
# (toolkit/control/problems/_ipopt_reference.py).
VDP_TRAPEZOIDAL_100 = 2.8822830588600

PLANNERS = (control.KKTNewton(), control.KKTLeastSquares())


@pytest.fixture(scope="module")
def vdp():
    return control.problems.get("van_der_pol")


def _feasibility(sol, problem, transcription, args):
    c = transcription.constraints(sol.z, problem, args)
    mask = transcription.constraint_mask(problem)
    defect = float(jnp.max(jnp.abs(jnp.where(mask, c, 0))))
    lo, hi = transcription.bounds(problem, args)
    violation = float(jnp.max(jnp.maximum(lo - sol.z, 0) + jnp.maximum(sol.z - hi, 0)))
    return defect, violation


@pytest.mark.parametrize("planner", PLANNERS, ids=lambda p: type(p).__name__)
def test_van_der_pol_trapezoidal_matches_ipopt(vdp, planner):
    tr = control.Trapezoidal(100)
    sol = control.plan(vdp.problem, tr, planner, args=vdp.args)
    assert sol.result == control.RESULTS.successful
    assert abs(float(sol.cost) - VDP_TRAPEZOIDAL_100) <= 1e-6 * VDP_TRAPEZOIDAL_100
    defect, violation = _feasibility(sol, vdp.problem, tr, vdp.args)
    assert defect <= 1e-8 and violation == 0
    assert sol.xs.shape == (101, 2) and sol.us.shape == (101, 1) and sol.ts.shape == (101,)
    assert jnp.allclose(sol.xs[0], vdp.problem.x0)
    assert sol.stats["kkt_residual"] <= planner.with_tolerance(jnp.float64).atol == 1e-9


def test_bound_multipliers_have_the_sign_of_active_bounds(vdp):
    sol = control.plan(vdp.problem, control.Trapezoidal(100), args=vdp.args)
    u = sol.us[:, 0]
    nu = sol.bound_multipliers[:, 2]
    lo, hi = -0.3, 1.0
    at_lo = jnp.isclose(u, lo, atol=1e-9)
    at_hi = jnp.isclose(u, hi, atol=1e-9)
    assert jnp.any(at_lo)  # this problem has an arc on the lower bound
    assert jnp.all(nu[at_lo] >= -1e-10) and jnp.all(nu[at_hi] <= 1e-10)
    inside = ~(at_lo | at_hi)
    assert jnp.max(jnp.abs(nu[inside])) <= 1e-8


def test_costates_satisfy_pontryagin_control_condition(vdp):
    # Where the control is inside its box, dH/du = 2u + p1 = 0 (H = L + p.f).
    sol = control.plan(vdp.problem, control.Trapezoidal(400), args=vdp.args)
    u_mid = 0.5 * (sol.us[1:, 0] + sol.us[:-1, 0])
    inside = (u_mid > -0.29) & (u_mid < 0.99)
    err = jnp.abs(2 * u_mid + sol.costates[:, 0])[inside]
    assert float(jnp.max(err)) < 5e-2


def test_gradient_wrt_final_time(vdp):
    def cost(t1):
        problem = eqx.tree_at(lambda p: p.t1, vdp.problem, t1)
        return control.plan(problem, control.Trapezoidal(80), args=vdp.args).cost

    t1 = vdp.problem.t1
    g = jax.grad(cost)(t1)
    fd = central_difference(cost, t1, jnp.array(1.0), 1e-5)
    assert relative_error(g, fd) < 1e-5


def test_second_derivative_of_the_optimal_cost(vdp):
    # The first derivative comes from the envelope theorem; the second differentiates
    # that expression through the implicit layer's z*(mu) and lambda*(mu).
    tr = control.Trapezoidal(40)

    def dcost(mu):
        return jax.grad(lambda m: control.plan(vdp.problem, tr, args={"mu": m}).cost)(mu)

    mu = jnp.array(1.0)
    second = jax.grad(dcost)(mu)
    fd = central_difference(dcost, mu, jnp.array(1.0), 1e-5)
    assert relative_error(second, fd) < 1e-5
    assert relative_error(jax.jacfwd(dcost)(mu), fd) < 1e-5


def test_jacobian_of_trajectory(vdp):
    tr = control.Trapezoidal(40)

    def us(mu):
        return control.plan(vdp.problem, tr, args={"mu": mu}).us[:, 0]

    jac = jax.jacfwd(us)(jnp.array(1.0))
    fd = central_difference(us, jnp.array(1.0), jnp.array(1.0), 1e-6)
    assert jnp.max(jnp.abs(jac - fd)) < 1e-5


def test_vmap_equals_separate_solves(vdp):
    tr = control.Trapezoidal(100)
    mus = jnp.linspace(0.6, 1.4, 8)
    batched = jax.vmap(lambda mu: control.plan(vdp.problem, tr, args={"mu": mu}))(mus)
    for i, mu in enumerate(mus):
        single = control.plan(vdp.problem, tr, args={"mu": mu})
        assert tree_allclose(
            (batched.cost[i], batched.xs[i], batched.us[i]),
            (single.cost, single.xs, single.us),
            rtol=1e-9,
            atol=1e-10,
        )


def test_vmap_over_initial_state(vdp):
    tr = control.Trapezoidal(50)
    x0s = jnp.array([[0.0, 1.0], [0.2, 0.8], [-0.1, 1.2]])

    def cost(x0):
        return control.plan(eqx.tree_at(lambda p: p.x0, vdp.problem, x0), tr, args=vdp.args).cost

    batched = jax.vmap(cost)(x0s)
    assert jnp.allclose(batched, jnp.stack([cost(x) for x in x0s]), rtol=1e-10)


def test_jit_of_a_user_function(vdp):
    # `throw=False`: a failure check under a user's `jit` is a host callback, which
    # JAX's persistent cache cannot store (tests/control/test_errors.py covers it).
    @jax.jit
    def f(mu):
        sol = control.plan(vdp.problem, control.Trapezoidal(100), args={"mu": mu}, throw=False)
        return sol.cost, sol.result

    cost, result = f(jnp.array(1.0))
    assert result == control.RESULTS.successful
    assert abs(float(cost) - VDP_TRAPEZOIDAL_100) <= 1e-6 * VDP_TRAPEZOIDAL_100


def test_warm_start_takes_fewer_steps(vdp):
    tr = control.Trapezoidal(100)
    cold = control.plan(vdp.problem, tr, args={"mu": jnp.array(1.0)})
    warm = control.plan(vdp.problem, tr, args={"mu": jnp.array(1.02)}, init=cold)
    fresh = control.plan(vdp.problem, tr, args={"mu": jnp.array(1.02)})
    assert warm.stats["num_steps"] < fresh.stats["num_steps"]
    assert jnp.allclose(warm.cost, fresh.cost, rtol=1e-10)


def test_float32(vdp):
    problem = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, vdp.problem
    )
    args = {"mu": jnp.array(1.0, jnp.float32)}
    for tr in (control.Trapezoidal(100), control.HermiteSimpson(50)):
        # The default tolerance follows the dtype (1e-4 in float32).
        sol = control.plan(problem, tr, args=args)
        assert sol.cost.dtype == jnp.float32 and sol.xs.dtype == jnp.float32
        assert sol.result == control.RESULTS.successful
        assert float(sol.stats["kkt_residual"]) <= 1e-4
    sol = control.plan(problem, control.Trapezoidal(100), control.KKTNewton(atol=1e-4), args=args)
    assert abs(float(sol.cost) - VDP_TRAPEZOIDAL_100) < 1e-4
    g = jax.grad(
        lambda mu: (
            control.plan(
                problem, control.Trapezoidal(100), control.KKTNewton(atol=1e-4), args={"mu": mu}
            ).cost
        )
    )(jnp.array(1.0, jnp.float32))
    g64 = jax.grad(
        lambda mu: (
            control.plan(
                problem.__class__(
                    problem.dynamics,
                    problem.running_cost,
                    vdp.problem.x0,
                    vdp.problem.t1,
                    u_bounds=vdp.problem.u_bounds,
                ),
                control.Trapezoidal(100),
                args={"mu": mu},
            ).cost
        )
    )(jnp.array(1.0))
    assert abs(float(g) - float(g64)) < 1e-3 * abs(float(g64))


@pytest.mark.slow  # compiling adaptive steps inside Newton takes minutes
def test_adaptive_multiple_shooting_matches_fine_fixed_steps(vdp):
    adaptive = control.MultipleShooting(
        25, diffrax.Tsit5(), stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10)
    )
    fine = control.MultipleShooting(25, control.RK4(), substeps=32)
    a = control.plan(vdp.problem, adaptive, args=vdp.args)
    f = control.plan(vdp.problem, fine, args=vdp.args)
    assert abs(float(a.cost) - float(f.cost)) < 2e-8
    assert jnp.max(jnp.abs(a.us - f.us)) < 1e-5


def test_gradient_through_the_interior_point_fallback():
    # From the default guess semismooth Newton alone stalls on the pendulum swing-up;
    # the interior-point fallback finds the solution, and the implicit gradient (of the
    # final solve only) must still match finite differences.
    ex = control.problems.get("pendulum")
    tr = control.Trapezoidal(ex.N)
    alone = control.plan(
        ex.problem, tr, control.KKTNewton(fallback_after=0), args=ex.args, throw=False
    )
    assert alone.result != control.RESULTS.successful  # the fallback is exercised
    sol = control.plan(ex.problem, tr, args=ex.args)
    assert sol.stats["interior_point_steps"] > 0

    assert cost_gradient_error(ex, tr, "length", 1e-6) < 1e-5


@pytest.mark.parametrize("fallback_after", [1, 10])
def test_an_eager_plan_in_stages_equals_the_one_program_plan(vdp, fallback_after):
    # Called eagerly, a plan runs as separate programs (start, Newton pass, and only
    # when needed the interior-point fallback and a second pass); under the user's
    # `jit` it is one program. `fallback_after=1` forces every stage; with 10 the
    # first pass solves and its statistics are the plan's.
    tr = control.Trapezoidal(20)
    solver = control.KKTNewton(fallback_after=fallback_after)
    staged = control.plan(vdp.problem, tr, solver, args=vdp.args)
    # `throw=False`: a failure check under `jit` is a host callback, which JAX's
    # persistent cache cannot store.
    one = jax.jit(lambda args: control.plan(vdp.problem, tr, solver, args=args, throw=False))(
        vdp.args
    )
    assert (int(staged.stats["interior_point_steps"]) > 0) == (fallback_after == 1)
    assert set(staged.stats) == set(one.stats)
    assert staged.result == one.result == control.RESULTS.successful
    fields = ("cost", "ts", "xs", "us", "z", "multipliers", "costates", "bound_multipliers")
    for field in fields:
        assert tree_allclose(getattr(staged, field), getattr(one, field), rtol=1e-10, atol=1e-12)
    for key, value in one.stats.items():
        if key != "kkt_residual":
            assert int(staged.stats[key]) == int(value), key
        # Reported by the last stage's program, in the same dtypes (`max_steps`, a
        # Python int in the eager plan, is an output of the one-program plan).
        if key != "max_steps":
            assert isinstance(staged.stats[key], jax.Array), key
            assert staged.stats[key].dtype == value.dtype, key


def test_an_eager_plan_compiles_no_fallback_it_does_not_need(vdp, monkeypatch):
    def rescue_stage(*args, **kwargs):
        raise AssertionError("the interior-point stage ran")

    monkeypatch.setattr(stages, "_rescue", rescue_stage)
    sol = control.plan(vdp.problem, control.Trapezoidal(100), args=vdp.args)
    assert sol.result == control.RESULTS.successful
    assert int(sol.stats["interior_point_steps"]) == 0


def test_an_eager_plan_copies_nothing_of_its_own_to_the_device(vdp, monkeypatch):
    # The passes' flags, step limits and placeholder are made on the device once: a host
    # scalar would be copied there at every plan, at a cost that shows on short plans.
    from toolkit import _jit

    seen = []
    key = _jit._FlatDispatch._key

    def spy(args):
        k, arrays = key(args)
        seen.append([a for a in arrays if not isinstance(a, jax.Array)])
        return k, arrays

    monkeypatch.setattr(_jit._FlatDispatch, "_key", staticmethod(spy))
    args = {k: jnp.asarray(v) for k, v in vdp.args.items()}
    for fallback_after in (10, 1):  # without and with the rescue and the finish
        planner = control.KKTNewton(fallback_after=fallback_after)
        sol = control.plan(vdp.problem, control.Trapezoidal(100), planner, args=args)
        assert sol.result == control.RESULTS.successful
    assert len(seen) == 4 and all(host == [] for host in seen), seen


def test_an_eager_gradient_differentiates_only_at_the_root(vdp, monkeypatch):
    # Under an eager `jax.grad` (or `jax.jvp`, `jax.vjp`) the stages find the root on
    # the inputs' values and one more program attaches the implicit derivative; the
    # one-program plan (`_plan`) is never traced. Its derivatives are those of the
    # one-program plan under the user's `jit`, the fallback included.
    tr = control.Trapezoidal(20)
    solver = control.KKTNewton(fallback_after=1)

    def cost(args, x0):
        problem = eqx.tree_at(lambda p: p.x0, vdp.problem, x0)
        return control.plan(problem, tr, solver, args=args, throw=False).cost

    x0 = vdp.problem.x0
    jitted = jax.jit(jax.grad(cost, argnums=(0, 1)))(vdp.args, x0)
    tangents = ({"mu": jnp.array(0.3)}, jnp.array([1.0, -2.0]))
    jitted_jvp = jax.jit(lambda *p: jax.jvp(cost, p, tangents))(vdp.args, x0)

    def one_program(*args, **kwargs):
        raise AssertionError("the one-program plan was traced")

    monkeypatch.setattr(plan_module, "_plan", one_program)
    eager = jax.grad(cost, argnums=(0, 1))(vdp.args, x0)
    assert tree_allclose(eager, jitted, rtol=1e-9, atol=1e-12)
    assert tree_allclose(jax.jvp(cost, (vdp.args, x0), tangents), jitted_jvp, rtol=1e-9)
    # `jax.hessian` and `jax.jacfwd` batch their tangents with `vmap`: one program.
    with pytest.raises(AssertionError, match="one-program plan was traced"):
        jax.hessian(cost)(vdp.args, x0)


def test_an_eager_gradient_reuses_the_plans_compiled_stages(vdp, monkeypatch):
    # The stages of an eager gradient run on values, so they are the programs an eager
    # plan compiled (with toolkit's compile options), not another copy compiled
    # without them.
    tr = control.Trapezoidal(20)
    solver = control.KKTNewton(fallback_after=1)
    control.plan(vdp.problem, tr, solver, args=vdp.args)

    def nested(*args, **kwargs):
        raise AssertionError("a stage was compiled again as a nested call")

    for stage in (stages._newton, stages._rescue):
        monkeypatch.setattr(stage, "_nested", nested)
    g = jax.grad(lambda a: control.plan(vdp.problem, tr, solver, args=a).cost)(vdp.args)
    assert jnp.isfinite(g["mu"])


def test_an_eager_gradient_reports_the_staged_outcome(vdp):
    tr = control.Trapezoidal(20)
    solver = control.KKTNewton(fallback_after=1)
    seen = {}

    def cost(args):
        sol = control.plan(vdp.problem, tr, solver, args=args)
        seen["sol"] = sol
        return sol.cost

    jax.grad(cost)(vdp.args)
    staged = control.plan(vdp.problem, tr, solver, args=vdp.args)
    sol = seen["sol"]
    assert sol.result == control.RESULTS.successful
    for key, value in staged.stats.items():
        if key != "kkt_residual":
            assert int(sol.stats[key]) == int(value), key
    assert int(sol.stats["interior_point_steps"]) > 0


def test_final_state_on_the_edge_of_the_state_box():
    # Move a double integrator from x = 1 to rest at x = 0 with x >= 0: the final state
    # lies on its bound. Bounding node N as well as fixing it would make the KKT
    # conditions degenerate (two constraints with one gradient, a singular Newton
    # matrix); semismooth Newton and Gauss-Newton alone must converge. Continuous
    # optimum: u linear in t, x = 1 - 3t² + 2t³ (inside the box), cost ∫u² = 12.
    problem = control.OptimalControlProblem(
        dynamics=lambda t, x, u, args: jnp.stack([x[1], u[0]]),
        running_cost=lambda t, x, u, args: u[0] ** 2,
        x0=jnp.array([1.0, 0.0]),
        t1=1.0,
        xT=jnp.array([0.0, 0.0]),
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
        x_bounds=(jnp.array([0.0, -jnp.inf]), jnp.array([jnp.inf, jnp.inf])),
    )
    for planner in (
        control.KKTNewton(fallback_after=0),
        control.KKTLeastSquares(interior_point_first=False, fallback_after=0),
    ):
        sol = control.plan(problem, control.Trapezoidal(50), planner, throw=False)
        assert sol.result == control.RESULTS.successful, control.RESULTS[sol.result]
        assert sol.stats["num_steps"] <= 10
        assert abs(float(sol.cost) - 12.0) < 1e-2 * 12.0
        # Node N is fixed by x(1) = 0, not bounded: roundoff may leave it at -1e-16.
        assert float(jnp.min(sol.xs[:-1, 0])) >= 0.0
        assert jnp.allclose(sol.xs[-1], 0.0, atol=1e-10)


class _Doubled(WrappedSolver):
    """Twice the inner solver's solution: a visible mark on a derivative."""

    def compute(self, state, vector, options):
        solution, result, stats = self.inner.compute(state, vector, options)
        return jax.tree.map(lambda x: 2 * x, solution), result, stats


def test_an_eager_gradient_uses_the_given_implicit_adjoint(vdp):
    # The staged plan attaches the derivative with the caller's adjoint, as the
    # one-program plan does: a solver that doubles its solutions doubles dz/dargs.
    tr = control.Trapezoidal(10)
    # (Without callbacks, as `plan`'s default: optimistix's own adjoint would keep
    # the jitted gradient below out of JAX's persistent cache.)
    doubled = ImplicitAdjointWithoutCallback(_Doubled(tr.linear_solver()))

    def control_at(args, adjoint):
        return control.plan(vdp.problem, tr, args=args, adjoint=adjoint, throw=False).us[3, 0]

    plain = jax.grad(control_at)(vdp.args, None)
    twice = jax.grad(control_at)(vdp.args, doubled)
    assert float(plain["mu"]) != 0.0
    assert tree_allclose(twice, jax.tree.map(lambda g: 2 * g, plain), rtol=1e-12)
    assert tree_allclose(jax.jit(jax.grad(control_at), static_argnums=1)(vdp.args, doubled), twice)


def test_a_plan_splits_its_elimination_unless_vmapped(vdp, monkeypatch):
    # Vmapped, the sequential elimination's kernels are already full; alone (eager or
    # inside a user's jit) the partitioned one's shorter chain is faster. Inside a
    # user's program the choice is made where JAX batches the factorisation
    # (_batch_aware_elimination.py); toolkit's own programs choose by size.
    from toolkit.control import _batch_aware_elimination as bae, _block_tridiagonal as bt

    calls = []

    def spy(module, name):
        real = getattr(module, name)

        def spied(*args):
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(module, name, spied)

    for name in ("factorise", "substitute", "substitute_partitioned"):
        spy(bae, name)
    spy(bt, "factorise_partitioned")
    tr = control.Trapezoidal(41)  # an N no other test compiles, so these trace

    def cost(mu):
        return control.plan(vdp.problem, tr, args={"mu": mu}, throw=False).cost

    mus = jnp.array([0.9, 1.1])
    jitted = eqx.filter_jit(cost)(mus[1])
    assert "substitute_partitioned" in calls
    assert not {"factorise", "substitute", "factorise_partitioned"} & set(calls)
    calls.clear()
    batched = jax.vmap(cost)(mus)
    assert "factorise" in calls and "substitute" in calls
    assert "factorise_partitioned" not in calls
    calls.clear()
    single = cost(mus[1])
    assert calls and set(calls) == {"factorise_partitioned"}
    assert jnp.allclose(batched[1], single, rtol=1e-12)
    assert jnp.allclose(jitted, single, rtol=1e-12)
