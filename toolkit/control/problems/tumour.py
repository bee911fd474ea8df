import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    p, q = x[0], x[1]
    xi, b, d, G, mu = (args[k] for k in ("xi", "b", "d", "G", "mu"))
    return jnp.stack(
        [
            -xi * p * jnp.log(p / q),
            q * (b - (mu + d * p ** (2 / 3) + G * u[0])),
            u[0] + _A / _T,
        ]
    )


def _running_cost(t, x, u, args):
    return jnp.zeros((), x.dtype)


def _terminal_cost(xT, args):
    return xT[0]


# The uncontrolled equilibrium p = q = ((b - mu) / d)^(3/2) at the default parameters
# (mm³); the initial state and the state box are fixed numbers computed from it.
_P_BAR = ((5.85 - 0.02) / 0.00873) ** 1.5
# The total dose A, the maximal dose rate a and the final time T.
_A, _a, _T = 15.0, 75.0, 1.2


@register
def tumour() -> Example:
    """Anti-angiogenic therapy of a tumour (Betts' tumour anti-angiogenesis example).

    p' = -xi p ln(p / q),  q' = q (b - (mu + d p^(2/3) + G u)),
    p(0) = p̄ / 2, q(0) = q̄ / 4 with p̄ = q̄ = ((b - mu) / d)^(3/2) ≈ 17258,
    t in [0, T], T = 1.2 days, 0 <= u <= a = 75, total dose integral of u <= A = 15;
    minimise p(T).

    `p` is the volume of the tumour (mm³) and `q` its carrying capacity, set by the
    vascular endothelial cells that line the blood vessels the tumour grows; the
    tumour grows (Gompertz) while p < q. `u` is the dose rate of an angiogenic
    inhibitor, which kills endothelial cells. With no cost on u the problem is
    linear in the control; on the grid the optimum gives the full dose rate a until
    the total dose A is spent (t = A / a = 0.2), then none.

    The total dose is usually the third state y' = u, y(0) = 0, with the box
    0 <= y <= A (Betts; Myriad). Imposed at every node, that box is active at every
    node after the dose is spent, where u = 0 is at its bound too: the active
    constraints are linearly dependent, IPOPT stops with "search direction becomes
    too small" and KKTNewton does not converge. The third state here is instead
    w = y + (A / T) t, the dose so far plus a nominal dose given at the constant rate
    A / T: w' = u + A / T, w(0) = 0, and w <= 2 A at every node. w increases
    strictly, so the bound can only be active at t = T, where it is y(T) <= A.

    Parameters: `xi` (tumour growth rate, 0.084 per day), `b` (birth rate of
    endothelial cells stimulated by the tumour, 5.85 per day), `d` (their death rate
    from inhibition by the tumour, 0.00873 per mm² per day), `G` (kill rate of the
    inhibitor, 0.15 kg per mg of dose per day) and `mu` (natural death rate of
    endothelial cells, 0.02 per day). p̄, and so x(0) and the box, are computed from
    the default parameters and do not follow changes of `b`, `d` or `mu`; a, A and
    T enter the bounds and the dynamics of w, so they are not parameters.

    Source: J. T. Betts, *Practical Methods for Optimal Control Using Nonlinear
    Programming* (3rd ed., 2020), example 10.70 ("tumor anti-angiogenesis"), after
    U. Ledzewicz and H. Schättler (2007); Myriad's `Tumour`, whose values these are.
    The final time is free in Betts (its optimum is close to 1.2); as in Myriad it is
    fixed here at T = 1.2 days. Myriad's box p, q in [0, p̄] is used with the lower
    bounds raised from 0 to 1, where ln(p / q) and p^(2/3) stay smooth (inactive:
    p, q > 700 on the optimum); the upper bound p̄ is inactive too.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        terminal_cost=_terminal_cost,
        x0=jnp.array([_P_BAR / 2, _P_BAR / 4, 0.0]),
        t1=_T,
        u_bounds=(jnp.array([0.0]), jnp.array([_a])),
        x_bounds=(jnp.array([1.0, 1.0, 0.0]), jnp.array([_P_BAR, _P_BAR, 2 * _A])),
    )
    return Example(
        name="tumour",
        description="Anti-angiogenic therapy of a tumour, fixed time (Betts; Ledzewicz-Schättler)",
        problem=problem,
        args={
            "xi": jnp.array(0.084),
            "b": jnp.array(5.85),
            "d": jnp.array(0.00873),
            "G": jnp.array(0.15),
            "mu": jnp.array(0.02),
        },
        N=100,
        ranges={
            "xi": "[0, inf)",
            "b": "[0, inf)",
            "d": "[0, inf)",
            "G": "[0, inf)",
            "mu": "[0, inf)",
        },
    )
