import abc
import dataclasses
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, PyTree

from .._kkt import KKTResidual
from .._problem import OptimalControlProblem


class AbstractPlanner(eqx.Module):
    """Solves the KKT conditions of a transcription, as an implicit layer."""

    atol: eqx.AbstractVar[float | None]
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

    def with_tolerance(self, dtype) -> "AbstractPlanner":
        """This planner with its tolerance set: its own `atol`, or if that is `None`,
        the default for the unknowns' `dtype` (`default_atol`)."""
        if self.atol is not None:
            return self
        return dataclasses.replace(self, atol=default_atol(dtype))


def default_atol(dtype) -> float:
    """The default KKT tolerance for unknowns of `dtype`: 1e-9 in float64, 1e-4 in
    float32 (whose precision, about 1e-7, the 1/h-scaled residual rows amplify)."""
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-4
