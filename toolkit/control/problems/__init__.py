"""The library of real-world optimal control problems.

Each module builds one problem with its default parameters; `get(name)` returns
an [`Example`][] and `reference_optima()` the CasADi + IPOPT optima on identical
transcriptions.
"""

from . import (  # noqa: F401  (each module registers its problem)
    bacteria as _bacteria,
    cancer_treatment as _cancer_treatment,
    cart_pole as _cart_pole,
    mould_fungicide as _mould_fungicide,
    mountain_car as _mountain_car,
    pendulum as _pendulum,
    seir as _seir,
    van_der_pol as _van_der_pol,
)
from ._example import (
    Example as Example,
    get as get,
    names as names,
    reference_optima as reference_optima,
)
