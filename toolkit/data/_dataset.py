import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int


class Dataset(eqx.Module):
    """A classification data set, split into training and test examples.

    Examples are `float32` and channels-first: images are `(C, H, W)` and signals
    are `(C, L)` per example, which is what `equinox.nn.Conv2d` / `Conv1d` take,
    so a batch is `(N, C, H, W)` (NCHW). Labels are `int32` in `[0, num_classes)`.

    **Attributes:**

    - `name`: the data set's name, as given to [`toolkit.data.load`][] (with
        `:validation` appended by [`toolkit.data.validation_split`][]).
    - `x_train`: `(N_train, C, ...)` training examples.
    - `y_train`: `(N_train,)` training labels.
    - `x_test`: `(N_test, C, ...)` test (or held-out) examples.
    - `y_test`: `(N_test,)` test labels.
    - `num_classes`: the number of classes.
    - `classes`: the classes' names, `classes[label]`.
    - `mean`: `(C,)` the per-channel mean that was subtracted (0 if not normalised).
    - `std`: `(C,)` the per-channel standard deviation that was divided by (1 if not
        normalised). Both come from the training split only, so
        `x * std[:, None, None] + mean[:, None, None]` undoes the normalisation of an
        image.
    """

    x_train: Float[Array, "N_train C *spatial"]
    y_train: Int[Array, " N_train"]
    x_test: Float[Array, "N_test C *spatial"]
    y_test: Int[Array, " N_test"]
    mean: Float[Array, " C"]
    std: Float[Array, " C"]
    name: str = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    classes: tuple[str, ...] = eqx.field(static=True)

    def __check_init__(self):
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"`x_{split}` has {x.shape[0]} examples but `y_{split}` has "
                    f"{y.shape[0]} labels."
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"Training examples of shape {self.x_train.shape[1:]} and test examples of "
                f"shape {self.x_test.shape[1:]} differ."
            )
        if len(self.classes) != self.num_classes:
            raise ValueError(
                f"`classes` has {len(self.classes)} names for {self.num_classes} classes."
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example, `(C, H, W)` or `(C, L)`."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        """The number of training examples."""
        return self.x_train.shape[0]

    @property
    def num_test(self) -> int:
        """The number of test examples."""
        return self.x_test.shape[0]


def _channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    # Two passes over chunks of examples, accumulating in float64: exact enough for
    # 8-bit images, without a float64 copy of a whole data set (1.2 GB for CIFAR-10).
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    total = np.zeros(x.shape[1], np.float64)
    for start in range(0, x.shape[0], chunk):
        total += x[start : start + chunk].sum(axis=axes, dtype=np.float64)
    mean = total / count
    shape = (1, -1) + (1,) * (x.ndim - 2)
    squares = np.zeros(x.shape[1], np.float64)
    for start in range(0, x.shape[0], chunk):
        centred = x[start : start + chunk].astype(np.float64) - mean.reshape(shape)
        squares += np.square(centred).sum(axis=axes)
    std = np.sqrt(squares / count)
    return mean, np.where(std > 0, std, 1.0)


def make_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: tuple[str, ...],
    *,
    scale: float,
    normalise: bool,
) -> Dataset:
    """Builds a `Dataset` from channels-first numpy arrays.

    Examples are divided by `scale` (255 for 8-bit images), then, if `normalise`,
    standardised per channel with statistics of the training split.
    """
    # Copies, scaled and normalised in place: one float32 copy of each split at a time.
    x_train = np.array(x_train, np.float32)
    x_test = np.array(x_test, np.float32)
    x_train /= np.float32(scale)
    x_test /= np.float32(scale)
    channels = x_train.shape[1]
    if normalise:
        mean, std = _channel_stats(x_train)
    else:
        mean, std = np.zeros(channels), np.ones(channels)
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    shape = (1, -1) + (1,) * (x_train.ndim - 2)
    for x in (x_train, x_test):
        x -= mean.reshape(shape)
        x /= std.reshape(shape)
    # `device_put`, not `jnp.asarray`: the latter compiles a small program for each
    # shape and dtype it moves (these are copies: nothing else holds them).
    return Dataset(
        x_train=jax.device_put(x_train),
        y_train=jax.device_put(np.array(y_train, np.int32)),
        x_test=jax.device_put(x_test),
        y_test=jax.device_put(np.array(y_test, np.int32)),
        mean=jax.device_put(mean),
        std=jax.device_put(std),
        name=name,
        num_classes=len(classes),
        classes=tuple(classes),
    )
