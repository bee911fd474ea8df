"""DemP against dense and the structured-pruning baselines: a 2x2 of DemP recipes (and
a fifth, L1 on the positive BatchNorm parameters), then three seeds of the best one
(issue 21; the records of the first plan, issue 5, stay in
`benchmarks/results/demp.json`).

Networks (built by `toolkit.pruning.recipes.model`, with BatchNorm): MNIST-1D, an MLP
with hidden widths 1024, 1024 (6000 steps of 128); Fashion-MNIST twice, with the
LeNet-5 ConvNet (`fashion_mnist`) and with the small VGG (`fashion_mnist_vgg`: five
3x3 convolutions of 16, 16, 32, 32, 64 channels, BatchNorm after each), 4680 steps of
128 each. LeNet-5 caps what pruning can show on a CPU: XLA's convolution of its
second layer costs about the same at 8 output channels as at 16, and at DemP's final
widths (84 % unit sparsity) a training step took 37 ms against dense's 42 (AMD EPYC,
one XLA thread, with `nn.convolve`'s first layer; the `speed` table); the VGG spends
its time in layers that shrink (82 ms a step at 52 % unit sparsity against dense's
162). Every method of a
comparison trains with one optimiser and schedule, the one `python -m toolkit train`
builds (`recipes.optimiser`: AdamW, one-cycle schedule, weight decay 5e-4), as the
DemP paper compares its methods, at the peak learning rate the `lr` experiment chose
for the data set (`comparison_lr`: the recipe's 5e-3 unless another is better for
dense beyond 2 SE on a validation split); methods are built by
`recipes.method` with the CLI's defaults (DemP: prune every T/16, evaluation-mode
snapshot dead test; SNAP and CroP-S: global ranking in 5 rounds; EarlySNAP /
EarlyCroP-S: adaptive prune time). Unit sparsity = 1 - units kept / units at the start.

Experiments (`--experiments`; the first six are the plan):

0. `lr`: dense at peak learning rates 1e-3 to 2e-2, scored on a fixed fifth of the
   training examples held out (`data.validation_split`), seeds 0, 1, 2 on MNIST-1D and
   0 on each Fashion-MNIST network. It chooses the rate of every other experiment's runs on that
   data set (`comparison_lr`); a record trained at another rate is hidden from the
   report and its run is done again (`DempStore`).
1. `grid`: each data set, seed 0. DemP in a 2x2 of (penalty: `positive_l2`, `bn_scale_l1`)
   x (peak noise: 3e-3, 5e-5) (the VGG: the two penalties at 3e-3, see `STRENGTHS`),
   and `bn_positive_l1` at 5e-5 (`CELLS`),
   each cell at the 3 regularisation strengths of the
   `STRENGTHS` table (aimed at 70 / 85 / 90 % unit sparsity; the sparsity reached is
   measured and reported), against dense and random, SNAP, CroP-S, EarlySNAP and
   EarlyCroP-S at target unit sparsities 0.7 / 0.85 / 0.9.
2. `seeds`: on MNIST-1D and Fashion-MNIST, the best DemP cell of that data set's grid
   (`best_cell`: the cell whose accuracy-sparsity curve, collapsed runs left out,
   covers the most of the aimed sparsities, then the highest mean accuracy
   interpolated at them; `--demp-cell` pins
   one for both) and every method of the grid, seeds 0, 1, 2. A data set's DemP runs
   are planned once its grid records exist: run the script again after the grid.
   Each data set chooses its own cell because the MNIST-1D MLP's choice (`bn_scale_l1`,
   noise 3e-3) does not take LeNet-5 past about 50 % unit sparsity without collapsing
   it (`STRENGTHS`).
3. `ablation`: MNIST-1D, seeds 0, 1, 2, the default recipe (`bn_scale_l1`, noise 5e-5)
   at its 3 strengths, and the same without noise (`no-noise`), with both schedules
   flat at their peak (`no-schedule`), with only the regulariser's flat (`flat-reg`),
   with only the noise's flat (`flat-noise`).
4. `scratch`: seeds 0, 1, 2: for each DemP run of the `seeds` cell, a dense
   network of the widths that run ended with (hidden units, and the convolutions'
   channels through `recipes.model(channels=)`), trained from scratch with the same
   optimiser, schedule and steps, and one with as many units, every layer keeping the
   same fraction of its width (the allocation of random pruning): is DemP's loss in
   the widths it chooses or in how it trains them (Liu et al. 2019, "Rethinking the
   value of network pruning", train pruned architectures from scratch). Planned once
   the cell is chosen; a run waits for its DemP run. MNIST-1D at every strength; on
   Fashion-MNIST (3-6 minutes a run here) the strength nearest the 85 % where DemP
   fell behind a baseline, and that baseline's final widths from scratch too (is its
   lead its allocation or its training?).
5. `speed`: DemP's training wall clock against dense, back to back: each process
   trains dense (seed s) once before its first DemP run of seed s, and every DemP
   record carries the dense times of its own process and the load average, so the
   ratio never mixes loads of different sessions. The default recipe, and the DemP
   cell of `seeds` where that is another, at the strengths aimed at 85 and 90 %, seeds
   0, 1, 2, every data set (the VGG: its cell only).
6. `dead_lr`, `dead_reg`, `dead_batch` (not in the plan; by name only): the paper's
   observations. Plain Adam, no noise, no pruning; the fraction of units dead at the
   end against the learning rate, a constant L2 penalty and the batch size.

The full plan is 359 records with the cells the grids chose (MNIST-1D `bn_scale_l1`
3e-3, Fashion-MNIST and the VGG `bn_positive_l1` 5e-5): `lr` 25; `grid` 92 (28 per
2x2, 22 for the VGG's two cells of it, the fourth strength of Fashion-MNIST's
`positive_l2` 3e-3, and `bn_positive_l1`'s 3 + 5 + 5); `seeds` 122 more (40 of them
the VGG's); `ablation` 42 more (36 when MNIST-1D's cell is the default recipe);
`scratch` 36; `speed` 42: 12 for the default recipe, and each chosen cell's strengths
aimed at 85 and 90 % and those added after the aimed ones (6 + 12 + the VGG's 12;
each process's dense run of a seed not recorded). `--plan-only` prints the count and
a time estimate.
A record is one training run, `train/DATASET/METHOD/KNOB/seed=N` (shared by the
experiments that need it: the grid's seed-0 runs are also the first seed of `seeds`
and `ablation`), `scratch/...`, `speed/...` or `dead_*/...`, written to
`benchmarks/results/demp-v2.json` (`demp-v2-quick.json` for `--quick`) atomically as
soon as it finishes; finished records are skipped on a re-run (unless `--force`), so
the plan can be spread over sessions (`--max-minutes`) and processes (`--shard I/N`,
`--jobs N`).

The report gives each accuracy with its standard error: over seeds (sd / sqrt(n)), or
for one run the binomial sqrt(p (1 - p) / n_test) (about 1.4 points on a 1000-example
test set). A baseline differs from DemP only where the accuracies differ by more than
2 SE of the difference, sqrt(SE_DemP^2 + SE_baseline^2).

    python benchmarks/demp.py --plan-only               # the plan: runs and hours
    python benchmarks/demp.py --quick                   # smoke run (a few minutes)
    python benchmarks/demp.py --experiments grid --jobs 2     # the 2x2 first
    python benchmarks/demp.py --jobs 2 --max-minutes 150      # the rest, then `speed`
    python benchmarks/demp.py --report-only --readme    # tables + README from records
    python benchmarks/demp.py --force train/mnist1d/snap      # redo matching records
    python benchmarks/demp.py --fashion-root /tmp/fm/x/usr/share/datasets/fashion-mnist

XLA runs single-threaded by default (`--threads`), as in `benchmarks/prune.py`.
`--compile-ahead K` trains up to K steps on the old shapes after a prune while the new
ones compile in a second thread (`pruning.train(compile_ahead=)`); off by default.
"""

import argparse
import collections
import dataclasses
import functools
import gc
import math
import os
import pathlib
import platform
import statistics
import sys
import time

import _provenance


THREADS = _provenance.xla_threads(sys.argv[1:])

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import optax  # noqa: E402
from _harness import arguments, forced, host, in_shard, log, Store  # noqa: E402
from _provenance import (  # noqa: E402
    machine_line,
    measured_line,
    memory_maps,
    now,
    read_json,
    replace_section,
)

from toolkit import data as tkdata, pruning  # noqa: E402
from toolkit.pruning import recipes  # noqa: E402


HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
SECTION = "## DemP: accuracy vs unit sparsity"
# The records of this plan; `demp.json` holds those of the first plan (old recipe).
STEM = "demp-v2"

PLAN = ("lr", "grid", "seeds", "ablation", "scratch", "speed")
EXPERIMENTS = (*PLAN, "dead_lr", "dead_reg", "dead_batch")
# A data set of the benchmark is a data set and the network trained on it:
# Fashion-MNIST once with LeNet-5 and once with the small VGG
# (`P["datasets"][ds]["data"]` names the data set to load).
DATASETS = ("mnist1d", "fashion_mnist", "fashion_mnist_vgg")
# The baselines of the DemP paper's comparison (l1norm and slimming are left out).
BASELINES = ("random", "snap", "crops", "early-snap", "early-crops")
# The 2x2 of DemP recipes: (penalty, peak noise). The fourth is DemP's default, the
# reference's final recipe; 3e-3 is the first plan's noise, positive_l2 its penalty.
# The fifth, after the 2x2, adds the positive parts of the BatchNorm shifts to the
# default's penalty (`pruning.bn_positive_l1`): on LeNet-5, L1 on the scales alone
# left most fully connected units constant (scale about 0, shift positive) rather than
# dead, and stopped near 50 % unit sparsity.
CELLS = (
    ("positive_l2", 3e-3),
    ("positive_l2", 5e-5),
    ("bn_scale_l1", 3e-3),
    ("bn_scale_l1", 5e-5),
    ("bn_positive_l1", 5e-5),
)
DEFAULT_CELL = ("bn_scale_l1", 5e-5)
AIMS = (0.7, 0.85, 0.9)
# The peak learning rate of the recipe (`recipes.optimiser`'s); a data set's
# comparisons train at another only where the `lr` experiment finds one better beyond
# 2 SE (`comparison_lr`).
LR = 5e-3
# DemP's peak regularisation strength per data set and cell, one per aimed unit
# sparsity (AIMS). No pilot run of the new optimiser (AdamW 5e-3 one-cycle, weight
# decay 5e-4) and dead test exists: these are guesses, to be corrected here after the
# grid (the report shows the sparsity reached, not the aim). positive_l2 at 3e-3 starts
# from the first plan (constant AdamW 1e-3, MNIST-1D: reg 0.03 / 0.1 / 0.3 reached 72 /
# 82 / 88 %); without noise that penalty reached only 45 % at reg 1 there, hence larger
# strengths at 5e-5; bn_scale_l1 from the digits demo (reg 0.1 kept 42 % of the
# parameters, 0.3 collapsed). On Fashion-MNIST the first plan reached 50 % at most.
# Corrected after the first seed of `seeds` on Fashion-MNIST (LeNet-5): positive_l2 at
# 3e-3 reached 95.6 / 98.2 / 98.2 % unit sparsity at reg 0.3 / 1 / 3 with accuracy
# 0.30 / 0.31 / 0.10, past every aim, so it now starts a decade lower. Corrected again
# after the three seeds at 0.03 / 0.1 / 0.3 reached 38 / 49 / 87 % (two of the three
# seeds at 0.3 collapsed, fc layers at 1-3 units): a cliff between 0.1 and 0.3 that the
# curve interpolated across, so 0.15 and 0.2 are now aimed at 70 and 85 % (the records
# at 0.03 and 0.1 stay on the curve). MNIST-1D corrected again for its learning rate
# of 1e-2 (`comparison_lr`): the grid's strengths at that rate reached 83-96 % at every
# strength of every cell, and 0.3 collapsed the BN-scale cells to chance; a pilot at
# seed 0 (not recorded) found positive_l2 3e-3 at 59 / 72 % (reg 0.003 / 0.01),
# positive_l2 5e-5 at 71 / 85 % (0.03 / 0.1), bn_scale_l1 3e-3 at 72 / 82 %
# (0.001 / 0.003) and bn_scale_l1 5e-5 at 73 / 80 % (0.001 / 0.003), so the strengths
# below are read off those curves (log-linear in the strength). Fashion-MNIST with
# bn_scale_l1 3e-3 (the MNIST-1D grid's choice at 1e-2): reg 0.03 / 0.1 / 0.3 reached
# 47 / 51-52 / 50 % with `fc.1` keeping 71-79 of its 84 units, and a seed-0 pilot (not
# recorded) at reg 1 and 3 collapsed LeNet-5 to chance (accuracy 0.1) at 70 / 72 %,
# `conv.0` down to 1 channel and `fc.1` still at 47 / 32 units: this penalty does not
# empty the last hidden layer before the convolutions collapse. Fashion-MNIST with
# positive_l2 3e-3 (that data set's own grid choice): no run at reg 0.2 passed 80 %
# (0.757-0.796, accuracy 0.898-0.901), while at 0.3 the seeds split between 0.708 /
# 0.894 and collapse (0.956 / 0.30, 0.942 / 0.60): 0.25, listed after the aimed
# strengths, maps the cliff between them. bn_positive_l1 5e-5 from a seed-0 pilot
# (not recorded): reg 0.03 / 0.1 / 0.3 / 1 reached 78 / 83 / 96 / 27 % unit sparsity at
# accuracy 0.915 / 0.904 / 0.61 / 0.916 (0.3 collapsed to 2 units a layer; 1 left
# most units alive: not monotone past the cliff), so 0.01 aims at 70 % and 0.2 at the
# cliff below 0.3. Its seeds then reached 0.835 at 0.1 and 0.888 at 0.2, and the
# comparison at 85 % (where two baselines sit) rested on an interpolation across that
# gap: 0.13, listed after them, puts a measured point there.
STRENGTHS = {
    "mnist1d": {
        ("positive_l2", 3e-3): (0.01, 0.03, 0.1),
        ("positive_l2", 5e-5): (0.03, 0.1, 0.3),
        ("bn_scale_l1", 3e-3): (0.001, 0.005, 0.011),
        ("bn_scale_l1", 5e-5): (0.001, 0.0065, 0.015),
        ("bn_positive_l1", 5e-5): (0.001, 0.005, 0.015),
    },
    "fashion_mnist": {
        ("positive_l2", 3e-3): (0.15, 0.2, 0.3, 0.25),
        ("positive_l2", 5e-5): (1.0, 3.0, 10.0),
        ("bn_scale_l1", 3e-3): (0.03, 0.1, 0.3),
        ("bn_scale_l1", 5e-5): (0.03, 0.1, 0.3),
        ("bn_positive_l1", 5e-5): (0.01, 0.03, 0.1, 0.2, 0.13),
    },
    # The small VGG grids the 2x2's two penalties at noise 3e-3 only: both 5e-5 cells stayed
    # below 41 % unit sparsity or collapsed on LeNet-5, and 3e-3 won on both grids
    # before. bn_scale_l1 3e-3 from a seed-0 pilot (CLI, not recorded): reg 0.03 / 0.1
    # / 0.3 reached 52.5 / 65 / 77.5 % unit sparsity at accuracy 0.911 / 0.890 / 0.844,
    # about 12.5 points per factor of 3, so 0.15 / 0.6 / 1 aim at 70 / 85 / 90 %;
    # positive_l2 3e-3 from LeNet-5's curve (60 / 77 % at 0.15 / 0.2, a cliff past
    # 0.25), spread wider because the VGG has not been run with it. bn_positive_l1 5e-5
    # (added after LeNet-5's grid chose it) at LeNet-5's strengths for 70 / 85 %, and
    # 0.003 below them: no VGG pilot. Its curve jumped from 44 % (0.01) to 85-88 %
    # (0.1), leaving the baselines' 70 % to a straight line between them; 0.03 measures
    # that stretch (added after the seed-0 and seed-1 runs). Its sparsest mean, 0.846 at
    # 0.1, stopped short of the baselines' 85 %, so none of them was compared there:
    # 0.13 (as on LeNet-5) aims past it.
    "fashion_mnist_vgg": {
        ("positive_l2", 3e-3): (0.05, 0.15, 0.3),
        ("bn_scale_l1", 3e-3): (0.15, 0.6, 1.0),
        ("bn_positive_l1", 5e-5): (0.003, 0.01, 0.1, 0.03, 0.13),
    },
}
ABLATIONS = ("no-noise", "no-schedule", "flat-reg", "flat-noise")
# `scratch`: dense networks trained from scratch with the hidden widths a DemP run of
# the `seeds` cell ended with, and with as many units spread evenly over the layers.
SCRATCH = ("demp-widths", "uniform")


def cells_of(P: dict, ds: str) -> tuple[tuple[str, float], ...]:
    """The DemP cells that data set `ds` grids, in `CELLS` order."""
    return tuple(c for c in CELLS if c in P["strengths"][ds])


def plan(quick: bool) -> dict:
    """Every setting of the benchmark; the records carry the one they ran with."""
    if quick:
        strengths = {"mnist1d": {cell: (0.3, 3.0) for cell in CELLS}}
        return {
            "mode": "quick",
            "datasets": {
                "mnist1d": dict(model="mlp", widths=(128, 128), steps=64, batch=64, eval_every=32),
            },
            "aims": (0.7, 0.9),
            "targets": (0.9,),
            "strengths": strengths,
            "grid": {"datasets": ["mnist1d"], "seeds": [0]},
            "seeds": {"datasets": ["mnist1d"], "seeds": [0, 1]},
            "ablation": {"dataset": "mnist1d", "seeds": [0], "aims": (0.9,)},
            "scratch": {"datasets": ["mnist1d"], "seeds": [0]},
            "speed": {"datasets": ["mnist1d"], "seeds": [0], "aims": (0.9,)},
            "dead": {"seeds": [0], "lrs": [1e-3, 1e-2], "l2s": [0.0, 1e-2], "batches": [16, 128]},
            "lr": {"seeds": {"mnist1d": [0]}, "lrs": [1e-3, 5e-3], "fraction": 0.2},
        }
    return {
        "mode": "full",
        "datasets": {
            "mnist1d": dict(
                model="mlp", widths=(1024, 1024), steps=6000, batch=128, eval_every=500
            ),
            "fashion_mnist": dict(
                model="lenet", widths=None, steps=4680, batch=128, eval_every=468
            ),
            "fashion_mnist_vgg": dict(
                data="fashion_mnist",
                model="vgg",
                widths=None,
                steps=4680,
                batch=128,
                eval_every=468,
            ),
        },
        "aims": AIMS,
        "targets": AIMS,  # the baselines' target unit sparsities
        "strengths": STRENGTHS,
        # Each data set chooses its own cell: the grid's choice on MNIST-1D's MLP
        # (bn_scale_l1, noise 3e-3) stops at about 50 % unit sparsity on LeNet-5 and
        # collapses it to chance beyond (see `STRENGTHS`).
        "grid": {"datasets": list(DATASETS), "seeds": [0]},
        "seeds": {"datasets": list(DATASETS), "seeds": [0, 1, 2]},
        "ablation": {"dataset": "mnist1d", "seeds": [0, 1, 2], "aims": AIMS},
        # On Fashion-MNIST (3-6 minutes a run here) only the strength of the cell that
        # `seeds` chose whose DemP runs came nearest the 85 % unit sparsity where DemP
        # fell behind a baseline (LeNet-5 0.863 at 0.13, the VGG 0.846 at 0.1, seeds 0-2).
        "scratch": {
            "datasets": list(DATASETS),
            "seeds": [0, 1, 2],
            "strengths": {
                "fashion_mnist": {("bn_positive_l1", 5e-5): (0.13,)},
                "fashion_mnist_vgg": {("bn_positive_l1", 5e-5): (0.1,)},
            },
            # ... and the final widths of a baseline that beat DemP there, from scratch
            # too: is its lead its allocation or its training? (The VGG's random lead
            # is the uniform allocation's; SNAP's and CroP-S's both rank globally.)
            "baselines": {
                "fashion_mnist": ("early-crops", 0.85),
                "fashion_mnist_vgg": ("crops", 0.85),
            },
        },
        "speed": {"datasets": list(DATASETS), "seeds": [0, 1, 2], "aims": (0.85, 0.9)},
        # The learning rate of every method, checked once for dense on a validation
        # split (a fixed fifth of the training examples), the test split unseen; on
        # MNIST-1D (800 held-out examples, SE about 1.6 points) with 3 seeds.
        "lr": {
            "seeds": {"mnist1d": [0, 1, 2], "fashion_mnist": [0], "fashion_mnist_vgg": [0]},
            "lrs": [1e-3, 2e-3, LR, 1e-2, 2e-2],
            "fraction": 0.2,
        },
        "dead": {
            "seeds": [0, 1, 2],
            "lrs": [1e-4, 1e-3, 1e-2, 3e-2],
            "l2s": [0.0, 1e-4, 1e-3, 1e-2],
            "batches": [16, 64, 256, 1024],
        },
    }


def cell_name(cell: tuple[str, float]) -> str:
    """The method name of a DemP cell, e.g. `demp.bn_scale_l1.5e-05`."""
    return f"demp.{cell[0]}.{cell[1]:g}"


def cell_of(method: str) -> tuple[str, float] | None:
    """The (penalty, noise) of a DemP cell's method name; None for another method."""
    if not method.startswith("demp."):
        return None
    _, penalty, noise = method.split(".", 2)
    return penalty, float(noise)


def scratch_name(cell: tuple[str, float], kind: str) -> str:
    """The method name of a `scratch` run after the DemP runs of `cell`, e.g.
    `scratch.positive_l2.0.003.uniform`."""
    return f"scratch.{cell[0]}.{cell[1]:g}.{kind}"


def scratch_baseline_name(method: str) -> str:
    """The method name of a `scratch` run of a baseline's final widths, e.g.
    `scratch.early-crops` (its knob is the baseline's target)."""
    return f"scratch.{method}"


def scratch_widths(R: dict, ds: str, method: str, knob, seed: int) -> dict | None:
    """The hidden widths a `scratch` run trains: those its DemP run (same cell, data
    set, strength and seed) ended with (`demp-widths`), or as many units with every
    layer keeping the same fraction of its initial width (`uniform`, at least one
    each), or for a baseline's run (`scratch_baseline_name`) those that baseline's run
    at the same target and seed ended with; None while that run is not done."""
    if method.count(".") == 1:
        source = R.get(f"train/{ds}/{method.split('.', 1)[1]}/{_knob(knob)}/seed={seed}")
        return None if source is None else dict(source["widths"])
    _, penalty, rest = method.split(".", 2)
    noise, kind = rest.rsplit(".", 1)
    source = R.get(f"train/{ds}/{cell_name((penalty, float(noise)))}/{_knob(knob)}/seed={seed}")
    if source is None:
        return None
    kept, start = source["widths"], source["config"]["initial_widths"]
    if kind == "demp-widths":
        return dict(kept)
    fraction = sum(kept.values()) / sum(start.values())
    return {name: max(1, round(fraction * w)) for name, w in start.items()}


def scratch_config(widths: dict) -> dict:
    """The `recipes.model` widths of a `scratch` run's network from its group widths:
    `widths` the hidden linear layers' (`hidden.*`, `fc.*`), and `channels` the
    convolutions' (`conv.*`) where it has any."""
    convs = tuple(w for name, w in widths.items() if name.startswith("conv."))
    out = {"widths": tuple(w for name, w in widths.items() if not name.startswith("conv."))}
    if convs:
        out["channels"] = convs
    return out


def scratch_strengths(P: dict, ds: str, cell) -> tuple:
    """The strengths of `cell` whose DemP runs `scratch` trains again from scratch on
    `ds`: all of them, or those the plan names for the data set and cell (none for a
    cell it does not name, or that the data set does not grid)."""
    named = P["scratch"].get("strengths", {}).get(ds)
    return P["strengths"][ds].get(cell, ()) if named is None else named.get(cell, ())


def _aim_of(P: dict, ds: str, cell, reg: float) -> float | None:
    """The unit sparsity that `reg` was chosen to reach for `cell` on `ds`: the aims
    in order, then None for the strengths listed after them (added to map a cliff
    or a gap between two aimed strengths)."""
    regs = P["strengths"][ds][cell]
    i = regs.index(reg) if reg in regs else len(P["aims"])
    return P["aims"][i] if i < len(P["aims"]) else None


def ablation_strengths(P: dict) -> list[float]:
    """The strengths of the default recipe that `ablation` runs: those aimed at its
    aims, on its data set."""
    regs = P["strengths"][P["ablation"]["dataset"]][DEFAULT_CELL]
    return [r for r, a in zip(regs, P["aims"]) if a in P["ablation"]["aims"]]


def _aim_text(aim: float | None) -> str:
    return "–" if aim is None else f"{aim:.2f}"


# Provenance: the machine.
# --------------------------------------------------------------------------------------


def machine() -> dict:
    m = _provenance.machine(equinox=eqx.__version__, optax=optax.__version__, threads=THREADS)
    # The machine's cores, not this process's share: a run pinned to one core (`taskset`)
    # still says what machine it ran on; its XLA uses `THREADS` threads either way.
    m["cores"] = os.cpu_count() or m["cores"]
    return m


@functools.cache
def _cpu() -> str:
    return machine()["cpu"]


def stamp() -> dict:
    """Each record's host and CPU: this project's machines share one host name, so the
    machine record kept under it describes only the last machine to write."""
    return {**host(), "cpu": _cpu()}


def cpus_line(counts: collections.Counter) -> str:
    """The README's sentence on which CPUs measured the records, given the count of
    each record's `cpu` (`None` where it has none), if more than one."""
    if len(counts) < 2:
        return ""
    parts = ", ".join(f"{cpu or 'CPU not recorded'}: {n}" for cpu, n in counts.most_common())
    return f" Records by CPU (each record's own): {parts}."


class DempStore(Store):
    """The records of one mode, showing only those trained at the learning rate their
    data set's comparisons run at now (`comparison_lr`): a record of a `train`,
    `scratch` or `speed` run at another rate (one that ran before the `lr` experiment
    chose a new one) is hidden from the report, and its run is to do again (the new
    record replaces it). Records without an `lr` field ran at `LR`."""

    def __init__(self, *args, P: dict, **kw):
        super().__init__(*args, **kw)
        self.P = P

    def all_entries(self) -> dict:
        return super().entries()

    def entries(self) -> dict:
        R = self.all_entries()
        rates = {ds: comparison_lr(R, self.P, ds)[0] for ds in DATASETS}
        return {k: v for k, v in R.items() if not _stale(k, v, rates)}


def _stale(key: str, rec: dict, rates: dict) -> bool:
    """Whether `rec` is a comparison's run at a learning rate other than `rates`'s."""
    parts = key.split("/")
    if parts[0] not in ("train", "scratch", "speed") or len(parts) < 2:
        return False
    return parts[1] in rates and rec.get("lr", LR) != rates[parts[1]]


def store_of(mode: str, force: list[str] | None, P: dict | None = None) -> DempStore:
    """The records of `mode` ("full" or "quick"), one file each, shared by `--shard`
    processes (hence the lock), each record stamped with its host; `P` (default: the
    mode's plan with LeNet-5) says which learning rate each data set runs at."""
    return DempStore(
        RESULTS / (f"{STEM}.json" if mode == "full" else f"{STEM}-{mode}.json"),
        force,
        section=("runs",),
        machine=machine,
        machine_at=("machine", platform.node()),
        stamp=stamp,
        lock=True,
        indent=1,
        P=plan(mode == "quick") if P is None else P,
    )


MAX_MAPPINGS = 20_000


# --------------------------------------------------------------------------------------
# Methods.
# --------------------------------------------------------------------------------------


class ConstantL2(pruning.AbstractMethod):
    """Plain training with a constant L2 penalty on the weights added to the loss (no
    noise, no pruning): for the dead-units-vs-regularisation observation."""

    reg: float

    def regulariser(self, model, step, total_steps):
        size = pruning.weights_l2(model)
        return jnp.asarray(self.reg, size.dtype) * size

    def transform(self, total_steps, key):
        return optax.with_extra_args_support(optax.identity())

    def prune_at(self, step, total_steps):
        return False

    def select(self, model, state, activity, batch, *, step, total_steps, key):
        return None

    def schedules(self, total_steps):
        return {}


def _flat(peak, total_steps):
    return optax.constant_schedule(peak)


def make_method(method: str, knob: float | None, steps: int, lr: float = LR):
    """(method object, optimiser) of one run. Every method but the `dead_*` experiments'
    (`l2`, `adam`) gets the CLI's optimiser and schedule, at peak learning rate `lr`."""
    if method == "l2":
        return ConstantL2(reg=knob), optax.adam(1e-3)
    if method == "adam":  # dead_lr / dead_batch: plain Adam
        return pruning.Dense(), optax.adam(1e-3 if knob is None else knob)
    optimiser = recipes.optimiser(steps, lr=lr)
    cell = cell_of(method)
    if cell is not None:
        penalty, noise = cell
        return recipes.method("demp", reg=knob, penalty=penalty, noise=noise), optimiser
    if method.startswith("demp-"):  # an ablation of the default recipe
        demp = recipes.method("demp", reg=knob)
        flat = dict(span=1.0, div_factor=1.0, final_div_factor=1.0)
        variant = {
            "demp-no-noise": dict(noise=0.0),
            "demp-no-schedule": flat,
            # The regulariser flat at its peak, the noise on its one-cycle schedule.
            "demp-flat-reg": dict(**flat, noise_schedule=pruning.one_cycle),
            "demp-flat-noise": dict(noise_schedule=_flat),
        }[method]
        return dataclasses.replace(demp, **variant), optimiser
    if method == "dense":
        return recipes.method("dense"), optimiser
    if method == "dense-lr":  # `lr`: dense at peak learning rate `knob`
        return recipes.method("dense"), recipes.optimiser(steps, lr=knob)
    return recipes.method(method, sparsity=knob), optimiser


def run_one(
    dataset,
    cfg: dict,
    method: str,
    knob,
    seed: int,
    batch: int | None = None,
    compile_ahead: int = 0,
) -> dict:
    batch = cfg["batch"] if batch is None else batch
    init_key, train_key = jr.split(jr.key(seed, impl="rbg"))
    model, state = recipes.model(
        cfg["model"],
        dataset.shape,
        dataset.num_classes,
        widths=cfg["widths"],
        channels=cfg.get("channels"),
        batch_norm=True,
        key=init_key,
        dtype=jnp.float32,
    )
    lr = cfg.get("lr", LR)
    obj, optimiser = make_method(method, knob, cfg["steps"], lr)
    tic = time.perf_counter()
    _, _, history = pruning.train(
        model,
        state,
        dataset,
        obj,
        optimiser=optimiser,
        steps=cfg["steps"],
        batch_size=batch,
        key=train_key,
        eval_every=cfg["eval_every"],
        progress=False,
        compile_ahead=compile_ahead,
    )
    wall = time.perf_counter() - tic
    evals = history["evaluations"]
    last = evals[-1]
    start_units = sum(history["config"]["initial_widths"].values())
    units = sum(last["widths"].values())
    live = sum(last["live"].values())
    steps_s, prev = 0.0, 0
    for e in evals:
        if e["step_time"] is not None:
            steps_s += e["step_time"] * (e["step"] - prev)
        prev = e["step"]
    return {
        "test_accuracy": last["test_accuracy"],
        "n_test": dataset.num_test,
        # The peak learning rate (None for the `dead_*` experiments' plain Adam).
        "lr": knob if method == "dense-lr" else None if method in ("l2", "adam") else lr,
        "unit_sparsity": 1 - units / start_units,
        "dead_fraction": 1 - live / start_units,  # removed + not firing on held-out data
        "units": units,
        "units_start": start_units,
        "widths": last["widths"],
        "params": last["params"],
        "params_start": history["config"]["initial_params"],
        "flops": last["flops"],
        "wall_s": wall,
        "steps_s": steps_s,
        "compile_s": sum(e["compile_time"] for e in evals),
        # Since def730c, `train`'s events wait for the steps dispatched before them;
        # before, DemP's prune checks booked queued steps as non-step time.
        "events_wait": True,
        "compilations": history["compilations"],
        # (step, seconds per training step since the evaluation before): the last is
        # the cost of a step at the final widths.
        "step_times": [[e["step"], e["step_time"]] for e in evals],
        "prunes": len(history["prunes"]),
        "config": {
            **cfg,
            "widths": list(cfg["widths"] or []),
            "batch": batch,
            "seed": seed,
            "compile_ahead": compile_ahead,
            "buckets": history["config"]["buckets"],
            "initial_widths": history["config"]["initial_widths"],
        },
        "method_config": history["config"]["method"],
        "optimiser": history["config"]["optimiser"],
    }


def _knob(k) -> str:
    return "-" if k is None else f"{k:g}"


def best_cell(R: dict, P: dict, ds: str, pinned: tuple[str, float] | None = None):
    """(the DemP cell that `seeds` runs on data set `ds`, or None while grid records
    are missing; a description of the choice).

    The rule: on the data set's grid runs (seed 0), each cell's accuracy is
    interpolated linearly along its (unit sparsity reached, accuracy) points at every
    aimed sparsity within the range of sparsities it reached without collapsing
    (`collapsed`, against dense's seed-0 accuracy: the report leaves collapsed runs out
    of its verdicts too); the cell covering the most aims wins, then the one with the
    highest mean of those accuracies, then the one reaching the highest sparsity.
    `pinned` (`--demp-cell`) overrides the rule.

    (Until 2026-12-05 collapsed runs counted: Fashion-MNIST's `positive_l2` 3e-3 then
    covered the aims 85 and 90 % only by interpolating from 0.757 at accuracy 0.899 to
    0.956 at 0.30, and beat `bn_positive_l1` 5e-5, which reached 0.690 / 0.850 / 0.876
    at 0.913 / 0.901 / 0.893.)"""
    if pinned is not None:
        if pinned not in cells_of(P, ds):
            name = cell_name(pinned)
            return None, f"`{name}` is pinned by `--demp-cell` but {ds} has no grid of it"
        return pinned, f"`{cell_name(pinned)}`, pinned by `--demp-cell`"
    seed = P["grid"]["seeds"][0]
    dense = R.get(f"train/{ds}/dense/-/seed={seed}")
    if dense is None:
        return None, "not chosen yet: grid records are missing"
    scores = {}
    for cell in cells_of(P, ds):
        keys = [
            f"train/{ds}/{cell_name(cell)}/{_knob(r)}/seed={seed}" for r in P["strengths"][ds][cell]
        ]
        if any(k not in R for k in keys):
            return None, "not chosen yet: grid records are missing"
        pts = [(R[k]["unit_sparsity"], R[k]["test_accuracy"]) for k in keys]
        kept = [p for p in pts if not collapsed(p[1], dense["test_accuracy"])]
        accs = [a for a in (_interp(kept, s) for s in P["aims"]) if a is not None]
        scores[cell] = (len(accs), statistics.fmean(accs) if accs else 0.0, max(pts)[0])
    cell = max(cells_of(P, ds), key=lambda c: scores[c])
    n, acc, top = scores[cell]
    why = (
        f"its curve covers {n} of the {len(P['aims'])} aimed sparsities, mean "
        f"interpolated accuracy {acc:.4f} there"
        if n
        else f"no cell's curve covers an aimed sparsity: the sparsest run, {top:.3f}"
    )
    return cell, (
        f"`{cell_name(cell)}`: {why} (rule: most aims covered by runs that did not "
        f"collapse, then mean accuracy there, then the sparsest run; seed {seed})"
    )


def best_cells(R: dict, P: dict, pinned: tuple[str, float] | None = None):
    """`best_cell` of every data set of the grid: ({data set: cell or None},
    {data set: description})."""
    chosen = {ds: best_cell(R, P, ds, pinned) for ds in P["grid"]["datasets"]}
    return {ds: c for ds, (c, _) in chosen.items()}, {ds: w for ds, (_, w) in chosen.items()}


def _every_chosen(cells: dict) -> bool:
    return all(c is not None for c in cells.values())


def runs_of(P: dict, experiments, datasets, cells: dict | None = None):
    """(key, experiment, dataset, method, knob, batch, seed) of every planned run, each
    key once (a training run serves every experiment that needs it; the first one
    named owns it), experiments in the order given, then seed, so that an interrupted
    benchmark has whole seeds done. `cells`: the DemP cell of `seeds` per data set (a
    data set's DemP runs are left out while its cell is None or missing)."""
    out, seen = [], set()
    cells = cells or {}

    def add(exp, ds, m, knob, seed, batch=None, prefix="train"):
        if ds not in datasets:
            return
        k = f"{batch}" if exp == "dead_batch" else _knob(knob)
        key = f"{prefix}/{ds}/{m}/{k}/seed={seed}"
        if key not in seen:
            seen.add(key)
            out.append((key, exp, ds, m, knob, batch, seed))

    def comparison(exp, ds, seed, cells):
        add(exp, ds, "dense", None, seed)
        for c in [c for c in cells if c in P["strengths"][ds]]:
            for r in P["strengths"][ds][c]:
                add(exp, ds, cell_name(c), r, seed)
        for m in BASELINES:
            for s in P["targets"]:
                add(exp, ds, m, s, seed)

    for exp in experiments:
        if exp == "lr":
            for ds, seeds in P["lr"]["seeds"].items():
                for seed in seeds:
                    for lr in P["lr"]["lrs"]:
                        add(exp, ds, "dense-lr", lr, seed, prefix="lr")
        elif exp == "grid":
            for seed in P["grid"]["seeds"]:
                for ds in P["grid"]["datasets"]:
                    comparison(exp, ds, seed, CELLS)
        elif exp == "seeds":
            for seed in P["seeds"]["seeds"]:
                for ds in P["seeds"]["datasets"]:
                    cell = cells.get(ds)
                    comparison(exp, ds, seed, [] if cell is None else [cell])
        elif exp == "ablation":
            ds, chosen = P["ablation"]["dataset"], ablation_strengths(P)
            for seed in P["ablation"]["seeds"]:
                for m in (cell_name(DEFAULT_CELL), *(f"demp-{a}" for a in ABLATIONS)):
                    for r in chosen:
                        add(exp, ds, m, r, seed)
        elif exp == "scratch":
            for seed in P["scratch"]["seeds"]:
                for ds in P["scratch"]["datasets"]:
                    cell = cells.get(ds)
                    regs = () if cell is None else scratch_strengths(P, ds, cell)
                    for r in regs:
                        for kind in SCRATCH:
                            add(exp, ds, scratch_name(cell, kind), r, seed, prefix="scratch")
                    if regs and ds in P["scratch"].get("baselines", {}):
                        m, target = P["scratch"]["baselines"][ds]
                        add(exp, ds, scratch_baseline_name(m), target, seed, prefix="scratch")
        elif exp == "speed":
            # The default recipe, and the cell that `seeds` compares (the one whose
            # sparsity the speed goal is about), once it is known.
            for seed in P["speed"]["seeds"]:
                for ds in P["speed"]["datasets"]:
                    cell = cells.get(ds)
                    timed = [c for c in (DEFAULT_CELL, cell) if c in cells_of(P, ds)]
                    timed = list(dict.fromkeys(timed))
                    for c in timed:
                        for r in P["strengths"][ds][c]:
                            a = _aim_of(P, ds, c, r)
                            if a is None or a in P["speed"]["aims"]:
                                add(exp, ds, cell_name(c), r, seed, prefix="speed")
        elif exp.startswith("dead_"):
            D = P["dead"]
            for seed in D["seeds"]:
                for ds in P["datasets"]:
                    if exp == "dead_lr":
                        for lr in D["lrs"]:
                            add(exp, ds, "adam", lr, seed, prefix=exp)
                    elif exp == "dead_reg":
                        for r in D["l2s"]:
                            add(exp, ds, "l2", r, seed, prefix=exp)
                    else:
                        for b in D["batches"]:
                            add(exp, ds, "adam", None, seed, batch=b, prefix=exp)
    return out


def pending(P: dict, experiments, datasets, cells: dict | None) -> int:
    """The DemP runs of `seeds` not planned yet (their data set's cell is not chosen),
    counted as if the cell were not the default recipe."""
    cells = cells or {}
    if "seeds" not in experiments:
        return 0
    some = [c for c in CELLS if c != DEFAULT_CELL][0]
    filled = {ds: cells.get(ds) or some for ds in DATASETS}
    return len(runs_of(P, experiments, datasets, filled)) - len(
        runs_of(P, experiments, datasets, cells)
    )


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def _stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _se(xs) -> tuple[float, float]:
    """Mean and standard error of the mean of two or more values."""
    return statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs))


def accuracy(recs: list[dict]) -> tuple[float, float]:
    """Mean test accuracy and its standard error: over the records' seeds, or for one
    record the binomial sqrt(p (1 - p) / n_test)."""
    if len(recs) > 1:
        return _se([r["test_accuracy"] for r in recs])
    p = recs[0]["test_accuracy"]
    return p, math.sqrt(p * (1 - p) / recs[0].get("n_test", 1000))


def sparsity(recs: list[dict]) -> tuple[float, float]:
    """Mean unit sparsity and its standard error over seeds (0 for one record)."""
    xs = [r["unit_sparsity"] for r in recs]
    return _se(xs) if len(xs) > 1 else (xs[0], 0.0)


def verdict(demp: tuple[float, float], other: tuple[float, float], who: str = "DemP") -> str:
    """DemP's (or `who`'s) (accuracy, SE) against another's: a difference is called
    only beyond 2 SE of the difference, sqrt(SE_DemP^2 + SE_other^2)."""
    d, two = demp[0] - other[0], 2 * math.hypot(demp[1], other[1])
    if abs(d) <= two:
        return f"within 2 SE ({d:+.4f}; 2 SE {two:.4f})"
    return f"**{who} {'better' if d > 0 else 'worse'}** ({d:+.4f}; 2 SE {two:.4f})"


def _interp(curve, s):
    """Linear interpolation at s of the second entry of [(sparsity, value, ...)], or
    None outside the curve's range."""
    curve = sorted(curve)
    for p0, p1 in zip(curve, curve[1:]):
        (s0, a0), (s1, a1) = p0[:2], p1[:2]
        if s0 <= s <= s1:
            return a0 if s1 == s0 else a0 + (a1 - a0) * (s - s0) / (s1 - s0)
    if len(curve) == 1 and abs(curve[0][0] - s) < 1e-9:
        return curve[0][1]
    return None


def _at(curve, s):
    """(accuracy, SE) interpolated at sparsity s on [(sparsity, accuracy, SE)], or None
    outside the curve's range."""
    acc = _interp([(c[0], c[1]) for c in curve], s)
    if acc is None:
        return None
    return acc, _interp([(c[0], c[2]) for c in curve], s)


def _records(R: dict, ds: str, seeds) -> dict:
    """(method, knob) -> the `train` records of `ds` over `seeds`."""
    g: dict = {}
    for key, v in R.items():
        prefix, d, m, k, s = key.split("/")
        if prefix == "train" and d == ds and int(s.split("=")[1]) in seeds:
            g.setdefault((m, k), []).append(v)
    return g


def _curve(g: dict, method: str) -> list[tuple[float, float, float]]:
    """(unit sparsity, accuracy, SE) of `method`'s knobs, by sparsity."""
    pts = [(sparsity(r)[0], *accuracy(r)) for (m, _), r in g.items() if m == method]
    return sorted(pts)


def _group(R: dict, exp: str, ds: str) -> dict:
    """(method, knob) -> list of records over seeds, of keys `exp/ds/...`."""
    g: dict = {}
    for key, v in R.items():
        e, d, m, k, _ = key.split("/")
        if e == exp and d == ds:
            g.setdefault((m, k), []).append(v)
    return g


def _knobs_of(g: dict, method: str) -> list[tuple[str, list[dict]]]:
    """`method`'s (knob, records over seeds) in `g`, by knob."""
    return sorted(((k, v) for (m, k), v in g.items() if m == method), key=lambda x: float(x[0]))


def _knob_order(item):
    """Dense, the DemP cells, then the baselines in `BASELINES` order; by knob."""
    (m, k), _ = item
    names = ["dense", *(cell_name(c) for c in CELLS), *BASELINES]
    return (names.index(m) if m in names else len(names), m, -1.0 if k == "-" else float(k))


def _compared(g: dict, demp: str | None = None) -> dict:
    """The records of `g` of dense, the baselines and DemP (every cell, or `demp`)."""
    return {
        (m, k): v
        for (m, k), v in g.items()
        if m == "dense" or m in BASELINES or (cell_of(m) is not None and demp in (None, m))
    }


def _mean_widths(recs: list[dict]) -> dict:
    """Each layer's units left at the end, mean over the records."""
    return {n: statistics.fmean(r["widths"][n] for r in recs) for n in recs[0]["widths"]}


def _widths_text(widths: dict) -> str:
    return ", ".join(f"{n} {w:.4g}" for n, w in widths.items())


def _grid_section(R: dict, P: dict, ds: str, choice: str, plot: bool, store) -> list[str]:
    seeds = P["grid"]["seeds"]
    g = _compared(_records(R, ds, seeds))
    if not g:
        return []
    cfg = next(iter(g.values()))[0]["config"]
    lines = [
        f"### The grid of DemP recipes on {ds} (seed {', '.join(map(str, seeds))})",
        "",
        f"{cfg['model']} {tuple(cfg['widths']) or ''}, {cfg['steps']} steps of "
        f"{cfg['batch']}; every method with the optimiser and schedule of "
        "`python -m toolkit train`. Accuracy ± SE: binomial, sqrt(p (1 - p) / n_test). "
        "The aimed sparsity is what the strength was chosen for, without a pilot run; "
        "the unit sparsity is the one reached, and the units left per layer say where"
        + (
            f" (at the start: {_widths_text(cfg['initial_widths'])})."
            if cfg.get("initial_widths")
            else "."
        ),
        "",
        "| penalty | peak noise | reg | aimed sparsity | unit sparsity | units left per layer "
        "| test accuracy ± SE | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves = {}
    for c in cells_of(P, ds):
        for r in P["strengths"][ds][c]:
            recs = g.get((cell_name(c), _knob(r)))
            if not recs:
                lines.append(
                    f"| {c[0]} | {c[1]:g} | {r:g} | {_aim_text(_aim_of(P, ds, c, r))} | – | – | – "
                    "| – |"
                )
                continue
            acc = accuracy(recs)
            lines.append(
                f"| {c[0]} | {c[1]:g} | {r:g} | {_aim_text(_aim_of(P, ds, c, r))} | "
                f"{sparsity(recs)[0]:.3f} | {_widths_text(_mean_widths(recs))} | "
                f"{acc[0]:.4f} ± {acc[1]:.4f} | {statistics.fmean(x['wall_s'] for x in recs):.1f} |"
            )
        curves[cell_name(c)] = _curve(g, cell_name(c))
    lines += ["", f"Best cell: {choice}.", ""]
    # Each baseline point against each cell's accuracy at the baseline's sparsity.
    names = [cell_name(c) for c in cells_of(P, ds)]
    lines += [
        f"Dense and the baselines at seed {seeds[0]}, and each DemP cell's accuracy interpolated "
        "at the baseline's unit sparsity (+: DemP better beyond 2 SE, −: worse, =: within "
        "2 SE; the SE of an interpolated accuracy is interpolated too):",
        "",
        "| method | target | unit sparsity | test accuracy ± SE | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for (m, k), recs in sorted(g.items(), key=_knob_order):
        if cell_of(m) is not None:
            continue
        sp, acc = sparsity(recs)[0], accuracy(recs)
        cells = []
        for n in names:
            at = _at(curves[n], sp) if curves[n] else None
            if at is None:
                cells.append("out of range")
                continue
            v = verdict(at, acc)
            sign = "=" if v.startswith("within") else ("+" if "better" in v else "−")
            cells.append(f"{at[0]:.4f} ({sign})")
        lines.append(
            f"| {m} | {k} | {sp:.3f} | {acc[0]:.4f} ± {acc[1]:.4f} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    if plot:
        pts = {m: _curve(g, m) for m in {m for m, _ in g}}
        _plot(pts, f"{ds}: the grid of DemP recipes, seed {seeds[0]}", store, f"grid-{ds}")
    figure = _figure(store, f"grid-{ds}")
    if figure.exists():
        lines += [f"![the grid on {ds}](results/{figure.name})", ""]
    return lines


def _comparison_section(R: dict, P: dict, ds: str, cell, plot: bool, store, verdicts):
    seeds = P["seeds"]["seeds"]
    demp = cell_name(cell) if cell is not None else None
    g = _compared(_records(R, ds, seeds), demp or "-")
    if not g:
        return []
    cfg = next(iter(g.values()))[0]["config"]
    lines = [
        f"### {ds}: DemP ("
        + (f"`{demp}`" if demp else "its cell not chosen yet")
        + ") against dense and every baseline, seeds "
        f"{', '.join(map(str, seeds))}",
        "",
        f"{cfg['model']} {tuple(cfg['widths']) or ''}, {cfg['steps']} steps of "
        f"{cfg['batch']}. Mean ± SE over the seeds done (a single run: the binomial SE). "
        "Each baseline is compared with DemP's accuracy interpolated along DemP's mean "
        "curve at the baseline's mean unit sparsity (the SE interpolated likewise); a "
        "difference is called only beyond 2 SE of the difference.",
        "",
        "| method | knob | seeds | unit sparsity ± SE | test accuracy ± SE | DemP at this "
        "sparsity | DemP vs this | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curve = _curve(g, demp) if demp else []
    worse, better, within, outside = [], [], [], []
    for (m, k), recs in sorted(g.items(), key=_knob_order):
        sp, acc = sparsity(recs), accuracy(recs)
        at = _at(curve, sp[0]) if curve and m != demp else None
        if m == demp or m == "dense":
            cmp = "–"
        elif at is None:
            cmp = "outside DemP's range"
            outside.append(f"{m}@{k}")
        else:
            cmp = verdict(at, acc)
            if sp[0] >= 0.5:
                (
                    within if cmp.startswith("within") else better if "better" in cmp else worse
                ).append(f"{m}@{k} ({sp[0]:.2f})")
        lines.append(
            f"| {m} | {k} | {len(recs)} | {sp[0]:.3f} ± {sp[1]:.3f} | "
            f"{acc[0]:.4f} ± {acc[1]:.4f} | "
            + ("–" if at is None else f"{at[0]:.4f} ± {at[1]:.4f}")
            + f" | {cmp} | {statistics.fmean(r['wall_s'] for r in recs):.1f} |"
        )
    lines.append("")
    # Where the units go (which layers DemP empties; LeNet's last hidden layer is the
    # question on Fashion-MNIST): every layer's width at the end, mean over seeds.
    runs = _knobs_of(g, demp)
    if runs:
        names = list(runs[0][1][0]["widths"])
        start = runs[0][1][0]["config"].get("initial_widths") or {}
        lines += [
            "Units left per layer at the end of DemP's runs (mean over seeds"
            + (
                "; " + ", ".join(f"{n}: {start[n]}" for n in names) + " at the start"
                if start
                else ""
            )
            + "):",
            "",
            "| reg | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        last = names[-1]
        kept = []  # (reg, mean units of the last hidden layer, mean unit sparsity)
        for k, recs in runs:
            widths = _mean_widths(recs)
            means = [widths[n] for n in names]
            lines.append(f"| {k} | " + " | ".join(f"{x:.1f}" for x in means) + " |")
            kept.append((k, means[-1], sparsity(recs)[0]))
        lines.append("")
        if start.get(last):
            half = next(((k, m) for k, m, _ in kept if m < start[last] / 2), None)
            sparse = [m for _, m, sp in kept if sp >= 0.8]
            lines += [
                f"The last hidden layer (`{last}`, {start[last]} units) keeps "
                f"{kept[0][1]:.1f} of them at reg {kept[0][0]}; "
                + (
                    f"the weakest reg that leaves it fewer than half is {half[0]} "
                    f"({half[1]:.1f} left)"
                    if half
                    else "no reg leaves it fewer than half"
                )
                + (
                    f"; in the runs at ≥ 80 % unit sparsity it keeps at most {max(sparse):.1f}."
                    if sparse
                    else "; no run reaches 80 % unit sparsity."
                ),
                "",
            ]
            lines += _shift_note(R, P, ds, cell, last, start[last])
            lines += _baselines_last_layer(g, last, sparse)
    if demp is None:
        verdicts.append(f"- {ds}: DemP's cell is not chosen yet; no verdict.")
    elif better or worse or within:
        ok = "MET" if not worse else "MISSED"
        verdicts.append(
            f"- {ds}, DemP ≥ every baseline within noise at every matched sparsity ≥ 50 %: "
            f"**{ok}** — DemP better beyond 2 SE at {len(better)}, within 2 SE at "
            f"{len(within)}, worse beyond 2 SE at {len(worse)}"
            + (": " + "; ".join(worse) if worse else "")
            + (f"; {len(outside)} baseline points outside DemP's range" if outside else "")
            + "."
            + (_scratch_reason(R, P, ds, cell) if worse and ds in P["scratch"]["datasets"] else "")
        )
    else:
        verdicts.append(f"- {ds}: no baseline point within DemP's sparsity range yet.")
    if curve:
        verdicts.append(_reach_verdict(g, demp, ds))
    if plot:
        pts = {m: _curve(g, m) for m in {m for m, _ in g}}
        _plot(pts, f"{ds}: DemP vs baselines (mean ± SE)", store, ds)
    figure = _figure(store, ds)
    if figure.exists():
        lines += [f"![accuracy vs sparsity on {ds}](results/{figure.name})", ""]
    return lines


def _baselines_last_layer(g: dict, last: str, demp_kept: list[float]) -> list[str]:
    """The units the baselines leave in the last hidden layer at their targets of at
    least 80 % unit sparsity (mean over seeds) with their accuracies there, beside the
    units DemP's runs at that sparsity leave (`demp_kept`): where DemP loses to a
    baseline, the line shows whether its last layer is the narrower."""
    parts = []
    for m in BASELINES:
        cells = [
            f"{statistics.fmean(r['widths'][last] for r in recs):.1f} at {k} "
            f"(accuracy {statistics.fmean(r['test_accuracy'] for r in recs):.4f})"
            for k, recs in _knobs_of(g, m)
            if float(k) >= 0.8 and all(last in r["widths"] for r in recs)
        ]
        if cells:
            parts.append(f"{m} " + ", ".join(cells))
    if not parts or not demp_kept:
        return []
    return [
        f"The baselines' `{last}` at their targets of 80 % and more (units left, mean over "
        "seeds): " + "; ".join(parts) + f". DemP's runs at ≥ 80 % keep "
        f"{min(demp_kept):.1f}-{max(demp_kept):.1f}.",
        "",
    ]


def _shift_note(R: dict, P: dict, ds: str, cell, last: str, units: int) -> list[str]:
    """Why `bn_positive_l1` empties the last hidden layer where L1 on the scales alone
    does not, with the grid's units left by the latter (seed 0)."""
    if cell is None or cell[0] != "bn_positive_l1":
        return []
    seed = P["grid"]["seeds"][0]
    left = [
        R[k]["widths"][last]
        for c in cells_of(P, ds)
        if c[0] == "bn_scale_l1"
        for r in P["strengths"][ds][c]
        if (k := f"train/{ds}/{cell_name(c)}/{_knob(r)}/seed={seed}") in R
    ]
    if not left:
        return []
    return [
        "What empties it is the penalty on the positive BatchNorm shifts "
        "(`pruning.bn_positive_l1`). Under L1 on the scales alone (`bn_scale_l1`, the "
        "default recipe), a unit whose scale reaches 0 outputs relu(shift), a constant, "
        "and stays alive while its shift is positive; this data set's grid runs of that "
        f"penalty (seed {seed}) left `{last}` {min(left)}-{max(left)} of its {units} units.",
        "",
    ]


CHANCE = 0.1  # both data sets have 10 classes


def collapsed(acc: float, dense: float) -> bool:
    """Whether a pruned network's test accuracy is no better than half way from chance
    to dense's: pruned past use, whatever its sparsity or speed."""
    return acc <= (CHANCE + dense) / 2


def _reach_verdict(g: dict, demp: str, ds: str) -> str:
    """Whether DemP reached 80 % unit sparsity at a strength none of whose runs
    collapsed (`collapsed`)."""
    dense_recs = g.get(("dense", "-"))
    dense = statistics.fmean(r["test_accuracy"] for r in dense_recs) if dense_recs else None
    rows = []
    for (m, k), recs in g.items():
        if m == demp:
            bad = 0 if dense is None else sum(collapsed(r["test_accuracy"], dense) for r in recs)
            rows.append((sparsity(recs)[0], accuracy(recs), bad, len(recs), k))
    kept = [r for r in rows if not r[2]]
    best = max(kept) if kept else None
    ok = best is not None and best[0] >= 0.8
    top = max(rows)
    text = f"- {ds}, DemP reaching ≥ 80 % unit sparsity: **{'MET' if ok else 'MISSED'}** ("
    if best is not None:
        text += (
            f"sparsest mean of a strength with no collapsed run {best[0]:.3f}, reg {best[4]}, "
            f"at test accuracy {best[1][0]:.4f} ± {best[1][1]:.4f}"
        )
    else:
        text += "every strength has a collapsed run"
    if top is not best:
        text += (
            f"; the sparsest mean, {top[0]:.3f} at reg {top[4]}, has {top[2]} of its {top[3]} "
            f"runs collapsed (test accuracy {top[1][0]:.4f} ± {top[1][1]:.4f})"
        )
    if dense is not None:
        text += (
            f"; collapsed: test accuracy no better than half way from chance ({CHANCE:g}) to "
            f"dense's ({dense:.4f})"
        )
    return text + ")."


def _speed_rows(g: dict) -> list[dict]:
    """Rows of the `speed` table, one per reg, from its records (grouped by `_group`)."""
    rows = []
    default = cell_name(DEFAULT_CELL)
    for (m, k), recs in sorted(g.items(), key=lambda x: (x[0][0] != default, float(x[0][1]))):
        ratio, ratio_sd = _stats([r["dense_wall_s"] / r["wall_s"] for r in recs])
        # Records timed before events waited for the queued steps split them wrongly.
        split = all(r.get("events_wait", False) for r in recs)
        sratio, sratio_sd = _stats([r["dense_steps_s"] / r["steps_s"] for r in recs])

        def mean(f):
            return _stats([f(r) for r in recs])[0]

        # The last epoch's steps, at the final widths (records since 'step_times').
        timed = [r for r in recs if "step_times" in r and "dense_step_times" in r]
        last = _stats([r["dense_step_times"][-1][1] / r["step_times"][-1][1] for r in timed])

        rows.append(
            {
                "method": m,
                "reg": k,
                "n": len(recs),
                "collapsed": sum(
                    collapsed(r["test_accuracy"], r["dense_test_accuracy"]) for r in recs
                ),
                "sparsity": mean(lambda r: r["unit_sparsity"]),
                "acc": mean(lambda r: r["test_accuracy"]),
                "dense_acc": mean(lambda r: r["dense_test_accuracy"]),
                "wall": mean(lambda r: r["wall_s"]),
                "steps": mean(lambda r: r["steps_s"]),
                "compile": mean(lambda r: r["compile_s"]),
                "other": mean(lambda r: r["wall_s"] - r["steps_s"] - r["compile_s"]),
                "dense_wall": mean(lambda r: r["dense_wall_s"]),
                "dense_steps": mean(lambda r: r["dense_steps_s"]),
                "ratio": ratio,
                "ratio_sd": ratio_sd,
                "sratio": sratio if split else None,
                "sratio_sd": sratio_sd,
                "last": last[0] if len(timed) == len(recs) else None,
                "last_sd": last[1],
                "last_ms": _stats([r["step_times"][-1][1] * 1e3 for r in timed])[0],
                "dense_last_ms": _stats([r["dense_step_times"][-1][1] * 1e3 for r in timed])[0],
                "split": split,
                "widths": _mean_widths(recs),
                "prunes": mean(lambda r: r["prunes"]),
                "load": mean(lambda r: r["load"][0]),
            }
        )
    return rows


def _why(row: dict) -> str:
    """A `speed` row's wall-clock speed-up, and where it comes from: the training steps
    alone against the time each run spends outside them."""
    outside = row["dense_wall"] - row["dense_steps"]
    if not row["split"]:
        return f"{row['ratio']:.2f}× ({row['n']} seeds; timed before the steps were split right)"
    return (
        f"{row['ratio']:.2f}× ({row['n']} seeds; the training steps alone {row['sratio']:.2f}×, "
        f"outside them DemP spends {row['compile'] + row['other']:.1f} s (compile "
        f"{row['compile']:.1f}, the rest of `train` {row['other']:.1f}) against dense's "
        f"{outside:.1f} s"
        + (
            ""
            if row["last"] is None
            else f"; in the last epoch, at its final widths, a DemP step took "
            f"{row['last_ms']:.1f} ms against dense's {row['dense_last_ms']:.1f} ms, "
            f"{row['last']:.2f}×: the most DemP could gain had it been that narrow from "
            "the first step"
        )
        + ")"
    )


def _pm(m, sd, fmt="{:.4f}"):
    return "–" if m is None else (fmt + " ± " + fmt).format(m, sd)


def _speed_section(R: dict, ds: str, verdicts, cell=None) -> list[str]:
    """The `speed` table of `ds` and its verdict (`cell`: the DemP cell of `seeds`, whose
    runs the verdict waits for)."""
    speed = _speed_rows(_group(R, "speed", ds))
    owed = cell is not None and not any(r["method"] == cell_name(cell) for r in speed)
    if owed:  # the table below still shows the other cells' records
        verdicts.append(
            f"- {ds}, DemP ≥ 1.5× faster training than dense at ≥ 80 % unit sparsity: "
            f"**NOT MEASURED YET** — the cell compared above, `{cell_name(cell)}`, has no "
            "`speed` record."
        )
    if not speed:
        return []
    lines = [
        f"Training wall clock on {ds}: DemP (its default recipe `{cell_name(DEFAULT_CELL)}` "
        "where the data set grids it, and the cell compared above where that is another) "
        "against dense trained back to back in the same process (experiment `speed`; "
        "mean ± sd over seeds of the per-seed ratio dense time / DemP time). `steps` = "
        "the training steps alone, `compile` = XLA compilations, `other` = the rest of "
        "DemP's `train` call; `speed-up per step, last epoch` = dense's step time over "
        "DemP's in the last epoch, when DemP has its final widths (the most it could "
        "gain had it trained at them from the first step); load = the 1-minute load "
        "average at the start of the DemP runs. Rows with `(–)` were timed before "
        "`train`'s events waited for the steps dispatched before them (def730c): their "
        "prune checks booked queued steps as their own time, so only their wall clock "
        "is shown.",
        "",
        "| DemP | reg | seeds | unit sparsity | test acc (dense) | DemP wall s (steps / "
        "compile / other) | dense wall s (steps) | speed-up (wall) | speed-up (steps only) "
        "| speed-up per step, last epoch | prunes | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in speed:
        split = (
            f"({row['steps']:.1f} / {row['compile']:.1f} / {row['other']:.1f})"
            if row["split"]
            else "(–)"
        )
        lines.append(
            f"| `{row['method']}` | {row['reg']} | {row['n']} | {row['sparsity']:.3f} | "
            f"{row['acc']:.4f} ({row['dense_acc']:.4f}) | {row['wall']:.1f} {split} | "
            f"{row['dense_wall']:.1f} ({row['dense_steps']:.1f}) | "
            f"{_pm(row['ratio'], row['ratio_sd'], '{:.2f}')} | "
            f"{_pm(row['sratio'], row['sratio_sd'], '{:.2f}')} | "
            f"{_pm(row['last'], row['last_sd'], '{:.2f}')} | {row['prunes']:.0f} | "
            f"{row['load']:.1f} |"
        )
    lines.append("")
    # A network pruned past use trains fast for nothing: its speed does not count.
    broken = [r for r in speed if r["collapsed"]]
    if broken:
        lines.append(
            "Collapsed (a run's test accuracy no better than half way from chance, 1/10, "
            "to dense's; not counted in the verdict): "
            + ", ".join(
                f"`{r['method']}` reg {r['reg']} ({r['collapsed']} of {r['n']} runs; mean "
                f"accuracy {r['acc']:.3f}; units left per layer: "
                f"{', '.join(f'{n} {w:.0f}' for n, w in r['widths'].items())})"
                for r in broken
            )
            + "."
            + (
                " A layer left with one unit passes one number to the next: the network "
                "can no longer tell the classes apart."
                if any(min(r["widths"].values()) < 1.5 for r in broken)
                else ""
            )
        )
        lines.append("")
    if owed:
        return lines
    hi = [r for r in speed if r["sparsity"] >= 0.8 and not r["collapsed"]]
    if hi:
        ok = all(r["ratio"] >= 1.5 for r in hi)
        verdicts.append(
            f"- {ds}, DemP ≥ 1.5× faster training than dense at ≥ 80 % unit sparsity: "
            f"**{'MET' if ok else 'MISSED'}** — "
            + ", ".join(f"`{r['method']}` at sparsity {r['sparsity']:.2f}: {_why(r)}" for r in hi)
            + " (total wall clock, back to back)."
            + (
                " What XLA's CPU convolutions cost at LeNet-5's pruned widths, and a step at "
                "them: section 'Convolutions on the CPU' below."
                if not ok and ds == "fashion_mnist"
                else ""
            )
        )
    else:
        kept = [r["sparsity"] for r in speed if not r["collapsed"]]
        top = f"the sparsest that did not collapse: {max(kept):.2f}" if kept else "all collapsed"
        verdicts.append(
            f"- {ds}, DemP ≥ 1.5× faster training than dense at ≥ 80 % unit sparsity: "
            f"**MISSED** — no timed DemP strength reached 80 % unit sparsity without a "
            f"collapsed run ({top})."
        )
    return lines


def _ablation_section(R: dict, P: dict) -> list[str]:
    ds, seeds = P["ablation"]["dataset"], P["ablation"]["seeds"]
    g = _records(R, ds, seeds)
    full = cell_name(DEFAULT_CELL)
    variants = [f"demp-{a}" for a in ABLATIONS]
    if not any(m in variants for m, _ in g):
        return []
    lines = [
        f"### Ablation of the default recipe on {ds} (`{full}`), seeds "
        f"{', '.join(map(str, seeds))}",
        "",
        "Each variant at full DemP's strengths: unit sparsity reached and accuracy (mean "
        "± SE over the seeds done), and, below it, the variant's accuracy interpolated "
        "at full DemP's sparsity with the verdict of full DemP against it. no-noise: "
        "noise 0; no-schedule: regulariser and noise flat at their peak; flat-reg: the "
        "regulariser flat, the noise on its one-cycle; flat-noise: the noise flat, the "
        "regulariser on its one-cycle.",
        "",
        "| reg | full DemP | " + " | ".join(a for a in ABLATIONS) + " |",
        "|---|---|" + "---|" * len(ABLATIONS),
    ]
    regs = ablation_strengths(P)
    curves = {m: _curve(g, m) for m in (full, *variants)}
    for r in regs:
        row = [f"{r:g}"]
        recs = g.get((full, _knob(r)))
        ref = (sparsity(recs)[0], accuracy(recs)) if recs else None
        for m in (full, *variants):
            v = g.get((m, _knob(r)))
            if not v:
                row.append("–")
                continue
            sp, acc = sparsity(v)[0], accuracy(v)
            cell = f"{sp:.3f}: {acc[0]:.4f} ± {acc[1]:.4f} ({len(v)})"
            if m != full and ref is not None:
                at = _at(curves[m], ref[0])
                cell += "<br>at DemP's sparsity: " + (
                    "out of range" if at is None else f"{at[0]:.4f}, {verdict(ref[1], at)}"
                )
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def _scratch_rows(R: dict, P: dict, ds: str, cell) -> list[dict]:
    """For each strength of `cell` that `scratch` ran on `ds`, over the seeds with all
    three runs: DemP's runs and the two networks trained from scratch (`demp-widths`,
    `uniform`), their accuracies and the verdicts between them."""
    rows = []
    for r in scratch_strengths(P, ds, cell):
        k = _knob(r)
        by_kind = {
            kind: {
                key.rsplit("=", 1)[1]: v
                for key, v in R.items()
                if key.startswith(f"scratch/{ds}/{scratch_name(cell, kind)}/{k}/seed=")
            }
            for kind in SCRATCH
        }
        demp = {
            key.rsplit("=", 1)[1]: v
            for key, v in R.items()
            if key.startswith(f"train/{ds}/{cell_name(cell)}/{k}/seed=")
        }
        seeds = sorted(set(demp).intersection(*by_kind.values()))
        if not seeds:
            continue
        d = [demp[x] for x in seeds]
        own = [by_kind["demp-widths"][x] for x in seeds]
        even = [by_kind["uniform"][x] for x in seeds]
        a_d, a_own, a_even = accuracy(d), accuracy(own), accuracy(even)
        rows.append(
            dict(
                reg=r,
                seeds=len(seeds),
                demp=d,
                even=even,
                a_d=a_d,
                a_own=a_own,
                a_even=a_even,
                v_own=verdict(a_d, a_own),
                v_even=verdict(a_own, a_even, "DemP's widths"),
            )
        )
    return rows


def _scratch_baseline(R: dict, P: dict, ds: str) -> dict | None:
    """The `scratch` runs of a baseline's final widths on `ds`, over the seeds with the
    baseline's own run: its accuracy, theirs, and the verdict between them; None if
    the plan names no baseline there or no run is done."""
    if ds not in P["scratch"].get("baselines", {}):
        return None
    m, target = P["scratch"]["baselines"][ds]
    k = _knob(target)
    prefix = f"scratch/{ds}/{scratch_baseline_name(m)}/{k}/seed="
    runs = {key.rsplit("=", 1)[1]: v for key, v in R.items() if key.startswith(prefix)}
    own = {x: R.get(f"train/{ds}/{m}/{k}/seed={x}") for x in runs}
    seeds = sorted(x for x in runs if own[x] is not None)
    if not seeds:
        return None
    base, scratch = [own[x] for x in seeds], [runs[x] for x in seeds]
    a_base, a_scratch = accuracy(base), accuracy(scratch)
    return dict(
        name=f"{m}@{target:g}",
        seeds=len(seeds),
        base=base,
        a_base=a_base,
        a_scratch=a_scratch,
        v=verdict(a_base, a_scratch, f"{m}@{target:g} itself"),
    )


def _scratch_baseline_text(b: dict, rows: list[dict]) -> str:
    """What a baseline's widths reached from scratch, against the baseline and against
    DemP's widths from scratch (the `rows` of `_scratch_rows`)."""
    text = (
        f"{b['name']}'s final widths (unit sparsity {sparsity(b['base'])[0]:.3f}) trained "
        f"from scratch {_pm(*b['a_scratch'])} against "
        f"{b['name']} itself {_pm(*b['a_base'])} ({b['v']}"
    )
    for x in rows:
        text += f"; against DemP's widths from scratch at reg {x['reg']:g}: " + verdict(
            b["a_scratch"], x["a_own"], f"{b['name']}'s widths"
        )
    return text + f"; {b['seeds']} seeds)"


def _scratch_reason(R: dict, P: dict, ds: str, cell) -> str:
    """Where DemP's loss to a baseline on `ds` lies, from the `scratch` runs: its widths
    trained from scratch against DemP and against the uniform allocation; "" if none."""
    rows = _scratch_rows(R, P, ds, cell)
    baseline = _scratch_baseline(R, P, ds)
    if not rows:
        return ""
    parts = [
        f"reg {x['reg']:g} (unit sparsity {sparsity(x['demp'])[0]:.3f}): DemP "
        f"{_pm(*x['a_d'])}, its widths from scratch {_pm(*x['a_own'])} ({x['v_own']}), "
        f"as many units spread evenly {_pm(*x['a_even'])} (from scratch; {x['v_even']})"
        for x in rows
    ]
    if baseline is not None:
        parts.append(_scratch_baseline_text(baseline, rows))
    return (
        " DemP's final widths trained from scratch, to tell its allocation from its "
        f"training ({ds}: DemP's final networks trained from scratch, below): "
        + "; ".join(parts)
        + ". "
        + _scratch_reading(rows, baseline)
    )


def _scratch_reading(rows: list[dict], baseline: dict | None) -> str:
    """One sentence read off the verdicts of `_scratch_reason`: is DemP's loss in its
    training, in its allocation of units, or neither beyond noise?"""
    trained_worse = [x for x in rows if "**DemP worse**" in x["v_own"]]
    if trained_worse:
        regs = ", ".join(f"{x['reg']:g}" for x in trained_worse)
        return (
            "Reading: DemP's training loses what its widths hold (its widths from scratch "
            f"beat it beyond 2 SE at reg {regs})."
        )
    if baseline is None:
        return "Reading: DemP matches its own widths from scratch within 2 SE."
    beaten = [x for x in rows if "better**" in verdict(baseline["a_scratch"], x["a_own"], "b")]
    if beaten:
        return (
            f"Reading: the loss is in the widths DemP ends with, not in its training: DemP "
            f"matches its widths from scratch within 2 SE, and {baseline['name']}'s widths "
            "from scratch beat them beyond 2 SE."
        )
    return (
        f"Reading: from scratch, DemP's widths and {baseline['name']}'s are within 2 SE of "
        "each other, and DemP of its own widths: neither its allocation nor its training "
        "accounts for the loss beyond the noise of 3 seeds."
    )


def _scratch_section(R: dict, P: dict, cells: dict) -> list[str]:
    """DemP's final networks trained from scratch, and the same number of units spread
    evenly: is DemP's loss in the widths it ends with, or in how it trains them?"""
    lines: list[str] = []
    for ds in P["scratch"]["datasets"]:
        cell = cells.get(ds)
        if cell is None:
            continue
        rows = _scratch_rows(R, P, ds, cell)
        if not rows:
            continue

        def widths(recs):
            names = list(recs[0]["widths"])
            return ", ".join(f"{statistics.fmean(x['widths'][n] for x in recs):.0f}" for n in names)

        table = [
            f"| {x['reg']:g} | {x['seeds']} | {sparsity(x['demp'])[0]:.3f} | {widths(x['demp'])} | "
            f"{_pm(*x['a_d'])} | {_pm(*x['a_own'])} | {x['v_own']} | {widths(x['even'])} | "
            f"{_pm(*x['a_even'])} | {x['v_even']} |"
            for x in rows
        ]
        same = sum("within" in x["v_own"] for x in rows)
        worse = sum("worse" in x["v_own"] for x in rows)
        even_better = sum("DemP's widths worse" in x["v_even"] for x in rows)
        n = len(rows)
        lines += [
            f"### {ds}: DemP's final networks trained from scratch",
            "",
            f"For each strength of `{cell_name(cell)}` and seed, a dense network of the "
            "widths DemP's run ended with, trained from scratch with the same optimiser, "
            "schedule and steps (`demp-widths`), and one with as many units, every layer "
            "keeping the same fraction of its initial width (`uniform`, the allocation of "
            "random pruning). Mean ± SE over the seeds; verdicts beyond 2 SE.",
            "",
            "| reg | seeds | DemP unit sparsity | DemP widths | DemP accuracy | from scratch, "
            "DemP's widths | DemP vs it | uniform widths | from scratch, uniform | "
            "DemP's widths vs uniform |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *table,
            "",
            f"Measured: DemP within 2 SE of its own widths trained from scratch at "
            f"{same} of {n} strengths (better at {n - same - worse}, worse at {worse}); the "
            f"same units spread evenly better than DemP's widths beyond 2 SE at "
            f"{even_better} of {n}.",
            "",
        ]
        baseline = _scratch_baseline(R, P, ds)
        if baseline is not None:
            lines += [
                f"A baseline that beat DemP here, from scratch too: "
                f"{_scratch_baseline_text(baseline, rows)}.",
                "",
            ]
    return lines


def _lr_means(R: dict, P: dict, ds: str) -> dict | None:
    """Peak learning rate -> dense's (validation accuracy, SE) over the `lr`
    experiment's seeds of `ds`; None until every one of its runs is done."""
    seeds = P["lr"]["seeds"].get(ds)
    if not seeds:
        return None
    means = {}
    for lr in P["lr"]["lrs"]:
        recs = [R.get(f"lr/{ds}/dense-lr/{_knob(lr)}/seed={s}") for s in seeds]
        if None in recs:
            return None
        means[lr] = accuracy(recs)
    return means


def comparison_lr(R: dict, P: dict, ds: str) -> tuple[float, str]:
    """(the peak learning rate of every method's runs on `ds`, why).

    The rule, decided on the validation split only: the recipe's `LR` unless, once
    every `lr` run of `ds` is done, the best rate for dense beats it by more than 2 SE
    of the difference; then the best."""
    means = _lr_means(R, P, ds)
    if means is None:
        return LR, f"{LR:g}, the recipe's: the `lr` experiment has not checked it on {ds}"
    best = max(means, key=lambda lr: means[lr][0])
    if LR not in means:  # a plan that does not try the recipe's rate
        return best, f"{best:g}, the best of {len(means)} on the validation split"
    if best == LR:
        return LR, f"{LR:g}, the recipe's, the best of {len(means)} on the validation split"
    diff = means[best][0] - means[LR][0]
    two_se = 2 * math.hypot(means[best][1], means[LR][1])
    if diff <= two_se:
        return LR, (
            f"{LR:g}, the recipe's, within 2 SE of the best, {best:g} "
            f"(-{diff:.4f}; 2 SE {two_se:.4f})"
        )
    return best, (
        f"{best:g}, the best, which beats the recipe's {LR:g} by {diff:.4f} (2 SE {two_se:.4f})"
    )


def _lr_section(R: dict, P: dict, verdicts: list[str]) -> list[str]:
    """Dense at each peak learning rate on the validation split, and the rate every
    comparison of the data set trains at (`comparison_lr`)."""
    lines = []
    for ds in P["lr"]["seeds"]:
        g = _group(R, "lr", ds)
        if not g:
            continue
        rows = sorted(((float(k), recs) for (_, k), recs in g.items()), key=lambda x: x[0])
        n_val = rows[0][1][0]["n_test"]
        _, why = comparison_lr(R, P, ds)
        lines += [
            f"### {ds}: the learning rate, checked once for dense on a validation split",
            "",
            f"Dense ({P['datasets'][ds]['model']}, {P['datasets'][ds]['steps']} steps of "
            f"{P['datasets'][ds]['batch']}, AdamW, one-cycle, weight decay 5e-4) at each peak "
            f"learning rate, scored on {n_val} training examples held out "
            f"(`data.validation_split`, fraction {P['lr']['fraction']}, fixed key; trained on "
            "the rest): the test split plays no part. Rule: the recipe's rate unless "
            "another beats it beyond 2 SE.",
            "",
            "Mean ± SE over the seeds done (a single run: the binomial SE).",
            "",
            "| peak learning rate | seeds | validation accuracy ± SE |",
            "|---|---|---|",
        ]
        for rate, recs in rows:
            lines.append(f"| {rate:g} | {len(recs)} | {_pm(*accuracy(recs))} |")
        lines += ["", f"Every comparison on {ds} below trains at {why}.", ""]
        if _lr_means(R, P, ds) is None:
            continue
        verdicts.append(
            f"- {ds}, one learning rate for every method, the best for dense on a "
            f"validation split: **MET**: every record reported trains at {why}."
        )
    return lines


def _dead_section(R: dict, ds: str) -> list[str]:
    lines = []
    for exp, label in (
        ("dead_lr", "learning rate"),
        ("dead_reg", "L2 strength"),
        ("dead_batch", "batch size"),
    ):
        gd = _group(R, exp, ds)
        if not gd:
            continue
        lines += [
            f"Dead units vs {label} on {ds} (plain Adam, no pruning; dead = fired on no "
            "held-out example at the end):",
            "",
            f"| {label} | seeds | dead fraction | test accuracy |",
            "|---|---|---|---|",
        ]
        for (m, k), recs in sorted(gd.items(), key=lambda x: float(x[0][1])):
            d, dsd = _stats([r["dead_fraction"] for r in recs])
            acc, accs = _stats([r["test_accuracy"] for r in recs])
            lines.append(f"| {k} | {len(recs)} | {_pm(d, dsd, '{:.3f}')} | {_pm(acc, accs)} |")
        lines.append("")
    return lines


def in_plan(R: dict, P: dict) -> dict:
    """The records of `R` that the plan `P` asks for, whichever DemP cell `seeds`
    runs: those of strengths a `STRENGTHS` table no longer lists (set aside when it
    was re-aimed) stay in the file, out of the report."""
    every = (runs_of(P, EXPERIMENTS, DATASETS, dict.fromkeys(DATASETS, c)) for c in CELLS)
    keys = {r[0] for runs in every for r in runs}
    return {k: v for k, v in R.items() if k in keys}


def report(store, P: dict, cells: dict, choices: dict, plot: bool) -> str:
    R = in_plan(store.entries(), P)
    lines = []
    for exp in PLAN:
        planned = runs_of(P, [exp], DATASETS, cells)
        done = sum(1 for r in planned if r[0] in R)
        lines.append(f"- `{exp}`: {done} of {len(planned)} records done")
    more = pending(P, PLAN, DATASETS, cells)
    lines = [
        f"Records of mode `{P['mode']}` (a record shared by two experiments counts in both):",
        "",
        *lines,
        *([f"- and {more} DemP runs of `seeds` once the grid chooses the cell"] if more else []),
        "",
    ]
    verdicts: list[str] = []
    lines += _lr_section(R, P, verdicts)
    for ds in P["grid"]["datasets"]:
        lines += _grid_section(R, P, ds, choices[ds], plot, store)
    for ds in P["seeds"]["datasets"]:
        lines += _comparison_section(R, P, ds, cells.get(ds), plot, store, verdicts)
        lines += _speed_section(R, ds, verdicts, cells.get(ds))
    lines += _ablation_section(R, P)
    lines += _scratch_section(R, P, cells)
    for ds in P["datasets"]:
        lines += _dead_section(R, ds)
    if verdicts:
        lines += ["Goals (from the measured records only):", "", *verdicts, ""]
    return "\n".join(lines)


def _figure(store, name: str) -> pathlib.Path:
    """The path of a figure of the report, next to the results file."""
    return store.path.with_name(f"{store.path.stem}-{name}.png")


def _plot(curves: dict, title: str, store, name: str) -> None:
    """Accuracy (± SE) against unit sparsity of every method in `curves`, method ->
    [(sparsity, accuracy, SE)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for m, pts in sorted(curves.items()):
        if not pts:
            continue
        xs, ys, es = zip(*sorted(pts))
        if m == "dense":
            ax.errorbar(xs, ys, yerr=es, fmt="k*", label="dense", markersize=10, capsize=3)
        else:
            demp = m.startswith("demp")
            ax.errorbar(
                xs,
                ys,
                yerr=es,
                fmt="-o" if demp else "--.",
                label=m,
                linewidth=2.2 if demp else 1,
                capsize=3,
            )
    ax.set_xlabel("unit sparsity (fraction of units removed)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out = _figure(store, name)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    log(f"wrote {out}")


def write_readme(store, table: str, command: str) -> bool:
    """Write the README section from the full plan's records; False (nothing written)
    for `--quick` and while no training record of the plan exists, so the first
    plan's section stays until then."""
    if store.path.name != f"{STEM}.json":
        log(f"README section {SECTION!r} left as is: it shows the full plan's records only.")
        return False
    R = store.entries()
    if not any(k.startswith("train/") for k in R):
        log(f"no record of this plan in {store.path}: README section {SECTION!r} left as is.")
        return False
    # The machine that measured most of the records (recorded with them).
    most = collections.Counter(v.get("host") for v in R.values()).most_common(1)[0][0]
    m = dict(store.load()["machine"].get(most) or machine())
    # The CPU most records name (the machine record holds only the last host's).
    cpus = collections.Counter(v.get("cpu") for v in R.values())
    named = [cpu for cpu, _ in cpus.most_common() if cpu is not None]
    if named:
        m["cpu"] = named[0]
    section = "\n".join(
        [
            SECTION,
            "",
            "Issue 21: DemP as its authors run it against dense training and the DemP "
            "paper's baselines (random, SNAP and CroP-S ranking units globally in 5 "
            "rounds, EarlySNAP and EarlyCroP-S at their adaptive prune time), every "
            "method with one optimiser and schedule (AdamW one-cycle, weight decay 5e-4, "
            "the peak learning rate chosen per data set for dense on a validation split); "
            "first a 2x2 of DemP recipes on each data set (and a fifth, L1 on the "
            "positive parts of the BatchNorm scales and shifts), "
            "then the best one over 3 "
            "seeds on MNIST-1D and Fashion-MNIST, the training wall clock against dense, "
            "and an ablation of the default recipe. Accuracies carry their standard "
            "error; a difference is called only beyond 2 SE. Built only from finished "
            "records; see the docstring of `benchmarks/demp.py`. (The first plan's "
            "records, old recipe, are in `benchmarks/results/demp.json`.)",
            "",
            f"Reproduce: `{command}` (results in `benchmarks/results/{store.path.name}`, "
            "resumable; the plots next to it).",
            "",
            machine_line(m, shared=" (shared)", versions={"equinox": "equinox", "optax": "optax"})
            + f" XLA on {m['threads']} thread(s)."
            + cpus_line(cpus)
            + " "
            + measured_line(R.values())
            + " Runs ran one after another on a shared machine: wall-clock ratios are noisy.",
            "",
            table,
        ]
    )
    replace_section(README, SECTION, section)
    log(f"Wrote section {SECTION!r} of {README}.")
    return True


def estimate(todo: list, R: dict, old: dict) -> tuple[float, str]:
    """Seconds the runs `todo` should take on one process: per run, the mean wall time
    of the finished records of the same data set and method family (dense, DemP, each
    baseline) of this plan, else of the first plan's (`old`; another recipe and
    optimiser), else of any of this data set; nan when nothing is known."""

    def family(m):
        return "demp" if m.startswith("demp") else m

    def means(records):
        out: dict = {}
        for key, v in records.items():
            parts = key.split("/")
            out.setdefault((parts[1], family(parts[2])), []).append(v["wall_s"])
            out.setdefault((parts[1], None), []).append(v["wall_s"])
        return {k: statistics.fmean(v) for k, v in out.items()}

    new, first = means(R), means(old)
    total, sources = 0.0, set()
    for key, exp, ds, m, *_ in todo:
        for source, table in (("this plan", new), ("the first plan", first)):
            t = table.get((ds, family(m)), table.get((ds, None)))
            if t is not None:
                break
        else:
            t, source = math.nan, "nothing"
        # A `speed` run also trains dense once per seed and process.
        total += t * (1.5 if exp == "speed" else 1) + 5
        sources.add(source)
    return total, ", ".join(sorted(sources))


def _run_shards(opts: argparse.Namespace, experiments: list[str], datasets: list[str]) -> list[str]:
    """Run `experiments` in `opts.jobs` processes of this script, `--shard i/N` each,
    and wait for them; the shards that did not exit with 0 (`"i/N (exit c)"`), none if
    all did. Their output goes to this one's."""
    import subprocess

    args = [sys.executable, str(pathlib.Path(__file__).resolve()), "--no-plot", "--no-report"]
    args += ["--experiments", ",".join(experiments), "--datasets", ",".join(datasets)]
    args += ["--threads", str(opts.threads)]
    args += ["--compile-ahead", str(opts.compile_ahead)]
    for flag, value in (
        ("--demp-cell", opts.demp_cell),
        ("--methods", opts.methods),
        ("--seeds", opts.seeds),
        ("--fashion-root", opts.fashion_root),
        ("--max-minutes", opts.max_minutes),
        ("--force", opts.force),
    ):
        if value is not None:
            args += [f"{flag}={value}"]
    if opts.quick:
        args.append("--quick")
    n = opts.jobs
    log(f"--jobs {n}: {', '.join(experiments)} in {n} shard processes")
    procs = [subprocess.Popen([*args, "--shard", f"{i}/{n}"]) for i in range(n)]
    try:
        codes = [p.wait() for p in procs]
    finally:  # interrupted: stop the shards too (each keeps the runs it finished)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
    # A shard killed by a signal exits with a negative code: not max(codes), which
    # would call it a success.
    return [f"{i}/{n} (exit {c})" for i, c in enumerate(codes) if c != 0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(parser, example="train/mnist1d/snap", quick="smoke run (a few minutes)", shard=True)
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="run nothing; print the plan's runs per experiment and a time estimate",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing; report the records"
    )
    parser.add_argument(
        "--experiments",
        default=",".join(PLAN),
        help=f"comma-separated, of {', '.join(EXPERIMENTS)} (default: {', '.join(PLAN)})",
    )
    parser.add_argument(
        "--demp-cell",
        default=None,
        metavar="PENALTY,NOISE",
        help="the DemP cell of `seeds` (e.g. bn_scale_l1,5e-5), instead of the grid's best",
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument(
        "--methods",
        default=None,
        help="only these comma-separated methods (e.g. dense,snap,demp.bn_scale_l1.5e-05; "
        "all by default)",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="only these comma-separated seeds (e.g. 0 for one seed of every experiment)",
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="start no new run after this many minutes"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="N > 1: run every experiment but `speed` in N shard processes at once (one "
        "XLA thread each; N = the cores), then `speed` alone in this process, then report",
    )
    parser.add_argument(
        "--fashion-root", default=None, help="folder of the Fashion-MNIST idx files"
    )
    parser.add_argument("--threads", type=int, default=1, help="XLA threads (default 1)")
    parser.add_argument(
        "--compile-ahead",
        type=int,
        default=0,
        metavar="STEPS",
        help="`pruning.train(compile_ahead=)`: steps trained on the old shapes while a "
        "prune's new shapes compile in a second thread (default 0: no gain measured on "
        "the 2-core machine)",
    )
    parser.add_argument("--no-plot", action="store_true")
    # The shards of `--jobs` leave the report to their parent.
    parser.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)

    P = plan(opts.quick)
    experiments = [e for e in opts.experiments.split(",") if e]
    datasets = [d for d in opts.datasets.split(",") if d]
    for e in experiments:
        if e not in EXPERIMENTS:
            parser.error(f"unknown experiment {e!r}; choose from {EXPERIMENTS}")
    for d in datasets:
        if d not in DATASETS:
            parser.error(f"unknown dataset {d!r}; choose from {DATASETS}")
    pinned = None
    if opts.demp_cell is not None:
        penalty, _, noise = opts.demp_cell.partition(",")
        try:
            pinned = (penalty, float(noise))
        except ValueError:
            pinned = None
        if pinned not in CELLS:
            parser.error(
                f"--demp-cell {opts.demp_cell!r}: choose one of "
                + ", ".join(f"{p},{n:g}" for p, n in CELLS)
            )
    store = store_of(P["mode"], forced(opts), P)
    cells, choices = best_cells(store.entries(), P, pinned)
    every = runs_of(P, EXPERIMENTS, DATASETS, {ds: c or DEFAULT_CELL for ds, c in cells.items()})
    methods = None
    if opts.methods is not None:
        methods = {m for m in opts.methods.split(",") if m}
        first = dict.fromkeys(DATASETS, CELLS[0])
        known = {r[3] for r in runs_of(P, EXPERIMENTS, DATASETS, first)} | {r[3] for r in every}
        for m in sorted(methods - known):
            parser.error(f"unknown method {m!r}; choose from {sorted(known)}")
    seeds = None
    if opts.seeds is not None:
        try:
            seeds = {int(x) for x in opts.seeds.split(",") if x}
        except ValueError:
            parser.error(f"--seeds takes comma-separated integers, got {opts.seeds!r}")
        known_seeds = {r[6] for r in every}
        for x in sorted(seeds - known_seeds):
            parser.error(f"unknown seed {x}; the plan's seeds are {sorted(known_seeds)}")
    if opts.shard is not None and "speed" in experiments:
        parser.error("--shard: the `speed` experiment's timings need the machine alone")

    def pick(cells):
        """The planned runs still to do, after the filters of the command line."""
        todo = [r for r in runs_of(P, experiments, datasets, cells) if store.todo(r[0])]
        if methods is not None:
            todo = [r for r in todo if r[3] in methods]
        if seeds is not None:
            todo = [r for r in todo if r[6] in seeds]
        return [r for r in todo if in_shard(r[0], opts.shard)]

    todo = pick(cells)
    if opts.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {opts.jobs}")
    if opts.jobs > 1 and opts.shard is not None:
        parser.error("--jobs starts its own shards: not with --shard")
    started, budget = time.perf_counter(), opts.max_minutes
    if opts.plan_only:
        for ds, choice in choices.items():
            log(f"DemP cell of `seeds` on {ds}: {choice}")
        return show_plan(P, store, cells)
    if opts.jobs > 1 and not opts.report_only:
        sharded = [e for e in experiments if e != "speed"]
        # Twice if the shards' grid records choose a cell of `seeds`: its runs then.
        for _ in range(2):
            if any(r[1] in sharded for r in todo):
                failed = _run_shards(opts, sharded, datasets)
                if failed:
                    log(f"shards failed: {', '.join(failed)}; see their output above")
                    return 1
            fresh, fresh_choices = best_cells(store.entries(), P, pinned)
            if _every_chosen(cells) or fresh == cells:
                break
            if budget is not None:  # the second round's shards get what is left
                opts.max_minutes = budget - (time.perf_counter() - started) / 60
                if opts.max_minutes <= 0:
                    break
            cells, choices = fresh, fresh_choices
            todo = pick(cells)
        opts.max_minutes = budget
        # The shards' records are in the file now: only `speed` is left to this process.
        todo = [r for r in todo if r[1] == "speed" and store.todo(r[0])]
    log(f"demp ({P['mode']}): results in {store.path}; {len(todo)} runs to do")
    for ds, choice in choices.items():
        log(f"DemP cell of `seeds` on {ds}: {choice}")

    loaded: dict = {}
    warm: set = set()
    dense_here: dict = {}  # `speed`: (dataset, seed) -> dense times in this process

    def execute(todo) -> bool:
        """Run `todo` in order; False if `--max-minutes` stopped it."""
        for i, (key, exp, ds, m, knob, b, seed) in enumerate(todo):
            elapsed = (time.perf_counter() - started) / 60
            if opts.max_minutes is not None and elapsed > opts.max_minutes:
                log(f"--max-minutes {opts.max_minutes} reached: {len(todo) - i} runs left")
                return False
            if ds not in loaded:
                name = P["datasets"][ds].get("data", ds)
                kw = (
                    {"root": opts.fashion_root}
                    if name == "fashion_mnist" and opts.fashion_root
                    else {}
                )
                try:
                    loaded[ds] = tkdata.load(name, **kw)
                except Exception as err:  # missing data set: say how to install, skip
                    log(f"cannot load {ds}: {err}")
                    loaded[ds] = None
            if loaded[ds] is None:
                continue
            if not store.todo(key):  # finished meanwhile by another process
                continue
            data_set = loaded[ds]
            if exp == "lr":  # scored on held-out training examples, never on the test split
                data_set = tkdata.validation_split(data_set, P["lr"]["fraction"], jr.key(0))
            if memory_maps() > MAX_MAPPINGS:
                # Every compiled executable holds memory mappings and Linux allows a
                # process 65530: drop them all, and warm up again (not charged).
                jax.clear_caches()
                gc.collect()
                warm.clear()
            if ds not in warm:  # first-run costs of the process, not charged to a run
                cfg0 = {**P["datasets"][ds], "steps": 10, "eval_every": 10}
                run_one(loaded[ds], cfg0, "dense", None, 0)
                warm.add(ds)
            cfg = {**P["datasets"][ds], "lr": comparison_lr(store.all_entries(), P, ds)[0]}
            run_method, run_knob = m, knob
            if exp == "scratch":
                widths = scratch_widths(store.entries(), ds, m, knob, seed)
                if widths is None:
                    log(f"  {key}: the run whose widths it trains is not done yet; skipped")
                    continue
                cfg = {**cfg, **scratch_config(widths)}
                run_method, run_knob = "dense", None
            if exp == "speed" and (ds, seed) not in dense_here:
                load = os.getloadavg()[0]
                d = run_one(loaded[ds], cfg, "dense", None, seed)
                dense_here[(ds, seed)] = {
                    "dense_wall_s": d["wall_s"],
                    "dense_steps_s": d["steps_s"],
                    "dense_compile_s": d["compile_s"],
                    "dense_step_times": d["step_times"],
                    "dense_test_accuracy": d["test_accuracy"],
                    "dense_measured": now(),
                    "dense_load": [load, os.getloadavg()[0]],
                }
                log(f"  speed: dense seed {seed} on {ds} in this process: {d['wall_s']:.1f} s")
            load = os.getloadavg()[0]
            ahead = opts.compile_ahead
            rec = run_one(data_set, cfg, run_method, run_knob, seed, batch=b, compile_ahead=ahead)
            rec.update(experiment=exp, dataset=ds, method=m, knob=knob)
            if exp == "speed":
                rec.update(dense_here[(ds, seed)], load=[load, os.getloadavg()[0]])
            store.put(key, rec)
            log(
                f"[{i + 1}/{len(todo)}] {key}: acc {rec['test_accuracy']:.4f}, unit sparsity "
                f"{rec['unit_sparsity']:.3f}, dead {rec['dead_fraction']:.3f}, "
                f"{rec['wall_s']:.1f} s"
            )
        return True

    if not opts.report_only and todo and execute(todo) and not _every_chosen(cells):
        # The grid may have chosen a cell of `seeds` now: its runs, in this process.
        fresh, fresh_choices = best_cells(store.entries(), P, pinned)
        if fresh != cells:
            for ds in fresh:
                if fresh[ds] != cells.get(ds):
                    log(f"DemP cell of `seeds` on {ds}: {fresh_choices[ds]}")
            execute(pick(fresh))

    if opts.no_report:
        return 0
    cells, choices = best_cells(store.entries(), P, pinned)
    show_plan(P, store, cells, left_only=True)
    table = report(store, P, cells, choices, plot=not opts.no_plot)
    print()
    print(table)
    if opts.readme:
        cmd = "python benchmarks/demp.py" + (" --quick" if opts.quick else "") + " --readme"
        write_readme(store, table, cmd)
    return 0


def show_plan(P: dict, store, cells: dict, left_only: bool = False) -> int:
    """Print the plan's runs per experiment (or, with `left_only`, only what is left)
    and an estimate of the time left on one process."""
    R = store.entries()
    old = (
        read_json(RESULTS / "demp.json", {"runs": {}}).get("runs", {})
        if P["mode"] == "full"
        else {}
    )
    every = runs_of(P, PLAN, DATASETS, cells)
    more = pending(P, PLAN, DATASETS, cells)
    if not left_only:
        log(
            f"The {P['mode']} plan: {len(every) + more} records"
            + (f" ({more} pending the grid)" if more else "")
            + ":"
        )
        owned: dict = {}
        for r in every:
            owned.setdefault(r[1], []).append(r)
        for exp in PLAN:
            alone = len(runs_of(P, [exp], DATASETS, cells))
            extra = pending(P, [exp], DATASETS, cells)
            log(
                f"  {exp}: {alone + extra} runs"
                + (f" ({extra} pending the grid)" if extra else "")
                + f", {len(owned.get(exp, []))} not already in an experiment before it"
            )
    left = [r for r in every if r[0] not in R]
    if not left and not more:
        log("Every planned run is done.")
        return 0
    est, source = estimate(left, R, old)
    per_run = est / len(left) if left else math.nan
    hours = (est + more * per_run) / 3600
    if math.isnan(hours):
        when = "time unknown (no finished record of a data set to time it by)"
    else:
        when = (
            f"about {hours:.1f} h on one process, about half with `--jobs 2` on two free "
            "cores (from the mean wall time of finished records of the same data set and "
            f"method, of {source})"
        )
    log(f"{len(left) + more} planned runs not done; {when}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
