import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    P, F = x[0], x[1]
    r, K, m_p, m_f = args["r"], args["K"], args["m_p"], args["m_f"]
    k, k2 = r / K, r / K**2
    return jnp.stack(
        [
            r * P - k * P**2 + k * m_f * (1 - P / K) * F**2 - u[0] * P,
            r * F - k * F**2 + k * m_p * (1 - F / K) * P**2 - u[1] * F,
            k * (1 - m_p) * P**2 + k * (1 - m_f) * F**2 + k2 * m_f * P * F**2 + k2 * m_p * P**2 * F,
        ]
    )


def _running_cost(t, x, u, args):
    return x[2] + args["c_p"] * u[0] ** 2 + args["c_f"] * u[1] ** 2


@register
def bear_populations() -> Example:
    """Harvesting a black-bear metapopulation (Lenhart & Workman, Lab 9).

    P' = r P - (r / K) P² + (r / K) m_f (1 - P / K) F² - u_p P,
    F' = r F - (r / K) F² + (r / K) m_p (1 - F / K) P² - u_f F,
    O' = (r / K) (1 - m_p) P² + (r / K) (1 - m_f) F² + (r / K²) (m_f P F² + m_p P² F),
    x = (P, F, O), x(0) = (0.4, 0.2, 0), t in [0, 25] years, 0 <= u_p, u_f <= 0.2;
    minimise the integral of O + c_p u_p² + c_f u_f².

    P, F and O are the bear densities in a park, in the surrounding forest and in
    the urban area beyond, where bears cause nuisance; u_p and u_f are the harvest
    (hunting) rates in the park and the forest. Bears reproduce in the park and
    the forest; the density-dependent overflow from a crowded area goes partly to
    the other (fractions m_f, m_p) and partly to the urban area, where it accumulates.
    Harvesting in the park is far more costly (c_p) than in the forest (c_f).

    Parameters: `r` (growth rate, 0.1), `K` (carrying capacity, 0.75), `m_p` (the
    proportion of the park's boundary joined to the forest, 0.5), `m_f` (the
    proportion of the forest's boundary joined to the park, 0.5), `c_p` (cost of
    harvesting in the park, 10000) and `c_f` (cost of harvesting in the forest, 10).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 15, Lab 9, after R. A. Salinas, S. Lenhart and
    L. J. Gross, Natural Resource Modeling 18 (2005); Myriad's `BearPopulations`,
    whose values (those of the lab) these are, with its control box [0, 0.2] (an
    earlier Myriad had [0, 1]; the optimum reaches neither upper bound: u_p < 0.001,
    u_f < 0.14, both easing to 0 at the end) and its state box [0, 2]³, which is
    inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.4, 0.2, 0.0]),
        t1=25.0,
        u_bounds=(jnp.zeros(2), jnp.array([0.2, 0.2])),
        x_bounds=(jnp.zeros(3), jnp.array([2.0, 2.0, 2.0])),
    )
    return Example(
        name="bear_populations",
        description="Harvesting black bears to spare a town (Lenhart & Workman, Lab 9)",
        problem=problem,
        args={
            "r": jnp.array(0.1),
            "K": jnp.array(0.75),
            "m_p": jnp.array(0.5),
            "m_f": jnp.array(0.5),
            "c_p": jnp.array(10000.0),
            "c_f": jnp.array(10.0),
        },
        N=100,
        ranges={
            "r": "[0, inf)",
            "K": "(0, inf)",
            "m_p": "[0, 1]",
            "m_f": "[0, 1]",
            "c_p": "[0, inf)",
            "c_f": "[0, inf)",
        },
    )
