"""The library of real-world optimal control problems.

Each module builds one problem with its default parameters; `get(name)` returns
an [`Example`][] and `reference_optima()` the CasADi + IPOPT optima on identical
transcriptions.
"""

from . import (  # noqa: F401  (each module registers its problem)
    bacteria as _bacteria,
    bear_populations as _bear_populations,
    bioreactor as _bioreactor,
    cancer_treatment as _cancer_treatment,
    cart_pole as _cart_pole,
    epidemic_seirn as _epidemic_seirn,
    fish_harvest as _fish_harvest,
    glucose as _glucose,
    hiv_treatment as _hiv_treatment,
    invasive_plant as _invasive_plant,
    mould_fungicide as _mould_fungicide,
    mountain_car as _mountain_car,
    pendulum as _pendulum,
    predator_prey as _predator_prey,
    rocket_landing as _rocket_landing,
    seir as _seir,
    simple_case as _simple_case,
    simple_case_with_bounds as _simple_case_with_bounds,
    timber_harvest as _timber_harvest,
    tumour as _tumour,
    van_der_pol as _van_der_pol,
)
from ._example import (
    Example as Example,
    get as get,
    names as names,
    ParameterCheck as ParameterCheck,
    reference_optima as reference_optima,
)
