import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from toolkit import control

from ..helpers import host_callbacks


def _f(t, x, u, args):
    return jnp.stack([x[1], u[0] - args["k"] * x[0]])


def _L(t, x, u, args):
    return x[0] ** 2 + u[0] ** 2


U = (jnp.array([-1.0]), jnp.array([1.0]))
ARGS = {"k": jnp.array(1.0)}


def _problem(**kwargs):
    base = dict(dynamics=_f, running_cost=_L, x0=jnp.array([1.0, 0.0]), t1=2.0, u_bounds=U)
    base.update(kwargs)
    return control.OptimalControlProblem(**base)


def test_wrong_x0_shape():
    with pytest.raises(ValueError, match="x0"):
        _problem(x0=jnp.ones((2, 2)))


def test_bounds_lo_greater_than_hi():
    with pytest.raises(ValueError, match=r"u_bounds.*lo > hi.*\[0\]"):
        _problem(u_bounds=(jnp.array([1.0]), jnp.array([-1.0])))
    with pytest.raises(ValueError, match=r"x_bounds.*lo > hi.*\[1\]"):
        _problem(x_bounds=(jnp.array([-1.0, 2.0]), jnp.array([1.0, 1.0])))


def test_bounds_wrong_shapes():
    with pytest.raises(ValueError, match="u_bounds"):
        _problem(u_bounds=(jnp.array([-1.0]), jnp.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="x_bounds.*length 3.*2 components"):
        _problem(x_bounds=(-jnp.ones(3), jnp.ones(3)))
    with pytest.raises(ValueError, match="u_bounds"):
        _problem(u_bounds=None)


def test_final_state_shape_and_compatibility():
    with pytest.raises(ValueError, match="xT"):
        _problem(xT=jnp.zeros(3))
    with pytest.raises(ValueError, match=r"xT.*outside.*x_bounds.*\[0\]"):
        _problem(xT=jnp.array([5.0, 0.0]), x_bounds=(-jnp.ones(2), jnp.ones(2)))


def test_horizon():
    with pytest.raises(ValueError, match="t1"):
        _problem(t1=0.0)
    with pytest.raises(ValueError, match=r"`t1` must be greater than `t0`, got t0=1.0, t1=-1.0"):
        _problem(t0=1.0, t1=-1.0)


NAN, INF = float("nan"), float("inf")


# Non-finite data of the problem, refused when it is built (issue 25, item 13): each
# case names the field, the bad value and, for an array, the component.
def _at(value, i):
    return rf"must be finite, got \[{value}\] at component\(s\) \[{i}\]"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param(dict(x0=jnp.array([NAN, 0.0])), "`x0` " + _at("nan", 0), id="x0-nan"),
        pytest.param(dict(x0=jnp.array([0.0, INF])), "`x0` " + _at("inf", 1), id="x0-inf"),
        pytest.param(dict(t1=INF), r"`t1` must be finite, got inf\.$", id="t1-inf"),
        pytest.param(dict(t1=NAN), r"`t1` must be finite, got nan", id="t1-nan"),
        pytest.param(dict(t0=-INF), r"`t0` must be finite, got -inf", id="t0-inf"),
        pytest.param(dict(xT=jnp.array([0.0, NAN])), "`xT` " + _at("nan", 1), id="xT-nan"),
        pytest.param(
            dict(u_bounds=(jnp.array([NAN]), jnp.array([1.0]))),
            r"`u_bounds` contains NaN at component\(s\) \[0\]",
            id="u_bounds-nan",
        ),
        pytest.param(
            dict(x_bounds=(-jnp.ones(2), jnp.array([1.0, NAN]))),
            r"`x_bounds` contains NaN at component\(s\) \[1\]",
            id="x_bounds-nan",
        ),
    ],
)
def test_non_finite_problem_data(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _problem(**kwargs)


def test_traced_problem_data_is_not_checked_when_built():
    # Users vmap and grad over x0 and t1: a traced value passes through when the
    # problem is built (the later solve reports what goes wrong).
    def build(x0, t1):
        return _problem(x0=x0, t1=t1, xT=x0).t1

    assert jax.jit(build)(jnp.array([NAN, 0.0]), jnp.array(INF)) == INF
    ts = jax.vmap(build, in_axes=(None, 0))(jnp.array([1.0, 0.0]), jnp.array([1.0, 2.0]))
    assert ts.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "cls",
    [control.Trapezoidal, control.HermiteSimpson, control.MultipleShooting, control.SingleShooting],
)
def test_too_few_intervals(cls):
    with pytest.raises(ValueError, match="N"):
        cls(0)


def test_dynamics_returning_the_wrong_shape():
    problem = _problem(dynamics=lambda t, x, u, args: jnp.zeros(3))
    with pytest.raises(ValueError, match=r"dynamics.*\(2,\).*\(3,\)"):
        control.plan(problem, control.Trapezoidal(10), args=ARGS)


def test_running_cost_not_scalar():
    problem = _problem(running_cost=lambda t, x, u, args: x)
    with pytest.raises(ValueError, match="running_cost.*scalar"):
        control.plan(problem, control.Trapezoidal(10), args=ARGS)


def test_nan_in_dynamics_is_reported():
    def f(t, x, u, args):
        return jnp.stack([jnp.log(x[0] - 2.0), u[0]])  # NaN for x0 = (1, 0)

    problem = _problem(dynamics=f)
    sol = control.plan(problem, control.Trapezoidal(10), args=ARGS, throw=False)
    assert sol.result == control.RESULTS.nonfinite_kkt
    assert "NaN" in control.RESULTS[sol.result]
    with pytest.raises(Exception, match="non-finite.*NaN"):
        control.plan(problem, control.Trapezoidal(10), args=ARGS)


@pytest.mark.parametrize(
    "solver", [control.KKTNewton(), control.KKTNewton(fallback_after=0)], ids=["default", "alone"]
)
def test_nan_met_during_the_solve_is_reported(solver):
    # Issue 25, item 10: x' = -sqrt(x) from x(0) = 1 reaches 0 at t = 2, where sqrt has
    # an infinite slope; Newton's steps take x below 0, where sqrt is NaN. The initial
    # guess is finite. The solve used to run out of steps (430) and say so; it stops
    # once its line searches fail on NaN at the largest Hessian shift, and says why.
    def f(t, x, u, args):
        return jnp.stack([-jnp.sqrt(x[0])])

    problem = _problem(dynamics=f, x0=jnp.array([1.0]), t1=4.0, u_bounds=(U[0] * 0, U[1]))
    tr = control.Trapezoidal(10)
    sol = control.plan(problem, tr, solver, args=ARGS, throw=False)
    assert sol.result == control.RESULTS.nonfinite_kkt
    assert sol.stats["num_steps"] < 430
    with pytest.raises(Exception, match="non-finite.*NaN.*square root"):
        control.plan(problem, tr, solver, args=ARGS)


def test_a_stall_at_the_precision_floor_says_so():
    vdp = control.problems.get("van_der_pol")
    # Issue 25, item 1: float32 cannot resolve the KKT conditions to 1e-9: the solve
    # stalls close to the solution, and says so rather than "maximum number of steps".
    problem = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, vdp.problem
    )
    solver = control.KKTNewton(atol=1e-9, max_steps=12, fallback_after=0)
    args = {"mu": jnp.array(1.0, jnp.float32)}
    sol = control.plan(problem, control.Trapezoidal(100), solver, args=args, throw=False)
    assert sol.result == control.RESULTS.precision_floor
    with pytest.raises(eqx.EquinoxRuntimeError, match="precision floor"):
        control.plan(problem, control.Trapezoidal(100), solver, args=args)
    assert control.KKTNewton().with_tolerance(jnp.float64).atol == 1e-9


def test_max_iterations_reached_is_reported():
    ex = control.problems.get("van_der_pol")
    solver = control.KKTNewton(max_steps=1, interior_point_steps=1)
    sol = control.plan(ex.problem, control.Trapezoidal(50), solver, args=ex.args, throw=False)
    assert sol.result == control.RESULTS.nonlinear_max_steps_reached
    with pytest.raises(Exception, match="maximum number of steps"):
        control.plan(ex.problem, control.Trapezoidal(50), solver, args=ex.args)


def test_warm_start_from_another_transcription():
    ex = control.problems.get("van_der_pol")
    sol = control.plan(ex.problem, control.Trapezoidal(20), args=ex.args)
    with pytest.raises(ValueError, match="init"):
        control.plan(ex.problem, control.Trapezoidal(30), args=ex.args, init=sol)


def _nan_problem():
    def f(t, x, u, args):
        return jnp.stack([jnp.log(x[0] - 2.0), u[0]])  # NaN for x0 = (1, 0)

    return _problem(dynamics=f)


def test_failure_raises_under_a_users_jit_and_vmap():
    problem = _nan_problem()
    ks = jnp.array([1.0, 2.0])

    def cost(k):
        return control.plan(problem, control.Trapezoidal(4), args={"k": k}).cost

    with pytest.raises(Exception, match="non-finite.*NaN"):
        jax.jit(jax.vmap(cost))(ks).block_until_ready()

    # Reported, not raised, with throw=False.
    def result(k):
        return control.plan(problem, control.Trapezoidal(4), args={"k": k}, throw=False).result

    batched = jax.vmap(result)(ks)
    assert (batched._value == control.RESULTS.nonfinite_kkt._value).all()


def test_parameter_out_of_range_under_a_users_jit():
    # `plan` calls the problem's `args_check` around its compiled program; on traced
    # values it checks in the user's program instead.
    ex = control.problems.get("cancer_treatment")
    bad = {**ex.args, "r": jnp.array(-0.3)}
    message = r"parameter 'r' must be finite and in \[0, inf\)"
    with pytest.raises(Exception, match=message):
        jax.block_until_ready(jax.jit(ex.problem.args_check)(bad))
    assert jax.jit(ex.problem.args_check)(ex.args) == ex.args
    with pytest.raises(ValueError, match="parameter 'r' must be a number"):
        control.plan(ex.problem, control.Trapezoidal(10), args={**ex.args, "r": "one"})


def test_parameter_out_of_range_under_a_users_jit_is_reported_without_throw():
    # With `throw=False` the range check's verdict goes into the result: the user's
    # program holds no host callback, and a batch flags only its bad member.
    ex = control.problems.get("cancer_treatment")
    tr = control.Trapezoidal(10)

    def result(r):
        return control.plan(ex.problem, tr, args={**ex.args, "r": r}, throw=False).result

    rs = jnp.array([0.3, -0.3, jnp.nan])
    assert host_callbacks(jax.make_jaxpr(result)(rs[0])) == []
    results = jax.jit(jax.vmap(result))(rs)
    assert (results == control.RESULTS.successful).tolist() == [True, False, False]
    assert (results == control.RESULTS.parameter_out_of_range).tolist() == [False, True, True]
    assert "out of its physical range" in control.RESULTS[control.RESULTS.parameter_out_of_range]


@pytest.mark.parametrize(
    "transcription", [control.Trapezoidal(4), control.MultipleShooting(4)], ids=type
)
def test_compiled_plan_and_gradient_hold_no_host_callback(transcription):
    # A host callback in the compiled plan keeps JAX's persistent cache from storing
    # it: the checks with `throw=True` and the range checks of `args` run around it.
    # (The gradient's program holds the plan's.)
    ex = control.problems.get("cancer_treatment")

    def cost(args):
        return control.plan(ex.problem, transcription, args=args).cost

    jaxpr = jax.make_jaxpr(jax.grad(cost))(ex.args)
    assert host_callbacks(jaxpr, inside="_plan") == []
    # Tracing a user's transformation around `plan` leaves the checks outside it.
    assert host_callbacks(jaxpr) != []


def test_an_eager_gradient_checks_the_parameters_on_the_host(monkeypatch):
    # Under an eager `jax.grad` the parameters' values are known: the range check runs
    # on the host, as for concrete values (no `eqx.error_if`, a host-callback program
    # compiled again in every process), and with `throw=False` it is reported.
    from toolkit.control.problems import _example

    def no_error_if(*args, **kwargs):
        raise AssertionError("a range check compiled a program")

    monkeypatch.setattr(_example.eqx, "error_if", no_error_if)
    ex = control.problems.get("cancer_treatment")
    tr = control.Trapezoidal(10)

    def cost(r, throw=True):
        return control.plan(ex.problem, tr, args={**ex.args, "r": r}, throw=throw).cost

    g = jax.grad(cost)(ex.args["r"])
    assert jnp.isfinite(g)
    message = r"parameter 'r' must be finite and in \[0, inf\), got -0.3"
    with pytest.raises(ValueError, match=message):
        jax.grad(cost)(jnp.array(-0.3))

    def result(r):
        sol = control.plan(ex.problem, tr, args={**ex.args, "r": r}, throw=False)
        return sol.cost, sol.result

    _, bad = jax.grad(result, has_aux=True)(jnp.array(-0.3))
    _, good = jax.grad(result, has_aux=True)(ex.args["r"])
    assert bad == control.RESULTS.parameter_out_of_range
    assert good == control.RESULTS.successful
