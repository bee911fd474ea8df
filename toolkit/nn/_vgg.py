from collections.abc import Sequence

import equinox as eqx
from jaxtyping import PRNGKeyArray

from ._convnet import AbstractConvClassifier, make_layers


# Simonyan & Zisserman (2015), configurations A, B, D and E; "M" is a 2×2 max pool.
# With 32×32 inputs (CIFAR) the five pools leave 512 × 1 × 1 features.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ),
    "vgg19": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ),
    # For small images (8×8 digits, 28×28 MNIST): three pools.
    "small": (16, 16, "M", 32, 32, "M", 64, "M"),
}


class VGG(AbstractConvClassifier):
    """A VGG network: 3×3 convolutions (→ BatchNorm → ReLU), 2×2 max pools, then a
    flattening and a ReLU perceptron.

    The CIFAR variants (`"vgg11"`, `"vgg13"`, `"vgg16"`, `"vgg19"` on 32×32 images)
    end in a single linear classifier on the 512 flattened features, as is usual for
    CIFAR; `"small"` suits 8×8 or 28×28 images. Any sequence of channel counts and
    `"M"` (pool) may be given instead.

    Its groups are `"conv.0"`, `"conv.1"`, ... (channels of each convolution) and
    `"fc.0"`, ... (units of each hidden linear layer).
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
        image_size: int | Sequence[int] = 32,
        config: str | Sequence[int | str] = "vgg11",
        hidden: Sequence[int] = (),
        batch_norm: bool = True,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        """**Arguments:**

        - `in_channels`: channels of the input images, shaped `(channels, height, width)`.
        - `out_size`: the number of outputs.
        - `image_size`: the height and width of the input (an int for square images).
        - `config`: the name of a configuration in `toolkit.nn.VGG_CONFIGS`, or a
            sequence of output channel counts and `"M"` (2×2 max pool).
        - `hidden`: widths of hidden linear layers before the classifier.
        - `batch_norm`: whether to normalise every hidden layer with an
            `eqx.nn.BatchNorm` (the layers before it then have no bias).
        - `key`: a PRNG key for the initialisation.
        - `dtype`: the floating dtype of the parameters (JAX's default if `None`).
        """
        if isinstance(config, str):
            if config not in VGG_CONFIGS:
                raise ValueError(f"`config` must be one of {sorted(VGG_CONFIGS)}, got {config!r}.")
            config = VGG_CONFIGS[config]
        layers = make_layers(
            in_channels, out_size, image_size, tuple(config), hidden, 3, batch_norm, key, dtype
        )
        self.image_size = layers["image_size"]
        self.convs = layers["convs"]
        self.conv_norms = layers["conv_norms"]
        self.pools = layers["pools"]
        self.linears = layers["linears"]
        self.linear_norms = layers["linear_norms"]
