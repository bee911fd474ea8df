import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, PyTree

from .._nlp import NLPInfo, push_into_box
from .frozen import tie


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
        if some element needs it: a loop that runs its body at most once, not a
        `lax.cond`, which would compute it for every element at every iteration."""

        def not_done(carry):
            return jnp.invert(carry[1])

        def once(carry):
            # Tied to the carry, so that XLA's loop-invariant code motion cannot
            # hoist the computation out of the loop and run it at every step.
            point, _ = tie(self, carry[0])
            return point(), jnp.asarray(True)

        point, _ = jax.lax.while_loop(not_done, once, (y, jnp.invert(needed)))
        return jnp.where(needed, point, y)
