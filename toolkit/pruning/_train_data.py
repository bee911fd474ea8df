"""The data of a training run: its batches as a function of the step, and the
held-out split in whole evaluation batches."""

import jax.random as jr
import numpy as np
from jaxtyping import Array


class TrainingData:
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
        self.eval_size = max(1, min(eval_batch_size, xt.shape[0]))
        self.eval_batches = self.padded(xt, yt)
        self.num_test = yt.shape[0]

    def padded(self, xs: np.ndarray, ys: np.ndarray) -> list[tuple[Array, Array, Array]]:
        """`(xs, ys, valid)` in evaluation batches, the last padded (`valid` false
        there), so that evaluation compiles once per shape."""
        size, n = self.eval_size, xs.shape[0]
        pad = -n % size
        xs = np.concatenate([xs, np.zeros((pad, *xs.shape[1:]), xs.dtype)])
        ys = np.concatenate([ys, np.zeros(pad, np.int32)])
        valid = np.arange(xs.shape[0]) < n
        return [self.place(*(a[i : i + size] for a in (xs, ys, valid))) for i in range(0, n, size)]

    def batch(self, step: int, examples: int = 0) -> tuple[Array, Array]:
        """The batch of `step`; with `examples` larger than a batch, that many training
        examples: the batches of `step`, `step + 1`, ... (at most an epoch's)."""
        return self.place(*self.host_examples(step, examples))

    def host_examples(self, step: int, examples: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`batch(step, examples)` as NumPy arrays."""
        parts = [self.host_batch(step)]
        wanted = min(examples, self.per_epoch * self.batch_size)
        while sum(len(y) for _, y in parts) < wanted:
            parts.append(self.host_batch(step + len(parts)))
        if len(parts) == 1:
            return parts[0]
        xs = np.concatenate([x for x, _ in parts])[:wanted]
        ys = np.concatenate([y for _, y in parts])[:wanted]
        return xs, ys

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
