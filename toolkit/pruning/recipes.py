"""Build the pieces of a pruning run from plain settings: the network, the method, the
width buckets and the optimiser, as `python -m toolkit train` builds them (its options
are these keywords, and its defaults theirs).

    from toolkit.pruning import recipes

    model, state = recipes.model("mlp", (1, 8, 8), 10, widths=(1024, 1024), key=key)
    method = recipes.method("demp", reg=0.03)
    optimiser = recipes.optimiser(2000)
    history = pruning.train(model, state, dataset, method, optimiser, ...)
"""

import math
from typing import Literal

import optax


MODELS = ("mlp", "lenet", "vgg", "resnet")
# The structured-pruning baselines, by the name the command line gives them.
BASELINES = ("random", "l1norm", "slimming", "snap", "crops", "early-snap", "early-crops")


def model(
    name: str,
    shape: tuple[int, ...],
    num_classes: int,
    *,
    widths: tuple[int, ...] | None = None,
    channels: tuple[int, ...] | None = None,
    batch_norm: bool | None = None,
    key,
    dtype=None,
):
    """A `toolkit.nn` network for examples of `shape` and `num_classes` classes.

    **Arguments:**

    - `name`: `"mlp"`: `nn.MLP` with hidden `widths` (default 300, 100); `"lenet"`:
        `nn.ConvNet` (LeNet-5 layout, hidden `widths` default 120, 84); `"vgg"`:
        `nn.VGG` (`"vgg16"`, the reference's, for 32×32 images, `"small"` otherwise); `"resnet"`:
        `nn.ResNet` (ResNet-18 layout; `widths` are the stages' channels).
    - `shape`, `num_classes`: of the data set's examples and labels.
    - `widths`: see `name`.
    - `channels`: the output channels of each convolution, for `"lenet"` (default 6,
        16) and `"vgg"` (default its configuration's, which keeps its pooling layers
        where they are): a network of the widths a pruned one ended with, to train from
        scratch.
    - `batch_norm`: default off for the MLP and LeNet, on for VGG and ResNet.
    - `key`: the initialisation's PRNG key.
    - `dtype`: of the parameters (default JAX's).

    **Returns:**

    `(model, state)`.
    """
    import equinox as eqx

    from .. import nn

    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {MODELS}.")
    if channels is not None and name not in ("lenet", "vgg"):
        raise ValueError(f"`channels` sets LeNet's and VGG's convolutions, not {name!r}'s.")
    if name == "mlp":
        bn = bool(batch_norm)
        return eqx.nn.make_with_state(nn.MLP)(
            math.prod(shape), num_classes, widths or (300, 100), bn, key=key, dtype=dtype
        )
    if len(shape) != 3:
        raise ValueError(
            f"model {name!r} needs images shaped (channels, height, width), but the data set's "
            f"examples are shaped {shape}: use `--model mlp`."
        )
    in_channels, size = shape[0], shape[1:]
    if name == "lenet":
        return eqx.nn.make_with_state(nn.ConvNet)(
            in_channels,
            num_classes,
            size,
            channels=channels or (6, 16),
            hidden=widths or (120, 84),
            batch_norm=bool(batch_norm),
            key=key,
            dtype=dtype,
        )
    bn = True if batch_norm is None else batch_norm
    if name == "vgg":
        # The reference's CIFAR-10 network is VGG-16 with BatchNorm (Maxwell_demon,
        # `info=vgg16_adamw`); "small" for 8x8 or 28x28 images.
        config = nn.VGG_CONFIGS["vgg16" if min(size) >= 32 else "small"]
        if channels is not None:
            config = _with_channels(config, channels)
        return eqx.nn.make_with_state(nn.VGG)(
            in_channels, num_classes, size, config, batch_norm=bn, key=key, dtype=dtype
        )
    stages = widths or (64, 128, 256, 512)
    return eqx.nn.make_with_state(nn.ResNet)(
        in_channels, num_classes, (2,) * len(stages), stages, bn, key=key, dtype=dtype
    )


def _with_channels(config, channels: tuple[int, ...]) -> tuple:
    """`config` (a VGG configuration: channel counts and "M" for pooling) with its
    channel counts replaced, in order, by `channels`."""
    convs = [c for c in config if c != "M"]
    if len(channels) != len(convs):
        raise ValueError(
            f"`channels` has {len(channels)} entries, but this VGG has {len(convs)} convolutions."
        )
    given = iter(channels)
    return tuple(c if c == "M" else next(given) for c in config)


def method(
    name: str = "demp",
    *,
    reg: float = 5e-2,
    noise: float = 5e-5,
    penalty: str = "bn_scale_l1",
    prune_every: int | None = None,
    dead_test: Literal["snapshot", "window"] = "snapshot",
    min_dead: float = 0.0,
    sparsity: float = 0.5,
    prune_at: int | None = None,
    ranking: Literal["global", "layer"] | None = None,
    prune_steps: int | None = None,
    slimming_reg: float = 1e-4,
):
    """The pruning method `name`: `"dense"`, `"demp"` or a baseline (`"random"`,
    `"l1norm"`, `"slimming"`, `"snap"`, `"crops"`, `"early-snap"`, `"early-crops"`).

    **Arguments:**

    - `name`: the method.
    - `reg`, `noise`, `penalty`, `prune_every`, `dead_test`, `min_dead`: DemP's (see
        [`toolkit.pruning.DemP`][]; `dead_test` `"snapshot"` is
        [`toolkit.pruning.EvalSnapshot`][], `"window"`
        [`toolkit.pruning.TrainingWindow`][]).
    - `sparsity`: the baselines' fraction of units removed.
    - `prune_at`: the baselines' step of their prune (default 0; slimming T/2); for
        the early variants, the latest step of theirs.
    - `ranking`, `prune_steps`: the baselines' ranking (`"global"` or `"layer"`) and
        rounds of pruning; default each baseline's own.
    - `slimming_reg`: network slimming's L1 strength on the BatchNorm scales.

    **Returns:**

    The method, a [`toolkit.pruning.AbstractMethod`][].
    """
    from ._method import DemP, Dense

    if name == "dense":
        return Dense()
    if name in BASELINES:
        return _baseline(name, sparsity, prune_at, ranking, prune_steps, slimming_reg)
    if name != "demp":
        raise ValueError(f"unknown method {name!r}.")
    from ._dead_test import EvalSnapshot, TrainingWindow

    return DemP(
        reg=reg,
        noise=noise,
        penalty=penalty,
        prune_every=prune_every,
        dead_test=EvalSnapshot() if dead_test == "snapshot" else TrainingWindow(),
        min_dead=min_dead,
    )


def _baseline(name, sparsity, prune_at, ranking, prune_steps, slimming_reg):
    from . import _baselines as b, _early as e

    at = {} if prune_at is None else {"at_step": prune_at}
    ranked = {}
    if ranking is not None:
        ranked["ranking"] = ranking
    if prune_steps is not None:
        ranked["steps"] = prune_steps
    if name == "random":
        return b.RandomStructured(sparsity, **at, **ranked)
    if name == "l1norm":
        return b.L1Norm(sparsity, **at, **ranked)
    if name == "slimming":
        return b.NetworkSlimming(sparsity, reg=slimming_reg, **at, **ranked)
    if name in ("snap", "crops"):
        if prune_at:
            raise ValueError(f"`--method {name}` prunes at initialisation; use early-{name}.")
        return (b.SNAP if name == "snap" else b.CroPS)(sparsity, **ranked)
    latest = {} if prune_at is None else {"latest": max(prune_at, 1)}
    return (e.EarlySNAP if name == "early-snap" else e.EarlyCroPS)(sparsity, **latest, **ranked)


def buckets(ratio: float = 2.0):
    """The width buckets of a run: [`toolkit.pruning.WidthBuckets`][]`(ratio)`, or
    [`toolkit.pruning.ExactWidths`][] for `ratio` 0 (the arrays shrink at every prune).

    **Arguments:**

    - `ratio`: the ratio of consecutive bucket widths.

    **Returns:**

    The buckets.
    """
    from ._buckets import ExactWidths, WidthBuckets

    return ExactWidths() if ratio == 0 else WidthBuckets(ratio)


def optimiser(
    steps: int,
    *,
    name: Literal["adamw", "sgd"] = "adamw",
    lr: float | None = None,
    schedule: Literal["one-cycle", "cosine", "constant"] = "one-cycle",
    weight_decay: float | None = None,
    momentum: float = 0.9,
) -> optax.GradientTransformation:
    """The optimiser of a run, the same for every method of a comparison. The defaults
    are those of the DemP reference code's final runs, for every method alike
    (github.com/SimonDufLab/Maxwell_demon,
    `source/mila_cluster_scripts/controlling_overfitting.sh`, `info=vgg16_adamw`:
    `optimizer=adamw wd_param=0.0005 lr=0.005 lr_schedule=one_cycle`, the schedule
    being `optax.cosine_onecycle_schedule(training_steps, lr)`, which ends at
    `lr / 2.5e5`).

    **Arguments:**

    - `steps`: the training steps (the schedule's length).
    - `name`: AdamW or SGD with momentum.
    - `lr`: the peak learning rate; default 5e-3 for AdamW, 0.1 for SGD.
    - `schedule`: one-cycle (a cosine rise from lr/25 over 30 % of training, then a
        cosine fall), cosine decay, or constant.
    - `weight_decay`: default 5e-4.
    - `momentum`: SGD's.

    **Returns:**

    The optax transformation.
    """
    from ._method import one_cycle

    lr = lr if lr is not None else (5e-3 if name == "adamw" else 0.1)
    if schedule == "cosine":
        lr = optax.cosine_decay_schedule(lr, steps)
    elif schedule == "one-cycle":
        lr = one_cycle(lr, steps, span=1.0)
    wd = 5e-4 if weight_decay is None else weight_decay
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=momentum))
    return optax.adamw(lr, weight_decay=wd)
