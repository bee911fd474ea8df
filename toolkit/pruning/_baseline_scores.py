"""Per-unit scores for the structured-pruning baselines: norms of the slices that a
unit owns, and the saliencies of a multiplicative gate on its output."""

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from ..nn import AbstractNetwork
from ._layout import get_at, LeafSlot, resolve


Role = Literal["producer", "consumer", "bn_scale"]


def _role(model, slot: LeafSlot) -> Role | None:
    name = slot.path[-1]
    if not isinstance(name, jtu.GetAttrKey) or name.name != "weight":
        return None
    layer = get_at(model, slot.path[:-1])
    if isinstance(layer, eqx.nn.BatchNorm):
        return "bn_scale"
    if isinstance(layer, (eqx.nn.Linear, eqx.nn.Conv)):
        # A layer's weight is (out, in, ...): its rows produce a group, its columns
        # consume one.
        return "producer" if slot.axis == 0 else "consumer"
    return None


def slots_of(model: AbstractNetwork, role: Role) -> dict[str, tuple[LeafSlot, ...]]:
    """The leaf slots of each group that play `role`."""
    layout = resolve(model)
    return {g.name: tuple(s for s in g.leaves if _role(model, s) == role) for g in layout.groups}


def per_unit(array: Array, axis: int, block: int, size: int) -> Float[Array, "units rest"]:
    """The slices of `array` owned by each of `size` units, one row per unit."""
    # Unit i owns the entries i * block, ..., (i + 1) * block - 1 along `axis`.
    return jnp.moveaxis(array, axis, 0).reshape(size, -1)


def slice_norms(
    model: AbstractNetwork, role: Role, reduce: Callable[[Array], Array]
) -> dict[str, Float[Array, " units"]]:
    """For every group, the sum over its slots of role `role` of `reduce` applied to
    each unit's slice (rows: one per unit). A group without such slots scores zero."""
    widths = resolve(model).widths
    out = {}
    for name, slots in slots_of(model, role).items():
        total = jnp.zeros(widths[name], jnp.result_type(float))
        for s in slots:
            rows = per_unit(get_at(model, s.path), s.axis, s.block, widths[name])
            total = total + reduce(rows).astype(total.dtype)
        out[name] = total
    return out


def gated(model: AbstractNetwork, gates: dict[str, Array]) -> AbstractNetwork:
    """`model` with the output of every unit multiplied by its gate.

    The gate scales the unit's slice of every consumer (the columns of the next
    layers that read it), which is the same as scaling the unit's output: so a gate of
    zero removes the unit, and a residual stream's channel has one gate for all the
    layers that read it.
    """
    widths = resolve(model).widths
    table: dict = {}
    for name, slots in slots_of(model, "consumer").items():
        for s in slots:
            table.setdefault(s.path, []).append((s.axis, s.block, name))

    def scale(path, leaf):
        for axis, block, name in table.get(tuple(path), ()):
            g = jnp.repeat(gates[name].astype(leaf.dtype), block)
            shape = [1] * leaf.ndim
            shape[axis] = widths[name] * block
            leaf = leaf * g.reshape(shape)
        return leaf

    return jtu.tree_map_with_path(scale, model)


def ones_gates(model: AbstractNetwork, dtype) -> dict[str, Array]:
    return {k: jnp.ones(v, dtype) for k, v in resolve(model).widths.items()}


def gate_loss(model, state, batch, loss_fn) -> Callable[[dict[str, Array]], Array]:
    """The loss on `batch` as a function of the unit gates."""
    xs, ys = batch

    def fn(gates):
        return loss_fn(gated(model, gates), state, xs, ys)[0]

    return fn


def gate_hvp(fn, gates, vector):
    """The Hessian of `fn` at `gates` times `vector` (forward over reverse)."""
    return jax.jvp(jax.grad(fn), (gates,), (vector,))[1]
