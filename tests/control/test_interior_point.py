"""The interior-point root finder on its own (without the semismooth finish)."""

import jax.numpy as jnp
import optimistix as optx

from toolkit import control
from toolkit.control._kkt import KKTResidual
from toolkit.control._nlp import push_into_box


def test_push_into_box_moves_every_bounded_unknown_inside():
    ex = control.problems.get("cancer_treatment")
    residual = KKTResidual(control.Trapezoidal(20))
    nlp = residual.nlp_info(ex.problem, ex.args)
    w = jnp.broadcast_to(nlp.lower.at[jnp.isinf(nlp.lower)].set(0.0), nlp.lower.shape)
    pushed = push_into_box(w, nlp)
    free = nlp.primal_mask & (nlp.lower < nlp.upper)
    assert bool(jnp.all(jnp.where(free, pushed > nlp.lower, True)))
    assert bool(jnp.all(jnp.where(free, pushed < nlp.upper, True)))
    # Unknowns that are fixed or not primal are left alone.
    assert bool(jnp.all(jnp.where(free, True, pushed == w)))


def test_interior_point_reaches_the_ipopt_optimum_to_its_tolerance():
    # The pendulum swing-up, where semismooth Newton alone stalls from this guess.
    ex = control.problems.get("pendulum")
    tr = control.Trapezoidal(ex.N)
    residual = KKTResidual(tr)
    problem_args = (ex.problem, ex.args)
    nlp = residual.nlp_info(*problem_args)
    w0 = push_into_box(residual.initial_guess(*problem_args), nlp)
    solver = control.InteriorPointRootFinder(rtol=0.0, atol=1e-9, linear_solver=tr.linear_solver())
    sol = optx.root_find(
        residual, solver, w0, problem_args, options={"nlp": nlp}, max_steps=100, throw=False
    )
    assert sol.result == optx.RESULTS.successful
    z, _ = residual.split(sol.value, ex.problem)
    lo, hi = tr.bounds(*problem_args)
    assert bool(jnp.all((z >= lo) & (z <= hi)))
    cost = tr.objective(z, *problem_args)
    reference = control.problems.reference_optima()["pendulum"]["trapezoidal"]["cost"]
    # KKT error 1e-8 (IPOPT's default tolerance) leaves the cost within ~1e-8.
    assert abs(float(cost) - reference) <= 1e-6 * reference
    assert int(sol.stats["num_steps"]) < 40  # IPOPT takes 28 on the same NLP


def test_stuck_interior_point_restarts_from_the_simulated_guess():
    # predator_prey from the straight-line guess: every line search fails (the
    # linearised dynamics are violently unstable there); the method restarts once from
    # the states the default controls produce and reaches IPOPT's optimum.
    ex = control.problems.get("predator_prey")
    tr = control.Trapezoidal(ex.N)
    residual = KKTResidual(tr)
    problem_args = (ex.problem, ex.args)
    nlp = residual.nlp_info(*problem_args)
    w0 = push_into_box(residual.initial_guess(*problem_args), nlp)
    restart = push_into_box(residual.initial_guess(*problem_args, simulate=True), nlp)
    solver = control.InteriorPointRootFinder(rtol=0.0, atol=1e-9, linear_solver=tr.linear_solver())

    def solve(options):
        return optx.root_find(
            residual, solver, w0, problem_args, options=options, max_steps=100, throw=False
        )

    stuck = solve({"nlp": nlp})
    assert stuck.result != optx.RESULTS.successful
    assert not bool(stuck.stats["restarted"])
    sol = solve({"nlp": nlp, "restart": restart})
    assert sol.result == optx.RESULTS.successful
    assert bool(sol.stats["restarted"])
    z, _ = residual.split(sol.value, ex.problem)
    cost = tr.objective(z, *problem_args)
    reference = control.problems.reference_optima()["predator_prey"]["trapezoidal"]["cost"]
    assert abs(float(cost) - reference) <= 1e-6 * reference


def test_second_order_corrections_shorten_cart_pole_barrier_path():
    # cart_pole from the default guess: at μ ≈ 3e-3 the full steps raise ‖c‖₁ (the
    # Maratos effect) and the filter cuts them to 1/16-1/128; IPOPT's second-order
    # correction, a re-solve with the step's factorisation, keeps them whole.
    ex = control.problems.get("cart_pole")
    tr = control.Trapezoidal(ex.N)
    residual = KKTResidual(tr)
    problem_args = (ex.problem, ex.args)
    nlp = residual.nlp_info(*problem_args)
    w0 = push_into_box(residual.initial_guess(*problem_args), nlp)

    def solve(max_soc):
        solver = control.InteriorPointRootFinder(
            rtol=0.0, atol=1e-9, linear_solver=tr.linear_solver(), max_soc=max_soc
        )
        return optx.root_find(
            residual, solver, w0, problem_args, options={"nlp": nlp}, max_steps=100, throw=False
        )

    plain, corrected = solve(0), solve(4)
    reference = control.problems.reference_optima()["cart_pole"]["trapezoidal"]["cost"]
    for sol in (plain, corrected):
        assert sol.result == optx.RESULTS.successful
        cost = tr.objective(residual.split(sol.value, ex.problem)[0], *problem_args)
        assert abs(float(cost) - reference) <= 1e-6 * reference
    assert int(plain.stats["second_order_corrections"]) == 0
    assert int(corrected.stats["second_order_corrections"]) > 0
    assert int(corrected.stats["num_steps"]) <= int(plain.stats["num_steps"]) - 5
    # Fewer backtracks too: the corrected steps are taken whole.
    assert int(corrected.stats["backtracks"]) < int(plain.stats["backtracks"])
