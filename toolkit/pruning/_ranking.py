"""Which units a score-based prune removes: per-layer or global ranking, in one round or
in the iterative rounds of SNIP-it/SNAP-it."""

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import numpy as np
from jaxtyping import Array, Bool, Float

from ..nn import AbstractNetwork
from ._dead import dead_from_masks
from ._layout import resolve
from ._prune import prune


Ranking = Literal["global", "layer"]
RANKINGS = ("global", "layer")


def units_to_remove(sparsity: float, size: int) -> int:
    """How many of a group's `size` units a prune to `sparsity` removes:
    `round(sparsity * size)` (halves up), but never all of them."""
    return int(min(max(np.floor(sparsity * size + 0.5), 0), size - 1))


def lowest(scores: dict[str, Float[Array, " units"]], sparsity: float) -> dict[str, np.ndarray]:
    """Masks of the `units_to_remove(sparsity, size)` lowest-scoring units of every
    group (ties broken towards the lower index)."""
    return lowest_per_group(
        scores, {k: units_to_remove(sparsity, len(v)) for k, v in scores.items()}
    )


def lowest_per_group(
    scores: dict[str, Float[Array, " units"]], counts: dict[str, int]
) -> dict[str, np.ndarray]:
    """Masks of the `counts[name]` lowest-scoring units of every group (ties broken
    towards the lower index)."""
    masks = {}
    for name, score in scores.items():
        score = np.asarray(score)
        mask = np.zeros(score.shape[0], bool)
        mask[np.argsort(score, kind="stable")[: counts[name]]] = True
        masks[name] = mask
    return masks


def lowest_global(scores: dict[str, Float[Array, " units"]], count: int) -> dict[str, np.ndarray]:
    """Masks of the `count` lowest-scoring units of all groups ranked together, the
    scores compared as they are (ties broken towards the earlier group, then the lower
    index). A group that this would empty keeps its highest-scoring unit, so fewer
    than `count` units may be removed.

    As SNAP (Verdenius, Stol, Forré, 2020; github.com/StijnVerdenius/SNIP-it,
    `models/criterions/SNAP.py`, `handle_pruning`: one threshold, the top-k of every
    layer's gate saliencies concatenated; a layer left empty keeps its `argmax`) and
    the DemP authors' baselines (github.com/SimonDufLab/Maxwell_demon,
    `source/utils/scores.py`, `score_to_neuron_mask`: one percentile over all the
    scores). Neither normalises the scores per layer; SNAP divides them all by the
    loss, which does not change their order.
    """
    names = list(scores)
    flat = np.concatenate([np.asarray(scores[k]) for k in names])
    chosen = np.zeros(flat.shape[0], bool)
    chosen[np.argsort(flat, kind="stable")[: max(count, 0)]] = True
    masks, start = {}, 0
    for k in names:
        n = len(scores[k])
        mask = chosen[start : start + n].copy()
        if n and mask.all():
            mask[int(np.argmax(np.asarray(scores[k])))] = False
        masks[k] = mask
        start += n
    return masks


def iterative_sparsities(sparsity: float, steps: int, start: float = 0.5) -> list[float]:
    """The sparsity reached after each round of an iterative prune to `sparsity`.

    With `steps == 1`, or `sparsity <= start`: one round, `[sparsity]`. Otherwise the
    rounds of SNIP-it/SNAP-it (Verdenius, Stol, Forré, 2020: "Pruning via Iterative
    Ranking of Sensitivity Statistics"), halving the distance to the target each
    time,

        s_i = sparsity - (sparsity - start) * 0.5**i,   i = 0, ..., steps,

    then `sparsity` itself: `steps + 2` rounds, as
    github.com/StijnVerdenius/SNIP-it (`models/criterions/SNAPit.py`), the Early-CroP
    code's `CroPitStructured` (github.com/johnrachwan123/Early-Cropression-via-
    Gradient-Flow-Preservation) and the DemP authors' `iterative_single_shot_pruning`
    (github.com/SimonDufLab/Maxwell_demon, `source/utils/scores.py`, whose
    `sparsity <= start` guard is followed here) build it. Round `i` removes the
    fraction `(s_i - s_{i-1}) / (1 - s_{i-1})` of the units left (`s_{-1} = 0`).

    **Arguments:**

    - `sparsity`: the final fraction of units removed, in `[0, 1)`.
    - `steps`: the reference's `steps` (`pruning_steps`); 1 for one round.
    - `start`: the sparsity of the first round.

    **Returns:**

    The list of cumulative sparsities, the last equal to `sparsity`.
    """
    if steps == 1 or sparsity <= start:
        return [sparsity]
    return [sparsity - (sparsity - start) * 0.5**i for i in range(steps + 1)] + [sparsity]


def choose(
    scores: dict[str, Float[Array, " units"]],
    target: float,
    ranking: Ranking,
    initial: dict[str, int],
    removed: dict[str, int],
) -> dict[str, np.ndarray]:
    """The units one round removes so that `target` of the `initial` units are gone
    (`removed` of them already are), never the last of a group."""
    if ranking == "global":
        total = sum(initial.values())
        count = units_to_remove(target, total) - sum(removed.values())
        return lowest_global(scores, count)
    counts = {k: max(units_to_remove(target, n) - removed[k], 0) for k, n in initial.items()}
    return lowest_per_group(scores, counts)


def select_iteratively(
    model: AbstractNetwork,
    state: eqx.nn.State,
    score: Callable[[AbstractNetwork, eqx.nn.State, int], dict[str, Float[Array, " units"]]],
    sparsities: list[float],
    ranking: Ranking,
) -> dict[str, Bool[np.ndarray, " units"]]:
    """Prune in rounds, scoring the network pruned by the rounds before.

    **Arguments:**

    - `model`, `state`: the network and its `eqx.nn.State`.
    - `score`: `(model, state, round) -> scores`, the score of every unit of the
        network as pruned so far; the lowest are removed.
    - `sparsities`: the cumulative fraction of units removed after each round (of every
        group's units with `ranking="layer"`, of all units with `"global"`), as
        [`toolkit.pruning.iterative_sparsities`][] gives.
    - `ranking`: `"layer"`, each group's units ranked among themselves, or `"global"`,
        all units ranked together.

    **Returns:**

    The masks of the units removed, on `model`'s units: every group keeps at least one.
    """
    initial = resolve(model).widths
    # The index in `model` of every unit of the network pruned so far.
    index = {k: np.arange(n) for k, n in initial.items()}
    for i, target in enumerate(sparsities):
        removed = {k: initial[k] - len(index[k]) for k in initial}
        masks = choose(score(model, state, i), target, ranking, initial, removed)
        if not any(m.any() for m in masks.values()):
            continue
        index = {k: index[k][~masks[k]] for k in index}
        if i + 1 < len(sparsities):
            model, state = prune((model, state), dead_from_masks(model, masks))
    out = {}
    for k, n in initial.items():
        out[k] = np.ones(n, bool)
        out[k][index[k]] = False
    return out
