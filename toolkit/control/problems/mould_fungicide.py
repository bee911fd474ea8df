import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([args["r"] * (args["M"] - x[0]) - u[0] * x[0]])


def _running_cost(t, x, u, args):
    return args["A"] * x[0] ** 2 + u[0] ** 2


@register
def mould_fungicide() -> Example:
    """A mould population reduced by a fungicide (Lenhart & Workman, Lab 2).

    x' = r (M - x) - u x,  x(0) = 1,  t in [0, 5],
    minimise the integral of A x² + u².

    `x` is the concentration of the mould and `u` the amount of fungicide applied,
    which kills mould in proportion to u x.

    Parameters: `r` (growth rate, 0.3), `M` (carrying capacity, 10) and `A` (weight
    of the mould against the fungicide, 1).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 6, Lab 2, values (6.1): r = 0.3, M = 10, A = 1, x0 = 1,
    T = 5; Myriad's `MouldFungicide`. Myriad's class default A = 10 disagrees with
    the book (its gin configuration sets A = 1); the book's A = 1 is used. The
    control is unconstrained as in the book: Myriad's box [0, 5] is never reached
    (the optimum has 0.1 < u < 1.6). The state box [0, 5] is Myriad's and inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([1.0]),
        t1=5.0,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
        x_bounds=(jnp.array([0.0]), jnp.array([5.0])),
    )
    return Example(
        name="mould_fungicide",
        description="Mould population reduced by a fungicide (Lenhart & Workman)",
        problem=problem,
        args={"r": jnp.array(0.3), "M": jnp.array(10.0), "A": jnp.array(1.0)},
        N=100,
        ranges={"r": "[0, inf)", "M": "(0, inf)", "A": "[0, inf)"},
    )
