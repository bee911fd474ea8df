"""What a training run carries from one step to the next."""

import dataclasses
from typing import Any

import equinox as eqx
import numpy as np
import optax

from ..nn import AbstractNetwork
from ._activity import Activity, init_activity
from ._buckets import all_alive
from ._parallel import Placement


class TrainState(eqx.Module):
    """The state of a run of [`toolkit.pruning.train`][] after `step` steps.

    **Fields:**

    - `model`, `state`: the network (with its masked units, see `alive`) and its
        `eqx.nn.State`.
    - `opt_state`: `(optimiser state, method state)`, the states of the optimiser
        and of the method's transformation (DemP's noise schedule and key, say).
    - `activity`: the activation statistics since the method's last prune check.
    - `alive`: a dict from unit group to a boolean NumPy array over the group's units
        in the arrays: `False` where a unit is masked (pruned, but its bucket has not
        shrunk yet).
    - `step`: the steps done.

    The run's keys (batches, noise, random choices, augmentation) derive from its
    `key` argument and the step, so they are not part of the state.
    """

    model: AbstractNetwork
    state: eqx.nn.State
    opt_state: tuple[optax.OptState, optax.OptState]
    activity: Activity
    alive: dict[str, np.ndarray]
    step: int

    @classmethod
    def start(
        cls,
        model: AbstractNetwork,
        state: eqx.nn.State,
        optimiser: optax.GradientTransformation,
        transform: optax.GradientTransformation,
    ) -> "TrainState":
        """The state at step 0: fresh optimiser and method states, no activity, every
        unit alive."""
        params = eqx.filter(model, eqx.is_inexact_array)
        opt_state = (optimiser.init(params), transform.init(params))
        return cls(model, state, opt_state, init_activity(model), all_alive(model), 0)

    def replace(self, **changes: Any) -> "TrainState":
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def arrays(self) -> tuple:
        """`(model, state, opt_state, activity)`: what a checkpoint stores."""
        return self.model, self.state, self.opt_state, self.activity

    def with_arrays(self, arrays: tuple) -> "TrainState":
        """A copy with `(model, state, opt_state, activity)` replaced."""
        model, state, opt_state, activity = arrays
        return self.replace(model=model, state=state, opt_state=opt_state, activity=activity)

    def carry(self, placement: Placement) -> tuple:
        """The training step's carry: `(model, state, opt_state, activity, alive)`."""
        return (*self.arrays, placement.alive(self.alive))

    def replicated(self, placement: Placement) -> "TrainState":
        """A copy with its arrays on every device of the run's mesh."""
        return self.with_arrays(placement.replicate(self.arrays))
