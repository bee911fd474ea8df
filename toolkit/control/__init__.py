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
from ._discrete_dynamics import DiscreteDynamics as DiscreteDynamics
from ._indirect import (
    ForwardBackwardSweep as ForwardBackwardSweep,
    indirect as indirect,
    IndirectSolution as IndirectSolution,
)
from ._plan import plan as plan
from ._planner.barrier import BarrierPath as BarrierPath
from ._planner.base import AbstractPlanner as AbstractPlanner
from ._planner.fallback import Fallback as Fallback
from ._planner.gauss_newton import GaussNewton as GaussNewton
from ._planner.interior_point import InteriorPointRootFinder as InteriorPointRootFinder
from ._planner.newton import Newton as Newton
from ._planner.nonmonotone import NonmonotoneTrustRegion as NonmonotoneTrustRegion
from ._planner.presets import KKTLeastSquares as KKTLeastSquares, KKTNewton as KKTNewton
from ._planner.restart import Restart as Restart
from ._planner.semismooth_newton import SemismoothNewtonRootFinder as SemismoothNewtonRootFinder
from ._plot import plot_solution as plot_solution
from ._problem import OptimalControlProblem as OptimalControlProblem
from ._results import RESULTS as RESULTS
from ._solution import Solution as Solution
from ._transcription.base import AbstractTranscription as AbstractTranscription
from ._transcription.discrete import Discrete as Discrete
from ._transcription.hermite_simpson import HermiteSimpson as HermiteSimpson
from ._transcription.trapezoidal import Trapezoidal as Trapezoidal


if TYPE_CHECKING:
    from . import learning as learning
    from ._integrators import RK4 as RK4
    from ._transcription.shooting import (
        MultipleShooting as MultipleShooting,
        SingleShooting as SingleShooting,
    )

# What needs diffrax (the shooting transcriptions and their RK4; `learning`, with
# optax too) is imported on first use: a plan on a collocation transcription does not
# wait for it.
_LAZY = {
    "learning": (".learning", None),
    "RK4": ("._integrators", "RK4"),
    "MultipleShooting": ("._transcription.shooting", "MultipleShooting"),
    "SingleShooting": ("._transcription.shooting", "SingleShooting"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name, __name__)
        return module if attribute is None else getattr(module, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
