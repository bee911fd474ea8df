from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Scalar

from ._problem import OptimalControlProblem


@eqx.filter_custom_jvp
def optimal_cost(
    z: Float[Array, "M bz"],
    lam: Float[Array, "M bc"],
    problem_args: tuple[OptimalControlProblem, PyTree[Any]],
    *,
    residual,
) -> Scalar:
    """The NLP's objective at its solution `(z, λ)`, J*(p) = J(z*(p), p), whose
    derivative with respect to the problem and its `args` p is given by the envelope
    theorem,

        dJ*/dp = ∂_p [J + λ·c](z*, λ*, p) + Σ_active ∇_z(J + λ·c)_i ∂_p b_i(p),

    the last sum over the unknowns on a bound b (fixed unknowns such as x(t0) = x0
    included), whose multiplier is -∇_z(J + λ·c)_i.

    This is the derivative of the optimal value whenever it exists, also where the
    implicit derivative dz*/dp is not defined or ill-conditioned (a degenerate active
    set, a problem linear in the control with a bang-bang optimum); and it needs no
    linear solve. Second derivatives differentiate this expression, so they go
    through z*(p) and λ*(p) (the implicit layer).

    **Arguments:**

    - `z`, `lam`: the NLP's unknowns and constraint multipliers at the solution.
    - `problem_args`: `(problem, args)`.
    - `residual`: the [`toolkit.control._kkt.KKTResidual`][] of the transcription.

    **Returns:**

    The objective, a scalar.
    """
    problem, args = problem_args
    return residual.transcription.objective(z, problem, args)


@optimal_cost.def_jvp
def _optimal_cost_jvp(primals, tangents, *, residual):
    z, lam, problem_args = primals
    _, _, t_data = tangents
    out = optimal_cost(z, lam, problem_args, residual=residual)
    if t_data is None:
        return out, jnp.zeros_like(out)
    tr = residual.transcription
    problem, args = problem_args
    g, _ = residual.stationarity(z, lam, problem, args)
    lo, hi = tr.bounds(problem, args)
    # The active set as the projection in the KKT residual reads it.
    v = z - g
    at_lo = v <= lo
    at_hi = (v >= hi) & ~at_lo
    mask = tr.constraint_mask(problem)

    def lagrangian(problem_args):
        problem, args = problem_args
        J, c = tr.objective_and_constraints(z, problem, args)
        lo, hi = tr.bounds(problem, args)
        bound = jnp.where(at_lo, lo, jnp.where(at_hi, hi, 0))
        return (
            J
            + jnp.sum(jnp.where(mask, lam * c, 0))
            + jnp.sum(jnp.where(at_lo | at_hi, g * bound, 0))
        )

    dynamic, static = eqx.partition(problem_args, eqx.is_inexact_array)
    t_dynamic = jax.tree_util.tree_map(
        lambda p, t: None if p is None else (jnp.zeros_like(p) if t is None else t),
        dynamic,
        eqx.filter(t_data, eqx.is_inexact_array, replace=None),
        is_leaf=lambda x: x is None,
    )
    _, t_out = jax.jvp(lambda d: lagrangian(eqx.combine(d, static)), (dynamic,), (t_dynamic,))
    return out, t_out
