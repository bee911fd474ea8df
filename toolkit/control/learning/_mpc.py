from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, PyTree, Scalar

from ..._jit import filter_jit
from .._plan import plan
from .._planner.base import AbstractPlanner
from .._planner.presets import KKTNewton
from .._problem import OptimalControlProblem
from .._results import RESULTS
from .._solution import Solution
from .._transcription.base import AbstractTranscription
from ._controls import Controls
from ._simulate import _CostField, AbstractSimulator, Simulator


class ClosedLoop(eqx.Module):
    """A trajectory of the true system under a feedback (or open-loop) policy.

    **Fields:**

    - `ts`: `(S+1,)` the times of the control steps.
    - `xs`: `(S+1, nx)` the true states at those times.
    - `us`: `(S+1, nu)` the controls applied at the nodes (linear between them
        within each step, as planned; the last one ends the last step).
    - `cost`: the true cost incurred: the integrated running cost of the plant plus
        its terminal cost at `ts[-1]`.
    - `successful`: `(S,)` whether each step's plan succeeded (a step whose plan
        failed applies the previous plan, shifted by one step).
    - `num_steps`: `(S,)` the planner's iterations at each step.
    """

    ts: Float[Array, " S+1"]
    xs: Float[Array, "S+1 nx"]
    us: Float[Array, "S+1 nu"]
    cost: Scalar
    successful: Bool[Array, " S"]
    num_steps: Int[Array, " S"]


def _shift(sol: Solution) -> Solution:
    """The plan moved one interval earlier, its last block repeated: the warm start
    (and the fallback controls) of the next step."""

    def shift(a):
        return jnp.concatenate([a[1:], a[-1:]])

    lam = sol.multipliers
    # The last block of multipliers holds the final-state rows: shift the others.
    lam = jnp.concatenate([lam[1:-1], lam[-2:-1], lam[-1:]])
    return eqx.tree_at(
        lambda s: (s.z, s.multipliers, s.us), sol, (shift(sol.z), lam, shift(sol.us))
    )


def _project(sol: Solution, problem: OptimalControlProblem, transcription, args) -> Solution:
    """Clip the unknowns into the new problem's box, which fixes its initial state."""
    lo, hi = transcription.bounds(problem, args)
    return eqx.tree_at(lambda s: s.z, sol, jnp.clip(sol.z, lo, hi))


def _rollout(
    plant: OptimalControlProblem,
    plant_args: PyTree[Any],
    policy: Callable[[Any, Scalar, Array], tuple[Array, Array, Any, Array, Array]],
    policy_state: Any,
    x0: Array,
    t0: Scalar,
    dt: Scalar,
    steps: int,
    key: PRNGKeyArray,
    process_noise: Array,
    measurement_noise: Array,
    simulator: AbstractSimulator,
) -> ClosedLoop:
    field = _CostField(plant, plant_args)
    nx = plant.nx

    def body(carry, k):
        x, state, cost = carry
        t = t0 + k.astype(x0.dtype) * dt
        meas_key, proc_key = jr.split(jr.fold_in(key, k))
        y = x + measurement_noise * jr.normal(meas_key, x.shape, x.dtype)
        u0, u1, state, ok, num = policy(state, t, y)
        controls = Controls(ts=jnp.stack([t, t + dt]), values=jnp.stack([u0, u1]))
        y0 = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])
        end = simulator.final(field, y0, controls, t, t + dt)
        x_next = end[:nx] + process_noise * jr.normal(proc_key, x.shape, x.dtype)
        if plant.x_bounds is not None:
            x_next = jnp.clip(x_next, *plant.x_bounds)
        return (x_next, state, cost + end[nx]), (x_next, u0, u1, ok, num)

    cost0 = jnp.zeros((), x0.dtype)
    (x, _, cost), (xs, u0s, u1s, ok, num) = jax.lax.scan(
        body, (x0, policy_state, cost0), jnp.arange(steps)
    )
    if plant.terminal_cost is not None:
        cost = cost + plant.terminal_cost(x, plant_args)
    ts = t0 + dt * jnp.arange(steps + 1, dtype=x0.dtype)
    return ClosedLoop(
        ts=ts,
        xs=jnp.concatenate([x0[None], xs]),
        us=jnp.concatenate([u0s, u1s[-1:]]),
        cost=cost,
        successful=ok,
        num_steps=num,
    )


@filter_jit
def mpc(
    plant: OptimalControlProblem,
    problem: OptimalControlProblem,
    transcription: AbstractTranscription,
    solver: AbstractPlanner = KKTNewton(),
    *,
    steps: int,
    args: PyTree[Any] = None,
    plant_args: PyTree[Any] = None,
    init: Solution | None = None,
    key: PRNGKeyArray | None = None,
    process_noise: ArrayLike = 0.0,
    measurement_noise: ArrayLike = 0.0,
    simulator: AbstractSimulator = Simulator(),
) -> ClosedLoop:
    """Receding-horizon model predictive control of a true system.

    At each step, the (noisily) measured state of the plant becomes the initial
    state of `problem`, whose horizon `[t0, t1]` is moved forward to start at the
    current time; the plan (warm-started from the previous one shifted by a step)
    gives the control over the next interval, `h = (t1 - t0) / N`, which is applied
    to the plant (linear between the plan's first two nodes) and integrated with
    diffrax; then process noise is added. The planner's model can be the truth, a
    mis-specified one, or a learned one
    ([`toolkit.control.learning.learned_problem`][]).

    Batch over scenarios with `jax.vmap` (over `key`, initial states of `plant`,
    parameters, ...).

    **Arguments:**

    - `plant`: the true system: its `dynamics`, running and terminal costs (with
        `plant_args`) and initial state `x0`.
    - `problem`: the problem that is planned at every step (its dynamics are the
        model; its `x0` and time window are replaced at each step).
    - `transcription`, `solver`: as in [`toolkit.control.plan`][].
    - `steps`: the number of control steps (each `h` long).
    - `args`: the parameters of `problem`.
    - `plant_args`: the parameters of `plant`.
    - `init`: the plan from the plant's initial state to warm-start the first step
        (default: planned from scratch).
    - `key`: a PRNG key for the noise (needed when there is noise).
    - `process_noise`: the standard deviation of Gaussian noise added to the state
        after each step (scalar or per component).
    - `measurement_noise`: that of the noise on the measured state given to the
        planner.
    - `simulator`: a [`toolkit.control.learning.Simulator`][] for the plant.

    **Returns:**

    A [`toolkit.control.learning.ClosedLoop`][].
    """
    if key is None:
        key = jr.key(0)
    dtype = plant.x0.dtype
    process_noise = jnp.asarray(process_noise, dtype)
    measurement_noise = jnp.asarray(measurement_noise, dtype)
    horizon = problem.t1 - problem.t0
    dt = horizon / transcription.N

    def at(t, x):
        return eqx.tree_at(lambda p: (p.x0, p.t0, p.t1), problem, (x, t, t + horizon))

    first = at(plant.t0, plant.x0)
    if init is None:
        init = plan(first, transcription, solver, args=args, throw=False)

    lo, hi = problem.u_bounds

    def policy(state, t, y):
        # `state` is the last plan, already shifted to start at `t`.
        here = at(t, y)
        init = _project(state, here, transcription, args)
        sol = plan(here, transcription, solver, args=args, init=init, throw=False)
        ok = sol.result == RESULTS.successful
        # A failed plan is not applied: the previous one, shifted, is.
        us = jnp.clip(jnp.where(ok, sol.us, state.us), lo[None], hi[None])
        nxt = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), _shift(sol), _shift(state))
        return us[0], us[1], jax.lax.stop_gradient(nxt), ok, sol.stats["num_steps"]

    state = jax.lax.stop_gradient(init)
    return _rollout(
        plant,
        plant_args,
        policy,
        state,
        plant.x0,
        plant.t0,
        dt,
        steps,
        key,
        process_noise,
        measurement_noise,
        simulator,
    )


@filter_jit
def open_loop(
    plant: OptimalControlProblem,
    controls: Controls,
    *,
    steps: int,
    dt: ArrayLike,
    plant_args: PyTree[Any] = None,
    key: PRNGKeyArray | None = None,
    process_noise: ArrayLike = 0.0,
    simulator: AbstractSimulator = Simulator(),
) -> ClosedLoop:
    """The plant under a fixed control signal, stepped exactly like
    [`toolkit.control.learning.mpc`][] (same steps, same noise for the same `key`),
    as a baseline: e.g. `open_loop(plant, Controls.from_solution(sol), steps=N,
    dt=h)` applies a plan without feedback.

    **Arguments:** as in [`toolkit.control.learning.mpc`][], with `controls` a
    [`toolkit.control.learning.Controls`][] and `dt` the step length.

    **Returns:**

    A [`toolkit.control.learning.ClosedLoop`][] (`successful` all true,
    `num_steps` zero).
    """
    if key is None:
        key = jr.key(0)
    dtype = plant.x0.dtype
    dt = jnp.asarray(dt, dtype)

    def policy(state, t, y):
        del y
        return controls(t), controls(t + dt), state, jnp.array(True), jnp.array(0)

    return _rollout(
        plant,
        plant_args,
        policy,
        None,
        plant.x0,
        plant.t0,
        dt,
        steps,
        key,
        jnp.asarray(process_noise, dtype),
        jnp.zeros((), dtype),
        simulator,
    )
