from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ._base import AbstractNetwork, check_example, make_norm, normalise, PreActivations
from ._conv import convolve
from ._wiring import Group, inputs_of, norm_of, outputs_of


def _at(name: str, i: int):
    return lambda m: getattr(m, name)[i]


def max_pool(x: Array) -> Array:
    """2×2 max pooling with stride 2 of a `(channels, height, width)` array (an odd
    last row or column is dropped)."""
    # Two strided maxima rather than `lax.reduce_window`: on the CPU the gradient of
    # the latter (a select-and-scatter) cost 3.7 ms of a 32 ms LeNet-5 training step
    # (batch 128) in its first pool alone, against 0.4 ms for this. The values are the
    # same; the gradients differ only where a window holds equal maxima (a flat
    # background, zeros after the ReLU), which share it rather than one taking it all.
    _, h, w = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    x = jnp.maximum(x[:, 0::2], x[:, 1::2])
    return jnp.maximum(x[:, :, 0::2], x[:, :, 1::2])


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def make_layers(
    in_channels: int,
    out_size: int,
    image_size: int | Sequence[int],
    features: Sequence[int | str],
    hidden: Sequence[int],
    kernel_size: int,
    batch_norm: bool,
    key: PRNGKeyArray,
    dtype,
) -> dict:
    """Convolutions (ints of `features`, each followed by BatchNorm and ReLU), 2×2 max
    pools ("M" in `features`), then a flattening and linear layers of widths
    `hidden` and `out_size`."""
    h, w = _pair(image_size)
    channels = [f for f in features if f != "M"]
    if any(f != "M" and not isinstance(f, int) for f in features):
        raise ValueError(f"`features` holds channel counts and 'M' (pool), got {features}.")
    if not channels:
        raise ValueError("`features` needs at least one convolution.")
    if features[0] == "M":
        raise ValueError("`features` must start with a convolution.")
    pools = []
    for f in features:
        if f == "M":
            pools[-1] = True
            h, w = h // 2, w // 2
        else:
            pools.append(False)
    if h < 1 or w < 1:
        raise ValueError(f"`image_size` {image_size} is too small for {features.count('M')} pools.")
    ckey, lkey = jr.split(key)
    convs, norms = [], []
    c_in = in_channels
    for f, k in zip(channels, jr.split(ckey, len(channels))):
        convs.append(
            eqx.nn.Conv2d(
                c_in,
                f,
                kernel_size,
                padding=kernel_size // 2,
                use_bias=not batch_norm,
                dtype=dtype,
                key=k,
            )
        )
        norms.append(make_norm(f, batch_norm, dtype))
        c_in = f
    sizes = (c_in * h * w, *hidden, out_size)
    linears = tuple(
        eqx.nn.Linear(a, b, use_bias=not (batch_norm and n < len(hidden)), dtype=dtype, key=k)
        for n, (a, b, k) in enumerate(zip(sizes[:-1], sizes[1:], jr.split(lkey, len(sizes) - 1)))
    )
    return dict(
        image_size=_pair(image_size),
        convs=tuple(convs),
        conv_norms=tuple(norms),
        pools=tuple(pools),
        linears=linears,
        linear_norms=tuple(make_norm(n, batch_norm, dtype) for n in hidden),
    )


class AbstractConvClassifier(AbstractNetwork):
    """Convolutions (→ BatchNorm → ReLU → optional 2×2 max pool), flattening, then a
    perceptron. Its groups are `"conv.0"`, `"conv.1"`, ... (channels) and `"fc.0"`,
    ... (hidden units of the perceptron)."""

    image_size: eqx.AbstractVar[tuple[int, int]]
    convs: eqx.AbstractVar[tuple[eqx.nn.Conv2d, ...]]
    conv_norms: eqx.AbstractVar[tuple[eqx.nn.BatchNorm | None, ...]]
    pools: eqx.AbstractVar[tuple[bool, ...]]
    linears: eqx.AbstractVar[tuple[eqx.nn.Linear, ...]]
    linear_norms: eqx.AbstractVar[tuple[eqx.nn.BatchNorm | None, ...]]

    def preactivations(
        self, x: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[Array, eqx.nn.State, PreActivations]:
        name = type(self).__name__
        check_example(name, x, (self.convs[0].weight.shape[1], *self.image_size))
        pre = {}
        for i, (conv, norm, pool) in enumerate(zip(self.convs, self.conv_norms, self.pools)):
            z, state = normalise(norm, convolve(conv, x), state)
            pre[f"conv.{i}"] = (z,)
            x = jax.nn.relu(z)
            if pool:
                x = max_pool(x)
        x = jnp.ravel(x)
        for j, (linear, norm) in enumerate(zip(self.linears[:-1], self.linear_norms)):
            z, state = normalise(norm, linear(x), state)
            pre[f"fc.{j}"] = (z,)
            x = jax.nn.relu(z)
        return self.linears[-1](x), state, pre

    def wiring(self) -> dict[str, Group]:
        groups = {}
        n = len(self.convs)
        for i in range(n):
            if i + 1 < n:
                consumer = inputs_of(self.convs[i + 1], _at("convs", i + 1))
            else:
                # The flattening gives each channel height × width consecutive columns.
                area = self.linears[0].weight.shape[1] // self.convs[-1].weight.shape[0]
                consumer = inputs_of(self.linears[0], _at("linears", 0), block=area)
            slots = (
                outputs_of(self.convs[i], _at("convs", i))
                + norm_of(self.conv_norms[i], _at("conv_norms", i))
                + consumer
            )
            groups[f"conv.{i}"] = Group(self.convs[i].weight.shape[0], tuple(slots))
        for j in range(len(self.linears) - 1):
            slots = (
                outputs_of(self.linears[j], _at("linears", j))
                + norm_of(self.linear_norms[j], _at("linear_norms", j))
                + inputs_of(self.linears[j + 1], _at("linears", j + 1))
            )
            groups[f"fc.{j}"] = Group(self.linears[j].weight.shape[0], tuple(slots))
        return groups


class ConvNet(AbstractConvClassifier):
    """A LeNet-style convolutional network: convolutions with "same" padding, each
    followed by (BatchNorm,) ReLU and a 2×2 max pool, then a ReLU perceptron.

    Its groups are `"conv.0"`, `"conv.1"`, ... (channels of each convolution) and
    `"fc.0"`, `"fc.1"`, ... (units of each hidden linear layer).
    """

    image_size: tuple[int, int] = eqx.field(static=True)
    convs: tuple[eqx.nn.Conv2d, ...]
    conv_norms: tuple[eqx.nn.BatchNorm | None, ...]
    pools: tuple[bool, ...] = eqx.field(static=True)
    linears: tuple[eqx.nn.Linear, ...]
    linear_norms: tuple[eqx.nn.BatchNorm | None, ...]

    def __init__(
        self,
        in_channels: int,
        out_size: int,
        image_size: int | Sequence[int] = 28,
        channels: Sequence[int] = (6, 16),
        hidden: Sequence[int] = (120, 84),
        kernel_size: int = 5,
        batch_norm: bool = False,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        """**Arguments:**

        - `in_channels`: channels of the input images, shaped `(channels, height, width)`.
        - `out_size`: the number of outputs.
        - `image_size`: the height and width of the input (an int for square images).
        - `channels`: output channels of each convolution (each one halves the image).
        - `hidden`: widths of the hidden linear layers.
        - `kernel_size`: the side of the square convolution kernels.
        - `batch_norm`: whether to normalise every hidden layer with an
            `eqx.nn.BatchNorm` (the layers before it then have no bias).
        - `key`: a PRNG key for the initialisation.
        - `dtype`: the floating dtype of the parameters (JAX's default if `None`).
        """
        features = [f for c in channels for f in (c, "M")]
        layers = make_layers(
            in_channels, out_size, image_size, features, hidden, kernel_size, batch_norm, key, dtype
        )
        self.image_size = layers["image_size"]
        self.convs = layers["convs"]
        self.conv_norms = layers["conv_norms"]
        self.pools = layers["pools"]
        self.linears = layers["linears"]
        self.linear_norms = layers["linear_norms"]
