"""The memo of planners' derived strategy objects."""

import jax.numpy as jnp

from toolkit import control
from toolkit.control._planner import memo


def test_derived_planners_are_built_once_per_planner_object():
    solver = control.KKTNewton()
    tuned = memo.tuned(solver, jnp.float64)
    assert tuned == solver.with_tolerance(jnp.float64)
    assert memo.tuned(solver, jnp.float64) is tuned
    # Another dtype, or another (equal) planner object, is another entry.
    assert memo.tuned(solver, jnp.float32).atol == 1e-4
    other = control.KKTNewton()
    assert memo.tuned(other, jnp.float64) is not tuned
    assert memo.tuned(other, jnp.float64) == tuned
    composed = memo.composition(tuned)
    assert composed == tuned.composition() and memo.composition(tuned) is composed


def test_the_memo_keeps_its_last_entries_and_stays_correct():
    solvers = [control.KKTNewton(atol=10.0**-k) for k in range(1, 100)]
    for s in solvers:
        assert memo.tuned(s, jnp.float64) is s  # an atol of its own: itself
    assert len(memo._MEMO) <= memo._MAX_ENTRIES
    # An evicted entry is computed again, to the same value.
    first = solvers[0]
    assert memo.composition(first) == first.composition()
