import equinox as eqx
from jaxtyping import Array, Bool, PyTree

from .._nlp import NLPInfo, push_into_box
from .frozen import at_most_once


class Restart(eqx.Module):
    """Where [`toolkit.control.BarrierPath`][] is stuck, start once more from a guess
    whose states follow the dynamics under the default controls
    (`KKTResidual.initial_guess(simulate=True)`), moved inside the bounds, as IPOPT
    would enter its restoration phase.

    **Arguments:**

    - `after`: failed line searches in a row (the curvature shift grown from its
        first value to about its largest, the steps to nothing) that count as stuck.
    """

    after: int = 15

    def point(self, residual, problem_args, nlp: NLPInfo) -> Array:
        """The point to restart from, for the residual's `problem_args`."""
        return push_into_box(residual.initial_guess(*problem_args, simulate=True), nlp)

    def lazy_point(self, residual, problem_args, nlp: NLPInfo) -> "RestartPoint":
        """`point`, to be computed only if a restart happens (see `RestartPoint`)."""
        return RestartPoint(self, residual, problem_args, nlp)


class RestartPoint(eqx.Module):
    """A restart point not computed yet: [`toolkit.control.InteriorPointRootFinder`][]
    takes it as `options["restart"]` in place of the point itself, and computes it
    only at a restart. Computing it (a simulation of the dynamics and a least-squares
    multiplier estimate) cost 3-7 % of each rescued plan of the library, where no
    plan restarts."""

    restart: Restart
    residual: PyTree
    problem_args: PyTree
    nlp: NLPInfo

    def __call__(self) -> Array:
        return self.restart.point(self.residual, self.problem_args, self.nlp)

    def where(self, needed: Bool[Array, ""], y: Array) -> Array:
        """The point where `needed`, else `y`. Under `jax.vmap` it is computed only
        if some element needs it (`at_most_once`)."""
        return at_most_once(needed, lambda point: point(), y, self)
