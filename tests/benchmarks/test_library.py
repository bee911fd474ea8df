"""`benchmarks/library.py`'s history of runs: each full run summarised, and the README's
lines on the spread of the runs."""

import json
import math
import pathlib
import sys


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
try:
    import library
finally:
    sys.path.remove(str(_BENCHMARKS))


def _entry(ratio, measured, commit="aaaaaaa", verdict="same optimum"):
    # One process's record of a problem, with IPOPT's warm time 1 s.
    return {
        "ratio": ratio,
        "toolkit": {"warm_s": ratio, "warm_min_s": ratio},
        "IPOPT": {"warm_s": 1.0, "warm_min_s": 1.0},
        "measured": measured,
        "toolkit_commit": commit,
        "verdict": verdict,
        "other_cores": 0.0,
        "loadavg_1min": 0.0,
    }


def _run(ratios, day, commit="aaaaaaa"):
    """A full run: `ratios[name]` the ratio of each process of `name`."""
    runs = {}
    for name, rs in ratios.items():
        for i, r in enumerate(rs):
            runs[f"{name}/{i}"] = _entry(r, f"{day}T10:0{i}:00+00:00", commit)
    return {"machine": {"cpu": "Test CPU"}, "runs": runs}


def test_a_summary_is_the_medians_and_their_geometric_mean():
    run = _run({"a": [0.5, 0.2, 0.4], "b": [1.1, 0.9, 1.3]}, "2026-01-02")
    run["runs"]["c/0"] = _entry(0.1, "2026-01-02T11:00:00+00:00", verdict="another optimum")
    s = library.summary(run)
    # Medians over the processes: a 0.4, b 1.1; c did not reach the optimum.
    assert s["ratios"] == {"a": 0.4, "b": 1.1}
    assert math.isclose(s["geomean"], math.sqrt(0.4 * 1.1))
    assert (s["problems"], s["same_optimum"]) == (3, 2)
    assert s["measured"] == ["2026-01-02T10:00:00+00:00", "2026-01-02T11:00:00+00:00"]
    assert s["commits"] == ["aaaaaaa"] and s["cpu"] == "Test CPU"


def test_archive_keeps_each_run_once_and_the_readme_lists_every_run(tmp_path):
    path = tmp_path / "history.json"
    old = _run({"a": [0.5, 0.5, 0.5], "b": [1.2, 1.3, 1.25]}, "2026-01-01", "1111111")
    new = _run({"a": [0.3, 0.3, 0.3], "b": [0.8, 0.9, 0.85]}, "2026-01-03", "2222222")
    assert library.archive(old, path) and not library.archive(old, path)
    assert len(json.loads(path.read_text())["runs"]) == 1
    # The run in the table need not be archived to be listed (with the earlier ones).
    runs, spread = library.history_notes(new, path)
    assert "(2, this one included" in runs
    # Geometric means by hand: sqrt(0.5 * 1.25) = 0.79, sqrt(0.3 * 0.85) = 0.50.
    assert (
        "2026-01-01 on 1111111 (Test CPU, 2 of 2 problems): 0.79x; slower than IPOPT: b 1.25x"
        in runs
    )
    assert "2026-01-03 on 2222222 (Test CPU, 2 of 2 problems): 0.50x." in runs
    assert "from 0.50x to 0.79x" in spread
    assert "b in 1 (ratios 0.85x–1.25x) of the 2 runs" in spread
    # Archived too, it is listed once.
    assert library.archive(new, path)
    assert library.history_notes(new, path)[0] == runs
    # A single run has no history to tell.
    assert library.history_notes(old, tmp_path / "none.json") == []


def test_the_readme_says_when_no_run_was_slower_than_ipopt(tmp_path):
    path = tmp_path / "history.json"
    library.archive(_run({"a": [0.5, 0.4, 0.6]}, "2026-01-01", "1111111"), path)
    _, spread = library.history_notes(_run({"a": [0.2, 0.3, 0.25]}, "2026-01-02"), path)
    assert spread == (
        "Over these runs the geometric mean went from 0.25x to 0.50x; no problem was "
        "slower than IPOPT in any of them."
    )


def test_the_pinned_run_is_compared_with_the_full_run():
    full = _run({"a": [0.5, 0.4, 0.6], "b": [1.2, 1.1, 1.3]}, "2026-01-01")
    pinned = _run({"a": [0.25, 0.2, 0.3], "b": [0.9, 0.8, 1.0]}, "2026-01-02")
    for e in pinned["runs"].values():
        e["cpus"] = [1]
        e["IPOPT"] = {"warm_s": 2.0, "warm_min_s": 2.0}
        e["ratio"] = e["toolkit"]["warm_s"] / 2.0
    (note,) = library.pinned_notes(full, pinned)
    # Medians: full a 0.5, b 1.2; pinned toolkit a 0.25, b 0.9 s against IPOPT 2 s,
    # ratios a 0.125, b 0.45.
    assert f"geometric mean {math.sqrt(0.125 * 0.45):.2f}x over 2 problems" in note
    assert f"(here {math.sqrt(0.5 * 1.2):.2f}x)" in note
    assert "none slower than IPOPT" in note
    toolkit = math.sqrt((0.25 / 0.5) * (0.9 / 1.2))
    assert f"toolkit's warm times were {toolkit:.2f}x those above and IPOPT's 2.00x" in note
    assert "CPUs [1]" in note
    # A problem pinned slower than IPOPT is named; without a pinned run, nothing is said.
    pinned["runs"]["b/0"]["ratio"] = pinned["runs"]["b/1"]["ratio"] = 1.5
    assert "slower than IPOPT: b 1.50x" in library.pinned_notes(full, pinned)[0]
    assert library.pinned_notes(full, {"runs": {}}) == []
