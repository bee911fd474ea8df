"""Control planner: toolkit (JAX) vs CasADi + IPOPT, side by side on one transcription.

Van der Pol (`toolkit.control.problems.get("van_der_pol")`): x1' = mu (1 - x2²) x1 - x2
+ u, x2' = x1, x(0) = (0, 1), t1 = 10, u in [-0.3, 1], L = x1² + x2² + u². Both sides
solve `control.Trapezoidal(N)`'s NLP exactly (unknowns x_1..x_N, u_0..u_N), from
the same default guess (x constant x0, u = 0.35), in float64. The CasADi NLP is written
here in SX symbolics with `mu` as the NLP parameter `p`, and its IPOPT solver (exact
Hessian, MUMPS, default tol 1e-8, print_level 0) is built once per N and then called
repeatedly, so "warm" IPOPT time is the solve alone.

Measurements (each written to `benchmarks/results/control_vs_ipopt.json` as soon as
it finishes; finished ones are skipped on a re-run unless `--force`):

1. `solve`: N = 100, 1000, 4000; `KKTNewton`, `KKTLeastSquares` and IPOPT: cost,
    iterations, cold time (first call, compilation / solver construction included)
    and warm time (median of repeats, `block_until_ready`). A tight IPOPT reference
    (tol 1e-12, no bound relaxation) checks that both reach the same optimum.
2. `grad`: `jax.grad` of the optimal cost w.r.t. `args` (implicit differentiation,
    under `eqx.filter_jit`, and called eagerly), warm, relative to one warm solve at
    N = 1000; checked
    against a central finite difference and IPOPT's envelope gradient ∂_mu(J + λᵀg).
3. `batch`: 64 values of mu in [0.5, 1.5] solved by `control.plan_batch` over args,
    called as a user calls it (toolkit's compiled program; `jax.vmap(plan)` in chunks
    of 8 on a CPU, the batch in one part per core, each called from its own thread),
    the same with `workers=1` (one call), and the same traced inside the caller's own
    `jit` (XLA's default options; one program), with the CPU time of each call,
    vs a Python loop of IPOPT solves (the same built solver, mu passed as `p`), at
    N = 100, 1000, 4000: throughput ratio, cost agreement, unconverged members.

    python benchmarks/control_vs_ipopt.py                # what is missing, full run
    python benchmarks/control_vs_ipopt.py --quick        # smoke run: N=100, 8 members
    python benchmarks/control_vs_ipopt.py --readme       # ... and write the README
    python benchmarks/control_vs_ipopt.py --force        # re-measure everything
    python benchmarks/control_vs_ipopt.py --force solve  # re-measure `solve/...` only
"""

import argparse
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

import _provenance
import casadi as ca
import equinox as eqx
import jax
import numpy as np
from _harness import arguments, forced, log, Store, wait_quiet
from _provenance import machine_line, measured_line, OtherLoad, replace_section


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from toolkit import control  # noqa: E402


HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "control_vs_ipopt.json"
README = HERE / "README.md"
SECTION = "## Control: toolkit vs CasADi + IPOPT"

PLANNERS = {"KKTNewton": control.KKTNewton, "KKTLeastSquares": control.KKTLeastSquares}
IPOPT_OPTIONS = {
    "ipopt.tol": 1e-8,
    "ipopt.hessian_approximation": "exact",
    "ipopt.linear_solver": "mumps",
    "ipopt.print_level": 0,
    "ipopt.sb": "yes",
    "print_time": False,
}
# The reference: the same NLP solved tightly, bounds not relaxed (IPOPT relaxes every
# bound by 1e-8 by default, which moves an optimum with active bounds slightly).
REFERENCE_OPTIONS = {
    **IPOPT_OPTIONS,
    "ipopt.tol": 1e-12,
    "ipopt.bound_relax_factor": 0.0,
    "ipopt.max_iter": 3000,
}
SAME_OPTIMUM_RTOL = 1e-6  # |toolkit - IPOPT(tol 1e-8)| <= this * |cost|
FD_EPS = 1e-5  # central difference step in mu


def machine() -> dict:
    return _provenance.machine(casadi=ca.__version__, equinox=eqx.__version__)


# --------------------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def interleaved(
    fns: dict[str, Callable[[], object]],
    min_rounds: int = 7,
    max_rounds: int = 40,
    budget_s: float = 6.0,
) -> dict[str, dict]:
    """Warm timings of several already-warm callables, run round-robin (A, B, C, A, B,
    C, ...) so that load from other processes on the machine hits all of them alike:
    at least `min_rounds` rounds, more while under `budget_s` (at most `max_rounds`).
    Returns, per name, the median and minimum time, the median CPU time of this
    process per call (all its threads) and the number of repeats."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    total = 0.0
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and total < budget_s):
        for name, fn in fns.items():
            start = time.process_time()
            dt, _ = timed(fn)
            cpu[name].append(time.process_time() - start)
            times[name].append(dt)
            total += dt
        rounds += 1
    return {
        name: {
            "warm_s": statistics.median(ts),
            "warm_min_s": min(ts),
            "cpu_s": statistics.median(cpu[name]),
            "repeats": len(ts),
        }
        for name, ts in times.items()
    }


# --------------------------------------------------------------------------------------
# CasADi: the trapezoidal transcription, with mu as the NLP parameter.
# --------------------------------------------------------------------------------------

X0 = (0.0, 1.0)
T1 = 10.0
U_LO, U_HI = -0.3, 1.0
U_GUESS = 0.5 * (U_LO + U_HI)


class Ipopt:
    """IPOPT on the trapezoidal NLP at one N, built once. Unknowns interleaved by time:
    w = [u_0, x_1, u_1, x_2, ..., u_{N-1}, x_N, u_N]."""

    def __init__(self, N: int, options: dict):
        start = time.perf_counter()
        h = T1 / N
        mu = ca.SX.sym("mu")
        W = ca.SX.sym("W", 3, N)  # column k: u_k, x_{k+1}
        uN = ca.SX.sym("uN")
        xs = ca.horzcat(ca.DM(X0), W[1:3, :])  # (2, N+1): x_0 .. x_N
        us = ca.horzcat(W[0, :], uN)  # (1, N+1): u_0 .. u_N
        x1, x2, u = xs[0, :], xs[1, :], us[0, :]
        f = ca.vertcat(mu * (1 - x2 * x2) * x1 - x2 + u, x1)
        L = x1 * x1 + x2 * x2 + u * u
        defects = xs[:, 1:] - xs[:, :-1] - h / 2 * (f[:, :-1] + f[:, 1:])
        J = h / 2 * ca.sum2(L[:, :-1] + L[:, 1:])
        w = ca.vertcat(ca.vec(W), uN)
        g = ca.vec(defects)
        self.N = N
        self.solver = ca.nlpsol("ipopt", "ipopt", {"x": w, "f": J, "g": g, "p": mu}, options)
        guess = np.tile(np.array([U_GUESS, *X0]), N)
        self.kwargs = dict(
            x0=np.append(guess, U_GUESS),
            lbx=np.append(np.tile([U_LO, -np.inf, -np.inf], N), U_LO),
            ubx=np.append(np.tile([U_HI, np.inf, np.inf], N), U_HI),
            lbg=np.zeros(2 * N),
            ubg=np.zeros(2 * N),
        )
        lam = ca.SX.sym("lam", 2 * N)
        # Envelope theorem: d J* / d mu = ∂_mu (J + λᵀ g) at the optimum (CasADi's
        # Lagrangian is f + lam_gᵀ g).
        self.envelope = ca.Function("envelope", [w, lam, mu], [ca.gradient(J + ca.dot(lam, g), mu)])
        self.build_s = time.perf_counter() - start

    def __call__(self, mu: float):
        sol = self.solver(p=mu, **self.kwargs)
        stats = self.solver.stats()
        return sol, stats

    def solve(self, mu: float) -> dict:
        sol, stats = self(mu)
        return {
            "cost": float(sol["f"]),
            "iterations": int(stats["iter_count"]),
            "status": str(stats["return_status"]),
            "success": bool(stats["success"]),
        }

    def envelope_gradient(self, mu: float) -> float:
        sol, _ = self(mu)
        return float(self.envelope(sol["x"], sol["lam_g"], mu))


class IpoptCache:
    def __init__(self):
        self.solvers: dict[tuple[int, str], Ipopt] = {}

    def get(self, N: int, kind: str = "default") -> Ipopt:
        key = (N, kind)
        if key not in self.solvers:
            options = IPOPT_OPTIONS if kind == "default" else REFERENCE_OPTIONS
            self.solvers[key] = Ipopt(N, options)
        return self.solvers[key]


# --------------------------------------------------------------------------------------
# toolkit.
# --------------------------------------------------------------------------------------

EXAMPLE = control.problems.get("van_der_pol")


def _args(mu) -> dict:
    return {"mu": jnp.asarray(mu, dtype=jnp.float64)}


def eager_grad_cost(problem, transcription, args):
    """`jax.grad` of the plan's cost, called eagerly: the plan runs toolkit's own
    compiled programs."""
    return jax.grad(lambda a: control.plan(problem, transcription, args=a).cost)(args)


# The same inside the user's `jit`: the plan is part of the user's program.
grad_cost = eqx.filter_jit(eager_grad_cost)


def _batch_fields(sol) -> dict:
    return {
        "cost": sol.cost,
        "ok": sol.result == control.RESULTS.successful,
        "num_steps": sol.stats["num_steps"],
        "kkt_residual": sol.stats["kkt_residual"],
        "backtracks": sol.stats.get("backtracks", jnp.zeros_like(sol.stats["num_steps"])),
    }


def batch_plan(problem, transcription, solver, args, workers="auto"):
    """`control.plan_batch` as a user calls it: toolkit's own compiled program, with
    its XLA options (`toolkit.compiler_options(planner=True)`); `workers=1`: the whole
    batch in one call of the program, from this thread."""
    sol = control.plan_batch(
        problem, transcription, solver, args_batch=args, throw=False, workers=workers
    )
    return _batch_fields(sol)


@eqx.filter_jit
def batch_plan_in_user_jit(problem, transcription, solver, args):
    """`control.plan_batch` traced inside the user's own `jit`, compiled with XLA's
    default options."""
    sol = control.plan_batch(problem, transcription, solver, args_batch=args, throw=False)
    return _batch_fields(sol)


# --------------------------------------------------------------------------------------
# Measurements.
# --------------------------------------------------------------------------------------


def _toolkit_entry(sol, cold: float) -> dict:
    ok = bool(sol.result == control.RESULTS.successful)
    entry = {
        "cost": float(sol.cost),
        "iterations": int(sol.stats["num_steps"]),
        "success": ok,
        "status": "successful" if ok else control.RESULTS[sol.result],
        "kkt_residual": float(sol.stats["kkt_residual"]),
        "cold_s": cold,
    }
    if "backtracks" in sol.stats:
        entry["backtracks"] = int(sol.stats["backtracks"])
    return entry


def measure_solve(store: Store, ipopts: IpoptCache, N: int) -> None:
    """IPOPT, KKTNewton and KKTLeastSquares at one N: cold calls first, then warm calls
    interleaved."""
    key = f"solve/N={N}"
    if not store.todo(key):
        return
    ref = ipopts.get(N, "reference").solve(1.0)
    log(
        f"  IPOPT tol 1e-12  N={N:<5} cost {ref['cost']:.13g}  {ref['iterations']} it  "
        f"{ref['status']}"
    )

    entry: dict = {"reference": ref}
    fresh = (N, "default") not in ipopts.solvers
    start = time.perf_counter()
    ip = ipopts.get(N)
    first = ip.solve(1.0)
    cold = time.perf_counter() - start
    # cold = construction + first solve (if another measurement built it, add them up)
    entry["IPOPT"] = {**first, "build_s": ip.build_s, "cold_s": cold}
    fns: dict[str, Callable[[], object]] = {"IPOPT": lambda: ip.solve(1.0)}
    if not fresh:
        entry["IPOPT"]["cold_s"] = None

    transcription = control.Trapezoidal(N)
    for name, cls in PLANNERS.items():
        solver = cls()

        def call(solver=solver):
            return control.plan(
                EXAMPLE.problem, transcription, solver, args=EXAMPLE.args, throw=False
            )

        cold, sol = timed(call)
        entry[name] = _toolkit_entry(sol, cold)
        fns[name] = call

    with OtherLoad() as other:
        warm = interleaved(fns)
    if entry["IPOPT"]["cold_s"] is None:
        entry["IPOPT"]["cold_s"] = ip.build_s + warm["IPOPT"]["warm_s"]
    for name in fns:
        entry[name].update(warm[name])
    entry["other_cores"] = other.cores
    store.put(key, entry)
    for name in fns:
        r = entry[name]
        log(
            f"  {name:<16} N={N:<5} cost {r['cost']:.13g}  {r['iterations']} it  "
            f"{r['status']}  cold {r['cold_s']:.3f} s  warm {r['warm_s'] * 1e3:.2f} ms "
            f"(min {r['warm_min_s'] * 1e3:.2f} ms, {r['repeats']} repeats)"
        )
    log(f"  other processes kept {other.cores} cores busy during the warm timings")


def measure_grad(store: Store, ipopts: IpoptCache, N: int) -> None:
    key = f"grad/N={N}"
    if not store.todo(key):
        return
    transcription = control.Trapezoidal(N)
    args = EXAMPLE.args
    mu = float(args["mu"])

    def solve():
        return control.plan(EXAMPLE.problem, transcription, args=args).cost

    def grad():
        return grad_cost(EXAMPLE.problem, transcription, args)["mu"]

    def eager_grad():
        return eager_grad_cost(EXAMPLE.problem, transcription, args)["mu"]

    timed(solve)  # compile the plain solve if it was not already
    grad_cold, g = timed(grad)
    eager_cold, g_eager = timed(eager_grad)
    with OtherLoad() as other:
        warm = interleaved({"solve": solve, "grad": grad, "eager_grad": eager_grad})

    def cost(m):
        return float(control.plan(EXAMPLE.problem, transcription, args=_args(m)).cost)

    fd = (cost(mu + FD_EPS) - cost(mu - FD_EPS)) / (2 * FD_EPS)
    envelope = ipopts.get(N, "reference").envelope_gradient(mu)
    g = float(g)
    entry = {
        "grad": g,
        "fd": fd,
        "fd_eps": FD_EPS,
        "rel_err_fd": abs(g - fd) / abs(fd),
        "ipopt_envelope": envelope,
        "rel_err_ipopt": abs(g - envelope) / abs(envelope),
        "solve_warm_s": warm["solve"]["warm_s"],
        "solve_warm_min_s": warm["solve"]["warm_min_s"],
        "grad_cold_s": grad_cold,
        "grad_warm_s": warm["grad"]["warm_s"],
        "grad_warm_min_s": warm["grad"]["warm_min_s"],
        "repeats": warm["grad"]["repeats"],
        "ratio": warm["grad"]["warm_s"] / warm["solve"]["warm_s"],
        "eager_grad": float(g_eager),
        "eager_rel_diff": abs(float(g_eager) - g) / abs(g),
        "eager_grad_cold_s": eager_cold,
        "eager_grad_warm_s": warm["eager_grad"]["warm_s"],
        "eager_ratio": warm["eager_grad"]["warm_s"] / warm["solve"]["warm_s"],
        "other_cores": other.cores,
    }
    store.put(key, entry)
    log(
        f"  grad             N={N:<5} dJ/dmu {g:.12g}  FD {fd:.12g} (rel err "
        f"{entry['rel_err_fd']:.1e})  IPOPT envelope {envelope:.12g} (rel err "
        f"{entry['rel_err_ipopt']:.1e})  grad {entry['grad_warm_s'] * 1e3:.2f} ms "
        f"/ solve {entry['solve_warm_s'] * 1e3:.2f} ms = {entry['ratio']:.2f}x  "
        f"(cold {grad_cold:.2f} s); eager grad {entry['eager_grad_warm_s'] * 1e3:.2f} ms "
        f"= {entry['eager_ratio']:.2f}x (rel. diff {entry['eager_rel_diff']:.1e})"
    )
    log(f"  other processes kept {other.cores} cores busy during the warm timings")


def _workers() -> int:
    """The parts `plan_batch` runs side by side by default here (one per core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def measure_batch(store: Store, ipopts: IpoptCache, N: int, B: int) -> None:
    key = f"batch/N={N}/B={B}"
    if not store.todo(key):
        return
    mus = np.linspace(0.5, 1.5, B)
    ip = ipopts.get(N)

    def loop():
        return [ip.solve(float(m)) for m in mus]

    transcription = control.Trapezoidal(N)
    solver = control.KKTNewton()
    bargs = _args(mus)

    def batched():
        return batch_plan(EXAMPLE.problem, transcription, solver, bargs)

    def one_thread():
        return batch_plan(EXAMPLE.problem, transcription, solver, bargs, workers=1)

    def in_user_jit():
        return batch_plan_in_user_jit(EXAMPLE.problem, transcription, solver, bargs)

    rs = loop()  # the solver is built; this runs every member once
    cold, out = timed(batched)
    _, out_one = timed(one_thread)
    cold_user, out_user = timed(in_user_jit)
    with OtherLoad() as other:
        warm = interleaved(
            {
                "IPOPT": loop,
                "toolkit": batched,
                "toolkit_one_thread": one_thread,
                "toolkit_user_jit": in_user_jit,
            },
            min_rounds=3,
            max_rounds=10,
            budget_s=30.0,
        )
    ok = np.asarray(out["ok"])
    failed = []
    for m in mus[~ok]:
        # Does the member converge on its own (unbatched)?
        alone = control.plan(EXAMPLE.problem, transcription, solver, args=_args(m), throw=False)
        alone_ok = bool(alone.result == control.RESULTS.successful)
        failed.append(
            {
                "mu": float(m),
                "alone_ok": alone_ok,
                "alone_message": "" if alone_ok else control.RESULTS[alone.result],
            }
        )
    entry = {
        "mus": mus.tolist(),
        "IPOPT": {
            "costs": [r["cost"] for r in rs],
            "iterations": [r["iterations"] for r in rs],
            "failed": [float(m) for m, r in zip(mus, rs) if not r["success"]],
            **warm["IPOPT"],
        },
        "toolkit": {
            "costs": np.asarray(out["cost"]).tolist(),
            "num_steps": np.asarray(out["num_steps"]).tolist(),
            "backtracks": np.asarray(out["backtracks"]).tolist(),
            "kkt_residual_max": float(np.max(np.asarray(out["kkt_residual"]))),
            "failed": failed,
            "cold_s": cold,
            **warm["toolkit"],
        },
        "workers": _workers(),
        "toolkit_one_thread": {
            "costs": np.asarray(out_one["cost"]).tolist(),
            **warm["toolkit_one_thread"],
        },
        "toolkit_user_jit": {
            "costs": np.asarray(out_user["cost"]).tolist(),
            "cold_s": cold_user,
            **warm["toolkit_user_jit"],
        },
        "other_cores": other.cores,
    }
    store.put(key, entry)
    i, t = entry["IPOPT"], entry["toolkit"]
    log(
        f"  IPOPT loop       N={N:<5} B={B}  warm {i['warm_s']:.3f} s (min "
        f"{i['warm_min_s']:.3f} s)  iterations "
        f"{min(i['iterations'])}-{max(i['iterations'])}  failed {len(i['failed'])}"
    )
    log(
        f"  toolkit batch    N={N:<5} B={B}  cold {cold:.2f} s  "
        f"warm {t['warm_s']:.3f} s (min {t['warm_min_s']:.3f} s)  Newton steps "
        f"{min(t['num_steps'])}-{max(t['num_steps'])}  "
        f"backtracks max {max(t['backtracks'])}  not converged {len(failed)}"
    )
    log(f"  other processes kept {other.cores} cores busy during the warm timings")


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def _ms(s) -> str:
    if s is None:
        return "–"
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def _e(x) -> str:
    return "–" if x is None else f"{x:.1e}"


def report(
    store: Store, Ns: list[int], B: int, grad_N: int, batch_Ns: list[int]
) -> tuple[str, list[str]]:
    R = store.entries()
    lines = []
    goals = []

    def goal(ok: bool | None, text: str) -> None:
        mark = "info" if ok is None else ("PASS" if ok else "MISS")
        goals.append(f"{mark}  {text}")

    lines += [
        "**Solve** (mu = 1. warm = median of interleaved repeated calls, min in "
        "brackets; cold = first call incl. JIT compilation / IPOPT solver build; "
        "Δ = cost − IPOPT's cost; ref = IPOPT at tol 1e-12 without bound relaxation; "
        "toolkit iterations = Newton / Gauss–Newton steps)",
        "",
        "| N | solver | cost | Δ vs IPOPT | Δ vs ref | iterations | cold | warm | warm / IPOPT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    same = []
    solves = {N: R[f"solve/N={N}"] for N in Ns if f"solve/N={N}" in R}
    for N, e in solves.items():
        ip, ref = e["IPOPT"], e["reference"]
        lines.append(
            f"| {N} | IPOPT (tol 1e-8) | {ip['cost']:.12f} | 0 | "
            f"{_e(ip['cost'] - ref['cost'])} | {ip['iterations']} | "
            f"{_ms(ip['cold_s'])} | {_ms(ip['warm_s'])} "
            f"({_ms(ip['warm_min_s'])}) | 1 |"
        )
        for name in PLANNERS:
            r = e[name]
            d_ip, d_ref = r["cost"] - ip["cost"], r["cost"] - ref["cost"]
            flag = "" if r["success"] else " (not converged)"
            lines.append(
                f"| {N} | {name}{flag} | {r['cost']:.12f} | {_e(d_ip)} | {_e(d_ref)} | "
                f"{r['iterations']} | {_ms(r['cold_s'])} | {_ms(r['warm_s'])} "
                f"({_ms(r['warm_min_s'])}) | {r['warm_s'] / ip['warm_s']:.3f}x |"
            )
            same.append(
                (
                    r["success"] and abs(d_ip) <= SAME_OPTIMUM_RTOL * abs(ip["cost"]),
                    N,
                    name,
                    d_ip,
                    d_ref,
                )
            )
    lines.append("")
    if same:
        worst = max(same, key=lambda s: abs(s[3]))
        worst_ref = max(abs(s[4]) for s in same)
        goal(
            all(s[0] for s in same),
            f"same optimum: every toolkit solve converged and |Δ cost vs IPOPT| <= "
            f"{SAME_OPTIMUM_RTOL:g}·cost (worst {worst[3]:.1e}, {worst[2]} "
            f"N={worst[1]}; vs the tol-1e-12 reference at most {worst_ref:.1e})",
        )
    if 1000 in solves:
        e = solves[1000]
        for name in PLANNERS:
            ratio = e[name]["warm_s"] / e["IPOPT"]["warm_s"]
            goal(
                ratio <= 0.5 if name == "KKTNewton" else None,
                f"warm time <= 0.5x IPOPT at N=1000 ({name}): {ratio:.3f}x"
                + ("" if name == "KKTNewton" else " (informative)"),
            )
    if 1000 in solves and 4000 in solves:
        scale = []
        for name in [*PLANNERS, "IPOPT"]:
            ratio = solves[4000][name]["warm_s"] / solves[1000][name]["warm_s"]
            scale.append(f"{name} {ratio:.2f}x")
            if name != "IPOPT":
                goal(
                    ratio <= 5 if name == "KKTNewton" else None,
                    f"N=4000 costs <= 5x N=1000 ({name}): {ratio:.2f}x"
                    + ("" if name == "KKTNewton" else " (informative)"),
                )
        lines += ["Warm time N=4000 / N=1000: " + ", ".join(scale) + ".", ""]

    g = R.get(f"grad/N={grad_N}")
    if g is not None:
        lines += [
            f"**Gradient** of the optimal cost w.r.t. mu at N={grad_N} (`jax.grad` "
            "through `control.plan`, implicit function theorem, under "
            "`eqx.filter_jit`: the plan is part of the user's program, compiled with "
            "XLA's default options, its block elimination split as an eager plan's "
            "(`BlockTridiagonal(in_user_program=True)`); the grad call includes its "
            "forward solve; "
            "`eager grad` = the same `jax.grad` called without a `jit`, so the plan "
            "runs toolkit's own programs; solve and both grads timed interleaved)",
            "",
            f"| dJ*/dmu | central FD (eps {FD_EPS:g}) | rel. err | IPOPT envelope "
            "∂_mu(J+λᵀg) | rel. err | solve warm | grad warm | grad / solve | "
            "grad cold | eager grad warm (/ solve) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {g['grad']:.10f} | {g['fd']:.10f} | {g['rel_err_fd']:.1e} | "
            f"{g['ipopt_envelope']:.10f} | {g['rel_err_ipopt']:.1e} | "
            f"{_ms(g['solve_warm_s'])} | {_ms(g['grad_warm_s'])} | "
            f"{g['ratio']:.2f}x | {_ms(g['grad_cold_s'])} | "
            + (
                f"{_ms(g['eager_grad_warm_s'])} ({g['eager_ratio']:.2f}x) |"
                if "eager_ratio" in g
                else "– |"
            ),
            "",
        ]
        goal(
            g["ratio"] <= 1.5,
            f"gradient <= 1.5x one solve (N={grad_N}): {g['ratio']:.2f}x "
            f"(FD rel. err {g['rel_err_fd']:.1e})",
        )
        if "eager_ratio" in g:
            goal(
                None,
                f"eager gradient (no user jit) / one solve (N={grad_N}): "
                f"{g['eager_ratio']:.2f}x (rel. diff from the jitted gradient "
                f"{g['eager_rel_diff']:.1e})",
            )

    rows = []
    for N in batch_Ns:
        e = R.get(f"batch/N={N}/B={B}")
        if e is None:
            continue
        t, ip = e["toolkit"], e["IPOPT"]
        tc, ic = np.asarray(t["costs"]), np.asarray(ip["costs"])
        diff = float(np.max(np.abs(tc - ic)))
        speed = ip["warm_s"] / t["warm_s"]
        fails = ", ".join(
            f"{f['mu']:.3f}" + (" (converges alone)" if f["alone_ok"] else "") for f in t["failed"]
        )

        def other_cell(name):
            other = e.get(name)
            if other is None:
                return "–"
            other_diff = float(np.max(np.abs(np.asarray(other["costs"]) - tc)))
            return (
                f"{_ms(other['warm_s'])} ({ip['warm_s'] / other['warm_s']:.2f}x; "
                f"Δ {other_diff:.0e})"
            )

        def cores(entry):
            return "–" if "cpu_s" not in entry else f"{entry['cpu_s'] / entry['warm_s']:.2f}"

        per_cpu = ""
        if "cpu_s" in t and "cpu_s" in ip:
            per_cpu = f"; per CPU second {ip['cpu_s'] / t['cpu_s']:.2f}x"
        rows.append(
            f"| {N} | {B} | {_ms(t['warm_s'])} | {_ms(t['cold_s'])} | "
            f"{_ms(ip['warm_s'])} | {speed:.2f}x | {cores(t)} / {cores(ip)} | "
            f"{other_cell('toolkit_one_thread')} | {other_cell('toolkit_user_jit')} | {diff:.1e} | "
            f"{min(t['num_steps'])}–{max(t['num_steps'])} | {max(t['backtracks'])} | "
            f"{min(ip['iterations'])}–{max(ip['iterations'])} | "
            f"{len(t['failed'])}{' (mu ' + fails + ')' if fails else ''} | "
            f"{len(ip['failed'])} |"
        )
        goal(
            speed >= 10,
            f"batched throughput >= 10x the CasADi loop (N={N}, B={B}): {speed:.2f}x "
            f"(wall clock{per_cpu})",
        )
        goal(
            not t["failed"]
            and not ip["failed"]
            and diff <= SAME_OPTIMUM_RTOL * float(np.max(np.abs(ic))),
            f"batched costs equal IPOPT's, every member converged (N={N}): max |Δ| "
            f"{diff:.1e}, toolkit not converged {len(t['failed'])}, IPOPT failed "
            f"{len(ip['failed'])}",
        )
    if rows:
        batch_entries = [R.get(f"batch/N={N}/B={B}") for N in batch_Ns]
        parts = sorted({str(e.get("workers", "?")) for e in batch_entries if e is not None})
        workers = " or ".join(parts)
        lines += [
            f"**Batched**: {B} values of mu evenly spaced in [0.5, 1.5]; toolkit = "
            "`control.plan_batch` over args called as a user calls it (KKTNewton, "
            "`throw=False`; one program compiled by toolkit with its XLA options, on a "
            "CPU `jax.vmap(control.plan)` over chunks of 8 members, `jax.lax.map` over "
            f"the chunks; by default the batch in {workers} parts, one per core, each "
            "part that program called from its own thread); IPOPT = a Python loop over "
            "the same built solver with mu as the NLP parameter `p`; throughput = IPOPT "
            "loop time / toolkit time (wall clock). Cores used = the process's CPU time "
            "over the wall time of a call (toolkit / IPOPT loop; the IPOPT loop runs on "
            "one thread, and the goal's line also gives the ratio of CPU times). `one "
            "thread` = `plan_batch(..., workers=1)`, the whole batch in one call of the "
            "program. `inside a user's jit` = the same `plan_batch` traced inside the "
            "caller's own `eqx.filter_jit`, compiled with XLA's default options (what a "
            "program that does not pass `toolkit.compiler_options(planner=True)` gets; "
            "one program). Δ = a column's largest cost difference from the first "
            "column's. The four timed interleaved.",
            "",
            "| N | B | toolkit batch warm | toolkit cold | IPOPT loop warm | throughput "
            "toolkit/IPOPT | cores used (toolkit / IPOPT) | one thread (throughput) | "
            "inside a user's jit (throughput) | max abs Δ cost | Newton "
            "steps | max backtracks | IPOPT iterations | toolkit not converged | IPOPT "
            "failed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    others = [v["other_cores"] for v in R.values() if v.get("other_cores") is not None]
    if others:
        lines += [
            f"Other processes on the machine kept {min(others):.2f}–{max(others):.2f} "
            f"of its {machine()['cores']} cores busy during the warm timings (a shared "
            "machine: their work slows both sides; interleaving spreads it evenly).",
            "",
        ]
    return "\n".join(lines), goals


def write_readme(store: Store, table: str, goals: list[str], command: str) -> None:
    # The machine that measured the entries (recorded with them), not this one.
    m = store.load()["machine"][store.section[0]]
    entries = store.entries().values()
    section = "\n".join(
        [
            SECTION,
            "",
            "Van der Pol (x0 = (0, 1), t1 = 10, u in [-0.3, 1], L = x1² + x2² + u²), "
            "the identical trapezoidal transcription on both sides, same default "
            "initial guess, float64. IPOPT through CasADi: exact Hessian, MUMPS, "
            "default tol 1e-8, solver built once per N (warm = solve only). "
            "toolkit: `control.plan` with "
            "default settings (not tuned for this benchmark).",
            "",
            f"Reproduce: `{command}` (results in `benchmarks/results/control_vs_ipopt.json`).",
            "",
            machine_line(m, versions={"CasADi": "casadi", "equinox": "equinox"})
            + " "
            + measured_line(entries),
            "",
            table,
            "Goals:",
            "",
            *[f"- {g}" for g in goals],
            "",
        ]
    )
    replace_section(README, SECTION, section, pad=True)
    log(f"Wrote section {SECTION!r} of {README}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(parser, example="solve,grad", quick="smoke run: N=100, 8 members", wait_quiet=60.0)
    parser.add_argument(
        "--batch-n",
        default=None,
        help="comma-separated N for the batch (full: 100,1000,4000)",
    )
    opts = parser.parse_args(argv)

    if opts.quick:
        mode, Ns, grad_N, B, batch_Ns = "quick", [100], 100, 8, [100]
    else:
        mode, Ns, grad_N, B, batch_Ns = (
            "full",
            [100, 1000, 4000],
            1000,
            64,
            [100, 1000, 4000],
        )
    if opts.batch_n:
        batch_Ns = [int(n) for n in opts.batch_n.split(",")]
    store = Store(
        OUTPUT, forced(opts), section=(mode,), machine=machine, machine_at=("machine", mode)
    )
    ipopts = IpoptCache()
    jax.block_until_ready(jnp.ones(3) + 1)  # initialise the backend outside any timing

    log(f"control_vs_ipopt ({mode}): results in {OUTPUT}")
    log("1. solve")

    def quiet(key: str) -> None:
        if store.todo(key) and opts.wait_quiet > 0:
            wait_quiet(opts.wait_quiet)

    for N in Ns:
        quiet(f"solve/N={N}")
        measure_solve(store, ipopts, N)
    log("2. gradient")
    quiet(f"grad/N={grad_N}")
    measure_grad(store, ipopts, grad_N)
    log("3. batch")
    for N in batch_Ns:
        quiet(f"batch/N={N}/B={B}")
        measure_batch(store, ipopts, N, B)

    table, goals = report(store, Ns, B, grad_N, batch_Ns)
    print()
    print(table)
    print("Goals:")
    for g in goals:
        print("  " + g)
    if opts.readme:
        if opts.quick:
            log("(--readme ignored with --quick: the README holds the full run only.)")
        else:
            write_readme(store, table, goals, "python benchmarks/control_vs_ipopt.py --readme")
    return 0


if __name__ == "__main__":
    # No persistent compilation cache: the "cold" column is a first call with
    # compilation (benchmarks/cold_start.py measures the cache).
    sys.exit(main())
