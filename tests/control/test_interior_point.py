"""The interior-point root finder on its own (without the semismooth finish)."""

import equinox as eqx
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


@eqx.filter_jit
def _start(residual, problem_args, simulate):
    """The NLP's description and the guess (straight lines, or with `simulate` the
    states the default controls produce) moved inside the box: one program, not the
    dozens of small ones the same operations compile one by one outside `jit`."""
    nlp = residual.nlp_info(*problem_args)
    return nlp, push_into_box(residual.initial_guess(*problem_args, simulate=simulate), nlp)


class _Case:
    """A library problem's KKT system from its default guess, moved inside the box,
    for the interior-point root finder alone."""

    def __init__(self, name: str):
        self.name = name
        self.ex = control.problems.get(name)
        self.tr = control.Trapezoidal(self.ex.N)
        self.residual = KKTResidual(self.tr)
        self.problem_args = (self.ex.problem, self.ex.args)
        self.nlp, self.w0 = _start(self.residual, self.problem_args, simulate=False)

    def solve(self, options=None, **settings):
        solver = control.InteriorPointRootFinder(
            rtol=0.0, atol=1e-9, linear_solver=self.tr.linear_solver(), **settings
        )
        options = {"nlp": self.nlp} if options is None else options
        return optx.root_find(
            self.residual,
            solver,
            self.w0,
            self.problem_args,
            options=options,
            max_steps=100,
            throw=False,
        )

    def z(self, sol):
        return self.residual.split(sol.value, self.ex.problem)[0]

    def cost_error(self, sol) -> float:
        """|cost - IPOPT's tight reference| / reference."""
        cost = float(eqx.filter_jit(self.tr.objective)(self.z(sol), *self.problem_args))
        reference = control.problems.reference_optima()[self.name]["trapezoidal"]["cost"]
        return abs(cost - reference) / abs(reference)


def test_interior_point_reaches_the_ipopt_optimum_to_its_tolerance():
    # The pendulum swing-up, where semismooth Newton alone stalls from this guess.
    case = _Case("pendulum")
    sol = case.solve()
    assert sol.result == optx.RESULTS.successful
    lo, hi = case.tr.bounds(*case.problem_args)
    z = case.z(sol)
    assert bool(jnp.all((z >= lo) & (z <= hi)))
    # KKT error 1e-8 (IPOPT's default tolerance) leaves the cost within ~1e-8.
    assert case.cost_error(sol) <= 1e-6
    assert int(sol.stats["num_steps"]) < 40  # IPOPT takes 28 on the same NLP


def test_stuck_interior_point_restarts_from_the_simulated_guess():
    # predator_prey from the straight-line guess: every line search fails (the
    # linearised dynamics are violently unstable there); the method restarts once from
    # the states the default controls produce and reaches IPOPT's optimum.
    case = _Case("predator_prey")
    _, restart = _start(case.residual, case.problem_args, simulate=True)
    stuck = case.solve({"nlp": case.nlp})
    assert stuck.result != optx.RESULTS.successful
    assert not bool(stuck.stats["restarted"])
    sol = case.solve({"nlp": case.nlp, "restart": restart})
    assert sol.result == optx.RESULTS.successful
    assert bool(sol.stats["restarted"])
    assert case.cost_error(sol) <= 1e-6


def test_second_order_corrections_shorten_cart_pole_barrier_path():
    # cart_pole from the default guess, with tenfold curvature shifts only: at
    # μ ≈ 3e-3 the full steps raise ‖c‖₁ (the Maratos effect) and the filter cuts them
    # to 1/16-1/128; IPOPT's second-order correction, a re-solve with the step's
    # factorisation, keeps them whole.
    case = _Case("cart_pole")
    plain = case.solve(max_soc=0, shift_jump=False)
    corrected = case.solve(max_soc=4, shift_jump=False)
    for sol in (plain, corrected):
        assert sol.result == optx.RESULTS.successful
        assert case.cost_error(sol) <= 1e-6
    assert int(plain.stats["second_order_corrections"]) == 0
    assert int(corrected.stats["second_order_corrections"]) > 0
    assert int(corrected.stats["num_steps"]) <= int(plain.stats["num_steps"]) - 5
    # Fewer backtracks too: the corrected steps are taken whole.
    assert int(corrected.stats["backtracks"]) < int(plain.stats["backtracks"])


def test_the_shift_jump_shortens_cart_pole_barrier_path():
    # Jumping to the shift the failed direction needed lands on other (larger)
    # shifts than the tenfold ladder, and cart_pole's path then avoids the Maratos
    # effect altogether: 15 steps without corrections against 23 on the ladder.
    case = _Case("cart_pole")
    ladder, jump = case.solve(max_soc=0, shift_jump=False), case.solve(max_soc=0)
    for sol in (ladder, jump):
        assert sol.result == optx.RESULTS.successful
        assert case.cost_error(sol) <= 1e-6
    assert int(jump.stats["num_steps"]) <= int(ladder.stats["num_steps"]) - 5
    assert int(jump.stats["backtracks"]) < int(ladder.stats["backtracks"])


def test_a_step_without_a_direction_is_refused_without_a_search():
    # A linear solver that reports every solve as failed (no backward error is
    # small enough): no step has a direction, so none is searched along, and the
    # solve runs out of steps having evaluated nothing but the iterate's residual.
    case = _Case("van_der_pol")
    solver = control.InteriorPointRootFinder(
        rtol=0.0, atol=1e-9, linear_solver=control.BlockTridiagonal(max_backward_error=-1.0)
    )
    sol = optx.root_find(
        case.residual,
        solver,
        case.w0,
        case.problem_args,
        options={"nlp": case.nlp},
        max_steps=3,
        throw=False,
    )
    assert sol.result != optx.RESULTS.successful
    assert int(sol.stats["backtracks"]) == 0
    assert bool(jnp.all(sol.value == case.w0))
