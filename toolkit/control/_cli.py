"""The `plan` command of `python -m toolkit`: plan a problem of the library."""

import argparse
import json
import os
import time

from .._cli_checks import check_outputs, InputError, POSITIVE_INT


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """The `plan` command's arguments."""
    p.add_argument("problem", nargs="?")
    p.add_argument("--list", action="store_true", help="list the problem library")
    p.add_argument(
        "--transcription",
        default=None,
        choices=[
            "trapezoidal",
            "hermite_simpson",
            "multiple_shooting",
            "single_shooting",
            "discrete",
        ],
        help="default: trapezoidal, or discrete for a discrete-time problem",
    )
    p.add_argument("--method", default="newton", choices=["newton", "least_squares"])
    p.add_argument(
        "--N",
        type=POSITIVE_INT,
        default=None,
        help="intervals (default: the problem's)",
    )
    p.add_argument("--json", default=None, help="write the solution to this JSON file")
    p.add_argument("--plot", default=None, help="write a plot of states and controls")
    p.add_argument("--debug", action="store_true", help="show the traceback of an input error")


def plan(ns: argparse.Namespace) -> int:
    """`python -m toolkit plan`: plan a library problem, print the cost, iterations,
    KKT residual and times, and optionally write the solution (JSON) and a plot.
    Exit status 0 when the plan converged, 1 otherwise."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from .. import control

    if ns.list:
        for name in control.problems.names():
            ex = control.problems.get(name)
            print(f"{name:<20} nx={ex.problem.nx} nu={ex.problem.nu} N={ex.N:<4} {ex.description}")
        return 0
    if ns.problem is None:
        raise InputError("give a PROBLEM (see `python -m toolkit plan --list`)")
    if ns.problem not in control.problems.names():
        raise InputError(
            f"argument problem: unknown problem {ns.problem!r}; choose from "
            f"{', '.join(control.problems.names())}"
        )
    check_outputs(ns)
    from ._stored import library_example, plan_library_problem

    ex = library_example(ns.problem)
    N = ex.N if ns.N is None else ns.N
    key = ns.transcription
    if key is None:
        discrete = isinstance(ex.problem.dynamics, control.DiscreteDynamics)
        key = "discrete" if discrete else "trapezoidal"
    transcription = getattr(
        control,
        {
            "trapezoidal": "Trapezoidal",
            "hermite_simpson": "HermiteSimpson",
            "multiple_shooting": "MultipleShooting",  # imports diffrax on use
            "single_shooting": "SingleShooting",
            "discrete": "Discrete",
        }[key],
    )(N)
    solver = {"newton": control.KKTNewton, "least_squares": control.KKTLeastSquares}[ns.method]()
    try:
        transcription.check(ex.problem)
    except ValueError as e:
        raise InputError(f"argument --transcription: {e}") from None
    print(f"planning {ex.name} ({ex.description}) with {key}, N={N}, {ns.method} ...")
    print("  compiling and solving ...", flush=True)

    # With the compilation cache on, the plan's compiled stages are stored too, and the
    # next process loads them without tracing.
    cache = jax.config.jax_compilation_cache_dir
    store = cache and getattr(ns, "store", True)
    folder = os.path.join(cache, "plans") if store else None
    t = time.perf_counter()
    sol = plan_library_problem(ex.name, transcription, solver, folder=folder)
    sol.cost.block_until_ready()
    cold = time.perf_counter() - t
    t = time.perf_counter()
    sol = plan_library_problem(ex.name, transcription, solver, folder=folder)
    sol.cost.block_until_ready()
    warm = time.perf_counter() - t
    message = control.RESULTS[sol.result] or "converged"
    print(
        f"cost {float(sol.cost):.10g}  iterations {int(sol.stats['num_steps'])}  "
        f"KKT residual {float(sol.stats['kkt_residual']):.2e}  "
        f"time {cold:.2f} s (first call, with compilation), {warm * 1e3:.1f} ms (warm)  "
        f"[{message}]"
    )
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(
                {
                    "problem": ex.name,
                    "transcription": key,
                    "N": N,
                    "method": ns.method,
                    "cost": float(sol.cost),
                    "iterations": int(sol.stats["num_steps"]),
                    "kkt_residual": float(sol.stats["kkt_residual"]),
                    "result": message,
                    "cold_s": cold,
                    "warm_s": warm,
                    "ts": sol.ts.tolist(),
                    "xs": sol.xs.tolist(),
                    "us": sol.us.tolist(),
                },
                f,
                indent=1,
            )
        print(f"wrote {ns.json}")
    if ns.plot:
        import matplotlib

        matplotlib.use("Agg")
        control.plot_solution(sol, title=f"{ex.name}: cost {float(sol.cost):.6g}", path=ns.plot)
        print(f"wrote {ns.plot}")
    return 0 if sol.result == control.RESULTS.successful else 1
