import abc
import dataclasses
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, Bool, Int, PyTree

from .._kkt import KKTResidual
from .._problem import OptimalControlProblem


class AbstractPlanner(eqx.Module):
    """Solves the KKT conditions of a transcription, as an implicit layer.

    A planner is one method ([`toolkit.control.Newton`][],
    [`toolkit.control.BarrierPath`][], [`toolkit.control.GaussNewton`][]) or a
    composition of them ([`toolkit.control.Fallback`][]);
    [`toolkit.control.KKTNewton`][] and [`toolkit.control.KKTLeastSquares`][] are
    presets of such compositions.
    """

    atol: eqx.AbstractVar[float | None]
    max_steps: eqx.AbstractVar[int]
    linear_solver: eqx.AbstractVar[lx.AbstractLinearSolver | None]

    @abc.abstractmethod
    def solve(
        self,
        residual: KKTResidual,
        w0: Array,
        problem_args: tuple[OptimalControlProblem, PyTree[Any]],
        linear_solver: lx.AbstractLinearSolver,
        adjoint: optx.AbstractAdjoint,
    ) -> optx.Solution:
        """Solve `residual(w, problem_args) = 0` from `w0`, differentiably w.r.t. `problem_args`
        through `adjoint`, with `throw=False` (the caller decides)."""

    def with_tolerance(self, dtype) -> "AbstractPlanner":
        """This planner with its tolerance set: its own `atol`, or if that is `None`,
        the default for the unknowns' `dtype` (`default_atol`)."""
        if self.atol is not None:
            return self
        return dataclasses.replace(self, atol=default_atol(dtype))

    def composition(self) -> "AbstractPlanner":
        """The strategy objects this planner runs: itself, or for a preset the
        composition it stands for."""
        return self


class AbstractLimitedPlanner(AbstractPlanner):
    """A planner whose iteration budget can be an array: one compiled solve serves
    every budget (a first attempt and a finish, say)."""

    @abc.abstractmethod
    def limited(
        self,
        residual: KKTResidual,
        w0: Array,
        problem_args: tuple[OptimalControlProblem, PyTree[Any]],
        linear_solver: lx.AbstractLinearSolver,
        step_limit: Int[Array, ""] | None,
        adjoint: optx.AbstractAdjoint,
        give_up: Bool[Array, ""] | None = None,
    ) -> optx.Solution:
        """`solve`, stopping after `step_limit` iterations (at most `max_steps`), and
        where `give_up` is true, as soon as the method judges that it has stalled (a
        first attempt that a rescue follows)."""


def default_atol(dtype) -> float:
    """The default KKT tolerance for unknowns of `dtype`: 1e-9 in float64, 1e-4 in
    float32 (whose precision, about 1e-7, the 1/h-scaled residual rows amplify)."""
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-4
