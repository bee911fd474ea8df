"""What the benchmark scripts in this folder share besides provenance: the resumable
results store, the common command-line options, and the log line.

A benchmark measures entries (a solve, a training run, ...) named by keys such as
`solve/vdp/N=1000`. `Store` keeps the finished ones in a JSON file, rewritten
atomically after each, so that a run that outlives a session is completed by the next
one instead of started over: `todo(key)` is false for a finished entry unless
`--force` names it. `arguments` adds the options every script takes (`--force`,
`--readme`, `--quick` where a script has a smoke mode, `--wait-quiet` where it times,
`--shard I/N` where several processes share its entries), `forced` reads `--force`
and `in_shard` says whether an entry is the shard's; `wait_quiet` waits for the
machine to go idle.

Like `_provenance`, this module imports nothing heavy: some scripts set `XLA_FLAGS`
before they import jax.
"""

import argparse
import fcntl
import pathlib
import platform
import statistics
import time
import zlib
from collections.abc import Callable
from contextlib import nullcontext

from _provenance import (
    machine_line,
    measured_line,
    now,
    OtherLoad,
    read_json,
    replace_section,
    SOURCE,
    write_json_atomic,
)


def log(msg: str) -> None:
    """A line of progress, with the time of day, at once (runs last hours)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes, waiting for any JAX arrays it returns."""
    import jax  # here, not at the top: callers may set XLA_FLAGS before importing jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(
    fns: dict[str, Callable[[], object]],
    min_rounds: int,
    max_rounds: int,
    budget_s: float,
    setup: Callable[[], None] | None = None,
) -> dict[str, dict]:
    """Warm timings of several callables run round-robin (A, B, C, A, B, C, ...) so
    that load from other processes hits all of them alike: at least `min_rounds`
    rounds, more while under `budget_s` (at most `max_rounds`). `setup` runs untimed
    before every round. Returns, per name, the median and minimum and the repeats."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    total = 0.0
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and total < budget_s):
        if setup is not None:
            setup()
        for name, fn in fns.items():
            dt = timed(fn)
            times[name].append(dt)
            total += dt
        rounds += 1
    return {
        name: {"median_s": statistics.median(ts), "min_s": min(ts), "repeats": len(ts)}
        for name, ts in times.items()
    }


def arguments(
    parser: argparse.ArgumentParser,
    *,
    example: str,
    quick: str | None = None,
    report_only: bool = False,
    wait_quiet: float | None = None,
    shard: bool = False,
) -> argparse.ArgumentParser:
    """Add `--force [PREFIXES]`, `--readme`, `--report-only` if `report_only`, if
    `quick` (its help) is given, `--quick`, if `wait_quiet` (its default, in
    seconds) is given, `--wait-quiet`, and if `shard`, `--shard I/N` (parsed to the
    pair `(I, N)`). `example` is a key prefix shown in `--force`'s help."""
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    if report_only:
        parser.add_argument(
            "--report-only",
            action="store_true",
            help="measure nothing: report the results file (with --readme, write it)",
        )
    parser.add_argument(
        "--force",
        nargs="?",
        const="",
        default=None,
        metavar="PREFIXES",
        help="redo finished entries: all, or those whose key starts with one of these "
        f"comma-separated prefixes (e.g. `--force {example}`)",
    )
    parser.add_argument(
        "--readme", action="store_true", help="write the benchmarks/README.md section"
    )
    if shard:
        parser.add_argument(
            "--shard",
            type=_shard,
            default=None,
            metavar="I/N",
            help="only the entries whose key hashes to I modulo N, so that N processes "
            "share the work (see `in_shard`)",
        )
    if wait_quiet is not None:
        parser.add_argument(
            "--wait-quiet",
            type=float,
            default=wait_quiet,
            help="seconds to wait, before each measurement, for other processes to go "
            f"idle (default {wait_quiet:g}; 0: do not wait)",
        )
    return parser


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes I/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text}: I must be in [0, N)")
    return index, count


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the entry `key` is shard `(I, N)`'s (every entry is, without a shard).
    By a hash of the key, not its place in a list: shards started at different times
    (with different entries already done) still split the entries exactly."""
    return shard is None or zlib.crc32(key.encode()) % shard[1] == shard[0]


def wait_quiet(max_wait_s: float, threshold: float = 0.5) -> None:
    """Wait (at most `max_wait_s`) until other processes use under `threshold` cores."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        with OtherLoad() as other:
            time.sleep(2.0)
        if other.cores is None or other.cores < threshold:
            return
        if time.perf_counter() >= deadline:
            log(
                f"  (machine still busy: other processes use {other.cores} cores; measuring anyway)"
            )
            return
        log(f"  (other processes use {other.cores} cores; waiting for quiet)")


def print_and_write(table: str, goals: list[str], opts: argparse.Namespace, write) -> None:
    """Print a benchmark's table and goal lines; with `--readme` (and not `--quick`),
    call `write()` to put them in benchmarks/README.md."""
    print()
    print(table)
    for g in goals:
        print("  " + g)
    if opts.readme and not getattr(opts, "quick", False):
        write()


def write_section(
    store: "Store",
    readme: pathlib.Path,
    section: str,
    intro: str,
    script: str,
    table: str,
    lines: list[str],
    *,
    before: str,
    versions: dict[str, str] | None = None,
    heading: str | None = None,
) -> None:
    """Write a README section: `section`, `intro`, how to reproduce it (`python
    benchmarks/{script}.py --readme`, results in `benchmarks/results/{script}.json`),
    the machine (with `versions`, see `machine_line`) and when and on what the store's
    entries were measured, `table`, then `lines` as a list under `heading`."""
    m = store.load()["machine"][store.section[0]]
    text = [
        section,
        "",
        intro,
        "",
        f"Reproduce: `python benchmarks/{script}.py --readme` (results in "
        f"`benchmarks/results/{script}.json`).",
        "",
        machine_line(m, versions=versions) + " " + measured_line(store.entries().values()),
        "",
        table,
        *([heading, ""] if heading else []),
        *[f"- {line}" for line in lines],
        "",
    ]
    replace_section(readme, section, "\n".join(text), before=before)
    log(f"Wrote section {section!r} of {readme}.")


def forced(opts: argparse.Namespace) -> list[str] | None:
    """`--force` as `Store` takes it: None (skip finished entries), [] (redo all), or
    key prefixes."""
    return None if opts.force is None else [p for p in opts.force.split(",") if p]


class Store:
    """The finished entries of one benchmark, in one JSON file, rewritten atomically
    after every entry.

    **Arguments:**

    - `path`: the results file.
    - `force`: what `forced` returns: None, [] (redo every entry once) or key prefixes.
    - `section`: where the entries live in the file, e.g. `("full",)` or `("runs",)`.
    - `machine`: the function that describes the machine (`_provenance.machine` with
        the script's versions), stored at `machine_at` in the file with each entry.
    - `machine_at`: where, e.g. `("machine", "full")`, or `("machine",)`.
    - `stamp`: extra fields for each entry, a function of nothing (e.g. the host).
    - `lock`: take a file lock around each read-add-write, for several processes
        (`--shard`) writing one file.
    - `indent`: of the JSON.
    """

    def __init__(
        self,
        path: pathlib.Path,
        force: list[str] | None,
        *,
        section: tuple[str, ...],
        machine: Callable[[], dict],
        machine_at: tuple[str, ...],
        stamp: Callable[[], dict] | None = None,
        lock: bool = False,
        indent: int = 2,
    ):
        self.path, self.force = path, force
        self.section, self.machine, self.machine_at = section, machine, machine_at
        self.stamp, self.lock, self.indent = stamp, lock, indent
        self.forced: set[str] = set()  # keys redone by this run (with --force)

    def load(self) -> dict:
        """The whole file (an empty dict where there is none)."""
        return read_json(self.path)

    def entries(self) -> dict:
        """The finished entries, by key."""
        node = self.load()
        for name in self.section:
            node = node.get(name, {})
        return node

    def get(self, key: str) -> dict | None:
        return self.entries().get(key)

    def todo(self, key: str) -> bool:
        """Whether to measure `key`: not finished, or named by `--force` and not yet
        redone by this run."""
        if self.force is not None and key not in self.forced:
            if not self.force or any(key.startswith(p) for p in self.force):
                return True
        return self.get(key) is None

    def put(self, key: str, value: dict) -> None:
        """Record a finished entry, with when and by which toolkit code it was measured."""
        value = {
            **value,
            "measured": now(),
            "toolkit_commit": SOURCE["commit"],
            "toolkit_tree": SOURCE["tree"],
            **(self.stamp() if self.stamp is not None else {}),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        guard = open(self.path.with_name(self.path.name + ".lock"), "w") if self.lock else None
        with guard if guard is not None else nullcontext():
            if guard is not None:
                fcntl.flock(guard, fcntl.LOCK_EX)
            results = self.load()  # merge with whatever is there now
            _set(results, (*self.section, key), value)
            _set(results, self.machine_at, self.machine())
            write_json_atomic(self.path, results, f".{self.path.stem}.", indent=self.indent)
        self.forced.add(key)


def host() -> dict:
    """The `stamp` of entries that several machines may measure."""
    return {"host": platform.node()}


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value
