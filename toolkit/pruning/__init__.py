"""Pruning by dying neurons.

A unit is dead when its output after the ReLU is zero on every example seen.
[`toolkit.pruning.dead_units`][] finds them (or accumulate [`toolkit.pruning.Activity`][]
over training), and [`toolkit.pruning.prune`][] removes them from the network, its
`eqx.nn.State`, its gradients and its optimiser state, leaving every output unchanged.

[`toolkit.pruning.train`][] trains a network with a method, a strategy object
([`toolkit.pruning.AbstractMethod`][]): [`toolkit.pruning.Dense`][], or Demon Pruning,
[`toolkit.pruning.DemP`][], whose one-cycle regulariser and live-only noise
([`toolkit.pruning.live_noise`][]) make units die, pruned as training goes; the
arrays shrink by width buckets ([`toolkit.pruning.WidthBuckets`][]), the units in
between held at zero, so that the steps compile a few times, not at every prune. The
structured-pruning baselines prune once, to a target fraction of the units, ranked
per group or across all groups, in one round or in the iterative rounds of SNAP-it
([`toolkit.pruning.iterative_sparsities`][]): [`toolkit.pruning.RandomStructured`][],
[`toolkit.pruning.L1Norm`][], [`toolkit.pruning.NetworkSlimming`][] (after its penalty
has trained the BatchNorm scales), [`toolkit.pruning.SNAP`][] and
[`toolkit.pruning.CroPS`][] (at initialisation), [`toolkit.pruning.EarlySNAP`][] and
[`toolkit.pruning.EarlyCroPS`][] (early in training, when the Early-CroP test of
[`toolkit.pruning.early_time`][] passes).
"""

from . import recipes as recipes
from ._activity import (
    Activity as Activity,
    dead_from as dead_from,
    dead_units as dead_units,
    init_activity as init_activity,
    record_activity as record_activity,
    update_activity as update_activity,
)
from ._baselines import (
    AbstractOneShot as AbstractOneShot,
    CroPS as CroPS,
    crops_saliency as crops_saliency,
    L1Norm as L1Norm,
    NetworkSlimming as NetworkSlimming,
    RandomStructured as RandomStructured,
    SNAP as SNAP,
    snap_saliency as snap_saliency,
)
from ._buckets import (
    AbstractBuckets as AbstractBuckets,
    ExactWidths as ExactWidths,
    WidthBuckets as WidthBuckets,
)
from ._dead import (
    dead_from_masks as dead_from_masks,
    DeadUnits as DeadUnits,
    live_fractions as live_fractions,
)
from ._dead_test import (
    AbstractDeadTest as AbstractDeadTest,
    EvalSnapshot as EvalSnapshot,
    TrainingWindow as TrainingWindow,
)
from ._early import (
    AbstractEarly as AbstractEarly,
    early_time as early_time,
    EarlyCroPS as EarlyCroPS,
    EarlySNAP as EarlySNAP,
    EarlyTimeState as EarlyTimeState,
)
from ._measure import count_params as count_params, flops as flops, widths as widths
from ._method import (
    AbstractMethod as AbstractMethod,
    bn_positive_l1 as bn_positive_l1,
    bn_scale_l1 as bn_scale_l1,
    DemP as DemP,
    Dense as Dense,
    one_cycle as one_cycle,
    positive_l2 as positive_l2,
    weights_l2 as weights_l2,
)
from ._noise import (
    fired as fired,
    live_noise as live_noise,
    live_parameters as live_parameters,
    LiveNoiseState as LiveNoiseState,
)
from ._normal import hashed_normal as hashed_normal
from ._parallel import DataParallel as DataParallel
from ._plot import plot_histories as plot_histories, plot_tradeoff as plot_tradeoff
from ._prune import prune as prune
from ._ranking import iterative_sparsities as iterative_sparsities
from ._train import train as train
from ._train_state import TrainState as TrainState
from ._train_step import classification_loss as classification_loss
