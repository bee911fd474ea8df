import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    growth = args["r"] * x[0] + args["A"] * u[0] * x[0]
    return jnp.stack([growth - args["B"] * u[0] ** 2 * jnp.exp(-x[0])])


def _running_cost(t, x, u, args):
    return u[0] ** 2


def _terminal_cost(xT, args):
    return -args["C"] * xT[0]


@register
def bacteria() -> Example:
    """Bacteria fed a nutrient whose by-product inhibits them (Lenhart & Workman).

    x' = r x + A u x - B u² e^(-x),  x(0) = 1,  t in [0, 1],
    maximise C x(1) - integral of u², i.e. minimise integral of u² - C x(1).

    `x` is the concentration of the bacteria and `u` the amount of a chemical
    nutrient that stimulates their growth (A u x) but whose by-product, B u² e^(-x),
    hinders it.

    Parameters: `r` (growth rate, 1), `A` (relative strength of the nutrient, 1),
    `B` (strength of the by-product, 12) and `C` (pay-off per unit of the final
    population, 1).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 7, Lab 3; Myriad's `Bacteria`, whose class defaults
    these are (Myriad's gin configuration overrides B with 1, noting "used to be
    12"; the book's value is kept). The control is unconstrained as in the book:
    Myriad's box [0, 2], "set based on observation of optimal", is never reached
    (the optimum has 0.1 < u < 1.7). The state box [0, 10] is Myriad's and inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        terminal_cost=_terminal_cost,
        x0=jnp.array([1.0]),
        t1=1.0,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
        x_bounds=(jnp.array([0.0]), jnp.array([10.0])),
    )
    return Example(
        name="bacteria",
        description="Bacteria fed a nutrient with toxic by-product (Lenhart & Workman)",
        problem=problem,
        args={
            "r": jnp.array(1.0),
            "A": jnp.array(1.0),
            "B": jnp.array(12.0),
            "C": jnp.array(1.0),
        },
        N=100,
        ranges={"r": "[0, inf)", "A": "[0, inf)", "B": "[0, inf)", "C": "[0, inf)"},
    )
