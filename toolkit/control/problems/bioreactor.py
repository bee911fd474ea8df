import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([args["G"] * u[0] * x[0] - args["D"] * x[0] ** 2])


def _running_cost(t, x, u, args):
    # The book maximises the integral of K x - u; its negative is minimised.
    return u[0] - args["K"] * x[0]


@register
def bioreactor() -> Example:
    """Feeding the bacteria of a bioreactor that clean up a contaminant (Lenhart & Workman, Lab 12).

    x' = G u x - D x²,  x(0) = 0.5,  t in [0, 2],  0 <= u <= M with M = 1;
    maximise the integral of K x - u, i.e. minimise the integral of u - K x.

    `x` is the concentration of bacteria that degrade a contaminant in a
    well-stirred bioreactor, and `u` the rate at which a nutrient stimulating their
    growth is added. The contaminant itself only enters the book's full problem
    through its final value, which reduces the objective to the one above. The
    problem is linear in u, so the optimal control is bang-bang, possibly with
    singular arcs. At the lab's values it is degenerate: the optimum is u = 0
    throughout (x = 1 / (2 + t), cost -2 ln 2), and the switching function, lambda x
    - 1 = -t / 2 with lambda the costate of the maximisation, vanishes at t = 0, so
    on the grid a full dose at the first node is a nearby KKT point (cost -1.3862684
    against -1.3862944 on the trapezoidal grid).

    Parameters: `K` (weight of the bacteria against the cost of the nutrient, 2),
    `G` (maximal growth rate of the bacteria, 1) and `D` (their death rate, 1). The
    upper bound M = 1 on the nutrient rate is the control box, not a parameter.

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 19, Lab 12, after A. Heinricher, S. Lenhart and
    A. Solomon, Natural Resource Modeling 9 (1995); Myriad's `Bioreactor`, whose
    values (those of the lab) these are. The state box [0, 1] is Myriad's and
    inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.5]),
        t1=2.0,
        u_bounds=(jnp.array([0.0]), jnp.array([1.0])),
        x_bounds=(jnp.array([0.0]), jnp.array([1.0])),
    )
    return Example(
        name="bioreactor",
        description="Feeding the bacteria of a bioreactor, bang-bang (Lenhart & Workman, Lab 12)",
        problem=problem,
        args={"K": jnp.array(2.0), "G": jnp.array(1.0), "D": jnp.array(1.0)},
        N=100,
        ranges={"K": "[0, inf)", "G": "[0, inf)", "D": "[0, inf)"},
    )
