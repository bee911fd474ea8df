"""Discrete-time problems (`DiscreteDynamics`), planned through the `Discrete`
transcription: against IPOPT's optimum and an exact Riccati solution, under jit, vmap
and grad, and the errors for a wrong transcription or bad parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import control

from ..helpers import central_difference, relative_error, tree_allclose


REFERENCE = control.problems.reference_optima()


@pytest.fixture(scope="module")
def invasive_plant():
    return control.problems.get("invasive_plant")


def _simulate(problem, us, args):
    xs = [problem.x0]
    ts = jnp.arange(us.shape[0], dtype=problem.x0.dtype)  # t_k = k for t1 - t0 = N
    for t, u in zip(ts, us):
        xs.append(problem.dynamics(t, xs[-1], u, args))
    return jnp.stack(xs)


def test_invasive_plant_plans_to_the_ipopt_optimum(invasive_plant):
    ex = invasive_plant
    tr = control.Discrete(ex.N)
    sol = control.plan(ex.problem, tr, args=ex.args)
    reference = REFERENCE["invasive_plant"]["discrete"]["cost"]
    assert abs(float(sol.cost) - reference) <= 1e-6 * abs(reference)
    # Feasible: the states are the map's iterates under the planned controls, which
    # stay in their box; there is no control after the last step.
    assert sol.ts.shape == (ex.N + 1,) and jnp.allclose(sol.ts, jnp.arange(ex.N + 1.0))
    assert jnp.allclose(_simulate(ex.problem, sol.us[:-1], ex.args), sol.xs, rtol=0, atol=1e-10)
    lo, hi = ex.problem.u_bounds
    assert bool(jnp.all((sol.us[:-1] >= lo[None]) & (sol.us[:-1] <= hi[None])))
    assert bool(jnp.all(jnp.isnan(sol.us[-1])))
    # At the default weight B = 1 every patch is left to grow and removed entirely in
    # the last year, at cost 5 B.
    assert jnp.allclose(sol.us[-2], 1.0) and jnp.allclose(sol.us[:-2], 0.0, atol=1e-12)


def test_discrete_lqr_against_the_riccati_recursion():
    # x_{k+1} = a x_k + b u_k, cost sum_{k<N} (q x_k² + r u_k²) + s x_N²: the optimal
    # cost is P_0 x_0² with P_N = s, P_k = q + a² P_{k+1} - (a b P_{k+1})² / (r + b² P_{k+1}),
    # and the costates are p_k = 2 P_k x_k.
    a, b, q, r, s, x0, N = 1.1, 0.5, 1.0, 0.3, 2.0, 1.5, 12
    problem = control.OptimalControlProblem(
        dynamics=control.DiscreteDynamics(lambda t, x, u, p: p["a"] * x + p["b"] * u),
        running_cost=lambda t, x, u, p: q * x[0] ** 2 + r * u[0] ** 2,
        terminal_cost=lambda x, p: s * x[0] ** 2,
        x0=jnp.array([x0]),
        t1=3.0,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
    )
    P = [s]
    for _ in range(N):
        Pn = P[0]
        P.insert(0, q + a**2 * Pn - (a * b * Pn) ** 2 / (r + b**2 * Pn))
    args = {"a": jnp.array(a), "b": jnp.array(b)}
    sol = control.plan(problem, control.Discrete(N), args=args)
    assert relative_error(sol.cost, P[0] * x0**2) < 1e-12
    assert jnp.allclose(sol.ts, jnp.linspace(0.0, 3.0, N + 1))
    expected = 2 * jnp.array(P[1:])[:, None] * sol.xs[1:]
    assert jnp.allclose(sol.costates, expected, rtol=1e-10, atol=1e-12)


def test_jit_vmap_and_grad(invasive_plant):
    # One compilation of jit(vmap(grad(plan))) over 8 parameter sets: the defaults, at
    # which every patch is removed in the last year (optimal cost 5 B), and weights and
    # spread rates at which the removal is spread over the years.
    ex = invasive_plant
    tr = control.Discrete(ex.N)

    def cost(args):
        return control.plan(ex.problem, tr, args=args).cost

    def cost_and_plan(args):
        # `throw=False`: a failure check under `jit` is a host callback, which JAX's
        # persistent cache cannot store; the vmapped plans are compared to eager ones.
        sol = control.plan(ex.problem, tr, args=args, throw=False)
        return sol.cost, (sol.xs, sol.us)

    batch = {
        "B": jnp.concatenate([ex.args["B"][None], jnp.linspace(8.0, 15.0, 7)]),
        "k": jnp.concatenate([ex.args["k"][None], jnp.linspace(0.8, 1.2, 7)]),
        "eps": jnp.full((8,), ex.args["eps"]),
    }
    (costs, (xs, us)), grads = jax.jit(jax.vmap(jax.value_and_grad(cost_and_plan, has_aux=True)))(
        batch
    )

    # vmap: the same plans as 8 separate solves.
    for i in range(8):
        args = jax.tree_util.tree_map(lambda v: v[i], batch)
        sol = control.plan(ex.problem, tr, args=args)
        assert tree_allclose(
            (costs[i], xs[i], us[i, :-1]), (sol.cost, sol.xs, sol.us[:-1]), rtol=1e-10, atol=1e-12
        )
    assert bool(jnp.all(jnp.isnan(us[:, -1])))
    assert jnp.allclose(costs[0], 5.0)
    assert np.unique(np.round(np.asarray(costs), 6)).size == 8

    # grad: the implicit gradients against central differences, w.r.t. the weight of
    # the effort at the defaults (the optimal cost is 5 B there) and w.r.t. the spread
    # rate where the removal is spread over the years.
    for i, parameter in ((0, "B"), (4, "k")):
        args = jax.tree_util.tree_map(lambda v: v[i], batch)
        direction = jax.tree_util.tree_map(jnp.zeros_like, args)
        direction[parameter] = jnp.array(1.0)
        fd = central_difference(cost, args, direction, 1e-5)
        assert relative_error(grads[parameter][i], fd) < 1e-5, (parameter, grads[parameter][i], fd)
    assert jnp.allclose(grads["B"][0], 5.0)
    assert float(grads["k"][4]) > 0  # a faster spread costs more


@pytest.mark.parametrize(
    "transcription",
    [
        control.Trapezoidal(10),
        control.HermiteSimpson(10),
        control.MultipleShooting(10),
        control.SingleShooting(10),
    ],
)
def test_continuous_transcriptions_refuse_a_discrete_problem(invasive_plant, transcription):
    ex = invasive_plant
    name = type(transcription).__name__
    with pytest.raises(ValueError, match=rf"`{name}` transcribes continuous-time dynamics"):
        control.plan(ex.problem, transcription, args=ex.args)


def test_discrete_refuses_a_continuous_problem_and_another_number_of_steps(invasive_plant):
    ex = control.problems.get("van_der_pol")
    with pytest.raises(ValueError, match="not wrapped in `control.DiscreteDynamics`"):
        control.plan(ex.problem, control.Discrete(10), args=ex.args)
    ex = invasive_plant
    with pytest.raises(ValueError, match=r"has 10 steps, but `Discrete\(N=20\)`"):
        control.plan(ex.problem, control.Discrete(20), args=ex.args)


def test_bad_arguments_get_a_clear_error(invasive_plant):
    ex = invasive_plant
    tr = control.Discrete(ex.N)
    with pytest.raises(ValueError, match=r"missing parameter\(s\) \['eps'\]"):
        control.plan(ex.problem, tr, args={"B": ex.args["B"], "k": ex.args["k"]})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['r'\]"):
        control.plan(ex.problem, tr, args={**ex.args, "r": jnp.array(1.0)})
    with pytest.raises(ValueError, match="parameter 'k' must be a scalar"):
        control.plan(ex.problem, tr, args={**ex.args, "k": jnp.ones(5)})
    with pytest.raises(Exception, match=r"parameter 'B' must be finite and in \[0, inf\)"):
        control.plan(ex.problem, tr, args={**ex.args, "B": jnp.array(-1.0)})
    with pytest.raises(ValueError, match="`fn` must be a function"):
        control.DiscreteDynamics(1.0)
    with pytest.raises(ValueError, match="`steps` must be None or an integer >= 1"):
        control.DiscreteDynamics(lambda t, x, u, p: x, steps=0)
    with pytest.raises(ValueError, match="`N` .* must be an integer >= 1"):
        control.Discrete(0)
