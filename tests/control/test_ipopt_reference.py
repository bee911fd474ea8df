"""The generator of the library's reference optima (CasADi + IPOPT) still runs: its
CasADi problems agree with the toolkit's, and IPOPT reproduces the stored optima."""

import dataclasses
import json

import pytest

from toolkit.control import problems


ro = pytest.importorskip("toolkit.control.problems._ipopt_reference")


@pytest.mark.parametrize("name", ["simple_case", "invasive_plant"])
def test_stored_optimum_is_reproduced(name):
    s = ro.SPECS[name]()
    ro.cross_check(name, s)
    kind = s.transcriptions[0]
    stored = problems.reference_optima()[name][kind]
    solved = ro.solve(s, kind)
    assert solved["status"] == "Solve_Succeeded"
    assert solved["N"] == stored["N"]
    assert solved["cost"] == pytest.approx(stored["cost"], rel=1e-10, abs=1e-12)


def test_a_typo_in_the_casadi_problem_is_caught():
    s = ro.SPECS["simple_case"]()
    wrong = dataclasses.replace(s, args={**s.args, "C": 4.01})
    with pytest.raises(ro.Mismatch):
        ro.cross_check("simple_case", wrong)


def test_the_generator_writes_only_what_is_missing(tmp_path, monkeypatch):
    out = tmp_path / "reference_optima.json"
    kept = {"simple_case": {"trapezoidal": {"N": 100, "cost": 1.5, "iterations": 0}}}
    kept["simple_case"]["trapezoidal"]["status"] = "Solve_Succeeded"
    out.write_text(json.dumps(kept))
    monkeypatch.setattr(ro, "OUTPUT", out)
    argv = ["--problems", "simple_case", "--transcriptions", "trapezoidal,hermite_simpson"]
    assert ro.main(argv) == 0
    written = json.loads(out.read_text())["simple_case"]
    # The finished entry is kept as it was (even a wrong one); the missing one is solved.
    assert written["trapezoidal"]["cost"] == 1.5
    reference = problems.reference_optima()["simple_case"]["hermite_simpson"]["cost"]
    assert written["hermite_simpson"]["cost"] == pytest.approx(reference, rel=1e-10)
