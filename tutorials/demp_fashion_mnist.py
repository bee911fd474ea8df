"""Demon Pruning of LeNet-5 on Fashion-MNIST.

This tutorial is a notebook written as a script. Demon Pruning (DemP, Dufort-Labbé et
al. 2024, arXiv 2403.07688) does not fight dying ReLU units: it breeds them, on
purpose and under control, and removes them while it trains, so that the network, and
each training step, gets smaller as training goes.

1. the data: Fashion-MNIST from Debian's `dataset-fashion-mnist` package, or, when
   it is not installed, scikit-learn's 8×8 digits, which are always there;
2. the model: LeNet-5, a `toolkit.nn.ConvNet` whose units (channels and hidden
   units) are explicit, so that `toolkit.pruning` can remove them;
3. the method: `pruning.DemP`, a strategy object holding the hyperparameters. Its
   regulariser's strength follows a one-cycle schedule whose peak `reg` is the
   sparsity knob; Gaussian noise on a schedule of the same shape goes to the
   parameters of live units only, so dead units stay dead;
4. training: `pruning.train` runs a dense baseline and DemP at a few strengths,
   pruning dead units every few hundred steps; the arrays shrink, and the training
   step recompiles, only when a layer's live units fit in half its width
   (`pruning.WidthBuckets`), the units in between held at exactly zero;
5. the trade-off: accuracy against the fraction of parameters kept, plotted.

Run it with

    python tutorials/demp_fashion_mnist.py --epochs 2 --plot demp_fashion_mnist.png

Four runs of 936 steps took 25 minutes on two busy CPU cores (seconds per run on a
GPU) and gave, on the 10000 test images (measured before width buckets, when every
prune recompiled: the compile counts are lower now):

    method          test acc  params kept  FLOPs kept  compiles  widths
    dense             0.8593       100.0%      100.0%         1  6 16 120 84
    DemP 0.01         0.8437        39.9%       90.7%        11  6 16 47 60
    DemP 0.03         0.8382        20.6%       79.2%        11  6 14 26 57
    DemP 0.1          0.8103        11.2%       48.2%        10  6 7 26 51

Without Fashion-MNIST, install it with `apt-get update && apt-get install -y
dataset-fashion-mnist`, or pass `--root` the folder holding its idx files.
`tests/pruning/test_demp_tutorial.py` runs `main(...)` on small settings and checks the
numbers it returns.
"""

import argparse

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import optax

import toolkit
from toolkit import data, nn, pruning


# %% 1. The data ---------------------------------------------------------------------
#
# `data.load("fashion_mnist")` reads the idx files that Debian's package installs. When
# they are missing it raises a `FileNotFoundError` whose message gives the install
# command: we print it and go on with the 8×8 digits, so the tutorial always runs.


def load(name="fashion_mnist", root=None):
    try:
        return data.load(name, **({} if root is None else {"root": root}))
    except FileNotFoundError as error:
        print(f"{error}\n-> Fashion-MNIST is not installed: using the embedded 8x8 digits.\n")
        return data.load("digits")


# %% 2. The model --------------------------------------------------------------------
#
# LeNet-5: two 5×5 convolutions (6 and 16 channels), each followed by a ReLU and a 2×2
# max pool, then hidden layers of 120 and 84 units. Its unit groups are "conv.0",
# "conv.1", "fc.0" and "fc.1": 226 units that may die.


def lenet(dataset, key):
    channels, height, width = dataset.shape
    return eqx.nn.make_with_state(nn.ConvNet)(
        channels,
        dataset.num_classes,
        (height, width),
        (6, 16),
        (120, 84),
        key=key,
        dtype=jnp.float32,
    )


# %% 3.–4. DemP and training ---------------------------------------------------------
#
# `pruning.train(model, state, dataset, method, ...)` is one loop for every method: a
# jitted step (cross-entropy + `method.regulariser`, the optimiser, then
# `method.transform`, here the live-only noise), an evaluation on the held-out split
# every `eval_every` steps, and, when `method.prune_at(step)`, `pruning.prune` of the
# model, its BatchNorm state and the Adam moments. Its log records the accuracy, the
# widths, the parameters, the FLOPs and the compilations at every evaluation.


def run(dataset, method, *, steps, batch_size, seed, eval_every, progress=True):
    init_key, train_key = jr.split(jr.key(seed, impl="rbg"))
    model, state = lenet(dataset, init_key)
    # Adam without weight decay: DemP's regulariser takes its place, as in the paper.
    optimiser = optax.adam(1e-3)
    _, _, history = pruning.train(
        model,
        state,
        dataset,
        method,
        optimiser=optimiser,
        steps=steps,
        batch_size=batch_size,
        key=train_key,
        eval_every=eval_every,
        progress=progress,
    )
    return history


# %% 5. The accuracy–sparsity trade-off ----------------------------------------------


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    dense = results["dense"]
    left.axhline(dense["test_accuracy"], color="k", linestyle=":", label="dense")
    xs = [100 * r["params_kept"] for r in results["demp"]]
    ys = [r["test_accuracy"] for r in results["demp"]]
    left.plot(xs, ys, "o-", label="DemP")
    for r, x, y in zip(results["demp"], xs, ys):
        left.annotate(f"reg {r['reg']:g}", (x, y), textcoords="offset points", xytext=(4, 4))
    left.set_xlabel("parameters kept (%)")
    left.set_ylabel("test accuracy")
    left.set_xscale("log")
    # Ticks at 1, 2, 3, 5 x 10^k: the kept fractions often span less than a decade.
    left.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 3, 5)))
    left.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.legend()
    for r in results["demp"]:
        steps = [e["step"] for e in r["history"]["evaluations"]]
        right.plot(
            steps, [e["params"] for e in r["history"]["evaluations"]], label=f"reg {r['reg']:g}"
        )
    right.set_xlabel("step")
    right.set_ylabel("parameters")
    right.set_yscale("log")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(history):
    first, last = history["evaluations"][0], history["evaluations"][-1]
    return {
        "test_accuracy": last["test_accuracy"],
        "params": last["params"],
        "params_kept": last["params"] / first["params"],
        "flops_kept": last["flops"] / first["flops"],
        "widths": last["widths"],
        "compilations": history["compilations"]["train_step"],
        "step_time": last["step_time"],
    }


def main(
    dataset="fashion_mnist",
    root=None,
    epochs=2,
    steps=None,
    regs=(1e-2, 3e-2, 1e-1),
    noise=1e-2,
    batch_size=128,
    prune_every=None,
    eval_every=None,
    seed=0,
    plot_path="demp_fashion_mnist.png",
    progress=True,
):
    """Run the tutorial; return its numbers in a dict (the tests check them)."""
    ds = load(dataset, root)
    per_epoch = ds.num_train // batch_size
    steps = steps or epochs * per_epoch
    eval_every = eval_every or max(1, steps // 10)
    prune_every = prune_every or max(1, steps // 10)
    print(f"{ds.name}: {ds.num_train} training images {ds.shape}, {steps} steps of {batch_size}")

    settings = dict(
        steps=steps, batch_size=batch_size, seed=seed, eval_every=eval_every, progress=progress
    )
    results = {"dataset": ds.name, "steps": steps}
    history = run(ds, pruning.Dense(), **settings)
    results["dense"] = {**summary(history), "history": history}
    results["demp"] = []
    for reg in regs:
        # LeNet-5 here has no BatchNorm, so not DemP's default penalty (the reference's
        # L1 on the BatchNorm scales): the squared positive part of every parameter,
        # with the dead-unit test of the training steps since the last check.
        method = pruning.DemP(
            reg=reg,
            noise=noise,
            penalty="positive_l2",
            prune_every=prune_every,
            dead_test=pruning.TrainingWindow(),
        )
        history = run(ds, method, **settings)
        results["demp"].append({"reg": reg, **summary(history), "history": history})

    print(
        f"\n{'method':<14} {'test acc':>9} {'params kept':>12} {'FLOPs kept':>11} "
        f"{'compiles':>9}  widths"
    )
    rows = [("dense", results["dense"])] + [(f"DemP {r['reg']:g}", r) for r in results["demp"]]
    for label, r in rows:
        print(
            f"{label:<14} {r['test_accuracy']:>9.4f} {r['params_kept']:>12.1%} "
            f"{r['flops_kept']:>11.1%} {r['compilations']:>9}  "
            + " ".join(str(w) for w in r["widths"].values())
        )
    if plot_path:
        plot(results, plot_path, f"DemP on LeNet-5, {ds.name}, {steps} steps")
        print(f"\nwrote {plot_path}")
        results["plot"] = str(plot_path)
    return results


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"])
    parser.add_argument("--root", default=None, help="folder of the Fashion-MNIST idx files")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--regs", type=float, nargs="+", default=[1e-2, 3e-2, 1e-1])
    parser.add_argument("--noise", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="demp_fashion_mnist.png")
    cli = parser.parse_args()
    main(
        dataset=cli.dataset,
        root=cli.root,
        epochs=cli.epochs,
        regs=tuple(cli.regs),
        noise=cli.noise,
        batch_size=cli.batch_size,
        seed=cli.seed,
        plot_path=cli.plot,
    )
