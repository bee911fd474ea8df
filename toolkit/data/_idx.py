import gzip
import math
import os
import struct

import numpy as np


# The idx format (LeCun et al., the MNIST files): two zero bytes, a type code, the
# number of dimensions, then each dimension as a big-endian uint32, then the values,
# big-endian, in row-major order.
_CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{os.fspath(path)!r} is not a valid gzip file: {e}") from e
    return data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an array from an idx file, the format of MNIST and Fashion-MNIST.

    A gzipped file (`*.gz`, recognised by its content, not its name) is decompressed.

    **Arguments:**

    - `path`: the file.

    **Returns:**

    A numpy array in native byte order, of the file's type (`uint8`, `int8`, `int16`,
    `int32`, `float32` or `float64`) and shape.

    **Raises:**

    `ValueError` if the file is not a well-formed idx file: a bad magic number, an
    unknown type code, or a length that does not match the dimensions in its header.
    """
    name = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{name!r} is too short ({len(data)} bytes) to be an idx file.")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(
            f"{name!r} is not an idx file: its magic number {data[:4].hex()} does not start "
            "with two zero bytes."
        )
    if code not in _CODES:
        known = ", ".join(f"0x{c:02X}" for c in _CODES)
        raise ValueError(f"{name!r} has unknown idx type code 0x{code:02X} (known: {known}).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name!r} is truncated: its header declares {ndim} dimensions but the file has "
            f"only {len(data)} bytes."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _CODES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(data) - header != expected:
        raise ValueError(
            f"{name!r} has {len(data) - header} bytes of data, but its header declares shape "
            f"{shape} of {dtype.newbyteorder('=').name}, which needs {expected}."
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool = False) -> None:
    """Writes an array to an idx file, the inverse of [`toolkit.data.read_idx`][].

    **Arguments:**

    - `path`: the file to write.
    - `array`: a numpy array of type `uint8`, `int8`, `int16`, `int32`, `float32` or
        `float64`, with at most 255 dimensions.
    - `compress`: gzip the file.

    **Returns:**

    Nothing.
    """
    array = np.asarray(array)
    for code, dtype in _CODES.items():
        if array.dtype == dtype.newbyteorder("="):
            break
    else:
        raise ValueError(f"`array` has type {array.dtype}, which idx files cannot hold.")
    if array.ndim > 255:
        raise ValueError(f"`array` has {array.ndim} dimensions; idx files hold at most 255.")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    data = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
