import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([-args["a"] * x[0] - args["b"] * x[1], -args["c"] * x[1] + u[0]])


def _running_cost(t, x, u, args):
    return args["A"] * (x[0] - args["l"]) ** 2 + u[0] ** 2


@register
def glucose() -> Example:
    """Insulin injections regulating blood glucose (Lenhart & Workman, Lab 10).

    x' = -a x - b y,  y' = -c y + u,  x(0) = (0.75, 0),  t in [0, 0.2] days,
    minimise the integral of A (x - l)² + u².

    `x` is the blood glucose level of a diabetic whose pancreas produces no insulin,
    `y` the net hormonal (insulin) concentration and `u` the rate at which insulin is
    injected. The glucose is brought down towards the level `l` at the cost of the
    injections. The model is meant for short windows of time (the lab asks T < 0.45
    day, about 11 hours).

    Parameters: `a` (rate at which the body uses glucose, 1), `b` (rate at which
    insulin degrades glucose, 1), `c` (rate at which insulin degrades, 1), `A` (weight
    of the distance to the target level against the injections, 2) and `l` (the
    target glucose level, 0.5).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 16, Lab 10, after M. Eisen, *Mathematical Methods and
    Models in the Biological Sciences* (1988); Myriad's `Glucose`, whose values (those
    of the lab) these are. Departures from Myriad, which follow the book: Myriad
    multiplies the running cost by 100000 "so we can actually see it" (a scale that
    moves no optimum), and bounds u by [0, 0.01], which the optimum never reaches (it
    injects at a rate that falls from 0.0055 to 0; an earlier Myriad had no bounds).
    The state box [0, 1]² is Myriad's and inactive.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.75, 0.0]),
        t1=0.2,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
        x_bounds=(jnp.zeros(2), jnp.ones(2)),
    )
    return Example(
        name="glucose",
        description="Insulin injections regulating blood glucose (Lenhart & Workman, Lab 10)",
        problem=problem,
        args={
            "a": jnp.array(1.0),
            "b": jnp.array(1.0),
            "c": jnp.array(1.0),
            "A": jnp.array(2.0),
            "l": jnp.array(0.5),
        },
        N=100,
        ranges={
            "a": "[0, inf)",
            "b": "[0, inf)",
            "c": "[0, inf)",
            "A": "[0, inf)",
            "l": "[0, inf)",
        },
    )
