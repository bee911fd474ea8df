"""The bookkeeping of `benchmarks/demp.py`: the verdict arithmetic of its report, the
resumable store, the run loop's skip-and-stop rules and the `--jobs` exit status. The
training itself is `toolkit.pruning.train`, tested under tests/pruning; here `run_one`
is replaced by a fake, so nothing trains."""

import json
import os
import pathlib
import subprocess
import sys

import pytest


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _import_demp():
    # The script sets XLA_FLAGS (one XLA thread) at import; keep it from the rest of
    # the test session, whose XLA backend may not be started yet.
    flags = os.environ.get("XLA_FLAGS")
    sys.path.insert(0, str(_BENCHMARKS))
    try:
        import demp
    finally:
        sys.path.remove(str(_BENCHMARKS))
        if flags is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = flags
    return demp


demp = _import_demp()


def test_stats():
    mean, sd = demp._stats([1.0, None, 2.0, 3.0])
    assert mean == 2.0 and sd == 1.0  # sample standard deviation, None skipped
    assert demp._stats([5.0]) == (5.0, 0.0)
    assert demp._stats([None]) == (None, None)


def test_interp():
    curve = [(0.5, 0.7), (0.1, 0.9)]  # unsorted on purpose
    assert demp._interp(curve, 0.3) == pytest.approx(0.8)
    assert demp._interp(curve, 0.1) == 0.9 and demp._interp(curve, 0.5) == 0.7
    assert demp._interp(curve, 0.05) is None and demp._interp(curve, 0.6) is None
    assert demp._interp([(0.4, 0.6)], 0.4) == 0.6
    assert demp._interp([(0.4, 0.6)], 0.41) is None


def test_versus_classifies_every_baseline_point():
    # DemP's curve is 0.85 at sparsity 0.4 (halfway between 0.9 and 0.8).
    points = {
        "demp": [(0.2, 0.9), (0.6, 0.8)],
        "random": [(0.4, 0.84), (0.9, 0.5)],
        "snap": [(0.4, 0.86), (0.4, 0.85)],
    }
    better, worse, outside = demp._versus(points)
    assert better == ["random@0.40", "snap@0.40"]  # 0.84 and a tie at 0.85
    assert worse == ["snap@0.40 (DemP 0.8500 < 0.8600)"]
    assert outside == ["random@0.90"]
    # Without DemP every baseline point is outside.
    assert demp._versus({"l1norm": [(0.5, 0.8)]}) == ([], [], ["l1norm@0.50"])


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(demp, "RESULTS", tmp_path)
    return tmp_path


def test_store_writes_each_record_and_skips_it_after(results):
    store = demp.Store("quick", None)
    assert store.path == results / "demp-quick.json"
    assert store.todo("tradeoff/mnist1d/dense/-/seed=0")
    store.put("tradeoff/mnist1d/dense/-/seed=0", {"test_accuracy": 0.5})
    # A fresh process (a restart) reads the record back and skips it.
    again = demp.Store("quick", None)
    assert not again.todo("tradeoff/mnist1d/dense/-/seed=0")
    assert again.todo("tradeoff/mnist1d/dense/-/seed=1")
    rec = json.loads(store.path.read_text())["runs"]["tradeoff/mnist1d/dense/-/seed=0"]
    assert rec["test_accuracy"] == 0.5
    assert {"measured", "toolkit_commit", "toolkit_tree", "host"} <= rec.keys()
    assert not list(results.glob(".demp.*"))  # no temporary file left behind


def test_store_force_redoes_matching_records_once(results):
    demp.Store("full", None).put("tradeoff/a/seed=0", {})
    demp.Store("full", None).put("ablation/a/seed=0", {})
    store = demp.Store("full", ["tradeoff"])
    assert store.todo("tradeoff/a/seed=0") and not store.todo("ablation/a/seed=0")
    store.put("tradeoff/a/seed=0", {})
    assert not store.todo("tradeoff/a/seed=0")  # redone once, not again in this run
    assert demp.Store("full", []).todo("ablation/a/seed=0")  # --force alone: everything


def _fake_run_one(calls, fail_on=None):
    def run_one(dataset, cfg, method, knob, seed, batch=None, compile_ahead=0):
        calls.append((cfg["steps"], method, knob, batch, seed))
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt  # the process is stopped mid-run
        return {
            "test_accuracy": 0.5,
            "unit_sparsity": 0.0,
            "dead_fraction": 0.0,
            "wall_s": 1.0,
            "steps_s": 0.5,
            "compile_s": 0.25,
        }

    return run_one


def test_main_resumes_an_interrupted_benchmark(results, monkeypatch):
    monkeypatch.setattr(demp.tkdata, "load", lambda name, **kw: object())
    argv = ["--quick", "--experiments", "dead_lr,dead_batch", "--no-plot", "--no-report"]
    planned = [
        r[0] for r in demp.runs_of(demp.plan(True, "lenet"), ["dead_lr", "dead_batch"], ["mnist1d"])
    ]
    assert len(planned) == 4

    # Stopped during its third run (the first call is the uncharged warm-up).
    calls: list = []
    monkeypatch.setattr(demp, "run_one", _fake_run_one(calls, fail_on=4))
    with pytest.raises(KeyboardInterrupt):
        demp.main(argv)
    assert calls[0][0] == 10  # the warm-up: 10 steps, not recorded
    done = json.loads((results / "demp-quick.json").read_text())["runs"]
    assert sorted(done) == sorted(planned[:2])

    # The restart runs only the two that are missing.
    calls.clear()
    monkeypatch.setattr(demp, "run_one", _fake_run_one(calls))
    assert demp.main(argv) == 0
    assert [c[3] for c in calls[1:]] == [16, 128]  # dead_batch's two batch sizes
    done = json.loads((results / "demp-quick.json").read_text())["runs"]
    assert sorted(done) == sorted(planned)

    # Nothing left: no run, not even the warm-up.
    calls.clear()
    assert demp.main(argv) == 0 and calls == []


def test_main_max_minutes_starts_no_run_after_the_budget(results, monkeypatch, capsys):
    monkeypatch.setattr(demp.tkdata, "load", lambda name, **kw: object())
    clock = [0.0]

    def perf_counter():  # a millisecond passes between two readings
        clock[0] += 1e-3
        return clock[0]

    monkeypatch.setattr(demp.time, "perf_counter", perf_counter)
    calls: list = []
    fake = _fake_run_one(calls)

    def run_one(*args, **kwargs):  # every run, the warm-up too, takes a minute
        clock[0] += 60.0
        return fake(*args, **kwargs)

    monkeypatch.setattr(demp, "run_one", run_one)
    argv = ["--quick", "--experiments", "dead_lr,dead_batch", "--no-plot", "--no-report"]
    assert demp.main([*argv, "--max-minutes", "0"]) == 0
    assert calls == [] and not (results / "demp-quick.json").exists()
    # Runs start just after minute 0 and just after minute 2 (the warm-up and the first
    # run take a minute each); just after minute 3 the budget is spent.
    assert demp.main([*argv, "--max-minutes", "2.5"]) == 0
    assert len(calls) == 3  # warm-up + two runs
    assert len(json.loads((results / "demp-quick.json").read_text())["runs"]) == 2
    assert "--max-minutes 2.5 reached: 2 runs left" in capsys.readouterr().out


def test_main_shards_split_the_runs_exactly(results, monkeypatch):
    monkeypatch.setattr(demp.tkdata, "load", lambda name, **kw: object())
    monkeypatch.setattr(demp, "run_one", _fake_run_one([]))
    argv = ["--quick", "--experiments", "tradeoff", "--no-plot", "--no-report"]
    keys = []
    for i in range(3):
        monkeypatch.setattr(demp, "RESULTS", results / str(i))
        assert demp.main([*argv, "--shard", f"{i}/3"]) == 0
        keys.append(set(json.loads((results / str(i) / "demp-quick.json").read_text())["runs"]))
    planned = {r[0] for r in demp.runs_of(demp.plan(True, "lenet"), ["tradeoff"], ["mnist1d"])}
    assert keys[0] | keys[1] | keys[2] == planned
    assert sum(len(k) for k in keys) == len(planned)
    assert all(keys)  # 19 runs: every shard gets some


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shard", "2/2"], "I must be in"),
        (["--shard", "x"], "takes I/N"),
        (["--shard", "0/2", "--experiments", "speed"], "need the machine alone"),
        (["--jobs", "2", "--shard", "0/2", "--experiments", "tradeoff"], "not with --shard"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--seeds", "7"], "unknown seed 7"),
        (["--methods", "magnitude"], "unknown method 'magnitude'"),
        (["--experiments", "tradeof"], "unknown experiment 'tradeof'"),
    ],
)
def test_main_rejects_bad_arguments(results, capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        demp.main(["--quick", "--report-only", *argv])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


class _FakeShard:
    codes: dict = {}
    argvs: list = []

    def __init__(self, argv):
        self.argvs.append(argv)
        self.code = self.codes[argv[argv.index("--shard") + 1]]

    def wait(self):
        return self.code

    def poll(self):
        return self.code


@pytest.mark.parametrize(
    "codes, failed",
    [
        ({"0/2": 0, "1/2": 0}, []),
        # Killed by a signal: a negative code, which max() of the codes called success.
        ({"0/2": 0, "1/2": -15}, ["1/2 (exit -15)"]),
        ({"0/2": 1, "1/2": -9}, ["0/2 (exit 1)", "1/2 (exit -9)"]),
    ],
)
def test_jobs_names_every_failed_shard(results, monkeypatch, capsys, codes, failed):
    monkeypatch.setattr(_FakeShard, "codes", codes)
    monkeypatch.setattr(_FakeShard, "argvs", [])
    monkeypatch.setattr(subprocess, "Popen", _FakeShard)
    argv = ["--jobs", "2", "--seeds", "1", "--max-minutes", "5", "--no-plot", "--no-report"]
    # An empty store: every run is to do, so `main` starts the shards.
    code = demp.main([*argv, "--experiments", "tradeoff,ablation"])
    out = capsys.readouterr().out
    if failed:
        assert code == 1 and f"shards failed: {', '.join(failed)};" in out
    else:
        assert code == 0 and "shards failed" not in out
    first, second = _FakeShard.argvs
    assert first[first.index("--shard") + 1] == "0/2" and second[-1] == "1/2"
    for flag in ("--seeds=1", "--max-minutes=5.0", "--no-report"):
        assert flag in first
    assert first[first.index("--experiments") + 1] == "tradeoff,ablation"
