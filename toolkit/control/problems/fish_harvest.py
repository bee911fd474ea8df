import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([-(args["m"] + u[0]) * x[0]])


def _running_cost(t, x, u, args):
    # The book maximises the integral of A w(t) x u - u², with w(t) = k t / (t + 1)
    # the mean mass of a fish; its negative is minimised.
    mass = args["k"] * t / (t + 1)
    return u[0] ** 2 - args["A"] * mass * x[0] * u[0]


@register
def fish_harvest() -> Example:
    """Harvesting a stocked fish population whose fish gain mass (Lenhart & Workman, Lab 6).

    x' = -(m + u) x,  x(0) = 0.4,  t in [0, 10],  0 <= u <= M with M = 1;
    maximise the integral of A (k t / (t + 1)) x u - u², i.e. minimise the integral
    of u² - A (k t / (t + 1)) x u.

    `x` is the (scaled) number of fish, introduced into a fishery at t = 0; the
    horizon is too short for them to reproduce, but each fish grows, its mass being
    k t / (t + 1). `u` is the harvest rate, so the catch is the mass k t / (t + 1)
    times u x, and the quadratic term is the cost of harvesting. The optimum waits
    (u = 0, the lower bound active) while the fish are small, harvests hardest
    (u ≈ 0.64) around t = 2 and eases off as the stock runs out; the upper bound
    M = 1 is not reached at the default values.

    Parameters: `A` (price of a unit mass of fish relative to the cost of
    harvesting, 5), `k` (the asymptotic mass of a fish, 10) and `m` (natural death
    rate of the fish, 0.2). The upper bound M = 1 on the harvest rate is the control
    box, not a parameter.

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 11, Lab 6, after W. M. Getz, Proc. Symp. Appl. Math. 30
    (1984); default values A = 5, k = 10, m = 0.2, M = 1, x0 = 0.4, T = 10. Myriad's
    `Harvest` (earlier `FishHarvest`) has the same values and no state box.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.4]),
        t1=10.0,
        u_bounds=(jnp.array([0.0]), jnp.array([1.0])),
    )
    return Example(
        name="fish_harvest",
        description="Harvesting stocked fish that gain mass (Lenhart & Workman, Lab 6)",
        problem=problem,
        args={"A": jnp.array(5.0), "k": jnp.array(10.0), "m": jnp.array(0.2)},
        N=100,
        ranges={"A": "[0, inf)", "k": "(0, inf)", "m": "[0, inf)"},
    )
