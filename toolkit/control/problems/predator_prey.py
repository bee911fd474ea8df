import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


# The control bound M and the total dose B: the bounds of u and the initial slack
# M T - B below must change with them.
_M, _B, _T = 1.0, 5.0, 10.0


def _dynamics(t, x, u, args):
    pest, predator = x[0], x[1]
    return jnp.stack(
        [
            (1 - predator) * pest - args["d_1"] * pest * u[0],
            (pest - 1) * predator - args["d_2"] * predator * u[0],
            u[0] - _M,
        ]
    )


def _running_cost(t, x, u, args):
    return args["A"] / 2 * u[0] ** 2


def _terminal_cost(xT, args):
    return xT[0]


@register
def predator_prey() -> Example:
    """A pesticide against a pest kept in check by a predator (Lenhart & Workman, Lab 13).

    N' = (1 - P) N - d_1 N u,  P' = (N - 1) P - d_2 P u,
    N(0) = 10, P(0) = 1, t in [0, T], T = 10, 0 <= u <= M with M = 1,
    with the total dose fixed: the integral of u over [0, T] equals B = 5;
    minimise N(T) + (A / 2) integral of u².

    N is the pest (the prey) and P its predator, in a scaled Lotka-Volterra model;
    the pesticide `u` kills both, in proportion d_1 and d_2. Both populations
    swing widely: the predator multiplies on the abundant pest, which crashes
    (N ≈ 0.001 from t ≈ 1.5), then starves and the pest recovers towards t = T.

    The fixed total dose (an isoperimetric constraint) is usually a third state,
    z' = u, z(0) = 0, z(T) = B (Lenhart & Workman; Myriad). The API fixes either the
    whole final state or none of it, so the third state here is the slack
    s(t) = M (T - t) - (B - z(t)), the dose that could still be given at the full
    rate minus the dose still to be given: s' = u - M <= 0, s(0) = M T - B = 5, and
    the state bound s >= 0 at every node is s(T) >= 0, i.e. z(T) >= B, because s
    never increases (on the grid too). At the optimum this holds with equality: the
    pesticide costs more than it gains (without the constraint the optimum uses a
    total dose of 0.09), so this is the problem with z(T) = B exactly. The box N, P
    in [0, 11] is Myriad's and inactive.

    The fast crash of the pest makes the default grid coarse: the trapezoidal
    optimum at N = 100 (1.42993) is 4.5% below the continuous one (about 1.4973,
    which Hermite-Simpson gets within 0.05% at N = 100 and the trapezoid at N = 800).

    Parameters: `d_1` (kill rate of the pesticide on the pest, 0.1), `d_2` (on the
    predator, 0.1) and `A` (weight of the cost of the pesticide, 1). M = 1, B = 5 and
    T = 10 enter the bounds and the initial slack, so they are not parameters.

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), Lab 13, after B. S. Goh, G. Leitmann and T. L. Vincent, Math.
    Biosci. 19 (1974); Myriad's `PredatorPrey`, whose values (those of the lab) these
    are; Myriad imposes z(T) = B through its (possibly partial) final state.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        terminal_cost=_terminal_cost,
        x0=jnp.array([10.0, 1.0, _M * _T - _B]),
        t1=_T,
        u_bounds=(jnp.array([0.0]), jnp.array([_M])),
        x_bounds=(jnp.zeros(3), jnp.array([11.0, 11.0, jnp.inf])),
    )
    return Example(
        name="predator_prey",
        description="Pesticide against a pest and its predator, fixed total dose (L & W, Lab 13)",
        problem=problem,
        args={"d_1": jnp.array(0.1), "d_2": jnp.array(0.1), "A": jnp.array(1.0)},
        N=100,
        ranges={"d_1": "[0, inf)", "d_2": "[0, inf)", "A": "[0, inf)"},
    )
