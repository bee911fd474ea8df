from collections.abc import Callable
from typing import ClassVar

import diffrax
import numpy as np
from diffrax import AbstractERK, ButcherTableau, ThirdOrderHermitePolynomialInterpolation


_rk4_tableau = ButcherTableau(
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]) - np.array([0.0, 0.0, 0.0, 1.0]),
    c=np.array([0.5, 0.5, 1.0]),
)


class RK4(AbstractERK):
    """The classical fourth-order Runge–Kutta method (stages at t, t + h/2, t + h/2,
    t + h; weights 1/6, 1/3, 1/3, 1/6), as a diffrax solver.

    diffrax ships no classical RK4; shooting transcriptions use this one by default
    so that their NLPs match the textbook (and CasADi) RK4 transcription exactly.
    Its embedded error estimate (against the Euler step of the last stage) is only
    there to satisfy diffrax's interface; use it with a constant step size.
    """

    tableau: ClassVar[ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., ThirdOrderHermitePolynomialInterpolation]] = (
        ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4


RK4.__init__.__doc__ = """**Arguments:** None"""

__all__ = ["RK4", "diffrax"]
