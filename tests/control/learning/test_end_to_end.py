import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
import pytest

from toolkit import control
from toolkit.control import learning

from ...helpers import central_difference, relative_error


# Fixed RK4 steps make the true-system cost a smooth function of the plan.
RK4 = learning.FixedStepRK4(5)
TRANSCRIPTION = control.Trapezoidal(20)


@eqx.filter_jit
def _loss_and_grad(params, static, problem, loss, args):
    def f(p):
        value, sol = learning.plan_loss(
            eqx.combine(p, static), problem, TRANSCRIPTION, loss, args=args
        )
        return value, sol.result == control.RESULTS.successful

    (value, ok), grad = eqx.filter_value_and_grad(f, has_aux=True)(params)
    return value, ok, grad


@pytest.fixture(scope="module")
def setup():
    ex = control.problems.get("van_der_pol")
    # A hybrid neural ODE: the Van der Pol structure with a wrong damping (0.5, the
    # truth is 1) plus a small MLP, perturbed off its zero initial output.
    field = learning.NeuralVectorField(2, 1, width_size=8, known=ex.problem.dynamics, key=jr.key(0))
    model = learning.Model(field, {"mu": jnp.array(0.5)})
    direction = learning.random_direction(jr.key(1), model)
    model = eqx.apply_updates(model, jax.tree_util.tree_map(lambda d: 0.05 * d, direction))
    params, static = eqx.partition(model, learning.trainable(model))
    loss = learning.TrueCost(ex.problem, ex.args, RK4)
    return ex, params, static, loss


def test_end_to_end_gradient_matches_finite_differences(setup):
    ex, params, static, loss = setup
    value, ok, grad = _loss_and_grad(params, static, ex.problem, loss, ex.args)
    assert ok
    leaves = jax.tree_util.tree_leaves(grad)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    # Every layer of the MLP, and the damping, get a gradient.
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)

    def f(p):
        return _loss_and_grad(p, static, ex.problem, loss, ex.args)[0]

    for key in jr.split(jr.key(2), 3):
        d = learning.random_direction(key, eqx.combine(params, static))
        norm = jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree_util.tree_leaves(d)))
        d = jax.tree_util.tree_map(lambda a: a / norm, d)
        directional = sum(jnp.sum(g * a) for g, a in zip(leaves, jax.tree_util.tree_leaves(d)))
        fd = central_difference(f, params, d, 1e-4)
        assert relative_error(directional, fd) < 1e-4, (directional, fd)


def test_end_to_end_training_decreases_the_true_cost(setup):
    ex, params, static, loss = setup
    optimiser = optax.adam(3e-3)
    with jax.numpy_dtype_promotion("standard"):  # optax's step counts
        opt_state = optimiser.init(params)
    costs = []
    for _ in range(15):
        value, ok, grad = _loss_and_grad(params, static, ex.problem, loss, ex.args)
        assert ok
        costs.append(float(value))
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimiser.update(grad, opt_state, params)
        params = eqx.apply_updates(params, updates)
    costs.append(float(_loss_and_grad(params, static, ex.problem, loss, ex.args)[0]))
    # Noisy (the Van der Pol landscape is rough) but clearly downhill.
    assert costs[-1] < 0.5 * costs[0], costs


@pytest.mark.slow  # ~2 min on a loaded CPU: compiles the gradient through the planner
def test_end_to_end_keeps_the_sysid_model_when_no_step_improves():
    # Issue 26: the selection starts from the initial (sysid) model, step 0, and
    # scores every model as it is reported, so no step can make it worse.
    ex = control.problems.get("simple_case")
    sim = learning.FixedStepRK4(2)
    # A hybrid with the true parameters and a zero MLP: the true model, as good as
    # system identification can make it.
    field = learning.init_neural_vector_field(
        jr.key(2), ex.problem, width_size=4, depth=1, known=ex.problem.dynamics
    )
    model = learning.Model(field, ex.args)
    transcription = control.Trapezoidal(10)
    loss = learning.TrueCost(ex.problem, ex.args, sim)
    trained, history = learning.fit_end_to_end(
        model,
        ex.problem,
        transcription,
        loss,
        args=ex.args,
        optimiser=optax.adam(10.0),  # every step overshoots
        steps=3,
        keep_best=True,
    )
    assert len(history["selection"]) == 4
    assert all(s > history["selection"][0] for s in history["selection"][1:]), history
    assert history["kept"] == 0
    assert bool(eqx.tree_equal(trained, model))
    cost, sol = learning.plan_loss(trained, ex.problem, transcription, loss, args=ex.args)
    initial, _ = learning.plan_loss(model, ex.problem, transcription, loss, args=ex.args)
    assert sol.result == control.RESULTS.successful
    assert float(cost) == float(initial) == history["selection"][0]


def _simple_case_parametric():
    ex = control.problems.get("simple_case")
    sim = learning.FixedStepRK4(2)
    # Only C enters the dynamics: it is the one array, so the one parameter learned.
    model = learning.Model(ex.problem.dynamics, {"A": 1.0, "B": 1.0, "C": jnp.array(3.0)})
    return ex, model, learning.TrueCost(ex.problem, ex.args, sim)


def test_a_failed_plan_during_end_to_end_training_is_counted_and_skipped():
    # Issue 26: a plan that fails is not thrown; its step leaves the model alone.
    ex, model, loss = _simple_case_parametric()
    solver = control.KKTNewton(max_steps=1, fallback_after=0)  # too few iterations
    trained, history = learning.fit_end_to_end(
        model,
        ex.problem,
        control.Trapezoidal(5),
        loss,
        solver,
        args=ex.args,
        optimiser=optax.adam(0.1),
        steps=3,
        keep_best=True,
    )
    assert history["successful"] == [False] * 3 and history["failed"] == 3
    assert len(history["loss"]) == 3
    assert bool(eqx.tree_equal(trained, model))
    # A failed plan scores inf: the initial model is kept.
    assert history["selection"] == [float("inf")] * 4 and history["kept"] == 0


def test_end_to_end_starts_from_init_and_reports_each_step():
    # The learn CLI's loop: the first plan warm-started from a given plan, progress
    # reported after every step. With one Newton step allowed, only a plan that
    # starts at its root converges: the first one does, from `init`; the rest start
    # from the last plan of a model that has moved since, and fail.
    ex, model, loss = _simple_case_parametric()
    transcription = control.Trapezoidal(5)
    _, root = learning.plan_loss(model, ex.problem, transcription, loss, args=ex.args)
    seen = []
    _, history = learning.fit_end_to_end(
        model,
        ex.problem,
        transcription,
        loss,
        control.KKTNewton(max_steps=1, fallback_after=0),
        args=ex.args,
        optimiser=optax.adam(0.1),
        steps=3,
        init=root,
        callback=lambda i, h: seen.append((i, list(h["successful"]))),
        # Measures of each step's plan, failed ones included: here the training loss
        # itself and the plan's own cost, which the history also records.
        metrics={"again": loss, "cost": lambda sol: sol.cost},
    )
    assert history["successful"][0]
    assert seen == [(i, history["successful"][: i + 1]) for i in range(3)]
    assert history["again"] == pytest.approx(history["loss"], rel=1e-12)
    assert history["cost"] == pytest.approx(history["plan_cost"], rel=1e-12)
    assert len(history["again"]) == 3


def test_end_to_end_metrics_may_not_shadow_the_history():
    ex, model, loss = _simple_case_parametric()
    with pytest.raises(ValueError, match=r"may not be named \['loss'\]"):
        learning.fit_end_to_end(
            model, ex.problem, control.Trapezoidal(5), loss, args=ex.args, metrics={"loss": loss}
        )


def test_end_to_end_refuses_a_non_finite_model():
    # Issue 26: a NaN model (a diverged sysid) stops before any plan, saying why.
    ex, model, loss = _simple_case_parametric()
    model = eqx.tree_at(lambda m: m.args["C"], model, jnp.array(jnp.nan))
    with pytest.raises(FloatingPointError, match="needs a finite model.*diverge"):
        learning.fit_end_to_end(model, ex.problem, control.Trapezoidal(5), loss, args=ex.args)


def _control_only(t, x, u, args):
    return u


def _effort(t, x, u, args):
    return u[0] ** 2


@pytest.mark.parametrize("xT", [None, 1.0])
def test_true_cost_adds_the_weighted_miss_of_the_final_state(xT):
    # x' = u, x(0) = 0 on [0, 1] with u = 0.5 held: x(1) = 0.5, integral of u² = 0.25;
    # with xT = 1 the plan misses it by 0.5 on the true system.
    problem = control.OptimalControlProblem(
        dynamics=_control_only,
        running_cost=_effort,
        x0=jnp.array([0.0]),
        t1=1.0,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
        xT=None if xT is None else jnp.array([xT]),
    )
    plan = control.Solution(
        cost=jnp.zeros(()),
        ts=jnp.array([0.0, 0.5, 1.0]),
        xs=jnp.zeros((3, 1)),
        us=jnp.full((3, 1), 0.5),
        costates=None,
        multipliers=jnp.zeros((3, 1)),
        bound_multipliers=jnp.zeros((3, 2)),
        z=jnp.zeros((3, 2)),
        result=control.RESULTS.successful,
        stats={},
    )
    loss = learning.TrueCost(problem, simulator=learning.FixedStepRK4(1), terminal_weight=8.0)
    if xT is None:
        assert float(loss(plan)) == pytest.approx(0.25, abs=1e-14)
        assert loss.terminal_miss(plan) is None
    else:
        assert float(loss(plan)) == pytest.approx(0.25 + 8.0 * 0.25, abs=1e-14)
        assert float(loss.terminal_miss(plan)) == pytest.approx(0.5, abs=1e-14)


def test_end_to_end_backs_off_after_a_failed_plan_and_resumes():
    # A model whose plans fail past a cliff (C > 3.5: non-finite dynamics). The step
    # that lands there fails; left there, every later plan would fail the same way.
    # Halving the last update brings it back to where plans converge.
    ex = control.problems.get("simple_case")

    def cliff(t, x, u, args):
        return jnp.where(args["C"] > 3.5, jnp.nan, ex.problem.dynamics(t, x, u, args))

    model = learning.Model(cliff, {"A": 1.0, "B": 1.0, "C": jnp.array(3.0)})
    loss = learning.TrueCost(ex.problem, ex.args, learning.FixedStepRK4(2))
    _, history = learning.fit_end_to_end(
        model,
        ex.problem,
        control.Trapezoidal(5),
        loss,
        args=ex.args,
        optimiser=optax.sgd(5.0),
        steps=8,
    )
    ok = history["successful"]
    assert ok[0] and not all(ok), ok
    # A plan succeeds again after a failure (it may take more than one halving).
    assert any(not ok[i] and ok[i + 1] for i in range(len(ok) - 1)), ok


def test_backtrack_halves_the_last_update():
    good, failed = {"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, -2.0])}
    assert jnp.array_equal(learning._end_to_end.backtrack(good, failed)["a"], jnp.array([2.0, 0.0]))


def test_the_end_to_end_adjoint_solver_returns_zero_instead_of_raising():
    # At a failed plan the KKT Jacobian may be singular: lineax would raise from
    # inside the compiled end-to-end step (predator_prey did); the step discards that
    # gradient anyway.
    import lineax as lx

    singular = lx.MatrixLinearOperator(jnp.array([[1.0, 2.0], [2.0, 4.0]]))
    b = jnp.array([1.0, 0.0])
    with pytest.raises(Exception, match="non-finite"):
        lx.linear_solve(singular, b, lx.LU())
    guarded = learning._end_to_end._ZeroIfNonFinite(lx.LU())
    out = lx.linear_solve(singular, b, guarded)
    assert jnp.array_equal(out.value, jnp.zeros(2))
    regular = lx.MatrixLinearOperator(jnp.array([[2.0, 0.0], [0.0, 4.0]]))
    assert jnp.allclose(lx.linear_solve(regular, b, guarded).value, jnp.array([0.5, 0.0]))

    class Refusing(lx.LU):
        # A solver that reports its own failure (as a singular block pivot would).
        def compute(self, state, vector, options):
            solution, _, stats = super().compute(state, vector, options)
            return solution, lx.RESULTS.singular, stats

    with pytest.raises(Exception, match="singular|non-finite"):
        lx.linear_solve(regular, b, Refusing())
    guarded = learning._end_to_end._ZeroIfNonFinite(Refusing())
    assert jnp.array_equal(lx.linear_solve(regular, b, guarded).value, jnp.zeros(2))
