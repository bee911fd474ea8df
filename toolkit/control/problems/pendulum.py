import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    g, m, length = args["g"], args["m"], args["length"]
    theta, omega = x[0], x[1]
    return jnp.stack([omega, -3 * g / (2 * length) * jnp.sin(theta) + 3 * u[0] / (m * length**2)])


def _running_cost(t, x, u, args):
    return (x[0] - jnp.pi) ** 2 + 0.1 * x[1] ** 2 + 0.001 * u[0] ** 2


@register
def pendulum() -> Example:
    """Pendulum swing-up with a weak motor (Myriad's `Pendulum`, after OpenAI gym).

    theta'' = -3 g / (2 l) sin(theta) + 3 u / (m l²)   (a uniform rod on a pivot),
    theta = 0 hanging down; x = (theta, theta'), x(0) = (0, 0), x(4) = (pi, 0),
    |u| <= 2, |theta'| <= 8; minimise the integral of
    (theta - pi)² + 0.1 theta'² + 0.001 u²  over t in [0, 4].

    The torque is weaker than gravity (3 u / (m l²) <= 6 < 3 g / (2 l) = 15), so the
    pendulum must be pumped up in a few swings.

    Parameters: `g` (gravity, 10), `m` (mass, 1) and `length` (length, 1), gym's values.

    Source: Myriad's `Pendulum` (Howe et al.), inspired by OpenAI gym's
    `Pendulum-v0`; torque and speed limits 2 and 8, the cost weights 0.1 and 0.001
    and x(0), x(T) are Myriad's. Departures from Myriad's code, each a bug there or
    a non-smoothness:

    - Myriad multiplies theta'' (not theta') by 0.05, gym's Euler time step folded
      into the vector field; the physical pendulum is used here.
    - Myriad's cost angle_normalize(theta)² penalises distance from the hanging
      position, while its x(T) is upright and its docstring (like gym, whose theta is
      0 upright) penalises distance from upright; (theta - pi)² is used here.
    - angle_normalize, the clipping of u and theta' inside the dynamics and the box
      theta in [-pi, pi] are dropped: they are non-smooth, and the target pi sits on
      that box, which would be weakly active wherever the pendulum is balanced.
    - T = 4 instead of 15: Myriad's 15 time units are about 15 / sqrt(20) ≈ 3.4 s of
      physical time because of the 0.05 factor. The swing-up takes about 4 s
      with |u| <= 2 (T = 3 is not enough); a longer horizon only adds balancing on
      the unstable upright equilibrium, where errors grow like exp(sqrt(15) t) and
      single shooting becomes hopelessly ill-conditioned.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.0, 0.0]),
        t1=4.0,
        xT=jnp.array([jnp.pi, 0.0]),
        u_bounds=(jnp.array([-2.0]), jnp.array([2.0])),
        x_bounds=(jnp.array([-jnp.inf, -8.0]), jnp.array([jnp.inf, 8.0])),
    )
    return Example(
        name="pendulum",
        description="Pendulum swing-up with a weak motor (Myriad, after gym)",
        problem=problem,
        args={"g": jnp.array(10.0), "m": jnp.array(1.0), "length": jnp.array(1.0)},
        N=100,
        ranges={"g": "[0, inf)", "m": "(0, inf)", "length": "(0, inf)"},
    )
