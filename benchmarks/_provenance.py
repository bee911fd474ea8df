"""Provenance and bookkeeping shared by the benchmark scripts in this folder.

Every measurement a benchmark records says when it was taken (`now`), which toolkit
code took it (`SOURCE`: the git commit and a hash of toolkit's source files), and on what
machine (`machine`). Results files are read with `read_json` and written atomically
(`write_json_atomic`), so that an interrupted run keeps the old file. `cpu_seconds` and
`OtherLoad` measure how busy the (shared) machine was, `memory_maps` counts this
process's memory mappings, and `xla_threads` sets XLA's thread count from `--threads`.

The scripts run as `python benchmarks/NAME.py`, so this module is imported as
`_provenance`. It imports nothing heavy at module level, jax included: some scripts set
`XLA_FLAGS` before they import jax.
"""

import datetime
import hashlib
import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time


ROOT = pathlib.Path(__file__).resolve().parent.parent


def xla_threads(argv: list[str]) -> int:
    """The `--threads N` of a benchmark's command line (default 1); with 1, `XLA_FLAGS`
    is set for a single XLA thread. Call it before jax is imported: XLA reads its
    thread pool's size from `XLA_FLAGS` at import."""
    threads = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    return threads


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def tree_hash() -> str:
    """A hash of toolkit's source files now (the tree may hold uncommitted edits)."""
    root = ROOT / "toolkit"
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def commit() -> str:
    """git's short HEAD, with "+dirty" if toolkit/ holds uncommitted changes."""
    try:
        git = ["git", "-C", str(ROOT)]
        out = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "toolkit"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# The toolkit code this process runs is what was imported at start-up (just now), even
# if the files are edited while it runs: record that version, not the files' later state.
SOURCE = {"commit": commit(), "tree": tree_hash()}


def machine(**versions) -> dict:
    """The CPU, the usable cores, jax's version and backend, the `versions` the caller
    passes (e.g. `machine(casadi=ca.__version__)`, in that order) and Python's version."""
    import jax  # here, not at the top: callers may set XLA_FLAGS before importing jax

    cpu = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        **versions,
        "python": platform.python_version(),
    }


def machine_line(m: dict, *, shared: str = "", versions: dict[str, str] | None = None) -> str:
    """The README's "Machine: ..." sentence for the machine record `m` (see `machine`).

    `shared` follows the core count (e.g. " (shared with other jobs)"); `versions` maps
    a printed name to the key of `m` holding its version (e.g. `{"CasADi": "casadi"}`),
    printed between JAX and Python in that order. A key `m` lacks prints as "?"."""
    backend = f" ({m['jax_backend']})" if "jax_backend" in m else ""
    others = "".join(f", {name} {m.get(key, '?')}" for name, key in (versions or {}).items())
    return (
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores{shared}, "
        f"JAX {m.get('jax', '?')}{backend}{others}, Python {m.get('python', '?')}."
    )


def measured_line(entries) -> str:
    """The README's "Measured <dates> on toolkit commit(s) ..." sentence for results
    records: each holds `measured` (ISO time), `toolkit_commit` and `toolkit_tree` (as
    `_harness.Store.put` writes them) or `when` and `source` (`{"commit", "tree"}`)."""
    entries = list(entries)
    if not entries:
        return "Nothing measured yet."
    dates, commits, trees = set(), set(), set()
    for e in entries:
        source = e.get("source", {})
        dates.add((e.get("measured") or e.get("when") or "?")[:10])
        commits.add(e.get("toolkit_commit") or source.get("commit", "?"))
        trees.add(e.get("toolkit_tree") or source.get("tree", "?"))
    dates = sorted(dates)
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    several = len(trees) > 1
    return (
        f"Measured {when} on toolkit commit{'s' if len(commits) > 1 else ''} "
        f"{', '.join(sorted(commits))} (source tree hash {', '.join(sorted(trees))}"
        + (
            "; the entries come from different versions of the toolkit source)."
            if several
            else ")."
        )
    )


def read_json(path: pathlib.Path, default: dict | None = None) -> dict:
    """The JSON in `path`, or `default` (an empty dict if None) where there is no file."""
    if path.exists():
        return json.loads(path.read_text())
    return {} if default is None else default


def write_json_atomic(path: pathlib.Path, obj, prefix: str, indent: int = 2) -> None:
    """Write `obj` as sorted JSON to `path` through a temporary file and a rename, so an
    interrupted run keeps the old file. `prefix` names the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=indent, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def replace_section(
    readme: pathlib.Path,
    heading: str,
    section: str,
    *,
    before: str | None = None,
    pad: bool = False,
) -> None:
    """Write `section` into the README at `readme` as the section titled `heading`,
    leaving every other section as it is now on disk.

    `heading` is the section's whole first line (e.g. "## Pruning: ..."). If a line
    equals it, everything from there up to the next line starting with "## " (or the
    end) is replaced by `section`, and a blank line separates it from what follows. If
    there is no such line, the section is added: before the line equal to `before` (and
    a blank line) where `before` is given and found; otherwise at the end, after the
    text stripped of its trailing newlines and a blank line, or with `pad`, after the
    text as it is, given just enough newlines to end in a blank line (an empty text
    gets none). A missing README starts as "# Benchmarks" and a blank line.
    """
    text = readme.read_text() if readme.exists() else "# Benchmarks\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        at = None
        if before is not None:
            at = next((i for i, line in enumerate(lines) if line.rstrip("\n") == before), None)
        if at is not None:
            text = "".join(lines[:at]) + section + "\n" + "".join(lines[at:])
        elif pad:
            if text and not text.endswith("\n"):
                text += "\n"
            if text and not text.endswith("\n\n"):
                text += "\n"
            text += section
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
            len(lines),
        )
        after = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + after if after else "")
    readme.write_text(text)


def memory_maps() -> int:
    """Memory mappings of this process (Linux caps them at `vm.max_map_count`)."""
    try:
        with open("/proc/self/maps") as fh:
            return sum(1 for _ in fh)
    except OSError:  # not Linux
        return 0


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and of the
    child processes it has waited for) so far: a benchmark's own worker processes are
    not "other" load."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / ticks  # guest time is already counted in user
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


class OtherLoad:
    """How many cores other processes kept busy while a measurement ran (the machine
    is shared; their work slows both sides), and the 1-minute load average at its end."""

    def __enter__(self):
        self.start = time.perf_counter()
        try:
            self.cpu = cpu_seconds()
        except (OSError, ValueError, IndexError):
            self.cpu = None
        self.cores = None
        self.loadavg = None
        return self

    def __exit__(self, *exc):
        if self.cpu is not None:
            busy, own = cpu_seconds()
            wall = time.perf_counter() - self.start
            other = (busy - self.cpu[0]) - (own - self.cpu[1])
            self.cores = round(max(other, 0.0) / wall, 2)
        try:
            self.loadavg = round(os.getloadavg()[0], 2)
        except OSError:
            pass
        return False
