from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Int, Scalar

from .._block_tridiagonal import block_matvec


def regularised_newton_step(
    lin_fn,
    f: Array,
    struct,
    nlp,
    diagonal: Array | float,
    delta: Scalar,
    solver,
    tags,
    keep_factors: bool = False,
    max_regularisations: int | Int[Array, ""] | None = None,
    blocks=None,
    max_failed_solves: int | Int[Array, ""] | None = None,
    jump: bool = False,
) -> tuple[Array, Bool[Array, ""], Scalar, Int[Array, ""], Callable[[Array], Array] | None]:
    """The Newton step dy = -(J + D + δ R)⁻¹ f with the inertia-free curvature test
    (Chiang & Zavala 2016): while the primal part dz of the step has
    dzᵀ (H + D) dz + δ ‖dz‖²_R < κ ‖dz‖²_R, grow δ tenfold and solve again.

    `lin_fn` is the linearised residual (H its primal block), `diagonal` an extra
    diagonal D (the barrier term of an interior-point step, or 0), `R` the NLP's
    `regularisation` weights. `solver` supplies `linear_solver`, `kappa`,
    `delta_init`, `delta_max` and `max_regularisations`. Returns
    `(dy, ok, δ, number of shifts, resolve)`; `ok` is false when the linear solve
    failed or the test still fails at the largest shift. With `keep_factors`,
    `resolve(rhs)` solves (J + D + δ R) x = rhs with the factorisation of the
    accepted step (a second-order correction's system), returning `x` (zero where the
    solve fails); without, `resolve` is `None` (the factors then stay inside the
    loop, which is measurably faster). `max_regularisations`, if given, replaces the
    solver's (an array where the limit is decided at run time). `blocks`, if given,
    are the block diagonals of `lin_fn` (see [`toolkit.control.BlockTridiagonal`][]):
    each shift adds its diagonal to them, and the linear solver is handed them
    (`options={"blocks": ...}`) instead of probing the operator.
    `max_failed_solves`, if given, stops the shifts once that many linear solves in
    a row have failed: a system singular in its constraint rows stays singular
    whatever its Hessian shift (the first steps of bear_populations and
    hiv_treatment from their default guesses fail at every shift up to 1e3).
    With `jump`, a failed test grows δ to twice the shift the failed direction
    needed, κ - dzᵀ (H + D) dz / ‖dz‖²_R, where that is more than tenfold: one
    factorisation instead of four for a shift from 1e-4 to 1.
    """
    primal = nlp.primal_mask
    linear_solver: lx.AbstractLinearSolver = solver.linear_solver
    kappa, delta_init, delta_max = solver.kappa, solver.delta_init, solver.delta_max
    if max_regularisations is None:
        max_regularisations = solver.max_regularisations

    def operator(delta):
        def matvec(v):
            return lin_fn(v) + (diagonal + delta * nlp.regularisation) * v

        return lx.FunctionLinearOperator(matvec, struct, tags=tags)

    # The factorisation leaves the loop below with the step, for `resolve`: its arrays
    # are the loop's carry, its other parts the same for every shift.
    static = []

    def options(delta):
        if blocks is None:
            return {}
        lower, diag, upper = blocks
        shift = jnp.broadcast_to(diagonal + delta * nlp.regularisation, f.shape)
        eye = jnp.eye(f.shape[-1], dtype=diag.dtype)
        return {"blocks": (lower, diag + shift[..., None] * eye[None], upper)}

    def factorise(delta):
        state = linear_solver.init(operator(delta), options(delta))
        arrays, rest = eqx.partition(state, eqx.is_array)
        if not static:
            static.append(rest)
        return arrays

    def compute(arrays, vector):
        x, result, _ = linear_solver.compute(eqx.combine(arrays, static[0]), vector, {})
        ok = (result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(x))
        return jnp.where(ok, x, 0), ok

    def solve(delta):
        if not keep_factors:
            sol = lx.linear_solve(
                operator(delta), f, linear_solver, options=options(delta), throw=False
            )
            p = sol.value
            ok = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(p))
            return -jnp.where(ok, p, 0), ok, None
        arrays = factorise(delta)
        p, ok = compute(arrays, f)
        return -p, ok, arrays

    def curvature_ok(dy, delta):
        """Whether `dy` passes the test, and the shift its direction would have
        needed to pass."""
        dz = jnp.where(primal, dy, 0)
        curv = jnp.sum(jnp.where(primal, dz * (lin_fn(dz) + diagonal * dz), 0))
        size = jnp.sum(nlp.regularisation * dz * dz)
        need = jnp.where(size > 0, kappa - curv / jnp.where(size > 0, size, 1), 0)
        return curv + delta * size >= kappa * size, need

    def cond(carry):
        _, ok, _, i, _, failed, _ = carry
        go_on = jnp.invert(ok) & (i < max_regularisations)
        if max_failed_solves is None:
            return go_on
        return go_on & (failed < max_failed_solves)

    # One loop whose first pass tries `delta` itself (i = -1 → 0) and whose later
    # passes grow it: the linear solve is traced, and compiled, once rather than twice.
    def body(carry):
        _, _, delta, i, _, failed, need = carry
        grown = jnp.maximum(10 * delta, delta_init)
        if jump:
            grown = jnp.maximum(grown, 2 * need)
        delta = jnp.where(i < 0, delta, jnp.minimum(grown, delta_max))
        dy, solved, arrays = solve(delta)
        failed = jnp.where(solved, 0, failed + 1)
        ok, need = curvature_ok(dy, delta)
        return dy, solved & ok, delta, i + 1, arrays, failed, jnp.where(solved, need, 0)

    empty = None
    if keep_factors:
        shapes = jax.eval_shape(factorise, delta)
        empty = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    zero = jnp.zeros((), f.dtype)
    init = (jnp.zeros_like(f), jnp.array(False), delta, jnp.array(-1), empty, jnp.array(0), zero)
    dy, ok, delta, shifts, arrays, _, _ = lax.while_loop(cond, body, init)

    if not keep_factors:
        return dy, ok, delta, shifts, None

    def resolve(rhs):
        return compute(arrays, rhs)[0]

    return dy, ok, delta, shifts, resolve


def linearised(residual, y, args, nlp, project: bool):
    """`(F, lin_fn, blocks, aux)`: the residual at `y`, its linearisation, its
    Jacobian's block diagonals and its aux, from `nlp.linearised` where the NLP has
    them (`lin_fn` then multiplies by the blocks; no aux), else from `jax.linearize`
    of `residual(y, args)`, which returns `(F, aux)` (`blocks` `None`). `residual` is
    the residual (`project=True`) or the unprojected one."""
    both = None
    if nlp is not None and nlp.linearised is not None:
        both = nlp.linearised(y, args, project)
    if both is None:
        F, lin_fn, aux = jax.linearize(lambda _y: residual(_y, args), y, has_aux=True)
        return F, lin_fn, None, aux
    F, blocks = both

    def lin_fn(v):
        return block_matvec(blocks, v)

    return F, lin_fn, blocks, None


def next_shift(
    delta: Scalar, moved: Bool[Array, ""], solver, floor: bool | Bool[Array, ""] = False
) -> Scalar:
    """The curvature shift the next iteration tries first: a tenth of `delta` after a
    step that moved (zero once below `solver.delta_init`; with `floor`, never below
    `delta_init` once a step has needed a shift), ten times it (at least
    `delta_init`) after a failed search, never above `solver.delta_max`.

    The interior-point method keeps the floor: decaying to zero, tumour's barrier path
    failed the curvature test at δ = 0 and passed at 1e-4 on 40 of its 49 steps, each
    failure another factorisation (94 factorisations for 52 steps; with the floor 62,
    the same steps). Semismooth Newton keeps it only in the finish of a
    [`toolkit.control.Fallback`][] (`options["give_up"]` false): bioreactor's
    finish from the barrier path's point failed the test at δ = 0 and passed at 1e-4
    on each of its 7 steps (14 factorisations; with the floor 8). (Since the line
    search tries the step to the nearest bound, that finish takes 2 steps; its plan
    and those of bear_populations, cart_pole, hiv_treatment, mould_fungicide,
    pendulum, predator_prey and tumour take the same steps without the floor.)
    Elsewhere an
    unshifted step converges fastest, and with the floor a pure-Newton Van der Pol
    plan from a perturbed start (N = 20, mu = 0.73) no longer converged. `floor` may
    be a boolean array."""
    floored = jnp.where(delta == 0, 0.0, jnp.maximum(delta / 10, solver.delta_init))
    decayed = jnp.where(floor, floored, jnp.where(delta / 10 < solver.delta_init, 0.0, delta / 10))
    delta = jnp.where(moved, decayed, jnp.maximum(10 * delta, solver.delta_init))
    return jnp.minimum(delta, solver.delta_max)
