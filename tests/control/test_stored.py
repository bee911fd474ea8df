import json

import jax
import numpy as np
import pytest

from toolkit import control
from toolkit.control import _stored

from ..helpers import finish, fresh_command


TR = control.Trapezoidal(20)


_LOAD = """
import json, sys
import json

import jax
import numpy as np
jax.config.update("jax_enable_x64", True)
from toolkit import control
from toolkit.control import _stored

compiled = []
original = _stored.ExecutableStore._compile
def counting(self, *args):
    compiled.append(args[1].__qualname__)
    return original(self, *args)
_stored.ExecutableStore._compile = counting
sol = _stored.plan_library_problem("van_der_pol", control.Trapezoidal(20), folder=sys.argv[1])
print(json.dumps({
    "compiled": compiled,
    **{k: np.asarray(getattr(sol, k)).tolist() for k in ("cost", "z", "multipliers", "xs", "us")},
    "stats": {k: np.asarray(v).tolist() for k, v in sol.stats.items()},
    "successful": bool(sol.result == control.RESULTS.successful),
}))
"""


@pytest.fixture(autouse=True)
def fresh_stores():
    # Each test starts as a new process would (but for the programs it has compiled).
    _stored._store.cache_clear()
    _stored._IN_MEMORY.clear()
    yield
    _stored._store.cache_clear()
    _stored._IN_MEMORY.clear()


@pytest.fixture(scope="module")
def reference():
    ex = control.problems.get("van_der_pol")
    return control.plan(ex.problem, TR, control.KKTNewton(), args=ex.args, throw=False)


def _assert_same(sol, want):
    assert bool(sol.result == want.result)
    for name in ("cost", "z", "multipliers", "xs", "us", "ts"):
        np.testing.assert_allclose(getattr(sol, name), getattr(want, name), rtol=1e-12, atol=0)
    for key, value in want.stats.items():
        np.testing.assert_allclose(np.asarray(sol.stats[key]), np.asarray(value), rtol=1e-12)


def _in_a_new_process(folder) -> dict:
    ((out, _),) = finish([fresh_command(["-c", _LOAD, str(folder)], {})], timeout=300)
    return json.loads(out.strip().splitlines()[-1])


def test_stored_stages_plan_as_plan_does_and_a_new_process_loads_them(tmp_path, reference):
    # Each in a process of its own, as the `plan` command runs: the first compiles and
    # stores, the second loads (in a process that compiled other programs before,
    # XLA:CPU may leave shared kernels out of the stored copy).
    runs = [_in_a_new_process(tmp_path) for _ in range(2)]
    # One program: the Newton pass from the starting point (van der Pol needs no
    # fallback).
    assert runs[0]["compiled"] == ["_newton"]
    assert runs[1]["compiled"] == []  # it came from disk, untraced
    assert len(list(tmp_path.glob("*.pkl"))) == 1
    for run in runs:
        assert run["successful"]
        for name in ("cost", "z", "multipliers", "xs", "us"):
            np.testing.assert_allclose(run[name], getattr(reference, name), rtol=1e-12, atol=0)
        for key, value in reference.stats.items():
            np.testing.assert_allclose(run["stats"][key], np.asarray(value), rtol=1e-12)
    # In this process, which compiled the reference before: loaded, the same.
    _assert_same(_stored.plan_library_problem("van_der_pol", TR, folder=tmp_path), reference)


def test_another_program_gets_another_entry(tmp_path, monkeypatch):
    _stored.plan_library_problem("van_der_pol", TR, folder=tmp_path)
    _stored.plan_library_problem("van_der_pol", control.Trapezoidal(24), folder=tmp_path)
    _stored.plan_library_problem("van_der_pol", TR, control.KKTNewton(atol=1e-7), folder=tmp_path)
    assert len(list(tmp_path.glob("*.pkl"))) == 3
    # Another toolkit source (or JAX version, device, ...): nothing old is reused.
    monkeypatch.setattr(_stored, "environment", lambda: "another source")
    _stored._store.cache_clear()
    _stored._IN_MEMORY.clear()
    _stored.plan_library_problem("van_der_pol", TR, folder=tmp_path)
    assert len(list(tmp_path.glob("*.pkl"))) == 4


def test_a_corrupt_entry_is_compiled_again(tmp_path, reference):
    _stored.plan_library_problem("van_der_pol", TR, folder=tmp_path)
    for entry in tmp_path.glob("*.pkl"):
        entry.write_bytes(b"not a program")
    _stored._store.cache_clear()
    _stored._IN_MEMORY.clear()
    with pytest.warns(UserWarning, match="could not be loaded.*compiling it again"):
        sol = _stored.plan_library_problem("van_der_pol", TR, folder=tmp_path)
    _assert_same(sol, reference)
    # Removed, and left for the next process to store.
    assert list(tmp_path.glob("*.pkl")) == []


def test_without_a_folder_or_stages_it_is_plan(tmp_path):
    ex = control.problems.get("van_der_pol")
    sol = _stored.plan_library_problem("van_der_pol", TR, folder=None)
    _assert_same(sol, control.plan(ex.problem, TR, args=ex.args, throw=False))
    # The least-squares planner does not run in stages: nothing to store.
    solver = control.KKTLeastSquares()
    sol = _stored.plan_library_problem("van_der_pol", TR, solver, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []
    _assert_same(sol, control.plan(ex.problem, TR, solver, args=ex.args, throw=False))


def test_the_environment_names_what_the_programs_depend_on():
    env = _stored.environment()
    for part in ("jax=", "jaxlib=", "equinox=", "optimistix=", "x64="):
        assert part in env
    assert jax.devices()[0].platform in env


def test_an_unwritable_folder_plans_without_storing(tmp_path, reference):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sol = _stored.plan_library_problem("van_der_pol", TR, folder=blocker / "plans")
    _assert_same(sol, reference)
    assert list(tmp_path.iterdir()) == [blocker]
