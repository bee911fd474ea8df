import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
import pytest

from toolkit import control
from toolkit.control._planner.implicit_adjoint import ImplicitAdjointWithoutCallback
from toolkit.control._planner.wrapped_solver import WrappedSolver
from toolkit.control._stages import _at_root, _stages

from ..helpers import tree_allclose


class _Singular(WrappedSolver):
    """The inner solver's solution, reported as a singular solve."""

    def compute(self, state, vector, options):
        solution, _, stats = self.inner.compute(state, vector, options)
        return solution, lx.RESULTS.singular, stats


@pytest.fixture(scope="module")
def case():
    # Van der Pol at N = 10 (its control bound active on part of the horizon), the
    # root found by the staged plan, with the derivative attached by `_at_root`.
    ex = control.problems.get("van_der_pol")
    tr = control.Trapezoidal(10)
    problem = ex.problem
    solver = control.KKTNewton().with_tolerance(problem.x0.dtype)
    _, w = _stages(problem, tr, solver, ex.args, None)
    return problem, tr, solver, ex.args, w


def _at(case, adjoint):
    problem, tr, solver, args, w = case

    def outputs(args):
        sol = _at_root(problem, tr, solver, args, w, adjoint)
        return sol.cost, sol.us[3, 0], sol.xs[-1]

    return outputs


def test_derivatives_equal_optimistix_implicit_adjoint(case):
    solver = case[1].linear_solver()
    ours = _at(case, ImplicitAdjointWithoutCallback(solver))
    theirs = _at(case, optx.ImplicitAdjoint(solver))
    args = case[3]
    # Reverse mode (the transposed solve) and forward mode (the solve itself).
    reverse = jax.jacrev(ours)(args)
    assert tree_allclose(reverse, jax.jacrev(theirs)(args), rtol=1e-12, atol=1e-14)
    assert tree_allclose(jax.jacfwd(ours)(args), jax.jacfwd(theirs)(args), rtol=1e-12, atol=1e-14)
    assert tree_allclose(jax.jacfwd(ours)(args), reverse, rtol=1e-10, atol=1e-14)
    assert float(reverse[0]["mu"]) != 0.0
    # A second derivative differentiates the derivative's own solve.
    second = jax.hessian(lambda a: ours(a)[0])(args)
    assert tree_allclose(second, jax.hessian(lambda a: theirs(a)[0])(args), rtol=1e-9)


def test_the_derivative_program_holds_no_host_callback(case):
    # What an eager `jax.grad` of a plan compiles (the staged plan's last program):
    # with optimistix's adjoint, lineax's throwing solves put host callbacks into it
    # (with its primitive's lowering, so they are not in the jaxpr), and JAX's
    # persistent cache then never stores it.
    solver = case[1].linear_solver()
    ours = ImplicitAdjointWithoutCallback(solver)
    for adjoint, callbacks in ((ours, False), (optx.ImplicitAdjoint(solver), True)):

        def control_at(args, adjoint=adjoint):
            return _at(case, adjoint)(args)[1]

        for transform in (jax.grad, jax.jacfwd):
            text = jax.jit(transform(control_at)).lower(case[3]).as_text()
            assert ("callback" in text) == callbacks


def test_a_failed_derivative_solve_is_nan_not_an_error(case):
    adjoint = ImplicitAdjointWithoutCallback(_Singular(case[1].linear_solver()))
    outputs = _at(case, adjoint)
    # A control's derivative goes through the failed solve; the optimal cost's does
    # not (its derivative is the Lagrangian's partial derivative at the root).
    assert jnp.isnan(jax.grad(lambda a: outputs(a)[1])(case[3])["mu"])
    assert jnp.isfinite(jax.grad(lambda a: outputs(a)[0])(case[3])["mu"])
    assert jnp.isfinite(outputs(case[3])[1])


def test_the_default_plan_differentiates_with_it(case):
    # `plan`'s default adjoint: the eager gradient equals the one under `jit`, and
    # both equal the derivative attached with the adjoint explicitly.
    problem, tr, solver, args, _ = case

    def cost(args, adjoint=None):
        return control.plan(problem, tr, solver, args=args, adjoint=adjoint).cost

    eager = jax.grad(cost)(args)
    explicit = jax.grad(cost)(args, optx.ImplicitAdjoint(tr.linear_solver()))
    assert tree_allclose(eager, explicit, rtol=1e-12)
