"""The problem library: toolkit vs CasADi + IPOPT on every problem, in one run.

Every problem of `toolkit.control.problems` at its default N, with its default
transcription (`Trapezoidal`; `Discrete` for a discrete-time problem) and the default
planner (`KKTNewton()`), against IPOPT on the identical NLP from the identical default
guess. The CasADi side is `toolkit/control/problems/_ipopt_reference.py`'s independent
re-implementation of each problem (cross-checked against the toolkit's JAX functions
before anything is timed) and its transcriptions; IPOPT runs with its defaults (exact
Hessian, MUMPS, tol 1e-8, bounds relaxed by 1e-8), its solver built once per problem
so that "warm" is the solve alone, as in `benchmarks/control_vs_ipopt.py`.

Per problem and process: toolkit cold time (first call, JIT compilation included), IPOPT
cold time (solver build + first solve), then warm times of both, interleaved (A, B, A,
B, ...) so that load from other processes hits both alike; warm = median. Each problem
is measured in `--processes` fresh processes (3 by default; the quick run 1), in
rounds over the problems: the same code timed in another process moved a ratio by up to
30 %, more than the interleaving within one process does, so the table reports the
median over the processes and their range. Both costs are
compared with each other and with the tight reference optimum (IPOPT at tol 1e-12
without bound relaxation, `toolkit/control/problems/reference_optima.json`): a
planner that fails, or reaches another local optimum, is reported as such.

Results go to `benchmarks/results/library.json` (`--quick`: `library-quick.json`),
one entry per problem and process (`runs`, keyed `problem/process`), written as each
process finishes; finished entries are skipped unless `--force` names them
(`--force` alone: all; `--force seir` every process of seir). Before a `--force`
overwrites entries of the full run, the run is summarised into
`benchmarks/results/library-history.json` (also `--archive`), and the README lists
every run summarised there beside this one: the same code measured on other days moved
ratios by more than a change of the planner does.

`--pin CORE` measures the same table with every process pinned to one CPU core
(`library-pinned.json`), and the README section says how the pinned run compares:
XLA:CPU spreads a plan's small kernels over its threads, which costs the toolkit time
on a machine with few cores (IPOPT runs on one thread).

    python benchmarks/library.py                 # measure every missing problem
    python benchmarks/library.py --quick         # smoke run: three problems
    python benchmarks/library.py --problems seir,glucose --force seir,glucose
    python benchmarks/library.py --readme        # ... and write the README section
    python benchmarks/library.py --report-only --readme   # from the JSON alone
    python benchmarks/library.py --archive       # summarise the run into the history
    python benchmarks/library.py --pin 1         # every process on core 1
"""

import argparse
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
from _harness import arguments, forced, log, Store, wait_quiet
from _provenance import (
    machine_line,
    measured_line,
    now,
    OtherLoad,
    read_json,
    replace_section,
    SOURCE,
    write_json_atomic,
)


jax.config.update("jax_enable_x64", True)

import control_vs_ipopt as cvi  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from toolkit import control  # noqa: E402
from toolkit.control import problems  # noqa: E402
from toolkit.control.problems import _ipopt_reference as ro  # noqa: E402


HERE = pathlib.Path(__file__).resolve().parent
OUTPUTS = {
    "full": HERE / "results" / "library.json",
    "quick": HERE / "results" / "library-quick.json",
    "pinned": HERE / "results" / "library-pinned.json",
}
HISTORY = HERE / "results" / "library-history.json"
README = HERE / "README.md"
SECTION = "## Problem library: toolkit vs IPOPT"
# Before this section, if it is not in the README yet.
BEFORE = "## Pruning: toolkit vs Torch-Pruning"
QUICK = ("invasive_plant", "mould_fungicide", "van_der_pol")
IPOPT_OPTIONS = cvi.IPOPT_OPTIONS  # IPOPT's defaults: tol 1e-8, exact Hessian, MUMPS
SAME_RTOL = 1e-6  # "same optimum": |cost - reference| <= SAME_RTOL * |reference|
PROCESSES = {"full": 3, "quick": 1, "pinned": 3}  # fresh processes per problem


# --------------------------------------------------------------------------------------
# Results file.
# --------------------------------------------------------------------------------------


def _load(mode: str) -> dict:
    return read_json(OUTPUTS[mode])


def problems_of(results: dict) -> dict[str, dict]:
    """One entry per problem, combined from its runs (one per process)."""
    runs: dict[str, list[dict]] = {}
    for key, e in results.get("runs", {}).items():
        runs.setdefault(key.rpartition("/")[0], []).append(e)
    return {name: combine(rs) for name, rs in runs.items()}


def combine(runs: list[dict]) -> dict:
    """A problem's row from its runs: the run with the median ratio (the lower one of
    an even number) gives the costs, iterations and cold times; the warm times and the
    ratio are medians over the runs, the ratio of minima the ratio of the smallest
    times of all runs, with the range of the runs' ratios."""
    ordered = sorted(runs, key=lambda e: e["ratio"])
    e = dict(ordered[(len(ordered) - 1) // 2])
    e["toolkit"], e["IPOPT"] = dict(e["toolkit"]), dict(e["IPOPT"])
    for side in ("toolkit", "IPOPT"):
        e[side]["warm_s"] = statistics.median(r[side]["warm_s"] for r in runs)
        e[side]["warm_min_s"] = min(r[side]["warm_min_s"] for r in runs)
    ratios = [r["ratio"] for r in runs]
    e["ratio"] = statistics.median(ratios)
    e["ratios"] = ratios
    e["processes"] = len(runs)
    e["other_cores"] = max(r["other_cores"] for r in runs)
    e["loadavg_1min"] = max(r["loadavg_1min"] for r in runs)
    e["measured"] = max(r["measured"] for r in runs)
    return e


def _geomean(xs) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def summary(results: dict) -> dict | None:
    """A full run of the table in a few numbers, for the history of runs: when and on
    which commits it was measured, the CPU, and each problem's ratio (the median over
    its processes) where both reached the same optimum, with their geometric mean.
    `None` for a run with no such problem."""
    P = problems_of(results)
    same = {n: P[n] for n in sorted(P) if P[n]["verdict"] == "same optimum"}
    if not same:
        return None
    runs = list(results["runs"].values())
    return {
        "measured": [min(r["measured"] for r in runs), max(r["measured"] for r in runs)],
        "commits": sorted({r.get("toolkit_commit", "unknown") for r in runs}),
        "cpu": results.get("machine", {}).get("cpu", "unknown"),
        "problems": len(P),
        "same_optimum": len(same),
        "geomean": _geomean(e["ratio"] for e in same.values()),
        "ratios": {n: e["ratio"] for n, e in same.items()},
    }


def _identity(entry: dict) -> tuple:
    """What tells one summarised run from another: its measurement times and commits."""
    return tuple(entry["measured"]), tuple(entry["commits"])


def archive(results: dict, path: pathlib.Path = HISTORY) -> bool:
    """Add `results`' summary to the history at `path`, unless it is there already (the
    same measurement times and commits). Returns whether it was added."""
    entry = summary(results)
    history = read_json(path, {"runs": []})
    if entry is None or _identity(entry) in {_identity(e) for e in history["runs"]}:
        return False
    history["runs"].append(entry)
    history["runs"].sort(key=lambda e: e["measured"][1])
    write_json_atomic(path, history, prefix=".library-history-")
    return True


def history_notes(results: dict, path: pathlib.Path = HISTORY) -> list[str]:
    """The README's lines on the earlier runs in the history at `path` and this one:
    each run's geometric mean and its problems slower than IPOPT, then the spread."""
    runs = list(read_json(path, {"runs": []})["runs"])
    this = summary(results)
    if this is not None and _identity(this) not in {_identity(e) for e in runs}:
        runs.append(this)
    runs.sort(key=lambda e: e["measured"][1])
    if len(runs) < 2:
        return []

    def slower(e):
        return {n: r for n, r in e["ratios"].items() if r > 1}

    def line(e):
        days = sorted({t[:10] for t in e["measured"]})
        late = slower(e)
        return (
            f"{' to '.join(days)} on {', '.join(e['commits'])} ({e['cpu']}, "
            f"{e['same_optimum']} of {e['problems']} problems): {e['geomean']:.2f}x"
            + (
                "; slower than IPOPT: " + ", ".join(f"{n} {r:.2f}x" for n, r in late.items())
                if late
                else ""
            )
        )

    names = sorted({n for e in runs for n in slower(e)})
    counts = ", ".join(
        f"{n} in {sum(n in slower(e) for e in runs)} (ratios "
        f"{min(e['ratios'][n] for e in runs if n in e['ratios']):.2f}x–"
        f"{max(e['ratios'][n] for e in runs if n in e['ratios']):.2f}x)"
        for n in names
    )
    means = [e["geomean"] for e in runs]
    return [
        f"Every run of this table kept in `library-history.json` ({len(runs)}, this one "
        "included; a run that re-measured some problems keeps the others' earlier "
        "entries), geometric mean of the ratios and the problems slower than IPOPT "
        "(median over processes): " + "; ".join(line(e) for e in runs) + ".",
        f"Over these runs the geometric mean went from {min(means):.2f}x to "
        f"{max(means):.2f}x; "
        + (
            f"slower than IPOPT: {counts} of the {len(runs)} runs."
            if names
            else "no problem was slower than IPOPT in any of them."
        ),
    ]


# --------------------------------------------------------------------------------------
# One problem.
# --------------------------------------------------------------------------------------


def _result_name(result) -> str:
    for name in control.RESULTS._name_to_item:
        if bool(result == getattr(control.RESULTS, name)):
            return name
    return "unknown"


def measure(name: str, quick: bool) -> dict:
    ex = problems.get(name)
    spec = ro.SPECS[name]()
    ro.cross_check(name, spec)  # the two NLPs are the same problem, or stop here
    kind = "discrete" if spec.discrete else "trapezoidal"
    transcription = (control.Discrete if spec.discrete else control.Trapezoidal)(ex.N)
    reference = problems.reference_optima().get(name, {}).get(kind)

    start = time.perf_counter()
    solver, kwargs = ro.build(spec, kind, IPOPT_OPTIONS)
    build_s = time.perf_counter() - start

    def ipopt():
        sol = solver(**kwargs)
        return float(sol["f"])

    cost = ipopt()
    ipopt_cold = time.perf_counter() - start
    stats = solver.stats()
    entry: dict = {
        "nx": int(ex.problem.x0.shape[0]),
        "nu": len(spec.u_bounds[0]),
        "N": ex.N,
        "transcription": kind,
        "unknowns": len(kwargs["x0"]),
        "reference": None if reference is None else reference["cost"],
        "IPOPT": {
            "cost": cost,
            "iterations": int(stats["iter_count"]),
            "status": str(stats["return_status"]),
            "success": bool(stats["success"]),
            "build_s": build_s,
            "cold_s": ipopt_cold,
        },
    }

    planner = control.KKTNewton()

    def toolkit():
        return control.plan(ex.problem, transcription, planner, args=ex.args, throw=False)

    cold, sol = cvi.timed(toolkit)
    code = _result_name(sol.result)
    entry["toolkit"] = {
        "cost": float(sol.cost),
        "iterations": int(sol.stats["num_steps"]),
        "result": code,
        "success": code == "successful",
        "kkt_residual": float(sol.stats["kkt_residual"]),
        "cold_s": cold,
    }
    del sol

    rounds = dict(min_rounds=3, max_rounds=10, budget_s=2.0) if quick else {}
    load = os.getloadavg()[0]
    with OtherLoad() as other:
        warm = cvi.interleaved({"toolkit": lambda: toolkit().cost, "IPOPT": ipopt}, **rounds)
    for side in ("toolkit", "IPOPT"):
        entry[side].update(warm[side])
    entry["ratio"] = warm["toolkit"]["warm_s"] / warm["IPOPT"]["warm_s"]
    entry["other_cores"] = other.cores
    entry["loadavg_1min"] = round(load, 2)
    entry["verdict"] = verdict(entry)
    entry["measured"] = now()
    entry["toolkit_commit"] = SOURCE["commit"]
    entry["toolkit_tree"] = SOURCE["tree"]
    return entry


def verdict(e: dict) -> str:
    """The toolkit's outcome: `same optimum`, `lower/higher local optimum` (than the
    tight IPOPT reference on the same NLP), or `not converged`."""
    tk = e["toolkit"]
    if not tk["success"]:
        return "not converged"
    ref = e["reference"] if e["reference"] is not None else e["IPOPT"]["cost"]
    if abs(tk["cost"] - ref) <= SAME_RTOL * abs(ref):
        return "same optimum"
    return "lower local optimum" if tk["cost"] < ref else "higher local optimum"


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def _ms(s: float) -> str:
    return f"{s:.2f} s" if s >= 1.0 else f"{s * 1e3:.2f} ms"


def table(results: dict, names: list[str], mode: str) -> tuple[str, list[str]]:
    P = problems_of(results)
    rows = []
    for name in names:
        e = P.get(name)
        if e is None:
            rows.append(f"| {name} | | | | | not measured | | | | | | | | | | | | |")
            continue
        tk, ip = e["toolkit"], e["IPOPT"]
        rel = (tk["cost"] - ip["cost"]) / abs(ip["cost"]) if ip["cost"] else math.nan
        ip_status = "" if ip["success"] else f" ({ip['status']})"
        rows.append(
            f"| {name} | {e['nx']} | {e['nu']} | {e['N']} | {e['unknowns']} "
            f"| {tk['cost']:.10g} | {ip['cost']:.10g}{ip_status} | {rel:.1e} "
            f"| {tk['iterations']} | {ip['iterations']} | {_ms(tk['cold_s'])} "
            f"| {_ms(tk['warm_s'])} | {_ms(ip['warm_s'])} | **{e['ratio']:.2f}x** "
            f"| {min(e['ratios']):.2f}x–{max(e['ratios']):.2f}x ({e['processes']}) "
            f"| {tk['warm_min_s'] / ip['warm_min_s']:.2f}x "
            f"| {tk['result']} | {e['verdict']} |"
        )
    lines = [
        "| problem | nx | nu | N | NLP unknowns | toolkit cost | IPOPT cost | rel. diff "
        "| toolkit it. | IPOPT it. | toolkit cold | toolkit warm | IPOPT warm "
        "| toolkit / IPOPT | range (processes) | ratio of minima | toolkit result "
        "| vs tight reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    done = [P[n] for n in names if n in P]
    notes = []
    same = [e for e in done if e["verdict"] == "same optimum"]
    if done:
        notes.append(
            f"The toolkit reached the reference optimum on {len(same)} of {len(done)} "
            "problems; "
            + (
                "; ".join(
                    f"{n}: {P[n]['verdict']} ({P[n]['toolkit']['result']})"
                    for n in names
                    if n in P and P[n]["verdict"] != "same optimum"
                )
                or "no failures"
            )
            + "."
        )
        failed_ipopt = [n for n in names if n in P and not P[n]["IPOPT"]["success"]]
        off = {
            n: (P[n]["IPOPT"]["cost"] - P[n]["reference"]) / abs(P[n]["reference"])
            for n in names
            if n in P and P[n]["reference"] is not None
        }
        loose = {n: r for n, r in off.items() if abs(r) > SAME_RTOL}
        notes.append(
            "IPOPT (tol 1e-8) reported success on "
            f"{len(done) - len(failed_ipopt)} of {len(done)}"
            + (f" (not on {', '.join(failed_ipopt)})" if failed_ipopt else "")
            + f"; its cost is within {SAME_RTOL:g} (relative) of the tight reference on "
            f"{len(off) - len(loose)} of {len(off)}"
            + (
                " (off by "
                + ", ".join(f"{r:+.1e} on {n}" for n, r in loose.items())
                + ": IPOPT's default tol 1e-8 and bound relaxation 1e-8 stop it "
                "short of the optimum, so there the rel. diff column measures IPOPT's "
                "inexactness rather than the toolkit's)."
                if loose
                else "."
            )
        )
    if same:
        ratios = [e["ratio"] for e in same]
        gmean = _geomean(ratios)
        notes.append(
            f"Warm time toolkit / IPOPT where both reach the same optimum: geometric "
            f"mean {gmean:.2f}x, median {statistics.median(ratios):.2f}x, range "
            f"{min(ratios):.2f}x–{max(ratios):.2f}x ({len(ratios)} problems; each "
            "problem's ratio is its median over the processes)."
        )
        # The geometric mean of every process's ratios, to show what one process's
        # table could have said.
        over = [
            _geomean(e["ratios"][i] for e in same) for i in range(min(e["processes"] for e in same))
        ]
        above = [
            n
            for n in names
            if n in P and P[n]["verdict"] == "same optimum" and max(P[n]["ratios"]) > 1
        ]
        notes.append(
            "Process by process (the i-th run of every problem), the geometric mean "
            f"was {', '.join(f'{g:.2f}x' for g in over)}; problems slower than IPOPT in "
            "at least one process: "
            + (", ".join(f"{n} ({max(P[n]['ratios']):.2f}x)" for n in above) if above else "none")
            + "."
        )
        per_it = [
            (e["toolkit"]["warm_s"] / e["toolkit"]["iterations"])
            / (e["IPOPT"]["warm_s"] / e["IPOPT"]["iterations"])
            for e in same
        ]
        many = [
            f"{n} ({P[n]['toolkit']['iterations']} vs {P[n]['IPOPT']['iterations']})"
            for n in names
            if n in P
            and P[n]["verdict"] == "same optimum"
            and P[n]["toolkit"]["iterations"] > 2 * P[n]["IPOPT"]["iterations"]
        ]
        notes.append(
            "Per iteration, a toolkit Newton step costs "
            f"{_geomean(per_it):.2f}x an IPOPT "
            f"iteration (geometric mean; range {min(per_it):.2f}x–{max(per_it):.2f}x)"
            + (
                "; the toolkit needs more than twice IPOPT's iterations on " + ", ".join(many) + "."
                if many
                else "."
            )
        )
    others = [e["other_cores"] for e in done if e.get("other_cores") is not None]
    loads = [e["loadavg_1min"] for e in done if e.get("loadavg_1min") is not None]
    if others:
        notes.append(
            f"Other processes kept {min(others):.2f}–{max(others):.2f} of the "
            f"{results.get('machine', {}).get('cores', '?')} cores busy during the warm "
            f"timings (1-minute load average {min(loads):.2f}–{max(loads):.2f}): the "
            "machine is shared, so absolute times are inflated and noisy; the "
            "interleaved ratios less so."
        )
    quick = problems_of(_load("quick")) if mode == "full" else {}
    again = [n for n in names if n in P and n in quick]
    if again:
        notes.append(
            "The same problems timed in the quick run (`library-quick.json`, another "
            "moment of the same machine): "
            + ", ".join(f"{n} {quick[n]['ratio']:.2f}x (here {P[n]['ratio']:.2f}x)" for n in again)
            + ", a measure of how far the load on this shared machine moves one ratio."
        )
    if mode == "full":
        notes.extend(history_notes(results))
    return "\n".join(lines), notes


def pinned_notes(results: dict, pinned: dict) -> list[str]:
    """How the full run compares with the run whose processes were pinned to one core
    (`--pin`): its geometric mean, the problems slower than IPOPT, and how each side's
    warm time moved (geometric mean over the problems both runs have)."""
    P, Q = problems_of(results), problems_of(pinned)
    both = [n for n in sorted(P) if n in Q and "same optimum" == P[n]["verdict"] == Q[n]["verdict"]]
    if not both:
        return []
    slower = [f"{n} {Q[n]['ratio']:.2f}x" for n in both if Q[n]["ratio"] > 1]
    runs = list(pinned["runs"].values())
    cpus = sorted({tuple(r.get("cpus", ())) for r in runs})
    when = measured_line(runs)
    when = when[:1].lower() + when[1:].rstrip(".")

    def moved(side):
        return _geomean(Q[n][side]["warm_s"] / P[n][side]["warm_s"] for n in both)

    return [
        "The same table with every process pinned to one core (`python "
        "benchmarks/library.py --pin CORE`, results in `library-pinned.json`; the "
        f"processes' CPUs {', '.join(str(list(c)) for c in cpus)}; "
        + when
        + f"): geometric mean {_geomean(Q[n]['ratio'] for n in both):.2f}x over "
        f"{len(both)} problems (here {_geomean(P[n]['ratio'] for n in both):.2f}x); "
        + ("slower than IPOPT: " + ", ".join(slower) if slower else "none slower than IPOPT")
        + f". Pinned, the toolkit's warm times were {moved('toolkit'):.2f}x those above "
        f"and IPOPT's {moved('IPOPT'):.2f}x (geometric means): XLA:CPU runs a plan's "
        "small kernels on several threads, whose hand-offs cost more than they gain on "
        "a 2-core machine, while IPOPT runs on one. A planning process can be pinned "
        "(`taskset -c 0 python ...`, or `os.sched_setaffinity(0, {0})` before JAX "
        "starts). The goals are judged on the table above, what a process gets by "
        "default."
    ]


def write_readme(results: dict, names: list[str]) -> None:
    P = problems_of(results)
    if not P:
        log("No results yet: nothing written.")
        return
    m = results["machine"]
    text, notes = table(results, names, "full")
    section = "\n".join(
        [
            SECTION,
            "",
            "Every library problem at its default N, with its default transcription "
            "(trapezoidal; `Discrete` for invasive_plant) and the default planner "
            "`KKTNewton()`, against IPOPT on the identical NLP (the CasADi "
            "re-implementation of `toolkit/control/problems/_ipopt_reference.py`, cross-checked "
            "against the toolkit's functions), both from the same default initial "
            "guess, float64. IPOPT with its defaults (exact Hessian, MUMPS, tol 1e-8), "
            "solver built once per problem (warm = solve alone). Warm = median of "
            "interleaved repeats within a process, then the median over "
            f"{max(e['processes'] for e in P.values())} fresh processes per problem "
            "(toolkit / IPOPT: the median of the processes' ratios, with their range; "
            "the other columns are those of the process with the median ratio); cold = "
            "first call, JIT compilation included (IPOPT's "
            "cold time, solver build + first solve, is in the JSON). rel. diff = "
            "(toolkit − IPOPT) / |IPOPT|; the last column compares the toolkit's cost "
            "with the tight reference (IPOPT at tol 1e-12 without bound relaxation, "
            f"`reference_optima.json`) at rtol {SAME_RTOL:g}. Nothing is tuned per "
            "problem: a problem the default planner does not solve from the default "
            "guess is reported, not dropped (see KNOWN_FAILURES in "
            "`tests/control/test_problems.py`); its warm time is that of the failing "
            "solve.",
            "",
            "Reproduce: `python benchmarks/library.py && python benchmarks/library.py "
            "--readme` (results in `benchmarks/results/library.json`).",
            "",
            machine_line(
                m,
                shared=" (shared with other jobs)",
                versions={"CasADi": "casadi", "equinox": "equinox"},
            )
            + " "
            + measured_line(results["runs"].values()),
            "",
            text,
            "",
            *[f"{n}\n" for n in notes + pinned_notes(results, _load("pinned"))],
        ]
    )
    replace_section(README, SECTION, section, before=BEFORE)
    log(f"Wrote section {SECTION!r} of {README}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = f"smoke run: {', '.join(QUICK)}"
    arguments(parser, example="seir,glucose", quick=quick, report_only=True, wait_quiet=10.0)
    parser.add_argument("--problems", default=None, help="comma-separated subset")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help=f"fresh processes per problem (default {PROCESSES['full']}, quick "
        f"{PROCESSES['quick']})",
    )
    parser.add_argument(
        "--archive",
        action="store_true",
        help=f"summarise the full run into {HISTORY.name} and stop (done before any "
        "--force of the full run)",
    )
    parser.add_argument(
        "--pin",
        type=int,
        default=None,
        metavar="CORE",
        help=f"run every process pinned to this CPU core (results in "
        f"{OUTPUTS['pinned'].name}; the full run's README section compares them)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.pin is not None and opts.quick:
        parser.error("--pin runs the full table; run it without --quick")
    if opts.pin is not None and opts.pin not in os.sched_getaffinity(0):
        parser.error(
            f"--pin {opts.pin}: this process may run on CPUs {sorted(os.sched_getaffinity(0))}"
        )
    mode = "quick" if opts.quick else "full" if opts.pin is None else "pinned"
    processes = PROCESSES[mode] if opts.processes is None else opts.processes
    if processes < 1:
        parser.error(f"--processes must be at least 1, got {processes}")
    library = problems.names()
    names = list(QUICK) if opts.quick else library
    if opts.problems:
        names = opts.problems.split(",")
        for name in names:
            if name not in library:
                parser.error(f"unknown problem {name!r}; the library has {library}")

    if opts.readme and opts.quick:
        parser.error("--readme writes the full run's section; run it without --quick")
    if opts.archive and opts.quick:
        parser.error("--archive summarises the full run; run it without --quick")
    if opts.archive or (mode == "full" and forced(opts) is not None and not opts.report_only):
        if archive(_load("full")):
            log(f"The full run so far is summarised in {HISTORY}.")
        if opts.archive:
            return 0
    store = Store(
        OUTPUTS[mode],
        forced(opts),
        section=("runs",),
        machine=cvi.machine,
        machine_at=("machine",),
    )
    if opts.worker is not None:
        # One problem in this (fresh) process, for the process that started it.
        jax.block_until_ready(jnp.ones(3) + 1)  # initialise the backend outside any timing
        entry = measure(opts.worker.rpartition("/")[0], opts.quick)
        entry["cpus"] = sorted(os.sched_getaffinity(0))
        store.put(opts.worker, entry)
        return 0
    # In rounds (every problem once, then again), so that a slow spell of the machine
    # does not land on all the processes of one problem.
    keys = [f"{n}/{i}" for i in range(processes) for n in names]
    todo = [] if opts.report_only else [k for k in keys if store.todo(k)]
    if todo and opts.pin is not None:
        # The workers inherit this thread's CPUs from their start, as XLA sizes its
        # thread pool by the CPUs a process may use.
        os.sched_setaffinity(0, {opts.pin})
    if todo:
        log(f"library ({mode}, {processes} processes a problem): results in {OUTPUTS[mode]}")
    for key in todo:
        if opts.wait_quiet > 0:
            wait_quiet(opts.wait_quiet)
        log(f"{key} ...")
        command = [sys.executable, __file__, "--worker", key] + (["--quick"] if opts.quick else [])
        if opts.pin is not None:
            command += ["--pin", str(opts.pin)]
        if subprocess.run(command, check=False).returncode != 0:
            log(f"  {key}: the process failed (its output is above); not recorded")
            return 1
        entry = store.get(key)
        tk, ip = entry["toolkit"], entry["IPOPT"]
        log(
            f"  toolkit {tk['cost']:.12g} ({tk['result']}, {tk['iterations']} it, cold "
            f"{tk['cold_s']:.2f} s, warm {_ms(tk['warm_s'])})  IPOPT {ip['cost']:.12g} "
            f"({ip['status']}, {ip['iterations']} it, warm {_ms(ip['warm_s'])})  ratio "
            f"{entry['ratio']:.2f}x  {entry['verdict']}  (other cores busy: "
            f"{entry['other_cores']})"
        )

    text, notes = table(_load(mode), names, mode)
    print()
    print(text)
    print()
    for n in notes:
        print(n)
    if opts.readme:
        write_readme(_load("full"), library)
    return 0


if __name__ == "__main__":
    # No persistent compilation cache: the "cold" column is a first call with
    # compilation (benchmarks/cold_start.py measures the cache).
    sys.exit(main())
