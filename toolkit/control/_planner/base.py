import abc
from typing import Any

import equinox as eqx
import lineax as lx
import optimistix as optx
from jaxtyping import Array, PyTree

from .._kkt import KKTResidual
from .._problem import OptimalControlProblem


class AbstractPlanner(eqx.Module):
    """Solves the KKT conditions of a transcription, as an implicit layer."""

    atol: eqx.AbstractVar[float]
    max_steps: eqx.AbstractVar[int]
    linear_solver: eqx.AbstractVar[lx.AbstractLinearSolver | None]
    fallback_after: eqx.AbstractVar[int]
    interior_point_steps: eqx.AbstractVar[int]

    @abc.abstractmethod
    def solve(
        self,
        residual: KKTResidual,
        w0: Array,
        data: tuple[OptimalControlProblem, PyTree[Any]],
        linear_solver: lx.AbstractLinearSolver,
        adjoint: optx.AbstractAdjoint,
    ) -> optx.Solution:
        """Solve `residual(w, data) = 0` from `w0`, differentiably w.r.t. `data`
        through `adjoint`, with `throw=False` (the caller decides)."""
