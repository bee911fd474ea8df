import socket

import jax.random as jr
import numpy as np
import pytest

from toolkit import data
from toolkit.data._mnist1d import _cache_name

from ..helpers import finish, fresh_process


def test_digits():
    ds = data.load("digits")
    assert ds.name == "digits"
    assert ds.shape == (1, 8, 8)
    assert (ds.num_train, ds.num_test, ds.num_classes) == (1438, 359, 10)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert set(np.unique(ds.y_train).tolist()) == set(range(10))
    np.testing.assert_allclose(ds.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(), 1.0, atol=1e-5)
    # The statistics come from the training split only.
    assert abs(float(ds.x_test.mean())) > 1e-4


def test_digits_split_is_fixed_by_the_key():
    a, b = data.load_digits(), data.load_digits(key=jr.key(0))
    np.testing.assert_array_equal(a.x_test, b.x_test)
    c = data.load_digits(key=jr.key(1))
    assert not np.array_equal(a.y_test, c.y_test)
    # Disjoint, and together the whole data set.
    raw = data.load_digits(normalise=False, test_fraction=0.5)
    assert (raw.num_train, raw.num_test) == (899, 898)
    everything = np.concatenate([raw.x_train, raw.x_test]).reshape(1797, -1)
    assert float(everything.min()) == 0.0 and float(everything.max()) == 1.0
    from sklearn.datasets import load_digits

    expected = np.sort(load_digits().data.sum(axis=1) / 16)
    np.testing.assert_allclose(np.sort(everything.sum(axis=1)), expected, rtol=1e-6)


def test_digits_are_scikit_learns_read_without_importing_it():
    from sklearn.datasets import load_digits

    from toolkit.data._digits import _read_digits

    images, labels = _read_digits()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    # A new process loads digits, and MNIST-1D from its cache, without the 2-4 s of
    # importing scikit-learn, scipy, matplotlib and MNIST-1D's generator.
    data.load_mnist1d()
    code = "import sys; from toolkit import data; data.load('digits'); data.load('mnist1d'); "
    code += "heavy = ('sklearn', 'scipy', 'matplotlib', 'mnist1d.data'); "
    code += "print([m for m in heavy if m in sys.modules])"
    ((stdout, _),) = finish([fresh_process(code, {})], timeout=300)
    assert stdout.strip().splitlines()[-1] == "[]"


def test_digits_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=1.0)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("MNIST-1D generation tried to open a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_mnist1d(tmp_path, no_network):
    np.random.seed(123)
    before = np.random.rand()
    np.random.seed(123)
    ds = data.load("mnist1d", cache_dir=tmp_path)
    # The generator's global seeding does not leak into the caller's random stream.
    assert np.random.rand() == before
    assert ds.name == "mnist1d"
    assert ds.shape == (1, 40)
    assert (ds.num_train, ds.num_test, ds.num_classes) == (4000, 1000, 10)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert set(np.unique(ds.y_test).tolist()) == set(range(10))
    np.testing.assert_allclose(ds.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(), 1.0, atol=1e-5)

    # Cached atomically, with no temporary file left behind.
    (cached,) = tmp_path.iterdir()
    assert cached.name.startswith("mnist1d-") and cached.suffix == ".npz"
    again = data.load_mnist1d(cache_dir=tmp_path)
    np.testing.assert_array_equal(again.x_train, ds.x_train)

    # Deterministic: generating afresh gives the same data as the cache.
    fresh = data.load_mnist1d(cache=False)
    np.testing.assert_array_equal(fresh.x_test, ds.x_test)
    np.testing.assert_array_equal(fresh.y_train, ds.y_train)


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path, no_network):
    ds = data.load_mnist1d()  # from the user's cache, or generated into it
    cached = tmp_path / _cache_name()
    cached.write_bytes(b"half a file")
    again = data.load_mnist1d(cache_dir=tmp_path)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert cached.stat().st_size > 1000


def test_load_errors():
    with pytest.raises(ValueError, match="name.*cifar10.*digits"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="takes no argument `root`"):
        data.load("digits", root="/tmp")
