import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    # The hill is h(x) = x² / 2, so the slope h'(x) = x.
    return jnp.stack([x[1], args["power"] * u[0] - args["gravity"] * x[0]])


def _running_cost(t, x, u, args):
    return 10 * u[0] ** 2


@register
def mountain_car() -> Example:
    """Mountain car in a parabolic valley (Myriad's `MountainCar`).

    position'' = power u - gravity h'(position),  h(x) = x² / 2;
    x = (position, velocity), x(0) = (-0.1, 0), x(300) = (0.45, 0),
    |u| <= 1, position in [-1.2, 0.6], |velocity| <= 0.07;
    minimise the integral of 10 u² over t in [0, 300].

    Time is in gym's steps. The car reaches the goal cheaply by rocking in the valley
    (the natural period 2 pi / sqrt(gravity) ≈ 126 fits 2.4 times in the horizon).

    Parameters: `power` (force per unit of control, 0.0015) and `gravity` (0.0025).

    Source: Myriad's `MountainCar` (Howe et al.), after OpenAI gym's
    `MountainCarContinuous` and A. Moore's PhD thesis (1990): all values and bounds
    are Myriad's, including its goal 0.45 and its hill x² / 2 (gym's hill is
    sin(3 x), whose slope term is 0.0025 cos(3 x)), which makes the dynamics linear.
    Myriad clips u to [-1, 1] inside the dynamics; the control box does that here.
    The state box is inactive at the optimum.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([-0.1, 0.0]),
        t1=300.0,
        xT=jnp.array([0.45, 0.0]),
        u_bounds=(jnp.array([-1.0]), jnp.array([1.0])),
        x_bounds=(jnp.array([-1.2, -0.07]), jnp.array([0.6, 0.07])),
    )
    return Example(
        name="mountain_car",
        description="Mountain car rocking out of a parabolic valley (Myriad)",
        problem=problem,
        args={"power": jnp.array(0.0015), "gravity": jnp.array(0.0025)},
        N=100,
        ranges={"power": "(0, inf)", "gravity": "[0, inf)"},
    )
