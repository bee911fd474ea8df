"""The marker of a discrete-time problem's dynamics."""

from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, PyTree, Scalar


class DiscreteDynamics(eqx.Module):
    """Marks the `dynamics` of an [`toolkit.control.OptimalControlProblem`][] as a
    discrete-time map,

    x_{k+1} = g(t_k, x_k, u_k, args),   k = 0..N-1,   t_k = t0 + k (t1 - t0)/N.

    The problem's `running_cost` is then a cost per step, summed over k = 0..N-1
    (not integrated), and its `terminal_cost` is added at x_N. Such a problem is
    planned with [`toolkit.control.Discrete`][]; the transcriptions of continuous-time
    dynamics refuse it, as `Discrete` refuses a continuous-time problem.

    Calling it calls the map: `problem.dynamics(t, x, u, args)` is x_{k+1}.
    """

    fn: Callable[[Scalar, Array, Array, PyTree], Array]
    steps: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not callable(self.fn):
            raise ValueError("`fn` must be a function g(t, x, u, args) -> next state.")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"`steps` must be None or an integer >= 1, got {self.steps!r}.")

    def __call__(self, t: Scalar, x: Array, u: Array, args: PyTree) -> Array:
        return self.fn(t, x, u, args)


DiscreteDynamics.__init__.__doc__ = """**Arguments:**

- `fn`: the map g(t, x, u, args) -> x_next, of shape (nx,).
- `steps`: the number of steps N of the model when it is fixed (a model with an
    annual step over a ten-year horizon has `steps=10`): `Discrete(N)` with another
    N then raises `ValueError` rather than solve another model. `None` (default)
    accepts any N.
"""
