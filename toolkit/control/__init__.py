"""Learning and planning in real-world optimal control.

Problems are transcribed into nonlinear programs (`Trapezoidal`, ...) whose KKT
conditions are solved by optimistix as differentiable implicit layers
(`KKTNewton`, `KKTLeastSquares`), exploiting their block-tridiagonal structure
(`BlockTridiagonal`).
"""

import importlib
from typing import TYPE_CHECKING

from . import problems as problems
from ._batch import plan_batch as plan_batch
from ._block_tridiagonal import BlockTridiagonal as BlockTridiagonal
from ._indirect import (
    ForwardBackwardSweep as ForwardBackwardSweep,
    indirect as indirect,
    IndirectSolution as IndirectSolution,
)
from ._integrators import RK4 as RK4
from ._plan import plan as plan
from ._planner.base import AbstractPlanner as AbstractPlanner
from ._planner.interior_point import InteriorPoint as InteriorPoint
from ._planner.least_squares import KKTLeastSquares as KKTLeastSquares
from ._planner.newton import KKTNewton as KKTNewton
from ._planner.semismooth_newton import SemismoothNewton as SemismoothNewton
from ._plot import plot_solution as plot_solution
from ._problem import OptimalControlProblem as OptimalControlProblem
from ._results import RESULTS as RESULTS
from ._solution import Solution as Solution
from ._transcription.base import AbstractTranscription as AbstractTranscription
from ._transcription.discrete import (
    Discrete as Discrete,
    DiscreteDynamics as DiscreteDynamics,
)
from ._transcription.hermite_simpson import HermiteSimpson as HermiteSimpson
from ._transcription.shooting import (
    MultipleShooting as MultipleShooting,
    SingleShooting as SingleShooting,
)
from ._transcription.trapezoidal import Trapezoidal as Trapezoidal


if TYPE_CHECKING:
    from . import learning as learning


def __getattr__(name: str):
    # `learning` (diffrax's solvers, optax) is imported on first use.
    if name == "learning":
        return importlib.import_module(".learning", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
