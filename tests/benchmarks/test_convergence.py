"""`benchmarks/convergence.py` keeps its solves in the harness store: `--force` names
`<problem>/<key>` prefixes and redoes just those."""

import pathlib
import sys

import pytest


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
try:
    import convergence
finally:
    sys.path.remove(str(_BENCHMARKS))


@pytest.fixture
def filled(tmp_path, monkeypatch):
    monkeypatch.setattr(convergence, "_output", lambda mode: tmp_path / f"{mode}.json")
    monkeypatch.setattr(convergence.cvi, "machine", lambda: {"cores": 2})
    for name in ("bacteria", "bear_populations"):
        store = convergence._store("quick", name, None)
        for key in ("trapezoidal/N=10", "hermite_simpson/N=10"):
            store.put(key, {"cost": 1.0, "atol": 1e-12})
    return tmp_path


@pytest.mark.parametrize(
    "force, redo",
    [
        (None, set()),
        (
            [],
            {
                "bacteria/trapezoidal/N=10",
                "bacteria/hermite_simpson/N=10",
                "bear_populations/trapezoidal/N=10",
                "bear_populations/hermite_simpson/N=10",
            },
        ),
        (["bacteria/hermite"], {"bacteria/hermite_simpson/N=10"}),
        (["bacteria"], {"bacteria/trapezoidal/N=10", "bacteria/hermite_simpson/N=10"}),
        (["bear_populations/trapezoidal/N=10"], {"bear_populations/trapezoidal/N=10"}),
    ],
)
def test_force_names_problem_and_key(filled, force, redo):
    todo = {
        f"{name}/{key}"
        for name in ("bacteria", "bear_populations")
        for key in ("trapezoidal/N=10", "hermite_simpson/N=10")
        if convergence._store("quick", name, force).todo(key)
    }
    assert todo == redo
    data = convergence._load("quick")
    assert data["problems"]["bacteria"]["trapezoidal/N=10"]["cost"] == 1.0
    assert data["machine"] == {"cores": 2}
