from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PyTree, Scalar

from .._jit import filter_jit
from ._discrete_dynamics import DiscreteDynamics
from ._problem import OptimalControlProblem
from ._results import raise_if_failed, RESULTS
from ._transcription.base import default_controls, grid


class ForwardBackwardSweep(eqx.Module):
    """The forward–backward sweep (Lenhart & Workman 2007, chapter 4): the indirect
    method, which solves Pontryagin's necessary conditions by fixed-point iteration.

    With the Hamiltonian H = L + λ·f, each iteration

    1. integrates the states x' = f(t, x, u), x(t0) = x0, forwards with the current
       controls (RK4 on a uniform grid of `N` intervals, controls linearly
       interpolated to the half steps, as in the book's labs);
    2. integrates the costates λ' = -∂H/∂x, λ(t1) = ∂φ/∂x(x(t1)) (0 without a
       terminal cost) backwards by RK4, with states and controls at the half steps
       by linear interpolation; ∂H/∂x comes from `jax.grad`, so no costate equation
       is written by hand;
    3. minimises H over the control box at every node: `newton_steps` Newton steps on
       ∂H/∂u = 0 (autodiff gradient and Hessian, vectorised over the nodes), then
       clipping to the bounds; this is the book's characterisation
       u* = min(hi, max(lo, ũ)), exact when H is quadratic in u with a diagonal
       Hessian (the control-affine dynamics with quadratic control costs of the
       labs), and a good approximation for any H strictly convex in u;
    4. relaxes the update, u ← (1 - w) u + w u*, with `w = relaxation`.

    It stops when, for every component of u, x and λ, Lenhart's relative test
    Σ|old - new| <= rtol Σ|new| + atol (N + 1) holds over the grid.

    The sweep needs no transcription and no linear algebra beyond `nu × nu` Hessians,
    but it applies only where the controls follow from minimising H pointwise: no
    fixed final state, no state constraints, H strictly convex in u.
    [`toolkit.control.indirect`][] checks these and raises `ValueError` otherwise.
    """

    N: int = eqx.field(static=True)
    relaxation: float = 0.5
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = eqx.field(static=True, default=1000)
    newton_steps: int = eqx.field(static=True, default=4)
    ignore_state_bounds: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.N, int | np.integer) or self.N < 1:
            raise ValueError(
                f"`N` (the number of intervals) must be an integer >= 1, got {self.N!r}."
            )
        if not 0 < self.relaxation <= 1:
            raise ValueError(f"`relaxation` must be in (0, 1], got {self.relaxation!r}.")
        if not (self.rtol >= 0 and self.atol >= 0 and self.rtol + self.atol > 0):
            raise ValueError(
                f"`rtol` and `atol` must be >= 0, not both 0, got {self.rtol!r}, {self.atol!r}."
            )
        if not isinstance(self.max_steps, int | np.integer) or self.max_steps < 1:
            raise ValueError(f"`max_steps` must be an integer >= 1, got {self.max_steps!r}.")
        if not isinstance(self.newton_steps, int | np.integer) or self.newton_steps < 1:
            raise ValueError(f"`newton_steps` must be an integer >= 1, got {self.newton_steps!r}.")


ForwardBackwardSweep.__init__.__doc__ = """**Arguments:**

- `N`: the number of RK4 intervals of the uniform grid (Lenhart's labs use 1000).
- `relaxation`: the weight `w` of the new control in the convex combination
    `(1 - w) u_old + w u_new` (the book's 0.5); lower it if the sweep oscillates.
- `rtol`, `atol`: Lenhart's relative convergence test with tolerance `rtol` (the book's
    δ = 0.001 is loose: it leaves an error of that order), and an absolute floor
    per node for components that vanish.
- `max_steps`: the most sweeps; reaching it is reported in the result.
- `newton_steps`: Newton steps on ∂H/∂u = 0 per node and sweep (one is exact for
    H quadratic in u); warm-started from the previous control.
- `ignore_state_bounds`: a problem's state box is an error by default (the sweep
    cannot impose it); with `True` the box is dropped, which is right where it is
    inactive at the optimum (e.g. positivity of populations). The largest violation of
    the dropped box is then returned as `stats["state_bound_violation"]`.
"""


class IndirectSolution(eqx.Module):
    """The result of [`toolkit.control.indirect`][].

    **Attributes:**

    - `cost`: the objective at the solution: the running cost integrated by the same
        RK4 steps as the states (as an extra state), plus the terminal cost.
    - `ts`: `(N+1,)` the grid.
    - `xs`: `(N+1, nx)` states at the grid nodes.
    - `us`: `(N+1, nu)` controls at the grid nodes.
    - `costates`: `(N, nx)` the costates λ at the interval midpoints (the mean of the
        node values), for H = L + λ·f: the layout of
        [`toolkit.control.Solution`][]`.costates`, so the two compare directly.
    - `node_costates`: `(N+1, nx)` the costates at the grid nodes.
    - `result`: a [`toolkit.control.RESULTS`][]: `successful`,
        `nonlinear_max_steps_reached` (the sweep did not converge in `max_steps`),
        `nonfinite` (the iterates became NaN/inf) or `nonlinear_divergence` (H stopped
        being strictly convex in u at an iterate, so the control update is undefined).
    - `stats`: `num_steps` (sweeps), `relative_change` (the final value of Lenhart's
        test, max over components of Σ|old - new| / Σ|new|), `control_residual`
        (max |u - argmin_box H| at the returned solution) and, with
        `ignore_state_bounds`, `state_bound_violation`.
    """

    cost: Scalar
    ts: Float[Array, " N+1"]
    xs: Float[Array, "N+1 nx"]
    us: Float[Array, "N+1 nu"]
    costates: Float[Array, "N nx"]
    node_costates: Float[Array, "N+1 nx"]
    result: RESULTS
    stats: dict[str, Any]


def _hamiltonian(problem: OptimalControlProblem, args):
    def H(t, x, u, lam):
        return problem.running_cost(t, x, u, args) + jnp.dot(lam, problem.dynamics(t, x, u, args))

    return H


def _forward(problem, args, ts, us) -> tuple[Float[Array, "N+1 nx"], Scalar]:
    """RK4 for x and for the running cost q' = L, controls linear between nodes."""

    def F(t, y, u):
        x = y[:-1]
        dx = problem.dynamics(t, x, u, args)
        dq = problem.running_cost(t, x, u, args)
        return jnp.concatenate([dx, dq[None]])

    def step(y, inputs):
        t, t_next, u, u_next = inputs
        h = t_next - t
        u_mid = (u + u_next) / 2
        k1 = F(t, y, u)
        k2 = F(t + h / 2, y + (h / 2) * k1, u_mid)
        k3 = F(t + h / 2, y + (h / 2) * k2, u_mid)
        k4 = F(t_next, y + h * k3, u_next)
        y_next = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return y_next, y_next

    y0 = jnp.concatenate([problem.x0, jnp.zeros((1,), problem.x0.dtype)])
    yN, ys = jax.lax.scan(step, y0, (ts[:-1], ts[1:], us[:-1], us[1:]))
    xs = jnp.concatenate([problem.x0[None], ys[:, :-1]])
    return xs, yN[-1]


def _backward(problem, args, ts, xs, us) -> Float[Array, "N+1 nx"]:
    """RK4 backwards for λ' = -∂H/∂x, states and controls linear between nodes."""
    H = _hamiltonian(problem, args)
    dH_dx = jax.grad(H, argnums=1)

    def G(t, x, u, lam):
        return -dH_dx(t, x, u, lam)

    def step(lam, inputs):
        t, t_prev, x, x_prev, u, u_prev = inputs
        h = t - t_prev
        x_mid, u_mid = (x + x_prev) / 2, (u + u_prev) / 2
        k1 = G(t, x, u, lam)
        k2 = G(t - h / 2, x_mid, u_mid, lam - (h / 2) * k1)
        k3 = G(t - h / 2, x_mid, u_mid, lam - (h / 2) * k2)
        k4 = G(t_prev, x_prev, u_prev, lam - h * k3)
        lam_prev = lam - (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return lam_prev, lam_prev

    if problem.terminal_cost is None:
        lamN = jnp.zeros_like(xs[-1])
    else:
        lamN = jax.grad(problem.terminal_cost)(xs[-1], args)
    inputs = (ts[1:], ts[:-1], xs[1:], xs[:-1], us[1:], us[:-1])
    _, lams = jax.lax.scan(step, lamN, inputs, reverse=True)
    return jnp.concatenate([lams, lamN[None]])


def _hessian_u(problem, args, ts, xs, us, lams) -> Float[Array, "N+1 nu nu"]:
    d2H_du2 = jax.hessian(_hamiltonian(problem, args), argnums=2)
    return jax.vmap(d2H_du2)(ts, xs, us, lams)


def _minimise_hamiltonian(
    problem, args, ts, xs, us, lams, newton_steps: int
) -> tuple[Float[Array, "N+1 nu"], Bool[Array, ""]]:
    """Newton on ∂H/∂u = 0 at every node, then the projection onto the control box.

    Returns the controls and whether H was strictly convex in u at every node.
    """
    H = _hamiltonian(problem, args)
    dH_du = jax.grad(H, argnums=2)
    d2H_du2 = jax.hessian(H, argnums=2)
    lo, hi = problem.u_bounds

    def one_node(t, x, u, lam):
        def newton(_, carry):
            u, convex = carry
            hess = d2H_du2(t, x, u, lam)
            # Cholesky fails (NaN) exactly when the Hessian is not positive definite.
            chol = jnp.linalg.cholesky(hess)
            ok = jnp.all(jnp.isfinite(chol))
            step = jax.scipy.linalg.cho_solve((chol, True), dH_du(t, x, u, lam))
            u = jnp.where(ok, u - step, u)
            return u, convex & ok

        u, convex = jax.lax.fori_loop(0, newton_steps, newton, (u, jnp.array(True)))
        return jnp.clip(u, lo, hi), convex

    u_new, convex = jax.vmap(one_node)(ts, xs, us, lams)
    return u_new, jnp.all(convex)


def _change(old, new, rtol, atol):
    """Lenhart's test, column-wise: Σ|old - new| <= rtol Σ|new| + atol (N + 1)."""
    diff = jnp.sum(jnp.abs(old - new), axis=0)
    size = jnp.sum(jnp.abs(new), axis=0)
    ok = jnp.all(diff <= rtol * size + atol * new.shape[0])
    tiny = jnp.finfo(new.dtype).tiny
    return ok, jnp.max(diff / jnp.maximum(size, tiny))


def _check_applicable(problem: OptimalControlProblem, sweep: ForwardBackwardSweep) -> None:
    if isinstance(problem.dynamics, DiscreteDynamics):
        raise ValueError(
            "The forward-backward sweep does not apply to this problem: its `dynamics` "
            "is a discrete-time map (`control.DiscreteDynamics`), and the sweep "
            "integrates continuous-time dynamics. Plan it with `control.Discrete(N)`."
        )
    if problem.xT is not None:
        raise ValueError(
            "The forward-backward sweep does not apply to this problem: it fixes the "
            "final state `xT`, so the costates' final values are unknowns (a shooting "
            "problem) rather than ∂φ/∂x. Use `control.plan` (the direct method)."
        )
    if problem.x_bounds is not None and not sweep.ignore_state_bounds:
        raise ValueError(
            "The forward-backward sweep does not apply to this problem: it has state "
            "bounds `x_bounds`, which Pontryagin's conditions in the sweep's form cannot "
            "impose. Use `control.plan`, or `ForwardBackwardSweep(..., "
            "ignore_state_bounds=True)` if the bounds are inactive at the optimum "
            "(then check `stats['state_bound_violation']`)."
        )


def _is_concrete(tree) -> bool:
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


@filter_jit(planner=True)
def _initial_hessian(problem, args, N: int):
    ts = grid(problem, N)
    us = jnp.broadcast_to(default_controls(problem), (N + 1, problem.nu))
    xs, _ = _forward(problem, args, ts, us)
    lams = _backward(problem, args, ts, xs, us)
    hess = _hessian_u(problem, args, ts, xs, us, lams)
    return ts, jnp.linalg.eigvalsh(hess)[:, 0]


def _check_convex(problem, args, sweep: ForwardBackwardSweep) -> None:
    ts, min_eig = (np.asarray(a) for a in _initial_hessian(problem, args, sweep.N))
    bad = np.flatnonzero(~(min_eig > 0))
    if bad.size:
        k = bad[0]
        raise ValueError(
            "The forward-backward sweep does not apply to this problem: the Hamiltonian "
            "H = L + λ·f is not strictly convex in the controls at the initial guess "
            f"(the smallest eigenvalue of d²H/du² is {min_eig[k]:.3g} at t = {ts[k]:.4g}, "
            f"and is <= 0 at {bad.size} of {ts.size} nodes), so ∂H/∂u = 0 does not "
            "determine the controls. Problems whose H is affine in u (no quadratic "
            "control cost) have bang-bang or singular controls: use `control.plan`."
        )


def indirect(
    problem: OptimalControlProblem,
    sweep: ForwardBackwardSweep,
    *,
    args: PyTree[Any] = None,
    init: IndirectSolution | None = None,
    throw: bool = True,
) -> IndirectSolution:
    """Solve `problem` by the indirect method: Pontryagin's conditions by a sweep.

    The costate equations and the control characterisation are derived from the
    Hamiltonian by autodiff; see [`toolkit.control.ForwardBackwardSweep`][]. The
    iteration is a `jax.lax.while_loop`, so the solve is jitted (and `jax.vmap`s over
    `args`); it is not reverse-mode differentiable (use `control.plan` for gradients).

    **Arguments:**

    - `problem`: the [`toolkit.control.OptimalControlProblem`][].
    - `sweep`: a [`toolkit.control.ForwardBackwardSweep`][] with its settings.
    - `args`: parameters passed to the problem's functions.
    - `init`: a previous `IndirectSolution` on the same grid whose controls start the
        sweep; default the midpoint of the control box (0 where unbounded).
    - `throw`: raise an error if the sweep fails (default); if `False`, report it in
        `IndirectSolution.result` instead.

    **Returns:**

    An [`toolkit.control.IndirectSolution`][].

    Raises `ValueError` when the method does not apply: discrete-time dynamics, a
    fixed final state `xT`, state bounds (unless `ignore_state_bounds`), or a
    Hamiltonian that is not strictly convex in u at the initial guess (checked when
    `problem` and `args` hold concrete values; under an outer `jit` or `vmap` a loss
    of convexity is reported in `result` instead).
    """
    if problem.args_check is not None:
        args = problem.args_check(args)
    problem.check(args)
    _check_applicable(problem, sweep)
    if init is not None and init.us.shape != (sweep.N + 1, problem.nu):
        raise ValueError(
            f"`init` has controls of shape {init.us.shape}, but this sweep needs "
            f"{(sweep.N + 1, problem.nu)}: warm starts must come from the same N."
        )
    if init is None and _is_concrete((problem, args)):
        _check_convex(problem, args, sweep)
    us0 = None if init is None else init.us
    sol = _solve(problem, sweep, args, us0)
    if throw:
        sol = raise_if_failed(sol, sol.result)
    return sol


@filter_jit(planner=True)
def _solve(problem, sweep: ForwardBackwardSweep, args, us0) -> IndirectSolution:
    N = sweep.N
    ts = grid(problem, N)
    dtype = problem.x0.dtype
    if us0 is None:
        us0 = jnp.broadcast_to(default_controls(problem), (N + 1, problem.nu))
    us0 = us0.astype(dtype)
    zeros_x = jnp.zeros((N + 1, problem.nx), dtype)
    w = sweep.relaxation

    def cond(carry):
        k, _, _, _, done, _, _, _ = carry
        return (k < sweep.max_steps) & jnp.invert(done)

    def body(carry):
        k, us, xs_old, lams_old, _, _, _, _ = carry
        xs, _ = _forward(problem, args, ts, us)
        lams = _backward(problem, args, ts, xs, us)
        u_star, convex = _minimise_hamiltonian(problem, args, ts, xs, us, lams, sweep.newton_steps)
        us_new = (1 - w) * us + w * u_star
        tests = [
            _change(old, new, sweep.rtol, sweep.atol)
            for old, new in ((us, us_new), (xs_old, xs), (lams_old, lams))
        ]
        converged = tests[0][0] & tests[1][0] & tests[2][0]
        change = jnp.max(jnp.stack([c for _, c in tests]))
        finite = jnp.all(jnp.isfinite(us_new)) & jnp.all(jnp.isfinite(xs))
        finite = finite & jnp.all(jnp.isfinite(lams))
        done = converged | jnp.invert(finite) | jnp.invert(convex)
        return k + 1, us_new, xs, lams, done, change, finite, convex

    init_carry = (
        jnp.array(0),
        us0,
        zeros_x,
        zeros_x,
        jnp.array(False),
        jnp.array(jnp.inf, dtype),
        jnp.array(True),
        jnp.array(True),
    )
    k, us, _, _, done, change, finite, convex = jax.lax.while_loop(cond, body, init_carry)

    # States, costates and cost of the returned controls themselves.
    xs, running = _forward(problem, args, ts, us)
    lams = _backward(problem, args, ts, xs, us)
    u_star, _ = _minimise_hamiltonian(problem, args, ts, xs, us, lams, sweep.newton_steps)
    cost = running
    if problem.terminal_cost is not None:
        cost = cost + problem.terminal_cost(xs[-1], args)

    result = RESULTS.where(done, RESULTS.successful, RESULTS.nonlinear_max_steps_reached)
    result = RESULTS.where(convex, result, RESULTS.nonlinear_divergence)
    result = RESULTS.where(finite, result, RESULTS.nonfinite)
    stats = {
        "num_steps": k,
        "relative_change": change,
        "control_residual": jnp.max(jnp.abs(u_star - us)),
    }
    if problem.x_bounds is not None:
        lo, hi = problem.x_bounds
        # Nodes 1..N, where the direct transcriptions impose the box.
        below, above = lo[None] - xs[1:], xs[1:] - hi[None]
        stats["state_bound_violation"] = jnp.maximum(jnp.max(jnp.maximum(below, above)), 0)
    return IndirectSolution(
        cost=cost,
        ts=ts,
        xs=xs,
        us=us,
        costates=(lams[1:] + lams[:-1]) / 2,
        node_costates=lams,
        result=result,
        stats=stats,
    )
