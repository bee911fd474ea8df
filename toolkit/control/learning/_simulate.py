import abc
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Scalar

from ..._jit import filter_jit
from .._problem import OptimalControlProblem
from ._controls import Controls


VectorField = Callable[[Scalar, Array, Callable[[Scalar], Array]], Array]


class AbstractSimulator(eqx.Module):
    """How to integrate dy/dt = field(t, y, u) under a control signal `u` (a
    strategy object, passed to [`toolkit.control.learning.simulate`][],
    [`toolkit.control.learning.evaluate`][], the system-identification losses,
    [`toolkit.control.learning.TrueCost`][] and [`toolkit.control.learning.mpc`][]).

    [`toolkit.control.learning.Simulator`][] wraps diffrax (any solver, adaptive
    steps); [`toolkit.control.learning.FixedStepRK4`][] takes fixed RK4 steps in a
    `lax.scan`, which compiles and runs many times faster where fixed steps will do.
    """

    @abc.abstractmethod
    def states(
        self, field: VectorField, y0: Array, controls: Controls, t0: Scalar, ts: Array
    ) -> Array:
        """The solution from `y(t0) = y0` at the increasing times `ts >= t0`, shape
        `(T, n)`."""

    @abc.abstractmethod
    def final(
        self, field: VectorField, y0: Array, controls: Controls, t0: Scalar, t1: Scalar
    ) -> Array:
        """The solution from `y(t0) = y0` at `t1 >= t0`."""


class Simulator(AbstractSimulator):
    """How to integrate dx/dt = f(t, x, u(t), args) under a control signal: a diffrax
    solver, step-size controller and adjoint.

    With an adaptive controller, the integrator is made to step onto the control's
    nodes (`step_ts`; `jump_ts` for piecewise-constant controls), where the signal
    has its kinks and jumps.

    **Arguments:**

    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-8, atol=1e-8)`;
        `diffrax.ConstantStepSize()` with `dt0` for fixed steps (a smooth function of
        every input, as finite-difference checks need; but see
        [`toolkit.control.learning.FixedStepRK4`][], which compiles and runs many
        times faster).
    - `dt0`: the (initial) step; `None` lets an adaptive controller choose.
    - `max_steps`: diffrax's step budget.
    - `adjoint`: how to differentiate the solve (default
        `diffrax.RecursiveCheckpointAdjoint()`; `diffrax.ForwardMode()` for
        forward-mode Jacobians).
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    stepsize_controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
        rtol=1e-8, atol=1e-8
    )
    dt0: float | None = None
    max_steps: int = 4096
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint()

    def __check_init__(self):
        if isinstance(self.stepsize_controller, diffrax.ConstantStepSize) and self.dt0 is None:
            raise ValueError("`dt0` is required with `diffrax.ConstantStepSize()`.")

    def solve(
        self,
        vector_field: Callable[[Scalar, Array, Controls], Array],
        y0: Array,
        controls: Controls,
        t0: Scalar,
        t1: Scalar,
        saveat: diffrax.SaveAt,
    ) -> diffrax.Solution:
        controller = self.stepsize_controller
        if not isinstance(controller, diffrax.ConstantStepSize):
            # Step onto the nodes of the control: its kinks (linear) or jumps (constant).
            if controls.kind == "constant":
                controller = diffrax.ClipStepSizeController(controller, jump_ts=controls.ts)
            else:
                controller = diffrax.ClipStepSizeController(controller, step_ts=controls.ts)
        return diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            self.solver,
            t0,
            t1,
            self.dt0,
            y0,
            args=controls,
            saveat=saveat,
            stepsize_controller=controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
        )

    def states(self, field, y0, controls, t0, ts):
        sol = self.solve(field, y0, controls, t0, ts[-1], diffrax.SaveAt(ts=ts))
        assert sol.ys is not None
        return sol.ys

    def final(self, field, y0, controls, t0, t1):
        sol = self.solve(field, y0, controls, t0, t1, diffrax.SaveAt(t1=True))
        assert sol.ys is not None
        return sol.ys[-1]


class _Held(eqx.Module):
    """A control held at one value over a step (between the jumps of a
    piecewise-constant signal)."""

    value: Array

    def __call__(self, t):
        return self.value


class FixedStepRK4(AbstractSimulator):
    """The classic fourth-order Runge–Kutta method with fixed steps, in a `lax.scan`.

    Each interval between consecutive breakpoints is cut into `steps_per_interval`
    equal steps. The breakpoints are the requested times: the sample times of
    [`toolkit.control.learning.simulate`][] (a multiple-shooting segment of 4 sampling
    intervals takes 4 x `steps_per_interval` steps), or, for the solution at one final
    time ([`toolkit.control.learning.evaluate`][], `TrueCost`, `mpc`), the control's
    nodes, where a linear control has its kinks and a piecewise-constant one its
    jumps. So those steps never straddle a kink or a jump and the method keeps its
    fourth order; a piecewise-constant control is held at its value on the step (its
    value at the step's midpoint). Between sample times, a kink inside a step costs
    the method an order and a jump two, as with any fixed-step method that does not
    step onto them.

    Against `Simulator(control.RK4(), diffrax.ConstantStepSize(), dt0)`: the same
    method, but the number of steps is known when tracing, so the integration is a
    `lax.scan` rather than diffrax's `while_loop` with recursive checkpointing: it
    compiles and runs several times faster, forward and reverse mode (`jax.jacfwd`,
    `jax.grad`) differentiate the scan directly, and the solution is a smooth
    function of every input (as finite-difference checks need). The step size follows
    the breakpoints: choose `steps_per_interval` so that it resolves the dynamics.
    Use diffrax's adaptive solvers where the accuracy must be controlled.

    **Arguments:**

    - `steps_per_interval`: RK4 steps between consecutive breakpoints (>= 1).
    """

    steps_per_interval: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        if not isinstance(self.steps_per_interval, int) or self.steps_per_interval < 1:
            raise ValueError(
                f"`steps_per_interval` must be an integer >= 1, got {self.steps_per_interval!r}."
            )

    def _integrate(self, field, y0, controls, grid, hold):
        return _fixed_step_rk4(self.steps_per_interval, field, y0, controls, grid, hold)

    def states(self, field, y0, controls, t0, ts):
        ts = jnp.asarray(ts)
        grid = jnp.concatenate([jnp.asarray(t0, ts.dtype)[None], ts])
        return self._integrate(field, y0, controls, grid, hold=False)[1:]

    def final(self, field, y0, controls, t0, t1):
        dtype = jnp.result_type(y0)
        t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
        nodes = jnp.clip(controls.ts.astype(dtype), t0, t1)
        grid = jnp.concatenate([t0[None], nodes, t1[None]])
        return self._integrate(field, y0, controls, grid, hold=True)[-1]


# One program also where a caller runs eagerly (an end-to-end step, so that its plan
# runs in stages), instead of one for each operation.
@filter_jit
def _fixed_step_rk4(m, field, y0, controls, grid, hold):
    """The solution at every point of the increasing `grid` (grid[0]: y0's time),
    `m` RK4 steps per interval; with `hold`, a piecewise-constant control is held at
    its value on each step (the grid holds its jumps)."""
    a, b = grid[:-1], grid[1:]
    h = jnp.repeat((b - a) / m, m)
    t = jnp.repeat(a, m) + jnp.tile(jnp.arange(m, dtype=grid.dtype), a.shape[0]) * h
    constant = hold and controls.kind == "constant"

    def step(y, th):
        t, h = th
        u = _Held(controls(t + h / 2)) if constant else controls
        k1 = field(t, y, u)
        k2 = field(t + h / 2, y + (h / 2) * k1, u)
        k3 = field(t + h / 2, y + (h / 2) * k2, u)
        k4 = field(t + h, y + h * k3, u)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return y, y

    _, ys = jax.lax.scan(step, y0, (t, h))
    return jnp.concatenate([y0[None], ys[m - 1 :: m]])


# The vector fields are Modules rather than closures, so that jitted callers (and
# diffrax's own jit) see the same static structure on every call and compile once.
class _ControlledField(eqx.Module):
    dynamics: Callable[[Scalar, Array, Array, PyTree[Any]], Array]
    args: PyTree[Any]

    def __call__(self, t, x, controls):
        return self.dynamics(t, x, controls(t), self.args)


class _CostField(eqx.Module):
    problem: OptimalControlProblem
    args: PyTree[Any]

    def __call__(self, t, y, controls):
        nx = self.problem.nx
        x, u = y[:nx], controls(t)
        dx = self.problem.dynamics(t, x, u, self.args)
        dc = self.problem.running_cost(t, x, u, self.args)
        return jnp.concatenate([dx, dc[None]])


@filter_jit
def simulate(
    dynamics: Callable[[Scalar, Array, Array, PyTree[Any]], Array],
    x0: Float[Array, " nx"],
    controls: Controls,
    ts: Float[Array, " T"],
    *,
    args: PyTree[Any] = None,
    t0: Scalar | None = None,
    simulator: AbstractSimulator = Simulator(),
) -> Float[Array, "T nx"]:
    """Integrate dx/dt = dynamics(t, x, u(t), args) from `x(t0) = x0` under the
    control signal `controls`, and return the states at the times `ts`.

    **Arguments:**

    - `dynamics`: `f(t, x, u, args) -> dx/dt` (a problem's dynamics, or a learned
        model such as a [`toolkit.control.learning.Model`][]'s).
    - `x0`: the initial state.
    - `controls`: a [`toolkit.control.learning.Controls`][] signal.
    - `ts`: increasing sample times, `ts[0] >= t0`.
    - `args`: passed to `dynamics`.
    - `t0`: the initial time (default `ts[0]`).
    - `simulator`: how to integrate, a [`toolkit.control.learning.Simulator`][]
        (diffrax; the default) or [`toolkit.control.learning.FixedStepRK4`][].

    **Returns:**

    The states, shape `(T, nx)`.
    """
    t0 = ts[0] if t0 is None else t0
    return simulator.states(_ControlledField(dynamics, args), x0, controls, t0, ts)


@filter_jit
def evaluate(
    problem: OptimalControlProblem,
    controls: Controls,
    *,
    args: PyTree[Any] = None,
    simulator: AbstractSimulator = Simulator(),
) -> Scalar:
    """The cost of a control signal on a problem's own (true) dynamics:
    integrate the state and the running cost together over `[t0, t1]` from `x0`, and
    add the terminal cost.

    This is what a plan costs when it is applied to the real system; with the
    planned controls of a model (`Controls.from_solution(sol)`) it is the true-system
    cost that end-to-end learning minimises
    (see [`toolkit.control.learning.TrueCost`][]).

    **Arguments:**

    - `problem`: the [`toolkit.control.OptimalControlProblem`][] (its dynamics,
        costs, `x0`, `t0`, `t1`).
    - `controls`: a [`toolkit.control.learning.Controls`][] signal.
    - `args`: the problem's parameters.
    - `simulator`: a [`toolkit.control.learning.Simulator`][] or
        [`toolkit.control.learning.FixedStepRK4`][].

    **Returns:**

    The scalar cost. State bounds are not checked.
    """
    return cost_and_final_state(problem, controls, args, simulator)[0]


def cost_and_final_state(
    problem: OptimalControlProblem,
    controls: Controls,
    args: PyTree[Any],
    simulator: AbstractSimulator,
) -> tuple[Scalar, Float[Array, " nx"]]:
    """What [`toolkit.control.learning.evaluate`][] computes, and the final state x(t1)
    of the same integration."""
    nx = problem.nx
    field = _CostField(problem, args)
    y0 = jnp.concatenate([problem.x0, jnp.zeros((1,), problem.x0.dtype)])
    y1 = simulator.final(field, y0, controls, problem.t0, problem.t1)
    cost = y1[nx]
    if problem.terminal_cost is not None:
        cost = cost + problem.terminal_cost(y1[:nx], args)
    return cost, y1[:nx]
