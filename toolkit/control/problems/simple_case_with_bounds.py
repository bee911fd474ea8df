import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    return jnp.stack([-0.5 * x[0] ** 2 + args["C"] * u[0]])


def _running_cost(t, x, u, args):
    # The book maximises the integral of A x - u²; its negative is minimised.
    return u[0] ** 2 - args["A"] * x[0]


@register
def simple_case_with_bounds() -> Example:
    """The introductory example with a bounded control (Lenhart & Workman, Lab 4).

    x' = -x² / 2 + C u,  x(0) = 1,  t in [0, 1],  M1 <= u <= M2 with M1 = -1, M2 = 2;
    maximise the integral of A x - u², i.e. minimise the integral of u² - A x.

    Lab 1's problem (`simple_case`, with B = 1) with a control box: the optimal
    control is the projection of the unconstrained characterisation u = C lambda / 2
    onto [M1, M2]. At the book's default values the box is not reached (the optimum
    has 0 < u < 1 and 1 <= x <= 2.01), so the optimum is `simple_case`'s; it becomes
    active for a larger reward, e.g. `A = 3`, where u = M2 on an initial interval.

    Parameters: `A` (weight of the state in the pay-off, 1; A >= 0) and `C`
    (strength of the control, 4; any real: C < 0 reverses the effect of the control
    and C = 0 leaves the state uncontrolled, both well posed, so it has no range).
    The bounds M1 = -1 and M2 = 2 are the control box (`u_bounds`), not parameters.

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 9, Lab 4, default values A = 1, C = 4, M1 = -1, M2 = 2,
    x0 = 1, T = 1; Myriad's `SimpleCaseWithBounds`, which has the same values. Myriad
    adds a state box [0, 3] "based on observation of the true optimal trajectory";
    the book has none, and none is imposed here (Myriad's box would be inactive).
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([1.0]),
        t1=1.0,
        u_bounds=(jnp.array([-1.0]), jnp.array([2.0])),
    )
    return Example(
        name="simple_case_with_bounds",
        description="Introductory scalar problem with a control box (Lenhart & Workman, Lab 4)",
        problem=problem,
        args={"A": jnp.array(1.0), "C": jnp.array(4.0)},
        N=100,
        ranges={"A": "[0, inf)", "C": "(-inf, inf)"},
    )
