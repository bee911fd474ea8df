"""Control planner: toolkit vs trajax (the JAX trajectory optimiser), on one NLP.

Van der Pol (x0 = (0, 1), t1 = 10, u in [-0.3, 1], L = x1² + x2² + u², mu = 1), float64,
`control.MultipleShooting(N)`'s NLP: one classical RK4 step per interval with the
control linear between the nodes, the running cost integrated with the state. trajax
optimises controls through a rollout x_{t+1} = f(x_t, u_t, t) from a fixed x_0, so the
NLP is written for it as in `benchmarks/fatrop.py`: state s = (x, u_prev), control
v_t, with one extra first stage that only sets u_0 (its x_0 is fixed, u_0 is free):

    s_0 = (x0, 0);  s_1 = (x0, v_0);  s_{t+1} = (RK4(x_{t-1}, u_{t-1}, v_t), v_t),
    cost(s_t, v_t, t) = the RK4 cost integral of the interval (0 at t = 0),

t = 1..N, so v_t = u_t and the sum of the stage costs is toolkit's objective
(tests/benchmarks/test_vs_trajax.py checks both at random controls). The bounds are
trajax's inequality constraints v - 1 <= 0, -0.3 - v <= 0 (an augmented Lagrangian
around iLQR: `trajax.optimizers.constrained_ilqr`). Both start from u = 0.35 (toolkit's
default guess also sets x to x0 at every node; trajax's rollout fixes the states).

trajax runs twice: with its default tolerances (constraint violation 1e-2, gradient
norm 1e-4, 5 outer iterations), and tightened to reach the NLP's optimum (violation
and gradient 1e-8, up to 20 outer iterations). toolkit: `control.plan` with its
default `KKTNewton`, jitted. Warm times are medians of round-robin repeats; "first
call" is a call that compiles (no persistent compilation cache).

trajax is not on PyPI: install it from its repository (`pip install
git+https://github.com/google/trajax`, benchmark-only; it needs no package toolkit
does not already have but `absl-py`, `ml_collections` and `scipy`). Each case is written to
`benchmarks/results/vs_trajax.json` as it finishes, and skipped on a re-run unless
`--force` names it.

    python benchmarks/vs_trajax.py             # every missing case
    python benchmarks/vs_trajax.py --quick     # smoke run: N = 100
    python benchmarks/vs_trajax.py --readme    # ... and write the README section
"""

import argparse
import pathlib
import sys
import time

import _provenance
import equinox as eqx
import jax
import jax.numpy as jnp
from _harness import arguments, forced, log, print_and_write, Store, wait_quiet, write_section
from _provenance import OtherLoad
from control_vs_ipopt import interleaved, timed, U_GUESS, U_HI, U_LO, X0

from toolkit import control  # after control_vs_ipopt, which switches on float64


HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "vs_trajax.json"
README = HERE / "README.md"
SECTION = "## Control: toolkit vs trajax"
BEFORE = "## Cold start: compilation and the persistent cache"
T1, MU = 10.0, 1.0
SAME_OPTIMUM_RTOL = 1e-6
SETTINGS = {
    "default": {},
    "tight": {"constraints_threshold": 1e-8, "grad_norm_threshold": 1e-8, "maxiter_al": 20},
}


class StageWise(eqx.Module):
    """`control.MultipleShooting(N)`'s Van der Pol NLP as trajax's `cost(s, v, t)`,
    `dynamics(s, v, t)` and `inequality(s, v, t)` over N + 1 stages (see the module's
    docstring)."""

    N: int

    def _rk4(self, x, ua, ub):
        h = T1 / self.N

        def field(y, u):
            x1, x2 = y[0], y[1]
            return jnp.stack([MU * (1 - x2**2) * x1 - x2 + u, x1, x1**2 + x2**2 + u**2])

        y = jnp.concatenate([x, jnp.zeros(1, x.dtype)])
        um = (ua + ub) / 2
        k1 = field(y, ua)
        k2 = field(y + h / 2 * k1, um)
        k3 = field(y + h / 2 * k2, um)
        k4 = field(y + h * k3, ub)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return y[:2], y[2]

    def dynamics(self, s, v, t):
        x_next, _ = self._rk4(s[:2], s[2], v[0])
        return jnp.where(t == 0, jnp.concatenate([s[:2], v]), jnp.concatenate([x_next, v]))

    def cost(self, s, v, t):
        # trajax adds a terminal cost(s_{N+2}, 0, N + 1): zero too.
        _, c = self._rk4(s[:2], s[2], v[0])
        return jnp.where((t == 0) | (t == self.N + 1), 0.0, c)

    def inequality(self, s, v, t):
        del s, t
        return jnp.stack([v[0] - U_HI, U_LO - v[0]])

    def start(self):
        """(s_0, the initial controls v_0..v_N)."""
        s0 = jnp.array([*X0, 0.0])
        return s0, jnp.full((self.N + 1, 1), U_GUESS)


def machine() -> dict:
    import importlib.metadata

    return _provenance.machine(equinox=eqx.__version__, trajax=importlib.metadata.version("trajax"))


def measure(store: Store, N: int) -> None:
    from trajax import optimizers

    key = f"N={N}"
    if not store.todo(key):
        log(f"  {key}: done")
        return
    log(f"  {key}")
    ex = control.problems.get("van_der_pol")
    tr = control.MultipleShooting(N)
    args = {"mu": jnp.asarray(MU)}

    @eqx.filter_jit
    def plan(args):
        return control.plan(ex.problem, tr, args=args, throw=False)

    cold, sol = timed(lambda: plan(args))
    entry: dict = {
        "toolkit": {
            "cost": float(sol.cost),
            "iterations": int(sol.stats["num_steps"]),
            "converged": bool(sol.result == control.RESULTS.successful),
            "max_violation": 0.0,
            "first_call_s": cold,
        }
    }
    nlp = StageWise(N)
    s0, U0 = nlp.start()
    fns = {"toolkit": lambda: plan(args).cost}
    for name, options in SETTINGS.items():
        solve = jax.jit(
            lambda U, options=options: optimizers.constrained_ilqr(
                nlp.cost, nlp.dynamics, s0, U, inequality_constraint=nlp.inequality, **options
            )
        )
        cold, out = timed(lambda solve=solve: solve(U0))
        U = out[1]
        violation = jnp.max(jnp.maximum(jnp.maximum(U - U_HI, U_LO - U), 0))
        entry[f"trajax_{name}"] = {
            "cost": float(optimizers.objective(nlp.cost, nlp.dynamics, U, s0)),
            "iterations": int(out[10]),
            "outer_iterations": int(out[11]),
            "max_violation": float(violation),
            "first_call_s": cold,
            "options": options,
        }
        fns[f"trajax_{name}"] = lambda solve=solve: solve(U0)[1]
    # The same NLP on both sides: trajax's objective at toolkit's controls.
    toolkit_U = jnp.asarray(sol.us).reshape(N + 1, 1)
    entry["toolkit"]["cost_in_trajax_form"] = float(
        optimizers.objective(nlp.cost, nlp.dynamics, toolkit_U, s0)
    )
    with OtherLoad() as other:
        timings = interleaved(fns)
    for name, timing in timings.items():
        entry[name].update(timing)
    entry["other_cores"] = other.cores
    store.put(key, entry)


def report(store: Store, Ns: list[int]) -> tuple[str, list[str]]:
    head = (
        "| N | solver | cost | Δ vs toolkit | max bound violation | iterations (inner, outer) "
        "| first call | warm | warm / toolkit |"
    )
    lines = [head, "|" + "---|" * 9]
    goals: list[str] = []
    busy: list[float] = []
    for N in Ns:
        e = store.get(f"N={N}")
        if e is None:
            continue
        t = e["toolkit"]
        for name in ("toolkit", *(f"trajax_{s}" for s in SETTINGS)):
            r = e[name]
            its = str(r["iterations"]) + (
                f", {r['outer_iterations']}" if "outer_iterations" in r else ""
            )
            label = "toolkit `KKTNewton`" if name == "toolkit" else f"trajax, {name[7:]}"
            lines.append(
                f"| {N} | {label} | {r['cost']:.10f} | {r['cost'] - t['cost']:+.1e} | "
                f"{r['max_violation']:.1e} | {its} | {r['first_call_s']:.2f} s | "
                f"{r['warm_s'] * 1e3:.2f} ms | {r['warm_s'] / t['warm_s']:.2f}x |"
            )
        busy.append(e["other_cores"])
        tight = e["trajax_tight"]
        same = abs(tight["cost"] - t["cost"]) <= SAME_OPTIMUM_RTOL * abs(t["cost"])
        same &= tight["max_violation"] <= 1e-8 and t["converged"]
        faster = t["warm_s"] < tight["warm_s"]
        goals.append(
            f"N = {N}: trajax (tight) at toolkit's optimum: {'yes' if same else 'NO'}; "
            f"toolkit's warm solve {t['warm_s'] / tight['warm_s']:.2f}x trajax's "
            f"({'faster' if faster else 'SLOWER'}); the NLP in trajax's form at toolkit's "
            f"controls: cost {t['cost_in_trajax_form']:.12f} (toolkit {t['cost']:.12f})."
        )
    if busy:
        goals.append(
            f"Other processes kept {min(busy):.2f}-{max(busy):.2f} of the machine's cores "
            "busy during the warm timings (round-robin repeats spread their load evenly)."
        )
    return "\n".join(lines) + "\n", goals


def write_readme(store: Store, table: str, goals: list[str]) -> None:
    intro = (
        "Van der Pol (x0 = (0, 1), t1 = 10, u in [-0.3, 1], L = x1² + x2² + u², mu = 1), "
        "float64, the NLP of `control.MultipleShooting(N)` (RK4, control linear between "
        "the nodes) on both sides, written for trajax's rollout with the previous "
        "control in the state and a first stage that sets u_0 (see the docstring of "
        "`benchmarks/vs_trajax.py`). trajax (from github.com/google/trajax at c94a637, "
        "not on PyPI): `optimizers.constrained_ilqr` (iLQR in an "
        "augmented Lagrangian, the bounds as inequality constraints), at its default "
        f"tolerances and tightened ({SETTINGS['tight']}); toolkit: `control.plan` with "
        "its default `KKTNewton`. Both under the caller's `jax.jit` (toolkit's plan then "
        "compiles as one program, the interior-point fallback included, with XLA's "
        "default options; an eager `control.plan` compiles less, see the cold-start "
        "section); first call = compile + solve without the persistent cache; warm = "
        "median of round-robin repeats."
    )
    write_section(
        store,
        README,
        SECTION,
        intro,
        "vs_trajax",
        table,
        goals,
        before=BEFORE,
        versions={"trajax": "trajax"},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(parser, example="N=1000", quick="smoke run: N=100", wait_quiet=60.0)
    opts = parser.parse_args(argv)
    mode, Ns = ("quick", [100]) if opts.quick else ("full", [100, 1000, 4000])
    store = Store(
        OUTPUT, forced(opts), section=(mode,), machine=machine, machine_at=("machine", mode)
    )
    jax.block_until_ready(jnp.ones(3) + 1)
    for N in Ns:
        if store.todo(f"N={N}") and opts.wait_quiet > 0:
            wait_quiet(opts.wait_quiet)
        measure(store, N)
    table, goals = report(store, Ns)
    print_and_write(table, goals, opts, lambda: write_readme(store, table, goals))
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    log(f"done in {time.perf_counter() - start:.0f} s")
    sys.exit(status)
