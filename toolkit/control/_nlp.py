"""The nonlinear program behind a KKT residual, as its root finders see it."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Scalar


class NLPInfo(eqx.Module):
    """What [`toolkit.control.SemismoothNewtonRootFinder`][] needs to know of the nonlinear program
    behind a KKT residual (passed as `options={"nlp": NLPInfo(...)}`).

    **Fields:**

    - `objective`: `(y, args) -> J`, the NLP objective at the primal part of `y`.
    - `constraints`: `(y, args) -> c`, the (masked) equality constraints.
    - `unprojected`: `(y, args) -> F`, the residual with the bounds ignored: bare
        stationarity rows ∇_z L on the unknowns that are not fixed.
    - `primal_mask`: boolean, shaped like `y`: which unknowns are primal.
    - `regularisation`: shaped like `y`: the diagonal added, times δ, to the Jacobian
        (positive on primal unknowns; its scale sets that of the curvature test).
    - `lower`, `upper`: bounds shaped like `y` (±inf on multipliers).
    - `linearised`: `(y, args, project) -> (F, (lower, diag, upper)) | None`, the
        residual (`project=True`, a residual without aux) or `unprojected`
        (`False`) with the three block diagonals of its Jacobian, where the NLP
        computes them more cheaply than by probing; `None` (the field, or its
        value) where it does not.
    """

    objective: Callable[[Array, Any], Scalar]
    constraints: Callable[[Array, Any], Array]
    unprojected: Callable[[Array, Any], Array]
    primal_mask: Array
    regularisation: Array
    lower: Array
    upper: Array
    linearised: Callable[[Array, Any, bool], Any] | None = None


def bound_masks(nlp) -> tuple[Bool[Array, "..."], Bool[Array, "..."]]:
    """Which unknowns have a finite lower and a finite upper bound: primal ones, not
    fixed (lo = hi)."""
    free = nlp.primal_mask & (nlp.lower < nlp.upper)
    return free & jnp.isfinite(nlp.lower), free & jnp.isfinite(nlp.upper)


def push_into_box(y: Array, nlp, kappa_1: float = 1e-2, kappa_2: float = 1e-2) -> Array:
    """Move the primal unknowns strictly inside their bounds (as IPOPT does with its
    starting point): at least min(κ₁ max(1, |bound|), κ₂ (hi - lo)) from each bound."""
    has_lower, has_upper = bound_masks(nlp)
    lo = jnp.where(has_lower, nlp.lower, 0)
    hi = jnp.where(has_upper, nlp.upper, 0)
    width = jnp.where(has_lower & has_upper, hi - lo, jnp.inf)
    p_lower = jnp.minimum(kappa_1 * jnp.maximum(1, jnp.abs(lo)), kappa_2 * width)
    p_upper = jnp.minimum(kappa_1 * jnp.maximum(1, jnp.abs(hi)), kappa_2 * width)
    y = jnp.where(has_lower, jnp.maximum(y, lo + p_lower), y)
    return jnp.where(has_upper, jnp.minimum(y, hi - p_upper), y)
