import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([-0.5 * x[0] ** 2 + args["C"] * u[0]])


def _running_cost(t, x, u, args):
    # The book maximises the integral of A x - B u²; its negative is minimised.
    return args["B"] * u[0] ** 2 - args["A"] * x[0]


@register
def simple_case() -> Example:
    """The introductory example of Lenhart & Workman's Lab 1.

    x' = -x² / 2 + C u,  x(0) = 1,  t in [0, 1],  u unbounded;
    maximise the integral of A x - B u², i.e. minimise the integral of B u² - A x.

    A state that decays quadratically is pushed up by the control, whose use is
    penalised: the optimum trades the reward A x for the cost B u².

    Parameters: `A` (weight of the state in the pay-off, 1; the book asks A >= 0),
    `B` (weight of the cost of the control, 1; B > 0) and `C` (strength of the
    control, 4; any real: its sign only flips that of the optimal u, and C = 0 leaves
    the state uncontrolled, so it has no range). x(0) = 1 satisfies the book's
    condition x(0) > -2.

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 5, Lab 1, default values A = 1, B = 1, C = 4, x0 = 1,
    T = 1; Myriad's `SimpleCase`, which has the same values and no bounds.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([1.0]),
        t1=1.0,
        u_bounds=(jnp.array([-jnp.inf]), jnp.array([jnp.inf])),
    )
    return Example(
        name="simple_case",
        description="Introductory scalar problem x' = -x²/2 + C u (Lenhart & Workman, Lab 1)",
        problem=problem,
        args={"A": jnp.array(1.0), "B": jnp.array(1.0), "C": jnp.array(4.0)},
        N=100,
        ranges={"A": "[0, inf)", "B": "(0, inf)", "C": "(-inf, inf)"},
    )
