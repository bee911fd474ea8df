"""EarlySNAP and EarlyCroP-S: one prune early in training, at the moment that the
Early-CroP paper's test finds training settled."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ..nn import AbstractNetwork
from ._baselines import check_ranked, crops_saliency, ranked_prune, snap_saliency
from ._dead import DeadUnits
from ._method import AbstractMethod, Batch
from ._ranking import Ranking


class EarlyTimeState(eqx.Module):
    """The state of [`toolkit.pruning.early_time`][]."""

    count: Int[Array, ""]
    reference: PyTree[Array]
    previous: Float[Array, ""]
    threshold: Float[Array, ""]
    stable_at: Int[Array, ""]


def _norm(tree) -> Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jtu.tree_leaves(tree)))


def early_time(every: int, latest: int, factor: float) -> optax.GradientTransformationExtraArgs:
    """An identity transformation that watches the weights for the Early-CroP test of
    when to prune (Rachwan et al. 2022, "Winning the Lottery Ahead of Time"; its code,
    github.com/johnrachwan123/Early-Cropression-via-Gradient-Flow-Preservation,
    `models/trainers/DefaultTrainer.py`, `_epoch_iteration`, run once an epoch).

    Every `every` steps (a period, the paper's epoch) it takes the weights `w_p` after
    `p` periods (every parameter of the network): `w_1` is the reference, and from
    the second period on `d_p = |w_p - w_1| / |w_1|` (Euclidean norms over all the
    parameters). The threshold is `factor * d_2`; training is settled, and the
    network may be pruned, after the first period `p` with `|d_p - d_{p-1}| <
    factor * d_2` (`d_1 = 0`), if it comes by step `latest`. Its state records that
    step in `stable_at` (-1 until then).

    **Arguments:**

    - `every`: steps per period.
    - `latest`: no test after this step.
    - `factor`: the fraction of `d_2` below which the change of `d_p` counts as
        settled.

    **Returns:**

    An optax transformation whose `update` accepts the extra keyword arguments of
    [`toolkit.pruning.train`][], and needs `params`.
    """

    def init(params):
        leaves = jtu.tree_leaves(params)
        dtype = leaves[0].dtype if leaves else jnp.result_type(float)
        zero = jnp.zeros((), dtype)
        return EarlyTimeState(
            count=jnp.zeros((), jnp.int32),
            reference=jtu.tree_map(jnp.zeros_like, params),
            previous=zero,
            threshold=zero,
            stable_at=jnp.full((), -1, jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("`early_time` needs `params`.")
        n = state.count + 1
        period = n // every

        def check(state):
            # The weights once this step's updates are applied.
            weights = eqx.apply_updates(params, updates)
            reference = jtu.tree_map(
                lambda w, r: jnp.where(period == 1, w, r), weights, state.reference
            )
            ref_norm = _norm(reference)
            dist = _norm(jtu.tree_map(jnp.subtract, weights, reference)) / jnp.where(
                ref_norm > 0, ref_norm, 1
            )
            dist = dist.astype(state.previous.dtype)
            threshold = jnp.where(
                period == 2, jnp.asarray(factor, dist.dtype) * dist, state.threshold
            )
            settled = (period >= 2) & (jnp.abs(dist - state.previous) < threshold)
            stable_at = jnp.where((state.stable_at < 0) & settled, n, state.stable_at)
            return EarlyTimeState(n, reference, dist, threshold, stable_at)

        def skip(state):
            return eqx.tree_at(lambda s: s.count, state, n)

        due = (n % every == 0) & (n <= latest) & (state.stable_at < 0)
        return updates, jax.lax.cond(due, check, skip, state)

    return optax.GradientTransformationExtraArgs(init, update)


class AbstractEarly(AbstractMethod):
    """A method that prunes once, early in training, at the moment of the Early-CroP
    test ([`toolkit.pruning.early_time`][]), by the `score` of every unit: ranked as
    [`toolkit.pruning.AbstractOneShot`][] ranks them (global or per group, in one or
    several rounds; never the last unit of a group). If the test has not passed by
    step `latest`, the prune comes then.

    Subclasses give `score`.
    """

    sparsity: eqx.AbstractVar[float]
    ranking: eqx.AbstractVar[Ranking]
    steps: eqx.AbstractVar[int]
    every: eqx.AbstractVar[int | None]
    latest: eqx.AbstractVar[int | None]

    # Tells `toolkit.pruning.train` to hand `select` the state of `transform`.
    select_transform_state = True

    def __check_init__(self):
        check_ranked(self.sparsity, self.ranking, self.steps)
        for name in ("every", "latest"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive int or None, got {value!r}.")

    @abc.abstractmethod
    def score(
        self, model: AbstractNetwork, state: eqx.nn.State, batch: Batch, key: PRNGKeyArray
    ) -> dict[str, Float[Array, " units"]]:
        """The score of every unit, group by group: the lowest are removed."""

    def period(self, total_steps: int) -> int:
        """Steps between tests: `every`, or `total_steps // 80`."""
        return self.every if self.every is not None else max(total_steps // 80, 1)

    def deadline(self, total_steps: int) -> int:
        """The latest step of the prune: `latest`, or `total_steps // 2`."""
        latest = self.latest if self.latest is not None else total_steps // 2
        return max(min(latest, total_steps), 1)

    def factor(self) -> float:
        """The Early-CroP threshold's fraction of `d_2` for structured pruning,
        `min(1 - sparsity - 0.1, 0.99)` (`DefaultTrainer.py`; the DemP authors'
        `modulate_target_density` in `source/utils/scores.py` is the same)."""
        return min(1 - self.sparsity - 0.1, 0.99)

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def transform(self, total_steps, key):
        return early_time(self.period(total_steps), self.deadline(total_steps), self.factor())

    def prune_at(self, step, total_steps):
        # The test cannot pass before the second period's distance sets the threshold.
        every, latest = self.period(total_steps), self.deadline(total_steps)
        return step == latest or (2 * every <= step < latest and step % every == 0)

    def select(
        self,
        model,
        state,
        activity,
        batch,
        *,
        step,
        total_steps,
        key,
        transform_state: EarlyTimeState,
    ) -> DeadUnits | None:
        stable_at = int(transform_state.stable_at)
        latest = self.deadline(total_steps)
        if step != stable_at and not (stable_at < 0 and step == latest):
            return None
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


class EarlySNAP(AbstractEarly):
    """SNAP's saliency, [`toolkit.pruning.snap_saliency`][], early in training: one
    prune at the moment of the Early-CroP test ([`toolkit.pruning.early_time`][]), the
    Early-CroP paper's EarlySNAP baseline.

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `ranking`: `"global"` (the default, as SNAP) or `"layer"`.
    - `steps`: rounds of pruning ([`toolkit.pruning.iterative_sparsities`][]); 1, the
        default, as the Early-CroP code's early methods (`EarlyCroPStructured.py`
        sets its rounds to `[limit]`).
    - `every`: steps between tests, the paper's epoch; `None` for `total_steps // 80`
        (an epoch of the paper's 80-epoch runs, and of the DemP authors' VGG-16 runs:
        15626 steps of 256 CIFAR-10 images).
    - `latest`: the step of the prune if the test has not passed by then; `None` for
        half of training.
    """

    sparsity: float
    ranking: Ranking = "global"
    steps: int = 1
    every: int | None = None
    latest: int | None = None

    def score(self, model, state, batch, key):
        return snap_saliency(model, state, batch)


class EarlyCroPS(AbstractEarly):
    """EarlyCroP-S (Rachwan et al. 2022: "Winning the Lottery Ahead of Time: Efficient
    Early Network Pruning"): CroP-S's saliency, [`toolkit.pruning.crops_saliency`][],
    early in training, one prune at the moment of the paper's test
    ([`toolkit.pruning.early_time`][]).

    **Arguments:**

    - `sparsity`: the fraction of the units to remove.
    - `ranking`: `"global"` (the default, as the paper's code) or `"layer"`.
    - `steps`: rounds of pruning ([`toolkit.pruning.iterative_sparsities`][]); 1, the
        default, as the paper's code (`EarlyCroPStructured.py`).
    - `every`: steps between tests, the paper's epoch; `None` for `total_steps // 80`
        (see [`toolkit.pruning.EarlySNAP`][]).
    - `latest`: the step of the prune if the test has not passed by then; `None` for
        half of training.
    """

    sparsity: float
    ranking: Ranking = "global"
    steps: int = 1
    every: int | None = None
    latest: int | None = None

    def score(self, model, state, batch, key):
        return crops_saliency(model, state, batch)
