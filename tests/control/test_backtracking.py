"""The backtracking loop shared by the root finders, on hand-computed cases."""

import jax
import jax.numpy as jnp

from toolkit.control._planner.backtracking import halving_search


def _search(accept_below, alpha=1.0, max_backtracks=30):
    # `out` counts the trials and keeps the step lengths tried.
    def trial(a, out):
        count, tried = out
        return a <= accept_below, (count + 1, tried.at[count].set(a))

    return jax.jit(halving_search, static_argnums=(0, 2))(
        trial, jnp.asarray(alpha), max_backtracks, (jnp.array(0), jnp.full(8, jnp.nan))
    )


def test_the_first_acceptable_halving_is_taken():
    alpha, k, accepted, (count, tried) = _search(0.3)
    # 1 and 0.5 rejected, 0.25 accepted: two halvings, three trials, in that order.
    assert float(alpha) == 0.25 and int(k) == 2 and bool(accepted) and int(count) == 3
    assert tried[:3].tolist() == [1.0, 0.5, 0.25]


def test_a_full_step_takes_no_halving():
    alpha, k, accepted, (count, _) = _search(2.0, alpha=0.8)
    assert float(alpha) == 0.8 and int(k) == 0 and bool(accepted) and int(count) == 1


def test_the_search_gives_up_after_its_halvings():
    alpha, k, accepted, (count, _) = _search(-1.0, max_backtracks=5)
    assert int(k) == 5 and not bool(accepted) and int(count) == 6
    assert float(alpha) == 2.0**-5


def test_a_search_goes_on_from_a_first_trial_made_by_the_caller():
    def trial(a, out):
        count, tried = out
        return a <= 0.3, (count + 1, tried.at[count].set(a))

    def search(first_accepted, max_backtracks=30):
        # The caller tried alpha = 1 itself (one trial, recorded in `out`).
        out = (jnp.array(1), jnp.full(8, jnp.nan).at[0].set(1.0))
        return jax.jit(halving_search, static_argnums=(0, 2))(
            trial, jnp.asarray(1.0), max_backtracks, out, (jnp.asarray(first_accepted), out)
        )

    # Rejected: 0.5 rejected, 0.25 accepted; the caller's trial is not repeated.
    alpha, k, accepted, (count, tried) = search(False)
    assert float(alpha) == 0.25 and int(k) == 2 and bool(accepted) and int(count) == 3
    assert tried[:3].tolist() == [1.0, 0.5, 0.25]
    # Accepted: no further trial. With max_backtracks = 0, none either way.
    alpha, k, accepted, (count, _) = search(True)
    assert float(alpha) == 1.0 and int(k) == 0 and bool(accepted) and int(count) == 1
    alpha, k, accepted, (count, _) = search(False, max_backtracks=0)
    assert int(k) == 0 and not bool(accepted) and int(count) == 1


def _search_second(accept_below, second):
    def trial(a, out):
        count, tried = out
        return a <= accept_below, (count + 1, tried.at[count].set(a))

    def search(second):
        return halving_search(
            trial, jnp.asarray(1.0), 30, (jnp.array(0), jnp.full(8, jnp.nan)), second=second
        )

    return jax.jit(search)(jnp.asarray(second))


def test_a_second_step_length_is_tried_before_the_halvings():
    # 1 rejected, the breakpoint 0.8 accepted: one backtrack, two trials.
    alpha, k, accepted, (count, tried) = _search_second(0.85, 0.8)
    assert float(alpha) == 0.8 and int(k) == 1 and bool(accepted) and int(count) == 2
    assert tried[:2].tolist() == [1.0, 0.8]
    # Rejected too: the halvings go on from it (0.4, 0.2).
    alpha, k, accepted, (count, tried) = _search_second(0.3, 0.8)
    assert float(alpha) == 0.2 and int(k) == 3 and tried[:4].tolist() == [1.0, 0.8, 0.4, 0.2]


def test_a_second_step_length_outside_the_first_halving_is_ignored():
    # Shorter than a halving (0.1) or not shorter than the first step (inf): plain halvings.
    for second in (0.1, jnp.inf):
        alpha, k, _, (_, tried) = _search_second(0.3, second)
        assert float(alpha) == 0.25 and int(k) == 2
        assert tried[:3].tolist() == [1.0, 0.5, 0.25]
