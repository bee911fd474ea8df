"""The CIFAR-10 reproduction of the DemP paper's setting (VGG-16 and ResNet-18 with the
reference's recipe), end to end through `python -m toolkit train` on a few fake
CIFAR-10 batches: the GPU-scale configuration, run here only for a few steps."""

import json

import pytest

from ..data.test_cifar10 import _write
from .test_train_cli import _main


# The reference's widths: VGG-16 with BatchNorm (13 convolutions) and ResNet-18's four
# stages of two basic blocks, as `recipes.model` builds them for 32x32 images.
_VGG16 = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_RESNET18 = (64, 128, 256, 512)


@pytest.mark.slow  # full-width VGG-16 / ResNet-18: XLA compiles for minutes on a CPU
@pytest.mark.parametrize("model", ["vgg", "resnet"])
def test_the_reference_configuration_trains_on_cifar10_batches(tmp_path, model):
    _write(tmp_path / "cifar-10-batches-py", n=8)
    js = tmp_path / "run.json"
    argv = ["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--model", model]
    argv += ["--steps", "4", "--batch-size", "8", "--eval-every", "4", "--augment"]
    argv += ["--no-progress", "--plot", "", "--json", str(js)]
    assert _main(argv) == 0
    log = json.loads(js.read_text())
    assert log["done"] and log["config"]["steps"] == 4
    method = log["config"]["method"]
    assert method["name"] == "DemP" and method["noise"] == 5e-5
    widths = list(log["evaluations"][0]["widths"].values())
    if model == "vgg":
        assert tuple(widths) == _VGG16
    else:
        assert set(widths) == set(_RESNET18)
    assert [e["step"] for e in log["evaluations"]] == [0, 4]
