"""Checkpoints of a training run whose network shrinks.

A checkpoint is one file: a magic line, the SHA-256 digest of the rest and its length,
then a JSON header (the step, the live widths of every unit group, the log so far) and
the arrays of `(model, state, opt_state, activity)` written by
`eqx.tree_serialise_leaves` (no pickle). Reading one checks the length and the digest
first, so that a truncated or corrupted file is refused by name rather than loaded.
Shapes change after a prune, so reading one starts from the run's initial network,
prunes it to the recorded widths to get a skeleton of the right shapes, and
deserialises into it. A checkpoint is written to a temporary file in the same folder
(with the permissions the umask gives a new file), flushed to disk and renamed into
place, so a run killed while saving keeps its previous checkpoint.
"""

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

import equinox as eqx
import numpy as np
from jaxtyping import PyTree

from ..nn import AbstractNetwork
from ._dead import dead_from_masks
from ._prune import prune


_MAGIC = b"toolkit.pruning checkpoint v2\n"
_OLD_MAGIC = b"toolkit.pruning checkpoint v1\n"
_DIGEST = 32  # bytes of a SHA-256 digest
_CHUNK = 1 << 20


def _umask() -> int:
    try:  # Linux: read it, rather than set it and set it back (racy with threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a file through `write(f)` into a temporary file next to `path`, then
    rename it into place. The file gets the permissions of any new file (`0o666`
    less the umask), not `mkstemp`'s private `0o600`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, f):
        self.f, self.hash, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.f.write(data)


def save_checkpoint(path: str | os.PathLike, header: dict, tree: PyTree) -> None:
    """Write `header` (JSON-serialisable) and the arrays of `tree` to `path`."""
    data = json.dumps(header).encode()

    def write(f):
        f.write(_MAGIC)
        start = f.tell()
        f.write(bytes(_DIGEST + 8))  # the digest and the length, written last
        body = _Hashing(f)
        body.write(len(data).to_bytes(8, "little"))
        body.write(data)
        eqx.tree_serialise_leaves(body, tree)
        f.seek(start)
        f.write(body.hash.digest() + body.size.to_bytes(8, "little"))
        f.seek(0, os.SEEK_END)

    write_atomic(path, write)


def _refuse(path, what: str) -> ValueError:
    return ValueError(
        f"the checkpoint {os.fspath(path)!r} {what}. It cannot be resumed from: restore a "
        "good copy, or delete it (or give another checkpoint file) to start the run afresh."
    )


def _open_checked(f, path) -> None:
    """Check the magic line, the length and the digest of an open checkpoint; leave
    `f` at the start of its header."""
    magic = f.read(len(_MAGIC))
    if magic == _OLD_MAGIC:
        raise _refuse(path, "was written by an older toolkit, without a checksum")
    if magic != _MAGIC:
        if _MAGIC.startswith(magic):
            raise _refuse(path, f"is truncated: it holds {len(magic)} bytes")
        raise ValueError(f"{os.fspath(path)!r} is not a toolkit.pruning checkpoint.")
    prefix = f.read(_DIGEST + 8)
    if len(prefix) < _DIGEST + 8:
        raise _refuse(path, "is truncated: it ends inside its checksum")
    digest, size = prefix[:_DIGEST], int.from_bytes(prefix[_DIGEST:], "little")
    start = f.tell()
    actual = f.seek(0, os.SEEK_END) - start
    if actual < size:
        raise _refuse(path, f"is truncated: {actual} of the {size} bytes of its contents are left")
    f.seek(start)
    h = hashlib.sha256()
    left = size
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    if actual != size or h.digest() != digest:
        raise _refuse(path, "is corrupted: its contents do not match its checksum")
    f.seek(start)


def _read_header(f, path) -> dict:
    _open_checked(f, path)
    size = int.from_bytes(f.read(8), "little")
    return json.loads(f.read(size).decode())


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint, once its checksum is verified."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def load_checkpoint(
    path: str | os.PathLike, skeleton: Callable[[dict], PyTree]
) -> tuple[dict, PyTree]:
    """Read a checkpoint: its header, and its arrays deserialised into
    `skeleton(header)`, a pytree of the shapes they were saved with."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
        like = skeleton(header)
        try:
            return header, eqx.tree_deserialise_leaves(f, like)
        except Exception as e:  # a checksummed file that another network wrote
            raise _refuse(
                path, f"holds arrays that do not fit this run's network ({type(e).__name__})"
            ) from None


def shrink_to(tree: PyTree, model: AbstractNetwork, widths: dict[str, int]) -> PyTree:
    """Prune `tree` (laid out like `model`) to `widths` units per group, keeping the
    first units: a skeleton with the shapes of a network pruned to those widths."""
    sizes = {name: group.size for name, group in model.wiring().items()}
    if set(sizes) != set(widths) or any(not 1 <= widths[k] <= sizes[k] for k in sizes):
        raise ValueError(
            f"the checkpoint's widths {widths} do not fit the network's groups {sizes}: "
            "resume with the network the run started from."
        )
    masks = {k: np.arange(sizes[k]) >= widths[k] for k in sizes}
    return prune(tree, dead_from_masks(model, masks))
