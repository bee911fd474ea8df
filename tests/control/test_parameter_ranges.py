import inspect
import math
import re

import jax
import jax.numpy as jnp
import pytest

from toolkit import control
from toolkit.control.problems._example import _interval, _REGISTRY


def _outside(text: str) -> float:
    """A value just outside the interval `text`, or NaN if it has no finite end."""
    lo, hi, lo_open, hi_open = _interval(text)
    if math.isfinite(lo):
        return lo if lo_open else lo - 1.0
    if math.isfinite(hi):
        return hi if hi_open else hi + 1.0
    return math.nan


# One case per parameter of every library problem: its declared range and a value
# outside it (NaN for a parameter that may be any real, which must still be finite).
CASES = [
    (name, parameter, text, _outside(text))
    for name in control.problems.names()
    for parameter, text in control.problems.get(name).ranges.items()
]


def test_every_parameter_of_every_problem_has_a_range():
    # A new problem cannot forget its ranges: every parameter is declared, and one
    # that may be any real is declared "(-inf, inf)" and explained in the docstring.
    for name in control.problems.names():
        ex = control.problems.get(name)
        assert set(ex.ranges) == set(ex.args), name
        doc = inspect.getdoc(_REGISTRY[name]) or ""
        for parameter, text in ex.ranges.items():
            if _interval(text)[:2] == (-math.inf, math.inf):
                assert re.search(rf"`{parameter}`\s+\([^)]*any real", doc), (name, parameter)


@pytest.mark.parametrize("name", control.problems.names())
def test_defaults_are_in_range(name):
    ex = control.problems.get(name)
    assert ex.problem.args_check(ex.args) == ex.args


@pytest.mark.parametrize("name, parameter, text, value", CASES)
def test_out_of_range_names_problem_parameter_value_and_range(name, parameter, text, value):
    ex = control.problems.get(name)
    bad = {**ex.args, parameter: jnp.array(value)}
    with pytest.raises(ValueError) as info:
        ex.problem.args_check(bad)
    message = str(info.value)
    assert message.startswith(f"{name}: parameter {parameter!r} must be finite and in {text}")
    assert message.endswith(f", got {value}.")


def test_out_of_range_raises_before_compiling():
    # The example: simple_case with B = -1 (B weighs the cost of the control,
    # so the problem would have no minimum).
    ex = control.problems.get("simple_case")
    bad = {**ex.args, "B": jnp.array(-1.0)}
    with pytest.raises(ValueError, match=r"simple_case: parameter 'B' .* \(0, inf\), got -1.0"):
        control.plan(ex.problem, control.Trapezoidal(10), args=bad)
    # An open end excludes the end itself.
    with pytest.raises(ValueError, match=r"'B' .* got 0.0"):
        ex.problem.args_check({**ex.args, "B": jnp.array(0.0)})


def test_traced_value_out_of_range_is_caught_at_run_time():
    ex = control.problems.get("bear_populations")
    check = jax.jit(ex.problem.args_check)
    with pytest.raises(Exception, match=r"bear_populations: parameter 'm_p' .* \[0, 1\]"):
        jax.block_until_ready(check({**ex.args, "m_p": jnp.array(1.5)}))
    assert check({**ex.args, "m_p": jnp.array(1.0)})["m_p"] == 1.0


def test_report_gives_the_verdict_on_traced_values_instead_of_a_check():
    check = control.problems.get("bear_populations").problem.args_check
    args = control.problems.get("bear_populations").args
    report = jax.jit(check.report)
    assert not bool(report(args)[1])
    checked, bad = report({**args, "m_p": jnp.array(1.5)})
    assert bool(bad) and float(checked["m_p"]) == 1.5
    assert bool(report({**args, "m_p": jnp.array(jnp.inf)})[1])
    # Concrete values raise, as the check itself does.
    with pytest.raises(ValueError, match=r"parameter 'm_p' .* \[0, 1\], got 1.5"):
        check.report({**args, "m_p": jnp.array(1.5)})


def test_malformed_ranges_are_refused():
    with pytest.raises(ValueError, match=r"p: parameter 'a': a range must be an interval"):
        control.problems.ParameterCheck(("a",), (("a", "0 to 1"),), "p")
    with pytest.raises(ValueError, match=r"the range '\(2, 1\]' is empty"):
        control.problems.ParameterCheck(("a",), (("a", "(2, 1]"),))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['b'\]"):
        control.problems.ParameterCheck(("a",), (("b", "[0, 1]"),))


def test_a_passed_check_is_remembered_only_for_immutable_values():
    # The check remembers args that passed by the identity of their values, so an
    # eager plan does not read every parameter back from the device at each call;
    # nothing that can change in place may be remembered.
    import numpy as np

    from toolkit.control.problems import _example

    ex = control.problems.get("cart_pole")
    check = ex.problem.args_check
    args = {**ex.args, "m1": jnp.asarray(1.5)}
    assert check(args) == args
    assert check(args) == args  # from memory, the same verdict and values
    assert any(entry[0][0] is args["m1"] for entry in _example._PASSED.values())
    # Another object with a bad value is checked, in the same dict or a new one.
    with pytest.raises(ValueError, match="'m1' must be finite and in \\(0, inf\\)"):
        check({**args, "m1": jnp.asarray(-1.0)})
    # A NumPy array (mutable) is checked at every call: changed in place, it fails.
    mutable = np.asarray(1.5)
    numpy_args = {**ex.args, "m1": mutable}
    assert check(numpy_args)["m1"] == 1.5
    mutable[...] = -1.0
    with pytest.raises(ValueError, match="got -1.0"):
        check(numpy_args)
    # Memory is bounded.
    for k in range(2 * _example._PASSED_SIZE):
        check({**ex.args, "m1": jnp.asarray(1.0 + k)})
    assert len(_example._PASSED) == _example._PASSED_SIZE
