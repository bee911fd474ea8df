from typing import TypeVar

import equinox as eqx
import jax
import numpy as np
import optimistix as optx


class RESULTS(optx.RESULTS):  # pyright: ignore
    """Outcomes of a plan. `RESULTS[result]` is the message of a failure."""

    nonfinite_kkt = (
        "The KKT residual became non-finite (NaN or inf): the dynamics or the costs "
        "return NaN/inf at the initial guess, or the solver stopped where its steps "
        "lead to NaN/inf (e.g. the square root or logarithm of a state that turns "
        "negative). Check them, `args` and the initial guess; state bounds can keep "
        "the states where the functions are defined."
    )
    singular_kkt = (
        "The KKT Jacobian was singular (the linear solve gave a non-finite step): the "
        "problem may be degenerate at the iterate (e.g. a singular arc)."
    )
    precision_floor = (
        "The solve ran out of steps with its KKT residual below the square root of its "
        "dtype's machine epsilon but above `atol`: it stalled at the precision floor "
        "of the dtype, close to a solution. Loosen `atol` (the default follows the "
        "dtype: 1e-9 in float64, 1e-4 in float32) or plan in float64."
    )
    parameter_out_of_range = (
        "A parameter in `args` was out of its physical range or not finite (checked "
        "on traced values, under the user's `jit`, `vmap` or `grad`, with "
        "`throw=False`; call the problem's `args_check` on the concrete values to "
        "see which)."
    )
    nonzero_residual = (
        "The solver stopped at a point whose KKT residual exceeds the tolerance (for a "
        "least-squares planner: a local minimum of the residual norm that is not a "
        "KKT point). Try another initial guess or the root-finding planner."
    )


_T = TypeVar("_T")


def raise_if_failed(tree: _T, result: RESULTS) -> _T:
    """Raise `equinox.EquinoxRuntimeError` with the message of `result` if it is a
    failure; return `tree` unchanged otherwise.

    A concrete `result` (the value a compiled solve returned) is checked here, in
    Python, so the compiled solve itself holds no host callback and JAX's persistent
    compilation cache can store it. A traced one (under the user's own `jit`, `vmap`
    or `grad`, where there is no Python left to return to) gets `eqx.error_if`, which
    raises when the user's program runs.

    **Arguments:**

    - `tree`: the outputs the check guards (returned as they are).
    - `result`: a scalar, or under `vmap` batched, [`toolkit.control.RESULTS`][].

    **Returns:**

    `tree`.
    """
    value = result._value  # pyright: ignore
    if isinstance(value, jax.core.Tracer):
        return result.error_if(tree, result != RESULTS.successful)
    codes = np.asarray(value)
    failed = codes[codes != RESULTS.successful._value]  # pyright: ignore
    if failed.size:
        raise eqx.EquinoxRuntimeError(RESULTS._index_to_message[int(failed.flat[0])])  # pyright: ignore
    return tree
