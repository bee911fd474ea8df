import os
import pickle
import struct

import numpy as np
import pytest

from toolkit import data


def _batch(rng, n, protocol, bytes_keys=True):
    images = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    labels = [int(label) for label in rng.integers(0, 10, n)]
    key = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    batch = {
        key("batch_label"): "training batch",
        key("labels"): labels,
        key("data"): images,
        key("filenames"): [f"img_{i}.png".encode() for i in range(n)],
    }
    return batch, images, labels


def _write(folder, protocol=2, bytes_keys=True, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch, images, labels = _batch(rng, n, protocol, bytes_keys)
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        written[name] = images, labels
    return written


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [True, False])
def test_reads_generated_batches(tmp_path, protocol, bytes_keys):
    folder = tmp_path / "cifar-10-batches-py"
    written = _write(folder, protocol, bytes_keys)
    # Either the batches' folder or the folder holding it.
    for root in (folder, tmp_path):
        ds = data.load("cifar10", root=root, normalise=False)
        assert ds.name == "cifar10"
        assert ds.shape == (3, 32, 32)
        assert (ds.num_train, ds.num_test, ds.num_classes) == (20, 4, 10)
        assert ds.classes[0] == "airplane"
        assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
        images, labels = written["data_batch_2"]
        # Rows are the red, green, blue planes, each 32x32 row-major.
        np.testing.assert_allclose(ds.x_train[4:8, 1, 0, :], images[:, 1024:1056] / 255.0)
        np.testing.assert_array_equal(ds.y_train[4:8], labels)
        np.testing.assert_array_equal(ds.y_test, written["test_batch"][1])


def test_normalised_per_channel(tmp_path):
    written = _write(tmp_path, n=8)
    ds = data.load_cifar10(tmp_path)
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train = train.reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(ds.mean, train.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(ds.std, train.std(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-5)


def test_missing_batches(tmp_path):
    _write(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3.*cifar-10-batches-py"):
        data.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="root"):
        data.load("cifar10")


def test_wrong_shapes(tmp_path):
    _write(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="3072"):
        data.load_cifar10(tmp_path)


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_refused(tmp_path, protocol):
    _write(tmp_path)
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_System(f"touch {marker}")]}
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(payload, f, protocol=protocol)
    with pytest.raises(data.UnsafePickleError, match=r"refused to load (posix|os|nt)\.system"):
        data.load_cifar10(tmp_path)
    assert not marker.exists()
    # An unpickling error, for callers that catch those.
    assert issubclass(data.UnsafePickleError, pickle.UnpicklingError)


@pytest.mark.parametrize(
    "payload, match",
    [
        (_Eval(), r"(__builtin__|builtins)\.eval"),
        (np.float64(1.0), r"numpy.*scalar"),  # numpy scalars are not arrays
        (np.array([object()], dtype=object), r"(__builtin__|builtins)\.object"),
    ],
)
def test_other_globals_refused(tmp_path, payload, match):
    _write(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(data.UnsafePickleError, match=match):
        data.load_cifar10(tmp_path)


def test_codecs_only_latin1(tmp_path):
    import _codecs

    class _Codec:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    _write(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(_Codec(), f, protocol=2)
    with pytest.raises(data.UnsafePickleError, match="latin-1"):
        data.load_cifar10(tmp_path)


def _py2_str(raw: bytes) -> bytes:
    # SHORT_BINSTRING / BINSTRING: how Python 2 pickles its `str`.
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<I", len(raw)) + raw


def _py2_array(array: np.ndarray) -> bytes:
    # What numpy 1.x under Python 2 wrote for a uint8 array, opcode by opcode (the
    # format of the batches from the CIFAR-10 site).
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t"
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
        b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_str(b"b")
        + b"\x87R(K\x01"
        + shape
        + dtype
        + b"\x89"
        + _py2_str(array.tobytes())
        + b"tb"
    )


def test_python2_batches(tmp_path):
    _write(tmp_path)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    raw = (
        b"\x80\x02}q\x00("
        + _py2_str(b"data")
        + _py2_array(images)
        + _py2_str(b"labels")
        + b"](K\x07K\x03e"
        + _py2_str(b"batch_label")
        + _py2_str(b"testing batch 1 of 1")
        + b"u."
    )
    (tmp_path / "test_batch").write_bytes(raw)
    ds = data.load_cifar10(tmp_path, normalise=False)
    np.testing.assert_allclose(ds.x_test.reshape(2, -1), images / 255.0)
    np.testing.assert_array_equal(ds.y_test, [7, 3])
