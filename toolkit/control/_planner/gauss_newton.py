from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import PyTree, Scalar

from .base import AbstractPlanner
from .frozen import freeze
from .shift_on_failure import ShiftOnFailure, solve_failed


class _GaussNewtonFamily(optx.AbstractGaussNewton):
    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar]
    descent: optx.AbstractDescent
    search: optx.AbstractSearch
    verbose: Callable[..., None]
    residual_atol: float

    def terminate(self, fn, y, args, options, state, tags):
        # optimistix stops on small changes of the iterate and of the loss, which
        # roundoff may never deliver once the residual is at machine precision; a KKT
        # residual within tolerance is a solution, so stop there too.
        terminate, result = super().terminate(fn, y, args, options, state, tags)
        residual = state.f_info.residual
        solved = jnp.invert(state.first_step) & (self.norm(residual) <= self.residual_atol)
        # A start known to be a root (`options["start_solved"]`, from the watchdog)
        # takes no step: a first step would only evaluate F there and factorise.
        start_solved = state.first_step & options.get("start_solved", False)
        return terminate | solved | start_solved, result


def _quiet(**kwargs):
    del kwargs


class _InDtype(optx.AbstractDescent):
    """A descent whose initial state's floating scalars take the unknowns' dtype.

    optimistix's `DoglegDescent.init` builds its norms with `jnp.array(0.0)`, float64
    when x64 is enabled; with float32 unknowns its `lax.cond` then meets float32 and
    float64 branches and fails to trace.
    """

    inner: optx.AbstractDescent

    def init(self, y, f_info_struct):
        state = self.inner.init(y, f_info_struct)
        dtype = jnp.result_type(*jax.tree.leaves(y))

        def cast(a):
            if eqx.is_inexact_array(a) and a.ndim == 0 and a.dtype != dtype:
                return a.astype(dtype)
            return a

        return jax.tree.map(cast, state)

    def query(self, y, f_info, state):
        return self.inner.query(y, f_info, state)

    def step(self, step_size, state):
        return self.inner.step(step_size, state)


def _loss(f):
    return 0.5 * jnp.sum(f * f)


def watchdog(residual, w0, problem_args, linear_solver, steps: int, atol=None):
    """Up to `steps` full Newton steps from `w0`, judged together: the iterate of least
    ½‖F‖² among `w0` and the steps' ends, and the number of steps taken.

    A watchdog in the sense of Chamberlain, Powell, Lemaréchal & Pedersen (1982),
    with a lookahead of `steps`: near a root of a semismooth F a full step can
    raise ‖F‖ once (a bound crossed between active and inactive) and the next one
    brings it far below the start, which a search judging each step alone rejects.
    With `atol`, it stops at an iterate whose residual is within `atol` (max-norm),
    and takes no step from a start that already is. `problem_args` should be frozen:
    these steps only find a starting point.
    """
    solver = ShiftOnFailure(linear_solver)
    struct = jax.eval_shape(lambda: w0)
    tol = jnp.asarray(-1.0 if atol is None else atol, w0.dtype)

    def cond(carry):
        _, f, _, _, i = carry
        return (i < steps) & (jnp.max(jnp.abs(f)) > tol)

    def body(carry):
        w, f, best, best_loss, i = carry
        _, lin_fn = jax.linearize(lambda y: residual(y, problem_args), w)
        operator = lx.FunctionLinearOperator(lin_fn, struct)
        sol = lx.linear_solve(operator, f, solver, throw=False)
        failed = solve_failed(sol.value, sol.result)
        w = jnp.where(failed, w, w - sol.value)
        f = residual(w, problem_args)
        # Ties go to the earlier iterate: the start when no step helped.
        loss = _loss(f)
        better = loss < best_loss
        best = jnp.where(better, w, best)
        best_loss = jnp.where(better, loss, best_loss)
        return w, f, best, best_loss, i + 1

    f0 = residual(w0, problem_args)
    init = (w0, f0, w0, _loss(f0), jnp.asarray(0, jnp.int32))
    _, _, best, _, taken = jax.lax.while_loop(cond, body, init)
    return best, taken


class GaussNewton(AbstractPlanner):
    """The KKT conditions F(w) = 0 posed as the least-squares problem min ½‖F(w)‖²,
    alone: `optimistix.least_squares` with a Gauss–Newton-family method built from an
    optimistix descent and search:

    - default: `optimistix.DoglegDescent` with `optimistix.ClassicalTrustRegion`
      (Powell's dogleg: a trust region between the Gauss–Newton step, here a Newton
      step solved by the block-tridiagonal solver, and the Cauchy point);
    - `descent=optx.NewtonDescent(), search=optx.BacktrackingArmijo()`: Gauss–Newton
      with a line search;
    - `descent=optx.DampedNewtonDescent(), search=optx.ClassicalTrustRegion()`:
      Levenberg–Marquardt (needs a linear solver for the stacked [J; √λ I] system,
      e.g. `linear_solver=lx.QR()`, so it is dense).

    Differentiated through the solution by the `adjoint` (at a zero-residual solution
    the implicit function theorem on JᵀF = 0 reduces to the one on F). It can stop at
    a local minimum of ‖F‖ that is not a root (`RESULTS.nonzero_residual`), and it
    does not see the sign of the curvature of the Lagrangian: every KKT point, saddle
    points included, is a zero of F.
    """

    atol: float | None = None
    max_steps: int = 200
    linear_solver: lx.AbstractLinearSolver | None = None
    descent: optx.AbstractDescent = optx.DoglegDescent()
    search: optx.AbstractSearch = optx.ClassicalTrustRegion()
    rtol: float = 1e-13
    watchdog: int = 0

    def __check_init__(self):
        if self.watchdog < 0:
            raise ValueError(f"`watchdog` must be >= 0, got {self.watchdog}.")

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        options = {}
        if self.watchdog > 0:
            frozen = freeze(problem_args)
            w0, watchdog_steps = watchdog(
                residual, w0, frozen, linear_solver, self.watchdog, self.atol
            )
            w0 = jax.lax.stop_gradient(w0)
            options["start_solved"] = jnp.max(jnp.abs(residual(w0, frozen))) <= self.atol
        descent = self.descent
        if hasattr(descent, "linear_solver"):
            # A singular block pivot near a degenerate point gets a shifted step (the
            # trust region judges it); the adjoint keeps the plain solver.
            descent = eqx.tree_at(lambda d: d.linear_solver, descent, ShiftOnFailure(linear_solver))
        solver = _GaussNewtonFamily(
            rtol=self.rtol,
            atol=self.atol * 1e-3,
            norm=optx.max_norm,
            descent=_InDtype(descent),
            search=self.search,
            verbose=_quiet,
            residual_atol=self.atol,
        )
        sol = optx.least_squares(
            residual,
            solver,
            w0,
            problem_args,
            options=options,
            max_steps=self.max_steps,
            adjoint=adjoint,
            throw=False,
        )
        if self.watchdog == 0:
            return sol
        stats = {**sol.stats, "num_steps": sol.stats["num_steps"] + watchdog_steps}
        return optx.Solution(
            value=sol.value, result=sol.result, aux=sol.aux, stats=stats, state=sol.state
        )


GaussNewton.__init__.__doc__ = """**Arguments:**

- `atol`: the solution is accepted when the max-norm of the KKT residual is at most
    this. Default `None`: follows the problem's dtype, 1e-9 in float64 and 1e-4 in
    float32.
- `max_steps`: iterations before giving up.
- `linear_solver`: lineax solver for the steps and the adjoint; by default the
    transcription's own. It replaces the descent's own `linear_solver`.
- `descent`: an optimistix descent (default `optx.DoglegDescent()`).
- `search`: an optimistix search (default `optx.ClassicalTrustRegion()`).
- `rtol`: relative tolerance of optimistix's step-size termination test.
- `watchdog`: full Newton steps tried before the search, of which the one with the
    least ‖F‖ (or the start) is kept (a watchdog; see `watchdog`). For a start near
    a root, such as the end of the interior-point path, where a search that accepts
    only decrease creeps after the first full step crosses a bound. Default 0 (none);
    see [`toolkit.control.KKTLeastSquares`][] for its default.
"""
