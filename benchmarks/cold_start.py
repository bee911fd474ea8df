"""Cold start: how long a user waits for the first plan, with and without JAX's
persistent compilation cache.

For every case (a problem, a transcription, N), each in fresh processes:

- `split` (cache off): tracing, lowering to StableHLO and XLA's compile of the
  programs an eager plan compiles (`jax.jit(...).trace`, `.lower`, `.compile`): the
  starting point and the Newton pass always, and the interior-point fallback (traced,
  lowered and compiled, one figure) only for cases whose first pass fails. The
  Newton pass is measured first in its process, before anything has filled JAX's
  caches of traced functions, as a first plan meets it; the fallback after it, as
  a plan that needs it does;
- `empty`: the first `control.plan` call with an empty cache folder (tracing, compile
  and solve), then the warm solve (median of 20 calls);
- `warm`: the first call in a new process whose cache the `empty` run filled.

And `python -m toolkit plan van_der_pol --N 1000` as a whole process (import, compile,
two solves, printing), with an empty cache folder and then again with the one it filled.

Goals (issue "compile once"): the empty-cache first call at N = 1000 trapezoidal
within 5 s; with a warm cache the whole `plan` command within 3 s and within 0.3x of
its empty-cache run.

Results go to `benchmarks/results/cold_start.json`, written after every case; finished
cases are skipped unless `--force` names them (`--force` alone: all).

    python benchmarks/cold_start.py              # measure every missing case
    python benchmarks/cold_start.py --cases vdp_trapezoidal_1000 --force vdp_trapezoidal_1000
    python benchmarks/cold_start.py --readme     # ... and write the README section
    python benchmarks/cold_start.py --report-only --readme   # from the JSON alone
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from _harness import arguments, forced, log, Store
from _provenance import (
    machine,
    machine_line,
    measured_line,
    now,
    OtherLoad,
    read_json,
    replace_section,
    SOURCE,
)


HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cold_start.json"
README = HERE / "README.md"
SECTION = "## Cold start: compilation and the persistent cache"
BEFORE = "## Reference optima (CasADi + IPOPT)"

# name -> (problem, transcription, N); N None: the problem's default.
CASES = {
    "vdp_trapezoidal_100": ("van_der_pol", "trapezoidal", 100),
    "vdp_trapezoidal_1000": ("van_der_pol", "trapezoidal", 1000),
    "vdp_multiple_shooting_100": ("van_der_pol", "multiple_shooting", 100),
    "vdp_multiple_shooting_1000": ("van_der_pol", "multiple_shooting", 1000),
    "cancer_treatment": ("cancer_treatment", "trapezoidal", None),
    "cart_pole": ("cart_pole", "trapezoidal", None),
}
CLI = ["-m", "toolkit", "plan", "van_der_pol", "--N", "1000"]


def _worker(case: str, mode: str) -> dict:
    """Runs in a fresh process: import, then one measurement of `case`."""
    start = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    import toolkit
    from toolkit import control
    from toolkit.control import _stages

    toolkit.enable_compilation_cache()
    name, key, N = CASES[case]
    ex = control.problems.get(name)
    N = ex.N if N is None else N
    transcription = {
        "trapezoidal": control.Trapezoidal,
        "multiple_shooting": control.MultipleShooting,
    }[key](N)
    solver = control.KKTNewton().with_tolerance(ex.problem.x0.dtype)
    jax.block_until_ready(jax.numpy.ones(3) + 1)  # the backend, outside any timing
    out = {"import_s": time.perf_counter() - start, "N": N}
    if mode == "split":
        # The programs an eager `control.plan` compiles: the Newton pass from the
        # starting point always, the interior-point fallback only when the pass fails
        # (`fallback_s` is its whole trace + lower + compile, and `fallback_needed`
        # says whether this case needs it).
        import numpy as np

        # Measured first in this fresh process, as a first plan meets it: nothing
        # runs before the Newton pass (whose starting point the fallback then takes).
        placeholder = _stages._placeholder(ex.problem, transcription)
        limit = np.asarray(solver.fallback_after, np.int32)
        # Compiled as the library compiles its stages (`toolkit.compiler_options`).
        from toolkit._jit import jit

        nothing_before = (np.int32(0), np.int32(0), False)
        newton = jit(
            lambda args, w, n: _stages._newton(
                ex.problem, transcription, solver, args, None, w, True, n, True, nothing_before
            ),
            planner=True,
        )
        inputs = (ex.args, placeholder, limit)
        compiled, out["trace_s"], out["lower_s"], out["compile_s"] = _split(newton, inputs)
        _, solved, _, w0 = compiled(*inputs)
        out["fallback_needed"] = not bool(solved)
        rescue = jit(
            lambda args, w: _stages._rescue(ex.problem, transcription, solver, args, w),
            planner=True,
        )
        out["fallback_s"] = sum(_split(rescue, (ex.args, w0))[1:])
        return out

    def call():
        sol = control.plan(ex.problem, transcription, solver, args=ex.args)
        jax.block_until_ready(sol.cost)
        return sol

    tic = time.perf_counter()
    sol = call()
    out["first_call_s"] = time.perf_counter() - tic
    out["cost"] = float(sol.cost)
    out["iterations"] = int(sol.stats["num_steps"])
    if mode == "empty":
        times = []
        for _ in range(20):
            tic = time.perf_counter()
            call()
            times.append(time.perf_counter() - tic)
        out["warm_solve_s"] = statistics.median(times)
    return out


def _split(fn, inputs: tuple) -> tuple:
    """`fn` traced, lowered and compiled for `inputs`: the compiled program and the
    seconds each phase took."""
    tic = time.perf_counter()
    traced = fn.trace(*inputs)
    trace = time.perf_counter() - tic
    tic = time.perf_counter()
    lowered = traced.lower()
    lower = time.perf_counter() - tic
    tic = time.perf_counter()
    compiled = lowered.compile()
    return compiled, trace, lower, time.perf_counter() - tic


def _spawn(args: list[str], cache: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "TOOLKIT_COMPILATION_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    # As a default Python does, let the processes keep their modules' bytecode: a
    # machine that sets PYTHONDONTWRITEBYTECODE recompiles toolkit's source (an
    # editable install has no bytecode of its own) at every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tic = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, cwd=HERE.parent
    )
    wall = time.perf_counter() - tic
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out


def _measure_worker(case: str, mode: str, cache: str) -> dict:
    wall, out = _spawn([str(pathlib.Path(__file__).resolve()), "--worker", case, mode], cache)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": wall}


def measure(case: str) -> dict:
    with OtherLoad() as load, tempfile.TemporaryDirectory(prefix="toolkit-cold-") as tmp:
        entry = {"split": _measure_worker(case, "split", "off")}
        entry["empty"] = _measure_worker(case, "empty", tmp)
        entry["warm"] = _measure_worker(case, "warm", tmp)
    entry["other_cores"] = load.cores
    entry["when"] = now()
    entry["source"] = SOURCE
    return entry


def measure_cli(repeats: int = 3) -> dict:
    """The command with an empty cache folder, then `repeats` times with the folder it
    filled (median: single runs of a 3 s process vary by a second on this machine)."""
    with OtherLoad() as load, tempfile.TemporaryDirectory(prefix="toolkit-cold-") as tmp:
        empty, first = _spawn(CLI, tmp)
        runs = [_spawn(CLI, tmp) for _ in range(repeats)]
    warm = statistics.median(wall for wall, _ in runs)
    return {
        "empty_s": empty,
        "warm_s": warm,
        "warm_runs_s": [wall for wall, _ in runs],
        "ratio": warm / empty,
        "output": runs[-1][1].stdout.strip().splitlines()[-1],
        "other_cores": load.cores,
        "when": now(),
        "source": SOURCE,
    }


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def _fallback(split: dict) -> str:
    if "fallback_needed" not in split:  # measured before the plan ran in stages
        return "(one program)"
    return _s(split["fallback_s"]) if split["fallback_needed"] else "not compiled"


def table(results: dict) -> tuple[str, list[str]]:
    rows = [
        "| case | N | trace | lower | XLA compile | fallback, if needed | first call, empty "
        "cache | first call, new process, warm cache | warm / empty | warm solve | other "
        "cores busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        r = results.get("cases", {}).get(case)
        if r is None:
            continue
        s, e, w = r["split"], r["empty"], r["warm"]
        rows.append(
            f"| {case} | {e['N']} | {_s(s['trace_s'])} | {_s(s['lower_s'])} | "
            f"{_s(s['compile_s'])} | {_fallback(s)} | {_s(e['first_call_s'])} | "
            f"{_s(w['first_call_s'])} | "
            f"{w['first_call_s'] / e['first_call_s']:.2f}x | "
            f"{e['warm_solve_s'] * 1e3:.2f} ms | {r['other_cores']} |"
        )
    notes = []
    goal = results.get("cases", {}).get("vdp_trapezoidal_1000")
    if goal is not None:
        first = goal["empty"]["first_call_s"]
        notes.append(
            f"- Goal, empty-cache first call at N = 1000 trapezoidal ≤ 5 s: "
            f"{first:.2f} s, {'met' if first <= 5 else 'MISSED'}."
        )
    cli = results.get("cli")
    if cli is not None:
        ok = cli["warm_s"] <= 3 and cli["ratio"] <= 0.3
        notes.append(
            f"- `python {' '.join(CLI)}` as a whole process: {cli['empty_s']:.2f} s with an "
            f"empty cache, {cli['warm_s']:.2f} s with the cache it filled "
            + (
                f"(median of {', '.join(f'{x:.2f}' for x in cli['warm_runs_s'])} s) "
                if "warm_runs_s" in cli
                else ""
            )
            + f"({cli['ratio']:.2f}x; goal ≤ 3 s and ≤ 0.3x: {'met' if ok else 'MISSED'}; "
            f"other cores busy {cli['other_cores']})."
        )
    return "\n".join(rows), notes


def write_readme(results: dict) -> None:
    text, notes = table(results)
    entries = [*results.get("cases", {}).values()]
    if "cli" in results:
        entries.append(results["cli"])
    m = results.get("machine", {})
    section = "\n".join(
        [
            SECTION,
            "",
            "What a user waits for before the first plan, in fresh processes: tracing, "
            "lowering and XLA's compile of the plan's program (cache off; the Newton "
            "stage first in its process, then the fallback, as a first plan meets "
            "them), the first call with an empty persistent-cache folder, and the "
            "first call of a new process that finds the cache filled "
            "(`toolkit.enable_compilation_cache`, which the CLI, tutorials and tests "
            "switch on). Warm solve: median of 20. "
            "The processes keep Python's bytecode of the modules they import, as a "
            "default Python does (the benchmark unsets PYTHONDONTWRITEBYTECODE). "
            "`python benchmarks/cold_start.py` (results in "
            "`benchmarks/results/cold_start.json`; `--readme` writes this section).",
            "",
            machine_line(
                m,
                shared=" (shared with other jobs: the last column says how many other "
                "cores were busy)",
            )
            + " "
            + measured_line(entries),
            "",
            text,
            "",
            *notes,
            "",
        ]
    )
    replace_section(README, SECTION, section, before=BEFORE)
    log(f"Wrote section {SECTION!r} of {README}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None, help=f"comma-separated subset of {list(CASES)}")
    parser.add_argument("--no-cli", action="store_true", help="skip the whole-command timing")
    arguments(parser, example="vdp_trapezoidal_1000", report_only=True)
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        print(json.dumps(_worker(*opts.worker)))
        return 0
    cases = list(CASES) if opts.cases is None else opts.cases.split(",")
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; choose from {list(CASES)}")
    if not opts.report_only:
        force = forced(opts)
        store = Store(RESULTS, force, section=("cases",), machine=machine, machine_at=("machine",))
        for case in cases:
            if not store.todo(case):
                continue
            log(f"{case} ...")
            entry = measure(case)
            store.put(case, entry)
            log(
                f"  first call {entry['empty']['first_call_s']:.2f} s empty cache, "
                f"{entry['warm']['first_call_s']:.2f} s warm cache; warm solve "
                f"{entry['empty']['warm_solve_s'] * 1e3:.2f} ms"
            )
        whole = Store(RESULTS, force, section=(), machine=machine, machine_at=("machine",))
        if not opts.no_cli and whole.todo("cli"):
            log(f"python {' '.join(CLI)} ...")
            whole.put("cli", measure_cli())
    results = read_json(RESULTS)
    text, notes = table(results)
    print(text)
    print("\n".join(notes))
    if opts.readme:
        write_readme(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
