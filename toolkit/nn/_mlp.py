from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ._base import AbstractNetwork, check_example, make_norm, normalise, PreActivations
from ._wiring import Group, inputs_of, norm_of, outputs_of


def _layer(i: int):
    return lambda m: m.layers[i]


def _norm(i: int):
    return lambda m: m.norms[i]


class MLP(AbstractNetwork):
    """A multilayer perceptron with ReLU hidden layers, optionally batch-normalised
    (linear → BatchNorm → ReLU).

    Its groups are named `"hidden.0"`, `"hidden.1"`, ...: the units of each hidden
    layer.
    """

    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.BatchNorm | None, ...]

    def __init__(
        self,
        in_size: int,
        out_size: int,
        widths: Sequence[int],
        batch_norm: bool = False,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        """**Arguments:**

        - `in_size`: the size of one (flattened) input example.
        - `out_size`: the number of outputs.
        - `widths`: the number of units of each hidden layer.
        - `batch_norm`: whether to normalise every hidden layer with an
            `eqx.nn.BatchNorm` (the linear layers before it then have no bias).
        - `key`: a PRNG key for the initialisation.
        - `dtype`: the floating dtype of the parameters (JAX's default if `None`).
        """
        sizes = (in_size, *widths, out_size)
        keys = jr.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(i, o, use_bias=not (batch_norm and n < len(widths)), dtype=dtype, key=k)
            for n, (i, o, k) in enumerate(zip(sizes[:-1], sizes[1:], keys))
        )
        self.norms = tuple(make_norm(w, batch_norm, dtype) for w in widths)

    def preactivations(
        self, x: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[Array, eqx.nn.State, PreActivations]:
        check_example("MLP", x, (self.layers[0].weight.shape[1],), flat=True)
        x = jnp.ravel(x)
        pre = {}
        for i, (layer, norm) in enumerate(zip(self.layers[:-1], self.norms)):
            z, state = normalise(norm, layer(x), state)
            pre[f"hidden.{i}"] = (z,)
            x = jax.nn.relu(z)
        return self.layers[-1](x), state, pre

    def wiring(self) -> dict[str, Group]:
        groups = {}
        for i, norm in enumerate(self.norms):
            slots = (
                outputs_of(self.layers[i], _layer(i))
                + norm_of(norm, _norm(i))
                + inputs_of(self.layers[i + 1], _layer(i + 1))
            )
            groups[f"hidden.{i}"] = Group(self.layers[i].weight.shape[0], tuple(slots))
        return groups
