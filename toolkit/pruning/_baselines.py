"""Structured-pruning baselines as strategy objects: one prune, at a given step, of
the units with the lowest score, to a target sparsity in every group."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ..nn import AbstractNetwork
from ._baseline_scores import gate_hvp, gate_loss, ones_gates, slice_norms, slots_of
from ._dead import dead_from_masks, DeadUnits
from ._layout import resolve
from ._method import AbstractMethod, Batch, bn_scale_l1
from ._train import classification_loss


def units_to_remove(sparsity: float, size: int) -> int:
    """How many of a group's `size` units a prune to `sparsity` removes:
    `round(sparsity * size)` (halves up), but never all of them."""
    return int(min(max(np.floor(sparsity * size + 0.5), 0), size - 1))


def lowest(scores: dict[str, Float[Array, " units"]], sparsity: float) -> dict[str, np.ndarray]:
    """Masks of the `units_to_remove(sparsity, size)` lowest-scoring units of every
    group (ties broken towards the lower index)."""
    masks = {}
    for name, score in scores.items():
        score = np.asarray(score)
        k = units_to_remove(sparsity, score.shape[0])
        mask = np.zeros(score.shape[0], bool)
        mask[np.argsort(score, kind="stable")[:k]] = True
        masks[name] = mask
    return masks


class AbstractOneShot(AbstractMethod):
    """A method that prunes once, at step `at_step` (`0`: at initialisation; clipped
    to the end of training), the `round(sparsity * size)` units of lowest `score` of
    every group, always keeping at least one. The groups of a residual stream are
    scored jointly over every layer that writes or reads them.

    Subclasses give `score` (and `regulariser`); the rest is shared.
    """

    sparsity: eqx.AbstractVar[float]
    at_step: eqx.AbstractVar[int]

    def __check_init__(self):
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"`sparsity` must be in [0, 1), got {self.sparsity}.")
        if not isinstance(self.at_step, int) or self.at_step < 0:
            raise ValueError(f"`at_step` must be a non-negative int, got {self.at_step!r}.")

    @abc.abstractmethod
    def score(
        self, model: AbstractNetwork, state: eqx.nn.State, batch: Batch, key: PRNGKeyArray
    ) -> dict[str, Float[Array, " units"]]:
        """The score of every unit, group by group: the lowest are removed."""

    def transform(self, total_steps, key):
        return optax.with_extra_args_support(optax.identity())

    def prune_at(self, step, total_steps):
        return step == min(self.at_step, total_steps)

    def select(self, model, state, activity, batch, *, step, total_steps, key) -> DeadUnits:
        return dead_from_masks(model, lowest(self.score(model, state, batch, key), self.sparsity))

    def schedules(self, total_steps):
        return {}


class RandomStructured(AbstractOneShot):
    """Random structured pruning: the units removed are drawn uniformly at random in
    every group (from the key that [`toolkit.pruning.train`][] hands to `select`).

    **Arguments:**

    - `sparsity`: the fraction of every group's units to remove.
    - `at_step`: the step at which to prune (`0`: at initialisation).
    """

    sparsity: float
    at_step: int = 0

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

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

    - `sparsity`: the fraction of every group's units to remove.
    - `at_step`: the step at which to prune; training continues on the pruned
        network (pre-training, pruning, then fine-tuning, in one run).
    """

    sparsity: float
    at_step: int = 0

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def score(self, model, state, batch, key):
        return slice_norms(model, "producer", _l1)


class NetworkSlimming(AbstractOneShot):
    """Network slimming (Liu, Li, Shen, Huang, Yan, Zhang, 2017: "Learning Efficient
    Convolutional Networks through Network Slimming"): an L1 penalty of strength `reg`
    on the BatchNorm scales during training, then the units with the smallest
    `|gamma|` (summed over the BatchNorms of a residual stream) are removed.

    **Arguments:**

    - `sparsity`: the fraction of every group's units to remove.
    - `reg`: the strength of the L1 penalty on the BatchNorm scales.
    - `at_step`: the step at which to prune.

    The network must have BatchNorm scales: `ValueError` otherwise (at the first
    training step, or at the prune).
    """

    sparsity: float
    reg: float = 1e-4
    at_step: int = 0

    def __check_init__(self):
        if not self.reg >= 0:
            raise ValueError(f"`reg` must be non-negative, got {self.reg}.")

    def regulariser(self, model, step, total_steps):
        _check_batch_norm(model)
        size = bn_scale_l1(model)
        return jnp.asarray(self.reg, size.dtype) * size

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
    unit's output, `L` the training loss on `batch` (equal to the sum of `w * dL/dw`
    over the unit's outgoing weights). A unit with zero outgoing weights scores zero.
    """
    return {k: jnp.abs(v) for k, v in _gate_grad(model, state, batch).items()}


def _dtype(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype


# Module-level and jitted, so that repeated scoring of same-shaped networks compiles
# once.
@eqx.filter_jit
def _gate_grad(model, state, batch):
    fn = gate_loss(model, state, batch, classification_loss)
    return jax.grad(fn)(ones_gates(model, _dtype(model)))


@eqx.filter_jit
def _gate_hg(model, state, batch):
    fn = gate_loss(model, state, batch, classification_loss)
    gates = ones_gates(model, _dtype(model))
    return gates, gate_hvp(fn, gates, jax.grad(fn)(gates))


def crops_saliency(
    model: AbstractNetwork, state: eqx.nn.State, batch: Batch
) -> dict[str, Float[Array, " units"]]:
    """CroP-S's saliency of every unit: `|c * (H g)|` at `c = 1`, for the gates `c`
    of [`toolkit.pruning.snap_saliency`][], `g = dL/dc` and `H` the Hessian of the
    loss in the gates (a Hessian-vector product: forward over reverse). It measures
    how much the unit contributes to the gradient flow `g^T g`."""
    gates, hg = _gate_hg(model, state, batch)
    return {k: jnp.abs(gates[k] * v) for k, v in hg.items()}


class SNAP(AbstractOneShot):
    """SNAP, structured SNIP (Verdenius, Stol, Forré, 2020: "Pruning via Iterative
    Ranking of Sensitivity Statistics"), in one shot at initialisation: the units of
    lowest [`toolkit.pruning.snap_saliency`][] on one training batch are removed.

    **Arguments:**

    - `sparsity`: the fraction of every group's units to remove.
    """

    sparsity: float
    at_step: int = eqx.field(default=0, init=False)

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def score(self, model, state, batch, key):
        return snap_saliency(model, state, batch)


class CroPS(AbstractOneShot):
    """CroP-S (Rachwan, Zügner, Charpentier, Geisler, Ayle, Günnemann, 2022: "Winning
    the Lottery Ahead of Time: Efficient Early Network Pruning"), structured
    gradient-flow preservation at initialisation: the units of lowest
    [`toolkit.pruning.crops_saliency`][] on one training batch are removed.

    **Arguments:**

    - `sparsity`: the fraction of every group's units to remove.
    """

    sparsity: float
    at_step: int = eqx.field(default=0, init=False)

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def score(self, model, state, batch, key):
        return crops_saliency(model, state, batch)


class EarlySNAP(AbstractOneShot):
    """SNAP's saliency, [`toolkit.pruning.snap_saliency`][], on the network after
    `at_step` steps of training: one prune, early in training, to the target sparsity.

    **Arguments:**

    - `sparsity`: the fraction of every group's units to remove.
    - `at_step`: the step at which to prune.
    """

    sparsity: float
    at_step: int = 500

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def score(self, model, state, batch, key):
        return snap_saliency(model, state, batch)


class EarlyCroPS(AbstractOneShot):
    """CroP-S's saliency, [`toolkit.pruning.crops_saliency`][], on the network after
    `at_step` steps of training (early CroP-S, as in Rachwan et al. 2022): one prune
    to the target sparsity.

    **Arguments:**

    - `sparsity`: the fraction of every group's units to remove.
    - `at_step`: the step at which to prune.
    """

    sparsity: float
    at_step: int = 500

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def score(self, model, state, batch, key):
        return crops_saliency(model, state, batch)
