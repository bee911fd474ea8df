"""The library of real-world optimal control problems.

Each module builds one problem with its default parameters; `get(name)` returns
an [`Example`][] and `reference_optima()` the CasADi + IPOPT optima on identical
transcriptions.
"""

from . import van_der_pol as _van_der_pol  # noqa: F401  (registers)
from ._example import (
    Example as Example,
    get as get,
    names as names,
    reference_optima as reference_optima,
)
