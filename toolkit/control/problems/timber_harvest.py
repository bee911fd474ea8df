import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([args["k"] * x[0] * u[0]])


def _running_cost(t, x, u, args):
    # The book maximises the discounted income, the integral of e^(-r t) x (1 - u);
    # its negative is minimised.
    return -jnp.exp(-args["r"] * t) * x[0] * (1 - u[0])


@register
def timber_harvest() -> Example:
    """Reinvesting the income of a timber farm, a bang-bang problem (Lenhart & Workman, Lab 11).

    x' = k x u,  x(0) = 100,  t in [0, 5],  0 <= u <= 1;
    maximise the integral of e^(-r t) x (1 - u), i.e. minimise its negative.

    `x` is the rate at which raw timber is produced and sold (the farm is large
    enough for mature trees never to run out), and `u` the fraction of the income
    reinvested in the farm, which raises production at the rate k x u; the rest,
    x (1 - u), is the income kept, discounted at the rate r. The problem is linear in
    u, so the optimal control is bang-bang: with r = 0, reinvest everything (u = 1)
    until T - 1 / k = 4, then nothing; the optimum is -x(0) e^(k T - 1) / k =
    -100 e^4 ≈ -5459.8 in continuous time.

    Parameters: `r` (discount rate, 0) and `k` (return on the reinvested income, net
    of the cost of labour and land, 1).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 18, Lab 11, after M. I. Kamien and N. L. Schwartz,
    *Dynamic Optimization* (1991); Myriad's `TimberHarvest`, whose values (those of
    the lab) these are. The state box [0, 20000] is Myriad's and inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([100.0]),
        t1=5.0,
        u_bounds=(jnp.array([0.0]), jnp.array([1.0])),
        x_bounds=(jnp.array([0.0]), jnp.array([20000.0])),
    )
    return Example(
        name="timber_harvest",
        description="Reinvesting a timber farm's income, bang-bang (Lenhart & Workman, Lab 11)",
        problem=problem,
        args={"r": jnp.array(0.0), "k": jnp.array(1.0)},
        N=100,
        ranges={"r": "[0, inf)", "k": "[0, inf)"},
    )
