import json
import re
import subprocess
import sys

import jax
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


@pytest.mark.parametrize(
    "argv, words",
    [
        (["no_such_problem"], "argument problem: unknown problem 'no_such_problem'.*van_der_pol"),
        ([], "give a PROBLEM"),
        (["van_der_pol", "--N", "0"], "argument --N: must be a positive integer, got '0'"),
        (["van_der_pol", "--N", "-3"], "argument --N: must be a positive integer"),
        (["van_der_pol", "--json", "{missing}/out.json"], "argument --json: folder .* not exist"),
        (["van_der_pol", "--plot", "{missing}/out.png"], "argument --plot: folder .* not exist"),
        (["van_der_pol", "--json", "{tmp}"], "argument --json: .* is a folder"),
        (["van_der_pol", "--transcription", "discrete"], "discrete"),
    ],
)
def test_plan_input_errors_are_one_line(argv, words, tmp_path, capsys):
    # Issue 25, items 2, 14 and 22: refused before any solve, in one line, status 2.
    argv = [a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(["plan", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("python -m toolkit plan: error: ")
    assert re.search(words, last), err


def test_demo_trains_both_methods_and_plans(tmp_path, capsys):
    # The README's main command, on tiny settings.
    plot, plan_plot = tmp_path / "demo.png", tmp_path / "plan.png"
    argv = ["demo", "--steps", "20", "--widths", "16", "16", "--eval-every", "10"]
    argv += ["--plot", str(plot), "--plan-plot", str(plan_plot)]
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under tests/conftest.py
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dense" in out and "demp" in out and "[converged]" in out
    assert plot.stat().st_size > 1000 and plan_plot.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, option",
    [
        (["demo", "--plan-plot", "{missing}/plan.png"], "--plan-plot"),
        (["demo", "--json", "{missing}/demo.json"], "--json"),
        (["sweep", "--plot", "{missing}/sweep.png"], "--plot"),
    ],
)
def test_outputs_are_checked_before_training(argv, option, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "missing") for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"python -m toolkit {argv[0]}: error: argument {option}: folder")


def test_plan_imports_only_the_control_half():
    # `import toolkit.control` and the `plan` command import neither the pruning half
    # nor `control.learning` (optax) nor diffrax (the shooting transcriptions): they are
    # imported on use.
    code = (
        "import sys, toolkit\n"
        "from toolkit._cli import main\n"
        "assert main(['plan', '--list']) == 0\n"
        "heavy = ['toolkit.pruning', 'toolkit.nn', 'toolkit.data', 'toolkit.control.learning',"
        " 'optax', 'diffrax']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(toolkit.pruning.prune.__name__, toolkit.control.learning.fit.__name__,"
        " toolkit.control.MultipleShooting.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "[]", out.stdout
    assert lines[-1] == "prune fit MultipleShooting"
