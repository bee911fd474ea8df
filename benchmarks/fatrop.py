"""Control planner: toolkit vs FATROP (and IPOPT) through CasADi, on one NLP per
transcription, written stage-wise as FATROP needs it.

Van der Pol (x0 = (0, 1), t1 = 10, u in [-0.3, 1], L = x1² + x2² + u², mu = 1), the
default guess (x constant x0, u = 0.35), float64. Two transcriptions, each solved by
`control.plan` with its default `KKTNewton` and by CasADi's FATROP and IPOPT on the
same NLP:

- `multiple_shooting`: `control.MultipleShooting(N)`, one classical RK4 step per
  interval with the control linear between the nodes, the running cost integrated
  with the state. FATROP's stages: state s_k = (x_k, u_k), stage control v_k = u_{k+1},
  dynamics s_{k+1} = (RK4(x_k, u_k, v_k), v_k).
- `trapezoidal`: `control.Trapezoidal(N)`. The trapezoidal defect is implicit in
  x_{k+1}, and FATROP's dynamics must be explicit: its stage control is the next
  node, v_k = (x_{k+1}, u_{k+1}), with s_{k+1} = v_k and the defect an equality path
  constraint of stage k (the same NLP, its node variables written twice).
- `hermite_simpson`: `control.HermiteSimpson(N)` (compressed, midpoint controls m_k),
  written as the trapezoidal one with v_k = (m_k, x_{k+1}, u_{k+1}).

FATROP: `nlpsol('fatrop')` with `structure_detection='auto'` (CasADi 3.6+), default
tolerances; IPOPT: exact Hessian, MUMPS, tol 1e-8, on the identical stage-wise NLP.
Both solvers are built once per case (warm = the solve alone). The three are timed
round-robin, so that load from elsewhere hits them alike. Each case is written to
`benchmarks/results/fatrop.json` as it finishes, and skipped on a re-run unless
`--force` names it.

    python benchmarks/fatrop.py                  # every missing case
    python benchmarks/fatrop.py --quick          # smoke run: N = 100
    python benchmarks/fatrop.py --readme         # ... and write the README section
    python benchmarks/fatrop.py --force trapezoidal
"""

import argparse
import pathlib
import sys
import time

import casadi as ca
import equinox as eqx
import jax
import numpy as np
from _harness import arguments, forced, log, print_and_write, Store, wait_quiet, write_section
from control_vs_ipopt import interleaved, machine, timed, U_GUESS, U_HI, U_LO, X0

from toolkit import control  # after control_vs_ipopt, which switches on float64


HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "fatrop.json"
README = HERE / "README.md"
SECTION = "## Control: toolkit vs FATROP"
BEFORE = "## Cold start: compilation and the persistent cache"
T1, MU = 10.0, 1.0
SAME_OPTIMUM_RTOL = 1e-6
TRANSCRIPTIONS = {
    "trapezoidal": control.Trapezoidal,
    "hermite_simpson": control.HermiteSimpson,
    "multiple_shooting": control.MultipleShooting,
}


def _vdp():
    x, u, mu = ca.SX.sym("x", 2), ca.SX.sym("u"), ca.SX.sym("mu")
    f = ca.vertcat(mu * (1 - x[1] ** 2) * x[0] - x[1] + u, x[0])
    L = x[0] ** 2 + x[1] ** 2 + u**2
    return ca.Function("vdp", [x, u, mu], [f, L])


def _rk4(h: float) -> ca.Function:
    """(x_k, u_k, u_next, mu) -> (x at t_k + h, integral of L): one RK4 step of the
    state and the cost with the control linear between u_k and u_next."""
    vdp = _vdp()
    x, ua, ub, mu = ca.SX.sym("x", 2), ca.SX.sym("ua"), ca.SX.sym("ub"), ca.SX.sym("mu")

    def field(y, u):
        f, L = vdp(y[:2], u, mu)
        return ca.vertcat(f, L)

    y = ca.vertcat(x, 0)
    um = (ua + ub) / 2
    k1 = field(y, ua)
    k2 = field(y + h / 2 * k1, um)
    k3 = field(y + h / 2 * k2, um)
    k4 = field(y + h * k3, ub)
    y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return ca.Function("rk4", [x, ua, ub, mu], [y[:2], y[2]])


class StageWise:
    """The NLP of one transcription at one N, stage by stage: for k = 0..N the state
    s_k = (x_k, u_k), then (k < N) the stage control v_k; constraints in stage order,
    x_0 fixed first. FATROP and IPOPT are built on it once."""

    def __init__(self, transcription: str, N: int):
        h = T1 / N
        mu = ca.SX.sym("mu")
        s = [ca.SX.sym(f"s{k}", 3) for k in range(N + 1)]
        nv = {"multiple_shooting": 1, "trapezoidal": 3, "hermite_simpson": 4}[transcription]
        v = [ca.SX.sym(f"v{k}", nv) for k in range(N)]
        rk4, vdp = _rk4(h), _vdp()
        w, lbw, ubw, w0 = [], [], [], []
        g, lbg, ubg, equality = [], [], [], []
        J = 0

        def constrain(expr, lo, hi):
            g.append(expr)
            lbg.extend(lo)
            ubg.extend(hi)
            equality.extend(a == b for a, b in zip(lo, hi))

        for k in range(N + 1):
            w.append(s[k])
            lbw += [-np.inf, -np.inf, U_LO]
            ubw += [np.inf, np.inf, U_HI]
            w0 += [*X0, U_GUESS]
            if k == 0:
                constrain(s[0][:2], list(X0), list(X0))
            if k == N:
                break
            w.append(v[k])
            if transcription == "hermite_simpson":  # the midpoint control comes first
                lbw += [U_LO] + [-np.inf] * 3
                ubw += [U_HI] + [np.inf] * 3
            else:
                lbw += [-np.inf] * nv
                ubw += [np.inf] * nv
            if transcription == "multiple_shooting":
                w0 += [U_GUESS]
                x_next, cost = rk4(s[k][:2], s[k][2], v[k], mu)
                J += cost
                constrain(s[k + 1] - ca.vertcat(x_next, v[k]), [0.0] * 3, [0.0] * 3)
            elif transcription == "hermite_simpson":
                w0 += [U_GUESS, *X0, U_GUESS]
                m, x1, u1 = v[k][0], v[k][1:3], v[k][3]
                f0, L0 = vdp(s[k][:2], s[k][2], mu)
                f1, L1 = vdp(x1, u1, mu)
                fm, Lm = vdp((s[k][:2] + x1) / 2 + h / 8 * (f0 - f1), m, mu)
                J += h / 6 * (L0 + 4 * Lm + L1)
                constrain(s[k + 1] - v[k][1:], [0.0] * 3, [0.0] * 3)
                constrain(x1 - s[k][:2] - h / 6 * (f0 + 4 * fm + f1), [0.0] * 2, [0.0] * 2)
            else:
                w0 += [*X0, U_GUESS]
                f0, L0 = vdp(s[k][:2], s[k][2], mu)
                f1, L1 = vdp(v[k][:2], v[k][2], mu)
                J += h / 2 * (L0 + L1)
                constrain(s[k + 1] - v[k], [0.0] * 3, [0.0] * 3)
                constrain(v[k][:2] - s[k][:2] - h / 2 * (f0 + f1), [0.0] * 2, [0.0] * 2)
        self.nlp = {"x": ca.vertcat(*w), "f": J, "g": ca.vertcat(*g), "p": mu}
        self.kwargs = dict(x0=w0, lbx=lbw, ubx=ubw, lbg=lbg, ubg=ubg, p=MU)
        self.equality = equality

    def solver(self, name: str) -> ca.Function:
        options: dict = {"print_time": False}
        if name == "fatrop":
            options.update(structure_detection="auto", equality=self.equality)
            options["fatrop"] = {"print_level": 0}
        else:
            options["ipopt"] = {"print_level": 0, "sb": "yes", "tol": 1e-8}
        return ca.nlpsol(name, name, self.nlp, options)


def measure(store: Store, transcription: str, N: int) -> None:
    key = f"{transcription}/N={N}"
    if not store.todo(key):
        log(f"  {key}: done")
        return
    log(f"  {key}")
    ex = control.problems.get("van_der_pol")
    tr = TRANSCRIPTIONS[transcription](N)

    @eqx.filter_jit
    def plan(args):
        return control.plan(ex.problem, tr, args=args, throw=False)

    cold, sol = timed(lambda: plan(ex.args))
    nlp = StageWise(transcription, N)
    solvers = {name: nlp.solver(name) for name in ("fatrop", "ipopt")}
    results = {name: solver(**nlp.kwargs) for name, solver in solvers.items()}
    entry: dict = {
        "toolkit": {
            "cost": float(sol.cost),
            "iterations": int(sol.stats["num_steps"]),
            "converged": bool(sol.result == control.RESULTS.successful),
            "first_call_s": cold,
        }
    }
    for name, solver in solvers.items():
        stats = solver.stats()
        entry[name] = {
            "cost": float(results[name]["f"]),
            "iterations": int(stats["iter_count"]),
            "converged": bool(stats["success"]),
        }
    fns = {
        "toolkit": lambda: plan(ex.args).cost,
        **{name: (lambda s=s: s(**nlp.kwargs)) for name, s in solvers.items()},
    }
    for name, timing in interleaved(fns).items():
        entry[name].update(timing)
    store.put(key, entry)


def report(store: Store, cases: list[tuple[str, int]]) -> tuple[str, list[str]]:
    head = (
        "| transcription | N | toolkit | FATROP | IPOPT | toolkit / FATROP | "
        "toolkit / IPOPT | FATROP / IPOPT | iterations (toolkit, FATROP, IPOPT) | same optimum |"
    )
    lines = [head, "|" + "---|" * 10]
    worst = 0.0
    for transcription, N in cases:
        e = store.get(f"{transcription}/N={N}")
        if e is None:
            continue
        t, fa, ip = (e[k]["warm_s"] for k in ("toolkit", "fatrop", "ipopt"))
        costs = [e[k]["cost"] for k in ("toolkit", "fatrop", "ipopt")]
        same = max(abs(c - costs[0]) for c in costs) <= SAME_OPTIMUM_RTOL * abs(costs[0])
        ok = all(e[k]["converged"] for k in ("toolkit", "fatrop", "ipopt"))
        worst = max(worst, t / fa)
        its = ", ".join(str(e[k]["iterations"]) for k in ("toolkit", "fatrop", "ipopt"))
        lines.append(
            f"| {transcription} | {N} | {t * 1e3:.2f} ms | {fa * 1e3:.2f} ms | "
            f"{ip * 1e3:.2f} ms | **{t / fa:.2f}x** | {t / ip:.2f}x | {fa / ip:.2f}x | "
            f"{its} | {'yes' if same and ok else 'NO'} |"
        )
    goal = "MET" if worst < 1 else "MISSED"
    goals = [
        f"toolkit faster than FATROP on every case (issue 22): worst toolkit / FATROP "
        f"{worst:.2f}x: {goal}."
    ]
    return "\n".join(lines) + "\n", goals


def write_readme(store: Store, table: str, goals: list[str]) -> None:
    intro = (
        "Van der Pol (x0 = (0, 1), t1 = 10, u in [-0.3, 1], L = x1² + x2² + u²), the "
        "default guess, float64; the same NLP on every side, written stage-wise for "
        "FATROP (see the docstring of `benchmarks/fatrop.py`: trapezoidal's implicit "
        "defects make its FATROP stage control the next node). FATROP "
        "(`structure_detection='auto'`, default tolerances) and IPOPT (exact Hessian, "
        "MUMPS, tol 1e-8) through CasADi, built once per case, warm solve, the NLP's "
        "functions evaluated by CasADi's SX virtual machine (its default; no generated "
        "C code); toolkit: "
        "`control.plan` with its default `KKTNewton`, jitted, warm. Medians of "
        "round-robin repeats."
    )
    write_section(
        store,
        README,
        SECTION,
        intro,
        "fatrop",
        table,
        goals,
        before=BEFORE,
        versions={"CasADi": "casadi"},
        heading="Goals:",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(
        parser,
        example="trapezoidal,multiple_shooting/N=1000",
        quick="smoke run: N=100",
        wait_quiet=60.0,
    )
    opts = parser.parse_args(argv)
    mode, Ns = ("quick", [100]) if opts.quick else ("full", [100, 1000, 4000])
    store = Store(
        OUTPUT, forced(opts), section=(mode,), machine=machine, machine_at=("machine", mode)
    )
    jax.block_until_ready(jax.numpy.ones(3) + 1)
    cases = [(tr, N) for tr in TRANSCRIPTIONS for N in Ns]
    for transcription, N in cases:
        if store.todo(f"{transcription}/N={N}") and opts.wait_quiet > 0:
            wait_quiet(opts.wait_quiet)
        measure(store, transcription, N)
    table, goals = report(store, cases)
    print_and_write(table, goals, opts, lambda: write_readme(store, table, goals))
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    log(f"done in {time.perf_counter() - start:.0f} s")
    sys.exit(status)
