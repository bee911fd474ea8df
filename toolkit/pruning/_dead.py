import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from ..nn import AbstractNetwork
from ._layout import Layout, resolve


class DeadUnits(eqx.Module):
    """Which units of a network are dead, group by group, and where they live.

    Made by [`toolkit.pruning.dead_units`][], [`toolkit.pruning.dead_from`][] or
    [`toolkit.pruning.dead_from_masks`][]; consumed by [`toolkit.pruning.prune`][]. It
    carries the network's resolved wiring, so that the same object prunes the model,
    its `eqx.nn.State`, its gradients and its optimiser state.

    **Attributes:**

    - `masks`: a dict from group name to a boolean array, `True` where the unit is dead.
    - `peak`: a dict from group name to the largest ReLU input seen for each unit (so
        `peak <= 0` exactly where dead), or `None` when the masks were given by hand.
    """

    masks: dict[str, Bool[Array, " units"]]
    peak: dict[str, Float[Array, " units"]] | None
    layout: Layout = eqx.field(static=True)


def check_masks(layout: Layout, masks: dict) -> None:
    if not isinstance(masks, dict) or set(masks) != set(layout.names):
        got = sorted(masks) if isinstance(masks, dict) else type(masks).__name__
        raise ValueError(f"`dead` needs one mask per group {list(layout.names)}, got {got}.")
    for g in layout.groups:
        mask = masks[g.name]
        if jnp.shape(mask) != (g.size,) or jnp.result_type(mask) != jnp.bool_:
            raise ValueError(
                f"the mask of group {g.name!r} must be a boolean array of shape ({g.size},), "
                f"got {jnp.result_type(mask)}{list(jnp.shape(mask))}."
            )


def dead_from_masks(model: AbstractNetwork, masks: dict[str, ArrayLike]) -> DeadUnits:
    """Dead units given by hand.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][].
    - `masks`: a dict from every group name of `model.wiring()` to a boolean array of
        the group's size, `True` where the unit is to be removed.

    **Returns:**

    A [`toolkit.pruning.DeadUnits`][] (without activity statistics, so
    `prune(..., empty="keep_most_active")` cannot use it).

    **Raises:**

    `ValueError` if a group is missing or unknown, or a mask has the wrong shape or dtype.
    """
    layout = resolve(model)
    masks = {k: jnp.asarray(v) for k, v in masks.items()} if isinstance(masks, dict) else masks
    check_masks(layout, masks)
    return DeadUnits(masks, None, layout)


def live_fractions(dead: DeadUnits) -> dict[str, float]:
    """The fraction of live units of each group, for reporting.

    **Arguments:**

    - `dead`: a [`toolkit.pruning.DeadUnits`][].

    **Returns:**

    A dict from group name to a float in [0, 1].
    """
    return {k: float(1.0 - np.mean(np.asarray(m))) for k, m in dead.masks.items()}
