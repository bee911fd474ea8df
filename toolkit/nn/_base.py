import abc
import math

import equinox as eqx
from jaxtyping import Array, PRNGKeyArray

from ._wiring import Group


PreActivations = dict[str, tuple[Array, ...]]


class AbstractNetwork(eqx.Module):
    """A network whose hidden units are explicit: it reports the input of every ReLU,
    grouped by unit group, and knows which arrays hold each group (its wiring).

    Every network is called on one example as `model(x, state) -> (y, state)`; batch
    it with `jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))`
    (the BatchNorm layers reduce over the axis named `"batch"`).
    """

    @abc.abstractmethod
    def preactivations(
        self, x: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[Array, eqx.nn.State, PreActivations]:
        """The forward pass on one example, and the inputs of its ReLUs.

        **Arguments:**

        - `x`: one example.
        - `state`: the network's `eqx.nn.State` (BatchNorm running statistics).
        - `key`: ignored; for compatibility with the rest of the Equinox API.

        **Returns:**

        A 3-tuple `(y, state, pre)`: the output, the updated state, and a dict that
        maps every group name of [`toolkit.nn.AbstractNetwork.wiring`][] to a tuple of
        arrays whose leading axis runs over the group's units: the inputs of the
        ReLUs whose outputs are the group's units. A group of a residual stream has
        one array per ReLU that writes into the stream. The units' outputs are
        `jax.nn.relu` of these; a unit is dead on an example when all of its entries
        are `<= 0`.
        """

    @abc.abstractmethod
    def wiring(self) -> dict[str, Group]:
        """Every group of units, by name, and the places that hold them.

        **Returns:**

        A dict from group name to [`toolkit.nn.Group`][], in the network's order.
        """

    def __call__(
        self, x: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[Array, eqx.nn.State]:
        """**Arguments:**

        - `x`: one example.
        - `state`: the network's `eqx.nn.State`.
        - `key`: ignored; for compatibility with the rest of the Equinox API.

        **Returns:**

        A 2-tuple `(y, state)`: the output (logits) and the updated state.
        """
        y, state, _ = self.preactivations(x, state, key=key)
        return y, state


def check_example(
    network: str, x: Array, expected: tuple[int | None, ...], *, flat: bool = False
) -> None:
    """Raise a `ValueError` naming the expected and the given shape unless `x` is one
    example of shape `expected` (`None`: any size on that axis; `flat`: any shape of
    `expected`'s size). Shapes are static: this runs once, at trace time."""

    def fits(shape: tuple[int, ...]) -> bool:
        if flat:
            return math.prod(shape) == math.prod(e or 1 for e in expected)
        return len(shape) == len(expected) and all(
            e is None or s == e for s, e in zip(shape, expected)
        )

    shape = tuple(x.shape)
    if fits(shape):
        return
    want = "(" + ", ".join("any" if e is None else str(e) for e in expected)
    want += ",)" if len(expected) == 1 else ")"
    if flat:
        want += " or any shape of that size"
    hint = ""
    if len(shape) > 1 and fits(shape[1:]):
        hint = (
            "; for a batch, vmap the network: `jax.vmap(model, axis_name='batch', "
            "in_axes=(0, None), out_axes=(0, None))`"
        )
    raise ValueError(
        f"{network} expects one example of shape {want}, got an input of shape {shape}{hint}."
    )


def make_norm(size: int, use: bool, dtype) -> eqx.nn.BatchNorm | None:
    """A BatchNorm over the vmapped axis named "batch", or `None`."""
    if not use:
        return None
    return eqx.nn.BatchNorm(size, axis_name="batch", mode="batch", dtype=dtype)


def normalise(
    norm: eqx.nn.BatchNorm | None, z: Array, state: eqx.nn.State
) -> tuple[Array, eqx.nn.State]:
    if norm is None:
        return z, state
    return norm(z, state)
