"""The planner's strategy objects on their own and composed (`Newton`, `BarrierPath`,
`GaussNewton`, `Restart`, `Fallback`), and the presets as their compositions."""

from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
import pytest

from toolkit import control
from toolkit.control._planner.regularised_step import next_shift, regularised_newton_step
from toolkit.control._planner.restart import RestartPoint
from toolkit.control._planner.semismooth_newton import _breakpoint
from toolkit.control._stages import can_run_in_stages

from ..helpers import kkt_case


def test_the_presets_are_compositions_of_strategy_objects():
    assert control.KKTNewton().composition() == control.Fallback(
        control.Newton(shift_jump=True), control.BarrierPath(), after=10
    )
    assert control.KKTNewton(max_steps=7, fallback_after=0).composition() == control.Newton(
        max_steps=7
    )
    assert control.KKTLeastSquares().composition() == control.Fallback(
        control.GaussNewton(watchdog=2), control.BarrierPath(), after=0
    )
    assert (
        control.KKTLeastSquares(interior_point_first=False, fallback_after=0).composition()
        == control.GaussNewton()
    )
    settings = control.KKTNewton(atol=1e-7, interior_point_steps=50).composition()
    assert settings.rescue == control.BarrierPath(atol=1e-7, max_steps=50)


def test_a_fallback_checks_what_it_composes():
    inner = control.Fallback(control.Newton(), control.BarrierPath())
    with pytest.raises(TypeError, match="nest a Fallback as `rescue`"):
        control.Fallback(inner, control.BarrierPath())
    with pytest.raises(ValueError, match="`after` must be >= 0"):
        control.Fallback(control.Newton(), control.BarrierPath(), after=-1)


def test_the_rescue_takes_the_first_methods_tolerance():
    fallback = control.Fallback(control.Newton(atol=1e-7), control.BarrierPath())
    assert fallback.with_tolerance(jnp.float64).rescue.atol == 1e-7
    set_apart = control.Fallback(control.Newton(), control.BarrierPath(atol=1e-6))
    tolerant = set_apart.with_tolerance(jnp.float32)
    assert (tolerant.atol, tolerant.rescue.atol) == (1e-4, 1e-6)
    nested = control.Fallback(
        control.GaussNewton(), control.Fallback(control.Newton(), control.BarrierPath())
    )
    assert nested.with_tolerance(jnp.float64).rescue.rescue.atol == 1e-9


def test_a_composed_fallback_rescues_a_stall():
    # From the default guess semismooth Newton alone stalls on the pendulum swing-up;
    # a Fallback to the barrier path, composed by hand, is the preset's plan exactly.
    ex = control.problems.get("pendulum")
    tr = control.Trapezoidal(ex.N)
    alone = control.plan(ex.problem, tr, control.Newton(), args=ex.args, throw=False)
    assert alone.result != control.RESULTS.successful
    composed = control.Fallback(control.Newton(), control.BarrierPath(), after=10)
    sol = control.plan(ex.problem, tr, composed, args=ex.args)
    assert sol.result == control.RESULTS.successful
    assert int(sol.stats["interior_point_steps"]) > 0
    reference = control.problems.reference_optima()["pendulum"]["trapezoidal"]["cost"]
    assert abs(float(sol.cost) - reference) <= 1e-6 * abs(reference)
    preset = control.plan(ex.problem, tr, control.KKTNewton(), args=ex.args)
    assert float(preset.cost) == float(sol.cost)
    assert int(preset.stats["num_steps"]) == int(sol.stats["num_steps"])


def test_restart_moves_a_stuck_barrier_path():
    # predator_prey from the straight-line guess: every line search of the barrier
    # method fails; with `Restart` it starts once more from the simulated guess and
    # reaches IPOPT's optimum, without it it gives up.
    case = kkt_case("predator_prey")
    ex, tr, residual, problem_args = case.ex, case.tr, case.residual, case.problem_args
    solve = case.solve

    stuck = solve(control.BarrierPath(atol=1e-9, max_steps=100, restart=None))
    assert stuck.result != optx.RESULTS.successful and not bool(stuck.stats["restarted"])
    sol = solve(control.BarrierPath(atol=1e-9, max_steps=100, restart=control.Restart()))
    assert sol.result == optx.RESULTS.successful and bool(sol.stats["restarted"])
    z, _ = residual.split(sol.value, ex.problem)
    reference = control.problems.reference_optima()["predator_prey"]["trapezoidal"]["cost"]
    assert abs(float(tr.objective(z, *problem_args)) - reference) <= 1e-6 * reference
    # Stuck for longer than the budget allows: no restart.
    late = solve(control.BarrierPath(atol=1e-9, max_steps=100, restart=control.Restart(500)))
    assert not bool(late.stats["restarted"])


class _CountingRestart(control.Restart):
    """A restart whose point is `problem_args + 1`, counting its computations."""

    def point(self, residual, problem_args, nlp):
        jax.debug.callback(residual.count)
        return problem_args + 1.0


class _Counter:
    def __init__(self):
        self.calls = 0

    def count(self):
        self.calls += 1


def test_the_restart_point_is_computed_only_at_a_restart():
    counter = _Counter()
    lazy = RestartPoint(_CountingRestart(), counter, jnp.arange(3.0), None)
    y = jnp.full(3, -1.0)

    @jax.jit
    def where(needed, y):
        return lazy.where(needed, y)

    def run(needed, y):
        out = jax.block_until_ready(where(needed, y))
        jax.effects_barrier()
        return out

    assert (run(jnp.asarray(False), y) == y).all() and counter.calls == 0
    assert (run(jnp.asarray(True), y) == jnp.arange(3.0) + 1).all() and counter.calls == 1
    # Batched: computed once for the batch if some element needs it, never if none.
    ys = jnp.stack([y, 2 * y])
    batched = jax.vmap(where)
    counter.calls = 0
    out = jax.block_until_ready(batched(jnp.asarray([False, False]), ys))
    jax.effects_barrier()
    assert (out == ys).all() and counter.calls == 0
    out = jax.block_until_ready(batched(jnp.asarray([False, True]), ys))
    jax.effects_barrier()
    assert (out[0] == ys[0]).all() and (out[1] == jnp.arange(3.0) + 1).all()
    assert counter.calls >= 1


def test_which_compositions_run_in_stages():
    vdp = control.problems.get("van_der_pol")

    def staged(solver):
        return can_run_in_stages(solver, None, vdp.problem, vdp.args)

    assert staged(control.KKTNewton())
    assert staged(control.Fallback(control.Newton(), control.BarrierPath()))
    # Without a budget as an array (Gauss-Newton), or without a first attempt, the
    # plan is one program.
    assert not staged(control.KKTLeastSquares())
    assert not staged(control.Fallback(control.GaussNewton(), control.BarrierPath(), after=5))
    assert not staged(control.Fallback(control.Newton(), control.BarrierPath(), after=0))
    assert not staged(control.Newton())


def test_a_stalled_first_attempt_gives_up_at_once():
    # bioreactor from the default guess: semismooth Newton's first step needs 5
    # halvings, its second raises ‖F‖ to 50, and every later line search fails. The
    # preset's first attempt gives up at the first (`stall_halvings=3`); spending the
    # whole `after=10` budget instead reaches the same rescue, finish and optimum, 9
    # iterations later (the stalled ones cost 30 residual evaluations each).
    ex = control.problems.get("bioreactor")
    tr = control.Trapezoidal(ex.N)
    patient = control.Fallback(control.Newton(stall_halvings=None), control.BarrierPath())
    eager = control.plan(ex.problem, tr, control.KKTNewton(), args=ex.args)
    jitted = eqx.filter_jit(control.plan)(
        ex.problem, tr, control.KKTNewton(), args=ex.args, throw=False
    )
    sequence = control.plan(
        ex.problem, tr, control.KKTNewton(), args=ex.args, adjoint=optx.RecursiveCheckpointAdjoint()
    )
    slow = control.plan(ex.problem, tr, patient, args=ex.args)
    rescue = int(slow.stats["interior_point_steps"])
    assert rescue > 0
    for sol in (eager, jitted, sequence):
        assert sol.result == control.RESULTS.successful
        assert int(sol.stats["interior_point_steps"]) == rescue
        assert int(sol.stats["num_steps"]) == int(slow.stats["num_steps"]) - 9
        assert abs(float(sol.cost) - float(slow.cost)) <= 1e-12 * abs(float(slow.cost))


def _first_attempt(name, give_up, newton=control.Newton(atol=1e-9), limit=10):
    c = kkt_case(name)
    return newton.limited(
        c.residual,
        c.w0,
        c.problem_args,
        c.tr.linear_solver(),
        jnp.asarray(limit),
        c.adjoint,
        give_up,
    )


def test_give_up_stops_semismooth_newton_only_where_it_stalls():
    stopped = _first_attempt("bioreactor", jnp.asarray(True))
    assert stopped.result == optx.RESULTS.nonlinear_divergence
    assert int(stopped.stats["num_steps"]) == 1
    assert int(_first_attempt("bioreactor", jnp.asarray(False)).stats["num_steps"]) == 10
    assert int(_first_attempt("bioreactor", None).stats["num_steps"]) == 10
    # Where Newton converges (van der Pol), giving up changes nothing.
    sol = _first_attempt("van_der_pol", jnp.asarray(True))
    assert sol.result == optx.RESULTS.successful and int(sol.stats["num_steps"]) == 4


def test_an_attempt_that_gives_up_stops_its_search_at_stall_halvings():
    # cart_pole: the first semismooth step takes 1 halving, the second would need 6
    # and the third fails after 30. Searching on past `stall_halvings` (3) halvings
    # could only end in the same verdict; the attempt gives up after 3 halvings at the
    # second step instead. (Unscaled: an attempt that does not give up is a finish,
    # which scales its active-set test by default.)
    newton = control.Newton(atol=1e-9, scaled_finish=False)
    assert newton.stall_halvings == 3
    stopped = _first_attempt("cart_pole", jnp.asarray(True), newton)
    assert stopped.result == optx.RESULTS.nonlinear_divergence
    assert int(stopped.stats["num_steps"]) == 2
    assert int(stopped.stats["backtracks"]) == 1 + newton.stall_halvings
    patient = _first_attempt("cart_pole", jnp.asarray(False), newton)
    assert int(patient.stats["backtracks"]) >= 1 + 6 + newton.max_backtracks


def test_a_step_without_a_direction_is_refused_without_a_search():
    # bear_populations: the first semismooth step's linear solve fails at every shift
    # (the KKT system at the default guess is singular in its constraint rows). There
    # is nothing to search along: the step is refused without evaluating the residual
    # again (no halvings), whether or not the attempt gives up there, and whether it
    # stops shifting after 2 failed solves (the default `stall_singular`) or tries
    # every shift.
    for newton in (control.Newton(atol=1e-9), control.Newton(atol=1e-9, stall_singular=None)):
        for give_up in (jnp.asarray(True), jnp.asarray(False)):
            sol = _first_attempt("bear_populations", give_up, newton, limit=1)
            assert int(sol.stats["backtracks"]) == 0
            assert int(sol.stats["num_steps"]) == 1 and sol.result != optx.RESULTS.successful


def _step(matrix, f, primal_mask, solver, **kwargs):
    """`regularised_newton_step` on the dense system `matrix`, unit regularisation
    on the primal unknowns, from delta = 0."""
    nlp = SimpleNamespace(primal_mask=primal_mask, regularisation=primal_mask.astype(f.dtype))
    return regularised_newton_step(
        lambda v: matrix @ v,
        f,
        jax.eval_shape(lambda: f),
        nlp,
        0.0,
        jnp.asarray(0.0),
        solver,
        frozenset(),
        **kwargs,
    )


def _singular_step(max_failed_solves):
    # A 2x2 system diag(1, 0) whose second unknown is a multiplier: its zero row is a
    # constraint row, which a Hessian shift (on the primal entry) never touches, so
    # it is singular at every shift.
    solver = control.SemismoothNewtonRootFinder(
        rtol=0.0, atol=1e-9, linear_solver=lx.LU(), max_regularisations=12
    )
    A = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    f = jnp.array([1.0, 1.0])
    mask = jnp.array([True, False])
    return _step(A, f, mask, solver, max_failed_solves=max_failed_solves)


def test_the_shifts_stop_after_max_failed_solves_in_a_row():
    dy, ok, delta, shifts, _ = _singular_step(None)
    assert not bool(ok) and int(shifts) == 12
    dy, ok, delta, shifts, _ = _singular_step(2)
    # Tried at delta = 0 and delta_init: two failed solves, one shift.
    assert not bool(ok) and int(shifts) == 1
    assert float(delta) == control.SemismoothNewtonRootFinder(rtol=0.0, atol=1e-9).delta_init
    assert bool(jnp.all(dy == 0))


def _indefinite_step(jump):
    # H = diag(-5, 1), f = (1, 0): the step's direction is the first axis whatever
    # the shift δ, with curvature -5 + δ, so the test (κ = 1e-8) needs δ > 5.
    solver = control.InteriorPointRootFinder(rtol=0.0, atol=1e-9, linear_solver=lx.LU())
    H = jnp.array([[-5.0, 0.0], [0.0, 1.0]])
    f = jnp.array([1.0, 0.0])
    return _step(H, f, jnp.array([True, True]), solver, jump=jump)


def test_a_jump_reaches_the_needed_shift_in_one_factorisation():
    # Tenfold from delta_init = 1e-4: 1e-4, ..., 1, 10: six shifts after δ = 0.
    dy, ok, delta, shifts, _ = _indefinite_step(False)
    assert bool(ok) and int(shifts) == 6 and float(delta) == pytest.approx(10.0)
    # The direction at δ = 0 needed κ + 5; the jump goes to twice that at once.
    dy, ok, delta, shifts, _ = _indefinite_step(True)
    assert bool(ok) and int(shifts) == 1
    assert float(delta) == pytest.approx(2 * (5 + 1e-8), rel=1e-12)
    assert dy == pytest.approx(jnp.array([-1 / (float(delta) - 5), 0.0]))


def test_an_attempt_that_gives_up_stops_shifting_at_stall_shifts():
    # cancer_treatment: the first attempt's third step needs 6 curvature shifts
    # (delta = 1e-4 ... 1e1) and then converges, 7 steps in all. With room for only
    # 5 shifts, an attempt that gives up stops at that step (each further shift is a
    # factorisation); one that does not give up is unaffected.
    assert control.Newton().stall_shifts == 8
    sol = _first_attempt("cancer_treatment", jnp.asarray(True))
    assert sol.result == optx.RESULTS.successful and int(sol.stats["num_steps"]) == 7
    newton = control.Newton(atol=1e-9, stall_shifts=5)
    stopped = _first_attempt("cancer_treatment", jnp.asarray(True), newton)
    assert stopped.result == optx.RESULTS.nonlinear_divergence
    assert int(stopped.stats["num_steps"]) == 3
    patient = _first_attempt("cancer_treatment", jnp.asarray(False), newton)
    assert patient.result == optx.RESULTS.successful and int(patient.stats["num_steps"]) == 7


def test_the_next_shift_decays_to_zero_or_to_the_floor():
    solver = control.SemismoothNewtonRootFinder(rtol=0.0, atol=1e-9)
    moved, failed = jnp.asarray(True), jnp.asarray(False)

    def shift(delta, moved, floor=False):
        return float(next_shift(jnp.asarray(delta), moved, solver, floor=floor))

    assert shift(1e-2, moved) == pytest.approx(1e-3)
    # Below delta_init (1e-4): zero for semismooth Newton, the floor for the barrier path.
    assert shift(1e-4, moved) == 0.0
    assert shift(1e-4, moved, floor=True) == 1e-4
    assert shift(5e-4, moved, floor=True) == 1e-4
    # A solve that has needed no shift keeps none.
    assert shift(0.0, moved, floor=True) == 0.0
    # After a failed search: ten times, at least delta_init, at most delta_max.
    assert shift(0.0, failed) == 1e-4
    assert shift(1e-2, failed, floor=True) == pytest.approx(1e-1)
    assert shift(1e10, failed) == solver.delta_max
    # A traced floor (a finish's `give_up` false) selects the same values.
    for floor in (True, False):
        traced = next_shift(jnp.asarray(1e-4), moved, solver, floor=jnp.asarray(floor))
        assert float(traced) == shift(1e-4, moved, floor=floor)


def _bioreactor_plan():
    # (Its 7-step finish also showed the finish's shift floor: 6 regularised steps
    # without it, 1 with. With 2 finish steps it is 1 either way, so the floor is now
    # checked by the traced-floor cases of `next_shift` above only.)
    ex = control.problems.get("bioreactor")
    sol = control.plan(ex.problem, control.Trapezoidal(ex.N), control.KKTNewton(), args=ex.args)
    assert sol.result == control.RESULTS.successful
    reference = control.problems.reference_optima()["bioreactor"]["trapezoidal"]["cost"]
    assert float(sol.cost) == pytest.approx(reference, rel=1e-8, abs=1e-8)
    return sol


def test_the_finish_tries_the_step_to_a_bound_before_halving():
    # bioreactor: the barrier path ends with the first control at 7.8e-3, inside its
    # bound 0, where the optimum has it at the bound with a multiplier of 1e-7. The
    # finish's Newton step crosses the bound; clipped, the full step is refused, and
    # halving only halved the control at each of 6 steps (7 finish steps in all).
    # Tried next, the step that ends at the bound is accepted: 2 finish steps.
    sol = _bioreactor_plan()
    first_attempt = 1
    finish = int(sol.stats["num_steps"]) - int(sol.stats["interior_point_steps"]) - first_attempt
    assert int(sol.stats["interior_point_steps"]) == 19 and finish == 2


def _bear_finish(scaled_finish: bool, transcription):
    ex = control.problems.get("bear_populations")
    newton = control.Newton(shift_jump=True, scaled_finish=scaled_finish)
    planner = control.Fallback(newton, control.BarrierPath(), after=10)
    sol = control.plan(ex.problem, transcription(ex.N), planner, args=ex.args)
    first_attempt = 1  # its first step finds no direction at any curvature shift
    finish = int(sol.stats["num_steps"]) - int(sol.stats["interior_point_steps"]) - first_attempt
    return sol, finish


class _ProbedHermiteSimpson(control.HermiteSimpson):
    # Hermite–Simpson without its Hessian blocks: the planner probes the KKT
    # Jacobian, and the finish takes the Hessian's diagonal from Hessian-vector
    # products (`KKTResidual.hessian_diagonal`).
    def lagrangian_derivatives(self, z, multipliers, problem, args):
        return None


@pytest.mark.parametrize(
    "transcription, name, barrier_steps",
    [
        (control.Trapezoidal, "trapezoidal", 19),
        (_ProbedHermiteSimpson, "hermite_simpson", 20),
    ],
)
def test_the_finish_decides_the_active_set_in_units_of_curvature(
    transcription, name, barrier_steps
):
    # bear_populations: the control u_p carries a cost weight of 1e4 and eases onto
    # its bound 0. From the barrier path's point, the unscaled test counts its bound as
    # active by comparing its gradient (which a step of 1e-4 swings by 0.45) with its
    # distance to the bound: the finish wanders for 5 steps. Scaled by the curvature,
    # the finish takes 1 step, to the same optimum.
    unscaled, unscaled_finish = _bear_finish(False, transcription)
    scaled, scaled_finish = _bear_finish(True, transcription)
    assert int(scaled.stats["interior_point_steps"]) == barrier_steps
    assert (unscaled_finish, scaled_finish) == (5, 1)
    reference = control.problems.reference_optima()["bear_populations"][name]["cost"]
    for sol in (unscaled, scaled):
        assert float(sol.cost) == pytest.approx(reference, rel=1e-8)
    assert float(scaled.cost) == pytest.approx(float(unscaled.cost), rel=1e-12)
    assert control.Newton() == control.Newton(scaled_finish=True)


def test_the_breakpoint_is_the_longest_step_inside_the_bounds():
    # Unknowns: in [0, 1] at 0.5 moving down by 1 (reaches 0 at 0.5), in [0, 1] at
    # 0.2 moving up by 0.4 (reaches 1 at 2), at its bound 0 moving out (not counted:
    # the clip keeps it there), unbounded, and a multiplier.
    nlp = SimpleNamespace(
        primal_mask=jnp.array([True, True, True, True, False]),
        lower=jnp.array([0.0, 0.0, 0.0, -jnp.inf, -jnp.inf]),
        upper=jnp.array([1.0, 1.0, 1.0, jnp.inf, jnp.inf]),
    )
    y = jnp.array([0.5, 0.2, 0.0, 3.0, 1.0])
    dy = jnp.array([-1.0, 0.4, -1.0, -100.0, -100.0])
    assert float(_breakpoint(y, dy, nlp)) == 0.5
    assert float(_breakpoint(y, dy.at[0].set(0.0), nlp)) == 2.0
    assert float(_breakpoint(y, jnp.zeros(5), nlp)) == float("inf")
