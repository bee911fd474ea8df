"""Training methods as strategy objects: what a method adds to the loss, to the
optimiser, and when and what it prunes. [`toolkit.pruning.train`][] runs any of them."""

import abc
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..nn import AbstractNetwork
from ._activity import Activity
from ._buckets import only_live, spread, unmasked_view
from ._dead import DeadUnits
from ._dead_test import AbstractDeadTest, EvalSnapshot
from ._noise import live_noise


Batch = tuple[Array, Array]


class AbstractMethod(eqx.Module):
    """A training method: a regulariser, an optax transformation chained after the
    optimiser, and a pruning rule, all pure. [`toolkit.pruning.train`][] calls them:

    - every step, inside the jitted step: `loss = cross_entropy +
        method.regulariser(model, t, T)`; the optimiser's updates then go through
        `method.transform(T, key)`, whose `update` receives `live=`, the parameter
        mask of the units that fired on the batch (see
        [`toolkit.pruning.live_parameters`][]);
    - between steps, on the host: when `method.prune_at(t, T)`, the units that
        `method.select(...)` returns are removed from the model, its state and the
        optimiser state by [`toolkit.pruning.prune`][], and the activity statistics
        start afresh (unless `select` returns `None`).

    `t` counts the steps done so far and `T` is the total number of steps. A method's
    fields are its hyperparameters. A method with a `select_examples` attribute (an
    int, as [`toolkit.pruning.DemP`][]) receives in `select` a batch of at least that
    many training examples rather than one training batch. A method whose
    `select_transform_state` attribute is true (as [`toolkit.pruning.EarlyCroPS`][])
    receives in `select` the keyword argument `transform_state`: the current state of
    its `transform`, where it can keep what it watches during training. A method whose
    `select_snapshot` attribute is true (as [`toolkit.pruning.DemP`][]) receives in
    `select_masked` the keyword argument `snapshot`: a function of no argument that
    returns the [`toolkit.pruning.Activity`][] of the network in inference mode on the
    first `select_examples` examples of the batch, computed with the trainer's
    compiled evaluation step.
    """

    @abc.abstractmethod
    def regulariser(
        self, model: AbstractNetwork, step: Int[Array, ""], total_steps: int
    ) -> Float[Array, ""]:
        """The term added to the training loss at step `step` (traced, under jit)."""

    @abc.abstractmethod
    def transform(self, total_steps: int, key: PRNGKeyArray) -> optax.GradientTransformation:
        """An optax transformation applied to the optimiser's updates. Its `update`
        is called with the keyword argument `live` (a pytree of boolean masks over the
        parameters): wrap a plain transformation in `optax.with_extra_args_support`,
        or accept `**extra_args`. Its state may hold model-shaped subtrees: they are
        pruned with the model."""

    @abc.abstractmethod
    def prune_at(self, step: int, total_steps: int) -> bool:
        """Whether to look for units to remove after `step` steps (`0 <= step <=
        total_steps`; `step == 0` is before training, for pruning at initialisation)."""

    @abc.abstractmethod
    def select(
        self,
        model: AbstractNetwork,
        state: eqx.nn.State,
        activity: Activity,
        batch: Batch,
        *,
        step: int,
        total_steps: int,
        key: PRNGKeyArray,
    ) -> DeadUnits | None:
        """The units to remove now.

        **Arguments:**

        - `model`, `state`: the network and its `eqx.nn.State`.
        - `activity`: the activation statistics of the training forward passes since
            the last call (BatchNorm in training mode).
        - `batch`: a training batch `(xs, ys)`, for methods that score units with
            gradients (see [`toolkit.pruning.classification_loss`][]).
        - `step`, `total_steps`: as for `prune_at`.
        - `key`: a PRNG key, for random choices.

        **Returns:**

        A [`toolkit.pruning.DeadUnits`][] (from `dead_from`, or from `dead_from_masks`
        for a selection by score): its units are removed (none, if every mask is
        `False`) and the activity statistics start afresh. Every group must keep a
        unit, unless the `DeadUnits` carries activity statistics: then the most active
        one is kept. Or `None`: nothing is removed and the statistics keep
        accumulating, as when they have not yet seen enough examples.
        """

    @abc.abstractmethod
    def schedules(self, total_steps: int) -> dict[str, Callable]:
        """Named schedules of the step, recorded in the training log (may be empty)."""

    def select_masked(
        self,
        model: AbstractNetwork,
        state: eqx.nn.State,
        activity: Activity,
        alive: dict[str, np.ndarray],
        batch: Batch,
        *,
        step: int,
        total_steps: int,
        key: PRNGKeyArray,
        **kwargs,
    ) -> DeadUnits | None:
        """`select` on a network whose arrays also hold masked units (see
        [`toolkit.pruning.train`][]'s `buckets`): exactly zero, computing nothing.

        **Arguments:**

        - `alive`: a dict from group name to a boolean NumPy array over the group's
            units in `model`'s arrays, `False` where a unit is masked.
        - the others, and `kwargs`: as for `select`.

        **Returns:**

        What `select` returns on the network without its masked units, laid out over
        `model`'s arrays: masked units are never selected, and `peak` (if any) is
        `-inf` at them.

        By default `select` runs on the network pruned to its live units, whose shapes
        change at every prune, so whatever `select` compiles is compiled again; a
        method whose selection is unaffected by masked units (as
        [`toolkit.pruning.DemP`][]'s, since they never fire) overrides this to run on
        the masked network, whose shapes change only with its buckets.
        """
        if all(a.all() for a in alive.values()):
            return self.select(
                model, state, activity, batch, step=step, total_steps=total_steps, key=key, **kwargs
            )
        view = unmasked_view(model, state, activity, alive)
        dead = self.select(*view, batch, step=step, total_steps=total_steps, key=key, **kwargs)
        return None if dead is None else spread(dead, model, alive)


class Dense(AbstractMethod):
    """Plain training: no regulariser, no noise, no pruning."""

    def regulariser(self, model, step, total_steps):
        return jnp.zeros(())

    def transform(self, total_steps, key):
        return optax.with_extra_args_support(optax.identity())

    def prune_at(self, step, total_steps):
        return False

    def select(self, model, state, activity, batch, *, step, total_steps, key):
        return None

    def schedules(self, total_steps):
        return {}


def one_cycle(
    peak: float,
    total_steps: int,
    *,
    span: float = 0.9,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> optax.Schedule:
    """A one-cycle schedule (Smith & Topin, 2019): a cosine rise from
    `peak / div_factor` to `peak` over the first `pct_start` of `span * total_steps`
    steps, a cosine fall to `peak / (div_factor * final_div_factor)` at
    `span * total_steps`, then constant: `optax.cosine_onecycle_schedule` over the
    first `span` of training, as the DemP reference code uses it.

    **Arguments:**

    - `peak`: the largest value.
    - `total_steps`: the number of training steps.
    - `span`, `pct_start`, `div_factor`, `final_div_factor`: as described above.

    **Returns:**

    An optax schedule: a function of the step.
    """
    transition = max(1, int(round(span * total_steps)))
    rise = int(pct_start * transition)
    start, final = peak / div_factor, peak / (div_factor * final_div_factor)

    # As optax.cosine_onecycle_schedule, written so that it also runs under strict
    # dtype promotion.
    def schedule(step):
        t = jnp.asarray(step).astype(jnp.result_type(float))
        up = jnp.clip(t / max(rise, 1), 0, 1)
        down = jnp.clip((t - rise) / max(transition - rise, 1), 0, 1)
        rising = peak + (start - peak) * (1 + jnp.cos(jnp.pi * up)) / 2
        falling = final + (peak - final) * (1 + jnp.cos(jnp.pi * down)) / 2
        return jnp.where(t < rise, rising, falling)

    return schedule


def _layers(model, kinds):
    return [
        x
        for x in jtu.tree_leaves(model, is_leaf=lambda x: isinstance(x, kinds))
        if isinstance(x, kinds)
    ]


def positive_l2(model: AbstractNetwork) -> Float[Array, ""]:
    """Half the sum of squares of the positive entries of every parameter of `model`.

    It pushes weights, biases and BatchNorm parameters down, towards the dead side of
    the ReLUs, and leaves negative entries alone. It is the default of the DemP
    reference code's configuration (`regularizer="cdg_l2"`), which its final runs
    replace with `"lasso"` on the BatchNorm scales ([`toolkit.pruning.bn_scale_l1`][]).
    """
    params = jtu.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return jnp.asarray(sum((0.5 * jnp.sum(jnp.square(jnp.maximum(p, 0))) for p in params), 0.0))


def weights_l2(model: AbstractNetwork) -> Float[Array, ""]:
    """Half the sum of squares of the weights of every linear and convolutional layer
    of `model` (not their biases, nor BatchNorm's parameters)."""
    layers = _layers(model, (eqx.nn.Linear, eqx.nn.Conv))
    return jnp.asarray(sum((0.5 * jnp.sum(jnp.square(layer.weight)) for layer in layers), 0.0))


def bn_scale_l1(model: AbstractNetwork) -> Float[Array, ""]:
    """The sum of the absolute values of every BatchNorm scale of `model` (as network
    slimming, Liu et al. 2017); no other parameter enters it.

    It is the regulariser of the DemP reference code's final runs
    (github.com/SimonDufLab/Maxwell_demon,
    `source/mila_cluster_scripts/controlling_overfitting.sh`, the `vgg16_adamw` and
    `Resnet18_srigl_final` lines: `regularizer=lasso masked_reg=scale_only`; in
    `source/utils/utils.py`, `ce_loss_given_model` keeps only the `scale` entries,
    `keep_scale_only`, and `"lasso"` sums their absolute values).

    **Raises:**

    `ValueError` if `model` has no BatchNorm scale.
    """
    norms = [n for n in _layers(model, eqx.nn.BatchNorm) if n.weight is not None]
    if not norms:
        raise ValueError(
            "`penalty='bn_scale_l1'` (DemP's default) needs a network with BatchNorm "
            "scales: add BatchNorm, or choose another `penalty` such as 'positive_l2'."
        )
    return jnp.asarray(sum((jnp.sum(jnp.abs(n.weight)) for n in norms), 0.0))


def bn_positive_l1(model: AbstractNetwork) -> Float[Array, ""]:
    """The sum of the positive parts of every BatchNorm scale and shift of `model`; no
    other parameter enters it.

    It is the reference code's `regularizer=cdg_lasso masked_reg=bn_params_only`
    (github.com/SimonDufLab/Maxwell_demon, `source/utils/utils.py`,
    `ce_loss_given_model`: `"cdg_lasso"` sums `jnp.clip(p, 0)` over the parameters
    that `keep_bn_params_only` leaves), an option of its configuration that its final
    runs do not use.

    Why the shifts: L1 on the scales alone ([`toolkit.pruning.bn_scale_l1`][]) takes a
    unit's scale to about 0 and leaves its output at `relu(shift)`; where the shift is
    positive the unit is constant, not dead, so no dead-unit test removes it, and when
    the next layer has BatchNorm too, which subtracts constants, the shift gets no
    gradient to leave. Pushing the positive shifts down as well sends such units to the
    dead side of their ReLU. (Measured on Fashion-MNIST's LeNet-5 with BatchNorm, seed
    0: L1 on the scales at reg 0.3 ended with 72 of `fc.0`'s 84 live units and 71 of
    `fc.1`'s 80 at a scale below 1e-2 and a positive shift.)

    **Raises:**

    `ValueError` if `model` has no BatchNorm scale or shift.
    """
    norms = _layers(model, eqx.nn.BatchNorm)
    params = [p for n in norms for p in (n.weight, n.bias) if p is not None]
    if not params:
        raise ValueError(
            "`penalty='bn_positive_l1'` needs a network with BatchNorm scales or shifts: "
            "add BatchNorm, or choose another `penalty` such as 'positive_l2'."
        )
    # `where`, not `maximum`: no pull on a parameter exactly at 0 (maximum's is 1/2).
    return jnp.asarray(sum((jnp.sum(jnp.where(p > 0, p, 0)) for p in params), 0.0))


_PENALTIES: dict[str, Callable[[AbstractNetwork], Array]] = {
    "positive_l2": positive_l2,
    "l2": weights_l2,
    "bn_scale_l1": bn_scale_l1,
    "bn_positive_l1": bn_positive_l1,
}


class DemP(AbstractMethod):
    """Demon Pruning (Dufort-Labbé, D'Oro, Nikishin, Pascanu, Bacon, Baratin, 2024:
    "Maxwell's Demon at Work: Efficient Pruning by Leveraging Saturation of Neurons",
    arXiv 2403.07688).

    A regulariser whose strength follows a one-cycle schedule of peak `reg` (the
    sparsity knob), and Gaussian noise added to the parameters of live units only,
    whose scale follows its own schedule of peak `noise` (by default the same one-cycle
    shape, or any `noise_schedule`), make ReLU units die in a controlled way: dead
    units receive neither gradient nor noise, so they stay dead. Every `prune_every`
    steps, and at the end, the units that `dead_test` finds dead are removed from the
    network, its BatchNorm state and the optimiser state, so the network, and the
    training step, shrink as training goes.

    The defaults are the recipe of the reference code's final runs
    (github.com/SimonDufLab/Maxwell_demon: the launch lines `info=vgg16_adamw` and
    `info=Resnet18_srigl_final` of
    `source/mila_cluster_scripts/controlling_overfitting.sh`, run by
    `source/controlling_overfitting.py`):

    - the penalty: `regularizer=lasso masked_reg=scale_only`, L1 on the BatchNorm
        scales only ([`toolkit.pruning.bn_scale_l1`][]), so the default needs a
        network with BatchNorm;
    - the noise: `add_noise=True noise_eta=0.00005`, on the schedule
        `noise_sched = optax.cosine_onecycle_schedule(sched_end, noise_eta)`, the
        regulariser's shape (`reg_sched` is built the same way from `reg_param`);
        it is added to the parameters after the optimiser's update
        (`source/utils/utils.py`, `update_given_loss_and_optimizer`);
    - the schedules: `reg_param_schedule=one_cycle`, `optax.cosine_onecycle_schedule`
        with its defaults (30% warm-up, `div_factor=25`, `final_div_factor=1e4`) up to
        `reg_param_span` (15625 of 15626 steps for VGG-16, 85000 of 97656 for
        ResNet-18; `span=0.9` here), practically zero after;
    - the prune cadence: `pruning_freq=1000` of `training_steps=15626` (VGG-16),
        5000 of 97656 (ResNet-18): about a sixteenth of training;
    - the dead-unit test: a snapshot in evaluation mode on 1536 training examples
        ([`toolkit.pruning.EvalSnapshot`][]).

    The optimiser is the caller's: the reference trains with AdamW, weight decay 5e-4,
    learning rate 5e-3 on a one-cycle (VGG-16) or step (ResNet-18) schedule, as
    `python -m toolkit train` does by default.

    One departure: the reference's mask of live parameters, `jnp.abs(flat_grads) >= 0`
    in `update_given_loss_and_optimizer` (its comment says "gradient!=0 (live
    neurons)"), is true everywhere, so its noise reaches dead units too; here, as the
    paper describes and the reference's earlier `>= 1e-8` did, only live units get it.

    **Arguments:**

    - `reg`: the peak strength of the regulariser.
    - `noise`: the peak standard deviation of the noise added to the parameters.
    - `penalty`: `"bn_scale_l1"` (the BatchNorm scales, L1,
        [`toolkit.pruning.bn_scale_l1`][]), `"bn_positive_l1"` (the positive parts of
        the BatchNorm scales and shifts, [`toolkit.pruning.bn_positive_l1`][]: units
        whose scale L1 alone leaves constant die instead), `"positive_l2"` (half the
        squared positive part of every parameter, [`toolkit.pruning.positive_l2`][]) or `"l2"` (the
        weights of the linear and convolutional layers,
        [`toolkit.pruning.weights_l2`][]).
    - `prune_every`: steps between prunes; `None` for a sixteenth of training.
    - `prune_after`: no prune before this step.
    - `dead_test`: when a unit is dead, an [`toolkit.pruning.AbstractDeadTest`][]:
        [`toolkit.pruning.EvalSnapshot`][]`(examples=1536)`, the reference's, or
        [`toolkit.pruning.TrainingWindow`][]`(window)`, silent on every training
        example since the last check (BatchNorm in training mode).
    - `min_dead`: a prune before the last one is skipped unless the dead units are at
        least this fraction of the units left (the check still starts a new window).
        With [`toolkit.pruning.ExactWidths`][], every prune recompiles the training
        and evaluation steps for the new shapes (seconds each; see
        benchmarks/README.md), so small prunes can cost more than the smaller steps
        save; the default width buckets of [`toolkit.pruning.train`][] recompile only
        when a bucket shrinks. 0 prunes whenever a unit is dead.
    - `span`: the fraction of training that the schedules span.
    - `pct_start`, `div_factor`, `final_div_factor`: the shape of the one-cycle
        schedules, as in [`toolkit.pruning.one_cycle`][].
    - `noise_schedule`: the noise's schedule, as a function `(peak, total_steps) ->
        optax schedule` called with `noise`; `None` (the default) for the regulariser's
        one-cycle shape above. For instance `lambda peak, steps:
        optax.constant_schedule(peak)` keeps the noise constant, and
        `functools.partial(pruning.one_cycle, span=0.5)` anneals it by mid-training
        while the regulariser keeps its own shape: so the two schedules can be ablated
        one at a time.
    """

    reg: float = 5e-2
    noise: float = 5e-5
    penalty: Literal["bn_scale_l1", "bn_positive_l1", "positive_l2", "l2"] = "bn_scale_l1"
    prune_every: int | None = None
    prune_after: int = 0
    dead_test: AbstractDeadTest = EvalSnapshot()
    min_dead: float = 0.0
    span: float = 0.9
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    noise_schedule: Callable[[float, int], optax.Schedule] | None = None

    def __check_init__(self):
        if not self.reg >= 0:
            raise ValueError(f"`reg` must be non-negative, got {self.reg}.")
        if not self.noise >= 0:
            raise ValueError(f"`noise` must be non-negative, got {self.noise}.")
        if self.penalty not in _PENALTIES:
            raise ValueError(f"`penalty` must be one of {tuple(_PENALTIES)}, got {self.penalty!r}.")
        if self.prune_every is not None and self.prune_every < 1:
            raise ValueError(f"`prune_every` must be a positive int, got {self.prune_every}.")
        if not 0 <= self.min_dead < 1:
            raise ValueError(f"`min_dead` must be in [0, 1), got {self.min_dead}.")
        if not isinstance(self.dead_test, AbstractDeadTest):
            raise TypeError(
                "`dead_test` must be a toolkit.pruning.AbstractDeadTest, such as "
                f"EvalSnapshot() or TrainingWindow(window), got {type(self.dead_test).__name__}."
            )
        if self.prune_after < 0:
            raise ValueError(f"`prune_after` must be non-negative, got {self.prune_after}.")
        if not 0 < self.span <= 1:
            raise ValueError(f"`span` must be in (0, 1], got {self.span}.")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"`pct_start` must be in (0, 1), got {self.pct_start}.")
        if self.noise_schedule is not None and not callable(self.noise_schedule):
            raise TypeError(
                "`noise_schedule` must be a function (peak, total_steps) -> schedule, "
                f"got {type(self.noise_schedule).__name__}."
            )

    def _schedule(self, peak: float, total_steps: int) -> optax.Schedule:
        return one_cycle(
            peak,
            total_steps,
            span=self.span,
            pct_start=self.pct_start,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
        )

    def _noise_schedule(self, total_steps: int) -> optax.Schedule:
        if self.noise_schedule is None:
            return self._schedule(self.noise, total_steps)
        return self.noise_schedule(self.noise, total_steps)

    def regulariser(self, model, step, total_steps):
        size = _PENALTIES[self.penalty](model)
        strength = self._schedule(self.reg, total_steps)(step)
        return jnp.asarray(strength, size.dtype) * size

    def transform(self, total_steps, key):
        return live_noise(self._noise_schedule(total_steps), key)

    # `select_masked` takes the trainer's `snapshot` (see AbstractMethod).
    select_snapshot = True

    @property
    def select_examples(self) -> int:
        """The training examples that `select` needs: those of `dead_test`."""
        return self.dead_test.examples

    def every(self, total_steps: int) -> int:
        """The pruning period: `prune_every`, or a sixteenth of training (the
        reference's `pruning_freq=1000` of `training_steps=15626` for VGG-16)."""
        return self.prune_every or max(1, total_steps // 16)

    def prune_at(self, step, total_steps):
        if step <= 0 or step < self.prune_after:
            return False
        # Not `self.every(...)`: a method call on a Module costs ~50 µs, and the
        # trainer asks at every step.
        every = self.prune_every or max(1, total_steps // 16)
        return step % every == 0 or step == total_steps

    def select(self, model, state, activity, batch, *, step, total_steps, key):
        return self._select(model, state, activity, batch, step, total_steps, None)

    def select_masked(
        self, model, state, activity, alive, batch, *, step, total_steps, key, **kwargs
    ):
        # Masked units are exactly zero: they never fire, so every dead test finds
        # them dead, and the live units' test is the pruned network's.
        snapshot = kwargs.get("snapshot")
        return self._select(model, state, activity, batch, step, total_steps, alive, snapshot)

    def _select(self, model, state, activity, batch, step, total_steps, alive, snapshot=None):
        n = self.dead_test.examples
        xs = batch[0][:n] if n else None
        if snapshot is None:
            dead = self.dead_test(model, state, activity, xs)
        else:
            dead = self.dead_test.with_snapshot(model, state, activity, xs, snapshot)
        if dead is None:
            return None
        if alive is not None:
            dead = only_live(dead, alive)
        if self.min_dead > 0 and step < total_steps:
            masks = [np.asarray(m) for m in dead.masks.values()]
            units = [m.size for m in masks] if alive is None else [a.sum() for a in alive.values()]
            if sum(int(m.sum()) for m in masks) < self.min_dead * sum(units):
                # Nothing is removed, but the check counts: the next one looks at the
                # examples seen from now on, as it would after a prune.
                none = {k: jax.device_put(np.zeros_like(m)) for k, m in zip(dead.masks, masks)}
                return DeadUnits(none, dead.peak, dead.layout)
        return dead

    def schedules(self, total_steps):
        return {
            "reg": self._schedule(self.reg, total_steps),
            "noise": self._noise_schedule(total_steps),
        }
