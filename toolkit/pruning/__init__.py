"""Pruning by dying neurons.

A unit is dead when its output after the ReLU is zero on every example seen.
[`toolkit.pruning.dead_units`][] finds them (or accumulate [`toolkit.pruning.Activity`][]
over training), and [`toolkit.pruning.prune`][] removes them from the network, its
`eqx.nn.State`, its gradients and its optimiser state, leaving every output unchanged.
"""

from ._activity import (
    Activity as Activity,
    dead_from as dead_from,
    dead_units as dead_units,
    init_activity as init_activity,
    record_activity as record_activity,
    update_activity as update_activity,
)
from ._dead import (
    dead_from_masks as dead_from_masks,
    DeadUnits as DeadUnits,
    live_fractions as live_fractions,
)
from ._measure import count_params as count_params, flops as flops, widths as widths
from ._prune import prune as prune
