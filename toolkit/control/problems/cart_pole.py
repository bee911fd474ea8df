import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    m1, m2, length, g = args["m1"], args["m2"], args["length"], args["g"]
    q2, dq1, dq2 = x[1], x[2], x[3]
    s, c = jnp.sin(q2), jnp.cos(q2)
    den = m1 + m2 * s**2
    ddq1 = (length * m2 * s * dq2**2 + u[0] + m2 * g * c * s) / den
    ddq2 = -(length * m2 * c * s * dq2**2 + u[0] * c + (m1 + m2) * g * s) / (length * den)
    return jnp.stack([dq1, dq2, ddq1, ddq2])


def _running_cost(t, x, u, args):
    return u[0] ** 2


@register
def cart_pole() -> Example:
    """Cart-pole swing-up (Kelly 2017, section 6).

    State x = (q1, q2, q1', q2'): cart position, pole angle (0 hanging down, pi
    upright) and their rates; control u: the force on the cart. With s = sin q2,
    c = cos q2,

    q1'' = (l m2 s q2'² + u + m2 g c s) / (m1 + m2 s²),
    q2'' = -(l m2 c s q2'² + u c + (m1 + m2) g s) / (l (m1 + m2 s²)),

    x(0) = 0, x(2) = (d, pi, 0, 0) with d = 1, |u| <= 20, |q1| <= 2; minimise the
    integral of u² over t in [0, 2].

    Parameters: `m1` (cart mass, 1 kg), `m2` (pole mass, 0.3 kg, a point mass at the
    tip of a massless rod), `length` (pole length, 0.5 m) and `g` (gravity, 9.81
    m/s²).

    Source: M. Kelly, "An introduction to trajectory optimization: how to do your
    own direct collocation", SIAM Review 59(4), 2017, eqs. (6.1)-(6.9) and Table 3;
    Myriad's `CartPole`. Myriad's code drops the factor sin q2 from the q2'² term of
    q2'' (its docstring has it); Kelly's equations are used. The state box is
    Myriad's: Kelly's rail |q1| <= 2 plus |q2| <= 2 pi, |q1'| <= 5, |q2'| <= 10
    "observed from the optimal plot", all inactive at the optimum.

    The problem has several local optima. From the default initial guess the cart
    overshoots to q1 ≈ 1.18 (trapezoidal, N = 100: cost 58.897); a slightly cheaper
    one backs up to q1 ≈ -0.1 first (58.123), and one that swings the pole the other
    way costs about 304.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.zeros(4),
        t1=2.0,
        xT=jnp.array([1.0, jnp.pi, 0.0, 0.0]),
        u_bounds=(jnp.array([-20.0]), jnp.array([20.0])),
        x_bounds=(
            jnp.array([-2.0, -2 * jnp.pi, -5.0, -10.0]),
            jnp.array([2.0, 2 * jnp.pi, 5.0, 10.0]),
        ),
    )
    return Example(
        name="cart_pole",
        description="Cart-pole swing-up in 2 s, minimum force squared (Kelly 2017)",
        problem=problem,
        args={
            "m1": jnp.array(1.0),
            "m2": jnp.array(0.3),
            "length": jnp.array(0.5),
            "g": jnp.array(9.81),
        },
        N=100,
        ranges={"m1": "(0, inf)", "m2": "(0, inf)", "length": "(0, inf)", "g": "[0, inf)"},
    )
