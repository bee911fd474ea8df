from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float, PyTree

from .._jit import filter_jit
from ._block_tridiagonal import BlockTridiagonal, for_user_program, probe_blocks
from ._nlp import NLPInfo
from ._problem import OptimalControlProblem
from ._transcription.base import AbstractTranscription, simulated_states


class KKTResidual(eqx.Module):
    """The first-order optimality conditions of a transcription's NLP as a root-finding
    problem F(w) = 0, with unknowns and multipliers interleaved by time block.

    Block k of w is [λ_{k-1}, z_k] (k = 0..M, with λ_{-1} and z_M padding pinned to
    zero): each constraint block c_k couples z_k and z_{k+1}, so its multiplier sits
    with z_{k+1}. Then every diagonal block of the Jacobian is a non-singular
    saddle-point matrix [[0, ∂c_{k-1}/∂z_k], [.ᵀ, ∇²L]] and the whole Jacobian is
    block-tridiagonal, which is what [`toolkit.control.BlockTridiagonal`][] factorises
    without pivoting across blocks.

    With g = ∇_z (J(z) + λ·c(z)):

    - bounded stationarity in projection form, z - clip(z - g, lo, hi) = 0, which
      holds exactly when g is in the normal cone of the box at z (g ≥ 0 at the lower
      bound, ≤ 0 at the upper, 0 in between); fixed unknowns (lo == hi) give
      z - lo = 0;
    - feasibility, c(z) / h = 0 (scaled so that the rows stay O(1) as h → 0), on
      the rows of `constraint_mask`, and λ = 0 on the others.

    The projection acts on the unscaled gradient g = O(h): scaling it by 1/h
    made the active set change more abruptly between iterates and tripled the
    Newton iterations on Van der Pol (15 against 5 at N = 1000).

    The bound multipliers are recovered afterwards as ν = g.

    `in_user_program` marks the residual of a plan traced inside a user's
    transformation or a batch, whose multiplier estimate then solves with the
    transcription's linear solver as such a plan should (`for_user_program`).

    `scaled` (a bool, or a boolean array decided at run time) measures the
    projection in the units of each unknown's curvature: with s = max(1, |∂²L/∂z_i²|),
    the rows are (z - clip(z - g / s, lo, hi)) s, so a free unknown's row is still
    g and an active one's (z - lo) s. The roots are the same, the rows are
    continuous where the active set changes, and on a fixed active set the Newton
    step is the same; what changes is which bounds a point counts as active: g / s
    is the distance a Newton step on that unknown alone would move it. Inside the
    box every row is at least as large in magnitude as the unscaled one, so a point
    within `atol` of this residual is within `atol` of the unscaled residual too.
    The diagonal comes from the transcription's Hessian blocks where it computes
    them (`lagrangian_derivatives`), else from Hessian-vector products
    (`hessian_diagonal`) where its KKT Jacobian is block-tridiagonal (its
    `linear_solver` is `BlockTridiagonal`); elsewhere (single shooting, whose
    Hessian is dense) s = 1.
    """

    transcription: AbstractTranscription
    in_user_program: bool = eqx.field(default=False, static=True)
    scaled: bool | Bool[Array, ""] = False

    def split(self, w, problem):
        """`(z, λ)` of shapes `(M, bz)` and `(M, bc)` from the interleaved `w`."""
        _, _, bc = self.transcription.layout(problem)
        return w[:-1, bc:], w[1:, :bc]

    def join(self, z, lam):
        """The interleaved `w`, shape `(M + 1, bc + bz)`, from `z` and `λ`."""
        lam = jnp.concatenate([jnp.zeros_like(lam[:1]), lam])
        z = jnp.concatenate([z, jnp.zeros_like(z[:1])])
        return jnp.concatenate([lam, z], axis=1)

    def column_reach(self, problem: OptimalControlProblem) -> tuple[str, ...]:
        """Which neighbouring row blocks each column of the Jacobian's blocks reaches
        (`BlockTridiagonal(column_reach=...)`). λ_{k-1}, in block k, enters the
        stationarity of z_{k-1} and z_k only: the previous block. z_k enters c_{k-1}
        (its own block) and c_k (the next), and the stationarity of its neighbours
        through the Lagrangian's Hessian: the transcription's `unknowns_reach`."""
        _, bz, bc = self.transcription.layout(problem)
        unknowns = tuple(self.transcription.unknowns_reach(problem))
        if len(unknowns) != bz:
            raise ValueError(
                f"{type(self.transcription).__name__}.unknowns_reach gave {len(unknowns)} "
                f"entries for blocks of {bz} unknowns."
            )
        return ("previous",) * bc + unknowns

    def stationarity(self, z, lam, problem, args):
        tr = self.transcription
        mask = tr.constraint_mask(problem)

        def lagrangian(z):
            J, c = tr.objective_and_constraints(z, problem, args)
            return J + jnp.sum(jnp.where(mask, lam * c, 0)), c

        return jax.grad(lagrangian, has_aux=True)(z)

    def __call__(
        self, w: Float[Array, "M+1 b"], problem_args: tuple[OptimalControlProblem, PyTree[Any]]
    ) -> Float[Array, "M+1 b"]:
        return _rows(self, w, problem_args, True)

    def unprojected(
        self, w: Float[Array, "M+1 b"], problem_args: tuple[OptimalControlProblem, PyTree[Any]]
    ) -> Float[Array, "M+1 b"]:
        """The residual with bare stationarity rows g = ∇_z L on the unknowns that are
        not fixed (the rows an interior-point step linearises); the other rows are as
        in `__call__`."""
        return _rows(self, w, problem_args, False)

    def rows(self, w, problem_args, project):
        """The residual's rows, projected (`__call__`) or not (`unprojected`)."""
        problem, args = problem_args
        z, lam = self.split(w, problem)
        g, c = self.stationarity(z, lam, problem, args)
        scale = None
        if project and self.scaled is not False:
            scale = jax.lax.cond(
                self.scaled,
                lambda: self._curvature_scale(z, lam, problem, args),
                lambda: jnp.ones_like(z),
            )
        return self._rows_from(w, z, lam, g, c, problem, args, project, scale)

    def _curvature_scale(self, z, lam, problem, args, H=None):
        """s = max(1, |∂²L/∂z_i²|) (see `scaled`). `H`: the transcription's Hessian
        blocks, where the caller has them."""
        tr = self.transcription
        if H is None:
            mask = tr.constraint_mask(problem)
            derivatives = tr.lagrangian_derivatives(z, jnp.where(mask, lam, 0), problem, args)
            if derivatives is not None:
                diagonal = jnp.diagonal(derivatives[0], axis1=-2, axis2=-1)
            elif isinstance(tr.linear_solver(), BlockTridiagonal):
                diagonal = self.hessian_diagonal(z, lam, problem, args)
            else:
                # A dense Hessian (single shooting) would take a product per unknown.
                return jnp.ones_like(z)
        else:
            diagonal = jnp.diagonal(H, axis1=-2, axis2=-1)
        curvature = jnp.abs(diagonal).astype(z.dtype)
        # A choice of rows, not part of the function whose root is found: its
        # derivative would vanish at the root anyway ((z - lo) ∂s = 0 on active rows).
        return jax.lax.stop_gradient(jnp.maximum(curvature, 1))

    def hessian_diagonal(self, z, lam, problem, args) -> Float[Array, "M bz"]:
        """∂²L/∂z_i², the diagonal of the Lagrangian's Hessian, from Hessian-vector
        products with 0/1 probe vectors coloured by time block (the Hessian's
        diagonal blocks, probed as [`toolkit.control.BlockTridiagonal`][] probes a
        Jacobian's): unknowns of blocks
        that share no term of the Lagrangian share a probe, so it takes 2 or 3
        products per unknown of a block (`unknowns_reach`), whatever the horizon."""

        def hessian_vector(v):
            return jax.jvp(lambda z: self.stationarity(z, lam, problem, args)[0], (z,), (v,))[1]

        struct = jax.ShapeDtypeStruct(z.shape, z.dtype)
        reach = tuple(self.transcription.unknowns_reach(problem))
        _, diag, _ = probe_blocks(lx.FunctionLinearOperator(hessian_vector, struct), reach)
        return jnp.diagonal(diag, axis1=-2, axis2=-1)

    def _rows_from(self, w, z, lam, g, c, problem, args, project, scale=None):
        tr = self.transcription
        lo, hi = tr.bounds(problem, args)
        if project:
            v = z - (g if scale is None else g / scale)
            at_lo, at_hi = _active(v, lo, hi)
            projected = jnp.where(at_lo, lo, jnp.where(at_hi, hi, v))
            rz = z - projected
            if scale is not None:
                rz = rz * scale
        else:
            rz = g
        rz = jnp.where(lo == hi, z - lo, rz)
        rc = jnp.where(tr.constraint_mask(problem), c / tr.step(problem), lam)
        _, _, bc = tr.layout(problem)
        # The padding unknowns are their own residuals, pinning them to zero.
        return self.join(rz, rc).at[0, :bc].set(w[0, :bc]).at[-1, bc:].set(w[-1, bc:])

    def linearised(self, w, problem_args, project: bool):
        """`(F, (lower, diag, upper))`: the residual (`project=True`) or `unprojected`
        (`False`) at `w`, and the three block diagonals of its Jacobian, assembled from
        the transcription's `lagrangian_derivatives` with no Jacobian-vector product;
        `None` where the transcription does not compute them. Each block diagonal is
        of shape `(M + 1, b, b)`, in the layout of `w` (see
        [`toolkit.control.BlockTridiagonal`][]); `F` shares the gradient of the
        Lagrangian with the blocks' active set.

        Row block j holds the constraint rows of c_{j-1} / h and the stationarity rows
        of z_j; column block j the unknowns λ_{j-1} and z_j. So c_{j-1} / h has
        ∂c_{j-1}/∂z_{j-1} / h in `lower` and ∂c_{j-1}/∂z_j / h in `diag`; the
        stationarity of z_j has ∂c_{j-1}/∂z_jᵀ (the column of λ_{j-1}) and ∂²ℒ/∂z_j²
        in `diag`, ∂c_j/∂z_jᵀ (λ_j) in `upper`, and the cross Hessians beside them.
        The rows that are identities in the residual (masked constraints, fixed
        unknowns, the padding, and with `project` the active bounds) are identities.
        """
        problem, args = problem_args
        tr = self.transcription
        z, lam = self.split(w, problem)
        mask = tr.constraint_mask(problem)
        derivatives = tr.lagrangian_derivatives(z, jnp.where(mask, lam, 0), problem, args)
        if derivatives is None:
            return None
        g, c = self.stationarity(z, lam, problem, args)
        H, H_next, A, B = derivatives
        scale = None
        if project and self.scaled is not False:
            scale = jnp.where(self.scaled, self._curvature_scale(z, lam, problem, args, H), 1)
        F = self._rows_from(w, z, lam, g, c, problem, args, project, scale)
        M, bz, bc = tr.layout(problem)
        b, dtype = bc + bz, w.dtype
        h = tr.step(problem)
        A = jnp.where(mask[..., None], A, 0).astype(dtype)
        B = jnp.where(mask[..., None], B, 0).astype(dtype)

        def t(a):
            return jnp.swapaxes(a, -1, -2)

        lower = jnp.zeros((M + 1, b, b), dtype)
        diag = jnp.zeros((M + 1, b, b), dtype)
        upper = jnp.zeros((M + 1, b, b), dtype)
        lower = lower.at[1:, :bc, bc:].set(A / h)
        diag = diag.at[1:, :bc, bc:].set(B / h)
        diag = diag.at[:M, bc:, bc:].set(H.astype(dtype))
        diag = diag.at[1:M, bc:, :bc].set(t(B[:-1]))
        upper = upper.at[:M, bc:, :bc].set(t(A))
        if H_next is not None:
            upper = upper.at[: M - 1, bc:, bc:].set(H_next[:-1].astype(dtype))
            lower = lower.at[1:M, bc:, bc:].set(t(H_next[:-1]).astype(dtype))
        # Rows that are identities: the padding, masked constraint rows (λ = 0),
        # fixed unknowns (z - lo), and with `project` the active bounds (z - lo or
        # z - hi, ties included, as in `rows`).
        lo, hi = tr.bounds(problem, args)
        plain = lo == hi
        if project:
            at_lo, at_hi = _active(z - (g if scale is None else g / scale), lo, hi)
            plain = plain | at_lo | at_hi
        on_lam = jnp.concatenate([jnp.ones((1, bc), bool), jnp.asarray(~mask)])
        on_z = jnp.concatenate([plain, jnp.ones((1, bz), bool)])
        identity = jnp.concatenate([on_lam, on_z], axis=1)
        keep = jnp.invert(identity)[..., None]
        eye = jnp.eye(b, dtype=dtype)
        lower = jnp.where(keep, lower, 0)
        upper = jnp.where(keep, upper, 0)
        if scale is None:
            diag = jnp.where(keep, diag, eye[None])
        else:
            # An active bound's row is (z - lo) s: s on its diagonal (fixed unknowns,
            # whose rows are z - lo, are not scaled).
            s = jnp.where(lo == hi, 1, scale)
            on_diag = jnp.concatenate(
                [jnp.ones((M + 1, bc), dtype), jnp.concatenate([s, jnp.ones((1, bz), dtype)])],
                axis=1,
            )
            diag = jnp.where(keep, diag, eye[None] * on_diag[..., None])
        return F, (lower, diag, upper)

    def nlp_info(self, problem, args) -> NLPInfo:
        """The NLP behind the residual, for [`toolkit.control.SemismoothNewtonRootFinder`][]'s
        merit function and curvature test."""
        tr = self.transcription
        M, bz, bc = tr.layout(problem)
        mask = tr.constraint_mask(problem)
        dtype = problem.x0.dtype
        lo, hi = tr.bounds(problem, args)
        inf = jnp.full((M, bc), jnp.inf, dtype)

        def objective(w, problem_args):
            problem, args = problem_args
            return tr.objective(self.split(w, problem)[0], problem, args)

        def constraints(w, problem_args):
            problem, args = problem_args
            c = tr.constraints(self.split(w, problem)[0], problem, args)
            return jnp.where(mask, c, 0)

        primal = self.join(jnp.ones((M, bz), bool), jnp.zeros((M, bc), bool))
        primal = primal.at[-1].set(False)
        h = tr.step(problem)
        return NLPInfo(
            objective=objective,
            constraints=constraints,
            unprojected=self.unprojected,
            primal_mask=primal,
            regularisation=jnp.where(primal, h, 0).astype(dtype),
            lower=self.join(lo, -inf),
            upper=self.join(hi, inf),
            linearised=self.linearised,
        )

    def multiplier_estimate(self, z, problem, args) -> Float[Array, "M bc"]:
        """Least-squares multipliers at `z`: λ = argmin ‖D (∇J + Aᵀ λ)‖², D selecting the
        unknowns that are not fixed, A the constraint Jacobian (as IPOPT initialises
        its multipliers). Without them the projection in the stationarity rows would
        read the bare cost gradient at the guess as a push onto the bounds.

        A D Aᵀ couples neighbouring constraint blocks only, so this is one solve with
        the transcription's (block-tridiagonal) linear solver.
        """
        tr = self.transcription
        mask = tr.constraint_mask(problem)
        lo, hi = tr.bounds(problem, args)
        free = (lo != hi).astype(z.dtype)

        def c_fn(z):
            return jnp.where(mask, tr.constraints(z, problem, args), 0)

        _, A_t = jax.vjp(c_fn, z)
        grad_J = jax.grad(tr.objective)(z, problem, args)

        def A(v):
            return jax.jvp(c_fn, (z,), (v,))[1]

        def normal(lam):
            (At_lam,) = A_t(lam)
            return A(free * At_lam) + jnp.where(mask, 0, lam)

        rhs = -A(free * grad_J)
        struct = jax.ShapeDtypeStruct(mask.shape, z.dtype)
        operator = lx.FunctionLinearOperator(normal, struct)
        linear_solver = tr.linear_solver()
        if self.in_user_program:
            linear_solver = for_user_program(linear_solver)
        sol = lx.linear_solve(operator, rhs, linear_solver, throw=False)
        ok = jnp.all(jnp.isfinite(sol.value))
        return jnp.where(ok, sol.value, 0)

    def initial_guess(self, problem, args, simulate: bool = False) -> Float[Array, "M+1 b"]:
        """The transcription's default guess with least-squares multipliers; with
        `simulate=True`, its node states are those the default controls produce
        (`simulated_states`)."""
        states = simulated_states(problem, args, self.transcription.N) if simulate else None
        z0 = self.transcription.initial_guess(problem, args, states)
        lam0 = jax.lax.stop_gradient(_multiplier_estimate(self, z0, problem, args))
        return self.join(z0, lam0)


def _active(v, lo, hi):
    """Where the projection of v = z - g onto the box is on its lower and its upper
    bound. Ties (v exactly on a bound, as in a guess on a bound with zero gradient)
    count as active: jnp.clip would average the two one-sided derivatives."""
    return v <= lo, v >= hi


# A plan evaluates the residual at many places (the Newton and interior-point
# iterations, their line searches, the checks at the root, the implicit derivative),
# each under its own transformations. As one jitted function it is traced once per
# shape, and JAX derives its linearisations and batched versions from that trace
# instead of running the transcription's Python again for each use.
@filter_jit(planner=True)
def _rows(residual: KKTResidual, w, problem_args, project: bool):
    return residual.rows(w, problem_args, project)


@filter_jit(planner=True)
def _multiplier_estimate(residual: KKTResidual, z, problem, args):
    return residual.multiplier_estimate(z, problem, args)
