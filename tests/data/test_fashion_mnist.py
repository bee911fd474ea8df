import os

import numpy as np
import pytest

from toolkit import data


INSTALL = "apt-get update && apt-get install -y dataset-fashion-mnist"


def _write_split(root, prefix, images, labels, compress):
    suffix = ".gz" if compress else ""
    data.write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, compress=compress)
    data.write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress=compress)


def _fake(root, compress, n_train=12, n_test=5):
    rng = np.random.default_rng(1)
    splits = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_split(root, prefix, images, labels, compress)
        splits[prefix] = images, labels
    return splits


def test_missing_names_install_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist(tmp_path)
    assert INSTALL in str(info.value)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        data.load("fashion_mnist", root=tmp_path / "nowhere")


@pytest.mark.parametrize("compress", [True, False])
def test_reads_fake_files(tmp_path, compress):
    splits = _fake(tmp_path, compress)
    ds = data.load("fashion-mnist", root=tmp_path, normalise=False)
    assert ds.name == "fashion_mnist"
    assert ds.shape == (1, 28, 28)
    assert (ds.num_train, ds.num_test, ds.num_classes) == (12, 5, 10)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    images, labels = splits["t10k"]
    np.testing.assert_allclose(ds.x_test[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, labels)


def test_normalised_with_training_statistics(tmp_path):
    splits = _fake(tmp_path, True)
    ds = data.load_fashion_mnist(tmp_path)
    train = splits["train"][0] / 255.0
    np.testing.assert_allclose(ds.mean, [train.mean()], rtol=1e-5)
    np.testing.assert_allclose(ds.std, [train.std()], rtol=1e-5)
    np.testing.assert_allclose(
        ds.x_test[:, 0], (splits["t10k"][0] / 255.0 - train.mean()) / train.std(), atol=1e-5
    )


def test_mismatched_labels(tmp_path):
    _fake(tmp_path, True)
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), compress=True)
    with pytest.raises(ValueError, match="one per image"):
        data.load_fashion_mnist(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist():
    ds = data.load("fashion_mnist")
    assert (ds.num_train, ds.num_test) == (60000, 10000)
    np.testing.assert_array_equal(ds.y_train[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    # The data set's published pixel statistics.
    np.testing.assert_allclose(ds.mean, [0.2860], atol=1e-4)
    np.testing.assert_allclose(ds.std, [0.3530], atol=1e-4)
