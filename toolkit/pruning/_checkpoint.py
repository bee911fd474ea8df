"""Checkpoints of a training run whose network shrinks.

A checkpoint is one file: a magic line, a JSON header (the step, the live widths of
every unit group, the log so far), then the arrays of `(model, state, opt_state,
activity)` written by `eqx.tree_serialise_leaves` (no pickle). Shapes change after a
prune, so reading one starts from the run's initial network, prunes it to the
recorded widths to get a skeleton of the right shapes, and deserialises into it. A
checkpoint is written to a temporary file in the same folder and renamed into place,
so a run killed while saving keeps its previous checkpoint.
"""

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


_MAGIC = b"toolkit.pruning checkpoint v1\n"


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a file through `write(f)` into a temporary file next to `path`, then
    rename it into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, header: dict, tree: PyTree) -> None:
    """Write `header` (JSON-serialisable) and the arrays of `tree` to `path`."""
    data = json.dumps(header).encode()

    def write(f):
        f.write(_MAGIC)
        f.write(len(data).to_bytes(8, "little"))
        f.write(data)
        eqx.tree_serialise_leaves(f, tree)

    write_atomic(path, write)


def _read_header(f, path) -> dict:
    if f.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(f"{os.fspath(path)!r} is not a toolkit.pruning checkpoint.")
    size = int.from_bytes(f.read(8), "little")
    return json.loads(f.read(size).decode())


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def load_checkpoint(
    path: str | os.PathLike, skeleton: Callable[[dict], PyTree]
) -> tuple[dict, PyTree]:
    """Read a checkpoint: its header, and its arrays deserialised into
    `skeleton(header)`, a pytree of the shapes they were saved with."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
        return header, eqx.tree_deserialise_leaves(f, skeleton(header))


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
