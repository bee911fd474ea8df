import lineax as lx
import optimistix as optx

from .._nlp import push_into_box
from .base import AbstractPlanner
from .frozen import freeze
from .interior_point import InteriorPointRootFinder
from .restart import Restart


class BarrierPath(AbstractPlanner):
    """The interior-point method on the KKT conditions, alone: `optimistix.root_find`
    with [`toolkit.control.InteriorPointRootFinder`][] from the guess moved strictly inside the
    bounds, differentiated through the solution by the `adjoint`.

    It follows the smooth barrier path instead of jumping between active sets, which
    is what a start far from the solution needs, and stops once the KKT conditions
    hold to `tol` (in the NLP's own units): a point from which semismooth Newton
    finishes in a few steps. The rescue of [`toolkit.control.Fallback`][].
    """

    atol: float | None = None
    max_steps: int = 300
    linear_solver: lx.AbstractLinearSolver | None = None
    restart: Restart | None = Restart()
    tol: float | None = None

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        frozen = freeze(problem_args)
        nlp = residual.nlp_info(*frozen)
        options = {"nlp": nlp}
        restart = {}
        if self.restart is not None:
            options["restart"] = self.restart.lazy_point(residual, frozen, nlp)
            restart = {"restart_after": self.restart.after}
        method = InteriorPointRootFinder(
            rtol=0.0,
            atol=self.atol,
            linear_solver=linear_solver,
            tol=10 * self.atol if self.tol is None else self.tol,
            **restart,
        )
        return optx.root_find(
            residual,
            method,
            push_into_box(w0, nlp),
            problem_args,
            options=options,
            max_steps=self.max_steps,
            adjoint=adjoint,
            throw=False,
        )


BarrierPath.__init__.__doc__ = """**Arguments:**

- `atol`: also stops when the max-norm of the KKT residual is at most this.
    Default `None`: follows the problem's dtype (see [`toolkit.control.Newton`][]).
- `max_steps`: iterations before giving up.
- `linear_solver`: a lineax solver for the Newton systems; by default the
    transcription's own.
- `restart`: what to do when the method is stuck: a
    [`toolkit.control.Restart`][] (default), or `None` to give up.
- `tol`: the KKT error at which it stops; default `10 * atol`.
"""
