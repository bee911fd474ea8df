"""A gallery of the problem library.

This tutorial is a notebook written as a script. It plans every problem of
`toolkit.control.problems` at its default parameters and discretisation, checks
each optimum against the CasADi + IPOPT reference computed on the identical
transcription (`control.problems.reference_optima()`), and draws one figure per
problem: states, controls and, where the transcription has them, the Pontryagin
costates read off the defect multipliers.

Run it with

    python tutorials/gallery.py --out gallery/            # every problem (minutes)
    python tutorials/gallery.py --only simple_case,seir   # a few

`tests/test_tutorials.py` runs `main(...)` on a few problems and checks the numbers
it returns.
"""

import argparse
import gc
import pathlib
import time

import jax


# Optimal control needs float64: the KKT conditions are solved to ~1e-9.
jax.config.update("jax_enable_x64", True)

import toolkit  # noqa: E402
from toolkit import control  # noqa: E402


# %% 1. Which transcription for which problem -----------------------------------------
#
# The default is the trapezoidal rule with the default planner (`KKTNewton`), which
# reaches IPOPT's optimum from the library's default guess on every continuous-time
# problem. (bioreactor is degenerate at the lab's values and has other KKT points
# nearby; the shooting transcriptions stop at one of them, see
# `tests/control/test_problems.py`.) The one exception is invasive_plant, a
# discrete-time model with its own transcription.


def transcription_for(name: str, N: int):
    """`(reference key, transcription)` used for problem `name` at `N` steps."""
    ex = control.problems.get(name)
    if isinstance(ex.problem.dynamics, control.DiscreteDynamics):
        return "discrete", control.Discrete(N)
    return "trapezoidal", control.Trapezoidal(N)


# %% 2. Plan one problem and draw it ------------------------------------------------------


def plan_one(name: str, out: pathlib.Path | None) -> dict:
    """Plan problem `name` at its defaults, compare with the IPOPT reference and
    (if `out` is given) draw `out/<name>.png`.

    **Returns:**

    A dict with the cost, the reference cost, the relative difference, the result,
    the iterations and the wall time of the (cold: compilation included) solve.
    """
    ex = control.problems.get(name)
    key, tr = transcription_for(name, ex.N)
    start = time.perf_counter()
    sol = control.plan(ex.problem, tr, args=ex.args, throw=False)
    cost = float(sol.cost)
    seconds = time.perf_counter() - start
    reference = control.problems.reference_optima()[name][key]["cost"]
    row = dict(
        name=name,
        transcription=key,
        N=ex.N,
        cost=cost,
        reference=reference,
        relative_difference=abs(cost - reference) / max(abs(reference), 1e-12),
        result=control.RESULTS[sol.result] or "successful",
        successful=bool(sol.result == control.RESULTS.successful),
        iterations=int(sol.stats["num_steps"]),
        seconds=seconds,
        has_costates=sol.costates is not None,
    )
    if out is not None:
        title = f"{name} ({key}, N={ex.N}): cost {cost:.8g}, IPOPT {reference:.8g}"
        control.plot_solution(sol, title=title, path=str(out / f"{name}.png"))
    return row


# %% 3. The whole library -------------------------------------------------------------------
#
# Every plan compiles its own XLA executable; each holds memory mappings until JAX
# drops it, so the caches are cleared between problems (a process may hold 65530).


def main(names=None, out=None) -> list[dict]:
    """Plan `names` (default: the whole library), print a table, draw the figures into
    the folder `out` (if given); return one row per problem."""
    names = control.problems.names() if names is None else list(names)
    if out is not None:
        out = pathlib.Path(out)
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'problem':<24}{'transcription':<22}{'cost':>16}{'IPOPT':>16}{'rel':>9}  result")
    for name in names:
        row = plan_one(name, out)
        rows.append(row)
        print(
            f"{name:<24}{row['transcription']:<22}{row['cost']:>16.9g}"
            f"{row['reference']:>16.9g}{row['relative_difference']:>9.1e}  {row['result']}"
        )
        jax.clear_caches()
        gc.collect()
    return rows


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated problem names")
    parser.add_argument("--out", default="gallery", help="folder for the figures")
    opts = parser.parse_args()
    main(None if opts.only is None else opts.only.split(","), opts.out)
