import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    S, E, I, N = x[0], x[1], x[2], x[3]
    b, d, c, e, g, a = (args[k] for k in ("b", "d", "c", "e", "g", "a"))
    return jnp.stack(
        [
            b * N - d * S - c * S * I - u[0] * S,
            c * S * I - (e + d) * E,
            e * E - (g + a + d) * I,
            (b - d) * N - a * I,
        ]
    )


def _running_cost(t, x, u, args):
    return args["A"] * x[2] + u[0] ** 2


@register
def seir() -> Example:
    """Vaccination against an SEIR epidemic (Lenhart & Workman, Lab 7; Myriad's `SEIR`).

    S' = b N - d S - c S I - u S,   E' = c S I - (e + d) E,
    I' = e E - (g + a + d) I,       N' = (b - d) N - a I,
    x = (S, E, I, N), x(0) = (1000, 100, 50, 1165), t in [0, 20], 0 <= u <= 0.9;
    minimise the integral of A I + u².

    S, E, I are the susceptible, exposed (latent) and infectious individuals and N
    the whole population; the recovered R = N - S - E - I (R(0) = 15) do not act on
    the others, so R is not a state. `u` is the fraction of susceptibles vaccinated
    per unit time; everyone is born susceptible.

    Parameters: `b` (natural birth rate, 0.525), `d` (natural death rate, 0.5), `c`
    (incidence rate, 0.0001), `e` (rate at which the exposed become infectious, 0.5;
    1/e is the mean latent period), `g` (recovery rate, 0.1; 1/g is the mean
    infectious period), `a` (death rate due to the disease, 0.2) and `A` (weight of
    the infectious against the cost of vaccination, 0.1).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 13, Lab 7, after Joshi, Lenhart, Li and Wang (2006);
    Myriad's `SEIR` (whose docstring describes a different COVID-19 model, but whose
    code is this one) and `EpidemicSEIRN`. Myriad's `SEIR` bounds u by 1; the book's
    bound 0.9 is used (inactive anyway: the optimum has u < 0.19). The state box
    S <= 2000, E <= 250, I <= 250, N <= 3000 (all >= 0) is Myriad's and inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([1000.0, 100.0, 50.0, 1165.0]),
        t1=20.0,
        u_bounds=(jnp.array([0.0]), jnp.array([0.9])),
        x_bounds=(jnp.zeros(4), jnp.array([2000.0, 250.0, 250.0, 3000.0])),
    )
    return Example(
        name="seir",
        description="Vaccinating against an SEIR epidemic (Lenhart & Workman)",
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
