import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    T, I, V = x[0], x[1], x[2]
    s, r, k, N = args["s"], args["r"], args["k"], args["N"]
    m_1, m_2, m_3, T_max = args["m_1"], args["m_2"], args["m_3"], args["T_max"]
    infection = u[0] * k * V * T
    return jnp.stack(
        [
            s / (1 + V) - m_1 * T + r * T * (1 - (T + I) / T_max) - infection,
            infection - m_2 * I,
            N * m_2 * I - m_3 * V,
        ]
    )


def _running_cost(t, x, u, args):
    # The book maximises the integral of A T - (1 - u)²; its negative is minimised.
    return (1 - u[0]) ** 2 - args["A"] * x[0]


@register
def hiv_treatment() -> Example:
    """Chemotherapy that lowers the infectivity of HIV (Lenhart & Workman, Lab 8).

    T' = s / (1 + V) - m_1 T + r T (1 - (T + I) / T_max) - u k V T,
    I' = u k V T - m_2 I,
    V' = N m_2 I - m_3 V,
    x = (T, I, V), x(0) = (800, 0.04, 1.5), t in [0, 20] days, 0 <= u <= 1;
    maximise the integral of A T - (1 - u)², i.e. minimise the integral of
    (1 - u)² - A T.

    T and I are the uninfected and infected CD4⁺ T cells (per mm³) and V the free
    virus particles. The drug lowers the infectivity k of the virus: u = 1 is no
    treatment, u = 0 maximal treatment, so (1 - u)² is the systemic cost of the drug.

    Parameters: `s` (source of new CD4⁺ T cells, 10 per day, reduced by 1 / (1 + V)
    as the virus impairs their production), `m_1`, `m_2`, `m_3` (death rates of
    uninfected cells, infected cells and free virus: 0.02, 0.5, 4.4 per day), `r`
    (growth rate of the T cells, 0.03 per day), `T_max` (their maximum level, 1500),
    `k` (rate of infection of T cells by free virus, 0.000024), `N` (virus particles
    released by an infected cell before it dies, 300) and `A` (weight of the healthy
    cells against the cost of the drug, 0.05).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 14, Lab 8, after S. Butler, D. Kirschner and S. Lenhart
    (1997); Myriad's `HIVTreatment`, whose values (those of the lab) these are. The
    state box T in [0, 1600], I in [0, 100], V in [0, 100] is Myriad's and inactive;
    it keeps V > -1, where s / (1 + V) is defined.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([800.0, 0.04, 1.5]),
        t1=20.0,
        u_bounds=(jnp.array([0.0]), jnp.array([1.0])),
        x_bounds=(jnp.zeros(3), jnp.array([1600.0, 100.0, 100.0])),
    )
    return Example(
        name="hiv_treatment",
        description="Chemotherapy lowering the infectivity of HIV (Lenhart & Workman, Lab 8)",
        problem=problem,
        args={
            "s": jnp.array(10.0),
            "m_1": jnp.array(0.02),
            "m_2": jnp.array(0.5),
            "m_3": jnp.array(4.4),
            "r": jnp.array(0.03),
            "T_max": jnp.array(1500.0),
            "k": jnp.array(0.000024),
            "N": jnp.array(300.0),
            "A": jnp.array(0.05),
        },
        N=100,
        ranges={
            "s": "[0, inf)",
            "m_1": "[0, inf)",
            "m_2": "[0, inf)",
            "m_3": "[0, inf)",
            "r": "[0, inf)",
            "T_max": "(0, inf)",
            "k": "[0, inf)",
            "N": "[0, inf)",
            "A": "[0, inf)",
        },
    )
