"""`benchmarks/_harness.py`: the resumable store and the shared options."""

import argparse
import json
import pathlib
import sys

import pytest


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
try:
    import _harness
finally:
    sys.path.remove(str(_BENCHMARKS))


def _store(path, force=None):
    return _harness.Store(
        path,
        force,
        section=("full",),
        machine=lambda: {"cores": 2},
        machine_at=("machine", "full"),
    )


def test_a_store_resumes_where_a_run_stopped(tmp_path):
    path = tmp_path / "results.json"
    first = _store(path)
    assert first.todo("solve/N=100") and first.todo("solve/N=1000")
    first.put("solve/N=100", {"seconds": 1.5})
    # A new run (a new process, after the first one died) skips the finished entry.
    again = _store(path)
    assert not again.todo("solve/N=100") and again.todo("solve/N=1000")
    assert again.get("solve/N=100")["seconds"] == 1.5
    data = json.loads(path.read_text())
    assert data["machine"]["full"] == {"cores": 2}
    assert {"measured", "toolkit_commit"} <= set(data["full"]["solve/N=100"])


def test_force_redoes_the_named_entries_once(tmp_path):
    path = tmp_path / "results.json"
    _store(path).put("solve/N=100", {"seconds": 1.5})
    _store(path).put("grad/N=100", {"seconds": 2.5})
    forced = _store(path, force=["solve"])
    assert forced.todo("solve/N=100") and not forced.todo("grad/N=100")
    forced.put("solve/N=100", {"seconds": 1.0})
    assert not forced.todo("solve/N=100")  # redone by this run: not again
    everything = _store(path, force=[])
    assert everything.todo("solve/N=100") and everything.todo("grad/N=100")


def test_the_shared_options():
    parser = _harness.arguments(
        argparse.ArgumentParser(), example="solve", quick="smoke run", wait_quiet=60.0
    )
    opts = parser.parse_args(["--quick", "--force", "solve,grad", "--wait-quiet", "5"])
    assert opts.quick and opts.wait_quiet == 5.0 and _harness.forced(opts) == ["solve", "grad"]
    defaults = parser.parse_args([])
    assert defaults.wait_quiet == 60.0 and _harness.forced(defaults) is None
    assert _harness.forced(parser.parse_args(["--force"])) == []
    bare = _harness.arguments(argparse.ArgumentParser(), example="solve")
    with pytest.raises(SystemExit):
        bare.parse_args(["--wait-quiet", "5"])


def test_shards_split_the_entries_exactly():
    parser = _harness.arguments(argparse.ArgumentParser(), example="solve", shard=True)
    assert parser.parse_args(["--shard", "1/3"]).shard == (1, 3)
    assert parser.parse_args([]).shard is None
    for bad in ("3/3", "x", "1/"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--shard", bad])
    keys = [f"solve/N={n}" for n in range(40)]
    shards = [[k for k in keys if _harness.in_shard(k, (i, 3))] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(keys)  # each entry in exactly one shard
    assert all(shards)
    assert all(_harness.in_shard(k, None) for k in keys)
