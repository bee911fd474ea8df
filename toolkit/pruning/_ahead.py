"""Compile the training step for the pruned shapes while training goes on."""

import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.tree_util as jtu
import numpy as np
from jaxtyping import PyTree

from ._activity import Activity
from ._layout import Layout, resolve


def silence(tree: PyTree, layout: Layout, keep: dict[str, np.ndarray]) -> PyTree:
    """Zero the entries of the units not in `keep`, without changing any shape.

    Every node of `tree` of the network's class (the network, an optimiser moment)
    has the slices of the other units set to zero: their incoming and outgoing
    weights, biases and BatchNorm scale and shift. Such a unit outputs 0 (its ReLU
    input is 0 on every example), receives zero gradients, zero Adam moments give it
    zero updates and, never firing, it gets no DemP noise: training the silenced
    network computes what training the pruned one does, up to the rounding of sums
    with extra zero terms. `eqx.nn.State` (running statistics) is left alone: a
    silenced unit's BatchNorm output is its shift, 0, whatever they hold.

    **Arguments:**

    - `tree`: a pytree holding the network and pytrees of its class.
    - `layout`: the network's layout (`resolve(model)`).
    - `keep`: a dict from group name to the indices of the units to keep.

    **Returns:**

    `tree` with the same shapes and the other units' entries zeroed.
    """
    slots: dict[Any, list] = {}
    for g in layout.groups:
        mask = np.zeros(g.size, dtype=bool)
        mask[keep[g.name]] = True
        for s in g.leaves:
            slots.setdefault(s.path, []).append((s.axis, s.block, mask))

    def silence_network(network):
        def zero(path, leaf):
            todo = slots.get(tuple(path), ())
            if not todo:
                return leaf
            # On the host, as `prune` does: an eager `jnp.where` compiles per shape.
            out = np.array(leaf)
            for axis, block, mask in todo:
                entries = np.repeat(mask, block)
                shape = [1] * out.ndim
                shape[axis] = entries.size
                out = np.where(entries.reshape(shape), out, np.zeros((), out.dtype))
            return jax.device_put(out)

        return jtu.tree_map_with_path(zero, network)

    return jtu.tree_map(
        lambda x: silence_network(x) if isinstance(x, layout.model_type) else x,
        tree,
        is_leaf=lambda x: isinstance(x, layout.model_type),
    )


def prune_activity(activity: Activity, model, keep: dict[str, np.ndarray]) -> Activity:
    """The statistics of the kept units of `activity`, laid out for the pruned
    `model`."""

    def take(stats):
        return {k: jax.device_put(np.asarray(v)[keep[k]]) for k, v in stats.items()}

    return Activity(
        examples=activity.examples,
        active=take(activity.active),
        peak=take(activity.peak),
        layout=resolve(model),
    )


class CompileAhead:
    """Run `compile_fns` (each returning a compiled function) in a background thread.

    XLA compiles with Python's GIL released, so the training steps of the current
    shapes go on while the steps for the pruned shapes compile. Trace and lower in
    the calling thread: JAX's configuration contexts (`jax.numpy_dtype_promotion`,
    `jax.enable_x64`, ...) are thread-local.
    """

    def __init__(self, compile_fns: dict[str, Callable[[], Any]]):
        self._out: dict[str, Any] = {}
        self._error: BaseException | None = None

        def work():
            try:
                for name, fn in compile_fns.items():
                    self._out[name] = fn()
            except BaseException as e:  # re-raised in the training loop by `result`
                self._error = e

        self._thread = threading.Thread(target=work, name="toolkit-compile-ahead", daemon=True)
        self._thread.start()

    def result(self) -> dict[str, Any]:
        """Wait for the compilations; their compiled functions by name."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out
