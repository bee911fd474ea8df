"""`python -m toolkit learn`: learn a library problem's dynamics from data, then
train the model end to end through the planner (the recipe of
`tutorials/learn_through_the_planner.py`, for any problem of the library)."""

import argparse
import dataclasses
import json
import math
import time
from typing import Any

from ..._cli_checks import (
    check_outputs,
    COUNT,
    FRACTION,
    InputError,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    reporting,
)
from ..._jit import filter_jit


MODELS = ("neural_ode", "hybrid", "parametric")
METHODS = ("e2e", "sysid", "imitation")


def add_learn_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("problem", help="a problem of the library (`python -m toolkit plan --list`)")
    p.add_argument(
        "--model",
        default="hybrid",
        choices=MODELS,
        help="neural_ode: an MLP vector field; hybrid: the problem's dynamics with "
        "perturbed parameters plus an MLP; parametric: the dynamics with perturbed "
        "parameters (fitted by Levenberg-Marquardt)",
    )
    p.add_argument(
        "--method",
        default="e2e",
        choices=METHODS,
        help="sysid: system identification only; e2e: then train end to end on the "
        "true-system cost of the plan; imitation: then end to end on imitation of the "
        "true model's plan",
    )
    p.add_argument("--N", type=POSITIVE_INT, default=30, help="intervals of the trapezoidal plans")
    p.add_argument("--steps", type=COUNT, default=1000, help="Adam steps of system identification")
    p.add_argument("--e2e-steps", type=COUNT, default=50, help="Adam steps of end-to-end training")
    p.add_argument("--trajectories", type=POSITIVE_INT, default=24, help="trajectories of data")
    p.add_argument("--samples", type=POSITIVE_INT, default=41, help="samples per trajectory")
    p.add_argument("--noise", type=NON_NEGATIVE, default=1e-3, help="observation noise std")
    p.add_argument("--width", type=POSITIVE_INT, default=32, help="hidden width of the MLP")
    p.add_argument(
        "--perturb",
        type=FRACTION,
        default=0.5,
        help="hybrid/parametric: the model's parameters start at (1 - perturb) x the true ones",
    )
    p.add_argument("--lr", type=POSITIVE, default=1e-2, help="sysid learning rate (cosine decay)")
    p.add_argument(
        "--args-lr",
        type=POSITIVE,
        default=1e-3,
        help="hybrid: sysid learning rate of the known part's parameters, which are "
        "learned on a log scale (learning.log_scaled, learning.split_optimiser)",
    )
    p.add_argument("--e2e-lr", type=POSITIVE, default=1e-3, help="end-to-end learning rate")
    p.add_argument(
        "--sysid-weight",
        type=NON_NEGATIVE,
        default=10.0,
        help="weight of the sysid loss kept during end-to-end training",
    )
    p.add_argument(
        "--curriculum",
        action="store_true",
        help="sysid with Adam (neural_ode, hybrid): multiple-shooting segments of 4 "
        "sampling intervals, doubling over training up to the whole horizon (full "
        "rollouts), each length for an equal share of --steps (learning.SegmentCurriculum)",
    )
    p.add_argument(
        "--smoothness",
        type=NON_NEGATIVE,
        default=0.0,
        help="weight of a penalty on squared changes of consecutive planned controls, "
        "added to the cost of every plan of the run (end-to-end training and the scores "
        "of all models alike; not to the true-system costs reported): keeps plans from "
        "exploiting model errors by chattering (learning.ControlSmoothness; default 0, "
        "off)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write learning curves and costs to this file")
    p.add_argument("--plot", default=None, help="write a plot of trajectories and plans")
    p.add_argument("--debug", action="store_true", help="show the traceback of an input error")


def _check(ns, ex) -> str | None:
    """The reason the choices cannot run, or None."""
    import equinox as eqx
    import jax

    from ... import control

    if isinstance(ex.problem.dynamics, control.DiscreteDynamics):
        # The models are vector fields integrated in time; a discrete map is not one.
        return (
            f"{ex.name} has discrete-time dynamics (a map x_(k+1) = f(x_k, u_k)); learn "
            "fits continuous-time vector fields: choose a continuous-time problem."
        )
    if ns.N < 1:
        return f"--N must be >= 1, got {ns.N}."
    if ns.steps < 0 or ns.e2e_steps < 0:
        return "--steps and --e2e-steps must be >= 0."
    if ns.trajectories < 2:
        return f"--trajectories must be >= 2 (some are held out), got {ns.trajectories}."
    if ns.samples < 5:
        return f"--samples must be >= 5 (multiple shooting uses segments of 4), got {ns.samples}."
    if ns.noise < 0:
        return f"--noise must be >= 0, got {ns.noise}."
    if ns.width < 1:
        return f"--width must be >= 1, got {ns.width}."
    if ns.curriculum and ns.model == "parametric":
        return (
            "--curriculum grows the segments of Adam's system identification; "
            "--model parametric is fitted by Levenberg-Marquardt: use --model neural_ode "
            "or hybrid."
        )
    if ns.model in ("hybrid", "parametric"):
        leaves = [a for a in jax.tree_util.tree_leaves(ex.args) if eqx.is_inexact_array(a)]
        if ns.model == "parametric" and not leaves:
            return (
                f"--model parametric: {ex.name} has no floating-point parameters to learn; "
                "use --model neural_ode or hybrid."
            )
    return None


_DRAWS = 8


def _finite_data(learning, keys, ex, ts, sim, ns):
    """`ns.trajectories` finite trajectories of the true system under random smooth
    controls from scattered initial states; how many were drawn, and how many of those
    blew up.

    Some systems blow up under some controls (bacteria's x -> -inf in finite time
    under a strong nutrient dose): those trajectories are replaced by fresh draws, up
    to `_DRAWS` batches. If that is not enough, a clear error: every loss, and the
    data's scaling, would be nan, and the message would blame the model."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    problem, n = ex.problem, ns.trajectories
    spread = 0.3 * jnp.maximum(jnp.abs(problem.x0), 1.0)
    kept = []
    for draw in range(_DRAWS):
        c_key, x_key, n_key = (k if draw == 0 else jr.fold_in(k, draw) for k in keys)
        controls = learning.random_controls(c_key, problem, 20, batch=n, kind="smooth")
        x0s = learning.initial_states(x_key, problem, n, spread)
        batch = learning.generate(
            n_key, problem, controls, ts, args=ex.args, x0s=x0s, noise_std=ns.noise, simulator=sim
        )
        # Kept on the host: a mask's indexing on the device would compile a program
        # for each count of finite trajectories.
        batch = jax.tree_util.tree_map(np.asarray, batch)
        finite = np.all(np.isfinite(batch.xs), axis=(1, 2))
        kept.append(jax.tree_util.tree_map(lambda a: a[finite], batch))
        good = sum(d.size for d in kept)
        if good >= n:
            data = jax.tree_util.tree_map(lambda *a: jax.device_put(np.concatenate(a)[:n]), *kept)
            return data, (draw + 1) * n, (draw + 1) * n - good
    raise FloatingPointError(
        f"the data hold non-finite states: the true {ex.name} system blew up under "
        f"{_DRAWS * n - good} of the {_DRAWS * n} random controls from scattered initial "
        f"states, leaving {good} finite trajectories of the {n} needed."
    )


@reporting
def learn(ns: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.random as jr

    from ... import control
    from .. import learning

    if ns.problem not in control.problems.names():
        raise InputError(
            f"argument problem: unknown problem {ns.problem!r}; choose from "
            + ", ".join(control.problems.names())
        )
    check_outputs(ns)
    ex = control.problems.get(ns.problem)
    reason = _check(ns, ex)
    if reason is not None:
        raise InputError(reason)

    # Fixed RK4 steps for everything differentiated many times (as in the tutorial):
    # 3 between samples (120 over the 40 sampling intervals), 3 between the nodes of
    # a plan's controls, in a lax.scan that compiles and runs several times faster
    # than a diffrax solve.
    sim = learning.FixedStepRK4(3)
    transcription = control.Trapezoidal(ns.N)
    planner_name = f"Trapezoidal({ns.N})"
    if ns.smoothness > 0:
        transcription = learning.ControlSmoothness(transcription, ns.smoothness)
        planner_name += f" + control smoothness {ns.smoothness:g}"
    c_key, x_key, n_key, m_key = jr.split(jr.key(ns.seed), 4)
    print(
        f"learning {ex.name} ({ex.description}): model {ns.model}, method {ns.method}, "
        f"{planner_name}, seed {ns.seed}",
        flush=True,
    )

    train, valid, data = _data(ns, ex, learning, (c_key, x_key, n_key), sim)
    initial, truth, sysid_loss = _models(ns, ex, learning, train, data, m_key, sim)
    curves: dict[str, Any] = {}
    t = time.perf_counter()
    if ns.model == "parametric":
        sysid_model = _sysid_least_squares(ns, initial, train, valid, sysid_loss, curves)
    else:
        sysid_model = _sysid_adam(ns, initial, train, valid, sysid_loss, curves)
    sysid_s = time.perf_counter() - t
    # The segment loss restarts from the data every few samples; a plan predicts the
    # whole horizon, so that error is reported too.
    rollout = {
        name: float(learning.rollout_error(m, valid, simulator=sim))
        for name, m in (("initial", initial), ("sysid", sysid_model))
    }
    print(
        f"sysid: {sysid_s:.1f} s, held-out multiple-shooting loss "
        f"{curves['sysid_valid'][0]:.3e} -> {curves['sysid_valid'][-1]:.3e}, full-horizon "
        f"rollout error (relative RMS) {rollout['initial']:.3e} -> {rollout['sysid']:.3e}"
        + _blew_up(rollout["sysid"])
    )

    # Plans, scored on the true system.
    true_cost = learning.TrueCost(ex.problem, ex.args, sim)

    def score(m):
        value, sol = learning.plan_loss(m, ex.problem, transcription, true_cost, args=ex.args)
        return sol, float(value), bool(sol.result == control.RESULTS.successful)

    plans, costs, ok = {}, {}, {}
    for name, m in (("true_model", truth), ("initial", initial), ("sysid", sysid_model)):
        plans[name], costs[name], ok[name] = score(m)
    if not ok["true_model"]:
        print(_unconverged_truth(planner_name, ns.N, ex.N))

    model = sysid_model
    if ns.method in ("e2e", "imitation"):
        model = _end_to_end(
            ns, ex, transcription, sysid_model, (train, sysid_loss), true_cost, plans, ok, curves
        )
        # With --method e2e, the plan that selected the model: the same plan, cost.
        plans["end_to_end"], costs["end_to_end"], ok["end_to_end"] = score(model)
        rollout["end_to_end"] = float(learning.rollout_error(model, valid, simulator=sim))
        print(
            f"end to end: full-horizon rollout error {rollout['end_to_end']:.3e}"
            + _blew_up(rollout["end_to_end"])
        )
        before_name, after_name = "sysid", "end_to_end"
    else:
        before_name, after_name = "initial", "sysid"

    labels = {
        "true_model": "the true model's own plan",
        "initial": "the untrained model",
        "sysid": "after system identification",
        "end_to_end": f"after end-to-end ({ns.method})",
    }
    misses = _report(planner_name, true_cost, plans, costs, ok, labels)
    print(
        f"learned model before -> after: {costs[before_name]:.6g} -> {costs[after_name]:.6g} "
        f"(true model: {costs['true_model']:.6g})"
    )
    if ns.json:
        chosen = (costs[before_name], costs[after_name])
        _write_json(ns, ex, curves, plans, costs, ok, misses, rollout, chosen)
    if ns.plot:
        _plot(ns.plot, ex, learning, sim, valid, sysid_model, model, plans, costs, labels)
        print(f"wrote {ns.plot}")
    return 0 if ok[after_name] else 1


def _write_json(ns, ex, curves, plans, costs, ok, misses, rollout, chosen):
    """The run's record in `ns.json`; `chosen` is the learned model's cost before and
    after the last stage."""
    out = {
        "problem": ex.name,
        "model": ns.model,
        "method": ns.method,
        "N": ns.N,
        "smoothness": ns.smoothness,
        "seed": ns.seed,
        "noise": ns.noise,
        "trajectories": ns.trajectories,
        "steps": ns.steps,
        "e2e_steps": ns.e2e_steps if ns.method != "sysid" else 0,
        "curves": curves,
        "costs": costs,
        "plan_ok": ok,
        "terminal_miss": misses,
        "before": chosen[0],
        "after": chosen[1],
        "true_model_cost": costs["true_model"],
        "rollout_error": rollout,
        "plans": {
            name: {"ts": s.ts.tolist(), "xs": s.xs.tolist(), "us": s.us.tolist()}
            for name, s in plans.items()
        },
    }
    with open(ns.json, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {ns.json}")


def _data(ns, ex, learning, keys, sim):
    """The training and held-out trajectories of the true system, and all of them."""
    import jax.numpy as jnp

    problem = ex.problem
    ts = jnp.linspace(float(problem.t0), float(problem.t1), ns.samples, dtype=problem.x0.dtype)
    data, drawn, blown_up = _finite_data(learning, keys, ex, ts, sim, ns)
    n_valid = max(ns.trajectories // 4, 1)
    if blown_up:
        print(
            f"data: the true {ex.name} system blew up under {blown_up} of {drawn} random "
            "controls from scattered initial states; only finite trajectories are kept, "
            "as an experiment records them"
        )
    train, valid = learning.split(data, ns.trajectories - n_valid)
    print(f"data: {train.size} training and {valid.size} held-out trajectories, noise {ns.noise}")
    return train, valid, data


def _models(ns, ex, learning, train, data, key, sim):
    """The untrained model of `ns.model`, the true model in the same structure (one
    planner compile for both), and the system-identification loss."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    problem, true_args = ex.problem, ex.args

    def perturbed(args):
        return jax.tree_util.tree_map(
            lambda a: (1.0 - ns.perturb) * a if eqx.is_inexact_array(a) else a, args
        )

    scale = jnp.maximum(jnp.max(jnp.abs(data.xs), axis=(0, 1)), 1e-3)
    # The MLP's inputs and outputs scaled by the training data's statistics, so that
    # states spanning orders of magnitude all reach it at order one (issue 26).
    data_scaling = learning.Scaling.from_data(train)
    if ns.model == "neural_ode":
        field = learning.init_neural_vector_field(
            key, problem, width_size=ns.width, depth=2, scaling=data_scaling
        )
        model = learning.Model(field)
    elif ns.model == "hybrid":
        # States non-negative throughout the data, up to the observation noise, get a
        # correction that vanishes with them: the known dynamics may be undefined or
        # unstable below zero (tumour's log(p / q), predator_prey's extinct pest; issue
        # 26).
        nonnegative = (jnp.min(train.xs, axis=(0, 1)) >= -5 * ns.noise) & (data_scaling.x_shift > 0)
        field = learning.init_neural_vector_field(
            key,
            problem,
            width_size=ns.width,
            depth=2,
            known=problem.dynamics,
            scaling=data_scaling,
            proportional=[bool(p) for p in nonnegative],
        )
        # The known part's parameters are learned on a log scale: Adam's steps of about
        # the learning rate would otherwise carry hiv_treatment's 2.4e-5 infection
        # rate out of range at once and blow the dynamics up (issue 26).
        model = learning.Model(field, learning.log_scaled(perturbed(true_args)))
    else:
        model = learning.Model(problem.dynamics, perturbed(true_args))
    if ns.model == "hybrid":
        # The fresh hybrid's MLP outputs exactly zero: with the true parameters it *is*
        # the truth, and shares the learned model's structure (one planner compile).
        truth = eqx.tree_at(lambda m: m.args, model, learning.log_scaled(true_args))
    else:
        truth = learning.Model(problem.dynamics, true_args)
    sysid_loss = learning.MultipleShootingLoss(segment=4, simulator=sim, weights=1.0 / scale)
    return model, truth, sysid_loss


def _advice(ns) -> tuple[str, str]:
    """What to change when system identification blows up: the learning rates, and
    the scaling or the model."""
    lower_lr = f"lower --lr (now {ns.lr:g})"
    if ns.model == "hybrid":
        lower_lr += f" or --args-lr (now {ns.args_lr:g})"
    if ns.model == "parametric":
        return lower_lr, "start the parameters nearer the true ones (a smaller --perturb)"
    return lower_lr, (
        "try another model: the MLP's inputs and outputs are already scaled by the "
        "training data's statistics (--model parametric learns the problem's own "
        "parameters)"
    )


def _sysid_least_squares(ns, model, train, valid, sysid_loss, curves):
    """The parametric model fitted by Levenberg-Marquardt; its curves in `curves`."""
    from tqdm.auto import tqdm

    from .. import learning
    from ._sysid import _check_finite

    loss = filter_jit(sysid_loss)
    before_train, before_valid = float(loss(model, train)), float(loss(model, valid))
    with tqdm(total=1, desc="sysid (Levenberg-Marquardt)") as bar:
        model, lm = learning.fit_least_squares(
            model, train, loss=sysid_loss, max_steps=max(ns.steps, 1), throw=False
        )
        bar.update(1)
    curves["sysid_step"] = [0, int(lm.stats["num_steps"])]
    curves["sysid_train"] = [before_train, float(loss(model, train))]
    curves["sysid_valid"] = [before_valid, float(loss(model, valid))]
    for name, values in (("training", curves["sysid_train"]), ("held-out", curves["sysid_valid"])):
        for step, value in zip(curves["sysid_step"], values):
            _check_finite(
                "system identification", f"the {name} loss", value, step, None, *_advice(ns)
            )
    return model


def _sysid_adam(ns, model, train, valid, sysid_loss, curves):
    """The model trained by Adam on the multiple-shooting loss (with the segments'
    curriculum under `--curriculum`); its curves in `curves`."""
    import equinox as eqx
    import optax
    from tqdm.auto import tqdm

    from .. import learning
    from ._sysid import _check_finite, _init, _partition, _update

    params, static = _partition(model, None)

    def adam(lr):
        return optax.adam(optax.cosine_decay_schedule(lr, max(ns.steps, 1), alpha=0.05))

    if ns.model == "hybrid":
        optimiser = learning.split_optimiser(dynamics=adam(ns.lr), args=adam(ns.args_lr))
    else:
        optimiser = adam(ns.lr)
    opt_state = _init(optimiser, params)

    losses = [sysid_loss] * ns.steps
    if ns.curriculum:
        curriculum = learning.SegmentCurriculum(first=sysid_loss.segment)
        curves["sysid_segment"] = curriculum.schedule(ns.steps, ns.samples - 1)
        losses = [dataclasses.replace(sysid_loss, segment=n) for n in curves["sysid_segment"]]
        lengths = ", ".join(map(str, curriculum.lengths(ns.samples - 1)))
        print(f"curriculum: segments of {lengths} sampling intervals")

    @filter_jit
    def step(params, opt_state, loss):
        value, grads = eqx.filter_value_and_grad(lambda p: loss(eqx.combine(p, static), train))(
            params
        )
        params, opt_state = _update(optimiser, grads, opt_state, params)
        return params, opt_state, value

    @filter_jit
    def loss_on(params, which):
        return sysid_loss(eqx.combine(params, static), which)

    def record(i, params, train_loss):
        # The losses are on the host here: checked at once, before a NaN model
        # reaches end-to-end training (issue 26).
        last = curves["sysid_step"][-1] if curves["sysid_step"] else None
        curves["sysid_step"].append(i)
        curves["sysid_train"].append(train_loss)
        curves["sysid_valid"].append(float(loss_on(params, valid)))
        for name, values in (("training", "sysid_train"), ("held-out", "sysid_valid")):
            value = curves[values][-1]
            _check_finite("system identification", f"the {name} loss", value, i, last, *_advice(ns))

    eval_every = max(ns.steps // 20, 1)
    curves["sysid_step"], curves["sysid_train"], curves["sysid_valid"] = [], [], []
    bar = tqdm(range(ns.steps), desc="sysid (Adam)")
    for i in bar:
        new, opt_state, value = step(params, opt_state, losses[i])
        if i % eval_every == 0:
            # The curves are of the 4-interval segments throughout, comparable across
            # the curriculum's stages.
            train_loss = float(value) if not ns.curriculum else float(loss_on(params, train))
            record(i, params, train_loss)
            v = curves["sysid_valid"][-1]
            bar.set_postfix(train=f"{float(value):.2e}", valid=f"{v:.2e}")
        params = new
    record(ns.steps, params, float(loss_on(params, train)))
    return eqx.combine(params, static)


def _end_to_end(ns, ex, transcription, model, sysid, true_cost, plans, ok, curves):
    """`model` trained end to end through `control.plan` (`--method e2e`: on
    `true_cost`, or `imitation`), keeping the best; `sysid` is `(train, sysid_loss)`
    for the system-identification term. Its curves in `curves`."""
    import optax
    from tqdm.auto import tqdm

    from ... import control
    from .. import learning

    train, sysid_loss = sysid
    if ns.method == "e2e":
        plan_loss = true_cost
    else:
        plan_loss = learning.Imitation(plans["true_model"].xs, plans["true_model"].us)
    # Warm start from a plan of the same structure as every later one (one compile).
    init = plans["sysid"] if ok["sysid"] else plans["true_model"]
    bar = tqdm(total=ns.e2e_steps, desc=f"end to end ({ns.method})")

    def progress(i, history):
        bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", ok=history["successful"][-1])
        bar.update(1)

    t = time.perf_counter()
    try:
        # Keeps the best model by the measure it is reported with (a plan from the
        # planner's default start), starting from the sysid model (step 0), so that end
        # to end is never worse than sysid on it (issue 26).
        model, history = learning.fit_end_to_end(
            model,
            ex.problem,
            transcription,
            plan_loss,
            control.KKTNewton(),
            args=ex.args,
            optimiser=optax.adam(ns.e2e_lr),
            steps=ns.e2e_steps,
            data=train if ns.sysid_weight > 0 else None,  # no sysid term to compile
            sysid_loss=sysid_loss,
            sysid_weight=ns.sysid_weight,
            keep_best=True,
            init=init,
            callback=progress,
        )
    except FloatingPointError as e:
        raise FloatingPointError(f"{e} (here: --e2e-lr, now {ns.e2e_lr:g})") from None
    finally:
        bar.close()
    curves["e2e_loss"], curves["e2e_sysid"] = history["loss"], history["sysid"]
    curves["e2e_successful"] = history["successful"]
    curves["e2e_selection"], curves["e2e_kept"] = history["selection"], history["kept"]
    curves["e2e_failed"] = curves["e2e_successful"].count(False)
    print(
        f"end to end: {time.perf_counter() - t:.1f} s, {curves['e2e_failed']} failed plans, "
        f"kept the model of step {curves['e2e_kept']} (0: the sysid model)"
    )
    return model


def _report(planner_name, true_cost, plans, costs, ok, labels) -> dict[str, float]:
    """Print each plan's cost on the true system; returns the terminal misses."""
    print(f"\nplans on {planner_name}, scored on the true system:")
    misses: dict[str, float] = {}
    for name in costs:
        flag = "" if ok[name] else "  [plan did not converge]"
        miss = true_cost.terminal_miss(plans[name])
        if miss is not None:
            # The cost includes the weighted squared miss (learning.TrueCost).
            misses[name] = float(miss)
            flag = f"  (misses xT by {misses[name]:.3g} on the true system){flag}"
        print(f"  {labels[name]:<32} {costs[name]:.6g}{flag}")
    return misses


def _unconverged_truth(planner_name: str, N: int, library_N: int) -> str:
    """The warning when the true model's own plan does not converge: on a grid coarser
    than the problem's own, the transcribed problem may be close to infeasible
    (predator_prey at N = 30)."""
    finer = f"; try a finer grid, e.g. --N {library_N} (the problem's own)" if library_N > N else ""
    return (
        f"warning: the planner did not converge with the true model on {planner_name}"
        f"{finer}: scores against it compare unconverged plans"
    )


def _blew_up(error: float) -> str:
    """What a non-finite rollout error means, for the printed line."""
    if math.isfinite(error):
        return ""
    return (
        " (the model's rollout blows up under a held-out control: it is not trustworthy "
        "off the plans it was trained and selected on)"
    )


def _plot(path, ex, learning, sim, valid, sysid_model, model, plans, costs, labels):
    import jax
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problem = ex.problem
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    one = jax.tree_util.tree_map(lambda a: a[0], valid)
    ax = axes[0, 0]
    pred = learning.simulate(
        model.dynamics, one.x0s, one.controls, one.ts, args=model.resolved_args, simulator=sim
    )
    true = learning.simulate(
        problem.dynamics, one.x0s, one.controls, one.ts, args=ex.args, simulator=sim
    )
    for i in range(problem.nx):
        ax.plot(one.ts, one.xs[:, i], ".", color=f"C{i}", ms=4)
        ax.plot(one.ts, true[:, i], "-", color=f"C{i}", alpha=0.5, label=f"x{i + 1} true")
        ax.plot(one.ts, pred[:, i], "--", color=f"C{i}", label=f"x{i + 1} learned")
    ax.set(title="held-out trajectory: data (dots), true (lines), learned (dashed)", xlabel="t")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    err = np.asarray(pred) - np.asarray(true)
    for i in range(problem.nx):
        ax.plot(one.ts, err[:, i], color=f"C{i}", label=f"x{i + 1}")
    ax.set(title="learned - true on the held-out trajectory", xlabel="t")
    ax.legend(fontsize=7)

    dense = np.linspace(float(problem.t0), float(problem.t1), 201)
    colours = {"true_model": "k", "initial": "C7", "sysid": "C1", "end_to_end": "C2"}
    for name, sol in plans.items():
        xs = learning.simulate(
            problem.dynamics,
            problem.x0,
            learning.Controls.from_solution(sol),
            jax.numpy.asarray(dense, problem.x0.dtype),
            args=ex.args,
            simulator=sim,
        )
        label = f"{labels[name]} ({costs[name]:.4g})"
        for i in range(problem.nx):
            axes[1, 0].plot(
                dense,
                xs[:, i],
                color=colours[name],
                ls=["-", "--", ":", "-."][i % 4],
                label=label if i == 0 else None,
            )
        for j in range(problem.nu):
            axes[1, 1].plot(
                sol.ts,
                sol.us[:, j],
                color=colours[name],
                ls=["-", "--", ":", "-."][j % 4],
                label=label if j == 0 else None,
            )
    axes[1, 0].set(title="plans applied to the true system: states", xlabel="t")
    axes[1, 1].set(title="planned controls (true-system cost)", xlabel="t")
    axes[1, 0].legend(fontsize=7)
    axes[1, 1].legend(fontsize=7)
    fig.suptitle(f"{ex.name}: learning through the planner")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
