"""Structured-pruning baselines as strategy objects: one prune, at a given step, of
the units with the lowest score, ranked per group or across all groups, in one round or
in the iterative rounds of SNAP-it."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._jit import filter_jit
from ..nn import AbstractNetwork
from ._baseline_scores import gate_hvp, gate_loss, ones_gates, slice_norms, slots_of
from ._dead import dead_from_masks, DeadUnits
from ._layout import resolve
from ._method import AbstractMethod, Batch, bn_scale_l1
from ._ranking import (
    iterative_sparsities,
    lowest as lowest,
    Ranking,
    RANKINGS,
    select_iteratively,
    units_to_remove as units_to_remove,
)
from ._train_step import classification_loss


def check_ranked(sparsity: float, ranking: str, steps: int) -> None:
    """`ValueError` unless `sparsity`, `ranking` and `steps` are valid."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"`sparsity` must be in [0, 1), got {sparsity}.")
    if ranking not in RANKINGS:
        raise ValueError(f"`ranking` must be one of {RANKINGS}, got {ranking!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}.")


def ranked_prune(
    score,
    model: AbstractNetwork,
    state: eqx.nn.State,
    batch: Batch,
    key: PRNGKeyArray,
    *,
    sparsity: float,
    ranking: Ranking,
    steps: int,
) -> DeadUnits:
    """The units that a prune to `sparsity` by `score(model, state, batch, key)`
    removes, in the rounds of [`toolkit.pruning.iterative_sparsities`][]`(sparsity,
    steps)`, each scoring the network pruned by the rounds before (round `i > 0` with
    the key `jr.fold_in(key, i)`)."""

    def round_score(m, s, i):
        return score(m, s, batch, key if i == 0 else jr.fold_in(key, i))

    sparsities = iterative_sparsities(sparsity, steps)
    return dead_from_masks(
        model, select_iteratively(model, state, round_score, sparsities, ranking)
    )


class AbstractOneShot(AbstractMethod):
    """A method that prunes once, at step `prune_step(total_steps)`, the units of
    lowest `score`: the `round(sparsity * size)` lowest of every group
    (`ranking="layer"`), or the `round(sparsity * total)` lowest of all the groups
    ranked together (`ranking="global"`), in `steps` rounds that each score the network
    pruned so far ([`toolkit.pruning.iterative_sparsities`][]; `steps=1`: one round).
    A group always keeps at least one unit (its best, when global ranking would empty
    it, so that slightly fewer units may go). The groups of a residual stream are
    scored jointly over every layer that writes or reads them.

    Subclasses give `score`, `regulariser` and `prune_step`; the rest is shared.
    """

    sparsity: eqx.AbstractVar[float]
    ranking: eqx.AbstractVar[Ranking]
    steps: eqx.AbstractVar[int]

    def __check_init__(self):
        check_ranked(self.sparsity, self.ranking, self.steps)

    @abc.abstractmethod
    def score(
        self, model: AbstractNetwork, state: eqx.nn.State, batch: Batch, key: PRNGKeyArray
    ) -> dict[str, Float[Array, " units"]]:
        """The score of every unit, group by group: the lowest are removed."""

    @abc.abstractmethod
    def prune_step(self, total_steps: int) -> int:
        """The step of the prune, in `[0, total_steps]`."""

    def transform(self, total_steps, key):
        return optax.with_extra_args_support(optax.identity())

    def prune_at(self, step, total_steps):
        return step == self.prune_step(total_steps)

    def select(self, model, state, activity, batch, *, step, total_steps, key) -> DeadUnits:
        return ranked_prune(
            self.score,
            model,
            state,
            batch,
            key,
            sparsity=self.sparsity,
            ranking=self.ranking,
            steps=self.steps,
        )

    def schedules(self, total_steps):
        return {}


def _check_at_step(at_step):
    if not isinstance(at_step, int) or at_step < 0:
        raise ValueError(f"`at_step` must be a non-negative int, got {at_step!r}.")


class RandomStructured(AbstractOneShot):
    """Random structured pruning: the units removed are drawn uniformly at random
    (from the key that [`toolkit.pruning.train`][] hands to `select`), in every group
    or, with `ranking="global"`, among all units.

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `at_step`: the step at which to prune (`0`: at initialisation; clipped to the end
        of training).
    - `ranking`: `"layer"` (the same fraction of every group) or `"global"`.
    - `steps`: rounds of pruning, as in [`toolkit.pruning.iterative_sparsities`][].
    """

    sparsity: float
    at_step: int = 0
    ranking: Ranking = "layer"
    steps: int = 1

    def __check_init__(self):
        _check_at_step(self.at_step)

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def prune_step(self, total_steps):
        return min(self.at_step, total_steps)

    def score(self, model, state, batch, key):
        widths = resolve(model).widths
        return {k: jr.uniform(jr.fold_in(key, i), (n,)) for i, (k, n) in enumerate(widths.items())}


def _l1(rows):
    return jnp.sum(jnp.abs(rows), axis=1)


class L1Norm(AbstractOneShot):
    """L1-norm filter pruning (Li, Kadav, Durdanovic, Samet, Graf, 2017: "Pruning
    Filters for Efficient ConvNets"): the units whose incoming weights (their rows of
    the layers that produce them; all of them, summed, for a residual stream) have
    the smallest L1 norm are removed. Biases and BatchNorm parameters do not count.

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `at_step`: the step at which to prune; training continues on the pruned
        network (pre-training, pruning, then fine-tuning, in one run).
    - `ranking`: `"layer"` (the same fraction of every group, as the paper) or
        `"global"` (the norms compared across layers as they are, unnormalised).
    - `steps`: rounds of pruning, as in [`toolkit.pruning.iterative_sparsities`][].
    """

    sparsity: float
    at_step: int = 0
    ranking: Ranking = "layer"
    steps: int = 1

    def __check_init__(self):
        _check_at_step(self.at_step)

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def prune_step(self, total_steps):
        return min(self.at_step, total_steps)

    def score(self, model, state, batch, key):
        return slice_norms(model, "producer", _l1)


class NetworkSlimming(AbstractOneShot):
    """Network slimming (Liu, Li, Shen, Huang, Yan, Zhang, 2017: "Learning Efficient
    Convolutional Networks through Network Slimming"): an L1 penalty of strength `reg`
    on the BatchNorm scales during training; once it has trained them, at step
    `at_step`, the units with the smallest `|gamma|` (summed over the BatchNorms of a
    residual stream) are removed, and training goes on (fine-tuning) with the penalty.

    The paper trains with the penalty, prunes, then fine-tunes for as long as it
    trained (160 epochs each on CIFAR): so by default the prune comes at half of
    training. It ranks the scales of the whole network together (one percentile
    threshold), `ranking="global"`; `"layer"` removes the same fraction of every group.

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `reg`: the strength of the L1 penalty on the BatchNorm scales.
    - `at_step`: the step at which to prune, after the scales have trained (not 0:
        at initialisation every scale is 1, and the ranking would be arbitrary);
        `None` for `total_steps // 2`. Clipped to the end of training.
    - `ranking`: `"layer"` or `"global"`.
    - `steps`: rounds of pruning, as in [`toolkit.pruning.iterative_sparsities`][].

    The network must have BatchNorm scales: `ValueError` otherwise (at the first
    training step, or at the prune).
    """

    sparsity: float
    reg: float = 1e-4
    at_step: int | None = None
    ranking: Ranking = "layer"
    steps: int = 1

    def __check_init__(self):
        if not self.reg >= 0:
            raise ValueError(f"`reg` must be non-negative, got {self.reg}.")
        if self.at_step is not None:
            _check_at_step(self.at_step)
            if self.at_step == 0:
                raise ValueError(
                    "`at_step` must be positive: NetworkSlimming prunes after its L1 "
                    "penalty has trained the BatchNorm scales, not at initialisation."
                )

    def regulariser(self, model, step, total_steps):
        _check_batch_norm(model)
        size = bn_scale_l1(model)
        return jnp.asarray(self.reg, size.dtype) * size

    def prune_step(self, total_steps):
        if self.at_step is None:
            return max(total_steps // 2, 1)
        return min(self.at_step, total_steps)

    def score(self, model, state, batch, key):
        _check_batch_norm(model)
        return slice_norms(model, "bn_scale", _l1)


def _check_batch_norm(model):
    missing = [k for k, v in slots_of(model, "bn_scale").items() if not v]
    if missing:
        raise ValueError(
            f"NetworkSlimming needs a BatchNorm scale on every unit group; the groups "
            f"{missing} of this {type(model).__name__} have none (build it with "
            f"BatchNorm, e.g. `batch_norm=True`)."
        )


def snap_saliency(
    model: AbstractNetwork, state: eqx.nn.State, batch: Batch
) -> dict[str, Float[Array, " units"]]:
    """SNAP's saliency of every unit: `|dL/dc|` for a gate `c = 1` multiplying the
    unit's output, `L` the loss on `batch` (equal to the sum of `w * dL/dw` over the
    unit's outgoing weights). A unit with zero outgoing weights scores zero.

    BatchNorm is in inference mode (its running statistics), as both references score:
    SNAP's code calls `net.eval()` (github.com/StijnVerdenius/SNIP-it,
    `models/criterions/SNAP.py`, `get_weight_saliencies`), and the DemP authors'
    `snap_score` takes the loss with `is_training=False`.
    """
    return {k: jnp.abs(v) for k, v in _gate_grad(model, state, batch).items()}


def _dtype(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype


# Module-level and jitted, so that repeated scoring of same-shaped networks compiles
# once.
@filter_jit
def _gate_grad(model, state, batch):
    fn = gate_loss(eqx.nn.inference_mode(model), state, batch, classification_loss)
    return jax.grad(fn)(ones_gates(model, _dtype(model)))


@filter_jit
def _gate_hg(model, state, batch):
    fn = gate_loss(eqx.nn.inference_mode(model), state, batch, classification_loss)
    gates = ones_gates(model, _dtype(model))
    return gates, gate_hvp(fn, gates, jax.grad(fn)(gates))


def crops_saliency(
    model: AbstractNetwork, state: eqx.nn.State, batch: Batch
) -> dict[str, Float[Array, " units"]]:
    """CroP-S's saliency of every unit: `|c * (H g)|` at `c = 1`, for the gates `c`
    of [`toolkit.pruning.snap_saliency`][], `g = dL/dc` and `H` the Hessian of the
    loss in the gates (a Hessian-vector product: forward over reverse), BatchNorm in
    inference mode as for SNAP. It measures how much the unit contributes to the
    gradient flow `g^T g`.

    This is the DemP authors' EarlyCroP-S score (github.com/SimonDufLab/Maxwell_demon,
    `source/utils/scores.py`, `early_crop_score`: a forward-over-reverse product of
    the gate Hessian with the gate gradient). The Early-CroP code differentiates
    instead `g_w(c) . g_w` in the gates, `g_w` the gradient in the weights
    (`models/criterions/CroPStructured.py`, `get_scores`): the same idea, another
    Hessian block."""
    gates, hg = _gate_hg(model, state, batch)
    return {k: jnp.abs(gates[k] * v) for k, v in hg.items()}


class SNAP(AbstractOneShot):
    """SNAP, structured SNIP (Verdenius, Stol, Forré, 2020: "Pruning via Iterative
    Ranking of Sensitivity Statistics"), at initialisation: the units of lowest
    [`toolkit.pruning.snap_saliency`][] on a training batch are removed.

    By default as the paper's SNAP-it and the Early-CroP paper's SNAP baseline run it
    (github.com/StijnVerdenius/SNIP-it, `models/criterions/SNAP.py`, `SNAPit.py`):
    the saliencies of all the units are ranked together (`ranking="global"`, one
    threshold, no per-layer normalisation), in the iterative rounds of
    [`toolkit.pruning.iterative_sparsities`][]`(sparsity, steps=5)`, each round
    scoring the network that the rounds before pruned; all at step 0. A layer is never
    emptied: global ranking that would remove every unit of a group keeps its
    best one. `ranking="layer", steps=1` is the one-shot prune of the same fraction of
    every group.

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `ranking`: `"global"` or `"layer"`.
    - `steps`: the schedule's `steps`; 1 for one round.
    """

    sparsity: float
    ranking: Ranking = "global"
    steps: int = 5

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def prune_step(self, total_steps):
        return 0

    def score(self, model, state, batch, key):
        return snap_saliency(model, state, batch)


class CroPS(AbstractOneShot):
    """CroP-S (Rachwan, Zügner, Charpentier, Geisler, Ayle, Günnemann, 2022: "Winning
    the Lottery Ahead of Time: Efficient Early Network Pruning"), structured
    gradient-flow preservation at initialisation: the units of lowest
    [`toolkit.pruning.crops_saliency`][] on a training batch are removed.

    By default as the paper's code runs it before training
    (github.com/johnrachwan123/Early-Cropression-via-Gradient-Flow-Preservation,
    `models/criterions/CroPitStructured.py`): all units ranked together
    (`ranking="global"`) in the iterative rounds of
    [`toolkit.pruning.iterative_sparsities`][]`(sparsity, steps=5)`; a layer is never
    emptied (see [`toolkit.pruning.SNAP`][]). `ranking="layer", steps=1` is the
    one-shot prune of the same fraction of every group.

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `ranking`: `"global"` or `"layer"`.
    - `steps`: the schedule's `steps`; 1 for one round.
    """

    sparsity: float
    ranking: Ranking = "global"
    steps: int = 5

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def prune_step(self, total_steps):
        return 0

    def score(self, model, state, batch, key):
        return crops_saliency(model, state, batch)
