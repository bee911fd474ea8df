from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Scalar

from .._problem import OptimalControlProblem
from ._controls import Controls


class Simulator(eqx.Module):
    """How to integrate dx/dt = f(t, x, u(t), args) under a control signal: a diffrax
    solver, step-size controller and adjoint.

    With an adaptive controller, the integrator is made to step onto the control's
    nodes (`step_ts`; `jump_ts` for piecewise-constant controls), where the signal
    has its kinks and jumps.

    **Arguments:**

    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-8, atol=1e-8)`;
        `diffrax.ConstantStepSize()` with `dt0` for fixed steps (a smooth function of
        every input, as finite-difference checks need).
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


@eqx.filter_jit
def simulate(
    dynamics: Callable[[Scalar, Array, Array, PyTree[Any]], Array],
    x0: Float[Array, " nx"],
    controls: Controls,
    ts: Float[Array, " T"],
    *,
    args: PyTree[Any] = None,
    t0: Scalar | None = None,
    simulator: Simulator = Simulator(),
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
    - `simulator`: a [`toolkit.control.learning.Simulator`][].

    **Returns:**

    The states, shape `(T, nx)`.
    """
    t0 = ts[0] if t0 is None else t0
    field = _ControlledField(dynamics, args)
    sol = simulator.solve(field, x0, controls, t0, ts[-1], diffrax.SaveAt(ts=ts))
    assert sol.ys is not None
    return sol.ys


@eqx.filter_jit
def evaluate(
    problem: OptimalControlProblem,
    controls: Controls,
    *,
    args: PyTree[Any] = None,
    simulator: Simulator = Simulator(),
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
    - `simulator`: a [`toolkit.control.learning.Simulator`][].

    **Returns:**

    The scalar cost. State bounds are not checked.
    """
    nx = problem.nx
    field = _CostField(problem, args)
    y0 = jnp.concatenate([problem.x0, jnp.zeros((1,), problem.x0.dtype)])
    sol = simulator.solve(field, y0, controls, problem.t0, problem.t1, diffrax.SaveAt(t1=True))
    assert sol.ys is not None
    y1 = sol.ys[-1]
    cost = y1[nx]
    if problem.terminal_cost is not None:
        cost = cost + problem.terminal_cost(y1[:nx], args)
    return cost
