import equinox as eqx


class SegmentCurriculum(eqx.Module):
    """A curriculum for multiple-shooting system identification: segments that grow
    geometrically over training, up to full-horizon rollouts.

    Short segments restart from the data every few samples, which keeps the loss
    landscape benign for a poor initial model but never asks the model to predict
    far; the whole horizon is what a plan predicts. The segment lengths (in sampling
    intervals, of trajectories of `intervals` intervals) are

    `first, first * factor, first * factor², ...` while below `intervals`, then
    `intervals` itself (a single segment: single shooting),

    and the `steps` optimiser steps are shared out in order, as equally as integers
    allow: step `i` (0-based) uses the length of index `floor(i * K / steps)` of the
    `K` lengths.

    **Arguments:**

    - `first`: the first segment length, in sampling intervals (>= 1; default 4).
    - `factor`: the growth factor, an integer >= 2 (default 2).

    Pass it to [`toolkit.control.learning.fit`][] with a
    [`toolkit.control.learning.MultipleShootingLoss`][], or use
    `python -m toolkit learn --curriculum`.
    """

    first: int = eqx.field(static=True, default=4)
    factor: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        if not isinstance(self.first, int) or self.first < 1:
            raise ValueError(f"`first` must be an integer >= 1, got {self.first!r}.")
        if not isinstance(self.factor, int) or self.factor < 2:
            raise ValueError(f"`factor` must be an integer >= 2, got {self.factor!r}.")

    def lengths(self, intervals: int) -> tuple[int, ...]:
        """The segment lengths for trajectories of `intervals` sampling intervals."""
        if intervals < 1:
            raise ValueError(f"`intervals` must be >= 1, got {intervals}.")
        lengths, length = [], self.first
        while length < intervals:
            lengths.append(length)
            length *= self.factor
        return (*lengths, intervals)

    def schedule(self, steps: int, intervals: int) -> list[int]:
        """The segment length of each of `steps` optimiser steps."""
        lengths = self.lengths(intervals)
        K = len(lengths)
        return [lengths[i * K // steps] for i in range(steps)]
