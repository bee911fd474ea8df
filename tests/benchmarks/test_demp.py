"""The bookkeeping of `benchmarks/demp.py`: the verdict arithmetic of its report, the
resumable store, the run loop's skip-and-stop rules and the `--jobs` exit status. The
training itself is `toolkit.pruning.train`, tested under tests/pruning; here `run_one`
is replaced by a fake, so nothing trains."""

import collections
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


def test_accuracy_standard_error():
    # One run: the binomial SE of its test set; 0.7 on 1000 examples is 1.45 points.
    acc, se = demp.accuracy([{"test_accuracy": 0.7, "n_test": 1000}])
    assert acc == 0.7 and se == pytest.approx((0.7 * 0.3 / 1000) ** 0.5)
    assert se == pytest.approx(0.01449, abs=1e-5)
    # Several seeds: the standard error of their mean.
    acc, se = demp.accuracy([{"test_accuracy": a} for a in (0.6, 0.7, 0.8)])
    assert acc == pytest.approx(0.7) and se == pytest.approx(0.1 / 3**0.5)
    assert demp.sparsity([{"unit_sparsity": 0.8}]) == (0.8, 0.0)


def test_verdict_calls_a_difference_only_beyond_two_standard_errors():
    # 2 SE of the difference: 2 * hypot(0.03, 0.04) = 0.1.
    assert demp.verdict((0.75, 0.03), (0.70, 0.04)).startswith("within 2 SE (+0.0500")
    assert demp.verdict((0.80, 0.03), (0.6999, 0.04)).startswith("**DemP better**")
    assert demp.verdict((0.5999, 0.03), (0.70, 0.04)).startswith("**DemP worse**")


def test_interp_of_standard_errors():
    curve = [(0.2, 0.9, 0.01), (0.6, 0.7, 0.03)]
    acc, se = demp._at(curve, 0.4)
    assert acc == pytest.approx(0.8) and se == pytest.approx(0.02)
    assert demp._at(curve, 0.7) is None


def _grid_records(P, accuracy_of, ds="mnist1d"):
    """Seed-0 grid records of every DemP cell on `ds`: sparsity = the aim, accuracy
    given; dense at 0.9."""
    R = {f"train/{ds}/dense/-/seed=0": {"unit_sparsity": 0.0, "test_accuracy": 0.9}}
    for cell in demp.cells_of(P, ds):
        for reg in P["strengths"][ds][cell]:
            aim = demp._aim_of(P, ds, cell, reg) or P["aims"][-1]
            key = f"train/{ds}/{demp.cell_name(cell)}/{reg:g}/seed=0"
            R[key] = {"unit_sparsity": aim, "test_accuracy": accuracy_of(cell, aim)}
    return R


def test_best_cell_rule():
    P = demp.plan(False)
    good = ("positive_l2", 5e-5)
    R = _grid_records(P, lambda cell, aim: 0.7 if cell == good else 0.6)
    assert demp.best_cell(R, P, "mnist1d")[0] == good
    # A cell whose curve misses the aims loses to one covering them, however accurate.
    for reg in P["strengths"]["mnist1d"][good]:
        R[f"train/mnist1d/{demp.cell_name(good)}/{reg:g}/seed=0"]["unit_sparsity"] = 0.3
    assert demp.best_cell(R, P, "mnist1d")[0] != good
    # A curve that reaches the higher aims only through collapsed runs (accuracy no
    # better than half way from chance, 0.1, to dense's 0.9) does not cover them: it
    # covers 1 aim, and the other cells, less accurate, cover 3.
    R = _grid_records(P, lambda cell, aim: 0.8 if cell == good else 0.55)
    for reg in P["strengths"]["mnist1d"][good][1:]:
        R[f"train/mnist1d/{demp.cell_name(good)}/{reg:g}/seed=0"]["test_accuracy"] = 0.5
    other = demp.best_cell(R, P, "mnist1d")
    assert other[0] != good and "covers 3 of the 3" in other[1] and "collapse" in other[1]
    for reg in P["strengths"]["mnist1d"][good][1:]:  # above the half way: covered
        R[f"train/mnist1d/{demp.cell_name(good)}/{reg:g}/seed=0"]["test_accuracy"] = 0.6
    assert demp.best_cell(R, P, "mnist1d")[0] == good
    # Missing grid records: no cell yet; --demp-cell pins one regardless.
    del R[next(iter(R))]
    assert demp.best_cell(R, P, "mnist1d")[0] is None
    assert demp.best_cell(R, P, "mnist1d", good)[0] == good


def test_each_data_set_chooses_its_cell():
    P = demp.plan(False)
    assert P["grid"]["datasets"] == list(demp.DATASETS)
    on = {
        "mnist1d": ("bn_scale_l1", 3e-3),
        "fashion_mnist": ("positive_l2", 3e-3),
        "fashion_mnist_vgg": ("bn_scale_l1", 3e-3),
    }
    R = {}
    for ds, good in on.items():
        R.update(_grid_records(P, lambda c, aim, good=good: 0.9 if c == good else 0.8, ds))
    cells, choices = demp.best_cells(R, P)
    assert cells == on and all("covers 3 of the 3" in w for w in choices.values())
    # `seeds` trains each data set's own cell, and no other.
    demp_runs = {
        (r[2], r[3]) for r in demp.runs_of(P, ["seeds"], demp.DATASETS, cells) if r[3] != "dense"
    }
    assert {(ds, m) for ds, m in demp_runs if m.startswith("demp.")} == {
        (ds, demp.cell_name(c)) for ds, c in on.items()
    }
    # Until a data set's grid is complete, its cell waits; the other's does not.
    del R[next(k for k in R if k.startswith("train/fashion_mnist/"))]
    cells, choices = demp.best_cells(R, P)
    assert cells == {**on, "fashion_mnist": None}
    assert choices["fashion_mnist"].startswith("not chosen yet")
    # Seeds 1 and 2 of a cell that is not the default recipe, the first one listed:
    # positive_l2 3e-3, at Fashion-MNIST's 4 strengths (the last past the aims).
    fourth = P["strengths"]["fashion_mnist"][("positive_l2", 3e-3)][3]
    assert demp._aim_of(P, "fashion_mnist", ("positive_l2", 3e-3), fourth) is None
    assert demp.pending(P, ["grid", "seeds"], demp.DATASETS, cells) == 2 * 4
    # `--demp-cell` pins every data set's, except where the data set has no grid of it
    # (the VGG grids the two penalties at noise 3e-3, and bn_positive_l1 5e-5).
    assert demp.cells_of(P, "fashion_mnist_vgg") == (
        ("positive_l2", 3e-3),
        ("bn_scale_l1", 3e-3),
        ("bn_positive_l1", 5e-5),
    )
    pinned, why = demp.best_cells(R, P, demp.DEFAULT_CELL)
    assert pinned == {**dict.fromkeys(demp.DATASETS, demp.DEFAULT_CELL), "fashion_mnist_vgg": None}
    assert "has no grid of it" in why["fashion_mnist_vgg"]
    assert demp.best_cells(R, P, ("bn_scale_l1", 3e-3))[0]["fashion_mnist_vgg"] == (
        "bn_scale_l1",
        3e-3,
    )


def test_plan_counts_and_shared_records():
    P = demp.plan(False)
    grid = demp.runs_of(P, ["grid"], demp.DATASETS)
    # per data set: 4 cells x 3 strengths, dense, 5 baselines x 3; Fashion-MNIST's
    # positive_l2 3e-3 has a fourth strength, past the aims; the VGG grids 2 cells;
    # bn_positive_l1 5e-5, after the 2x2: 3 strengths on MNIST-1D, 5 on Fashion-MNIST
    # and 5 on the VGG
    assert len(grid) == 2 * (4 * 3 + 1 + 5 * 3) + 1 + (2 * 3 + 1 + 5 * 3) + 3 + 5 + 5
    other = dict.fromkeys(demp.DATASETS, ("positive_l2", 3e-3))
    default = dict.fromkeys(demp.DATASETS, demp.DEFAULT_CELL)
    # Fashion-MNIST's grid: 9 more (the other cells' seed 0) and the fourth strength's
    # 3 seeds and 3 `speed` runs; scratch 18, lr 20. The VGG: lr 5, grid 23, seeds 38
    # more (2 seeds x (dense, 5 baselines x 3, 3 DemP strengths)), speed 6.
    vgg = 5 + 23 + 38 + 6
    assert len(demp.runs_of(P, demp.PLAN, demp.DATASETS, other)) == (
        190 + 9 + 6 + 18 + 20 + vgg + 11
    )
    # `speed` times the default recipe and, when it is another, the cell of `seeds`.
    speed = demp.runs_of(P, ["speed"], demp.DATASETS, other)
    assert {r[3] for r in speed} == {demp.cell_name(demp.DEFAULT_CELL), "demp.positive_l2.0.003"}
    # cells x strengths (85, 90 %) x data sets x seeds, and the one past the aims; the
    # VGG has no grid of the default recipe, so only its cell is timed
    assert len(speed) == 2 * 2 * 2 * 3 + 3 + 2 * 3
    assert {
        r[4] for r in speed if r[2] == "fashion_mnist" and r[3] != "demp.bn_scale_l1.5e-05"
    } == {
        0.2,
        0.3,
        0.25,
    }
    # The default cell's seed-0 to seed-2 runs serve `seeds` and `ablation` alike.
    # The VGG has no DemP runs of a cell it does not grid: lr, grid, and `seeds`' dense
    # and baselines.
    assert len(demp.runs_of(P, demp.PLAN, demp.DATASETS, default)) == (
        172 + 9 + 1 + 18 + 20 + 5 + 23 + 2 * 16 + 11
    )
    # `scratch`: every strength of MNIST-1D's cell, and on Fashion-MNIST the one
    # strength the plan names for the cell the grid chose there (none for another cell).
    chosen = {
        "mnist1d": ("bn_scale_l1", 3e-3),
        "fashion_mnist": ("bn_positive_l1", 5e-5),
        "fashion_mnist_vgg": ("bn_positive_l1", 5e-5),
    }
    scratch = demp.runs_of(P, ["scratch"], demp.DATASETS, chosen)
    assert collections.Counter((r[2], r[4]) for r in scratch) == {
        **{("mnist1d", r): 6 for r in P["strengths"]["mnist1d"][chosen["mnist1d"]]},
        ("fashion_mnist", 0.13): 6,
        ("fashion_mnist_vgg", 0.1): 6,
        # the final widths of a baseline that beat DemP there, at its target
        ("fashion_mnist", 0.85): 3,
        ("fashion_mnist_vgg", 0.85): 3,
    }
    assert {r[3] for r in scratch if r[4] == 0.85} == {"scratch.early-crops", "scratch.crops"}
    assert not demp.runs_of(P, ["scratch"], ["fashion_mnist"], other)
    # A cell a data set does not grid has no scratch runs there (the report asks every
    # cell of every data set, `in_plan`).
    vgg_only = {"fashion_mnist_vgg": ("positive_l2", 5e-5)}
    assert not demp.runs_of(P, ["scratch"], ["fashion_mnist_vgg"], vgg_only)
    assert demp.in_plan({"scratch/x": {}}, P) == {}
    # Before the grid chooses the cells, their runs in `seeds` (seeds 1 and 2: seed 0
    # is the grid's), `scratch` and `speed` are pending.
    assert demp.pending(P, demp.PLAN, demp.DATASETS, None) == 12 + 2 + 18 + 12 + 3 + 6 + 6
    scratch = demp.runs_of(P, ["scratch"], demp.DATASETS, other)
    assert len(scratch) == 3 * 2 * 3  # strengths x (DemP's widths, uniform) x seeds
    keys = [r[0] for r in demp.runs_of(P, demp.EXPERIMENTS, demp.DATASETS, other)]
    assert len(keys) == len(set(keys))
    seeds = demp.runs_of(P, ["seeds"], demp.DATASETS, other)
    assert {r[0] for r in grid if r[3] in ("dense", "snap")} <= {r[0] for r in seeds}


def test_ablation_variants_and_one_optimiser():
    T = 100
    full, opt = demp.make_method(demp.cell_name(demp.DEFAULT_CELL), 0.1, T)
    assert (full.penalty, full.noise) == demp.DEFAULT_CELL
    cell, _ = demp.make_method("demp.positive_l2.0.003", 0.3, T)
    assert (cell.penalty, cell.noise, cell.reg) == ("positive_l2", 3e-3, 0.3)
    s = {m: demp.make_method(f"demp-{m}", 0.1, T)[0].schedules(T) for m in demp.ABLATIONS}
    assert float(s["no-noise"]["noise"](27)) == 0.0
    for t in (0, 50, 99):
        assert float(s["no-schedule"]["reg"](t)) == pytest.approx(0.1)
        assert float(s["flat-reg"]["reg"](t)) == pytest.approx(0.1)
        assert float(s["flat-noise"]["noise"](t)) == pytest.approx(5e-5)
    ref = full.schedules(T)
    for t in (0, 27, 95):
        assert float(s["flat-reg"]["noise"](t)) == pytest.approx(float(ref["noise"](t)))
        assert float(s["flat-noise"]["reg"](t)) == pytest.approx(float(ref["reg"](t)))
    # Every method of a comparison gets the same optimiser and schedule.
    for m, knob in (("dense", None), ("snap", 0.9), ("early-crops", 0.7), ("demp-no-noise", 1)):
        assert demp.make_method(m, knob, T)[1].init.__qualname__ == opt.init.__qualname__


def test_readme_keeps_the_old_section_without_new_records(results, monkeypatch, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{demp.SECTION}\n\nold numbers\n")
    monkeypatch.setattr(demp, "README", readme)
    store = demp.store_of("full", None)
    assert not demp.write_readme(store, "new table", "cmd")
    assert "old numbers" in readme.read_text()
    store.put("train/mnist1d/dense/-/seed=0", {"wall_s": 1.0})
    quick = demp.store_of("quick", None)
    quick.put("train/mnist1d/dense/-/seed=0", {"wall_s": 1.0})
    assert not demp.write_readme(quick, "quick table", "cmd")  # a smoke run never
    assert "old numbers" in readme.read_text()
    assert demp.write_readme(store, "new table", "cmd")
    assert "new table" in readme.read_text() and "old numbers" not in readme.read_text()


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(demp, "RESULTS", tmp_path)
    return tmp_path


def test_store_writes_each_record_and_skips_it_after(results):
    store = demp.store_of("quick", None)
    assert store.path == results / "demp-v2-quick.json"
    assert store.todo("train/mnist1d/dense/-/seed=0")
    store.put("train/mnist1d/dense/-/seed=0", {"test_accuracy": 0.5})
    # A fresh process (a restart) reads the record back and skips it.
    again = demp.store_of("quick", None)
    assert not again.todo("train/mnist1d/dense/-/seed=0")
    assert again.todo("train/mnist1d/dense/-/seed=1")
    rec = json.loads(store.path.read_text())["runs"]["train/mnist1d/dense/-/seed=0"]
    assert rec["test_accuracy"] == 0.5
    assert {"measured", "toolkit_commit", "toolkit_tree", "host"} <= rec.keys()
    assert not list(results.glob(".demp*"))  # no temporary file left behind


def test_store_force_redoes_matching_records_once(results):
    demp.store_of("full", None).put("train/a/seed=0", {})
    demp.store_of("full", None).put("speed/a/seed=0", {})
    store = demp.store_of("full", ["train"])
    assert store.todo("train/a/seed=0") and not store.todo("speed/a/seed=0")
    store.put("train/a/seed=0", {})
    assert not store.todo("train/a/seed=0")  # redone once, not again in this run
    assert demp.store_of("full", []).todo("speed/a/seed=0")  # --force alone: everything


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
    planned = [r[0] for r in demp.runs_of(demp.plan(True), ["dead_lr", "dead_batch"], ["mnist1d"])]
    assert len(planned) == 4

    # Stopped during its third run (the first call is the uncharged warm-up).
    calls: list = []
    monkeypatch.setattr(demp, "run_one", _fake_run_one(calls, fail_on=4))
    with pytest.raises(KeyboardInterrupt):
        demp.main(argv)
    assert calls[0][0] == 10  # the warm-up: 10 steps, not recorded
    done = json.loads((results / "demp-v2-quick.json").read_text())["runs"]
    assert sorted(done) == sorted(planned[:2])

    # The restart runs only the two that are missing.
    calls.clear()
    monkeypatch.setattr(demp, "run_one", _fake_run_one(calls))
    assert demp.main(argv) == 0
    assert [c[3] for c in calls[1:]] == [16, 128]  # dead_batch's two batch sizes
    done = json.loads((results / "demp-v2-quick.json").read_text())["runs"]
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
    assert calls == [] and not (results / "demp-v2-quick.json").exists()
    # Runs start just after minute 0 and just after minute 2 (the warm-up and the first
    # run take a minute each); just after minute 3 the budget is spent.
    assert demp.main([*argv, "--max-minutes", "2.5"]) == 0
    assert len(calls) == 3  # warm-up + two runs
    assert len(json.loads((results / "demp-v2-quick.json").read_text())["runs"]) == 2
    assert "--max-minutes 2.5 reached: 2 runs left" in capsys.readouterr().out


def test_main_shards_split_the_runs_exactly(results, monkeypatch):
    monkeypatch.setattr(demp.tkdata, "load", lambda name, **kw: object())
    monkeypatch.setattr(demp, "run_one", _fake_run_one([]))
    argv = ["--quick", "--experiments", "grid", "--no-plot", "--no-report"]
    keys = []
    for i in range(3):
        monkeypatch.setattr(demp, "RESULTS", results / str(i))
        assert demp.main([*argv, "--shard", f"{i}/3"]) == 0
        keys.append(set(json.loads((results / str(i) / "demp-v2-quick.json").read_text())["runs"]))
    planned = {r[0] for r in demp.runs_of(demp.plan(True), ["grid"], ["mnist1d"])}
    assert keys[0] | keys[1] | keys[2] == planned
    assert sum(len(k) for k in keys) == len(planned)
    assert all(keys)  # 19 runs: every shard gets some


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shard", "2/2"], "I must be in"),
        (["--shard", "x"], "takes I/N"),
        (["--shard", "0/2", "--experiments", "speed"], "need the machine alone"),
        (["--jobs", "2", "--shard", "0/2", "--experiments", "grid"], "not with --shard"),
        (["--demp-cell", "l1,5e-5"], "choose one of positive_l2,0.003"),
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
    code = demp.main([*argv, "--experiments", "grid,ablation"])
    out = capsys.readouterr().out
    if failed:
        assert code == 1 and f"shards failed: {', '.join(failed)};" in out
    else:
        assert code == 0 and "shards failed" not in out
    first, second = _FakeShard.argvs
    assert first[first.index("--shard") + 1] == "0/2" and second[-1] == "1/2"
    for flag in ("--seeds=1", "--max-minutes=5.0", "--no-report"):
        assert flag in first
    assert first[first.index("--experiments") + 1] == "grid,ablation"


def test_lr_runs_dense_at_each_rate_on_a_validation_split(results, monkeypatch):
    P = demp.plan(False)
    runs = demp.runs_of(P, ["lr"], demp.DATASETS)
    assert len(runs) == 3 * 5 + 5 + 5 and {r[3] for r in runs} == {"dense-lr"}
    assert demp.LR in P["lr"]["lrs"]
    assert {r[0] for r in runs if r[2] == "mnist1d"} == {
        f"lr/mnist1d/dense-lr/{lr:g}/seed={seed}" for lr in P["lr"]["lrs"] for seed in (0, 1, 2)
    }
    # The rate is the one thing that changes: the optimiser is the comparisons' own.
    _, at_lr = demp.make_method("dense-lr", demp.LR, 100)
    _, usual = demp.make_method("dense", None, 100)
    _, fast = demp.make_method("dense-lr", 1e-2, 100)
    params = {"w": demp.jnp.ones(3, demp.jnp.float32)}
    grads = {"w": demp.jnp.asarray([1.0, -2.0, 0.5], demp.jnp.float32)}

    def first_update(opt):
        with demp.jax.numpy_dtype_promotion("standard"):
            return opt.update(grads, opt.init(params), params)[0]["w"]

    assert demp.jnp.allclose(first_update(at_lr), first_update(usual))
    # Weight decay is decoupled and scaled by the rate too: the step doubles.
    assert demp.jnp.allclose(first_update(fast), 2 * first_update(at_lr))
    # A comparison's method at the rate `comparison_lr` chose: the same optimiser.
    _, chosen = demp.make_method("snap", 0.9, 100, 1e-2)
    assert demp.jnp.allclose(first_update(chosen), first_update(fast))

    # main scores them on held-out training examples, never on the test split.
    seen = []

    class Data:
        name = "mnist1d"

    def split(dataset, fraction, key):
        seen.append(fraction)
        return "validation"

    calls = []
    fake = _fake_run_one(calls)

    def run_one(dataset, cfg, method, knob, seed, batch=None, compile_ahead=0):
        if cfg["steps"] != 10:  # not the warm-up
            assert dataset == "validation"
        return fake(dataset, cfg, method, knob, seed, batch, compile_ahead)

    monkeypatch.setattr(demp.tkdata, "load", lambda name, **kw: Data())
    monkeypatch.setattr(demp.tkdata, "validation_split", split)
    monkeypatch.setattr(demp, "run_one", run_one)
    argv = ["--quick", "--experiments", "lr", "--no-plot", "--no-report"]
    assert demp.main(argv) == 0
    assert [c[1:3] for c in calls[1:]] == [("dense-lr", 1e-3), ("dense-lr", 5e-3)]
    assert seen == [0.2, 0.2]


def _lr_records(accs, seeds=(0,)):
    return {
        f"lr/mnist1d/dense-lr/{lr:g}/seed={seed}": {"test_accuracy": a, "n_test": 800}
        for lr, a in accs.items()
        for seed in seeds
    }


@pytest.mark.parametrize(
    "accs,lr,word",
    [
        (
            {1e-3: 0.70, 2e-3: 0.72, 5e-3: 0.75, 1e-2: 0.74, 2e-2: 0.7},
            5e-3,
            "0.005, the recipe's, the best of 5",
        ),
        (
            {1e-3: 0.70, 2e-3: 0.72, 5e-3: 0.74, 1e-2: 0.75, 2e-2: 0.7},
            5e-3,
            "0.005, the recipe's, within 2 SE of the best, 0.01",
        ),
        (
            {1e-3: 0.70, 2e-3: 0.72, 5e-3: 0.60, 1e-2: 0.75, 2e-2: 0.7},
            1e-2,
            "0.01, the best, which beats the recipe's 0.005 by 0.1500",
        ),
    ],
)
def test_lr_rule(accs, lr, word):
    P = demp.plan(False)
    P["lr"]["seeds"]["mnist1d"] = [0]
    R = _lr_records(accs)
    got, why = demp.comparison_lr(R, P, "mnist1d")
    assert got == lr and why.startswith(word)
    verdicts = []
    text = "\n".join(demp._lr_section(R, P, verdicts))
    assert "| 0.005 | 1 | " in text and "800 training examples held out" in text
    assert f"Every comparison on mnist1d below trains at {word}" in text
    assert len(verdicts) == 1 and f"**MET**: every record reported trains at {word}" in verdicts[0]
    # A plan that does not try the recipe's rate takes the best it tried.
    P2 = {**P, "lr": {**P["lr"], "lrs": [1e-3, 2e-3]}}
    assert demp.comparison_lr(R, P2, "mnist1d")[0] == 2e-3
    # Until every rate's run is done, the recipe's rate, and no verdict.
    del R["lr/mnist1d/dense-lr/0.02/seed=0"]
    assert demp.comparison_lr(R, P, "mnist1d")[0] == demp.LR
    verdicts = []
    demp._lr_section(R, P, verdicts)
    assert verdicts == []


def test_store_hides_and_redoes_runs_at_another_learning_rate(results, monkeypatch):
    P = demp.plan(True)  # quick: lr on MNIST-1D, seed 0, rates 1e-3 and 5e-3
    store = demp.store_of("quick", None, P)
    old = "train/mnist1d/dense/-/seed=0"
    store.put(old, {"test_accuracy": 0.5})  # no `lr` field: trained at LR
    store.put("dead_lr/mnist1d/adam/0.001/seed=0", {"lr": None})
    assert not store.todo(old) and old in store.entries()
    # The lr experiment finds 1e-3 better beyond 2 SE: the old record is stale.
    for lr, acc in ((1e-3, 0.9), (5e-3, 0.5)):
        store.put(f"lr/mnist1d/dense-lr/{lr:g}/seed=0", {"test_accuracy": acc, "n_test": 800})
    assert demp.comparison_lr(store.all_entries(), P, "mnist1d")[0] == 1e-3
    assert store.todo(old) and old not in store.entries() and old in store.all_entries()
    assert "dead_lr/mnist1d/adam/0.001/seed=0" in store.entries()  # not a comparison
    # main reruns it at 1e-3, and the new record counts.
    calls, cfgs = [], []
    fake = _fake_run_one(calls)

    def run_one(dataset, cfg, method, knob, seed, batch=None, compile_ahead=0):
        cfgs.append(cfg)
        rec = fake(dataset, cfg, method, knob, seed, batch, compile_ahead)
        return {**rec, "lr": cfg.get("lr", demp.LR)}

    monkeypatch.setattr(demp.tkdata, "load", lambda name, **kw: object())
    monkeypatch.setattr(demp, "run_one", run_one)
    argv = ["--quick", "--experiments", "grid", "--methods", "dense", "--no-plot", "--no-report"]
    assert demp.main(argv) == 0
    assert [c[1] for c in calls[1:]] == ["dense"] and cfgs[-1]["lr"] == 1e-3
    assert not store.todo(old) and store.entries()[old]["lr"] == 1e-3


def test_run_one_trains_at_the_configured_rate(monkeypatch):
    seen = []

    def make_method(method, knob, steps, lr=demp.LR):
        seen.append(lr)
        raise StopIteration

    monkeypatch.setattr(demp, "make_method", make_method)
    cfg = {**demp.plan(True)["datasets"]["mnist1d"], "lr": 2e-2}
    data = demp.tkdata.load("mnist1d")
    with pytest.raises(StopIteration):
        demp.run_one(data, cfg, "dense", None, 0)
    assert seen == [2e-2]


def test_report_tables_and_verdicts(results):
    P = demp.plan(False)
    cell = demp.DEFAULT_CELL
    store = demp.store_of("full", None)
    R = _grid_records(P, lambda c, aim: 0.8 - 0.1 * aim if c == cell else 0.5)
    widths = {"hidden.0": 100, "hidden.1": 50}
    base = {"n_test": 1000, "wall_s": 1.0, "widths": widths, "config": {"model": "mlp"}}
    base["config"].update(widths=[1024, 1024], steps=6000, batch=128)
    base["config"]["initial_widths"] = {"hidden.0": 1024, "hidden.1": 1024}
    for key, v in R.items():
        store.put(key, {**base, **v})
    for seed in (0, 1, 2):
        store.put(
            f"train/mnist1d/dense/-/seed={seed}",
            {**base, "unit_sparsity": 0.0, "test_accuracy": 0.75},
        )
        # SNAP well below DemP at 0.85, random just below it (within 2 SE).
        for m, acc in (("snap", 0.6), ("random", 0.715)):
            rec = {**base, "unit_sparsity": 0.85, "test_accuracy": acc + 0.001 * seed}
            store.put(f"train/mnist1d/{m}/0.85/seed={seed}", rec)
        if seed:
            for reg, aim in zip(P["strengths"]["mnist1d"][cell], P["aims"]):
                rec = {**base, "unit_sparsity": aim, "test_accuracy": 0.8 - 0.1 * aim + 0.01 * seed}
                store.put(f"train/mnist1d/{demp.cell_name(cell)}/{reg:g}/seed={seed}", rec)
    chosen, choices = demp.best_cells(store.entries(), P)
    assert chosen == {"mnist1d": cell, "fashion_mnist": None, "fashion_mnist_vgg": None}
    assert "covers 3 of the 3" in choices["mnist1d"]
    text = demp.report(store, P, chosen, choices, plot=False)
    assert "### The grid of DemP recipes on mnist1d (seed 0)" in text
    # Where each grid run left its units, beside the sparsity they add up to.
    assert "(at the start: hidden.0 1024, hidden.1 1024)." in text
    reg = P["strengths"]["mnist1d"][cell][0]
    (grid_row,) = [
        line for line in text.splitlines() if line.startswith(f"| bn_scale_l1 | 5e-05 | {reg:g} |")
    ]
    assert "| 0.700 | hidden.0 100, hidden.1 50 | 0.7300 ± 0.0140 |" in grid_row
    assert (
        "| snap | 0.85 | 0.850 | 0.6000 ± 0.0155 | "
        "0.5000 (−) | 0.5000 (−) | 0.5000 (−) | 0.7150 (+) |" in text
    )
    row = next(line for line in text.splitlines() if line.startswith("| snap | 0.85 | 3 |"))
    assert "**DemP better**" in row
    row = next(line for line in text.splitlines() if line.startswith("| random | 0.85 | 3 |"))
    assert "within 2 SE" in row
    assert (
        "mnist1d, DemP ≥ every baseline within noise at every matched sparsity ≥ 50 %: **MET**"
        in text
    )
    regs = P["strengths"]["mnist1d"][cell]
    assert f"| {regs[-1]:g} | 100.0 | 50.0 |" in text  # units left per layer
    assert (
        f"The last hidden layer (`hidden.1`, 1024 units) keeps 50.0 of them at reg "
        f"{regs[0]:g}; the weakest reg that leaves it fewer than half is {regs[0]:g} (50.0 "
        "left); in the runs at ≥ 80 % unit sparsity it keeps at most 50.0." in text
    )


def test_scratch_trains_demps_widths_and_an_even_spread_of_as_many_units():
    cell = ("positive_l2", 3e-3)
    own, even = (demp.scratch_name(cell, kind) for kind in demp.SCRATCH)
    source = "train/mnist1d/demp.positive_l2.0.003/0.3/seed=1"
    start = {"hidden.0": 100, "hidden.1": 300}
    R = {source: {"widths": {"hidden.0": 2, "hidden.1": 18}, "config": {"initial_widths": start}}}
    assert demp.scratch_widths(R, "mnist1d", own, 0.3, 1) == {"hidden.0": 2, "hidden.1": 18}
    # 20 of 400 units: 5 % of each layer.
    assert demp.scratch_widths(R, "mnist1d", even, 0.3, 1) == {"hidden.0": 5, "hidden.1": 15}
    assert demp.scratch_widths(R, "mnist1d", own, 0.3, 0) is None  # its DemP run not done
    assert demp.scratch_widths(R, "mnist1d", own, 0.1, 1) is None
    # The report: DemP as good as its widths from scratch, the even spread better.
    P = demp.plan(False)
    reg = P["strengths"]["mnist1d"][cell][-1]
    R = {}
    for seed in (0, 1, 2):
        start = {"hidden.0": 1024, "hidden.1": 1024}
        for key, acc, widths in (
            (f"train/mnist1d/{demp.cell_name(cell)}", 0.62, {"hidden.0": 22, "hidden.1": 134}),
            (f"scratch/mnist1d/{own}", 0.621, {"hidden.0": 22, "hidden.1": 134}),
            (f"scratch/mnist1d/{even}", 0.70, {"hidden.0": 78, "hidden.1": 78}),
        ):
            R[f"{key}/{reg:g}/seed={seed}"] = {
                "test_accuracy": acc + 0.002 * seed,
                "unit_sparsity": 0.92,
                "widths": widths,
                "config": {"initial_widths": start},
            }
    text = "\n".join(demp._scratch_section(R, P, {"mnist1d": cell}))
    row = next(line for line in text.splitlines() if line.startswith(f"| {reg:g} | 3 |"))
    assert "| 22, 134 | 0.6220 ± 0.0012 |" in row and "| 78, 78 | 0.7020 ± 0.0012 |" in row
    assert "**DemP's widths worse**" in row
    assert (
        "DemP within 2 SE of its own widths trained from scratch at 1 of 1 strengths "
        "(better at 0, worse at 0); the same units spread evenly better than DemP's "
        "widths beyond 2 SE at 1 of 1." in text
    )
    assert demp._scratch_section(R, P, {"mnist1d": None}) == []
    # The goal's verdict, where DemP lost to a baseline, says what the runs measured.
    reason = demp._scratch_reason(R, P, "mnist1d", cell)
    assert (
        f"reg {reg:g} (unit sparsity 0.920): DemP 0.6220 ± 0.0012, its widths from scratch "
        "0.6230 ± 0.0012 (within 2 SE" in reason
    )
    assert "as many units spread evenly 0.7020 ± 0.0012 (from scratch; **DemP's widths worse**" in (
        reason
    )
    assert demp._scratch_reason({}, P, "mnist1d", cell) == ""


def test_scratch_trains_a_baselines_widths_against_the_baseline_and_demps():
    P = demp.plan(False)
    cell, ds, reg = ("bn_positive_l1", 5e-5), "fashion_mnist", 0.13
    name = demp.scratch_baseline_name("early-crops")
    source = {"widths": {"conv.0": 2, "conv.1": 4, "fc.0": 9, "fc.1": 8}}
    R = {f"train/{ds}/early-crops/0.85/seed=2": source}
    assert demp.scratch_widths(R, ds, name, 0.85, 2) == source["widths"]
    assert demp.scratch_widths(R, ds, name, 0.85, 1) is None  # its baseline run not done
    R = {}
    for seed in (0, 1, 2):
        for key, acc in (
            (f"train/{ds}/early-crops/0.85", 0.90),
            (f"scratch/{ds}/{name}/0.85", 0.91),
            (f"train/{ds}/{demp.cell_name(cell)}/{reg:g}", 0.89),
            (f"scratch/{ds}/{demp.scratch_name(cell, 'demp-widths')}/{reg:g}", 0.89),
            (f"scratch/{ds}/{demp.scratch_name(cell, 'uniform')}/{reg:g}", 0.86),
        ):
            R[f"{key}/seed={seed}"] = {
                "test_accuracy": acc + 0.001 * seed,
                "unit_sparsity": 0.86,
                "widths": source["widths"],
                "config": {"initial_widths": {"conv.0": 6, "conv.1": 16, "fc.0": 120, "fc.1": 84}},
            }
    reason = demp._scratch_reason(R, P, ds, cell)
    assert (
        "early-crops@0.85's final widths (unit sparsity 0.860) trained from scratch "
        "0.9110 ± 0.0006 against "
        "early-crops@0.85 itself 0.9010 ± 0.0006 (**early-crops@0.85 itself worse**" in reason
    )
    assert (
        "against DemP's widths from scratch at reg 0.13: **early-crops@0.85's widths better**"
        in (reason)
    )
    assert "Reading: the loss is in the widths DemP ends with, not in its training" in reason
    text = "\n".join(demp._scratch_section(R, P, {ds: cell}))
    assert "A baseline that beat DemP here, from scratch too: early-crops@0.85's" in text
    # Its widths from scratch no better than DemP's: neither explains the loss.
    for seed in (0, 1, 2):
        R[f"scratch/{ds}/{name}/0.85/seed={seed}"]["test_accuracy"] = 0.89 + 0.001 * seed
    assert "neither its allocation nor its training accounts for the loss" in (
        demp._scratch_reason(R, P, ds, cell)
    )
    # DemP below its own widths from scratch: its training.
    for seed in (0, 1, 2):
        R[f"train/{ds}/{demp.cell_name(cell)}/{reg:g}/seed={seed}"]["test_accuracy"] = 0.8
    assert "Reading: DemP's training loses what its widths hold" in (
        demp._scratch_reason(R, P, ds, cell)
    )
    # Without its runs, nothing is said of it.
    assert demp._scratch_baseline({}, P, ds) is None
    assert demp._scratch_baseline(R, P, "mnist1d") is None


def test_scratch_config_splits_convolutions_from_hidden_layers():
    lenet = {"conv.0": 3, "conv.1": 5, "fc.0": 12, "fc.1": 8}
    assert demp.scratch_config(lenet) == {"widths": (12, 8), "channels": (3, 5)}
    vgg = {f"conv.{i}": w for i, w in enumerate((3, 6, 7, 6, 2))}
    assert demp.scratch_config(vgg) == {"widths": (), "channels": (3, 6, 7, 6, 2)}
    assert demp.scratch_config({"hidden.0": 22, "hidden.1": 134}) == {"widths": (22, 134)}


def test_jobs_runs_the_seeds_cell_once_the_grid_chose_it(results, monkeypatch):
    P = demp.plan(True)
    rounds: list = []

    class Shard:
        def __init__(self, argv):
            self.argv = argv
            rounds.append(argv)
            if len(rounds) <= 2:  # the first round's shards finish the grid
                store = demp.store_of("quick", None)
                for key, *_ in demp.runs_of(P, ["grid"], ["mnist1d"]):
                    store.put(key, {"unit_sparsity": 0.5, "test_accuracy": 0.5, "wall_s": 1.0})

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Shard)
    argv = ["--quick", "--jobs", "2", "--experiments", "grid,seeds", "--no-plot", "--no-report"]
    assert demp.main([*argv, "--max-minutes", "30"]) == 0
    assert len(rounds) == 4  # two shards, then two more for the seeds of the chosen cell
    assert all("--max-minutes=30.0" in a for a in rounds[:2])
    # The second round gets what is left of the budget.
    left = [a for a in rounds[2] if a.startswith("--max-minutes=")]
    assert len(left) == 1 and 29 < float(left[0].split("=")[1]) < 30


def test_speed_verdict_counts_only_runs_that_did_not_collapse():
    timed = {"dense_steps_s": 90.0, "steps_s": 40.0, "compile_s": 5.0, "prunes": 8}
    timed.update(dense_test_accuracy=0.75, load=[1.0, 1.0, 1.0], dense_wall_s=100.0)
    R = {}
    for seed in (0, 1, 2):
        R[f"speed/mnist1d/demp.bn_scale_l1.5e-05/0.3/seed={seed}"] = {
            **timed,
            "unit_sparsity": 0.80,
            "test_accuracy": 0.089,
            "wall_s": 40.0,
            "widths": {"hidden.0": 400 + seed, "hidden.1": 1},
        }
        R[f"speed/mnist1d/demp.positive_l2.0.003/0.1/seed={seed}"] = {
            **timed,
            "unit_sparsity": 0.86,
            "test_accuracy": 0.67,
            "wall_s": 50.0,
            "widths": {"hidden.0": 44, "hidden.1": 230},
            "events_wait": True,
            # seconds per step up to each evaluation: the last at the final widths
            "step_times": [[100, 0.02], [200, 0.004 + 0.001 * seed]],
            "dense_step_times": [[100, 0.02], [200, 0.012]],
        }
    verdicts: list = []
    lines = demp._speed_section(R, "mnist1d", verdicts)
    (row,) = [line for line in lines if line.startswith("| `demp.positive_l2.0.003` | 0.1 | 3 |")]
    assert "| 50.0 (40.0 / 5.0 / 5.0) |" in row and "| 2.25 ± 0.00 |" in row
    # Last epoch: 12 ms against 4, 5, 6 ms: 3, 2.4, 2 (mean 2.47, sd 0.50).
    assert "| 2.25 ± 0.00 | 2.47 ± 0.50 | 8 |" in row
    # Timed before events waited for the queued steps: the wall clock alone.
    (old,) = [line for line in lines if line.startswith("| `demp.bn_scale_l1.5e-05` | 0.3 |")]
    assert "| 40.0 (–) |" in old and "| 2.50 ± 0.00 | – |" in old
    (collapsed,) = [line for line in lines if line.startswith("Collapsed")]
    assert "`demp.bn_scale_l1.5e-05` reg 0.3 (3 of 3 runs; mean accuracy 0.089; units left" in (
        collapsed
    )
    assert "hidden.0 401, hidden.1 1)" in collapsed and "one unit passes one number" in collapsed
    (verdict,) = verdicts
    assert "**MET**" in verdict and "`demp.positive_l2.0.003` at sparsity 0.86: 2.00×" in verdict
    assert "a DemP step took 5.0 ms against dense's 12.0 ms, 2.47×" in verdict
    # Records from before `step_times` have no last-epoch figure.
    assert "| 2.50 ± 0.00 | – | – |" in old
    # One seed of three pruned past use (0.30, below half way from chance to dense's
    # 0.75) takes its strength out of the verdict, though the mean (0.55) is far above
    # chance.
    R["speed/mnist1d/demp.positive_l2.0.003/0.1/seed=0"]["test_accuracy"] = 0.30
    R["speed/mnist1d/demp.positive_l2.0.003/0.1/seed=1"]["test_accuracy"] = 0.68
    verdicts = []
    demp._speed_section(R, "mnist1d", verdicts)
    (verdict,) = verdicts
    assert "**MISSED**" in verdict and "all collapsed" in verdict
    # The cell that `seeds` compares has no `speed` record yet: the verdict says so,
    # and the table still shows the records there are.
    verdicts = []
    lines = demp._speed_section(R, "mnist1d", verdicts, ("bn_positive_l1", 5e-5))
    (verdict,) = verdicts
    assert "**NOT MEASURED YET**" in verdict and "`demp.bn_positive_l1.5e-05`" in verdict
    assert any(line.startswith("| `demp.positive_l2.0.003` | 0.1 |") for line in lines)
    verdicts = []
    demp._speed_section(R, "mnist1d", verdicts, ("positive_l2", 3e-3))
    assert "**MISSED**" in verdicts[0]


def test_reaching_80_percent_counts_only_strengths_without_a_collapsed_run():
    name = demp.cell_name(demp.DEFAULT_CELL)

    def recs(sparsity, accs):
        return [{"unit_sparsity": sparsity, "test_accuracy": a, "n_test": 10000} for a in accs]

    g = {
        ("dense", "-"): recs(0.0, [0.92, 0.92, 0.92]),
        (name, "0.2"): recs(0.77, [0.90, 0.90, 0.90]),
        # 0.60 is above half way from chance to dense (0.51); 0.30 is not.
        (name, "0.3"): recs(0.87, [0.30, 0.89, 0.60]),
    }
    text = demp._reach_verdict(g, name, "fashion_mnist")
    assert "**MISSED**" in text and "no collapsed run 0.770, reg 0.2" in text
    assert "the sparsest mean, 0.870 at reg 0.3, has 1 of its 3 runs collapsed" in text
    g[(name, "0.3")] = recs(0.87, [0.88, 0.89, 0.60])
    text = demp._reach_verdict(g, name, "fashion_mnist")
    assert "**MET**" in text and "no collapsed run 0.870, reg 0.3" in text


def test_report_leaves_out_records_of_strengths_no_longer_planned():
    P = demp.plan(False)
    cell = demp.DEFAULT_CELL
    planned = P["strengths"]["mnist1d"][cell][0]
    off = 0.3
    assert off not in P["strengths"]["mnist1d"][cell]
    name = demp.cell_name(cell)
    R = {
        f"train/mnist1d/{name}/{planned:g}/seed=0": {},
        f"train/mnist1d/{name}/{off:g}/seed=0": {},  # set aside when re-aimed
        "train/mnist1d/snap/0.9/seed=1": {},
        "lr/mnist1d/dense-lr/0.01/seed=2": {},
        # The Fashion-MNIST runs of another cell than the one `seeds` chose stay.
        "train/fashion_mnist/demp.positive_l2.0.003/0.15/seed=2": {},
    }
    kept = demp.in_plan(R, P)
    assert sorted(kept) == sorted(k for k in R if f"/{off:g}/" not in k)


def test_shift_note_reads_the_scale_l1_grid_runs():
    P = demp.plan(False)
    R = {}
    for cell, left in ((("bn_scale_l1", 3e-3), 70), (("bn_scale_l1", 5e-5), 80)):
        for i, reg in enumerate(P["strengths"]["fashion_mnist"][cell]):
            key = f"train/fashion_mnist/{demp.cell_name(cell)}/{reg:g}/seed=0"
            R[key] = {"widths": {"fc.1": left + i}}
    ours = ("bn_positive_l1", 5e-5)
    (text, _) = demp._shift_note(R, P, "fashion_mnist", ours, "fc.1", 84)
    assert "left `fc.1` 70-82 of its 84 units" in text
    assert demp._shift_note(R, P, "fashion_mnist", ("positive_l2", 3e-3), "fc.1", 84) == []
    assert demp._shift_note({}, P, "fashion_mnist", ours, "fc.1", 84) == []


def test_each_record_names_its_cpu_and_the_readme_counts_them(results, monkeypatch, tmp_path):
    # The machines share one host name, so the store's machine record is the last
    # writer's: each record carries its own CPU, and a README built from records of
    # several CPUs says how many each measured.
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{demp.SECTION}\n\nold\n")
    monkeypatch.setattr(demp, "README", readme)
    store = demp.store_of("full", None)
    store.put("train/mnist1d/dense/-/seed=0", {"wall_s": 1.0})
    rec = json.loads(store.path.read_text())["runs"]["train/mnist1d/dense/-/seed=0"]
    assert rec["cpu"] == demp.machine()["cpu"]
    assert demp.write_readme(store, "table", "cmd")
    assert "Records by CPU" not in readme.read_text()  # one CPU: nothing to say
    store.put("train/mnist1d/dense/-/seed=1", {"wall_s": 1.0})
    data = json.loads(store.path.read_text())
    data["runs"]["train/mnist1d/dense/-/seed=1"]["cpu"] = "Other CPU"
    store.path.write_text(json.dumps(data))
    data["runs"]["train/mnist1d/dense/-/seed=2"] = {"wall_s": 1.0, "host": "vm"}
    store.path.write_text(json.dumps(data))
    assert demp.write_readme(demp.store_of("full", None), "table", "cmd")
    text = readme.read_text()
    assert (
        f"Records by CPU (each record's own): {rec['cpu']}: 1, Other CPU: 1, CPU not recorded: 1."
        in text
    )


def test_baselines_last_layer_lists_their_widths_at_80_percent_and_more():
    def rec(width, acc):
        return {"widths": {"conv.0": 9, "conv.4": width}, "test_accuracy": acc}

    g = {
        ("random", "0.7"): [rec(30, 0.91)],  # below 80 %: left out
        ("random", "0.85"): [rec(10, 0.88), rec(12, 0.86)],
        ("snap", "0.9"): [rec(4, 0.85)],
        ("demp.x", "0.1"): [rec(2, 0.80)],  # not a baseline
    }
    (text, _) = demp._baselines_last_layer(g, "conv.4", [1.0, 2.5])
    assert text == (
        "The baselines' `conv.4` at their targets of 80 % and more (units left, mean over "
        "seeds): random 11.0 at 0.85 (accuracy 0.8700); snap 4.0 at 0.9 (accuracy "
        "0.8500). DemP's runs at ≥ 80 % keep 1.0-2.5."
    )
    assert demp._baselines_last_layer(g, "conv.4", []) == []
    assert demp._baselines_last_layer({("random", "0.7"): [rec(30, 0.9)]}, "conv.4", [1.0]) == []
