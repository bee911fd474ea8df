import equinox as eqx
from jaxtyping import Array

from .._nlp import NLPInfo, push_into_box


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
