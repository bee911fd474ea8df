import abc
from typing import Any

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PyTree, Scalar

from .._discrete_dynamics import DiscreteDynamics
from .._problem import OptimalControlProblem


class AbstractTranscription(eqx.Module):
    """Turns an [`toolkit.control.OptimalControlProblem`][] into a nonlinear program

    minimise J(z)  subject to  c(z) = 0,  lo <= z <= hi,

    whose unknowns are laid out in `M` blocks (one per time node) of `bz` unknowns,
    and whose constraints in `M` blocks of `bc` rows, so that block `k` of the
    constraints involves only the unknowns of blocks `k` and `k + 1`. The planners
    interleave unknowns and multipliers by block, which makes the KKT Jacobian
    block-tridiagonal (see [`toolkit.control.BlockTridiagonal`][]).

    Fixed unknowns (the initial state) are expressed by `lo == hi`. Constraint rows
    that a block does not use are masked out (`constraint_mask`), and their
    multipliers are pinned to zero by the planner.
    """

    N: eqx.AbstractVar[int]

    def __check_init__(self):
        if not isinstance(self.N, int | np.integer) or self.N < 1:
            raise ValueError(
                f"`N` (the number of intervals) must be an integer >= 1, got {self.N!r}."
            )

    @abc.abstractmethod
    def layout(self, problem: OptimalControlProblem) -> tuple[int, int, int]:
        """Static `(M, bz, bc)`: blocks, unknowns per block, constraint rows per block."""

    @abc.abstractmethod
    def initial_guess(
        self,
        problem: OptimalControlProblem,
        args: PyTree[Any],
        states: Float[Array, "N+1 nx"] | None = None,
    ) -> Float[Array, "M bz"]:
        """The default initial guess of the unknowns: the default controls, and node
        states `states` (default: `default_states`, a straight line from x0)."""

    @abc.abstractmethod
    def bounds(
        self, problem: OptimalControlProblem, args: PyTree[Any]
    ) -> tuple[Float[Array, "M bz"], Float[Array, "M bz"]]:
        """Box `(lo, hi)` on the unknowns; `lo == hi` fixes an unknown."""

    @abc.abstractmethod
    def objective(
        self, z: Float[Array, "M bz"], problem: OptimalControlProblem, args: PyTree[Any]
    ) -> Scalar:
        """The NLP objective."""

    @abc.abstractmethod
    def constraints(
        self, z: Float[Array, "M bz"], problem: OptimalControlProblem, args: PyTree[Any]
    ) -> Float[Array, "M bc"]:
        """The equality constraints (rows outside `constraint_mask` are ignored)."""

    def objective_and_constraints(
        self, z: Float[Array, "M bz"], problem: OptimalControlProblem, args: PyTree[Any]
    ) -> tuple[Scalar, Float[Array, "M bc"]]:
        """`(objective, constraints)` together; a transcription whose two share work
        (an integration, the dynamics at the nodes) overrides this to do it once, which
        keeps the KKT residual's graph, and so its compile time, smaller."""
        return self.objective(z, problem, args), self.constraints(z, problem, args)

    @abc.abstractmethod
    def constraint_mask(self, problem: OptimalControlProblem) -> np.ndarray:
        """Static boolean `(M, bc)`: which constraint rows are real."""

    @abc.abstractmethod
    def trajectory(
        self, z: Float[Array, "M bz"], problem: OptimalControlProblem, args: PyTree[Any]
    ) -> tuple[Float[Array, " N+1"], Float[Array, "N+1 nx"], Float[Array, "N+1 nu"]]:
        """`(ts, xs, us)` at the grid nodes."""

    def unknowns_reach(self, problem: OptimalControlProblem) -> tuple[str, ...]:
        """For each of a block's `bz` unknowns, the neighbouring blocks whose rows of
        the KKT Jacobian it reaches (`"both"`, or `"next"`; see
        [`toolkit.control.BlockTridiagonal`][]'s `column_reach`). An unknown of block k
        always enters the constraints of blocks k-1 and k, and reaches the previous
        block only through a second derivative of the Lagrangian with an unknown of
        block k-1: `"next"` holds for an unknown that no nonlinear term shares with
        block k-1. By default `"both"` for every unknown, which is always true."""
        _, bz, _ = self.layout(problem)
        return ("both",) * bz

    def lagrangian_derivatives(
        self,
        z: Float[Array, "M bz"],
        multipliers: Float[Array, "M bc"],
        problem: OptimalControlProblem,
        args: PyTree[Any],
    ) -> tuple[Array, Array | None, Array, Array] | None:
        """The derivatives that make up the KKT Jacobian, where this transcription
        computes them from its own structure (more cheaply than the planner's
        compressed Jacobian-vector products); `None` (the default) where it does not.

        With ℒ(z) = J(z) + Σ_k λ_k · c_k(z), `multipliers` λ (zero on the rows outside
        `constraint_mask`): `(H, H_next, A, B)`, with `H[k]` = ∂²ℒ/∂z_k² and
        `H_next[k]` = ∂²ℒ/∂z_k∂z_{k+1}, each `(M, bz, bz)` (`H_next` `None` where it
        is zero), `A[k]` = ∂c_k/∂z_k and `B[k]` = ∂c_k/∂z_{k+1}, each `(M, bc, bz)`
        (`B[M-1]` zero).
        """
        return None

    def check(self, problem: OptimalControlProblem) -> None:
        """Raise `ValueError` if this transcription cannot transcribe `problem`.

        The transcriptions of continuous-time dynamics refuse a discrete-time map
        (dynamics wrapped in [`toolkit.control.DiscreteDynamics`][]).
        """
        if isinstance(problem.dynamics, DiscreteDynamics):
            raise ValueError(
                f"`{type(self).__name__}` transcribes continuous-time dynamics "
                "dx/dt = f(t, x, u, args), but this problem's `dynamics` is a "
                "discrete-time map (`control.DiscreteDynamics`): plan it with "
                "`control.Discrete(N)`."
            )

    def costates(
        self, multipliers: Float[Array, "M bc"], problem: OptimalControlProblem
    ) -> Float[Array, "N nx"] | None:
        """Approximate Pontryagin costates from the constraint multipliers, if any."""
        return None

    def linear_solver(self) -> lx.AbstractLinearSolver:
        """The linear solver suited to this transcription's KKT structure."""
        from .._block_tridiagonal import BlockTridiagonal

        return BlockTridiagonal()

    def step(self, problem: OptimalControlProblem) -> Scalar:
        return (problem.t1 - problem.t0) / self.N


def grid(problem: OptimalControlProblem, N: int) -> Float[Array, " N+1"]:
    return problem.t0 + (problem.t1 - problem.t0) * jnp.arange(N + 1, dtype=problem.t0.dtype) / N


def default_controls(problem: OptimalControlProblem) -> Float[Array, " nu"]:
    """Midpoint of the control box where both bounds are finite, else clip(0, lo, hi)."""
    lo, hi = problem.u_bounds
    finite = jnp.isfinite(lo) & jnp.isfinite(hi)
    mid = jnp.where(finite, 0.5 * (jnp.where(finite, lo, 0) + jnp.where(finite, hi, 0)), 0.0)
    return jnp.clip(mid, lo, hi)


def default_states(problem: OptimalControlProblem, N: int) -> Float[Array, "N+1 nx"]:
    """Linear interpolation from x0 to xT (constant x0 without xT), clipped into x_bounds."""
    s = jnp.linspace(0.0, 1.0, N + 1, dtype=problem.x0.dtype)[:, None]
    xT = problem.x0 if problem.xT is None else problem.xT
    xs = problem.x0[None] + s * (xT - problem.x0)[None]
    if problem.x_bounds is not None:
        lo, hi = problem.x_bounds
        xs = jnp.clip(xs, lo[None], hi[None]).at[0].set(problem.x0)
    return xs


def simulated_states(
    problem: OptimalControlProblem, args: PyTree[Any], N: int, substeps: int = 10
) -> Float[Array, "N+1 nx"]:
    """The node states that the default controls produce: the dynamics integrated from
    x0 by classical RK4 with `substeps` steps per interval (a discrete-time map is
    iterated), clipped into `x_bounds`; where the simulation is not finite, the
    straight line of `default_states`; x_N = xT where it is given.

    A guess that satisfies the dynamics, unlike the straight line, whose linearisation
    can be violently unstable (predator_prey: P' = (N - 1) P about the constant N = 10
    grows 2.6-fold per trapezoidal step, and Newton's steps are of size 1e8)."""
    u = default_controls(problem)
    ts = grid(problem, N)
    if isinstance(problem.dynamics, DiscreteDynamics):

        def step(x, t):
            x = problem.dynamics(t, x, u, args)
            return x, x

    else:
        dt = (ts[1] - ts[0]) / substeps

        def f(t, x):
            return problem.dynamics(t, x, u, args)

        def substep(x, t):
            k1 = f(t, x)
            k2 = f(t + dt / 2, x + dt / 2 * k1)
            k3 = f(t + dt / 2, x + dt / 2 * k2)
            k4 = f(t + dt, x + dt * k3)
            return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

        def step(x, t):
            x, _ = lax.scan(substep, x, t + dt * jnp.arange(substeps, dtype=ts.dtype))
            return x, x

    _, xs = lax.scan(step, problem.x0, ts[:-1])
    xs = jnp.concatenate([problem.x0[None], xs])
    xs = jnp.where(jnp.isfinite(xs), xs, default_states(problem, N))
    if problem.x_bounds is not None:
        lo, hi = problem.x_bounds
        xs = jnp.clip(xs, lo[None], hi[None])
    if problem.xT is not None:
        xs = xs.at[-1].set(problem.xT)
    return xs.at[0].set(problem.x0)


def node_state_bounds(problem: OptimalControlProblem, N: int):
    """State bounds at nodes 0..N: x0 fixed at node 0, `x_bounds` (or none) after.

    Where `xT` is given, node N has no bounds: the equality x_N = xT already puts it in
    the box (`OptimalControlProblem` checks that xT is), and keeping the bound as well
    makes the KKT conditions degenerate wherever xT lies on it (a rocket landing at
    height 0 with heights >= 0: two constraints with the same gradient, no unique
    multiplier, a singular Newton matrix). The feasible set, and so the optimum, is the
    same; the IPOPT references keep the redundant bound."""
    inf = jnp.full((problem.nx,), jnp.inf, problem.x0.dtype)
    lo, hi = (-inf, inf) if problem.x_bounds is None else problem.x_bounds
    lo = jnp.broadcast_to(lo, (N + 1, problem.nx)).at[0].set(problem.x0)
    hi = jnp.broadcast_to(hi, (N + 1, problem.nx)).at[0].set(problem.x0)
    if problem.xT is not None:
        lo, hi = lo.at[N].set(-inf), hi.at[N].set(inf)
    return lo, hi


def terminal(problem: OptimalControlProblem, xN: Array, args) -> Scalar:
    if problem.terminal_cost is None:
        return jnp.zeros((), xN.dtype)
    return problem.terminal_cost(xN, args)


def final_state_mask(problem: OptimalControlProblem, M: int, nx: int) -> np.ndarray:
    """Defect rows in blocks 0..M-2, the `xT` rows (when given) in block M-1."""
    mask = np.ones((M, nx), dtype=bool)
    mask[-1] = problem.xT is not None
    return mask


def defects_with_final_state(defects, xN, problem: OptimalControlProblem):
    last = jnp.zeros_like(xN) if problem.xT is None else xN - problem.xT
    return jnp.concatenate([defects, last[None]], axis=0)


def interval_derivatives(interval, z, multipliers, problem: OptimalControlProblem, args):
    """`lagrangian_derivatives` of a transcription whose constraint block k < N and
    whose cost term k are those of interval k alone, functions of z_k and z_{k+1}
    (`interval(t_k, t_{k+1}, z_k, z_{k+1})` returns `(defect, cost)`), plus phi(x_N)
    and, in block N, the linear x_N - xT on the first `nx` unknowns of z_N.

    ℒ is then a sum of one term per interval, so ∂²ℒ/∂z_k² gathers the Hessians of
    intervals k - 1 and k and ∂²ℒ/∂z_k∂z_{k+1} is interval k's alone: each interval's
    Hessian (of 2 bz unknowns) is taken for all intervals at once."""
    M, bz = z.shape
    nx = problem.nx
    dtype = z.dtype
    ts = grid(problem, M - 1)
    pairs = jnp.concatenate([z[:-1], z[1:]], axis=1)

    def lagrangian(v, t0, t1, lam):
        d, cost = interval(t0, t1, v[:bz], v[bz:], problem, args)
        return cost + lam @ d, d

    # One forward pass over the gradient gives both the Hessian and, from the same
    # evaluation of the interval, the defect's Jacobian.
    gradient_and_defect = jax.grad(lagrangian, has_aux=True)
    Hi, D = jax.vmap(jax.jacfwd(gradient_and_defect))(pairs, ts[:-1], ts[1:], multipliers[:-1])
    H = jnp.zeros((M, bz, bz), dtype).at[:-1].add(Hi[:, :bz, :bz]).at[1:].add(Hi[:, bz:, bz:])
    H_next = jnp.zeros((M, bz, bz), dtype).at[:-1].set(Hi[:, :bz, bz:])
    if problem.terminal_cost is not None:
        phi = jax.hessian(lambda x: problem.terminal_cost(x, args))(z[-1, :nx])
        H = H.at[-1, :nx, :nx].add(phi)
    eye = jnp.eye(nx, bz, dtype=dtype)
    A = jnp.concatenate([D[:, :, :bz], eye[None]])
    B = jnp.concatenate([D[:, :, bz:], jnp.zeros_like(eye)[None]])
    return H, H_next, A, B


class AbstractNodeTranscription(AbstractTranscription):
    """A transcription whose block k holds [x_k, u_k], k = 0..N, and whose constraint
    block k holds the defect of interval k (block N: `x_N = xT` when given)."""

    def layout(self, problem: OptimalControlProblem):
        return self.N + 1, problem.nx + problem.nu, problem.nx

    def split(self, z, problem):
        """`(xs, us)`, the node states and controls."""
        return z[:, : problem.nx], z[:, problem.nx :]

    def initial_guess(self, problem, args, states=None):
        xs = default_states(problem, self.N) if states is None else states
        us = jnp.broadcast_to(default_controls(problem), (self.N + 1, problem.nu))
        return jnp.concatenate([xs, us], axis=1)

    def bounds(self, problem, args):
        xlo, xhi = node_state_bounds(problem, self.N)
        ulo, uhi = (jnp.broadcast_to(b, (self.N + 1, problem.nu)) for b in problem.u_bounds)
        return jnp.concatenate([xlo, ulo], axis=1), jnp.concatenate([xhi, uhi], axis=1)

    def constraint_mask(self, problem) -> np.ndarray:
        return final_state_mask(problem, self.N + 1, problem.nx)

    def trajectory(self, z, problem, args):
        xs, us = self.split(z, problem)
        return grid(problem, self.N), xs, us

    def costates(self, multipliers, problem):
        # The multiplier of the defect of interval k approximates -p there, for the
        # Hamiltonian H = L + p.f (multipliers enter the Lagrangian as +lambda.c).
        return -multipliers[:-1]
