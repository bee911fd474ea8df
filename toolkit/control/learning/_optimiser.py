import jax
import optax
from jaxtyping import PyTree


def _label(path, _) -> str:
    first = path[0] if path else None
    in_args = isinstance(first, jax.tree_util.GetAttrKey) and first.name == "args"
    return "args" if in_args else "dynamics"


def split_optimiser(
    dynamics: optax.GradientTransformation, args: optax.GradientTransformation
) -> optax.GradientTransformation:
    """One optimiser for a [`toolkit.control.learning.Model`][] that updates its
    `dynamics` (a neural vector field's weights) with one optax transformation and
    its `args` (the known part's physical parameters) with another.

    A hybrid model needs both: a handful of physical parameters each move the whole
    trajectory, so the step that trains an MLP well (Adam at 1e-2) makes them
    oscillate, and with them the MLP, into a model worse than the one it started
    from (hiv_treatment's hybrid model, for one). At a tenth of the MLP's rate, and
    log-scaled ([`toolkit.control.learning.log_scaled`][]), they converge.

    **Arguments:**

    - `dynamics`: the transformation of every learned array outside `model.args`.
    - `args`: the transformation of the learned arrays inside `model.args`.

    **Returns:**

    An `optax.GradientTransformation` to `init` on the learned part of a model
    (e.g. `eqx.filter(model, trainable(model))`) and to pass to
    [`toolkit.control.learning.fit`][] or
    [`toolkit.control.learning.fit_end_to_end`][].
    """

    def labels(params: PyTree) -> PyTree[str]:
        return jax.tree_util.tree_map_with_path(_label, params)

    return optax.multi_transform({"dynamics": dynamics, "args": args}, labels)
