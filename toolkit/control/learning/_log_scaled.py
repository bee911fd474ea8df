from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree


class LogScaled(eqx.Module):
    """A parameter learned on a logarithmic scale around a reference value:
    `value = reference * exp(log_ratio)`.

    A first-order optimiser such as Adam moves every array by about its learning
    rate per step, whatever the array's size. A physical parameter of size 2.4e-5
    (hiv_treatment's infection rate) then leaves its meaningful range in one step at
    a learning rate of 1e-2, and the known dynamics blow up; a parameter of size 0.1
    changes sign in ten. Learned as `log_ratio`, each step changes the parameter by
    about the same *relative* amount, and its sign never changes.

    The reference is not learned: [`toolkit.control.learning.trainable`][] leaves it
    out, and it is behind `jax.lax.stop_gradient`.

    **Fields:**

    - `reference`: the value at `log_ratio = 0` (e.g. an initial guess); entries that
        are exactly zero stay zero.
    - `log_ratio`: the learned log of `value / reference`, shaped like `reference`.

    Build a tree of them with [`toolkit.control.learning.log_scaled`][]; models
    unwrap them with [`toolkit.control.learning.resolve`][].
    """

    reference: Float[Array, "..."]
    log_ratio: Float[Array, "..."]

    @property
    def value(self) -> Float[Array, "..."]:
        return jax.lax.stop_gradient(self.reference) * jnp.exp(self.log_ratio)


def _is_log_scaled(x: Any) -> bool:
    return isinstance(x, LogScaled)


def log_scaled(args: PyTree[Any]) -> PyTree[Any]:
    """Wrap every floating-point array of `args` in a
    [`toolkit.control.learning.LogScaled`][] with `log_ratio = 0`, so that it is
    learned on a logarithmic scale around its present value (the `args` of a
    parametric or hybrid [`toolkit.control.learning.Model`][]).

    **Arguments:**

    - `args`: a pytree of parameters, e.g. a library problem's `Example.args`.

    **Returns:**

    `args` with its floating-point arrays wrapped; `resolve` of it equals `args`.
    Other leaves (integers, Python numbers, `None`) are returned as they are.
    """

    def wrap(a):
        if eqx.is_inexact_array(a):
            a = jnp.asarray(a, jnp.result_type(a))
            return LogScaled(a, jnp.zeros_like(a))
        return a

    return jax.tree_util.tree_map(wrap, args, is_leaf=_is_log_scaled)


def resolve(args: PyTree[Any]) -> PyTree[Any]:
    """`args` with every [`toolkit.control.learning.LogScaled`][] replaced by its
    value: what the dynamics receive.

    **Arguments:**

    - `args`: a pytree that may hold `LogScaled` leaves.

    **Returns:**

    The same pytree of plain values.
    """
    return jax.tree_util.tree_map(
        lambda a: a.value if isinstance(a, LogScaled) else a, args, is_leaf=_is_log_scaled
    )
