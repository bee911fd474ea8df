"""Checkpoints of a training run: a [`toolkit.pruning.TrainState`][] and the run's log
written to one checksummed file, and read back to resume the run exactly."""

import math
import os
from typing import Any

import equinox as eqx
import jax.tree_util as jtu
import numpy as np

from ._activity import init_activity
from ._buckets import all_alive
from ._checkpoint import load_checkpoint, save_checkpoint, shrink_to
from ._config import first_difference
from ._measure import widths
from ._train_state import TrainState


def check_finite(ts: TrainState, losses: list[float], path, saved: int | None) -> None:
    """Raise `FloatingPointError` if a loss since the last checkpoint, or a parameter,
    is not finite: a diverged run must not replace the last good checkpoint (`saved`,
    its step, or `None`) with one full of NaNs."""
    bad = [x for x in losses if not math.isfinite(x)]
    arrays = jtu.tree_leaves(eqx.filter(ts.arrays[:3], eqx.is_inexact_array))
    if bad or not all(np.isfinite(np.asarray(a)).all() for a in arrays):
        what = f"the training loss is {bad[0]}" if bad else "the parameters are not finite"
        kept = (
            "it was not written"
            if saved is None
            else f"it was not overwritten and keeps step {saved}, the last good one"
        )
        raise FloatingPointError(
            f"training diverged before step {ts.step}: {what} (the learning rate, the "
            f"regulariser or the noise may be too large). The checkpoint "
            f"{os.fspath(path)!r}: {kept}."
        )


def save_run(
    path: str | os.PathLike,
    ts: TrainState,
    losses: list[float],
    history: dict[str, Any],
    pending: dict[str, Any] | None,
) -> None:
    """Write `ts` with the run's log (`history`), the losses since the last evaluation
    and the prune whose shapes are compiling (`pending`, or `None`) to `path`."""
    header = {
        "step": ts.step,
        "widths": widths(ts.model),
        "masked": {k: np.flatnonzero(~a).tolist() for k, a in ts.alive.items()},
        "losses": losses,
        "history": history,
        "pending": pending,
    }
    save_checkpoint(path, header, ts.arrays)


def load_run(
    path: str | os.PathLike, initial: TrainState, config: dict[str, Any]
) -> tuple[TrainState, dict[str, Any]]:
    """The state saved in `path` by a run started from `initial` with `config` (the
    log's `config`), and the checkpoint's header (`history`, `losses`, `pending`).

    **Raises:**

    `ValueError` if the checkpoint was written by a run with another setting (the
    first that differs is named), or is corrupted or truncated.
    """

    def skeleton(header):
        different = first_difference(header["history"]["config"], config)
        if different is not None:
            name, theirs, mine = different
            raise ValueError(
                f"the checkpoint {os.fspath(path)!r} was written by another run: "
                f"its {name} is {theirs!r}, this run's is {mine!r}. Resume with the "
                "settings it was written with, or give another checkpoint file."
            )
        small = shrink_to(initial.arrays[:3], initial.model, header["widths"])
        return (*small, init_activity(small[0]))

    header, restored = load_checkpoint(path, skeleton)
    alive = all_alive(restored[0])
    for k, masked in header.get("masked", {}).items():
        alive[k][masked] = False
    ts = initial.with_arrays(restored).replace(alive=alive, step=header["step"])
    return ts, header
