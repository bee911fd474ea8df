"""When a unit counts as dead at one of DemP's checks: strategy objects."""

import abc
from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, PyTree

from ..nn import AbstractNetwork
from ._activity import Activity, dead_from, dead_units
from ._dead import DeadUnits


class AbstractDeadTest(eqx.Module):
    """Which units are dead at a prune check of [`toolkit.pruning.DemP`][].

    [`toolkit.pruning.train`][] hands the test `examples` training examples (none if
    `examples == 0`) and the activation statistics of the training steps since the
    last check.
    """

    examples: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(
        self,
        model: AbstractNetwork,
        state: eqx.nn.State,
        activity: Activity,
        xs: PyTree[Array] | None,
    ) -> DeadUnits | None:
        """The dead units of `model`, or `None` to put the check off (the statistics
        then keep accumulating)."""

    def with_snapshot(
        self,
        model: AbstractNetwork,
        state: eqx.nn.State,
        activity: Activity,
        xs: PyTree[Array] | None,
        snapshot: Callable[[], Activity],
    ) -> DeadUnits | None:
        """As `__call__`, with `snapshot()` at hand: the statistics of `model` in
        inference mode on `xs`, which [`toolkit.pruning.train`][] computes with its
        evaluation step, a program it compiles for each network shape anyway. By
        default the snapshot is not used."""
        return self(model, state, activity, xs)


class EvalSnapshot(AbstractDeadTest):
    """Dead: silent on every one of `examples` training examples, BatchNorm in
    inference mode (its running statistics), the network as it is at the check.

    This is the test of the DemP reference code (github.com/SimonDufLab/Maxwell_demon,
    `source/controlling_overfitting.py`): at every `pruning_freq` step,
    `scan_death_check_fn` runs `death_check_given_model` (`source/utils/utils.py`:
    `is_training=False`, dead where the post-ReLU activation summed over the batch is
    0) on `scan_len = int((train_size / 25) // death_batch_size)` batches of
    `death_batch_size=512` training examples: 3 batches, 1536 examples, on CIFAR-10.

    **Arguments:**

    - `examples`: the number of training examples of the snapshot.
    """

    examples: int = 1536

    def __check_init__(self):
        if not isinstance(self.examples, int) or self.examples < 1:
            raise ValueError(f"`examples` must be a positive int, got {self.examples!r}.")

    def __call__(self, model, state, activity, xs):
        return dead_units(model, state, xs)

    def with_snapshot(self, model, state, activity, xs, snapshot):
        # The same statistics as `dead_units` (tests/pruning/test_train.py), without a
        # compilation of its own at every new network shape (about 1 s for LeNet-5).
        return dead_from(snapshot())


class TrainingWindow(AbstractDeadTest):
    """Dead: fired on none of the training examples seen since the last check
    (BatchNorm in training mode, the network changing from step to step), which must
    be at least `window` examples; a check that comes sooner is put off to the next.

    **Arguments:**

    - `window`: the fewest training examples on which a unit must have stayed silent.
    """

    window: int = 2048
    examples: int = eqx.field(default=0, init=False)

    def __check_init__(self):
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"`window` must be a positive int, got {self.window!r}.")

    def __call__(self, model, state, activity, xs):
        if int(activity.examples) < self.window:
            return None
        return dead_from(activity)
