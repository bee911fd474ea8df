import jax.numpy as jnp

from .._problem import OptimalControlProblem
from ._example import Example, register


def _dynamics(t, x, u, args):
    x1, x2 = x
    return jnp.stack([args["mu"] * (1.0 - x2**2) * x1 - x2 + u[0], x1])


def _running_cost(t, x, u, args):
    return x[0] ** 2 + x[1] ** 2 + u[0] ** 2


@register
def van_der_pol() -> Example:
    """Van der Pol oscillator, driven to rest (the CasADi direct-collocation example).

    x1' = mu (1 - x2²) x1 - x2 + u,  x2' = x1,  x(0) = (0, 1),  t in [0, 10],
    u in [-0.3, 1], minimise the integral of x1² + x2² + u².

    Parameters: `mu` (nonlinear damping, default 1; mu >= 0, mu = 0 being the
    harmonic oscillator).
    Source: CasADi examples (`direct_collocation.py`); Myriad's `VanDerPol` system.
    """
    problem = OptimalControlProblem(
        dynamics=_dynamics,
        running_cost=_running_cost,
        x0=jnp.array([0.0, 1.0]),
        t1=10.0,
        u_bounds=(jnp.array([-0.3]), jnp.array([1.0])),
    )
    return Example(
        name="van_der_pol",
        description="Van der Pol oscillator driven to rest, |u| box [-0.3, 1]",
        problem=problem,
        args={"mu": jnp.array(1.0)},
        N=100,
        ranges={"mu": "[0, inf)"},
    )
