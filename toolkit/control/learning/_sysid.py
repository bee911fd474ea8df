import abc
import dataclasses
import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
import optimistix as optx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from ..._jit import filter_jit
from ._curriculum import SegmentCurriculum
from ._model import Model, trainable
from ._simulate import AbstractSimulator, simulate, Simulator
from ._trajectories import Trajectories


class AbstractSysIdLoss(eqx.Module):
    """A system-identification loss: the mean square of residuals between a model's
    predictions and observed trajectories.

    `loss(model, data)` is the scalar; `loss.residuals(model, data)` the residuals
    (for least-squares solvers).
    """

    simulator: eqx.AbstractVar[AbstractSimulator]
    weights: eqx.AbstractVar[Float[Array, " nx"] | None]

    @abc.abstractmethod
    def residuals(self, model: Model, data: Trajectories) -> Array:
        """Weighted prediction errors, one per observed scalar."""

    def __call__(self, model: Model, data: Trajectories) -> Scalar:
        r = self.residuals(model, data)
        return jnp.mean(r**2)

    def _weigh(self, r: Array) -> Array:
        if self.weights is None:
            return r
        w = jax.lax.stop_gradient(jnp.asarray(self.weights, r.dtype))
        return r * jnp.broadcast_to(w, r.shape[-1:]).reshape((1,) * (r.ndim - 1) + (-1,))


class SingleShootingLoss(AbstractSysIdLoss):
    """Single shooting: integrate the model from each trajectory's (known) initial
    state under its controls across the whole horizon, and compare with every
    observation after the first.

    Exact in the noise-free limit, but its landscape gets rugged over long horizons
    of unstable or oscillating dynamics; see
    [`toolkit.control.learning.MultipleShootingLoss`][].

    **Arguments:**

    - `simulator`: a [`toolkit.control.learning.Simulator`][].
    - `weights`: optional per-state weights of the residuals (e.g. 1 / the state's
        scale).
    """

    simulator: AbstractSimulator = Simulator()
    weights: Float[Array, " nx"] | None = None

    def residuals(self, model, data):
        def one(ts, xs, x0, controls):
            pred = simulate(
                model.dynamics, x0, controls, ts, args=model.resolved_args, simulator=self.simulator
            )
            return pred[1:] - xs[1:]

        r = jax.vmap(one)(data.ts, data.xs, data.x0s, data.controls)
        return self._weigh(r)


class MultipleShootingLoss(AbstractSysIdLoss):
    """Multiple shooting: cut each trajectory into segments of `segment` sampling
    intervals, integrate the model over each segment from the observed state at its
    start (the first from the known initial state), and compare with the other
    observations of the segment.

    Short segments keep the loss landscape benign where single shooting has many
    local minima (oscillators, chaotic or unstable systems); with noisy data the
    starts are noisy, which biases the fit a little. Observations beyond the last
    whole segment are ignored.

    **Arguments:**

    - `segment`: sampling intervals per segment (>= 1).
    - `simulator`: a [`toolkit.control.learning.Simulator`][].
    - `weights`: optional per-state weights of the residuals.
    """

    segment: int = eqx.field(static=True, default=5)
    simulator: AbstractSimulator = Simulator()
    weights: Float[Array, " nx"] | None = None

    def __check_init__(self):
        if not isinstance(self.segment, int) or self.segment < 1:
            raise ValueError(f"`segment` must be an integer >= 1, got {self.segment!r}.")

    def residuals(self, model, data):
        T = data.ts.shape[1]
        S = (T - 1) // self.segment
        if S < 1:
            raise ValueError(
                f"`segment={self.segment}` is longer than the trajectories ({T - 1} "
                "sampling intervals)."
            )
        idx = self.segment * jnp.arange(S)[:, None] + jnp.arange(self.segment + 1)[None]

        def one(ts, xs, x0, controls):
            starts = xs[idx[:, 0]].at[0].set(x0)

            def seg(t, xstart):
                return simulate(
                    model.dynamics,
                    xstart,
                    controls,
                    t,
                    args=model.resolved_args,
                    simulator=self.simulator,
                )

            pred = jax.vmap(seg)(ts[idx], starts)
            return pred[:, 1:] - xs[idx[:, 1:]]

        r = jax.vmap(one)(data.ts, data.xs, data.x0s, data.controls)
        return self._weigh(r)


def _filter(model: Model, filter_spec: PyTree[bool] | None) -> PyTree[bool]:
    return trainable(model) if filter_spec is None else filter_spec


def _partition(model: Model, filter_spec: PyTree[bool] | None) -> tuple[Model, Model]:
    """`(params, static)`, the learned arrays made strongly typed: a weakly typed
    parameter (`jnp.array(0.3)`) would come back strong from the first update and
    make every jitted step compile twice."""
    params, static = eqx.partition(model, _filter(model, filter_spec))
    params = jax.tree_util.tree_map(lambda a: jnp.array(a, dtype=jnp.result_type(a)), params)
    return params, static


def fit(
    model: Model,
    data: Trajectories,
    *,
    loss: AbstractSysIdLoss = SingleShootingLoss(),
    optimiser: optax.GradientTransformation = optax.adam(1e-2),
    steps: int = 1000,
    valid: Trajectories | None = None,
    valid_loss: AbstractSysIdLoss | None = None,
    batch_size: int | None = None,
    key: PRNGKeyArray | None = None,
    eval_every: int = 50,
    filter_spec: PyTree[bool] | None = None,
    curriculum: SegmentCurriculum | None = None,
) -> tuple[Model, dict[str, Any]]:
    """Fit a model to observed trajectories with an optax optimiser (system
    identification by gradient descent through diffrax).

    **Arguments:**

    - `model`: the initial [`toolkit.control.learning.Model`][].
    - `data`: training [`toolkit.control.learning.Trajectories`][].
    - `loss`: [`toolkit.control.learning.SingleShootingLoss`][] (default) or
        [`toolkit.control.learning.MultipleShootingLoss`][].
    - `optimiser`: an optax `GradientTransformation` (default Adam, 1e-2).
    - `steps`: optimiser steps.
    - `valid`: optional held-out trajectories, whose loss is recorded every
        `eval_every` steps.
    - `valid_loss`: the loss on `valid` (default `loss`); e.g. a
        [`toolkit.control.learning.SingleShootingLoss`][] to score whole-horizon
        predictions of a model trained on multiple shooting.
    - `batch_size`: trajectories per step, drawn at random with `key`; default all.
    - `key`: a PRNG key, needed with `batch_size`.
    - `eval_every`: the period of the recorded losses.
    - `filter_spec`: which leaves of `model` to learn (default
        [`toolkit.control.learning.trainable`][]).
    - `curriculum`: an optional [`toolkit.control.learning.SegmentCurriculum`][]:
        each step then uses `loss`, a
        [`toolkit.control.learning.MultipleShootingLoss`][], with the segment length
        the curriculum schedules for it (growing up to the whole horizon; one compile
        per length) in place of its own.

    **Returns:**

    `(model, history)`, where `history` holds `"step"`, `"train"` (the training loss
    at those steps; with a curriculum, the loss of the segments of that step, or of
    the last step for the final record) and, with `valid`, `"valid"`; with a
    curriculum, also `"segment"`, the segment length of each recorded step.

    **Raises:**

    `FloatingPointError` as soon as a recorded loss is not finite (at step 0 when the
    initial model's is not, else within `eval_every` steps of the divergence): its
    message says what to change.
    """
    if batch_size is not None and key is None:
        raise ValueError("`batch_size` needs a `key` to draw the minibatches.")
    valid_loss = loss if valid_loss is None else valid_loss
    if curriculum is None:
        losses = [loss] * (steps + 1)
    else:
        if not isinstance(loss, MultipleShootingLoss):
            raise ValueError(
                "`curriculum` grows the segments of a `MultipleShootingLoss`; got "
                f"`loss={type(loss).__name__}(...)`."
            )
        segments = curriculum.schedule(steps, data.ts.shape[1] - 1)
        segments.append(segments[-1] if segments else loss.segment)
        losses = [dataclasses.replace(loss, segment=s) for s in segments]
    params, static = _partition(model, filter_spec)
    opt_state = _init(optimiser, params)

    @filter_jit
    def step(params, opt_state, batch, loss):
        def f(p):
            return loss(eqx.combine(p, static), batch)

        value, grads = eqx.filter_value_and_grad(f)(params)
        params, opt_state = _update(optimiser, grads, opt_state, params)
        return params, opt_state, value

    @filter_jit
    def evaluate(params, batch, which):
        return which(eqx.combine(params, static), batch)

    history: dict[str, Any] = {"step": [], "train": []}
    if valid is not None:
        history["valid"] = []
    if curriculum is not None:
        history["segment"] = []

    def record(i):
        history["step"].append(i)
        history["train"].append(float(evaluate(params, data, losses[i])))
        if curriculum is not None:
            history["segment"].append(losses[i].segment)
        if valid is not None:
            history["valid"].append(float(evaluate(params, valid, valid_loss)))
        # The losses are on the host here; a check inside `step` would need a host
        # callback, which the persistent compilation cache refuses.
        names = {"train": "the training loss", "valid": "the held-out loss"}
        for name in names.keys() & history.keys():
            _check_finite(
                "system identification",
                names[name],
                history[name][-1],
                i,
                history["step"][-2] if i > 0 else None,
                "lower the optimiser's learning rate",
                _SCALING,
            )

    for i in range(steps):
        if i % eval_every == 0:
            record(i)
        batch = data
        if batch_size is not None:
            assert key is not None
            key, sub = jr.split(key)
            idx = jr.choice(sub, data.size, (batch_size,), replace=False)
            batch = jax.tree_util.tree_map(lambda a: a[idx], data)
        params, opt_state, _ = step(params, opt_state, batch, losses[i])
    record(steps)
    return eqx.combine(params, static), history


_SCALING = (
    "scale the problem: weigh the residuals by 1 / each state's scale (the loss's "
    "`weights`) and normalise the vector field's inputs (`x_scale`)"
)


def _check_finite(
    stage: str,
    what: str,
    value: float,
    step: int,
    last_good: int | None,
    learning_rate: str,
    scaling: str,
) -> None:
    """Raise `FloatingPointError` unless `value`, a loss brought to the host at
    `step`, is finite: a diverged fit stops at once, saying what to change, rather
    than handing a NaN model to what follows (issue 26). Step 0 comes before any
    update, so there the learning rate is not the cause."""
    if math.isfinite(value):
        return
    if step == 0:
        raise FloatingPointError(
            f"{stage} cannot start: {what} of the initial model is {value}, before any "
            f"update (the learning rate is not the cause); {scaling}."
        )
    since = "" if last_good is None else f" (it was finite at step {last_good})"
    raise FloatingPointError(
        f"{stage} diverged: {what} is {value} at step {step}{since}; {learning_rate}, or {scaling}."
    )


def fit_least_squares(
    model: Model,
    data: Trajectories,
    *,
    loss: AbstractSysIdLoss = SingleShootingLoss(),
    solver: optx.AbstractLeastSquaresSolver = optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10),
    max_steps: int = 100,
    filter_spec: PyTree[bool] | None = None,
    throw: bool = True,
) -> tuple[Model, optx.Solution]:
    """Fit a model to observed trajectories by nonlinear least squares
    (`optimistix.least_squares`, Levenberg–Marquardt by default) on the residuals of
    `loss`.

    Best for parametric models with few parameters: the Jacobian is computed in
    forward mode (one JVP per parameter, through a `diffrax.ForwardMode` solve), and
    Gauss–Newton steps converge in a handful of iterations.

    **Arguments:**

    - `model`, `data`, `loss`, `filter_spec`: as in
        [`toolkit.control.learning.fit`][].
    - `solver`: an optimistix least-squares solver.
    - `max_steps`: the solver's iteration budget.
    - `throw`: raise if the solver fails (default); else report it in the solution.

    **Returns:**

    `(model, solution)`: the fitted model and optimistix's `Solution`.

    **Raises:**

    With `throw`, `FloatingPointError` when the residuals or the Jacobian are not
    finite (its message says what to change), `equinox.EquinoxRuntimeError` for
    another failure.
    """
    params, static = _partition(model, filter_spec)
    if isinstance(loss.simulator, Simulator):
        # Forward-mode Jacobians of diffrax's solve (FixedStepRK4's scan needs nothing).
        loss = eqx.tree_at(lambda l: l.simulator.adjoint, loss, diffrax.ForwardMode())
    # The solve never throws itself: it returns its result and the check is made here,
    # so the compiled solve holds no host callback (JAX's persistent compilation cache
    # refuses those) and a non-finite solve gets its own message.
    sol = _least_squares(_Residuals(loss, static), solver, params, data, max_steps, False)
    if throw:
        result = sol.result._value  # pyright: ignore
        if not isinstance(result, jax.core.Tracer) and sol.result == optx.RESULTS.nonfinite:
            raise FloatingPointError(
                "system identification diverged: the least-squares solve met non-finite "
                "residuals or Jacobian; start from parameters nearer the truth, or scale "
                "the problem: weigh the residuals by 1 / each state's scale (the loss's "
                "`weights`)."
            )
        sol = eqx.tree_at(
            lambda s: s.value,
            sol,
            sol.result.error_if(sol.value, sol.result != optx.RESULTS.successful),
        )
    return eqx.combine(sol.value, static), sol


class _Residuals(eqx.Module):
    loss: AbstractSysIdLoss
    static: Model

    def __call__(self, params, data):
        return self.loss.residuals(eqx.combine(params, self.static), data)


@filter_jit
def _least_squares(residuals, solver, params, data, max_steps, throw):
    return optx.least_squares(
        residuals, solver, params, args=data, max_steps=max_steps, throw=throw
    )


# optax mixes Python floats with int32 step counts (Adam's bias correction), which
# strict dtype promotion refuses; these are optax's internals, not ours.
def _init(optimiser: optax.GradientTransformation, params):
    with jax.numpy_dtype_promotion("standard"):
        return optimiser.init(params)


def _update(optimiser: optax.GradientTransformation, grads, opt_state, params):
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimiser.update(grads, opt_state, params)
    return eqx.apply_updates(params, updates), opt_state
