"""[`toolkit.pruning.train`][]: the training loop."""

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, PRNGKeyArray

from ..nn import AbstractNetwork
from ._buckets import AbstractBuckets, unmasked, WidthBuckets
from ._config import describe, describe_function, fingerprint, function_name
from ._measure import count_params, widths
from ._method import AbstractMethod, Dense
from ._parallel import DataParallel, Placement, writes
from ._train_checkpoint import load_run
from ._train_data import TrainingData
from ._train_eval import Sizes
from ._train_run import Run
from ._train_state import TrainState
from ._train_step import classification_loss as classification_loss


def train(
    model: AbstractNetwork,
    state: eqx.nn.State,
    dataset,
    method: AbstractMethod | None = None,
    *,
    optimiser: optax.GradientTransformation | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    key: PRNGKeyArray,
    eval_every: int | None = None,
    eval_batch_size: int | None = None,
    augment: Callable[[PRNGKeyArray, Array], Array] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    stop_at: int | None = None,
    log: str | os.PathLike | None = None,
    progress: bool = True,
    compile_ahead: int = 0,
    buckets: AbstractBuckets = WidthBuckets(),
    settings: dict[str, Any] | None = None,
    mesh: Mesh | None = None,
) -> tuple[AbstractNetwork, eqx.nn.State, dict[str, Any]]:
    """Train a classifier with a method that may prune it as it goes.

    Every step draws a batch (one permutation of the training split per epoch, from
    `key`), runs the jitted training step (cross-entropy plus the method's
    regulariser; the optimiser's updates, then the method's transformation; the
    activity statistics of the batch), and, when the method asks for it, removes the
    units it selects. A removed unit is first masked: its parameters and optimiser
    moments are set to zero and held there (its gradients and updates are zeroed in
    the step), so the network computes what [`toolkit.pruning.prune`][] would have
    left. The arrays of the model, its state and the optimiser state shrink, and the
    steps recompile, only when a group's `buckets` width shrinks; the log counts the
    compilations. The method, the log and the returned network see the network
    without its masked units.

    Every `eval_every` steps, and at the end, the model is evaluated on the held-out
    split (BatchNorm in inference mode) and a record is added to the log: `step`,
    `epoch`, `train_loss` (mean cross-entropy of the steps since the last record),
    `test_loss`, `test_accuracy`, `widths` (units per group), `live` (units that
    fired on some held-out example), `params`, `flops` (per example), `step_time`
    (seconds per step, compilation excluded), `compile_time`, `compilations`, and
    the method's schedules at that step.

    **Arguments:**

    - `model`, `state`: a [`toolkit.nn.AbstractNetwork`][] and its `eqx.nn.State`, as
        made by `eqx.nn.make_with_state`. When resuming, the network the run started
        from.
    - `dataset`: a [`toolkit.data.Dataset`][].
    - `method`: a [`toolkit.pruning.AbstractMethod`][]; default
        [`toolkit.pruning.Dense`][] (plain training).
    - `optimiser`: an optax optimiser; default `optax.adamw(1e-3)`.
    - `steps`, `epochs`: the length of training, in steps or in epochs (of
        `len(train) // batch_size` steps); give exactly one.
    - `batch_size`: training examples per step.
    - `key`: a JAX PRNG key; it fixes the batches, the method's noise and any random
        choice of the method, so that a run is reproducible.
    - `eval_every`: steps between evaluations; default one epoch.
    - `eval_batch_size`: examples per evaluation batch (and per batch of DemP's
        dead-unit snapshot); default `batch_size`. Larger is not faster on a CPU:
        LeNet-5 evaluated 96 us an example in batches of 128 and 184 us in batches of
        256 to 2000 (one XLA thread).
    - `augment`: a function `(key, x) -> x` applied to every training example, such
        as `toolkit.data.augment`; none by default.
    - `checkpoint`: a file to save the run to every `checkpoint_every` steps (default
        `eval_every`) and at the end. If it exists, training resumes from it and
        continues exactly as the uninterrupted run would have (a line on stderr says
        from which step, or that the run is already complete). It must be the same
        run: every setting of the log's `config` (the method, the optimiser and its
        schedule, the augmentation, the data, the initial network, the key, the
        batch size, ...) is checked, and the first that differs is named. A
        checkpoint holds a SHA-256 checksum of its contents: a corrupted or
        truncated one is refused. It is never overwritten by a run whose loss or
        parameters are no longer finite, so that the last good one is kept.
    - `stop_at`: stop after this many steps (saving a checkpoint, if any) as a
        preempted job would; the schedules still span `steps`. Call again with the
        same arguments to resume.
    - `log`: a JSON file rewritten with the log at every evaluation (and written
        when a completed run is resumed).
    - `progress`: show a progress bar.
    - `compile_ahead`: if positive, a prune that shrinks the arrays does not wait
        for the steps of the new shapes to compile: they compile in a background
        thread while training goes on for up to this many steps on the old shapes,
        the removed units masked (this trains the pruned network, up to the rounding
        of sums with extra zero terms; DemP's noise for those steps is drawn for the
        old shapes, the same distribution but another draw); the switch to the new
        shapes comes after that many steps, or at the next evaluation or prune if
        sooner. Deterministic (the switch steps do not depend on how long compiling
        takes) and exactly resumable, but not bitwise equal to `compile_ahead=0`.
        Compiling uses a second CPU thread.
    - `buckets`: the widths the arrays are kept at, a
        [`toolkit.pruning.AbstractBuckets`][]: by default
        [`toolkit.pruning.WidthBuckets`][]`(2.0)`, halvings of each group's initial
        width, so that a run compiles its steps about `log2(initial / final width)`
        times per group at most; [`toolkit.pruning.ExactWidths`][] shrinks them at
        every prune. At the last prune before the end (by `method.prune_at`), the
        arrays shrink to the live units if a quarter of training or more remains (as
        after a one-shot method's only prune), and not at all otherwise. DemP's
        noise is drawn for the arrays' shapes, so the buckets change the draw, not
        its distribution.
    - `settings`: JSON-serialisable settings of the caller (a command line's options,
        say) recorded in the log's `config` and checked on resume like the rest.
    - `mesh`: a 1-D `jax.sharding.Mesh` to train data-parallel on: each batch is
        split along its leading axis over the mesh's devices (`batch_size` must be
        a multiple of their number), and the network, its state, the optimiser state
        and the activity statistics are replicated (see
        [`toolkit.pruning.DataParallel`][]). Reductions over the batch (the loss,
        BatchNorm's statistics, which units fired) are over the global batch, so the
        run is the one-device run up to the order of floating-point sums, and every
        device makes the same prunes. Under `jax.distributed.initialize`, give a mesh
        of every process's devices (`jax.devices()`) and call `train` with the same
        arguments in every process: only process 0 writes the log and checkpoints
        (put them on a file system every process reads, to resume). Default `None`:
        the default device, without sharding (as a mesh of one device). The log
        records the mesh (`mesh`), which is not part of the run's `config`: a run may
        resume on another mesh.

    **Returns:**

    A 3-tuple `(model, state, history)`: the trained network pruned to its live
    units, its state, and the log, a JSON-serialisable dict with `config`,
    `evaluations` (the records above), `prunes` (step, units removed per group,
    widths and parameters after) and `compilations` (how many times each jitted
    function was compiled).

    **Raises:**

    `ValueError` for inconsistent arguments, or a checkpoint written by another run,
    corrupted or truncated; `FloatingPointError` when the training loss becomes NaN
    or infinite (checked at every evaluation, and before every checkpoint is
    written).
    """
    method = Dense() if method is None else method
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    _check_kinds(model, method, buckets, batch_size, eval_batch_size, compile_ahead)
    total, per_epoch, eval_every, checkpoint_every = _length(
        dataset.num_train, batch_size, steps, epochs, eval_every, checkpoint_every, stop_at
    )
    optimiser = optax.adamw(1e-3) if optimiser is None else optimiser
    parallel, mesh_record = _data_parallel(mesh, batch_size)
    placement = Placement(parallel)
    dtype = _float_dtype(model)
    data_key, noise_key, select_key, augment_key = jr.split(key, 4)
    data = TrainingData(dataset, batch_size, eval_batch_size, dtype, data_key, placement.batch)
    config = _config(
        model,
        state,
        dataset,
        method,
        optimiser,
        augment,
        compile_ahead,
        buckets,
        settings,
        data.num_test,
        total,
        per_epoch,
        batch_size,
        eval_every,
        key,
    )
    history: dict[str, Any] = {
        # As it reads back from JSON (lists for tuples), for the check on resume.
        "config": json.loads(json.dumps(config)),
        "evaluations": [],
        "prunes": [],
        "compilations": {},
        "done": False,
        "mesh": mesh_record,
    }
    run = Run(
        method=method,
        optimiser=optimiser,
        data=data,
        total=total,
        per_epoch=per_epoch,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        stop_at=stop_at,
        checkpoint=checkpoint,
        log=log,
        augment=augment,
        compile_ahead=compile_ahead,
        buckets=buckets,
        parallel=parallel,
        placement=placement,
        writer=writes(parallel),
        keys=(noise_key, select_key, augment_key),
        sizes=Sizes(dataset.shape, dtype),
        history=history,
    )
    ts = TrainState.start(model, state, optimiser, run.transform).replicated(placement)
    if checkpoint is not None and os.path.exists(checkpoint):
        ts = _resume(run, ts, mesh_record)
    if not run.history["done"]:
        ts = _loop(run, ts, progress)
    return *unmasked((ts.model, ts.state), ts.model, ts.alive), run.history


def _resume(run: Run, ts: TrainState, mesh_record) -> TrainState:
    """The state and log saved in the run's checkpoint; a line on stderr says from
    which step the run resumes, or that it is complete."""
    path = run.checkpoint
    ts, header = load_run(path, ts, run.history["config"])
    ts = ts.replicated(run.placement)
    run.history = header["history"]
    run.history["mesh"] = mesh_record
    if run.history["done"]:
        run.write_log()
        log = "" if run.log is None else f"; its log is in {os.fspath(run.log)}"
        print(
            f"the run in {os.fspath(path)} is already complete ({run.total} steps): "
            f"nothing to train{log}",
            file=sys.stderr,
        )
    else:
        run.resumed(header, ts)
    return ts


def _loop(run: Run, ts: TrainState, progress: bool) -> TrainState:
    """Train from `ts` to the end of the run, or to its `stop_at`, with a progress bar
    if `progress`."""
    from tqdm import tqdm

    bar = tqdm(
        total=run.total,
        initial=ts.step,
        disable=not progress or not run.writer,
        desc=type(run.method).__name__,
        unit="step",
        dynamic_ncols=True,
    )
    try:
        return _steps(run, ts, bar)
    finally:
        bar.close()


def _steps(run: Run, ts: TrainState, progress) -> TrainState:
    """The loop of `_loop`, updating the bar `progress`."""
    start = t = ts.step
    # Between events (checkpoints, evaluations, prunes, the end) the steps run on
    # `leaves`, those of the state's carry, with `step_fn`; `join` rebuilds the carry
    # at the next event. `leaves is None`: `ts` is current.
    leaves = step_fn = join = None
    while True:
        saving = (
            t != start and t < run.total and (t % run.checkpoint_every == 0 or t == run.stop_at)
        )
        if saving or t == run.stop_at or run.event_due(t):
            if leaves is not None:
                # The steps dispatched so far finish here, on the steps' clock: an event
                # that waited for them would count their time as its own.
                jax.block_until_ready(leaves)
                ts = ts.with_arrays(join(leaves)[:4])
                leaves = None
            ts = ts.replace(step=t)
            if saving:
                run.save(ts)
            if t == run.stop_at and t < run.total:
                break
            ts = run.at_event(ts, progress)
            if t == run.total:
                run.history["done"] = True
                run.save(ts)
                run.write_log()
                break
        if leaves is None:
            leaves, step_fn, join = run.flat.split(ts.carry(run.placement))
        xs, ys = run.data.host_batch(t)
        if run.parallel is not None:
            xs, ys = run.placement.batch(xs, ys)
        before, tic = run.compiles["train_step"], run.timer.elapsed()
        leaves, ce = step_fn(leaves, xs, ys, np.int32(t), run.augment_key)
        if run.parallel is not None and run.parallel.one_launch_at_a_time:
            jax.block_until_ready((leaves, ce))
        if run.compiles["train_step"] != before:
            run.timer.compile += run.timer.elapsed() - tic
        run.timer.steps += 1
        run.losses.append(ce)
        t += 1
        progress.update(1)
    return ts


def _data_parallel(mesh: Mesh | None, batch_size: int) -> tuple[DataParallel | None, Any]:
    """The run's `DataParallel` (`None` on one device) and the mesh's log record."""
    if mesh is None:
        return None, None
    parallel = DataParallel(mesh)
    parallel.check_batch(batch_size)
    record = parallel.describe()
    # A mesh of one device has nothing to split: the one-device path, without sharding.
    return (None if parallel.size == 1 else parallel), record


def _config(
    model,
    state,
    dataset,
    method,
    optimiser,
    augment,
    compile_ahead,
    buckets,
    settings,
    num_test,
    total,
    per_epoch,
    batch_size,
    eval_every,
    key,
) -> dict[str, Any]:
    """The log's `config`: every setting that makes the run what it is, checked on
    resume."""
    return {
        "settings": settings,
        "method": describe(method),
        "optimiser": describe_function(optimiser),
        "augment": None if augment is None else function_name(augment),  # type: ignore[arg-type]
        "compile_ahead": compile_ahead,
        "buckets": describe(buckets),
        "dataset": getattr(dataset, "name", None),
        "data": fingerprint([dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test]),
        "num_train": dataset.num_train,
        "num_test": num_test,
        "steps": total,
        "steps_per_epoch": per_epoch,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "key": np.asarray(jr.key_data(key)).ravel().tolist(),
        "initial_widths": widths(model),
        "initial_params": count_params(model),
        "initial_model": fingerprint(jtu.tree_leaves(eqx.filter((model, state), eqx.is_array))),
    }


def _check_kinds(model, method, buckets, batch_size, eval_batch_size, compile_ahead) -> None:
    """A `ValueError` naming the first argument of the wrong kind."""
    kinds = (
        ("method", method, AbstractMethod, "toolkit.pruning.AbstractMethod"),
        ("model", model, AbstractNetwork, "toolkit.nn network"),
        ("buckets", buckets, AbstractBuckets, "toolkit.pruning.AbstractBuckets"),
    )
    for name, value, kind, what in kinds:
        if not isinstance(value, kind):
            raise ValueError(f"`{name}` must be a {what}, got {type(value).__name__}.")
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if not isinstance(compile_ahead, int) or compile_ahead < 0:
        raise ValueError(f"`compile_ahead` must be an int >= 0, got {compile_ahead!r}.")


def _length(
    num_train, batch_size, steps, epochs, eval_every, checkpoint_every, stop_at
) -> tuple[int, int, int, int]:
    """`(total steps, steps per epoch, eval_every, checkpoint_every)`, or a
    `ValueError` that names the first inconsistent argument."""
    per_epoch = num_train // batch_size
    if per_epoch < 1:
        raise ValueError(f"`batch_size`={batch_size} exceeds the {num_train} training examples.")
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of `steps` and `epochs`.")
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    total = int(steps) if steps is not None else int(epochs) * per_epoch
    eval_every = per_epoch if eval_every is None else int(eval_every)
    if eval_every < 1:
        raise ValueError(f"`eval_every` must be positive, got {eval_every}.")
    checkpoint_every = eval_every if checkpoint_every is None else int(checkpoint_every)
    if checkpoint_every < 1:
        raise ValueError(f"`checkpoint_every` must be positive, got {checkpoint_every}.")
    if stop_at is not None and not 0 <= stop_at <= total:
        raise ValueError(f"`stop_at` must be in [0, {total}], got {stop_at}.")
    return total, per_epoch, eval_every, checkpoint_every


def _float_dtype(model) -> Any:
    for leaf in jtu.tree_leaves(model):
        if eqx.is_inexact_array(leaf):
            return leaf.dtype
    return jnp.result_type(float)
