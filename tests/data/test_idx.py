import gzip
import struct

import numpy as np
import pytest

from toolkit import data


DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    data.write_idx(path, array, compress=compress)
    out = data.read_idx(path)
    assert out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_reads_handwritten_big_endian(tmp_path):
    # Written by hand, independently of write_idx: magic 0x00000C02 (int32, 2-D), dims
    # 2 and 3, then big-endian values.
    values = [1, -2, 3, 256, 65536, -(2**31)]
    raw = bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3) + struct.pack(">6i", *values)
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(raw))
    for name in ("plain", "zipped.gz"):
        out = data.read_idx(tmp_path / name)
        assert out.dtype == np.int32 and out.shape == (2, 3)
        np.testing.assert_array_equal(out, np.array(values).reshape(2, 3))


def test_one_dimensional_uint8_labels(tmp_path):
    raw = bytes([0, 0, 8, 1]) + struct.pack(">I", 4) + bytes([9, 0, 0, 3])
    (tmp_path / "labels").write_bytes(raw)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "labels"), [9, 0, 0, 3])


def _header(code=0x08, dims=(2, 2)):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic number"),
        (_header(code=0x0A) + bytes(4), "unknown idx type code 0x0A"),
        (bytes([0, 0, 8, 3]) + struct.pack(">I", 2), "truncated"),
        (_header() + bytes(3), "3 bytes of data.*needs 4"),
        (_header() + bytes(5), "5 bytes of data.*needs 4"),
        (_header(code=0x0C) + bytes(4), "needs 16"),
        (b"\x1f\x8b" + b"not really gzip", "not a valid gzip"),
    ],
)
def test_malformed(tmp_path, raw, match):
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        data.read_idx(path)


def test_write_refuses_other_types(tmp_path):
    with pytest.raises(ValueError, match="array"):
        data.write_idx(tmp_path / "x", np.zeros(3, np.uint16))


def test_huge_declared_shape(tmp_path):
    # Dimensions whose product overflows 64 bits must not wrap around to a small size.
    path = tmp_path / "huge"
    path.write_bytes(_header(dims=(2**32 - 1,) * 4) + bytes(4))
    with pytest.raises(ValueError, match="needs"):
        data.read_idx(path)
