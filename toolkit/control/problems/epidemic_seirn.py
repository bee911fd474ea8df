import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    S, E, I, R, N = x[0], x[1], x[2], x[3], x[4]
    b, d, c, e, g, a = (args[k] for k in ("b", "d", "c", "e", "g", "a"))
    return jnp.stack(
        [
            b * N - d * S - c * S * I - u[0] * S,
            c * S * I - (e + d) * E,
            e * E - (g + a + d) * I,
            g * I - d * R + u[0] * S,
            (b - d) * N - a * I,
        ]
    )


def _running_cost(t, x, u, args):
    return args["A"] * x[2] + u[0] ** 2


@register
def epidemic_seirn() -> Example:
    """Vaccination against an epidemic, the full SEIRN model (Lenhart & Workman, Lab 7).

    S' = b N - d S - c S I - u S,   E' = c S I - (e + d) E,
    I' = e E - (g + a + d) I,       R' = g I - d R + u S,
    N' = (b - d) N - a I,
    x = (S, E, I, R, N), x(0) = (1000, 100, 50, 15, 1165), t in [0, 20],
    0 <= u <= 0.9; minimise the integral of A I + u².

    The book's model as it writes it, with the recovered (immune) R as a state; the
    vaccinated susceptibles move to R. N = S + E + I + R is the whole population, so
    the states are dependent (the sum of the first four derivatives is N'). R acts
    on nothing else and costs nothing, so the optimum is the one of `seir`, which
    drops R: the two problems cross-check each other (their reference optima agree
    to rounding on every transcription, R being integrated exactly alongside).

    Parameters: `b` (natural birth rate, 0.525), `d` (natural death rate, 0.5), `c`
    (incidence rate, 0.0001), `e` (rate at which the exposed become infectious, 0.5),
    `g` (recovery rate, 0.1), `a` (death rate due to the disease, 0.2) and `A`
    (weight of the infectious against the cost of vaccination, 0.1).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 13, Lab 7, after Joshi, Lenhart, Li and Wang (2006);
    Myriad's `EpidemicSEIRN`, whose values (those of the lab) these are. Myriad's
    docstring writes this five-state model, with the cost A S + u², but its code
    integrates four states (S, E, I, N, as `seir` does) with the book's cost A I + u²;
    the book's five states and cost are used here. Like Myriad, no state box.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([1000.0, 100.0, 50.0, 15.0, 1165.0]),
        t1=20.0,
        u_bounds=(jnp.array([0.0]), jnp.array([0.9])),
    )
    return Example(
        name="epidemic_seirn",
        description="Vaccinating against an epidemic, five-state SEIRN (Lenhart & Workman)",
        problem=problem,
        args={
            "b": jnp.array(0.525),
            "d": jnp.array(0.5),
            "c": jnp.array(0.0001),
            "e": jnp.array(0.5),
            "g": jnp.array(0.1),
            "a": jnp.array(0.2),
            "A": jnp.array(0.1),
        },
        N=100,
        ranges={
            "b": "[0, inf)",
            "d": "[0, inf)",
            "c": "[0, inf)",
            "e": "[0, inf)",
            "g": "[0, inf)",
            "a": "[0, inf)",
            "A": "[0, inf)",
        },
    )
