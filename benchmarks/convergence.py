"""Convergence of the transcriptions: optimal cost vs N, trapezoidal and Hermite-Simpson.

Three smooth problems of the library whose optimum has no active bound (checked: no
nonzero bound multiplier in IPOPT's Hermite-Simpson solution at N = 100), solved by
the toolkit (`KKTNewton()`, default settings, default initial guess) with
`Trapezoidal(N)` and `HermiteSimpson(N)` for N = 10, 20, 40, 80, 160, 320. The error
is |J_N - J_ref|, with the reference J_ref the toolkit's Hermite-Simpson optimum at
N_ref = 2560 (8 times the finest N: for an order-4 method its error is ~8^4 = 4096
times smaller than at N = 320). Two checks of the reference, both reported:

- Richardson: J_R = J_ref + (J_ref - J_{ref/2}) / 15 (from Hermite-Simpson at
    N_ref / 2 too); |J_R - J_ref| estimates the reference's own error.
- IPOPT: every J_N (and J_ref) is also computed by IPOPT (tol 1e-12, no bound
    relaxation) on the identical NLP (`toolkit/control/problems/_ipopt_reference.py`), so that a
    solve that reached another local optimum, or a loose tolerance, shows.

The observed order is minus the least-squares slope of log error against log N,
fitted over the points whose error is above a floor (10 times the larger of the two
reference checks); the local orders log2(e_N / e_2N) are reported too.

Results go to `benchmarks/results/convergence.json` (`--quick`:
`convergence-quick.json`), written after every solve (`_harness.Store`); finished ones
are skipped unless `--force` names them (`--force` alone: all). The plot is
`benchmarks/results/convergence.png`.

    python benchmarks/convergence.py                 # measure what is missing, plot
    python benchmarks/convergence.py --quick         # smoke run: one problem, N <= 40
    python benchmarks/convergence.py --readme        # ... and write the README section
    python benchmarks/convergence.py --report-only --readme   # from the JSON alone
    python benchmarks/convergence.py --force bacteria/hermite_simpson
"""

import argparse
import dataclasses
import gc
import math
import pathlib
import sys
import time

import jax
from _harness import arguments, forced, log, Store
from _provenance import (
    machine_line,
    measured_line,
    read_json,
    replace_section,
)


jax.config.update("jax_enable_x64", True)

import control_vs_ipopt as cvi  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import toolkit  # noqa: E402
from toolkit import control  # noqa: E402
from toolkit.control import problems  # noqa: E402
from toolkit.control.problems import _ipopt_reference as ro  # noqa: E402


HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
SECTION = "## Convergence of the transcriptions"
BEFORE = "## Pruning: toolkit vs Torch-Pruning"  # where a new section goes
TRANSCRIPTIONS = {"trapezoidal": control.Trapezoidal, "hermite_simpson": control.HermiteSimpson}
LABELS = {"trapezoidal": "trapezoidal", "hermite_simpson": "Hermite–Simpson"}
EXPECTED = {"trapezoidal": 2, "hermite_simpson": 4}
SETTINGS = {
    "full": {
        "problems": ("bacteria", "bear_populations", "cancer_treatment"),
        # For contrast: an optimum with a short arc on the lower control bound.
        "contrast": ("van_der_pol",),
        "Ns": (10, 20, 40, 80, 160, 320),
        "N_ref": 2560,
    },
    "quick": {"problems": ("bacteria",), "contrast": (), "Ns": (10, 20, 40), "N_ref": 320},
}
FLOOR_FACTOR = 10.0
FINE_N = 40  # the "asymptotic" fit uses N >= this
# KKTNewton's default atol (1e-9, on the 1/h-scaled KKT residual) can stop a few 1e-10
# short in the cost at large N (cancer_treatment, Hermite-Simpson N >= 80: 6.7e-10
# against IPOPT at tol 1e-12); a convergence study needs the cost to ~1e-13.
ATOL = 1e-12


def _output(mode: str) -> pathlib.Path:
    return RESULTS / ("convergence.json" if mode == "full" else "convergence-quick.json")


def _plot_path(mode: str) -> pathlib.Path:
    return RESULTS / ("convergence.png" if mode == "full" else "convergence-quick.png")


def _load(mode: str) -> dict:
    return read_json(_output(mode))


def _store(mode: str, name: str, force: list[str] | None) -> Store:
    """The finished solves of problem `name`, keyed by `<transcription>/N=<N>` (as
    `jobs` names them); `--force` prefixes name `<problem>/<key>`."""
    if force:  # None: nothing forced; []: everything
        whole = f"{name}/"
        mine = ["" if whole.startswith(f) else f[len(whole) :] for f in force]
        force = [m for m, f in zip(mine, force) if whole.startswith(f) or f.startswith(whole)]
        force = force or None
    return Store(
        _output(mode),
        force,
        section=("problems", name),
        machine=cvi.machine,
        machine_at=("machine",),
    )


# --------------------------------------------------------------------------------------
# Solves.
# --------------------------------------------------------------------------------------


def solve(name: str, kind: str, N: int, atol: float) -> dict:
    """The toolkit's optimum and IPOPT's (tol 1e-12) on the identical NLP."""
    ex = problems.get(name)
    start = time.perf_counter()
    planner = control.KKTNewton(atol=atol)
    sol = control.plan(ex.problem, TRANSCRIPTIONS[kind](N), planner, args=ex.args, throw=False)
    cost = float(sol.cost)
    elapsed = time.perf_counter() - start
    ok = bool(sol.result == control.RESULTS.successful)
    entry = {
        "N": N,
        "transcription": kind,
        "cost": cost,
        "success": ok,
        "result": "successful" if ok else control.RESULTS[sol.result],
        "iterations": int(sol.stats["num_steps"]),
        "kkt_residual": float(sol.stats["kkt_residual"]),
        "cold_s": elapsed,
        "atol": atol,
    }
    spec = dataclasses.replace(ro.SPECS[name](), N=N)
    solver, kwargs = ro.build(spec, kind)  # ro.IPOPT_OPTIONS: tol 1e-12, no relaxation
    out = solver(**kwargs)
    stats = solver.stats()
    entry["ipopt"] = {
        "cost": float(out["f"]),
        "iterations": int(stats["iter_count"]),
        "status": str(stats["return_status"]),
    }
    return entry


def jobs(settings: dict) -> list[tuple[str, str, str, int]]:
    out = []
    for name in (*settings["problems"], *settings["contrast"]):
        N_ref = settings["N_ref"]
        out.append((name, f"reference/N={N_ref}", "hermite_simpson", N_ref))
        out.append((name, f"reference/N={N_ref // 2}", "hermite_simpson", N_ref // 2))
        for kind in TRANSCRIPTIONS:
            for N in settings["Ns"]:
                out.append((name, f"{kind}/N={N}", kind, N))
    return out


# --------------------------------------------------------------------------------------
# Analysis.
# --------------------------------------------------------------------------------------


def analyse(entries: dict, settings: dict) -> dict | None:
    """Reference, its error estimates, errors and fitted orders of one problem."""
    N_ref = settings["N_ref"]
    ref = entries.get(f"reference/N={N_ref}")
    half = entries.get(f"reference/N={N_ref // 2}")
    if ref is None or half is None:
        return None
    J = ref["cost"]
    richardson = J + (J - half["cost"]) / 15
    checks = {
        "richardson": abs(richardson - J),
        "ipopt": abs(ref["ipopt"]["cost"] - J),
    }
    floor = FLOOR_FACTOR * max(*checks.values(), 1e-15 * abs(J))
    out: dict = {"J_ref": J, "richardson": richardson, "checks": checks, "floor": floor}
    for kind in TRANSCRIPTIONS:
        rows = []
        for N in settings["Ns"]:
            e = entries.get(f"{kind}/N={N}")
            if e is None:
                continue
            err = e["cost"] - J
            rows.append(
                {
                    "N": N,
                    "cost": e["cost"],
                    "error": err,
                    "used": bool(e["success"] and abs(err) > floor),
                    "success": e["success"],
                    "vs_ipopt": e["cost"] - e["ipopt"]["cost"],
                }
            )
        for a, b in zip(rows, rows[1:]):
            if a["error"] and b["error"] and b["N"] == 2 * a["N"]:
                b["local_order"] = math.log2(abs(a["error"]) / abs(b["error"]))
        used = [r for r in rows if r["used"]]
        # The coarsest grids can be pre-asymptotic (an error changing sign, a
        # higher-order term still dominant): fit over every point, and over N >= FINE_N.
        fine = [r for r in used if r["N"] >= FINE_N]
        pairs = [b["local_order"] for a, b in zip(rows, rows[1:]) if a["used"] and b["used"]]
        out[kind] = {
            "rows": rows,
            "order": _fit(used),
            "points": len(used),
            "order_fine": _fit(fine),
            "points_fine": len(fine),
            "last_local_order": pairs[-1] if pairs else None,
        }
    return out


def _fit(rows: list[dict]) -> float | None:
    """Minus the least-squares slope of log |error| against log N."""
    if len(rows) < 2:
        return None
    x = np.log([r["N"] for r in rows])
    y = np.log([abs(r["error"]) for r in rows])
    return float(-np.polyfit(x, y, 1)[0])


def plot(results: dict, settings: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = (*settings["problems"], *settings["contrast"])
    names = [n for n in every if n in results.get("problems", {})]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.8))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names):
        a = analyse(results["problems"][name], settings)
        if a is None:
            continue
        for kind, marker in (("trapezoidal", "o"), ("hermite_simpson", "s")):
            rows = a[kind]["rows"]
            Ns = [r["N"] for r in rows]
            errs = [abs(r["error"]) / abs(a["J_ref"]) for r in rows]
            order = a[kind]["order_fine"]
            label = LABELS[kind] + (
                f" (order {order:.2f} at N ≥ {FINE_N})" if order is not None else ""
            )
            (line,) = ax.loglog(Ns, errs, marker=marker, label=label)
            if rows:
                # Guide slope N^-p through the last used point.
                used = [r for r in rows if r["used"]] or rows
                N0, e0 = used[-1]["N"], abs(used[-1]["error"]) / abs(a["J_ref"])
                p = EXPECTED[kind]
                xs = np.array([Ns[0], Ns[-1]], dtype=float)
                ax.loglog(
                    xs,
                    e0 * (xs / N0) ** (-p),
                    ls=":",
                    color=line.get_color(),
                    alpha=0.6,
                    label=f"N^-{p}",
                )
        ax.axhline(a["floor"] / abs(a["J_ref"]), color="grey", lw=0.8, ls="--")
        ax.set_title(name + (" (active bound)" if name in settings["contrast"] else ""))
        ax.set_xticks(settings["Ns"], [str(N) for N in settings["Ns"]])
        ax.minorticks_off()
        ax.set_xlabel("N (intervals)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("|J_N − J_ref| / |J_ref|")
    fig.suptitle(
        f"Optimal cost error vs N (J_ref: Hermite–Simpson, N = {settings['N_ref']}; "
        "dashed: fit floor; dotted: slopes 2, 4)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"Plot: {path}")


def report(results: dict, settings: dict) -> tuple[str, list[str]]:
    P = results.get("problems", {})
    lines = []
    summary = []
    for name in (*settings["problems"], *settings["contrast"]):
        a = None if name not in P else analyse(P[name], settings)
        if a is None:
            lines += [f"**{name}**: not measured (or reference missing).", ""]
            continue
        lines += [
            f"**{name}**: J_ref = {a['J_ref']:.14g} (Hermite–Simpson, N = "
            f"{settings['N_ref']}); Richardson estimate differs by "
            f"{a['checks']['richardson']:.1e}, IPOPT on the same NLP by "
            f"{a['checks']['ipopt']:.1e}; fit floor {a['floor']:.1e}.",
            "",
            "| N | trapezoidal J_N − J_ref | local order | Hermite–Simpson J_N − J_ref "
            "| local order | max abs(toolkit − IPOPT) |",
            "|---|---|---|---|---|---|",
        ]
        tr = {r["N"]: r for r in a["trapezoidal"]["rows"]}
        hs = {r["N"]: r for r in a["hermite_simpson"]["rows"]}

        def cell(r):
            if r is None:
                return "|  | "
            mark = "" if r["used"] else " ‡"
            fail = "" if r["success"] else " (not converged)"
            lo = r.get("local_order")
            return f"| {r['error']:+.3e}{mark}{fail} | {'' if lo is None else f'{lo:.2f}'} "

        for N in settings["Ns"]:
            t, h = tr.get(N), hs.get(N)
            dv = max(abs(r["vs_ipopt"]) for r in (t, h) if r is not None) if (t or h) else 0
            lines.append(f"| {N} {cell(t)}{cell(h)}| {dv:.1e} |")

        def fmt(o):
            return "–" if o is None else f"{o:.2f}"

        orders = []
        for kind in TRANSCRIPTIONS:
            k = a[kind]
            orders.append(
                f"{LABELS[kind]} {fmt(k['order'])} over all {k['points']} points above the "
                f"floor, {fmt(k['order_fine'])} over the {k['points_fine']} at N ≥ {FINE_N}"
            )
        lines += ["", f"Fitted order: {'; '.join(orders)}.", ""]
        cells = []
        for kind in TRANSCRIPTIONS:
            k = a[kind]
            cells += [fmt(k["order"]), fmt(k["order_fine"]), fmt(k["last_local_order"])]
        contrast = " (contrast: active bound)" if name in settings["contrast"] else ""
        summary.append(f"| {name}{contrast} | " + " | ".join(cells) + " |")
    head = [
        "Observed order of the cost error (expected for smooth problems: trapezoidal 2, "
        "Hermite–Simpson 4); fits over the points above the floor, last local = the "
        "finest pair of such points:",
        "",
        f"| problem | trapezoidal, all N | trapezoidal, N ≥ {FINE_N} | trapezoidal, last "
        f"local | Hermite–Simpson, all N | Hermite–Simpson, N ≥ {FINE_N} | "
        "Hermite–Simpson, last local |",
        "|---|---|---|---|---|---|---|",
        *summary,
        "",
    ]
    notes = []
    for name in (*settings["problems"], *settings["contrast"]):
        a = None if name not in P else analyse(P[name], settings)
        if a is None:
            continue
        for kind in TRANSCRIPTIONS:
            rows = a[kind]["rows"]
            flips = [
                f"{r['N']} and {s['N']}"
                for r, s in zip(rows, rows[1:])
                if r["used"] and s["used"] and (r["error"] > 0) != (s["error"] > 0)
            ]
            if flips:
                notes.append(
                    f"{name}, {LABELS[kind]}: the error changes sign between N = "
                    f"{', '.join(flips)}; near there two terms of the error cancel, so the "
                    "local orders around it (and fits that include it) are not the "
                    "method's order; the local orders at the finest N are."
                )
        if a["checks"]["ipopt"] > 10 * a["checks"]["richardson"]:
            notes.append(
                f"{name}: the toolkit's and IPOPT's optima of the reference NLP differ by "
                f"{a['checks']['ipopt']:.1e} ({a['checks']['ipopt'] / abs(a['J_ref']):.0e} "
                "relative), more than the Richardson estimate of the reference's "
                f"discretisation error ({a['checks']['richardson']:.1e}): the two "
                "solvers' stopping tolerances, not the grid, limit the reference there, "
                "and the fit floor follows the larger."
            )
    return "\n".join(head + lines), notes


def write_readme(results: dict, settings: dict) -> None:
    P = results.get("problems", {})
    if not P:
        log("No results yet: nothing written.")
        return
    m = results["machine"]
    entries = [e for p in P.values() for e in p.values()]
    text, notes = report(results, settings)
    section = "\n".join(
        [
            SECTION,
            "",
            "The optimal cost J_N of three smooth library problems "
            f"({', '.join(settings['problems'])}; "
            "none has an active bound at its optimum: no nonzero bound multiplier in "
            "IPOPT's Hermite–Simpson solution at N = 100) with `Trapezoidal(N)` and "
            f"`HermiteSimpson(N)`, N = {', '.join(map(str, settings['Ns']))}, solved by "
            "`control.plan` (default `KKTNewton()`, default initial guess, float64). "
            "Error = J_N − J_ref against a fine-grid reference: the toolkit's "
            f"Hermite–Simpson optimum at N = {settings['N_ref']}, checked by Richardson "
            f"extrapolation from N = {settings['N_ref'] // 2} and by IPOPT (tol 1e-12) on "
            "the identical NLP; every J_N is also compared with IPOPT's on the same NLP "
            "(last column), so a different local optimum would show. Observed order = "
            "minus the least-squares slope of log |error| against log N over the points "
            f"above the floor ({FLOOR_FACTOR:g}× the larger reference check; ‡ = "
            "below the floor, not fitted); local order = log2(e_N / e_2N)."
            + (
                f" For contrast, {', '.join(settings['contrast'])} too, whose optimum "
                "has a short arc on the lower control bound (5 nodes at N = 100)."
                if settings["contrast"]
                else ""
            ),
            "",
            "Reproduce: `python benchmarks/convergence.py --readme` (results in "
            "`benchmarks/results/convergence.json`, plot "
            "`benchmarks/results/convergence.png`).",
            "",
            machine_line(
                m,
                shared=" (shared with other jobs; this study times nothing, so the load "
                "does not affect its numbers)",
                versions={"CasADi": "casadi"},
            )
            + " "
            + measured_line(entries),
            "",
            "![Optimal cost error vs N](results/convergence.png)",
            "",
            text,
            *[f"{n}\n" for n in notes],
        ]
    )
    replace_section(README, SECTION, section, before=BEFORE)
    log(f"Wrote section {SECTION!r} of {README}.")


def _measure(mode: str, settings: dict, opts: argparse.Namespace) -> None:
    """Solve every job not yet in the results file (or named by `--force`)."""
    log(f"convergence ({mode}): results in {_output(mode)}")
    previous = None
    todo = jobs(settings)
    if opts.problems:
        order = opts.problems.split(",")
        todo = sorted((j for j in todo if j[0] in order), key=lambda j: order.index(j[0]))
    for name, key, kind, N in todo:
        store = _store(mode, name, forced(opts))
        done = store.get(key)
        # Entries from before the tolerance was recorded used KKTNewton's default 1e-9.
        if not store.todo(key) and done.get("atol", 1e-9) == opts.atol:
            continue
        if previous is not None and name != previous:
            # Every compiled executable keeps memory mappings; a process past Linux's
            # 65530 dies inside XLA's compiler.
            jax.clear_caches()
            gc.collect()
        previous = name
        e = solve(name, kind, N, opts.atol)
        store.put(key, e)
        log(
            f"  {name:<18} {key:<24} J {e['cost']:.15g}  {e['result'][:40]}  "
            f"{e['iterations']} it  ({e['cold_s']:.1f} s)   IPOPT {e['ipopt']['cost']:.15g} "
            f"{e['ipopt']['status']}"
        )
    jax.block_until_ready(jnp.zeros(()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(
        parser,
        example="bacteria/hermite_simpson",
        quick="smoke run: one problem, N <= 40",
        report_only=True,
    )
    parser.add_argument("--problems", default=None, help="comma-separated subset, in order")
    parser.add_argument(
        "--atol",
        type=float,
        default=ATOL,
        help="the planner's tolerance; entries solved with another are solved again",
    )
    opts = parser.parse_args(argv)
    mode = "quick" if opts.quick else "full"
    settings = SETTINGS[mode]
    if opts.readme and opts.quick:
        parser.error("--readme writes the full run's section; run it without --quick")

    if not opts.report_only:
        _measure(mode, settings, opts)
    results = _load(mode)
    plot(results, settings, _plot_path(mode))
    text, notes = report(results, settings)
    print()
    print(text)
    for n in notes:
        print(n)
    if opts.readme:
        write_readme(results, settings)
    return 0


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    sys.exit(main())
