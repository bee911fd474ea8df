from typing import Any

import equinox as eqx
from jaxtyping import Array, Float, Scalar

from ._results import RESULTS


class Solution(eqx.Module):
    """The result of [`toolkit.control.plan`][].

    **Attributes:**

    - `cost`: the objective of the discretised problem at the solution.
    - `ts`: `(N+1,)` the grid.
    - `xs`: `(N+1, nx)` states at the grid nodes.
    - `us`: `(N+1, nu)` controls at the grid nodes (a discrete-time problem has no
        control at the last node: NaN there).
    - `costates`: `(N, nx)` approximate Pontryagin costates p (one per interval, from
        the defect multipliers, for H = L + p·f), or `None` where the transcription
        has no defects (single shooting).
    - `multipliers`: `(M, bc)` the NLP's equality-constraint multipliers.
    - `bound_multipliers`: `(M, bz)` the box multipliers ν = ∇_z(J + λ·c): positive
        at an active lower bound, negative at an active upper bound, 0 inside.
    - `z`: `(M, bz)` the NLP unknowns, as laid out by the transcription.
    - `result`: a [`toolkit.control.RESULTS`][]; `RESULTS[sol.result]` is its message.
    - `stats`: `num_steps` (iterations), `kkt_residual` (final max-norm of the scaled
        KKT residual) and the planner's own counters.
    """

    cost: Scalar
    ts: Float[Array, " N+1"]
    xs: Float[Array, "N+1 nx"]
    us: Float[Array, "N+1 nu"]
    costates: Float[Array, "N nx"] | None
    multipliers: Float[Array, "M bc"]
    bound_multipliers: Float[Array, "M bz"]
    z: Float[Array, "M bz"]
    result: RESULTS
    stats: dict[str, Any]
