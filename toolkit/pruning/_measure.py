import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from ..nn import AbstractNetwork


def count_params(model: PyTree) -> int:
    """The number of trainable parameters: the entries of every floating-point array
    of `model`, not counting the initial states that an `eqx.nn.StateIndex` may hold.

    **Arguments:**

    - `model`: any pytree, typically a network.

    **Returns:**

    An int.
    """
    leaves = jtu.tree_leaves(model, is_leaf=lambda x: isinstance(x, eqx.nn.StateIndex))
    return sum(math.prod(x.shape) for x in leaves if eqx.is_inexact_array(x))


def widths(model: AbstractNetwork) -> dict[str, int]:
    """The number of units of every group of a network.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][].

    **Returns:**

    A dict from group name to its number of units.
    """
    return {name: group.size for name, group in model.wiring().items()}


def _primitive_flops(eqn) -> int:
    name = eqn.primitive.name
    if name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        out = eqn.outvars[0].aval.shape
        return 2 * math.prod(out) * math.prod(lhs[d] for d in contract)
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out = eqn.outvars[0].aval.shape
        out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
        return 2 * math.prod(out) * math.prod(rhs) // rhs[out_feature_dim]
    return 0


def _jaxpr_flops(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += _primitive_flops(eqn)
        for param in eqn.params.values():
            for sub in _as_jaxprs(param):
                total += _jaxpr_flops(sub)
    return total


def _as_jaxprs(param):
    if isinstance(param, jax.extend.core.ClosedJaxpr):
        return [param.jaxpr]
    if isinstance(param, jax.extend.core.Jaxpr):
        return [param]
    if isinstance(param, (tuple, list)):
        return [j for p in param for j in _as_jaxprs(p)]
    return []


def flops(model: AbstractNetwork, state: eqx.nn.State, x: Array) -> int:
    """The floating-point operations of one forward pass on one example, counting the
    multiply-adds of matrix products and convolutions (2 each), as is usual; the
    elementwise work of biases, BatchNorm and ReLU is not counted.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][].
    - `state`: its `eqx.nn.State`.
    - `x`: one example (an array or a `jax.ShapeDtypeStruct`).

    **Returns:**

    An int.
    """
    model = eqx.nn.inference_mode(model, True)
    x = jax.ShapeDtypeStruct(jnp.shape(x), x.dtype)
    jaxpr = jax.make_jaxpr(lambda x: model(x, state)[0])(x)
    return _jaxpr_flops(jaxpr.jaxpr)
