"""The `train`, `sweep` and `demo` subcommands of `python -m toolkit`.

Each subcommand is a pair: `add_<name>_arguments(parser)` declares its options on an
argparse (sub)parser, and `<name>(ns)` runs it on the parsed namespace and returns the
exit code. JAX and the models are imported only when a command runs.

Every numeric option is checked as it is parsed. An input error (a bad option, a
missing data set, a checkpoint of another run, corrupted or truncated) prints one
line naming the option and exits with status 2, as argparse does; a diverged run
prints one line and exits with status 1. `--debug` shows the traceback instead, and
an internal error always does.
"""

import argparse
import functools
import json
import os
import time
from typing import Any

from .._cli_checks import (
    check_outputs,
    COUNT,
    FRACTION,
    InputError,
    MOMENTUM,
    NON_NEGATIVE,
    PART,
    POSITIVE,
    POSITIVE_INT,
    RATIO,
    reporting,
    SPARSITY,
)
from . import recipes


DATASETS = ("digits", "mnist1d", "fashion_mnist", "cifar10")
MODELS, BASELINES = recipes.MODELS, recipes.BASELINES
# DemP's penalties that act on BatchNorm parameters only.
BN_PENALTIES = ("bn_scale_l1", "bn_positive_l1")


# The network of a run (the recipe, under the name the benchmarks use).
build_model = recipes.model


# The settings that do not change a run: left out of the log's `config.settings`
# and of the check on resume.
_NOT_SETTINGS = frozenset(
    ("command", "run", "parser", "debug", "checkpoint", "json", "plot", "plan_plot")
    + ("no_progress", "data_root", "devices")  # a run may resume on another mesh
    + ("coordinator", "num_processes", "process_id")
)


def settings(ns: argparse.Namespace) -> dict[str, Any]:
    """The options of `ns` that change a run, by option name without the dashes."""
    return {k: v for k, v in sorted(vars(ns).items()) if k not in _NOT_SETTINGS}


def _check_resume(ns: argparse.Namespace) -> None:
    """Refuse, naming the option, to resume `--checkpoint` with options that differ
    from those it was written with (the library checks everything else)."""
    from ._checkpoint import read_header

    path = ns.checkpoint
    if path is None or not os.path.exists(path):
        return
    try:
        old = read_header(path)["history"]["config"].get("settings") or {}
    except ValueError as e:
        raise InputError(f"argument --checkpoint: {e}") from None
    for name, value in settings(ns).items():
        if name in old and old[name] != json.loads(json.dumps(value)):
            option = "--" + name.replace("_", "-")
            raise InputError(
                f"argument {option}: the checkpoint {path!r} was written with "
                f"{_show(option, old[name])}, this run has {_show(option, value)}: resume "
                "with the options it was written with, or give another --checkpoint file."
            )


def _show(option: str, value) -> str:
    if value is None:
        return f"{option} at its default"
    if isinstance(value, bool):
        return option if value else f"no {option}"
    if isinstance(value, (list, tuple)):
        return " ".join([option, *map(str, value)])
    return f"{option} {value}"


def _recipe_settings(ns: argparse.Namespace) -> dict[str, Any]:
    """The keywords of `recipes.method` that the command line's `ns` sets."""
    return dict(
        noise=ns.noise,
        penalty=ns.penalty,
        prune_every=ns.prune_every,
        dead_test=getattr(ns, "dead_test", "snapshot"),
        min_dead=ns.min_dead,
        sparsity=ns.sparsity,
        prune_at=ns.prune_at,
        ranking=getattr(ns, "ranking", None),
        prune_steps=getattr(ns, "prune_steps", None),
        slimming_reg=ns.slimming_reg,
    )


def build_method(
    ns: argparse.Namespace,
    name: str | None = None,
    reg: float | None = None,
    sparsity: float | None = None,
):
    """The method of a run (`recipes.method`) from the command line's `ns`; `name`,
    `reg` and `sparsity` override `ns`'s."""
    settings = _recipe_settings(ns)
    if sparsity is not None:
        settings["sparsity"] = sparsity
    reg = getattr(ns, "reg", None) if reg is None else reg  # `sweep` has `--regs`
    if reg is not None:
        settings["reg"] = reg
    return recipes.method(name or ns.method, **settings)


def build_buckets(ns: argparse.Namespace):
    """The width buckets of a run (`recipes.buckets`) from the command line's `ns`."""
    return recipes.buckets(getattr(ns, "width_buckets", 2.0))


def build_optimiser(ns: argparse.Namespace, steps: int, method: str):
    """The optimiser of a run (`recipes.optimiser`), the same for every `method`."""
    return recipes.optimiser(
        steps,
        name=ns.optimiser,
        lr=ns.lr,
        schedule=getattr(ns, "lr_schedule", "one-cycle"),
        weight_decay=ns.weight_decay,
        momentum=ns.momentum,
    )


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--noise",
        type=NON_NEGATIVE,
        default=5e-5,
        help="DemP: peak noise scale (default 5e-5, the reference's)",
    )
    p.add_argument(
        "--penalty",
        default="bn_scale_l1",
        choices=["bn_scale_l1", "bn_positive_l1", "positive_l2", "l2"],
        help="DemP: the regulariser: L1 on the BatchNorm scales (default, the reference's; "
        "DemP runs then have BatchNorm unless --no-batch-norm), L1 on the positive parts "
        "of the BatchNorm scales and shifts (with BatchNorm likewise), the squared "
        "positive part of every parameter, or L2 on the weights",
    )
    p.add_argument(
        "--prune-every",
        type=POSITIVE_INT,
        default=None,
        help="DemP: steps between prunes (default T/16)",
    )
    p.add_argument(
        "--dead-test",
        default="snapshot",
        choices=["snapshot", "window"],
        help="DemP: dead means silent on 1536 training examples in evaluation mode at the "
        "check (default, the reference's), or on every training example (at least 2048) "
        "since the last check, BatchNorm in training mode",
    )
    p.add_argument(
        "--min-dead",
        type=FRACTION,
        default=0.0,
        help="DemP: prune only once this fraction of the units left is dead (default 0)",
    )
    p.add_argument(
        "--sparsity",
        type=SPARSITY,
        default=0.5,
        help="baselines: the fraction of the units to remove (of every layer's with "
        "--ranking layer)",
    )
    p.add_argument(
        "--prune-at",
        type=COUNT,
        default=None,
        help="baselines: the step of the one prune (default 0; slimming T/2); early-snap/"
        "crops: the latest step of their prune (default T/2)",
    )
    p.add_argument(
        "--ranking",
        default=None,
        choices=["global", "layer"],
        help="baselines: rank the units of all layers together, or each layer's apart "
        "(default global for snap, crops and their early variants, layer for the others)",
    )
    p.add_argument(
        "--prune-steps",
        type=POSITIVE_INT,
        default=None,
        help="baselines: the rounds of the SNAP-it schedule (default 5 for snap and "
        "crops, 1 for the others)",
    )
    p.add_argument(
        "--slimming-reg",
        type=NON_NEGATIVE,
        default=1e-4,
        help="slimming: the strength of the L1 penalty on the BatchNorm scales",
    )
    p.add_argument("--optimiser", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=POSITIVE, default=None, help="learning rate (adamw 5e-3, sgd 0.1)")
    p.add_argument(
        "--lr-schedule",
        default="one-cycle",
        choices=["one-cycle", "cosine", "constant"],
        help="one-cycle (default: a cosine rise from lr/25 over 30%% of training, then a "
        "cosine fall to lr/2.5e5), cosine decay to 0, or constant",
    )
    p.add_argument("--momentum", type=MOMENTUM, default=0.9, help="sgd momentum")
    p.add_argument(
        "--weight-decay",
        type=NON_NEGATIVE,
        default=None,
        help="default 5e-4",
    )
    p.add_argument(
        "--width-buckets",
        type=RATIO,
        default=2.0,
        metavar="RATIO",
        help="a prune masks its units and shrinks the arrays only to widths on a grid "
        "of ratio RATIO (the initial width / RATIO**k), so the steps compile once per "
        "bucket (default 2: halvings); 0 shrinks them at every prune",
    )
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback of an input error")
    # For the commands' one-line errors, argparse's.
    p.set_defaults(parser=p)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument(
        "--data-root", default=None, help="folder of the Fashion-MNIST idx / CIFAR-10 batches"
    )
    p.add_argument("--model", default="mlp", choices=MODELS)
    p.add_argument("--widths", type=POSITIVE_INT, nargs="+", default=None, help="hidden widths")
    p.add_argument(
        "--channels",
        type=POSITIVE_INT,
        nargs="+",
        default=None,
        help="output channels of each convolution (lenet, vgg; default the model's)",
    )
    p.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="BatchNorm after every hidden layer (default: on for DemP runs with a "
        "BatchNorm --penalty and for VGG/ResNet, off otherwise)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs", type=POSITIVE_INT, default=None, help="training epochs (default 10)"
    )
    length.add_argument("--steps", type=POSITIVE_INT, default=None, help="training steps")
    p.add_argument(
        "--eval-every", type=POSITIVE_INT, default=None, help="steps (default: an epoch)"
    )
    p.add_argument("--augment", action="store_true", help="random crops (and flips for CIFAR)")
    p.add_argument(
        "--validation",
        type=PART,
        default=None,
        metavar="FRACTION",
        help="hold out this fraction of the training split (the same examples for every "
        "seed) and evaluate on it instead of the test split, to choose hyperparameters",
    )
    p.add_argument(
        "--devices",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="train data-parallel on the first N of JAX's devices, each batch split "
        "over them (default: all; --batch-size must be a multiple of N). On a CPU, "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N devices",
    )
    p.add_argument(
        "--compile-ahead",
        type=COUNT,
        default=0,
        metavar="STEPS",
        help="after a prune, train up to STEPS more steps on the old shapes (removed "
        "units zeroed) while the new ones compile in a background thread (default 0)",
    )


def add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    """`--coordinator`, `--num-processes`, `--process-id`: one process of several."""
    p.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="run as one of several processes (hosts) joined by jax.distributed: the "
        "address of process 0, with --num-processes and --process-id; start the same "
        "command in every process. 'auto' on a cluster JAX detects (SLURM, Open MPI, "
        "Cloud TPU), which sets all three itself",
    )
    p.add_argument("--num-processes", type=POSITIVE_INT, default=None, metavar="P")
    p.add_argument("--process-id", type=COUNT, default=None, metavar="I")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `python -m toolkit train`."""
    add_data_arguments(p)
    p.add_argument("--method", default="demp", choices=["dense", "demp", *BASELINES])
    p.add_argument(
        "--reg", type=NON_NEGATIVE, default=5e-2, help="DemP: peak regularisation strength"
    )
    add_method_arguments(p)
    add_distributed_arguments(p)
    p.add_argument("--checkpoint", default=None, help="checkpoint file: saved to, resumed from")
    p.add_argument("--json", default=None, help="write the training log to this JSON file")
    p.add_argument("--plot", default=None, help="plot accuracy, live units and parameters")


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `python -m toolkit sweep`."""
    add_data_arguments(p)
    p.add_argument(
        "--regs",
        type=NON_NEGATIVE,
        nargs="+",
        default=[1e-2, 3e-2, 1e-1, 3e-1],
        help="DemP's peak regularisation strengths",
    )
    p.add_argument(
        "--method", default="demp", choices=["demp", *BASELINES], help="the method swept"
    )
    p.add_argument(
        "--sparsities",
        type=SPARSITY,
        nargs="+",
        default=[0.25, 0.5, 0.75, 0.9],
        help="baselines: the sparsities swept",
    )
    p.add_argument("--no-dense", action="store_true", help="no dense baseline")
    add_method_arguments(p)
    add_distributed_arguments(p)
    p.add_argument("--json", default=None, help="write every training log to this JSON file")
    p.add_argument("--plot", default=None, help="plot test accuracy against parameters kept")


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `python -m toolkit demo`."""
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist1d"])
    p.add_argument(
        "--widths", type=POSITIVE_INT, nargs="+", default=[1024, 1024], help="MLP hidden widths"
    )
    p.add_argument("--steps", type=POSITIVE_INT, default=2000)
    p.add_argument("--eval-every", type=POSITIVE_INT, default=100)
    p.add_argument(
        "--reg", type=NON_NEGATIVE, default=3e-2, help="DemP: peak regularisation strength"
    )
    add_method_arguments(p)
    p.set_defaults(batch_size=64)
    p.add_argument("--json", default=None, help="write both training logs to this JSON file")
    p.add_argument("--plot", default="demo.png", help="plot of accuracy and live units vs step")


def init_distributed(ns: argparse.Namespace) -> None:
    """`jax.distributed.initialize` with `--coordinator`, `--num-processes` and
    `--process-id`, if given (before anything else touches JAX's devices); with
    `--coordinator auto` alone, from the cluster's environment; on CPUs with gloo
    collectives."""
    given = [getattr(ns, k, None) for k in ("coordinator", "num_processes", "process_id")]
    if all(v is None for v in given):
        return
    import jax

    if given[0] == "auto" and given[1] is None and given[2] is None:
        # SLURM, Open MPI, Cloud TPU, ...: JAX reads the cluster's own variables.
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize()
        except ValueError as e:
            raise InputError(
                "argument --coordinator: 'auto' found no cluster that JAX detects (SLURM, "
                f"Open MPI, Cloud TPU): {e} Give HOST:PORT, --num-processes and "
                "--process-id."
            ) from None
        return
    if any(v is None for v in given):
        raise InputError(
            "argument --coordinator: give --coordinator, --num-processes and --process-id together."
        )
    coordinator, n, i = given
    if i >= n:
        raise InputError(f"argument --process-id: {i} is not below --num-processes {n}.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPUs only
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=n, process_id=i)


def build_mesh(ns: argparse.Namespace):
    """The 1-D mesh of `--devices` (default: every device JAX sees, so under
    `jax.distributed` every process's)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    devices = jax.devices()
    n = len(devices) if getattr(ns, "devices", None) is None else ns.devices
    if n > len(devices):
        raise InputError(
            f"argument --devices: {n} devices asked for, but JAX sees {len(devices)} "
            f"({devices[0].platform}); on a CPU, "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n} makes {n}."
        )
    if ns.batch_size % n:
        raise InputError(
            f"argument --batch-size: {ns.batch_size} is not a multiple of the {n} devices "
            "it is split over (--devices)."
        )
    return Mesh(np.array(devices[:n]), ("data",))


def demp_batch_norm(ns: argparse.Namespace) -> bool | None:
    """`--batch-norm` as given; at its default, on when the command trains DemP with
    a penalty on BatchNorm parameters (the default, or `bn_positive_l1`: `train
    --method demp`, `sweep --method demp` and its dense baseline, `demo`'s two runs),
    so that the penalty has parameters to act on and the runs compared share one
    network; else `None`, the model's own default (`build_model`)."""
    given = getattr(ns, "batch_norm", None)
    if given is not None:
        return given
    demp = getattr(ns, "method", "demp") == "demp"
    return True if demp and getattr(ns, "penalty", None) in BN_PENALTIES else None


def _load(ns: argparse.Namespace):
    from .. import data

    kwargs: dict[str, Any] = {}
    if getattr(ns, "data_root", None) is not None:
        kwargs["root"] = ns.data_root
    try:
        dataset = data.load(ns.dataset, **kwargs)
    except (OSError, ValueError) as e:
        e.option = "--data-root" if "root" in kwargs else "--dataset"  # type: ignore[attr-defined]
        raise
    if getattr(ns, "validation", None) is not None:
        import jax.random as jr

        # A fixed key: every seed and every setting is scored on the same examples.
        dataset = data.validation_split(dataset, ns.validation, jr.key(0))
        print(
            f"evaluating on a validation split: {dataset.num_test} of the "
            f"{dataset.num_train + dataset.num_test} training examples held out; the test "
            "split is not used",
            flush=True,
        )
    return dataset


def _split(dataset) -> str:
    """The split that `dataset`'s "test" examples are: "validation" or "test"."""
    return "validation" if dataset.name.endswith(":validation") else "test"


def _summary(label: str, history: dict) -> dict[str, Any]:
    first, last = history["evaluations"][0], history["evaluations"][-1]
    return {
        "method": label,
        "test_accuracy": last["test_accuracy"],
        "params": last["params"],
        "params_kept": last["params"] / first["params"],
        "flops": last["flops"],
        "widths": last["widths"],
        "step_time": last["step_time"],
        "compilations": history["compilations"].get("train_step", 0),
    }


def _table(rows: list[dict[str, Any]], split: str = "test") -> str:
    acc = "val acc" if split == "validation" else "test acc"
    head = f"{'method':<12} {acc:>9} {'params':>10} {'kept':>7} {'FLOPs':>12} "
    head += f"{'ms/step':>8} {'compiles':>8}  widths"
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = f"{r['step_time'] * 1e3:8.2f}" if r["step_time"] is not None else f"{'-':>8}"
        lines.append(
            f"{r['method']:<12} {r['test_accuracy']:>9.4f} {r['params']:>10,} "
            f"{r['params_kept']:>7.1%} {r['flops']:>12,} {ms} {r['compilations']:>8}  "
            + " ".join(str(w) for w in r["widths"].values())
        )
    return "\n".join(lines)


def _run(ns, dataset, method_name, *, reg=None, sparsity=None, checkpoint=None, log=None):
    """Train `ns.model` (an MLP for the demo) from the seed's initialisation with one method."""

    import jax.numpy as jnp
    import jax.random as jr

    from .. import data
    from ._train import train as run

    init_key, train_key = jr.split(jr.key(ns.seed, impl="rbg"))
    batch_norm = demp_batch_norm(ns)
    if method_name == "demp" and batch_norm is False and ns.penalty in BN_PENALTIES:
        default = " (the default)" if ns.penalty == "bn_scale_l1" else ""
        raise InputError(
            f"argument --penalty: {ns.penalty}{default} acts on BatchNorm parameters, and "
            "--no-batch-norm leaves the network without any: drop --no-batch-norm, or "
            "choose --penalty positive_l2 or l2."
        )
    channels = getattr(ns, "channels", None)
    try:
        model, state = build_model(
            getattr(ns, "model", "mlp"),
            dataset.shape,
            dataset.num_classes,
            widths=tuple(ns.widths) if ns.widths else None,
            channels=tuple(channels) if channels else None,
            batch_norm=batch_norm,
            key=init_key,
            dtype=jnp.float32,  # even if the planner switched JAX to float64
        )
    except ValueError as e:
        if channels and "`channels`" in str(e):
            e.option = "--channels"  # type: ignore[attr-defined]
        raise
    if ns.batch_size > dataset.num_train:
        raise InputError(
            f"argument --batch-size: {ns.batch_size} exceeds the {dataset.num_train} "
            f"training examples of {dataset.name}."
        )
    per_epoch = dataset.num_train // ns.batch_size
    epochs = getattr(ns, "epochs", None)
    steps = ns.steps if ns.steps is not None else (10 if epochs is None else epochs) * per_epoch
    augment = None
    if getattr(ns, "augment", False):
        augment = functools.partial(data.augment, flip=ns.dataset == "cifar10")
    method = build_method(ns, method_name, reg, sparsity)
    print(
        f"{method_name}: {getattr(ns, 'model', 'mlp')} on {dataset.name} "
        f"({dataset.num_train} examples), {steps} steps of {ns.batch_size}",
        flush=True,
    )
    tic = time.perf_counter()
    try:
        _, _, history = run(
            model,
            state,
            dataset,
            method,
            optimiser=build_optimiser(ns, steps, method_name),
            steps=steps,
            batch_size=ns.batch_size,
            key=train_key,
            eval_every=ns.eval_every,
            augment=augment,
            checkpoint=checkpoint,
            log=log,
            progress=not ns.no_progress,
            mesh=build_mesh(ns),
            compile_ahead=getattr(ns, "compile_ahead", 0),
            buckets=build_buckets(ns),
            settings=settings(ns),
        )
    except ValueError as e:
        if checkpoint is not None and os.fspath(checkpoint) in str(e):
            e.option = "--checkpoint"  # type: ignore[attr-defined]
        raise
    history["wall_time"] = time.perf_counter() - tic
    return history


@reporting
def train(ns: argparse.Namespace) -> int:
    """`python -m toolkit train`: train a network on a data set, with DemP or densely;
    print a summary, write the log and a plot."""
    from ._plot import plot_histories

    check_outputs(ns)
    init_distributed(ns)
    _check_resume(ns)
    dataset = _load(ns)
    history = _run(ns, dataset, ns.method, checkpoint=ns.checkpoint, log=ns.json)
    print(_table([_summary(ns.method, history)], _split(dataset)))
    print(f"wall time {history['wall_time']:.1f} s; compilations {history['compilations']}")
    if ns.json and _writes():
        print(f"wrote {ns.json}")
    if ns.plot and _writes():
        plot_histories({ns.method: history}, ns.plot, title=f"{ns.model} on {dataset.name}")
        print(f"wrote {ns.plot}")
    return 0


def _writes() -> bool:
    """Whether this process writes files: process 0 of a `--coordinator` run."""
    import jax

    return jax.process_index() == 0


@reporting
def sweep(ns: argparse.Namespace) -> int:
    """`python -m toolkit sweep`: DemP at several regularisation strengths (and a
    dense baseline); print the accuracy–sparsity table, write the logs and a plot."""
    from ._plot import plot_tradeoff

    check_outputs(ns)
    init_distributed(ns)
    dataset = _load(ns)
    dense = None if ns.no_dense else _run(ns, dataset, "dense")
    name = getattr(ns, "method", "demp")
    if name == "demp":
        runs = {f"reg {reg:g}": _run(ns, dataset, "demp", reg=reg) for reg in ns.regs}
    else:
        runs = {f"sparsity {s:g}": _run(ns, dataset, name, sparsity=s) for s in ns.sparsities}
    rows = ([] if dense is None else [_summary("dense", dense)]) + [
        _summary(label, h) for label, h in runs.items()
    ]
    print()
    print(_table(rows, _split(dataset)))
    if ns.json and _writes():
        with open(ns.json, "w") as f:
            json.dump({"dense": dense, name: runs, "summary": rows}, f, indent=1)
        print(f"wrote {ns.json}")
    if ns.plot and _writes():
        title = f"{'DemP' if name == 'demp' else name}: {ns.model} on {dataset.name}"
        plot_tradeoff(dense, runs, ns.plot, title=title)
        print(f"wrote {ns.plot}")
    return 0


@reporting
def demo(ns: argparse.Namespace) -> int:
    """`python -m toolkit demo`: DemP against dense training of an MLP on an embedded
    data set; print a table and write a plot of accuracy and live units vs step."""
    from ._plot import plot_histories

    check_outputs(ns)
    dataset = _load(ns)
    histories = {name: _run(ns, dataset, name) for name in ("dense", "demp")}
    rows = [_summary(name, h) for name, h in histories.items()]
    print()
    print(_table(rows))
    print("wall time: " + ", ".join(f"{k} {h['wall_time']:.1f} s" for k, h in histories.items()))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"histories": histories, "summary": rows}, f, indent=1)
        print(f"wrote {ns.json}")
    if ns.plot:
        title = f"DemP vs dense: MLP {ns.widths} on {dataset.name}"
        plot_histories(histories, ns.plot, title=title)
        print(f"wrote {ns.plot}")
    return 0
