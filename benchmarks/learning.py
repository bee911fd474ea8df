"""Learning through the planner: sysid-then-plan vs end-to-end vs imitation, and the
accuracy and cost of the gradient through `control.plan` (issue 7).

1. `learn/<problem>/seed=<s>`: on three library problems, learn a model of the
   dynamics from noisy trajectories of the true system, plan with it
   (`control.Trapezoidal(N)`, `control.KKTNewton()`), and score the plan on the true
   system (`learning.TrueCost`: the plan's controls, linear between nodes, integrated
   with fixed-step RK4 through the true dynamics, true running/terminal cost). Three
   methods, from the same data and the same initial model:

   - *sysid-then-plan*: Adam on the multiple-shooting loss
     (`learning.MultipleShootingLoss(segment=4)`), cosine-decayed learning rate;
   - *end-to-end*: from the sysid model, Adam on `TrueCost(plan(model))` +
     `sysid_weight` x the sysid loss, gradients through `control.plan` by the
     implicit function theorem, by `learning.fit_end_to_end` (warm-started plans; a
     step whose plan fails takes no update and halves the last one back; the model
     kept is the best by its own loss on a plan from the planner's default start,
     `keep_best=True`) — the recipe of `python -m toolkit learn --method e2e`;
   - *imitation*: the same, with `learning.Imitation` of the true model's own plan
     (its node states and controls) in place of `TrueCost`.

   Recorded: the true-system cost of each final model's plan (planned from scratch),
   of the true model's plan and of the untrained model's; learning curves (held-out
   sysid loss and the true cost of the current model's plan during sysid, the true
   cost of every end-to-end / imitation step's plan).

2. `gradient/<variant>`: on Van der Pol with a hybrid model, the gradient of the
   end-to-end loss `TrueCost(plan(model))` w.r.t. the model's parameters by
   (a) implicit differentiation (`KKTNewton()`, default), (b) unrolling K Newton
   iterations from the cold start with `optimistix.RecursiveCheckpointAdjoint()`
   (Myriad's approach), (c) central finite differences along random unit directions.
   Reference: implicit at `KKTNewton(atol=1e-12)`, cross-checked by the finite
   differences.

   toolkit's `KKTNewton` cannot be unrolled: its semismooth Newton step runs its line
   search (and Hessian regularisation) in a `lax.while_loop`, which reverse mode
   refuses. The unrolled variant therefore uses `_UnrolledNewton` below: plain
   (undamped) semismooth Newton on the same KKT residual, from the same initial
   guess, with the transcription's linear solver; with `ImplicitAdjoint` and enough
   iterations it reproduces `KKTNewton`'s gradient.

Every entry is written to `benchmarks/results/learning.json` (`--quick`:
`learning-quick.json`) as soon as it finishes; finished entries are skipped on a
re-run unless `--force`. XLA's caches are cleared between problems and between
gradient variants (each CPU executable holds many memory mappings; a long process
otherwise dies in the compiler past the kernel's map limit); the seeds of one problem
share their compiled functions.

    python benchmarks/learning.py            # what is missing, full run (~1 h)
    python benchmarks/learning.py --quick    # smoke run
    python benchmarks/learning.py --readme   # ... and write the README section
    python benchmarks/learning.py --force gradient   # re-measure `gradient/...`
"""

import argparse
import gc
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import _provenance
import jax
from _harness import arguments, forced, log, Store
from _provenance import machine_line, measured_line, memory_maps, replace_section


jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import optimistix as optx  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import toolkit  # noqa: E402
from toolkit import control  # noqa: E402
from toolkit.control import learning  # noqa: E402


HERE = pathlib.Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
README = HERE / "README.md"
SECTION = "## Learning through the planner"

# Per problem: the model learned, and its size.
PROBLEMS = {
    "cancer_treatment": {"model": "neural_ode"},
    "van_der_pol": {"model": "neural_ode"},
    "hiv_treatment": {"model": "hybrid"},
}
METHODS = ("sysid", "e2e", "imitation")
LABELS = {
    "true_model": "true model's plan",
    "initial": "untrained model",
    "sysid": "sysid-then-plan",
    "e2e": "end-to-end (TrueCost)",
    "imitation": "imitation",
}

FULL = dict(
    seeds=(0, 1, 2),
    N=30,
    trajectories=24,
    samples=41,
    noise=1e-3,
    width=32,
    perturb=0.5,
    sysid_steps={"neural_ode": 1500, "hybrid": 800},
    sysid_lr={"neural_ode": 1e-2, "hybrid": 3e-3},
    sysid_checkpoints=15,
    e2e_steps=100,
    e2e_lr=1e-3,
    sysid_weight=10.0,
    grad_problem="van_der_pol",
    grad_N=30,
    grad_width=16,
    grad_Ks=(1, 2, 3, 5, 10, 20),
    grad_directions=4,
    grad_eps=(1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7),
    grad_repeats=7,
    grad_budget_s=10.0,
)
QUICK = dict(
    FULL,
    seeds=(0,),
    sysid_steps={"neural_ode": 40, "hybrid": 20},
    sysid_checkpoints=2,
    e2e_steps=3,
    grad_Ks=(1, 5),
    grad_directions=2,
    grad_eps=(1e-3, 1e-5),
    grad_repeats=3,
    grad_budget_s=2.0,
)


# --------------------------------------------------------------------------------------
# Results file, machine, source.
# --------------------------------------------------------------------------------------


def machine() -> dict:
    return _provenance.machine(
        equinox=eqx.__version__,
        optimistix=optx.__version__,
        diffrax=diffrax.__version__,
        optax=optax.__version__,
    )


def fresh() -> None:
    """Drop XLA's compiled executables (see the module docstring)."""
    jax.clear_caches()
    gc.collect()


# --------------------------------------------------------------------------------------
# 1. sysid-then-plan vs end-to-end vs imitation.
# --------------------------------------------------------------------------------------


class _LogParameters(eqx.Module):
    """A problem's dynamics with its parameters learned as log-multipliers of
    nominal values, `args = nominal * exp(log_scales)`: Adam's steps are then
    relative, whatever the parameters' scales (hiv_treatment's range from 2.4e-5 to
    1500; on the raw parameters, Adam at lr 1e-2 sends the smallest ones to NaN)."""

    dynamics: Callable = eqx.field(static=True)
    nominal: tuple = eqx.field(static=True)  # ((name, float), ...): not learned

    @classmethod
    def around(cls, dynamics, args):
        return cls(dynamics, tuple((k, float(v)) for k, v in sorted(args.items())))

    def log_scales(self, args):
        return {k: jnp.zeros_like(args[k]) for k, _ in self.nominal}

    def __call__(self, t, x, u, log_scales):
        args = {k: v * jnp.exp(log_scales[k]) for k, v in self.nominal}
        return self.dynamics(t, x, u, args)


_OPTIMISERS: dict = {}


def _adam(lr: float, decay_steps: int | None = None) -> optax.GradientTransformation:
    """Adam (cosine-decayed over `decay_steps`, if given), one object per setting:
    `eqx.filter_jit` keys its cache on the optimiser's functions, so a fresh
    `optax.adam(...)` per seed or per method would recompile the training step."""
    key = (lr, decay_steps)
    if key not in _OPTIMISERS:
        if decay_steps is None:
            _OPTIMISERS[key] = optax.adam(lr)
        else:
            schedule = optax.cosine_decay_schedule(lr, max(decay_steps, 1), alpha=0.05)
            _OPTIMISERS[key] = optax.adam(schedule)
    return _OPTIMISERS[key]


def _simulator(problem) -> learning.Simulator:
    t0, t1 = float(problem.t0), float(problem.t1)
    return learning.Simulator(control.RK4(), diffrax.ConstantStepSize(), dt0=(t1 - t0) / 100)


@eqx.filter_jit
def _score(model, problem, transcription, loss, args):
    """Plan with `model` from scratch and score the plan: (loss, ok)."""
    value, sol = learning.plan_loss(model, problem, transcription, loss, args=args)
    return value, sol.result == control.RESULTS.successful, sol


@eqx.filter_jit
def _sysid_step(params, opt_state, static, optimiser, loss, data):
    value, grads = eqx.filter_value_and_grad(lambda p: loss(eqx.combine(p, static), data))(params)
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimiser.update(grads, opt_state, params)
    return eqx.apply_updates(params, updates), opt_state, value


@eqx.filter_jit
def _sysid_loss(params, static, loss, data):
    return loss(eqx.combine(params, static), data)


class _Mix(learning.AbstractPlanLoss):
    """`which * true_cost(sol) + (1 - which) * imitation(sol)`: end-to-end (`which`
    = 1) or imitation (0) with one compiled training step."""

    true_cost: learning.TrueCost
    imitation: learning.Imitation
    which: jax.Array

    def __call__(self, sol):
        return self.which * self.true_cost(sol) + (1 - self.which) * self.imitation(sol)


def _strong(sol):
    """A warm start without weak types: plans from different jitted functions differ
    in which of their arrays are weakly typed, and `eqx.filter_jit` would compile the
    training step once per variant."""
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(jax.lax.stop_gradient(a), a.dtype) if eqx.is_array(a) else a, sol
    )


def run_learning(name: str, seed: int, cfg: dict) -> dict:
    ex = control.problems.get(name)
    problem, true_args = ex.problem, ex.args
    kind = PROBLEMS[name]["model"]
    dtype = problem.x0.dtype
    sim = _simulator(problem)
    transcription = control.Trapezoidal(cfg["N"])
    c_key, x_key, n_key, m_key = jr.split(jr.key(seed), 4)

    # Data from the true dynamics (as `python -m toolkit learn`).
    T = cfg["trajectories"]
    controls = learning.random_controls(c_key, problem, 20, batch=T, kind="smooth")
    spread = 0.3 * jnp.maximum(jnp.abs(problem.x0), 1.0)
    x0s = learning.initial_states(x_key, problem, T, spread)
    ts = jnp.linspace(float(problem.t0), float(problem.t1), cfg["samples"], dtype=dtype)
    data = learning.generate(
        n_key, problem, controls, ts, args=true_args, x0s=x0s, noise_std=cfg["noise"], simulator=sim
    )
    train, valid = learning.split(data, T - max(T // 4, 1))

    # The model.
    scale = jnp.maximum(jnp.max(jnp.abs(data.xs), axis=(0, 1)), 1e-3)
    if kind == "neural_ode":
        field = learning.init_neural_vector_field(
            m_key, problem, width_size=cfg["width"], depth=2, x_scale=scale
        )
        model = learning.Model(field)
        truth = learning.Model(problem.dynamics, true_args)
    else:
        known = _LogParameters.around(problem.dynamics, true_args)
        field = learning.init_neural_vector_field(
            m_key, problem, width_size=cfg["width"], depth=2, known=known, x_scale=scale
        )
        log_true = known.log_scales(true_args)
        perturbed = jax.tree_util.tree_map(lambda a: a + np.log(1.0 - cfg["perturb"]), log_true)
        model = learning.Model(field, perturbed)
        # A fresh hybrid's MLP outputs zero: with the true parameters it is the truth.
        truth = eqx.tree_at(lambda m: m.args, model, log_true)
    initial = model
    sysid_loss = learning.MultipleShootingLoss(segment=4, simulator=sim, weights=1.0 / scale)
    true_cost = learning.TrueCost(problem, true_args, sim)

    def score(m):
        value, ok, sol = _score(m, problem, transcription, true_cost, true_args)
        return float(value), bool(ok), sol

    out: dict[str, Any] = {"problem": name, "model": kind, "seed": seed, "costs": {}, "ok": {}}
    out["params"] = int(ravel_pytree(eqx.filter(model, learning.trainable(model)))[0].size)
    t = time.perf_counter()
    cost, ok, true_plan = score(truth)
    out["costs"]["true_model"], out["ok"]["true_model"] = cost, ok
    out["costs"]["initial"], out["ok"]["initial"], _ = score(initial)
    log(f"  true model's plan: {cost:.6g}; untrained model: {out['costs']['initial']:.6g}")

    # System identification.
    steps = cfg["sysid_steps"][kind]
    out["config"] = {k: v for k, v in cfg.items() if not k.startswith("grad_")}
    params, static = eqx.partition(model, learning.trainable(model))
    optimiser = _adam(cfg["sysid_lr"][kind], steps)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimiser.init(params)
    every = max(steps // cfg["sysid_checkpoints"], 1)
    curve: dict[str, list] = {"step": [], "train": [], "valid": [], "true_cost": [], "ok": []}

    best = [np.inf, 0, params]

    def checkpoint(i, params):
        m = eqx.combine(params, static)
        c, k, _ = score(m)
        v = float(_sysid_loss(params, static, sysid_loss, valid))
        curve["step"].append(i)
        curve["train"].append(float(_sysid_loss(params, static, sysid_loss, train)))
        curve["valid"].append(v)
        curve["true_cost"].append(c)
        curve["ok"].append(k)
        if v < best[0]:  # NaN never is
            best[:] = [v, i, params]

    t = time.perf_counter()
    step_times = []
    for i in range(steps):
        if i % every == 0:
            checkpoint(i, params)
        t_step = time.perf_counter()
        params, opt_state, value = _sysid_step(
            params, opt_state, static, optimiser, sysid_loss, train
        )
        jax.block_until_ready(value)
        step_times.append(time.perf_counter() - t_step)
    checkpoint(steps, params)
    out["sysid_curve"] = curve
    out["time_s"] = {
        "sysid": time.perf_counter() - t,
        "sysid_step_median": statistics.median(step_times[1:] or [np.nan]),
    }
    # Early stopping on the held-out loss (the checkpoint with the lowest one): a
    # sysid run that diverges late (hiv_treatment's stiff dynamics under RK4) keeps its
    # best model rather than NaNs.
    out["sysid_kept_step"] = best[1]
    sysid_model = eqx.combine(best[2], static)
    cost, ok, sysid_plan = score(sysid_model)
    out["costs"]["sysid"], out["ok"]["sysid"] = cost, ok
    log(
        f"  sysid ({steps} steps, {out['time_s']['sysid']:.0f} s): held-out loss "
        f"{curve['valid'][0]:.3e} -> {curve['valid'][-1]:.3e}, kept step {best[1]} "
        f"({best[0]:.3e}); true cost {cost:.6g}" + ("" if ok else " [plan failed]")
    )

    # End to end (TrueCost) and imitation, both from the sysid model, trained by the
    # library's loop (`fit_end_to_end`): keep-best by the plan from the planner's
    # default start, a failed plan's step halved back, and the true-system cost of
    # every training plan recorded as a metric.
    for method in ("e2e", "imitation"):
        # Both methods' losses in one module, weighted (0/1): one compile for both.
        loss = _Mix(
            true_cost,
            learning.Imitation(true_plan.xs, true_plan.us),
            jnp.asarray(method == "e2e", dtype),
        )
        # Warm start from a plan of the same structure as every later one (one compile).
        init = _strong(sysid_plan if out["ok"]["sysid"] else true_plan)
        stamps = [time.perf_counter()]
        try:
            trained, history = learning.fit_end_to_end(
                sysid_model,
                problem,
                transcription,
                loss,
                control.KKTNewton(),
                args=true_args,
                optimiser=_adam(cfg["e2e_lr"]),
                steps=cfg["e2e_steps"],
                data=train,
                sysid_loss=sysid_loss,
                sysid_weight=cfg["sysid_weight"],
                keep_best=True,
                init=init,
                callback=lambda i, h: stamps.append(time.perf_counter()),
                metrics={"true_cost": true_cost},
            )
        except FloatingPointError as e:
            log(f"    stopped: {str(e).splitlines()[0]}")
            trained, history = sysid_model, None
        step_times = np.diff(stamps).tolist()
        out["time_s"][method] = stamps[-1] - stamps[0]
        out["time_s"][f"{method}_step_median"] = statistics.median(step_times[1:] or [np.nan])
        keys = {"loss": "loss", "sysid": "sysid", "true_cost": "true_cost", "ok": "successful"}
        curve = {k: [] if history is None else history[v] for k, v in keys.items()}
        curve["kept"] = None if history is None else history["kept"]
        out[f"{method}_curve"] = curve
        cost, ok, _ = score(trained)
        out["costs"][method], out["ok"][method] = cost, ok
        log(
            f"  {method} ({len(curve['ok'])} steps, {out['time_s'][method]:.0f} s, "
            f"{curve['ok'].count(False)} failed plans, kept step {curve['kept']}): true "
            f"cost {cost:.6g}" + ("" if ok else " [plan failed]")
        )
    return out


# --------------------------------------------------------------------------------------
# 2. Gradient accuracy and time: implicit vs unrolled vs finite differences.
# --------------------------------------------------------------------------------------


class _NewtonState(eqx.Module):
    f: jax.Array
    ok: jax.Array


class _PlainNewton(optx.AbstractRootFinder):
    """Undamped Newton on a (semismooth) residual: y <- y - J(y)⁻¹ F(y), no line
    search, so that reverse mode can unroll it."""

    rtol: float
    atol: float
    norm: Callable = optx.max_norm
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        f, _ = fn(y, args)
        return _NewtonState(f, jnp.all(jnp.isfinite(f)))

    def step(self, fn, y, args, options, state, tags):
        f, lin_fn, _ = jax.linearize(lambda _y: fn(_y, args), y, has_aux=True)
        operator = lx.FunctionLinearOperator(lin_fn, jax.eval_shape(lambda: y), tags=tags)
        sol = lx.linear_solve(operator, f, self.linear_solver, throw=False)
        y_new = y - sol.value
        f_new, aux_new = fn(y_new, args)
        ok = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(f_new))
        return y_new, _NewtonState(f_new, ok), aux_new

    def terminate(self, fn, y, args, options, state, tags):
        converged = self.norm(state.f) <= self.atol
        result = optx.RESULTS.where(
            converged | state.ok, optx.RESULTS.successful, optx.RESULTS.nonlinear_divergence
        )
        return converged | jnp.invert(state.ok), result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return y, aux, {}


class _UnrolledNewton(control.AbstractPlanner):
    """`max_steps` plain Newton iterations on the KKT residual (see `_PlainNewton`)."""

    atol: float = 1e-9
    max_steps: int = 10
    linear_solver: lx.AbstractLinearSolver | None = None

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        return optx.root_find(
            residual,
            _PlainNewton(rtol=0.0, atol=self.atol, linear_solver=linear_solver),
            w0,
            problem_args,
            max_steps=self.max_steps,
            adjoint=adjoint,
            throw=False,
        )


def _grad_setup(cfg: dict):
    """The gradient study's problem, model (a hybrid: Van der Pol's dynamics with
    mu = 0.8 plus a small random MLP) and directions, all deterministic."""
    ex = control.problems.get(cfg["grad_problem"])
    problem = ex.problem
    sim = _simulator(problem)
    m_key, w_key, d_key = jr.split(jr.key(1234), 3)
    field = learning.init_neural_vector_field(
        m_key, problem, width_size=cfg["grad_width"], depth=2, known=problem.dynamics
    )
    last = field.mlp.layers[-1]
    field = eqx.tree_at(
        lambda f: f.mlp.layers[-1].weight,
        field,
        0.05 * jr.normal(w_key, last.weight.shape, last.weight.dtype),
    )
    args = jax.tree_util.tree_map(lambda a: 0.8 * a, ex.args)
    model = learning.Model(field, args)
    params, static = eqx.partition(model, learning.trainable(model))
    flat, unravel = ravel_pytree(params)
    keys = jr.split(d_key, cfg["grad_directions"])
    directions = [jr.normal(k, flat.shape, flat.dtype) for k in keys]
    directions = [v / jnp.linalg.norm(v) for v in directions]
    loss = learning.TrueCost(problem, ex.args, sim)
    return ex, problem, flat, unravel, static, directions, loss


def _timed(fn: Callable[[], Any], repeats: int, budget_s: float) -> dict:
    times = []
    while len(times) < repeats or (sum(times) < budget_s and len(times) < 5 * repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": len(times)}


def grad_variants(cfg: dict) -> list[str]:
    return (
        ["implicit_ref", "implicit"]
        + [f"unroll_K={k}" for k in cfg["grad_Ks"]]
        + ["unroll_converged", "unroll_warm", "unroll_warm_K=1", "fd"]
    )


def run_gradient(variant: str, cfg: dict) -> dict:
    ex, problem, flat, unravel, static, directions, loss = _grad_setup(cfg)
    transcription = control.Trapezoidal(cfg["grad_N"])
    ref_solver = control.KKTNewton(atol=1e-12)
    init = None
    if variant == "implicit_ref":
        solver, adjoint = ref_solver, None
    elif variant == "implicit":
        solver, adjoint = control.KKTNewton(), None
    elif variant.startswith("unroll_K="):
        solver = _UnrolledNewton(max_steps=int(variant.split("=")[1]))
        adjoint = optx.RecursiveCheckpointAdjoint()
    elif variant == "unroll_converged":
        solver, adjoint = _UnrolledNewton(max_steps=100), optx.RecursiveCheckpointAdjoint()
    elif variant in ("unroll_warm_K=1", "unroll_warm"):
        # From the converged plan (as when training warm-starts): with the usual
        # convergence test the solve stops at once; "K=1" forces one Newton step.
        model = eqx.combine(unravel(flat), static)
        _, _, sol = _score(model, problem, transcription, loss, ex.args)
        init = jax.lax.stop_gradient(sol)
        if variant == "unroll_warm":
            solver = _UnrolledNewton(max_steps=100)
        else:
            solver = _UnrolledNewton(atol=0.0, max_steps=1)
        adjoint = optx.RecursiveCheckpointAdjoint()
    elif variant == "fd":
        solver, adjoint = ref_solver, None
    else:
        raise ValueError(variant)

    def value_and_aux(x):
        model = eqx.combine(unravel(x), static)
        value, sol = learning.plan_loss(
            model, problem, transcription, loss, solver, args=ex.args, init=init, adjoint=adjoint
        )
        residual = sol.stats.get("num_steps", jnp.array(-1))
        return value, (sol.result == control.RESULTS.successful, residual)

    out: dict[str, Any] = {"variant": variant, "problem": ex.name, "params": int(flat.size)}
    if variant == "fd":
        f = eqx.filter_jit(value_and_aux)
        t = time.perf_counter()
        jax.block_until_ready(f(flat))
        out["compile_s"] = time.perf_counter() - t
        out["time"] = _timed(lambda: f(flat), cfg["grad_repeats"], cfg["grad_budget_s"])
        fd: dict[str, list] = {}
        ok = True
        for eps in cfg["grad_eps"]:
            fd[repr(eps)] = []
            for v in directions:
                (vp, (okp, _)), (vm, (okm, _)) = f(flat + eps * v), f(flat - eps * v)
                ok = ok and bool(okp) and bool(okm)
                fd[repr(eps)].append((float(vp) - float(vm)) / (2 * eps))
        out["fd"], out["ok"] = fd, ok
        return out

    f = eqx.filter_jit(jax.value_and_grad(value_and_aux, has_aux=True))
    t = time.perf_counter()
    (value, (ok, steps)), g = jax.block_until_ready(f(flat))
    out["compile_s"] = time.perf_counter() - t
    out["time"] = _timed(lambda: f(flat), cfg["grad_repeats"], cfg["grad_budget_s"])
    out["value"], out["ok"], out["num_steps"] = float(value), bool(ok), int(steps)
    out["grad"] = [float(x) for x in g]
    out["directional"] = [float(jnp.dot(g, v)) for v in directions]
    return out


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def _stats(xs: list[float]) -> str:
    a = np.asarray(xs, float)
    if a.size == 0:
        return "–"
    return f"{a.mean():.4g} ± {a.std():.2g} [{a.min():.4g}, {a.max():.4g}]"


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def plot_curves(entries: dict, path: pathlib.Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in PROBLEMS if any(k.startswith(f"learn/{n}/") for k in entries)]
    if not names:
        return False
    fig, axes = plt.subplots(3, len(names), figsize=(5 * len(names), 11), squeeze=False)
    for j, name in enumerate(names):
        runs = [v for k, v in sorted(entries.items()) if k.startswith(f"learn/{name}/")]
        truth = np.mean([r["costs"]["true_model"] for r in runs])
        ax = axes[0, j]
        for r in runs:
            c = r["sysid_curve"]
            ax.semilogy(c["step"], c["valid"], color="C1", alpha=0.7)
        ax.set(
            title=f"{name} ({runs[0]['model']}): sysid",
            xlabel="Adam step",
            ylabel="held-out multiple-shooting loss",
        )
        ax = axes[1, j]
        for i, r in enumerate(runs):
            c = r["sysid_curve"]
            y = [v if k else np.nan for v, k in zip(c["true_cost"], c["ok"])]
            label = "sysid" if i == 0 else None
            ax.plot(c["step"], y, "o-", color="C1", ms=3, alpha=0.7, label=label)
        ax.axhline(truth, color="k", ls="--", label="true model")
        ax.set(xlabel="sysid Adam step", ylabel="true-system cost of the plan")
        costs = [v for r in runs for v in r["sysid_curve"]["true_cost"]] + [truth]
        if min(costs) > 0:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax = axes[2, j]
        for method, colour in (("e2e", "C2"), ("imitation", "C0")):
            for i, r in enumerate(runs):
                c = r[f"{method}_curve"]
                y = [v if k else np.nan for v, k in zip(c["true_cost"], c["ok"])]
                ax.plot(y, color=colour, alpha=0.7, label=LABELS[method] if i == 0 else None)
        ax.axhline(truth, color="k", ls="--", label="true model")
        ax.set(
            xlabel="end-to-end step (from the sysid model)",
            ylabel="true-system cost of the step's plan",
        )
        ax.legend(fontsize=8)
    fig.suptitle("Learning through the planner: one line per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def report(store: Store, cfg: dict, png: pathlib.Path | None) -> str:
    R = store.entries()
    lines: list[str] = []
    rows = []
    for name in PROBLEMS:
        runs = [v for k, v in sorted(R.items()) if k.startswith(f"learn/{name}/")]
        if not runs:
            continue
        r0 = runs[0]
        cells = []
        for m in ("true_model", "initial", *METHODS):
            costs = [r["costs"][m] for r in runs]
            failed = sum(not r["ok"][m] for r in runs)
            cells.append(_stats(costs) + (f" ({failed} failed)" if failed else ""))
        rows.append(
            f"| {name} | {r0['model']} ({r0['params']}) | {len(runs)} | " + " | ".join(cells) + " |"
        )
    if rows:
        lines += [
            "**True-system cost of the plan** made with each model "
            "(`Trapezoidal(N)` + `KKTNewton()`, planned from scratch, its controls "
            "applied to the true dynamics): mean ± std [min, max] over seeds; lower is "
            "better. *true model's plan* = planning with the true dynamics on the same "
            "grid (the reference; a learned model can do slightly better, since the "
            "coarse plan of the truth is not optimal for the truth); *untrained* = the "
            "initial model; end-to-end and imitation start from the sysid model. "
            "(n failed) = plans that did not converge (their cost is still counted).",
            "",
            "| problem | model (trainable params) | seeds | true model's plan | untrained "
            "model | sysid-then-plan | end-to-end (TrueCost) | imitation |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
        trows = []
        for name in PROBLEMS:
            runs = [v for k, v in sorted(R.items()) if k.startswith(f"learn/{name}/")]
            if not runs:
                continue

            def step_ms(m, runs=runs):
                ts = [r["time_s"].get(f"{m}_step_median", np.nan) for r in runs]
                return f"{1e3 * np.nanmedian(ts):.0f} ms" if np.isfinite(ts).any() else "–"

            wall = [f"{r['time_s'][m]:.0f}" for m in METHODS for r in runs[:1]]
            later = [
                f"{np.mean([r['time_s'][m] for r in runs[1:]]):.0f} s" if len(runs) > 1 else "–"
                for m in METHODS
            ]
            fails = {
                m: sum(r[f"{m}_curve"]["ok"].count(False) for r in runs)
                for m in ("e2e", "imitation")
            }
            steps = {m: sum(len(r[f"{m}_curve"]["ok"]) for r in runs) for m in ("e2e", "imitation")}
            trows.append(
                f"| {name} | {runs[0]['sysid_curve']['step'][-1]} | "
                + " | ".join(f"{a} s / {b}" for a, b in zip(wall, later))
                + f" | {step_ms('sysid')} | {step_ms('e2e')} | {step_ms('imitation')} | "
                f"{fails['e2e']}/{steps['e2e']} | {fails['imitation']}/{steps['imitation']} |"
            )
        lines += [
            "Wall time of each phase: first seed (compiles; the seeds of a problem share "
            "compiled functions, and imitation reuses end-to-end's training step) / mean "
            "of the other seeds; median time of one training step (sysid: one Adam step "
            "on the multiple-shooting loss; end-to-end / imitation: plan + implicit "
            "gradient + sysid term + Adam, and the plan from the default start that "
            "`keep_best` scores the new model by); failed plans during training (a failed "
            "step takes no update and halves the last one back):",
            "",
            "| problem | sysid steps | sysid | end-to-end | imitation | sysid step | "
            "end-to-end step | imitation step | failed e2e steps | failed imitation steps |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *trows,
            "",
        ]
        if png is not None:
            lines += [
                f"Learning curves (one line per seed): [`results/{png.name}`]"
                f"(results/{png.name}) — top: held-out sysid loss; middle: true-system "
                "cost of the plan of the sysid model at checkpoints; bottom: true-system "
                "cost of every end-to-end / imitation step's plan.",
                "",
                f"![learning curves](results/{png.name})",
                "",
            ]

    ref = R.get("gradient/implicit_ref")
    if ref is not None:
        g_ref = np.asarray(ref["grad"])
        d_ref = np.asarray(ref["directional"])
        base = R.get("gradient/implicit")
        t_imp = base["time"]["median_s"] if base else None
        grows = []
        for v in grad_variants(cfg):
            e = R.get(f"gradient/{v}")
            if e is None or v == "fd":
                continue
            g = np.asarray(e["grad"])
            rel = np.linalg.norm(g - g_ref) / np.linalg.norm(g_ref)
            dirs = np.abs(np.asarray(e["directional"]) - d_ref) / np.abs(d_ref)
            ratio = f"{e['time']['median_s'] / t_imp:.2f}" if t_imp else "–"
            grows.append(
                f"| {_GRAD_LABELS.get(v, v)} | {e['num_steps']} | {'yes' if e['ok'] else 'no'} | "
                f"{e['value']:.10g} | {rel:.2e} | {dirs.max():.2e} | "
                f"{_ms(e['time']['median_s'])} | {ratio} | {e['compile_s']:.1f} s |"
            )
        fd = R.get("gradient/fd")
        if fd is not None:
            t1 = fd["time"]["median_s"]
            for eps, vals in sorted(fd["fd"].items(), key=lambda kv: -float(kv[0])):
                errs = np.abs(np.asarray(vals) - d_ref) / np.abs(d_ref)
                grows.append(
                    f"| central FD, eps = {float(eps):.0e} | – | {'yes' if fd['ok'] else 'no'} | – "
                    f"| – | {errs.max():.2e} | {_ms(2 * t1)} per direction; "
                    f"{_ms(2 * fd['params'] * t1)} for all {fd['params']} | "
                    f"{2 * t1 / t_imp:.2f} per direction; {2 * fd['params'] * t1 / t_imp:.0f} "
                    f"for all | {fd['compile_s']:.1f} s |"
                    if t_imp
                    else "| FD | – | – | – | – | – | – | – | – |"
                )
        lines += [
            f"**Gradient through the planner**: d/dθ TrueCost(plan(θ)) on {ref['problem']} "
            f"(`Trapezoidal({cfg['grad_N']})`), θ = the {ref['params']} parameters of a "
            f"hybrid model (the true dynamics with mu = 0.8 plus a {cfg['grad_width']}-wide, "
            "depth-2 softplus MLP whose last layer is random, scale 0.05). Reference: "
            "implicit differentiation with `KKTNewton(atol=1e-12)`. Relative error: "
            "‖g − g_ref‖ / ‖g_ref‖ on the whole gradient, and the largest relative "
            f"error of the derivative along {cfg['grad_directions']} random unit directions "
            "(the only thing finite differences give; central FD re-plan from scratch "
            "with the reference planner, 2 plans per direction). Unrolled = plain "
            "undamped semismooth Newton for K iterations from the planner's cold start, "
            "differentiated with `optimistix.RecursiveCheckpointAdjoint()` (toolkit's "
            "`KKTNewton` has a `lax.while_loop` line search, which reverse mode cannot "
            "unroll); it stops early once ‖F‖∞ ≤ 1e-9. The warm-started rows start "
            "from the converged plan (as warm-started training does); the *one forced "
            "step* row sets atol = 0, so it takes exactly one Newton step (and reports "
            "no convergence). Newton steps: the planner's iterations (`num_steps`). "
            "Time: warm, median of repeats "
            "of a jitted `value_and_grad` (FD: of one plan + true cost, x 2 per "
            "direction, x 2P for a full gradient, i.e. extrapolated from the measured "
            "single evaluation); ratio = time / implicit (`KKTNewton()`) time.",
            "",
            "| gradient | Newton steps | plan converged | loss | rel. error (full) | "
            "max rel. error (directions) | time | ratio to implicit | compile |",
            "|---|---|---|---|---|---|---|---|---|",
            *grows,
            "",
            *_gradient_summary(R, g_ref),
        ]
    return "\n".join(lines)


def _gradient_summary(R: dict, g_ref) -> list[str]:
    """One paragraph read off the gradient rows: the fewest cold unrolled iterations
    whose gradient matches the implicit one to 1e-6, and what warm starts do."""
    implicit = R.get("gradient/implicit")
    cold = sorted(
        (int(k.split("=")[1]), e) for k, e in R.items() if k.startswith("gradient/unroll_K=")
    )
    if implicit is None or not cold:
        return []

    def rel(e):
        return float(np.linalg.norm(np.asarray(e["grad"]) - g_ref) / np.linalg.norm(g_ref))

    t_imp = implicit["time"]["median_s"]
    good = [(k, e) for k, e in cold if rel(e) <= 1e-6]
    parts = []
    if good:
        k, e = good[0]
        parts.append(
            f"Unrolling from the cold start needs K = {k} iterations (the solve converges "
            f"within them) to match the implicit gradient to 1e-6, at "
            f"{e['time']['median_s'] / t_imp:.2f}x its time; with fewer, the error is "
            + ", ".join(f"{rel(e):.1e} (K = {k})" for k, e in cold if k < good[0][0])
            + "."
        )
    else:
        parts.append("No unrolled K measured matches the implicit gradient to 1e-6.")
    warm = R.get("gradient/unroll_warm")
    if warm is not None:
        parts.append(
            f"Warm-started, as in training, the unrolled solve stops after "
            f"{warm['num_steps']} iterations and its gradient has relative error "
            f"{rel(warm):.1e}: unrolling differentiates the iterations actually taken, "
            "not the solution, while the implicit gradient does not depend on them."
        )
    return [" ".join(parts), ""]


_GRAD_LABELS = {
    "implicit_ref": "implicit, `KKTNewton(atol=1e-12)` (reference)",
    "implicit": "implicit, `KKTNewton()` (default, atol 1e-9)",
    "unroll_converged": "unrolled to convergence (≤ 100 iterations)",
    "unroll_warm": "unrolled from the converged plan (warm start, ≤ 100 iterations)",
    "unroll_warm_K=1": "unrolled K = 1 from the converged plan (one forced step)",
}
for _k in range(1, 101):
    _GRAD_LABELS[f"unroll_K={_k}"] = f"unrolled K = {_k} (cold start)"


def write_readme(store: Store, cfg: dict, table: str, command: str, quick: bool) -> None:
    m = store.load()["machine"]  # the machine that measured the entries, not this one
    entries = list(store.entries().values())
    if not entries:
        log("No results to write.")
        return
    expected = [f"learn/{n}/seed={s}" for n in PROBLEMS for s in cfg["seeds"]] + [
        f"gradient/{v}" for v in grad_variants(cfg)
    ]
    missing = [k for k in expected if k not in store.entries()]
    steps = ", ".join(
        f"{k} {v} steps at lr {cfg['sysid_lr'][k]:g}" for k, v in cfg["sysid_steps"].items()
    )
    models = ", ".join(f"{n}: {v['model']}" for n, v in PROBLEMS.items())
    section = "\n".join(
        [
            SECTION,
            "",
            "Issue 7. Three library problems, a learned model per problem "
            f"({models}; "
            f"neural ODE = `learning.init_neural_vector_field`, a width-{cfg['width']}, "
            "depth-2 softplus MLP; hybrid = the problem's dynamics with parameters "
            f"started at {1 - cfg['perturb']:g} x the true ones, learned as "
            "log-multipliers of the nominal values, plus such an MLP). Data: "
            f"{cfg['trajectories']} trajectories of the true system under random smooth "
            f"controls from scattered initial states, {cfg['samples']} samples each, "
            f"noise std {cfg['noise']:g}, a quarter held out. Sysid: Adam on the "
            "multiple-shooting loss (segments of 4 samples), cosine-decayed learning "
            f"rate, {steps}; the model kept is the one of the checkpoint (every "
            f"1/{cfg['sysid_checkpoints']} of the run) with the lowest held-out loss. "
            "End-to-end / imitation: "
            f"{cfg['e2e_steps']} Adam steps (lr {cfg['e2e_lr']:g}) from the sysid model, "
            f"loss + {cfg['sysid_weight']:g} x the sysid loss, gradients through "
            "`control.plan` (implicit), warm-started plans, `learning.fit_end_to_end` "
            "with `keep_best=True` (the model kept is the best by the method's own loss "
            "on a plan from the default start, never by the test cost for imitation). "
            f"Plans: `Trapezoidal({cfg['N']})` + `KKTNewton()`. True-system cost: "
            "`learning.TrueCost`, RK4 with 100 steps over the horizon. Seeds "
            f"{', '.join(map(str, cfg['seeds']))} (data, initial weights).",
            "",
            f"Reproduce: `{command}` (results in "
            f"`benchmarks/results/{store.path.name}`; `benchmarks/learning.py` says how "
            "every number is measured).",
            "",
            machine_line(
                m,
                shared=" (shared with other jobs)",
                versions={k: k for k in ("equinox", "optimistix", "diffrax", "optax")},
            )
            + " "
            + measured_line(entries)
            + (" **Quick smoke-run settings; not representative.**" if quick else ""),
            "",
            *([f"**Missing (not run):** {', '.join(missing)}.", ""] if missing else []),
            table,
        ]
    )
    replace_section(README, SECTION, section, pad=True)
    log(f"Wrote section {SECTION!r} of {README}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(parser, example="gradient", quick="smoke run, separate file")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated key prefixes to run (e.g. `learn/van_der_pol,gradient`)",
    )
    parser.add_argument("--no-run", action="store_true", help="report (and --readme) only")
    opts = parser.parse_args(argv)
    cfg = QUICK if opts.quick else FULL
    suffix = "-quick" if opts.quick else ""
    store = Store(
        RESULTS_DIR / f"learning{suffix}.json",
        forced(opts),
        section=("entries",),
        machine=machine,
        machine_at=("machine",),
        indent=1,
    )
    png = RESULTS_DIR / f"learning{suffix}.png"
    only = None if opts.only is None else [p for p in opts.only.split(",") if p]

    def wanted(key):
        return (only is None or any(key.startswith(p) for p in only)) and store.todo(key)

    if not opts.no_run:
        log(f"learning ({'quick' if opts.quick else 'full'}): results in {store.path}")
        keys = [f"learn/{n}/seed={s}" for n in PROBLEMS for s in cfg["seeds"]]
        keys += [f"gradient/{v}" for v in grad_variants(cfg)]
        group = None
        for key in keys:
            if not wanted(key):
                continue
            # The seeds of one problem share their compiled functions; anything else
            # starts from empty caches (and so does a process near the map limit).
            if key.rsplit("/", 1)[0] != group or memory_maps() > 20000:
                fresh()
            group = key.rsplit("/", 1)[0] if key.startswith("learn/") else key
            log(f"{key} ... ({memory_maps()} memory maps)")
            t = time.perf_counter()
            if key.startswith("learn/"):
                _, name, seed = key.split("/")
                value = run_learning(name, int(seed.split("=")[1]), cfg)
            else:
                value = run_gradient(key.split("/", 1)[1], cfg)
            value["wall_s"] = time.perf_counter() - t
            store.put(key, value)
            log(f"{key}: done in {value['wall_s']:.0f} s")

    has_png = plot_curves(store.entries(), png)
    table = report(store, cfg, png if has_png else None)
    print()
    print(table)
    if opts.readme:
        cmd = "python benchmarks/learning.py" + (" --quick" if opts.quick else "") + " --readme"
        write_readme(store, cfg, table, cmd, opts.quick)
    return 0


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    sys.exit(main())
