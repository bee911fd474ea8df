import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    g, m, length, thrust = args["g"], args["m"], args["length"], args["thrust"]
    theta, omega = x[4], x[5]
    force = thrust * u[0]
    inertia = m * length**2 / 12  # a uniform rod
    return jnp.stack(
        [
            x[1],
            force * jnp.sin(u[1] + theta) / m,
            x[3],
            force * jnp.cos(u[1] + theta) / m - g,
            omega,
            -length / 2 * force * jnp.sin(u[1]) / inertia,
        ]
    )


def _running_cost(t, x, u, args):
    return u[0] ** 2 + u[1] ** 2 + 2 * x[5] ** 2


_DEGREE = jnp.pi / 180


@register
def rocket_landing() -> Example:
    """Landing a falling rocket upright, a Starship-like belly flop (Myriad's `RocketLanding`).

    x'' = F u_0 sin(u_1 + theta) / m,   y'' = F u_0 cos(u_1 + theta) / m - g,
    theta'' = -(l / 2) F u_0 sin(u_1) / I,  I = m l² / 12 (a uniform rod);
    state (x, x', y, y', theta, theta'), from (0, 0, 1000, -80, -pi / 2, 0) (falling
    at 80 m/s, lying horizontal) to (0, 0, 0, 0, 0, 0) (landed upright) at T = 16 s;
    0.4 <= u_0 <= 1 (throttle, a fraction of the maximal thrust F), |u_1| <= 20°
    (the gimbal angle of the engine); minimise the integral of
    u_0² + u_1² + 2 theta'².

    The engine cannot be switched off (u_0 >= 0.4) and at minimal throttle its
    acceleration, 8.84 m/s², is just below g: the rocket must time its flip to
    upright and its braking burn.

    Parameters: `g` (gravity, 9.8 m/s²), `m` (mass, 100000 kg), `length` (length of
    the rocket, 50 m) and `thrust` (maximal thrust F, 2210 kN).

    Source: Myriad's `RocketLanding` (Howe et al.), after T. Godden's "How SpaceX
    lands Starship (sort of)"; all values, bounds and the cost are Myriad's, as is
    the fixed final time T = 16 s (the landing time would naturally be free; the API
    has a fixed t1, which can be differentiated). Myriad's docstring writes a
    different torque equation; its code, followed here, is the rigid-body one. The
    state box is Myriad's: x, x', y', theta' in [-250, 150], y in [0, 1000], theta in
    [-2 pi, 2 pi].
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.0, 0.0, 1000.0, -80.0, -jnp.pi / 2, 0.0]),
        t1=16.0,
        xT=jnp.zeros(6),
        u_bounds=(jnp.array([0.4, -20 * _DEGREE]), jnp.array([1.0, 20 * _DEGREE])),
        x_bounds=(
            jnp.array([-250.0, -250.0, 0.0, -250.0, -2 * jnp.pi, -250.0]),
            jnp.array([150.0, 150.0, 1000.0, 150.0, 2 * jnp.pi, 150.0]),
        ),
    )
    return Example(
        name="rocket_landing",
        description="Landing a falling rocket upright, fixed time (Myriad)",
        problem=problem,
        args={
            "g": jnp.array(9.8),
            "m": jnp.array(100000.0),
            "length": jnp.array(50.0),
            "thrust": jnp.array(2210000.0),
        },
        N=100,
        ranges={"g": "[0, inf)", "m": "(0, inf)", "length": "(0, inf)", "thrust": "(0, inf)"},
    )
