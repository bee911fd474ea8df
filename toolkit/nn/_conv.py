import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


def convolve(conv: eqx.nn.Conv2d, x: Float[Array, "channels height width"]) -> Array:
    """`conv(x)`, computed as a contraction of shifted copies of the image when the
    convolution reads a single input channel.

    **Arguments:**

    - `conv`: the convolution.
    - `x`: one example, shaped `(channels, height, width)`.

    **Returns:**

    The same array as `conv(x)` (up to floating-point rounding), shaped
    `(out_channels, new_height, new_width)`.
    """
    # XLA's CPU convolution is slow on a single input channel: the first convolution of
    # LeNet-5 (1 -> 6 channels, 5x5, 28x28, batch 128) took 15.7 ms of a 38 ms training
    # step at widths (6, 8, 15, 21), forward alone. Stacking the kernel's shifted views
    # (5x5 -> 25 images) and contracting them with the weights is one matrix product:
    # forward + weight gradient 0.24-0.41x the time at 6 or 16 output channels, about
    # XLA's time at 64 (0.92-1.03x). Strided, dilated or grouped convolutions and other
    # paddings keep XLA's kernel.
    weight = conv.weight
    if (
        weight.shape[1] != 1
        or x.ndim != 3
        or conv.groups != 1
        or tuple(conv.stride) != (1, 1)
        or tuple(conv.dilation) != (1, 1)
        or conv.padding_mode != "ZEROS"
        or isinstance(conv.padding, str)
    ):
        return conv(x)
    out, _, kh, kw = weight.shape
    (top, bottom), (left, right) = conv.padding
    image = jnp.pad(x[0], ((top, bottom), (left, right)))
    height, width = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    taps = jnp.stack([image[i : i + height, j : j + width] for i in range(kh) for j in range(kw)])
    y = jnp.einsum("khw,ok->ohw", taps, weight.reshape(out, kh * kw))
    if conv.use_bias:
        y = y + conv.bias
    return y
