"""A training run's fixed settings and its bookkeeping between steps: the log, the
losses since the last evaluation, the timer, the jitted steps and the prune whose
shapes are compiling. The loop itself is [`toolkit.pruning.train`][]."""

import dataclasses
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.random as jr
import numpy as np
import optax
from jax.experimental import multihost_utils

from ._activity import Activity, init_activity
from ._ahead import CompileAhead, prune_activity
from ._buckets import AbstractBuckets, bucket_keep, live_widths, mask, survivors
from ._checkpoint import write_atomic
from ._dead import dead_from_masks
from ._flat import FlatStep
from ._measure import widths
from ._method import AbstractMethod
from ._parallel import DataParallel, Placement
from ._prune import prune
from ._train_checkpoint import check_finite, save_run
from ._train_data import TrainingData
from ._train_eval import check_loss, evaluate, Sizes, StepTimer
from ._train_state import TrainState
from ._train_step import evaluation_step, training_step


@dataclasses.dataclass
class Pending:
    """A prune whose arrays shrink once the steps for their shapes have compiled (in
    the background, `job`): at step `switch_at`, or at the next event if sooner."""

    switch_at: int
    keep: dict[str, np.ndarray]
    job: CompileAhead

    def describe(self) -> dict[str, Any]:
        """As a checkpoint records it."""
        return {"switch_at": self.switch_at, "keep": {k: v.tolist() for k, v in self.keep.items()}}


class Run:
    """The settings of a call of [`toolkit.pruning.train`][] and what it keeps between
    steps besides the [`toolkit.pruning.TrainState`][]."""

    def __init__(
        self,
        *,
        method: AbstractMethod,
        optimiser: optax.GradientTransformation,
        data: TrainingData,
        total: int,
        per_epoch: int,
        eval_every: int,
        checkpoint_every: int,
        stop_at: int | None,
        checkpoint,
        log,
        augment,
        compile_ahead: int,
        buckets: AbstractBuckets,
        parallel: DataParallel | None,
        placement: Placement,
        writer: bool,
        keys: tuple,
        sizes: Sizes,
        history: dict[str, Any],
    ):
        noise_key, self.select_key, self.augment_key = keys
        self.method, self.optimiser, self.data = method, optimiser, data
        self.total, self.per_epoch, self.eval_every = total, per_epoch, eval_every
        self.checkpoint_every, self.stop_at = checkpoint_every, stop_at
        self.checkpoint, self.log = checkpoint, log
        self.compile_ahead, self.buckets = compile_ahead, buckets
        self.parallel, self.placement, self.writer = parallel, placement, writer
        self.sizes, self.history = sizes, history
        self.transform = method.transform(total, noise_key)
        self.schedules = method.schedules(total)
        self.compiles: Counter = Counter({"train_step": 0, "eval_step": 0})
        self.previous_compiles: dict[str, int] = {}
        # The training step, called on the carry's leaves between events (`FlatStep`).
        step = training_step(method, optimiser, self.transform, augment, total, self.compiles)
        self.flat = FlatStep(step)
        self.eval_step = evaluation_step(self.compiles)
        self.eval_now: Callable = self.eval_step  # after a compile-ahead switch, its own
        self.losses: list = []
        self.timer = StepTimer()
        self.saved: int | None = None  # the step of the checkpoint on disk, if any
        self.pending: Pending | None = None
        self._prune_at: dict[int, bool] = {}

    def compilations(self) -> dict[str, int]:
        """Compilations of each jitted step, those before a resume included."""
        return {k: self.previous_compiles.get(k, 0) + self.compiles[k] for k in self.compiles}

    def prune_at(self, t: int) -> bool:
        if t not in self._prune_at:
            self._prune_at[t] = bool(self.method.prune_at(t, self.total))
        return self._prune_at[t]

    def evaluating(self, t: int) -> bool:
        return t % self.eval_every == 0 or t == self.total

    def event_due(self, t: int) -> bool:
        """Whether `at_event` has anything to do at step `t`: a switch to shapes
        compiled ahead, a prune check or an evaluation."""
        return (
            self.evaluating(t)
            or self.prune_at(t)
            or (self.pending is not None and t >= self.pending.switch_at)
        )

    def write_log(self) -> None:
        if self.log is not None and self.writer:
            write_atomic(self.log, lambda f: json.dump(self.history, f, indent=1), mode="w")

    def save(self, ts: TrainState) -> None:
        """Checkpoint `ts` (process 0 writes; every process waits for it)."""
        if self.checkpoint is None:
            return
        timer = StepTimer()
        losses = [float(x) for x in self.losses]
        check_finite(ts, losses, self.checkpoint, self.saved)
        self.history["compilations"] = self.compilations()
        pending = None if self.pending is None else self.pending.describe()
        if self.writer:
            save_run(self.checkpoint, ts, losses, self.history, pending)
        if self.parallel is not None and jax.process_count() > 1:
            # Every process may read it back (a resume, or `stop_at` then a new call).
            multihost_utils.sync_global_devices(f"toolkit checkpoint {ts.step}")
        self.saved = ts.step
        self.timer.other += timer.elapsed()

    def resumed(self, header: dict[str, Any], ts: TrainState) -> None:
        """Take up the bookkeeping of the checkpoint `header` resumed at `ts`."""
        self.saved = ts.step
        self.losses = list(header["losses"])
        self.previous_compiles = self.history["compilations"]
        if header.get("pending") is not None:  # resumed between a prune and its switch
            p = header["pending"]
            keep = {k: np.asarray(v, dtype=np.int64) for k, v in p["keep"].items()}
            self.start_ahead(ts, keep, p["switch_at"])
        if self.writer:
            print(
                f"resuming from step {ts.step} of {self.total} ({os.fspath(self.checkpoint)})",
                file=sys.stderr,
            )

    def evaluate(self, ts: TrainState) -> dict[str, Any]:
        record = evaluate(
            ts,
            self.data,
            self.eval_now,
            self.sizes,
            self.timer,
            self.losses,
            per_epoch=self.per_epoch,
            compilations=self.compilations(),
            schedules=self.schedules,
        )
        self.history["evaluations"].append(record)
        self.history["compilations"] = self.compilations()
        self.losses.clear()
        self.write_log()
        check_loss(record, None if self.log is None else os.fspath(self.log))
        return record

    def start_ahead(self, ts: TrainState, keep: dict[str, np.ndarray], switch_at: int) -> None:
        """Compile the steps for the arrays of `ts` pruned to `keep` in the background;
        `switch` prunes for real."""
        timer = StepTimer()
        small = self.placement.replicate(_prune_keeping(ts.arrays[:3], ts.model, keep))
        # Traced here, in this thread's JAX configuration; XLA compiles in another.
        xs, ys = self.placement.batch(*self.data.host_batch(min(ts.step, self.total - 1)))
        alive = {k: a[keep[k]] for k, a in ts.alive.items()}
        carry = (*small, init_activity(small[0]), self.placement.alive(alive))
        lowered = {
            "train": self.flat.lower(carry, xs, ys, np.int32(ts.step), self.augment_key),
            "eval": self.eval_step.lower(small[0], small[1], *self.data.eval_batches[0]),
        }
        job = CompileAhead({k: v.compile for k, v in lowered.items()})
        self.timer.compile += timer.elapsed()
        self.pending = Pending(switch_at, keep, job)

    def switch(self, ts: TrainState) -> TrainState:
        """Prune `ts` to the pending prune's units and use the steps compiled for them."""
        assert self.pending is not None
        timer = StepTimer()
        compiled = self.pending.job.result()
        self.timer.compile += timer.elapsed()
        keep = self.pending.keep
        model, state, opt_state = _prune_keeping(ts.arrays[:3], ts.model, keep)
        activity = prune_activity(ts.activity, model, keep)
        alive = {k: a[keep[k]] for k, a in ts.alive.items()}
        ts = ts.with_arrays((model, state, opt_state, activity)).replace(alive=alive)
        ts = ts.replicated(self.placement)
        self.flat.install(ts.carry(self.placement), compiled.pop("train"))
        self.eval_now = compiled["eval"]
        self.pending = None
        return ts

    def prune(self, ts: TrainState) -> TrainState:
        """Ask the method which units are dead at `ts.step`; mask them, and shrink the
        arrays when a bucket shrinks."""
        t, method = ts.step, self.method
        # The method selects as if on the network without its masked units.
        extra = {"transform_state": ts.opt_state[1]} if _reads_transform(method) else {}
        examples = int(getattr(method, "select_examples", 0))
        host = self.data.host_examples(min(t, self.total - 1), examples)
        if getattr(method, "select_snapshot", False):
            extra["snapshot"] = lambda: self.snapshot(ts, host[0][:examples])
        dead = method.select_masked(
            ts.model,
            ts.state,
            ts.activity,
            ts.alive,
            self.data.place(*host),
            step=t,
            total_steps=self.total,
            key=jr.fold_in(self.select_key, t),
            **extra,
        )
        if dead is None:
            return ts
        if any(np.any(np.asarray(m)) for m in dead.masks.values()):
            ts = self._remove(ts, dead)
        return ts.replace(activity=self.placement.replicate(init_activity(ts.model)))

    def snapshot(self, ts: TrainState, xs: np.ndarray) -> Activity:
        """The activation statistics of `ts.model` in inference mode on the examples
        `xs`, from the evaluation step: no compilation beyond evaluation's own."""
        fired, top = None, None
        for chunk in self.data.padded(xs, np.zeros(xs.shape[0], np.int32)):
            _, _, f, p = self.eval_now(ts.model, ts.state, *chunk)
            f, p = ({k: np.asarray(v) for k, v in d.items()} for d in (f, p))
            fired = f if fired is None else {k: fired[k] | f[k] for k in f}
            top = p if top is None else {k: np.maximum(top[k], p[k]) for k in p}
        empty = init_activity(ts.model)
        put = jax.device_put if self.parallel is None else self.placement.replicate
        return Activity(
            examples=put(np.asarray(xs.shape[0], np.int32)),
            active=put({k: v.astype(np.int32) for k, v in fired.items()}),
            peak=put({k: v.astype(empty.peak[k].dtype) for k, v in top.items()}),
            layout=empty.layout,
        )

    def _remove(self, ts: TrainState, dead) -> TrainState:
        t, alive = ts.step, ts.alive
        before = live_widths(alive)
        alive = survivors(alive, dead, "keep_most_active" if dead.peak is not None else "error")
        after = live_widths(alive)
        self.history["prunes"].append(
            {
                "step": t,
                "removed": {k: before[k] - after[k] for k in before},
                "widths": after,
                "params": self.sizes(ts, after)[0],
            }
        )
        keep = None  # at the end, the arrays shrink on return
        if t < self.total:
            last = not any(self.prune_at(s) for s in range(t + 1, self.total))
            initial = self.history["config"]["initial_widths"]
            long = 4 * (self.total - t) >= self.total
            keep = bucket_keep(alive, self.buckets, initial, last=last, long=long)
        arrays = ts.arrays[:3]
        if keep is not None and self.compile_ahead == 0:
            arrays = _prune_keeping(arrays, ts.model, keep)
            alive = {k: a[keep[k]] for k, a in alive.items()}
            self.eval_now = self.eval_step
        model, opt_state = mask((arrays[0], arrays[2]), arrays[0], alive)
        model, state, opt_state = self.placement.replicate((model, arrays[1], opt_state))
        ts = ts.replace(model=model, state=state, opt_state=opt_state, alive=alive)
        if keep is not None and self.compile_ahead > 0:
            self.start_ahead(ts, keep, t + self.compile_ahead)
        return ts

    def at_event(self, ts: TrainState, progress) -> TrainState:
        """What is due at step `ts.step` besides a checkpoint: the switch to shapes
        compiled ahead, a prune, an evaluation."""
        t = ts.step
        timer, compiling = StepTimer(), self.timer.compile
        evaluating = self.evaluating(t)
        pending = self.pending
        if pending is not None and (t >= pending.switch_at or evaluating or self.prune_at(t)):
            ts = self.switch(ts)
        if self.prune_at(t):
            ts = self.prune(ts)
        self.timer.other += timer.elapsed() - (self.timer.compile - compiling)
        if evaluating:
            record = self.evaluate(ts)
            progress.set_postfix(
                acc=f"{record['test_accuracy']:.4f}", params=record["params"], refresh=False
            )
        return ts


def _reads_transform(method: AbstractMethod) -> bool:
    return bool(getattr(method, "select_transform_state", False))


def _prune_keeping(tree, model, keep: dict[str, np.ndarray]):
    """`prune` `tree` (laid out like `model`) to the units of `keep`, a dict from group
    name to the indices of the units to keep."""
    masks = {}
    for name, size in widths(model).items():
        drop = np.ones(size, dtype=bool)
        drop[keep[name]] = False
        masks[name] = drop
    return prune(tree, dead_from_masks(model, masks))
