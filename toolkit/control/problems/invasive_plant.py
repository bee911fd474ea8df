import jax.numpy as jnp

from .._discrete_dynamics import DiscreteDynamics
from .._problem import OptimalControlProblem
from ._example import Example, register


def _map(t, r, u, args):
    k, eps = args["k"], args["eps"]
    return (r + k * r / (eps + r)) * (1 - u)


def _running_cost(t, r, u, args):
    return args["B"] * jnp.sum(u**2)


def _terminal_cost(r, args):
    return jnp.sum(r)


@register
def invasive_plant() -> Example:
    """Removing an invasive plant from a main focus and four satellites (Lenhart &
    Workman, Lab 14): a discrete-time problem.

    r_{j,t+1} = (r_{j,t} + k r_{j,t} / (eps + r_{j,t})) (1 - u_{j,t}),   j = 1..5,
    t = 0..T-1, r_{j,0} = rho_j with rho = (0.5, 1, 1.5, 2, 10), T = 10 years,
    0 <= u_{j,t} <= 1; minimise sum_j [r_{j,T} + B sum_{t=0}^{T-1} u_{j,t}²].

    The invader occupies five circular patches: a main focus (j = 5, radius 10) and
    four small satellites. r_{j,t} is the radius of patch j in year t; every year the
    radius grows by k r / (eps + r), close to k once the patch is established and
    vanishing with it (so that a patch can be eradicated), and then a fraction
    u_{j,t} of it is removed. The objective weighs the final radii against the
    quadratic cost of the removal effort. Planned with `control.Discrete(10)`: the
    dynamics are the annual map, wrapped in `control.DiscreteDynamics(..., steps=10)`,
    on the grid t = 0, 1, ..., 10 years.

    At the default values the optimum leaves every patch alone for nine years and
    removes it entirely in the last (u_{j,9} = 1, all other u = 0; cost 5 B = 5):
    removing a patch at any time costs B, less than the final radius it would
    otherwise leave (> 9). The earlier controls then sit on their lower bound with a
    zero multiplier (a degenerate optimum). With a larger weight (B = 10, say) the
    removal is spread over the years and no patch is eradicated.

    Parameters: `B` (weight of the removal effort, 1), `k` (spread rate, the yearly
    growth of an established radius, 1) and `eps` (the radius below which growth
    slows, 0.01).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 24, Lab 14, after A. J. Whittle, S. Lenhart and
    L. J. Gross, Mathematical Biosciences and Engineering 4 (2007) and M. E. Moody
    and R. N. Mack, Journal of Applied Ecology 25 (1988). The lab replaces the
    original payoff sum_j r_{j,T}² by the linear sum_j r_{j,T} (so that the adjoint
    ends at lambda_{j,T} = 1, which the forward-backward sweep handles); this is the
    lab's problem, with its rho and eps, and Myriad's `InvasivePlant` values of
    B = k = 1 and T = 10. Myriad keeps the final radii out of its `cost` (it only
    sets the adjoint's final value to 1 for its sweep, with `terminal_cost=False`),
    so a direct method on Myriad's definition would minimise the effort alone and
    never remove anything; here sum_j r_{j,T} is the terminal cost, as in the book.
    """
    problem = OptimalControlProblem(
        dynamics=DiscreteDynamics(_map, steps=10),
        running_cost=_running_cost,
        x0=jnp.array([0.5, 1.0, 1.5, 2.0, 10.0]),
        t1=10.0,
        terminal_cost=_terminal_cost,
        u_bounds=(jnp.zeros(5), jnp.ones(5)),
    )
    return Example(
        name="invasive_plant",
        description="Removing an invasive plant, yearly (Lenhart & Workman, Lab 14; discrete)",
        problem=problem,
        args={"B": jnp.array(1.0), "k": jnp.array(1.0), "eps": jnp.array(0.01)},
        N=10,
        ranges={"B": "[0, inf)", "k": "[0, inf)", "eps": "(0, inf)"},
    )
