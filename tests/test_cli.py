import json

import pytest

from toolkit._cli import main


def test_plan_list(capsys):
    assert main(["plan", "--list"]) == 0
    out = capsys.readouterr().out
    assert "cancer_treatment" in out and "van_der_pol" in out


def test_plan_writes_json_and_plot(tmp_path, capsys):
    js, png = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["plan", "van_der_pol", "--N", "40", "--json", str(js), "--plot", str(png)])
    assert code == 0
    data = json.loads(js.read_text())
    assert data["problem"] == "van_der_pol" and data["N"] == 40
    assert len(data["xs"]) == 41 and data["result"] == "converged"
    assert png.stat().st_size > 1000
    assert "cost" in capsys.readouterr().out


def test_plan_unknown_problem():
    with pytest.raises(ValueError, match="Unknown problem.*van_der_pol"):
        main(["plan", "no_such_problem"])
