import abc
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import optimistix as optx
from jaxtyping import Array, Float, PyTree, Scalar

from ..._jit import filter_jit
from .._plan import plan
from .._planner.base import AbstractPlanner
from .._planner.implicit_adjoint import ImplicitAdjointWithoutCallback
from .._planner.presets import KKTNewton
from .._planner.shift_on_failure import solve_failed
from .._planner.wrapped_solver import WrappedSolver
from .._problem import OptimalControlProblem
from .._results import RESULTS
from .._solution import Solution
from .._stages import linear_solver_of
from .._transcription.base import AbstractTranscription
from ._controls import Controls
from ._model import learned_problem, Model
from ._simulate import AbstractSimulator, cost_and_final_state, Simulator
from ._sysid import (
    _check_finite,
    _init,
    _partition,
    _SCALING,
    _update,
    AbstractSysIdLoss,
    SingleShootingLoss,
)
from ._trajectories import Trajectories


class AbstractPlanLoss(eqx.Module):
    """A loss on a plan: `loss(sol) -> scalar` for a [`toolkit.control.Solution`][]."""

    @abc.abstractmethod
    def __call__(self, sol: Solution) -> Scalar:
        """The loss of the plan `sol`."""


class TrueCost(AbstractPlanLoss):
    """The true-system cost of a plan: its controls (linear between the plan's
    nodes) applied to the true dynamics from the true `x0`, integrated by
    `simulator`, and scored with the true running and terminal costs
    ([`toolkit.control.learning.evaluate`][]); where the problem fixes the final
    state (`xT`), plus `terminal_weight` times the squared miss of it,
    `|x(t1) - xT|²`.

    This is the decision-focused objective: a model is good when the plans made with
    it are good on the real system, not when it predicts every state well. The plan
    meets `xT` for the model, not necessarily for the true system; without the miss
    term, a model whose plans never reach the target (a cart-pole that does not swing
    up: no effort, almost no cost) would score better than the truth.

    **Arguments:**

    - `problem`: the true [`toolkit.control.OptimalControlProblem`][].
    - `args`: its parameters.
    - `simulator`: a [`toolkit.control.learning.Simulator`][] or
        [`toolkit.control.learning.FixedStepRK4`][]; fixed steps make the loss a
        smooth function of the plan.
    - `terminal_weight`: the weight of the squared miss of `xT` (ignored when the
        problem has no `xT`); default 100.
    """

    problem: OptimalControlProblem
    args: PyTree[Any] = None
    simulator: AbstractSimulator = Simulator()
    terminal_weight: float = 100.0

    def __call__(self, sol):
        cost, x1 = self._cost_and_final_state(sol)
        if self.problem.xT is None:
            return cost
        return cost + self.terminal_weight * jnp.sum((x1 - self.problem.xT) ** 2)

    def terminal_miss(self, sol: Solution) -> Scalar | None:
        """`max |x(t1) - xT|` of the plan on the true system; None without `xT`."""
        if self.problem.xT is None:
            return None
        return jnp.max(jnp.abs(self._cost_and_final_state(sol)[1] - self.problem.xT))

    def _cost_and_final_state(self, sol):
        controls = Controls.from_solution(sol)
        return cost_and_final_state(self.problem, controls, self.args, self.simulator)


class Imitation(AbstractPlanLoss):
    """Imitation of an expert trajectory: the mean squared difference between the
    plan's node states and controls and the expert's at the same nodes,
    `mean(x_weight (xs - expert_xs)²) + mean(u_weight (us - expert_us)²)`.

    **Arguments:**

    - `xs`: `(N+1, nx)` expert states at the plan's grid nodes.
    - `us`: `(N+1, nu)` expert controls at the nodes.
    - `x_weight`, `u_weight`: weights (scalars or per component; default 1).
    """

    xs: Float[Array, "N+1 nx"]
    us: Float[Array, "N+1 nu"]
    x_weight: Float[Array, "..."] = eqx.field(default_factory=lambda: jnp.ones(()))
    u_weight: Float[Array, "..."] = eqx.field(default_factory=lambda: jnp.ones(()))

    def __call__(self, sol):
        if sol.xs.shape != self.xs.shape or sol.us.shape != self.us.shape:
            raise ValueError(
                f"The plan has states {sol.xs.shape} and controls {sol.us.shape}, the "
                f"expert {self.xs.shape} and {self.us.shape}: plan on the expert's grid."
            )
        wx = jax.lax.stop_gradient(jnp.asarray(self.x_weight, sol.xs.dtype))
        wu = jax.lax.stop_gradient(jnp.asarray(self.u_weight, sol.us.dtype))
        return jnp.mean(wx * (sol.xs - self.xs) ** 2) + jnp.mean(wu * (sol.us - self.us) ** 2)


def plan_loss(
    model: Model,
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    loss: AbstractPlanLoss,
    solver: AbstractPlanner = KKTNewton(),
    *,
    args: PyTree[Any] = None,
    init: Solution | None = None,
    adjoint: optx.AbstractAdjoint | None = None,
) -> tuple[Scalar, Solution]:
    """Plan with a learned model and score the plan: the end-to-end loss.

    `jax.grad` of it w.r.t. the model flows through
    [`toolkit.control.plan`][] by the implicit function theorem (one linear solve
    with the KKT Jacobian), or by unrolling with
    `adjoint=optimistix.RecursiveCheckpointAdjoint()`.

    **Arguments:**

    - `model`: the [`toolkit.control.learning.Model`][] to plan with.
    - `problem`: the problem whose costs, `x0`, horizon and boxes are used (its
        dynamics are replaced by the model's, see
        [`toolkit.control.learning.learned_problem`][]).
    - `transcription`, `solver`, `init`, `adjoint`: as in `control.plan`.
    - `loss`: a plan loss, [`toolkit.control.learning.TrueCost`][] or
        [`toolkit.control.learning.Imitation`][].
    - `args`: the problem's (cost) parameters.

    **Returns:**

    `(loss, sol)`: the scalar loss and the plan, planned with `throw=False` (check
    `sol.result`: the loss of a failed plan means nothing).
    """
    sol = plan(
        learned_problem(problem, model),
        transcription,
        solver,
        args=args,
        init=init,
        adjoint=adjoint,
        throw=False,
    )
    return loss(sol), sol


def _selection_score(
    model: Model,
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    loss: AbstractPlanLoss,
    solver: AbstractPlanner,
    args: PyTree[Any],
) -> tuple[float, Solution]:
    """The measure by which end-to-end training keeps a model, and by which it is
    reported: `plan_loss` of a plan from the planner's default start (as a user
    deploys the model), `inf` when that plan fails or its loss is not finite."""
    value, sol = plan_loss(model, problem, transcription, loss, solver, args=args)
    value = float(value)
    if sol.result != RESULTS.successful or not math.isfinite(value):
        value = math.inf
    return value, sol


def _check_model(params: PyTree[Array]) -> None:
    """Refuse a model with non-finite parameters before planning with it: the
    implicit adjoint would fail deep inside its linear solve."""
    if not all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree_util.tree_leaves(params)):
        raise FloatingPointError(
            "end-to-end training needs a finite model, but some of its parameters are "
            "not finite; did system identification diverge? Lower its learning rate, or "
            "scale the problem (the sysid loss's `weights`, the vector field's `x_scale`)."
        )


def fit_end_to_end(
    model: Model,
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    loss: AbstractPlanLoss,
    solver: AbstractPlanner = KKTNewton(),
    *,
    args: PyTree[Any] = None,
    optimiser: optax.GradientTransformation = optax.adam(1e-2),
    steps: int = 100,
    data: Trajectories | None = None,
    sysid_loss: AbstractSysIdLoss = SingleShootingLoss(),
    sysid_weight: float = 0.0,
    warm_start: bool = True,
    adjoint: optx.AbstractAdjoint | None = None,
    filter_spec: PyTree[bool] | None = None,
    keep_best: bool = False,
    init: Solution | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    metrics: dict[str, Callable[[Solution], Scalar]] | None = None,
) -> tuple[Model, dict[str, Any]]:
    """Train a model end to end through the planner: minimise
    `loss(plan(model)) + sysid_weight * sysid_loss(model, data)` with optax.

    Every step plans with the current model (warm-started from the last plan when
    `warm_start`), differentiates through the plan implicitly, and updates the model.
    A step whose plan fails takes no update and halves the last one (the model moves
    halfway back to the last one whose plan succeeded), so that training resumes
    where plans converge (it is counted in
    `history["failed"]`).

    **Arguments:**

    - `model`: the initial [`toolkit.control.learning.Model`][] (e.g. after
        [`toolkit.control.learning.fit`][]).
    - `problem`, `transcription`, `loss`, `solver`, `args`, `adjoint`: as in
        [`toolkit.control.learning.plan_loss`][].
    - `optimiser`: an optax `GradientTransformation` (default Adam, 1e-2).
    - `steps`: optimiser steps.
    - `data`, `sysid_loss`, `sysid_weight`: an optional system-identification term
        that keeps the model faithful to observed trajectories while its plans
        improve (needs `data` when `sysid_weight > 0`).
    - `warm_start`: start each plan from the previous one.
    - `filter_spec`: which leaves of `model` to learn (default
        [`toolkit.control.learning.trainable`][]).
    - `keep_best`: return the best model rather than the last one (early stopping:
        with a rough landscape, e.g. the true-system cost of coarse plans of an
        oscillator, Adam's iterates wander). The candidates are the initial model
        (step 0) and the model after each step; each is scored by the measure the
        model is reported and deployed with, `plan_loss(model, problem,
        transcription, loss, solver, args=args)`: a plan from the planner's default
        start (not the warm-started plan of training), scored by `loss` alone
        (without the sysid term). A failed plan scores `inf`, and ties keep the
        earlier model, so the model returned is never worse than the initial one on
        that measure. This costs one more plan, without derivatives, per step.
    - `init`: the warm start of the first plan (e.g. the initial model's plan; a
        plan of the same structure as the later ones saves a compile); default the
        planner's start.
    - `callback`: called after each step as `callback(step, history)`, with the
        history so far (e.g. to show progress); its return value is ignored.
    - `metrics`: named measures of each step's plan to record, `{name: fn}` with
        `fn(sol) -> scalar` (an [`toolkit.control.learning.AbstractPlanLoss`][], say):
        e.g. `{"true_cost": TrueCost(...)}` follows the true-system cost of the plans
        that imitation trains on. Evaluated (compiled once) on the plan of every step,
        failed plans included; they do not enter the loss.

    **Returns:**

    `(model, history)`: `history` holds, per step before its update, `"loss"` (the
    plan loss), `"sysid"` (the sysid term, with `data`), `"plan_cost"` (the plan's
    own objective on the model) and `"successful"`; and `"failed"`, the number of
    failed plans. With `keep_best`, also `"selection"`, the score above of the
    initial model and of the model after each step (`steps + 1` values), and
    `"kept"`, the index in it of the returned model (0: the initial one). (Score the
    returned model with [`toolkit.control.learning.plan_loss`][].) Each of `metrics`
    under its name, per step.

    **Raises:**

    `FloatingPointError` when `model` has non-finite parameters, or as soon as a
    step's sysid term, or the loss of a successful plan, is not finite: its message
    says what to change.
    """
    if sysid_weight > 0 and data is None:
        raise ValueError("`sysid_weight > 0` needs `data`, the trajectories to fit.")
    params, static = _partition(model, filter_spec)
    _check_model(params)
    opt_state = _init(optimiser, params)
    weight = jnp.asarray(sysid_weight, jnp.result_type(float))
    history: dict[str, Any] = {"loss": [], "sysid": [], "plan_cost": [], "successful": []}
    metrics = {} if metrics is None else dict(metrics)
    taken = {*history, "selection", "kept", "failed"} & set(metrics)
    if taken:
        raise ValueError(f"`metrics` may not be named {sorted(taken)}: the history uses them.")
    history.update({name: [] for name in metrics})
    if keep_best:
        score, _ = _selection_score(model, problem, transcription, loss, solver, args)
        history["selection"], history["kept"] = [score], 0
        best = (score, params)
    last_good = None
    init = None if init is None else jax.lax.stop_gradient(init)
    for i in range(steps):
        current = params
        params, opt_state, value, sysid, sol, ok = _end_to_end_step(
            params,
            opt_state,
            static,
            problem,
            transcription,
            loss,
            solver,
            args,
            optimiser,
            data,
            sysid_loss,
            weight,
            init if warm_start else None,
            adjoint,
        )
        ok = bool(ok)
        history["loss"].append(float(value))
        history["sysid"].append(float(sysid))
        history["plan_cost"].append(float(sol.cost))
        history["successful"].append(ok)
        for name, metric in metrics.items():
            history[name].append(float(_measure(metric, sol)))
        _check_step(history, i, sol, data is not None, "lower the optimiser's learning rate")
        if ok:
            init, last_good = jax.lax.stop_gradient(sol), current
        elif last_good is not None:
            params = backtrack(last_good, params)
        if keep_best:
            score = history["selection"][-1]
            if ok:  # else the model is unchanged
                model = eqx.combine(params, static)
                score, _ = _selection_score(model, problem, transcription, loss, solver, args)
            history["selection"].append(score)
            if score < best[0]:
                best = (score, params)
                history["kept"] = i + 1
        if callback is not None:
            callback(i, history)
    if keep_best:
        params = best[1]
    history["failed"] = history["successful"].count(False)
    return eqx.combine(params, static), history


@filter_jit
def _measure(metric, sol):
    return metric(sol)


def backtrack(last_good: PyTree, failed: PyTree) -> PyTree:
    """Halfway back from parameters whose plan failed to the last ones whose plan
    succeeded. Left where it failed, the model would fail again at every step (the
    same plan from the same start); halving the last update brings it back to where
    the plan converges."""
    return jax.tree_util.tree_map(lambda g, f: g + 0.5 * (f - g), last_good, failed)


def _check_step(
    history: dict[str, Any], step: int, sol: Solution, sysid: bool, learning_rate: str
) -> None:
    """Raise `FloatingPointError` if the step's sysid term, or the loss of its plan
    when the plan succeeded, is not finite (a failed plan is only counted)."""
    if sysid:
        _check_finite(
            "end-to-end training",
            "the sysid term",
            history["sysid"][-1],
            step,
            None,
            learning_rate,
            _SCALING,
        )
    if sol.result == RESULTS.successful:
        _check_finite(
            "end-to-end training",
            "the loss of the plan",
            history["loss"][-1],
            step,
            None,
            learning_rate,
            "scale the plan loss to values of order one",
        )


class _ZeroIfNonFinite(WrappedSolver):
    """A linear solver whose failed or non-finite solutions become zero, for the implicit
    adjoint of an end-to-end step: at a plan that failed (not a root), the KKT
    Jacobian may be singular, and the gradient would be NaN. Such a step's gradient
    is discarded anyway (its plan failed)."""

    def compute(self, state, vector, options):
        solution, result, stats = self.inner.compute(state, vector, options)
        bad = solve_failed(solution, result)
        solution = jax.tree.map(lambda x: jnp.where(bad, jnp.zeros_like(x), x), solution)
        return solution, lx.RESULTS.where(bad, lx.RESULTS.successful, result), stats


def _end_to_end_step(
    params,
    opt_state,
    static,
    problem,
    transcription,
    loss,
    solver,
    args,
    optimiser,
    data,
    sysid_loss,
    weight,
    init,
    adjoint,
):
    if adjoint is None:
        # The plan runs inside this jitted training step, as in a user's program.
        linear_solver = linear_solver_of(solver, transcription, problem, in_user_program=True)
        zero_if_failed = _ZeroIfNonFinite(linear_solver)
        adjoint = ImplicitAdjointWithoutCallback(zero_if_failed)

    def total(p):
        model = eqx.combine(p, static)
        value, sol = plan_loss(
            model, problem, transcription, loss, solver, args=args, init=init, adjoint=adjoint
        )
        sysid = jnp.zeros_like(value) if data is None else sysid_loss(model, data)
        return value + weight * sysid, (value, sysid, sol)

    (_, (value, sysid, sol)), grads = eqx.filter_value_and_grad(total, has_aux=True)(params)
    new_params, new_opt_state, ok = _update_if_ok(
        sol.result == RESULTS.successful, optimiser, grads, opt_state, params
    )
    return new_params, new_opt_state, value, sysid, sol, ok


# One program: the step above runs eagerly (so that its plan runs in stages), where
# each of these operations would compile a small program of its own.
@filter_jit
def _update_if_ok(solved, optimiser, grads, opt_state, params):
    """The optimiser's update where the plan was solved and the gradient is finite;
    else the parameters and the optimiser's state unchanged (a failed plan has no
    meaningful gradient). Returns the two and whether the update was taken."""
    ok = solved & jax.tree_util.tree_reduce(
        jnp.logical_and,
        jax.tree_util.tree_map(lambda g: jnp.all(jnp.isfinite(g)), grads),
        jnp.array(True),
    )
    new_params, new_opt_state = _update(optimiser, grads, opt_state, params)
    new_params, new_opt_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(ok, new, old), (new_params, new_opt_state), (params, opt_state)
    )
    return new_params, new_opt_state, ok
