import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from toolkit import control
from toolkit.control._closures import hoist_traced_closures

from ..helpers import central_difference, relative_error


@pytest.fixture(scope="module")
def vdp():
    return control.problems.get("van_der_pol")


def _scaled(vdp, scale):
    # The dynamics close over `scale`; it is not a leaf of the problem.
    return eqx.tree_at(
        lambda p: p.dynamics,
        vdp.problem,
        lambda t, x, u, args: scale * vdp.problem.dynamics(t, x, u, args),
    )


def test_a_derivative_reaches_a_value_the_dynamics_close_over(vdp):
    # Before, `jit(grad)` returned 0 (the value was baked into the program, out of
    # reach of the envelope theorem and the implicit derivative) and the eager
    # `grad` and `jvp` failed to compile.
    tr = control.Trapezoidal(20)

    def cost(scale):
        return control.plan(_scaled(vdp, scale), tr, args=vdp.args).cost

    scale = jnp.array(1.1)
    fd = central_difference(cost, scale, jnp.array(1.0), 1e-5)
    assert abs(float(fd)) > 0.1
    assert relative_error(jax.jit(jax.grad(cost))(scale), fd) < 1e-5
    assert relative_error(jax.grad(cost)(scale), fd) < 1e-5
    assert relative_error(jax.jvp(cost, (scale,), (jnp.array(1.0),))[1], fd) < 1e-5


def test_only_functions_that_close_over_a_traced_value_are_converted(vdp):
    seen = {}

    def hoist(scale):
        problem = _scaled(vdp, scale)
        seen["problem"] = problem
        seen["hoisted"] = hoist_traced_closures(problem, vdp.args)
        return scale

    jax.jit(hoist)(jnp.array(1.0))
    problem, hoisted = seen["problem"], seen["hoisted"]
    assert hoisted.dynamics is not problem.dynamics
    assert len(jax.tree.leaves(eqx.filter(hoisted.dynamics, eqx.is_array))) == 1  # the scale
    assert hoisted.running_cost is problem.running_cost
    # Nothing traced in the closures: the problem itself.
    untouched = hoist_traced_closures(vdp.problem, vdp.args)
    assert untouched.dynamics is vdp.problem.dynamics
    assert untouched.running_cost is vdp.problem.running_cost
