"""Evaluation during a training run: the held-out split's loss and accuracy, the live
units, the network's size, and the wall time of the steps since the last record."""

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._buckets import live_widths
from ._checkpoint import shrink_to
from ._measure import count_params, flops
from ._train_data import TrainingData
from ._train_state import TrainState


@dataclasses.dataclass
class StepTimer:
    """Wall time since the last evaluation, with what is not a training step
    (compilations, prunes, checkpoints) timed apart so that it can be taken out."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    compile: float = 0.0
    other: float = 0.0
    steps: int = 0

    def step_time(self) -> float | None:
        """Seconds per training step since the last reset, or `None` without steps."""
        if not self.steps:
            return None
        elapsed = time.perf_counter() - self.start
        return (elapsed - self.compile - self.other) / self.steps

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start

    def reset(self) -> None:
        self.start, self.compile, self.other, self.steps = time.perf_counter(), 0.0, 0.0, 0


class Sizes:
    """Parameters and FLOPs per example of a network pruned to given widths, computed
    once per widths."""

    def __init__(self, shape: tuple[int, ...], dtype):
        self.shape, self.dtype = shape, dtype
        self._cache: dict[tuple, tuple[int, int]] = {}

    def __call__(self, ts: TrainState, w: dict[str, int]) -> tuple[int, int]:
        key = tuple(w.items())
        if key not in self._cache:
            small, small_state = shrink_to((ts.model, ts.state), ts.model, w)
            x = jnp.zeros(self.shape, self.dtype)
            self._cache[key] = count_params(small), flops(small, small_state, x)
        return self._cache[key]


def evaluate(
    ts: TrainState,
    data: TrainingData,
    eval_step: Callable,
    sizes: Sizes,
    timer: StepTimer,
    losses: list[float],
    *,
    per_epoch: int,
    compilations: dict[str, int],
    schedules: dict[str, Callable],
) -> dict[str, Any]:
    """The record of an evaluation at step `ts.step` (see [`toolkit.pruning.train`][]
    for its fields); resets `timer`. The caller clears `losses`.

    **Raises:**

    `FloatingPointError` if the mean training loss since the last record is not
    finite.
    """
    jax.block_until_ready(eqx.filter((ts.model, ts.state), eqx.is_array))
    step_time = timer.step_time()
    loss_sum, correct, live = 0.0, 0, None
    for xs, ys, valid in data.eval_batches:
        s, c, f, _ = eval_step(ts.model, ts.state, xs, ys, valid)
        loss_sum += float(s)
        correct += int(c)
        f = {k: np.asarray(v) for k, v in f.items()}  # on the host: no kernel per shape
        live = f if live is None else {k: live[k] | f[k] for k in f}
    assert live is not None
    w = live_widths(ts.alive)
    n_params, n_flops = sizes(ts, w)
    t = ts.step
    record = {
        "step": t,
        "epoch": t / per_epoch,
        "train_loss": sum(float(x) for x in losses) / len(losses) if losses else None,
        "test_loss": loss_sum / data.num_test,
        "test_accuracy": correct / data.num_test,
        "widths": w,
        "live": {k: int(np.sum(np.asarray(v))) for k, v in live.items()},
        "params": n_params,
        "flops": n_flops,
        "step_time": step_time,
        "compile_time": timer.compile,
        "compilations": compilations,
        **{name: float(fn(t)) for name, fn in schedules.items()},
    }
    timer.reset()
    return record


def check_loss(record: dict[str, Any], log) -> None:
    """Raise `FloatingPointError` if the record's training loss is not finite."""
    loss = record["train_loss"]
    if loss is not None and not math.isfinite(loss):
        raise FloatingPointError(
            f"training diverged: the mean training loss of the steps up to step "
            f"{record['step']} is {loss} (the learning rate, the regulariser or the noise "
            "may be too large)." + ("" if log is None else f" The log up to here is in {log}.")
        )
