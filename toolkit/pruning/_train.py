import functools
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._jit import filter_jit
from ..nn import AbstractNetwork
from ._activity import init_activity, record_activity
from ._ahead import CompileAhead, prune_activity
from ._buckets import (
    AbstractBuckets,
    all_alive,
    bucket_keep,
    hold,
    live_widths,
    mask,
    on_device,
    survivors,
    unmasked,
    WidthBuckets,
)
from ._checkpoint import load_checkpoint, save_checkpoint, shrink_to, write_atomic
from ._config import (
    describe as describe,
    describe_function,
    fingerprint,
    first_difference,
    function_name,
)
from ._dead import dead_from_masks
from ._flat import FlatStep
from ._measure import count_params, flops, widths
from ._method import AbstractMethod, Dense
from ._noise import fired, live_parameters
from ._parallel import DataParallel, writes
from ._prune import prune


def classification_loss(
    model: AbstractNetwork, state: eqx.nn.State, xs: Array, ys: Int[Array, " batch"]
) -> tuple[Float[Array, ""], tuple[eqx.nn.State, dict[str, tuple[Array, ...]]]]:
    """The mean softmax cross-entropy of `model` on a batch.

    **Arguments:**

    - `model`: a [`toolkit.nn.AbstractNetwork`][] (BatchNorm in training mode unless
        `eqx.nn.inference_mode` says otherwise).
    - `state`: its `eqx.nn.State`.
    - `xs`: a batch of inputs, batch axis first.
    - `ys`: their integer labels.

    **Returns:**

    `(loss, (state, preactivations))`: the loss, the updated state, and the batched
    pre-activations of every unit group (for [`toolkit.pruning.record_activity`][]),
    so that `jax.grad(..., has_aux=True)` gives the gradient with everything else.
    """
    logits, state, pre = jax.vmap(
        model.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
    )(xs, state)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
    return loss, (state, pre)


def _float_dtype(model) -> Any:
    for leaf in jtu.tree_leaves(model):
        if eqx.is_inexact_array(leaf):
            return leaf.dtype
    return jnp.result_type(float)


def _write_json(path, data) -> None:
    write_atomic(path, lambda f: json.dump(data, f, indent=1), mode="w")


class _Data:
    """Training batches as a pure function of the step; the test split, padded."""

    def __init__(self, dataset, batch_size, eval_batch_size, dtype, key, place):
        # `place(*host_arrays)`: the arrays on the devices (split over a mesh).
        self.place = place
        self.x = np.asarray(dataset.x_train).astype(dtype, copy=False)
        self.y = np.asarray(dataset.y_train).astype(np.int32, copy=False)
        self.batch_size = batch_size
        self.per_epoch = self.x.shape[0] // batch_size
        self.key = key
        self._epoch, self._order = -1, None
        xt = np.asarray(dataset.x_test).astype(dtype, copy=False)
        yt = np.asarray(dataset.y_test).astype(np.int32, copy=False)
        size = max(1, min(eval_batch_size, xt.shape[0]))
        # Padded to whole batches, so that evaluation compiles once per shape.
        pad = -xt.shape[0] % size
        xt = np.concatenate([xt, np.zeros((pad, *xt.shape[1:]), xt.dtype)])
        yt_padded = np.concatenate([yt, np.zeros(pad, np.int32)])
        valid = np.arange(xt.shape[0]) < yt.shape[0]
        self.eval_batches = [
            place(*(a[i : i + size] for a in (xt, yt_padded, valid)))
            for i in range(0, xt.shape[0], size)
        ]
        self.num_test = yt.shape[0]

    def batch(self, step: int, examples: int = 0) -> tuple[Array, Array]:
        """The batch of `step`; with `examples` larger than a batch, that many training
        examples: the batches of `step`, `step + 1`, ... (at most an epoch's)."""
        parts = [self.host_batch(step)]
        wanted = min(examples, self.per_epoch * self.batch_size)
        while sum(len(y) for _, y in parts) < wanted:
            parts.append(self.host_batch(step + len(parts)))
        if len(parts) == 1:
            xs, ys = parts[0]
        else:
            xs = np.concatenate([x for x, _ in parts])[:wanted]
            ys = np.concatenate([y for _, y in parts])[:wanted]
        return self.place(xs, ys)

    def host_batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of `step` as NumPy arrays (a jitted function takes them faster than
        `jnp.asarray` makes them)."""
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            # As `toolkit.data.batches`: one permutation per epoch, from the key.
            self._order = np.asarray(jr.permutation(jr.fold_in(self.key, epoch), self.x.shape[0]))
            self._epoch = epoch
        assert self._order is not None
        index = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[index], self.y[index]


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
    eval_batch_size: int = 1000,
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
    - `eval_batch_size`: examples per evaluation batch.
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
    from tqdm import tqdm

    method = Dense() if method is None else method
    if not isinstance(method, AbstractMethod):
        raise ValueError(
            f"`method` must be a toolkit.pruning.AbstractMethod, got {type(method).__name__}."
        )
    if not isinstance(model, AbstractNetwork):
        raise ValueError(f"`model` must be a toolkit.nn network, got {type(model).__name__}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    per_epoch = dataset.num_train // batch_size
    if per_epoch < 1:
        raise ValueError(
            f"`batch_size`={batch_size} exceeds the {dataset.num_train} training examples."
        )
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of `steps` and `epochs`.")
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    total = int(steps) if steps is not None else int(epochs) * per_epoch  # type: ignore[arg-type]
    if not isinstance(eval_batch_size, int) or eval_batch_size < 1:
        raise ValueError(f"`eval_batch_size` must be a positive int, got {eval_batch_size!r}.")
    eval_every = per_epoch if eval_every is None else int(eval_every)
    if eval_every < 1:
        raise ValueError(f"`eval_every` must be positive, got {eval_every}.")
    checkpoint_every = eval_every if checkpoint_every is None else int(checkpoint_every)
    if checkpoint_every < 1:
        raise ValueError(f"`checkpoint_every` must be positive, got {checkpoint_every}.")
    if not isinstance(buckets, AbstractBuckets):
        raise ValueError(
            f"`buckets` must be a toolkit.pruning.AbstractBuckets, got {type(buckets).__name__}."
        )
    if not isinstance(compile_ahead, int) or compile_ahead < 0:
        raise ValueError(f"`compile_ahead` must be an int >= 0, got {compile_ahead!r}.")
    if stop_at is not None and not 0 <= stop_at <= total:
        raise ValueError(f"`stop_at` must be in [0, {total}], got {stop_at}.")
    optimiser = optax.adamw(1e-3) if optimiser is None else optimiser

    parallel, mesh_record = None, None
    if mesh is not None:
        parallel = DataParallel(mesh)
        parallel.check_batch(batch_size)
        mesh_record = parallel.describe()
        if parallel.size == 1:
            parallel = None  # nothing to split: the one-device path, without sharding
    writer = writes(parallel)
    if parallel is None:

        def place(*arrays):
            return tuple(jnp.asarray(a) for a in arrays)

        def replicate(tree):
            return tree

        def on_mesh(alive):
            return on_device(alive)

    else:
        place, replicate = parallel.batch, parallel.replicate

        def on_mesh(alive):
            return parallel.replicate(dict(alive))

    dtype = _float_dtype(model)
    data_key, noise_key, select_key, augment_key = jr.split(key, 4)
    data = _Data(dataset, batch_size, eval_batch_size, dtype, data_key, place)
    transform = method.transform(total, noise_key)
    schedules = method.schedules(total)
    compiles: Counter = Counter({"train_step": 0, "eval_step": 0})

    def _loss(model, state, xs, ys, t):
        ce, (state, pre) = classification_loss(model, state, xs, ys)
        reg = method.regulariser(model, t, total)
        return ce + jnp.asarray(reg, ce.dtype), (ce, state, pre)

    def train_step(model, state, opt_state, activity, alive, xs, ys, t, key):
        compiles["train_step"] += 1  # at trace time: counts compilations
        if augment is not None:
            # Folded in here, not per step on the host: an eager `fold_in` of an "rbg"
            # key costs about 1 ms, as much as a whole step of a pruned network.
            key = jr.fold_in(key, t)
            xs = jax.vmap(augment)(jr.split(key, xs.shape[0]), xs)
        grad_fn = eqx.filter_value_and_grad(_loss, has_aux=True)
        (_, (ce, state, pre)), grads = grad_fn(model, state, xs, ys, t)
        params = eqx.filter(model, eqx.is_inexact_array)
        inner, outer = opt_state
        # Masked units (see `buckets`) get zero gradients and zero updates, whatever
        # weight decay, noise or a penalty's subgradient at zero would give them.
        mask = live_parameters(model, alive)
        updates, inner = optimiser.update(hold(grads, mask), inner, params)
        live = live_parameters(model, {k: f & alive[k] for k, f in fired(pre).items()})
        updates, outer = transform.update(updates, outer, params, live=live)
        model = eqx.apply_updates(model, hold(updates, mask))
        return model, state, (inner, outer), record_activity(activity, pre), alive, ce

    @filter_jit
    def eval_step(model, state, xs, ys, valid):
        compiles["eval_step"] += 1
        model = eqx.nn.inference_mode(model)
        logits, _, pre = jax.vmap(
            model.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
        )(xs, state)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, ys)
        correct = (jnp.argmax(logits, axis=1).astype(ys.dtype) == ys) & valid
        masked = {
            k: tuple(jnp.where(valid.reshape((-1,) + (1,) * (a.ndim - 1)), a, -1) for a in v)
            for k, v in pre.items()
        }
        return jnp.sum(jnp.where(valid, ce, 0)), jnp.sum(correct), fired(masked)

    params = eqx.filter(model, eqx.is_inexact_array)
    opt_state = (optimiser.init(params), transform.init(params))
    activity = init_activity(model)
    alive = all_alive(model)  # the units not masked, in every group of the arrays
    config = {
        "settings": settings,
        "method": describe(method),
        "optimiser": describe_function(optimiser),
        "augment": None if augment is None else function_name(augment),  # type: ignore[arg-type]
        "compile_ahead": compile_ahead,
        "buckets": describe(buckets),
        "dataset": getattr(dataset, "name", None),
        "data": fingerprint([dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test]),
        "num_train": dataset.num_train,
        "num_test": data.num_test,
        "steps": total,
        "steps_per_epoch": per_epoch,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "key": np.asarray(jr.key_data(key)).ravel().tolist(),
        "initial_widths": widths(model),
        "initial_params": count_params(model),
        "initial_model": fingerprint(jtu.tree_leaves(eqx.filter((model, state), eqx.is_array))),
    }
    # As it reads back from JSON (lists for tuples), for the check on resume.
    config = json.loads(json.dumps(config))
    model, state, opt_state, activity = replicate((model, state, opt_state, activity))
    history: dict[str, Any] = {
        "config": config,
        "evaluations": [],
        "prunes": [],
        "compilations": {},
        "done": False,
        "mesh": mesh_record,
    }
    losses: list = []
    previous_compiles: dict[str, int] = {}
    start = 0
    saved = None  # the step of the checkpoint on disk, if any
    pending_header = None

    if checkpoint is not None and os.path.exists(checkpoint):

        def skeleton(header):
            different = first_difference(header["history"]["config"], config)
            if different is not None:
                name, theirs, mine = different
                raise ValueError(
                    f"the checkpoint {os.fspath(checkpoint)!r} was written by another run: "
                    f"its {name} is {theirs!r}, this run's is {mine!r}. Resume with the "
                    "settings it was written with, or give another checkpoint file."
                )
            small = shrink_to((model, state, opt_state), model, header["widths"])
            return (*small, init_activity(small[0]))

        header, restored = load_checkpoint(checkpoint, skeleton)
        model, state, opt_state, activity = replicate(restored)
        alive = all_alive(model)
        start = saved = header["step"]
        history = header["history"]
        history["mesh"] = mesh_record
        losses = list(header["losses"])
        previous_compiles = history["compilations"]
        pending_header = header.get("pending")
        for k, masked in header.get("masked", {}).items():
            alive[k][masked] = False
        if history["done"]:
            if log is not None and writer:
                _write_json(log, history)
            print(
                f"the run in {os.fspath(checkpoint)} is already complete ({total} steps): "
                "nothing to train" + ("" if log is None else f"; its log is in {os.fspath(log)}"),
                file=sys.stderr,
            )
            return *unmasked((model, state), model, alive), history
        if writer:
            print(
                f"resuming from step {start} of {total} ({os.fspath(checkpoint)})", file=sys.stderr
            )

    def compilations() -> dict[str, int]:
        return {k: previous_compiles.get(k, 0) + compiles[k] for k in compiles}

    sizes: dict[tuple, tuple[int, int]] = {}

    def measure(w: dict[str, int]) -> tuple[int, int]:
        # The parameters and FLOPs of the network pruned to `w` units per group.
        if tuple(w.items()) not in sizes:
            small, small_state = shrink_to((model, state), model, w)
            x = jnp.zeros(dataset.shape, dtype)
            sizes[tuple(w.items())] = count_params(small), flops(small, small_state, x)
        return sizes[tuple(w.items())]

    # Wall time of the training steps since the last evaluation: compilations, prunes
    # and checkpoints are timed apart and taken out.
    timer = {"start": time.perf_counter(), "compile": 0.0, "other": 0.0, "steps": 0}

    def evaluate(t: int) -> dict[str, Any]:
        jax.block_until_ready(eqx.filter((model, state), eqx.is_array))
        elapsed = time.perf_counter() - timer["start"]
        loss_sum, correct, live = 0.0, 0, None
        for xs, ys, valid in data.eval_batches:
            s, c, f = steps_now["eval"](model, state, xs, ys, valid)
            loss_sum += float(s)
            correct += int(c)
            f = {k: np.asarray(v) for k, v in f.items()}  # on the host: no kernel per shape
            live = f if live is None else {k: live[k] | f[k] for k in f}
        assert live is not None
        w = live_widths(alive)
        n_params, n_flops = measure(w)
        steps_done = timer["steps"]
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
            "step_time": (
                (elapsed - timer["compile"] - timer["other"]) / steps_done if steps_done else None
            ),
            "compile_time": timer["compile"],
            "compilations": compilations(),
            **{name: float(fn(t)) for name, fn in schedules.items()},
        }
        history["evaluations"].append(record)
        history["compilations"] = compilations()
        losses.clear()
        if log is not None and writer:
            _write_json(log, history)
        timer.update(start=time.perf_counter(), compile=0.0, other=0.0, steps=0)
        loss = record["train_loss"]
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: the mean training loss of the steps up to step {t} is "
                f"{loss} (the learning rate, the regulariser or the noise may be too large)."
                + ("" if log is None else f" The log up to here is in {os.fspath(log)}.")
            )
        return record

    # The jitted steps in use; after a prune with `compile_ahead`, the ones compiled
    # ahead for the pruned shapes.
    steps_now: dict[str, Callable] = {"eval": eval_step}
    # The training step, called on the carry's leaves between events (`FlatStep`).
    flat = FlatStep(train_step)
    # A prune whose shapes are compiling: {"switch_at", "keep", "job"}.
    pending: dict[str, Any] | None = None

    def start_ahead(keep: dict[str, np.ndarray], small, switch_at: int, t: int) -> None:
        # Compile the steps of the shapes of `small` (the `(model, state, opt_state)`
        # pruned to `keep`) in the background, the removed units being masked;
        # `switch` prunes for real.
        nonlocal pending
        # Traced here, in this thread's JAX configuration; XLA compiles in another.
        tic = time.perf_counter()
        xs, ys = place(*data.host_batch(min(t, total - 1)))
        carry = (*small, init_activity(small[0]), on_mesh(_take(alive, keep)))
        lowered = {
            "train": flat.lower(carry, xs, ys, np.int32(t), augment_key),
            "eval": eval_step.lower(small[0], small[1], *data.eval_batches[0]),
        }
        job = CompileAhead({k: v.compile for k, v in lowered.items()})
        timer["compile"] += time.perf_counter() - tic
        pending = {"switch_at": switch_at, "keep": keep, "job": job}

    def switch() -> None:
        nonlocal model, state, opt_state, activity, alive, pending
        assert pending is not None
        tic = time.perf_counter()
        compiled = pending["job"].result()
        timer["compile"] += time.perf_counter() - tic
        keep = pending["keep"]
        model, state, opt_state = _prune_keeping((model, state, opt_state), model, keep)
        activity = prune_activity(activity, model, keep)
        model, state, opt_state, activity = replicate((model, state, opt_state, activity))
        alive = _take(alive, keep)
        flat.install((model, state, opt_state, activity, on_mesh(alive)), compiled.pop("train"))
        steps_now.update(compiled)
        pending = None

    @functools.cache
    def prune_at(t: int) -> bool:
        return bool(method.prune_at(t, total))

    def boundary_due(t: int) -> bool:
        # Whether `boundary(t)` has anything to do: a switch, a prune check or an
        # evaluation.
        return (
            t % eval_every == 0
            or t == total
            or prune_at(t)
            or (pending is not None and t >= pending["switch_at"])
        )

    def boundary(t: int) -> None:
        nonlocal model, state, opt_state, activity, alive
        tic, compiling = time.perf_counter(), timer["compile"]
        evaluating = t % eval_every == 0 or t == total
        if pending is not None and (t >= pending["switch_at"] or evaluating or prune_at(t)):
            switch()
        if prune_at(t):
            # The method selects as if on the network without its masked units.
            extra = {"transform_state": opt_state[1]} if _reads_transform(method) else {}
            dead = method.select_masked(
                model,
                state,
                activity,
                alive,
                data.batch(min(t, total - 1), int(getattr(method, "select_examples", 0))),
                step=t,
                total_steps=total,
                key=jr.fold_in(select_key, t),
                **extra,
            )
            if dead is not None and any(np.any(np.asarray(m)) for m in dead.masks.values()):
                before = live_widths(alive)
                empty = "keep_most_active" if dead.peak is not None else "error"
                alive = survivors(alive, dead, empty)
                after = live_widths(alive)
                history["prunes"].append(
                    {
                        "step": t,
                        "removed": {k: before[k] - after[k] for k in before},
                        "widths": after,
                        "params": measure(after)[0],
                    }
                )
                keep = None  # at the end, the arrays shrink on return
                if t < total:
                    last = not any(prune_at(s) for s in range(t + 1, total))
                    initial, long = config["initial_widths"], 4 * (total - t) >= total
                    keep = bucket_keep(alive, buckets, initial, last=last, long=long)
                if keep is not None and compile_ahead == 0:
                    model, state, opt_state = _prune_keeping((model, state, opt_state), model, keep)
                    alive = _take(alive, keep)
                    steps_now.update(eval=eval_step)
                model, opt_state = mask((model, opt_state), model, alive)
                model, state, opt_state = replicate((model, state, opt_state))
                if keep is not None and compile_ahead > 0:
                    small = replicate(_prune_keeping((model, state, opt_state), model, keep))
                    start_ahead(keep, small, t + compile_ahead, t)
            if dead is not None:
                activity = replicate(init_activity(model))
        timer["other"] += time.perf_counter() - tic - (timer["compile"] - compiling)
        if evaluating:
            record = evaluate(t)
            bar.set_postfix(
                acc=f"{record['test_accuracy']:.4f}", params=record["params"], refresh=False
            )

    def save(t: int) -> None:
        nonlocal saved
        if checkpoint is None:
            return
        tic = time.perf_counter()
        # Checked before anything is written: a diverged run must not replace the last
        # good checkpoint with one full of NaNs (issue 25, item 7).
        step_losses = [float(x) for x in losses]
        bad = [x for x in step_losses if not math.isfinite(x)]
        arrays = jtu.tree_leaves(eqx.filter((model, state, opt_state), eqx.is_inexact_array))
        if bad or not all(np.isfinite(np.asarray(a)).all() for a in arrays):
            what = f"the training loss is {bad[0]}" if bad else "the parameters are not finite"
            kept = (
                "it was not written"
                if saved is None
                else f"it was not overwritten and keeps step {saved}, the last good one"
            )
            raise FloatingPointError(
                f"training diverged before step {t}: {what} (the learning rate, the "
                f"regulariser or the noise may be too large). The checkpoint "
                f"{os.fspath(checkpoint)!r}: {kept}."
            )
        history["compilations"] = compilations()
        header = {
            "step": t,
            "widths": widths(model),
            "masked": {k: np.flatnonzero(~a).tolist() for k, a in alive.items()},
            "losses": step_losses,
            "history": history,
            "pending": None
            if pending is None
            else {
                "switch_at": pending["switch_at"],
                "keep": {k: v.tolist() for k, v in pending["keep"].items()},
            },
        }
        if writer:
            save_checkpoint(checkpoint, header, (model, state, opt_state, activity))
        if parallel is not None and jax.process_count() > 1:
            # Every process may read it back (a resume, or `stop_at` then a new call).
            multihost_utils.sync_global_devices(f"toolkit checkpoint {t}")
        saved = t
        timer["other"] += time.perf_counter() - tic

    if pending_header is not None:  # resuming between a prune and its switch
        keep = {k: np.asarray(v, dtype=np.int64) for k, v in pending_header["keep"].items()}
        small = replicate(_prune_keeping((model, state, opt_state), model, keep))
        start_ahead(keep, small, pending_header["switch_at"], start)

    bar = tqdm(
        total=total,
        initial=start,
        disable=not progress or not writer,
        desc=type(method).__name__,
        unit="step",
        dynamic_ncols=True,
    )
    try:
        t = start
        # Between events (checkpoints, evaluations, prunes, the end) the steps run on
        # `leaves`, those of (model, state, opt_state, activity), with `step_fn`; `join`
        # rebuilds the pytrees at the next event. `leaves is None`: the pytrees are
        # current.
        leaves = step_fn = join = None
        while True:
            saving = t != start and t < total and (t % checkpoint_every == 0 or t == stop_at)
            if saving or t == stop_at or boundary_due(t):
                if leaves is not None:
                    model, state, opt_state, activity, _ = join(leaves)
                    leaves = None
                if saving:
                    save(t)
                if stop_at is not None and t == stop_at and t < total:
                    break
                boundary(t)
                if t == total:
                    history["done"] = True
                    save(t)
                    if log is not None and writer:
                        _write_json(log, history)
                    break
            if leaves is None:
                carry = (model, state, opt_state, activity, on_mesh(alive))
                leaves, step_fn, join = flat.split(carry)
            xs, ys = data.host_batch(t)
            if parallel is not None:
                xs, ys = place(xs, ys)
            before = compiles["train_step"]
            tic = time.perf_counter()
            leaves, ce = step_fn(leaves, xs, ys, np.int32(t), augment_key)
            if compiles["train_step"] != before:
                timer["compile"] += time.perf_counter() - tic
            timer["steps"] += 1
            losses.append(ce)
            t += 1
            bar.update(1)
    finally:
        bar.close()
    model, state = unmasked((model, state), model, alive)
    return model, state, history


def _reads_transform(method: AbstractMethod) -> bool:
    return bool(getattr(method, "select_transform_state", False))


def _take(alive: dict[str, np.ndarray], keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: a[keep[k]] for k, a in alive.items()}


def _prune_keeping(tree, model: AbstractNetwork, keep: dict[str, np.ndarray]):
    """`prune` `tree` (laid out like `model`) to the units of `keep`, a dict from group
    name to the indices of the units to keep."""
    masks = {}
    for name, size in widths(model).items():
        mask = np.ones(size, dtype=bool)
        mask[keep[name]] = False
        masks[name] = mask
    return prune(tree, dead_from_masks(model, masks))
