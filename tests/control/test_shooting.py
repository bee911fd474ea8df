import equinox as eqx
import jax
import pytest

from toolkit import control


jax.config.update("jax_enable_x64", True)


def _counting(problem):
    """`problem` whose dynamics count the times Python runs them (each is a trace)."""
    calls = [0]
    dynamics = problem.dynamics

    def counted(t, x, u, args):
        calls[0] += 1
        return dynamics(t, x, u, args)

    return eqx.tree_at(lambda p: p.dynamics, problem, counted), calls


@pytest.mark.parametrize(
    "transcription, most",
    [
        (control.MultipleShooting(20), 5),
        (control.MultipleShooting(20, substeps=2), 9),
        (control.SingleShooting(20), 9),
    ],
    ids=["multiple", "multiple-substeps-2", "single"],
)
def test_a_shooting_plan_traces_its_interval_once(transcription, most):
    # The residual, its linearisation, the KKT blocks, the multiplier estimate and the
    # line search each integrate the intervals under their own transformations; the
    # interval is one jitted function, so its Python (an RK4 step: 4 evaluations of
    # the dynamics per substep) runs once per shape instead of once per use (69 times
    # for the first case, 137 and 113 for the others, before it was).
    ex = control.problems.get("van_der_pol")
    problem, calls = _counting(ex.problem)
    sol = control.plan(problem, transcription, args=ex.args)
    assert sol.result == control.RESULTS.successful
    # One trace of the interval (4 evaluations per substep), one evaluation in the
    # problem's check of its dynamics' output and, for single shooting, the RK4
    # simulation of its guess (4 more).
    assert calls[0] <= most, calls[0]
