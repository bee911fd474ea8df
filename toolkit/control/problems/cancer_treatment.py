import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    # Gompertzian growth r x ln(1/x), written -r x ln(x), minus the log-kill term.
    return jnp.stack([-args["r"] * x[0] * jnp.log(x[0]) - args["delta"] * u[0] * x[0]])


def _running_cost(t, x, u, args):
    return args["a"] * x[0] ** 2 + u[0] ** 2


@register
def cancer_treatment() -> Example:
    """Chemotherapy of a Gompertzian tumour (Lenhart & Workman, Lab 5).

    x' = r x ln(1/x) - delta u x,  x(0) = 0.975,  t in [0, 20],  u >= 0,
    minimise the integral of a x² + u².

    `x` is the tumour density normalised by its carrying capacity and `u` the drug
    strength; the kill term follows Skipper's log-kill hypothesis (the cells killed
    are proportional to the tumour population).

    Parameters: `r` (tumour growth rate, 0.3), `delta` (drug efficacy, i.e. the
    magnitude of the dose administered, 0.45) and `a` (weight of the tumour against
    the side effects of the drug, 3).

    Source: S. Lenhart and J. T. Workman, *Optimal Control Applied to Biological
    Models* (2007), chapter 10, Lab 5, after K. R. Fister and J. C. Panetta, SIAM J.
    Appl. Math. 63(6), 2003; Myriad's `CancerTreatment` (its default system), whose
    values these are. The control box is the book's, u >= 0: Myriad caps u at 2
    "based on the optimal policy", which the optimum never reaches (max u ≈ 1.44).
    The state box [1e-3, 1] is Myriad's; it keeps ln x defined and is inactive
    (x = 1 is the carrying capacity, which a treated tumour never exceeds).
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.975]),
        t1=20.0,
        u_bounds=(jnp.array([0.0]), jnp.array([jnp.inf])),
        x_bounds=(jnp.array([1e-3]), jnp.array([1.0])),
    )
    return Example(
        name="cancer_treatment",
        description="Chemotherapy of a Gompertzian tumour (Lenhart & Workman, Lab 5)",
        problem=problem,
        args={"r": jnp.array(0.3), "delta": jnp.array(0.45), "a": jnp.array(3.0)},
        N=100,
        ranges={"r": "[0, inf)", "delta": "[0, inf)", "a": "[0, inf)"},
    )
