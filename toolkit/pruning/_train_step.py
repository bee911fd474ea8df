"""The jitted steps of a training run: the training step (loss, optimiser, the
method's transformation, activity statistics) and the evaluation step."""

from collections import Counter
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._jit import filter_jit
from ..nn import AbstractNetwork
from ._activity import peaks, record_activity
from ._buckets import hold
from ._method import AbstractMethod
from ._noise import fired, live_parameters


def classification_loss(
    model: AbstractNetwork, state: eqx.nn.State, xs: Array, ys: Int[Array, " batch"]
) -> tuple[Float[Array, ""], tuple[eqx.nn.State, dict[str, tuple[Array, ...]]]]:
    """The mean softmax cross-entropy of `model` on a batch.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][] (BatchNorm in training mode unless
        `eqx.nn.inference_mode` says otherwise).
    - `state`: its `eqx.nn.State`.
    - `xs`: a batch of inputs, batch axis first.
    - `ys`: their integer labels.

    **Returns:**

    `(loss, (state, preactivations))`: the loss, the updated state, and the batched
    pre-activations of every unit group (for [`toolkit.pruning.record_activity`][]),
    so that `jax.grad(..., has_aux=True)` gives the gradient with everything else.
    """
    logits, state, pre = jax.vmap(
        model.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
    )(xs, state)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
    return loss, (state, pre)


def training_step(
    method: AbstractMethod,
    optimiser: optax.GradientTransformation,
    transform: optax.GradientTransformation,
    augment: Callable[[PRNGKeyArray, Array], Array] | None,
    total: int,
    compiles: Counter,
) -> Callable:
    """The training step `(model, state, opt_state, activity, alive, xs, ys, t, key) ->
    (model, state, opt_state, activity, alive, cross_entropy)`, to be jitted; each
    trace adds one to `compiles["train_step"]`."""

    def loss(model, state, xs, ys, t):
        ce, (state, pre) = classification_loss(model, state, xs, ys)
        reg = method.regulariser(model, t, total)
        return ce + jnp.asarray(reg, ce.dtype), (ce, state, pre)

    def step(model, state, opt_state, activity, alive, xs, ys, t, key):
        compiles["train_step"] += 1  # at trace time: counts compilations
        if augment is not None:
            # Folded in here, not per step on the host: an eager `fold_in` of an "rbg"
            # key costs about 1 ms, as much as a whole step of a pruned network.
            key = jr.fold_in(key, t)
            xs = jax.vmap(augment)(jr.split(key, xs.shape[0]), xs)
        grad_fn = eqx.filter_value_and_grad(loss, has_aux=True)
        (_, (ce, state, pre)), grads = grad_fn(model, state, xs, ys, t)
        params = eqx.filter(model, eqx.is_inexact_array)
        inner, outer = opt_state
        # Masked units (see `buckets`) get zero gradients and zero updates, whatever
        # weight decay, noise or a penalty's subgradient at zero would give them.
        mask = live_parameters(model, alive)
        updates, inner = optimiser.update(hold(grads, mask), inner, params)
        live = live_parameters(model, {k: f & alive[k] for k, f in fired(pre).items()})
        updates, outer = transform.update(updates, outer, params, live=live)
        model = eqx.apply_updates(model, hold(updates, mask))
        return model, state, (inner, outer), record_activity(activity, pre), alive, ce

    return step


def evaluation_step(compiles: Counter) -> Callable:
    """The jitted evaluation step `(model, state, xs, ys, valid) -> (summed
    cross-entropy, correct predictions, which units fired, each unit's largest
    pre-activation)` over the `valid` examples of a padded batch, BatchNorm in
    inference mode; each compilation adds one to `compiles["eval_step"]`. The last two
    are the statistics of DemP's dead-unit snapshot, which reuses this program."""

    @filter_jit
    def step(model, state, xs, ys, valid):
        compiles["eval_step"] += 1
        model = eqx.nn.inference_mode(model)
        logits, _, pre = jax.vmap(
            model.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
        )(xs, state)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, ys)
        correct = (jnp.argmax(logits, axis=1).astype(ys.dtype) == ys) & valid
        masked = {
            k: tuple(jnp.where(valid.reshape((-1,) + (1,) * (a.ndim - 1)), a, -jnp.inf) for a in v)
            for k, v in pre.items()
        }
        return jnp.sum(jnp.where(valid, ce, 0)), jnp.sum(correct), fired(masked), peaks(masked)

    return step
