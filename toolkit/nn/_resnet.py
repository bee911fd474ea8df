from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ._base import AbstractNetwork, check_example, make_norm, normalise, PreActivations
from ._conv import convolve
from ._wiring import Group, inputs_of, norm_of, outputs_of


def _then(where: Callable, name: str) -> Callable:
    return lambda m: getattr(where(m), name)


def _block_at(s: int, b: int) -> Callable:
    return lambda m: m.stages[s][b]


class BasicBlock(eqx.Module):
    """A residual basic block (He et al. 2016): two 3×3 convolutions, the first one
    possibly strided, and a shortcut that is the identity or, where the shape changes,
    a strided 1×1 convolution (a projection), each with BatchNorm:

        y = relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x)).
    """

    conv1: eqx.nn.Conv2d
    norm1: eqx.nn.BatchNorm | None
    conv2: eqx.nn.Conv2d
    norm2: eqx.nn.BatchNorm | None
    projection: eqx.nn.Conv2d | None
    projection_norm: eqx.nn.BatchNorm | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        batch_norm: bool,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        k1, k2, k3 = jr.split(key, 3)
        bias = not batch_norm
        self.conv1 = eqx.nn.Conv2d(
            in_channels, out_channels, 3, stride, 1, use_bias=bias, dtype=dtype, key=k1
        )
        self.norm1 = make_norm(out_channels, batch_norm, dtype)
        self.conv2 = eqx.nn.Conv2d(
            out_channels, out_channels, 3, 1, 1, use_bias=bias, dtype=dtype, key=k2
        )
        self.norm2 = make_norm(out_channels, batch_norm, dtype)
        if stride != 1 or in_channels != out_channels:
            self.projection = eqx.nn.Conv2d(
                in_channels, out_channels, 1, stride, use_bias=bias, dtype=dtype, key=k3
            )
            self.projection_norm = make_norm(out_channels, batch_norm, dtype)
        else:
            self.projection = None
            self.projection_norm = None

    def __call__(self, x: Array, state: eqx.nn.State) -> tuple[Array, eqx.nn.State, Array, Array]:
        """Returns the output, the state, and the inputs of the inner and outer ReLUs."""
        inner, state = normalise(self.norm1, self.conv1(x), state)
        z, state = normalise(self.norm2, self.conv2(jax.nn.relu(inner)), state)
        if self.projection is None:
            shortcut = x
        else:
            shortcut, state = normalise(self.projection_norm, self.projection(x), state)
        outer = z + shortcut
        return jax.nn.relu(outer), state, inner, outer


class ResNet(AbstractNetwork):
    """A residual network of basic blocks with a CIFAR stem (one 3×3 convolution,
    no max pool), global average pooling and a linear classifier.

    The defaults are the ResNet-18 layout (stages of 2, 2, 2, 2 blocks of 64, 128,
    256, 512 channels); `blocks=(1, 1, 1), widths=(16, 32, 64)` gives a small
    variant. Every stage after the first halves the image with a strided first block,
    whose shortcut is a projection.

    Its groups: `"stage.{s}"` are the channels of stage s's residual stream, tied
    across every block of the stage (and, for the first stage, the stem), since the
    blocks add into the same channels; a channel is dead only when it is zero after
    every ReLU that writes the stream. `"stage.{s}.block.{b}"` are the inner channels
    of block b.
    """

    stem: eqx.nn.Conv2d
    stem_norm: eqx.nn.BatchNorm | None
    stages: tuple[tuple[BasicBlock, ...], ...]
    fc: eqx.nn.Linear

    def __init__(
        self,
        in_channels: int,
        out_size: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        batch_norm: bool = True,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        """**Arguments:**

        - `in_channels`: channels of the input images, shaped `(channels, height, width)`.
        - `out_size`: the number of outputs.
        - `blocks`: the number of basic blocks of each stage.
        - `widths`: the channels of each stage (the stem has `widths[0]`).
        - `batch_norm`: whether every convolution is followed by an `eqx.nn.BatchNorm`
            (the convolutions then have no bias).
        - `key`: a PRNG key for the initialisation.
        - `dtype`: the floating dtype of the parameters (JAX's default if `None`).
        """
        if len(blocks) != len(widths) or not blocks or min(blocks) < 1:
            raise ValueError(
                f"`blocks` and `widths` need one positive entry per stage, got {blocks}, {widths}."
            )
        skey, bkey, fkey = jr.split(key, 3)
        self.stem = eqx.nn.Conv2d(
            in_channels, widths[0], 3, 1, 1, use_bias=not batch_norm, dtype=dtype, key=skey
        )
        self.stem_norm = make_norm(widths[0], batch_norm, dtype)
        keys = iter(jr.split(bkey, sum(blocks)))
        stages = []
        c_in = widths[0]
        for s, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                stage.append(
                    BasicBlock(c_in, width, stride, batch_norm, key=next(keys), dtype=dtype)
                )
                c_in = width
            stages.append(tuple(stage))
        self.stages = tuple(stages)
        self.fc = eqx.nn.Linear(c_in, out_size, dtype=dtype, key=fkey)

    def preactivations(
        self, x: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[Array, eqx.nn.State, PreActivations]:
        check_example("ResNet", x, (self.stem.weight.shape[1], None, None))
        z, state = normalise(self.stem_norm, convolve(self.stem, x), state)
        stream = [z]
        x = jax.nn.relu(z)
        pre = {}
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                if block.projection is not None:  # only ever opens a stage s > 0
                    pre[f"stage.{s - 1}"] = tuple(stream)
                    stream = []
                x, state, inner, outer = block(x, state)
                pre[f"stage.{s}.block.{b}"] = (inner,)
                stream.append(outer)
        pre[f"stage.{len(self.stages) - 1}"] = tuple(stream)
        return self.fc(jnp.mean(x, axis=(1, 2))), state, _ordered(pre, self)

    def wiring(self) -> dict[str, Group]:
        groups = {}
        # The residual stream: producers are the stem (or the projection shortcut
        # that opens a stage) and every block's second convolution; consumers are
        # every block's first convolution, the next projection, or the classifier.
        producers: list = outputs_of(self.stem, lambda m: m.stem) + norm_of(
            self.stem_norm, lambda m: m.stem_norm
        )
        consumers: list = []
        size = self.stem.weight.shape[0]
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                at = _block_at(s, b)
                if block.projection is not None:
                    consumers += inputs_of(block.projection, _then(at, "projection"))
                    consumers += inputs_of(block.conv1, _then(at, "conv1"))
                    groups[f"stage.{s - 1}"] = Group(size, tuple(producers + consumers))
                    producers = outputs_of(block.projection, _then(at, "projection")) + norm_of(
                        block.projection_norm, _then(at, "projection_norm")
                    )
                    consumers = []
                    size = block.projection.weight.shape[0]
                else:
                    consumers += inputs_of(block.conv1, _then(at, "conv1"))
                groups[f"stage.{s}.block.{b}"] = Group(
                    block.conv1.weight.shape[0],
                    tuple(
                        outputs_of(block.conv1, _then(at, "conv1"))
                        + norm_of(block.norm1, _then(at, "norm1"))
                        + inputs_of(block.conv2, _then(at, "conv2"))
                    ),
                )
                producers += outputs_of(block.conv2, _then(at, "conv2")) + norm_of(
                    block.norm2, _then(at, "norm2")
                )
        consumers += inputs_of(self.fc, lambda m: m.fc)
        groups[f"stage.{len(self.stages) - 1}"] = Group(size, tuple(producers + consumers))
        return _ordered(groups, self)


def _ordered(groups: dict, model: ResNet) -> dict:
    """Stage streams first, then their blocks, stage by stage."""
    order = []
    for s, stage in enumerate(model.stages):
        order.append(f"stage.{s}")
        order += [f"stage.{s}.block.{b}" for b in range(len(stage))]
    return {k: groups[k] for k in order}
