import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from ..._jit import filter_jit
from .._integrators import RK4
from .._problem import OptimalControlProblem
from .base import (
    AbstractNodeTranscription,
    AbstractTranscription,
    default_controls,
    default_states,
    defects_with_final_state,
    final_state_mask,
    grid,
    interval_derivatives,
    node_state_bounds,
    terminal,
)


class _AbstractShooting(AbstractTranscription):
    integrator: eqx.AbstractVar[diffrax.AbstractSolver]
    substeps: eqx.AbstractVar[int]
    stepsize_controller: eqx.AbstractVar[diffrax.AbstractStepSizeController]
    max_steps: eqx.AbstractVar[int]

    def __check_init__(self):
        if not isinstance(self.substeps, int) or self.substeps < 1:
            raise ValueError(f"`substeps` must be an integer >= 1, got {self.substeps!r}.")

    def interval(self, problem, args, t_k, h, x_k, u_k, u_next):
        """Integrate [x, running cost] over [t_k, t_k + h] with the control linear
        between u_k and u_next. Returns (x(t_k + h), integral of L)."""
        return _integrate(self, problem, args, t_k, h, x_k, u_k, u_next)

    def _integrate(self, problem, args, t_k, h, x_k, u_k, u_next):
        nx = problem.nx

        def vector_field(t, y, _):
            u = u_k + ((t - t_k) / h) * (u_next - u_k)
            x = y[:nx]
            dx = problem.dynamics(t, x, u, args)
            dc = problem.running_cost(t, x, u, args)
            return jnp.concatenate([dx, dc[None]])

        y0 = jnp.concatenate([x_k, jnp.zeros((1,), x_k.dtype)])
        dt = h / self.substeps
        fixed = isinstance(self.stepsize_controller, diffrax.ConstantStepSize)
        if fixed and type(self.integrator) is RK4:
            # The classical RK4 step written out: four evaluations of the vector field
            # and a weighted sum. diffrax's generic Runge–Kutta step loops over the
            # stages in a bounded while loop, whose forward-over-reverse derivative
            # (the KKT Jacobian) is a much larger program to compile.
            y = y0
            for i in range(self.substeps):
                t = t_k + i * dt
                k1 = vector_field(t, y, None)
                k2 = vector_field(t + dt / 2, y + (dt / 2) * k1, None)
                k3 = vector_field(t + dt / 2, y + (dt / 2) * k2, None)
                k4 = vector_field(t + dt, y + dt * k3, None)
                y = y + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
            return y[:nx], y[nx]
        term = diffrax.ODETerm(vector_field)
        integrator = self.integrator
        if isinstance(integrator, diffrax.AbstractRungeKutta):
            # diffrax loops over Runge–Kutta stages with a checkpointed while loop by
            # default, which forbids forward mode over its reverse mode (the KKT
            # Jacobian is a JVP of a gradient); a "lax" loop forbids reverse mode.
            # The bounded loop supports both.
            integrator = eqx.tree_at(
                lambda s: s.scan_kind, integrator, "bounded", is_leaf=lambda x: x is None
            )
        if fixed:
            # Fixed steps are taken by hand: every autodiff mode (forward-over-reverse
            # for the KKT Jacobian included) passes straight through them.
            state = integrator.init(term, t_k, t_k + dt, y0, None)
            y = y0
            for i in range(self.substeps):
                ta, tb = t_k + i * dt, t_k + (i + 1) * dt
                y, _, _, state, _ = integrator.step(term, ta, tb, y, None, state, False)
        else:
            sol = diffrax.diffeqsolve(
                term,
                integrator,
                t_k,
                t_k + h,
                dt,
                y0,
                stepsize_controller=self.stepsize_controller,
                adjoint=diffrax.DirectAdjoint(),
                max_steps=self.max_steps,
                throw=False,
            )
            y = sol.ys[-1]
        return y[:nx], y[nx]


# A plan integrates the intervals in many places (the residual, its linearisation,
# the KKT blocks, the multiplier estimate, the simulation), each under its own
# transformations. As one jitted function an interval is traced once per shape, and
# JAX derives its derivatives and batched versions from that trace instead of running
# the integrator's Python again for each use.
@filter_jit(planner=True)
def _integrate(transcription, problem, args, t_k, h, x_k, u_k, u_next):
    return transcription._integrate(problem, args, t_k, h, x_k, u_k, u_next)


class MultipleShooting(_AbstractShooting, AbstractNodeTranscription):
    """Multiple shooting: the states at the nodes are unknowns, and each interval is
    integrated by a diffrax solver.

    Unknowns x_1..x_N and u_0..u_N; on [t_k, t_{k+1}] the control is linear between
    u_k and u_{k+1}, and the state and running cost are integrated together from
    (x_k, 0) with `substeps` steps of `integrator` (or adaptively, if
    `stepsize_controller` is adaptive); defects x_{k+1} - X_k(t_{k+1}) = 0; cost the
    sum of the integrated running costs + phi(x_N). Control bounds at every node,
    state bounds at nodes 1..N, x_N = xT when given.
    """

    N: int
    integrator: diffrax.AbstractSolver = RK4()
    substeps: int = 1
    stepsize_controller: diffrax.AbstractStepSizeController = diffrax.ConstantStepSize()
    max_steps: int = 64

    def unknowns_reach(self, problem):
        # Interval k integrates from (x_k, u_k, u_{k+1}); x_k enters interval k-1's
        # defect x_k - X_{k-1}(t_k) linearly, u_k both intervals' integrations.
        return ("next",) * problem.nx + ("both",) * problem.nu

    def lagrangian_derivatives(self, z, multipliers, problem, args):
        return interval_derivatives(self._interval, z, multipliers, problem, args)

    def _interval(self, t0, t1, z0, z1, problem, args):
        # Interval k of `_shoot` alone: `(defect, cost)` from z_k and z_{k+1}.
        nx = problem.nx
        end, cost = self.interval(problem, args, t0, self.step(problem), z0[:nx], z0[nx:], z1[nx:])
        return z1[:nx] - end, cost

    def _shoot(self, z, problem, args):
        xs, us = self.split(z, problem)
        ts = grid(problem, self.N)
        h = self.step(problem)
        ends, costs = jax.vmap(lambda t, x, u, un: self.interval(problem, args, t, h, x, u, un))(
            ts[:-1], xs[:-1], us[:-1], us[1:]
        )
        return xs, ends, costs

    def objective(self, z, problem, args):
        xs, _, costs = self._shoot(z, problem, args)
        return jnp.sum(costs) + terminal(problem, xs[-1], args)

    def constraints(self, z, problem, args):
        xs, ends, _ = self._shoot(z, problem, args)
        return defects_with_final_state(xs[1:] - ends, xs[-1], problem)

    def objective_and_constraints(self, z, problem, args):
        xs, ends, costs = self._shoot(z, problem, args)
        objective = jnp.sum(costs) + terminal(problem, xs[-1], args)
        return objective, defects_with_final_state(xs[1:] - ends, xs[-1], problem)


class SingleShooting(_AbstractShooting):
    """Single shooting: only the controls are unknowns; the states are integrated
    from x0 across the whole horizon.

    Unknowns u_0..u_N (the control is linear between nodes, integrated as in
    [`toolkit.control.MultipleShooting`][]). Cost the integrated running cost +
    phi(x_N); x_N = xT when given is an equality constraint. State bounds, when
    given, are imposed on copies s_1..s_N of the node states (unknowns with a box,
    constrained by s_k = X_k(u)), so that every bound stays a simple box.

    Every state depends on every earlier control: the KKT Jacobian is dense, and the
    default linear solver is a dense LU. Prefer the other transcriptions for large N
    or unstable dynamics.
    """

    N: int
    integrator: diffrax.AbstractSolver = RK4()
    substeps: int = 1
    stepsize_controller: diffrax.AbstractStepSizeController = diffrax.ConstantStepSize()
    max_steps: int = 64

    def _copies(self, problem) -> bool:
        return problem.x_bounds is not None

    def layout(self, problem: OptimalControlProblem):
        bz = problem.nu + (problem.nx if self._copies(problem) else 0)
        return self.N + 1, bz, problem.nx

    def initial_guess(self, problem, args, states=None):
        us = jnp.broadcast_to(default_controls(problem), (self.N + 1, problem.nu))
        if not self._copies(problem):
            return us
        xs = default_states(problem, self.N) if states is None else states
        return jnp.concatenate([us, xs], axis=1)

    def bounds(self, problem, args):
        ulo, uhi = (jnp.broadcast_to(b, (self.N + 1, problem.nu)) for b in problem.u_bounds)
        if not self._copies(problem):
            return ulo, uhi
        xlo, xhi = node_state_bounds(problem, self.N)
        if problem.xT is not None:
            xlo, xhi = xlo.at[-1].set(problem.xT), xhi.at[-1].set(problem.xT)
        return jnp.concatenate([ulo, xlo], axis=1), jnp.concatenate([uhi, xhi], axis=1)

    def _shoot(self, z, problem, args):
        us = z[:, : problem.nu]
        ts = grid(problem, self.N)
        h = self.step(problem)

        def body(x, inputs):
            t, u, un = inputs
            x_next, cost = self.interval(problem, args, t, h, x, u, un)
            return x_next, (x_next, cost)

        _, (xs, costs) = jax.lax.scan(body, problem.x0, (ts[:-1], us[:-1], us[1:]))
        return jnp.concatenate([problem.x0[None], xs]), costs

    def objective(self, z, problem, args):
        xs, costs = self._shoot(z, problem, args)
        return jnp.sum(costs) + terminal(problem, xs[-1], args)

    def constraints(self, z, problem, args):
        xs, _ = self._shoot(z, problem, args)
        if self._copies(problem):
            # Block k: s_k - X_k(u) (block 0 is fixed by its bounds and unused); x_N = xT
            # is then a bound on s_N, see `bounds`.
            return z[:, problem.nu :] - xs
        return defects_with_final_state(jnp.zeros_like(xs[:-1]), xs[-1], problem)

    def constraint_mask(self, problem) -> np.ndarray:
        if self._copies(problem):
            mask = np.ones((self.N + 1, problem.nx), dtype=bool)
            mask[0] = False
            return mask
        mask = final_state_mask(problem, self.N + 1, problem.nx)
        mask[:-1] = False
        return mask

    def trajectory(self, z, problem, args):
        xs, _ = self._shoot(z, problem, args)
        return grid(problem, self.N), xs, z[:, : problem.nu]

    def linear_solver(self) -> lx.AbstractLinearSolver:
        return lx.LU()


_doc = """**Arguments:**

- `N`: the number of intervals (>= 1).
- `integrator`: a diffrax solver for each interval (default: classical
    [`toolkit.control.RK4`][]; also e.g. `diffrax.Euler()`, `diffrax.Heun()`,
    `diffrax.Midpoint()`, `diffrax.Tsit5()`).
- `substeps`: steps per interval (the initial step `h / substeps` when adaptive).
- `stepsize_controller`: `diffrax.ConstantStepSize()` (default) or an adaptive
    controller such as `diffrax.PIDController(rtol=1e-8, atol=1e-8)`; adaptive
    integration is differentiated with `diffrax.DirectAdjoint`.
- `max_steps`: the step budget of each interval when adaptive.
"""
MultipleShooting.__init__.__doc__ = _doc
SingleShooting.__init__.__doc__ = _doc
