"""Every library problem against its CasADi + IPOPT optimum on the identical
transcription (`toolkit/control/problems/_ipopt_reference.py` writes the references)."""

import jax
import jax.numpy as jnp
import pytest

from toolkit import control

from ..helpers import central_difference, relative_error


REFERENCE = control.problems.reference_optima()
TRANSCRIPTIONS = {
    "trapezoidal": control.Trapezoidal,
    "hermite_simpson": control.HermiteSimpson,
    "multiple_shooting_rk4": control.MultipleShooting,
    "single_shooting_rk4": control.SingleShooting,
    "discrete": control.Discrete,
}
# A discrete-time problem has one transcription, `Discrete`; the others refuse it
# (tests/control/test_discrete.py), as `Discrete` refuses continuous-time problems.
CONTINUOUS = tuple(k for k in TRANSCRIPTIONS if k != "discrete")


def _transcriptions_of(name):
    dynamics = control.problems.get(name).problem.dynamics
    return ("discrete",) if isinstance(dynamics, control.DiscreteDynamics) else CONTINUOUS


PLANNERS = {"newton": control.KKTNewton(), "least_squares": control.KKTLeastSquares()}

# (problem, transcription, planner) that do not converge from the default guess to
# IPOPT's optimum; strict xfail flags the day they start passing.
KNOWN_FAILURES: set[tuple[str, str, str]] = {
    # Degenerate at the lab's values (see its docstring): these converge to other KKT
    # points, with a dose at the first nodes (multiple shooting: -1.3862832 against
    # IPOPT's -1.3862944; single shooting: -1.3859916 against -1.3862847), or stop
    # near them (least squares on Hermite-Simpson). Newton on trapezoidal and
    # Hermite-Simpson, and least squares on trapezoidal (since its Gauss-Newton steps
    # get a shifted solve where a block pivot is singular), reach IPOPT's optimum.
    *(
        ("bioreactor", t, p)
        for t in CONTINUOUS
        for p in PLANNERS
        if t != "trapezoidal" and (p == "least_squares" or t != "hermite_simpson")
    ),
}


# (problem, transcription, planner) whose outcome turns on rounding: IPOPT itself
# needs 866 iterations on rocket_landing's single-shooting NLP and stops at its
# "acceptable" level; the default planner's interior-point phase reaches the hand-over
# to Newton within its 300 steps or not depending on XLA's code generation (measured
# 2026-12-03: it converged under the suite's compiler flags up to f3cd859, not after
# 94ce9e6, whose change is exact in arithmetic, and not at either commit with XLA's
# full optimisation). Least squares there likewise: it converged in the slow matrix
# of 2026-12-05 at 80ab9a1, and reaches its step limit at that same commit on the
# host of 2026-12-06. There the test asks for IPOPT's optimum or an honest report
# that the solve did not converge, never a wrong point called a success.
ROUNDING_SENSITIVE: set[tuple[str, str, str]] = {
    ("rocket_landing", "single_shooting_rk4", "newton"),
    ("rocket_landing", "single_shooting_rk4", "least_squares"),
}


# One library problem per mechanism in CI, each a separate compilation: an unbounded
# control with a state box (cancer_treatment), a fixed final state (cart_pole), a
# terminal cost (tumour), two controls (bear_populations). van_der_pol (and pendulum,
# through the interior-point fallback) are tests/control/test_plan.py's, and the
# discrete-time invasive_plant tests/control/test_discrete.py's.
CI_PROBLEMS = ("cancer_treatment", "cart_pole", "tumour", "bear_populations")


def _cases():
    for name in control.problems.names():
        for key in _transcriptions_of(name):
            for planner in PLANNERS:
                marks = []
                if (name, key, planner) in KNOWN_FAILURES:
                    marks.append(pytest.mark.xfail(strict=True, reason="no convergence yet"))
                    # Twice a full CI run died of a segmentation fault in XLA's compiler
                    # on the test right after rocket_landing's failing solve; known
                    # failures run with the slow matrix only.
                    marks.append(pytest.mark.slow)
                # CI runs the default planner on the default transcription for one
                # problem per mechanism (CI_PROBLEMS); the rest of the matrix (about an
                # hour on 2 cores) is `pytest -m slow`.
                if name not in CI_PROBLEMS or key != "trapezoidal" or planner != "newton":
                    marks.append(pytest.mark.slow)
                yield pytest.param(name, key, planner, id=f"{name}-{key}-{planner}", marks=marks)


def test_every_problem_has_a_reference_for_every_transcription():
    assert set(REFERENCE) == set(control.problems.names())
    for name, entries in REFERENCE.items():
        assert set(entries) == set(_transcriptions_of(name)), name
        assert all(e["N"] == control.problems.get(name).N for e in entries.values())


@pytest.mark.parametrize("name,key,planner", list(_cases()))
def test_plans_to_the_ipopt_optimum(name, key, planner):
    ex = control.problems.get(name)
    tr = TRANSCRIPTIONS[key](ex.N)
    sol = control.plan(ex.problem, tr, PLANNERS[planner], args=ex.args, throw=False)
    if (name, key, planner) in ROUNDING_SENSITIVE and sol.result != control.RESULTS.successful:
        stopped = control.RESULTS.nonlinear_max_steps_reached
        assert sol.result == stopped, control.RESULTS[sol.result]
        assert int(sol.stats["num_steps"]) >= PLANNERS[planner].max_steps
        pytest.xfail(f"did not converge here, and said so ({float(sol.cost)})")
    assert sol.result == control.RESULTS.successful, control.RESULTS[sol.result]
    reference = REFERENCE[name][key]["cost"]
    # A lower local optimum of a non-convex problem would be acceptable; none is
    # known for these, so the test asks for the same one.
    assert abs(float(sol.cost) - reference) <= 1e-6 * abs(reference)
    c = jnp.where(tr.constraint_mask(ex.problem), tr.constraints(sol.z, ex.problem, ex.args), 0)
    assert float(jnp.max(jnp.abs(c))) <= 1e-8
    lo, hi = tr.bounds(ex.problem, ex.args)
    assert bool(jnp.all((sol.z >= lo) & (sol.z <= hi)))
    assert jnp.allclose(sol.xs[0], ex.problem.x0)
    if ex.problem.xT is not None:
        assert jnp.allclose(sol.xs[-1], ex.problem.xT, atol=1e-8)


@pytest.mark.parametrize("name", control.problems.names())
def test_problem_is_well_formed(name):
    ex = control.problems.get(name)
    assert ex.name == name and ex.description and ex.N >= 1
    ex.problem.check(ex.args)
    module = __import__(f"toolkit.control.problems.{name}", fromlist=[name])
    doc = getattr(module, name).__doc__
    assert doc and len(doc) > 200  # names the model, its source and its parameters


# One physical parameter per problem and the step of the central difference that
# checks the implicit gradient of the optimal trapezoidal (discrete-time problems:
# `Discrete`) cost with respect to it.
# van_der_pol (mu, x0 and t1), cancer_treatment (delta) and pendulum (length) are
# checked in tests/control/test_plan.py.
GRADIENT_CHECKS = {
    "bacteria": ("r", 1e-5),
    "mould_fungicide": ("r", 1e-5),
    "cart_pole": ("m2", 1e-5),
    # gravity is 0.0025: a step of 1e-5 would be 0.4% of it.
    "mountain_car": ("gravity", 1e-7),
    "seir": ("b", 1e-5),
    "simple_case": ("C", 1e-5),
    "simple_case_with_bounds": ("A", 1e-5),
    "fish_harvest": ("m", 1e-5),
    "epidemic_seirn": ("b", 1e-5),
    "hiv_treatment": ("k", 1e-10),
    "bear_populations": ("r", 1e-5),
    "glucose": ("A", 1e-5),
    "timber_harvest": ("k", 1e-5),
    # Not G: at the optimum (no dose) the cost does not depend on G, and a larger G
    # makes a dose at t = 0 pay, so J*(G) has a kink there (see the docstring).
    "bioreactor": ("D", 1e-5),
    "predator_prey": ("d_1", 1e-5),
    "tumour": ("G", 1e-6),
    "rocket_landing": ("g", 1e-5),
    "invasive_plant": ("B", 1e-5),
}
# Where the default parameters sit on a kink of the optimal value J*(p) of the
# discretised problem, the gradient is checked nearby instead. timber_harvest: at
# k = 1 (r = 0) the switch time T - 1/k = 4 falls exactly on a grid node, and the
# one-sided differences of J* differ (-21991 right, -21717 left, the envelope
# theorem's -21840 in between); at k = 1.05 J* is smooth.
GRADIENT_AT = {"timber_harvest": {"k": 1.05}}
GRADIENT_FAILURES: dict[str, str] = {}


def _gradient_cases():
    for name, (parameter, eps) in GRADIENT_CHECKS.items():
        marks = [pytest.mark.slow]
        if name in GRADIENT_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=GRADIENT_FAILURES[name]))
        yield pytest.param(name, parameter, eps, id=f"{name}-{parameter}", marks=marks)


@pytest.mark.parametrize("name,parameter,eps", list(_gradient_cases()))
def test_gradient_of_the_optimal_cost(name, parameter, eps):
    ex = control.problems.get(name)
    tr = TRANSCRIPTIONS[_transcriptions_of(name)[0]](ex.N)

    args = {**ex.args, **{k: jnp.array(v) for k, v in GRADIENT_AT.get(name, {}).items()}}

    def cost(args):
        return control.plan(ex.problem, tr, args=args).cost

    g = jax.grad(cost)(args)
    direction = jax.tree_util.tree_map(jnp.zeros_like, args)
    direction[parameter] = jnp.array(1.0)
    fd = central_difference(cost, args, direction, eps)
    assert relative_error(g[parameter], fd) < 1e-5


def test_bad_parameters_get_a_clear_error():
    ex = control.problems.get("cancer_treatment")
    tr = control.Trapezoidal(10)
    with pytest.raises(ValueError, match=r"missing parameter\(s\) \['delta'\]"):
        control.plan(ex.problem, tr, args={"r": ex.args["r"], "a": ex.args["a"]})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['b'\]"):
        control.plan(ex.problem, tr, args={**ex.args, "b": jnp.array(1.0)})
    with pytest.raises(ValueError, match="parameter 'r' must be a scalar"):
        control.plan(ex.problem, tr, args={**ex.args, "r": jnp.ones(2)})
    # A negative growth rate is outside the model's range: caught before the solve
    # (and under a user's jit at run time: tests/control/test_errors.py), with the
    # parameter named.
    with pytest.raises(ValueError, match=r"parameter 'r' must be finite and in \[0, inf\)"):
        control.plan(ex.problem, tr, args={**ex.args, "r": jnp.array(-0.3)})
    with pytest.raises(ValueError, match="parameter 'delta' must be finite"):
        control.plan(ex.problem, tr, args={**ex.args, "delta": jnp.array(jnp.nan)})
