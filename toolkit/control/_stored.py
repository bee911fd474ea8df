"""Plans of the library's problems from compiled programs kept on disk.

JAX's persistent cache saves XLA's compile, but its key is the lowered program, so a
new process still traces and lowers every stage of a plan, most of a warm
`python -m toolkit plan` (benchmarks/README.md, "Cold start"). A problem of the
library is known by its name: with the source of toolkit and the versions of its
dependencies, the name, the transcription, the planner and the shapes of the inputs
determine each stage's program, so it can be stored and loaded without tracing it. A
problem of your own can close over anything, and goes through `control.plan`.

`python -m toolkit plan` stores its programs next to JAX's cache (`<cache>/plans`).
Store from a process that has compiled nothing else: XLA:CPU reuses kernels it
compiled for earlier programs and leaves them out of a serialised copy, which then
fails to load (the entry is removed with a warning and compiled again). The demo,
which trains first, plans without the store.
"""

import contextlib
import functools
import hashlib
import importlib.metadata
import os
import pathlib
import pickle
import tempfile
import warnings
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.experimental import serialize_executable

from .._jit import compiler_options, jit
from ._plan import plan
from ._planner.base import AbstractPlanner
from ._planner.memo import tuned as memoised_tolerance
from ._planner.presets import KKTNewton
from ._solution import Solution
from ._stages import _stages, can_run_in_stages
from ._transcription.base import AbstractTranscription
from .problems import get


_PACKAGES = ("jax", "jaxlib", "equinox", "optimistix", "lineax", "diffrax", "numpy")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@functools.cache
def environment() -> str:
    """What else a stored program depends on: toolkit's source, the versions of the
    packages that trace it, the device, XLA's options and the error mode."""
    source = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        source.update(path.relative_to(root).as_posix().encode())
        source.update(path.read_bytes())
    device = jax.devices()[0]
    return "|".join(
        [
            source.hexdigest(),
            *(f"{p}={_version(p)}" for p in _PACKAGES),
            device.platform,
            device.device_kind,
            repr(sorted(compiler_options(planner=True).items())),
            os.environ.get("EQX_ON_ERROR", ""),
            f"x64={jax.config.jax_enable_x64}",
        ]
    )


class ExecutableStore:
    """Runs a plan's compiled stages (`_stages`' `run`) from executables stored in
    `folder`, under keys made of `identity`, the stage, the input shapes and
    `environment()`; a missing entry is compiled and stored, a corrupt one compiled
    again (with a warning)."""

    def __init__(self, folder: pathlib.Path, identity: str):
        self.folder = pathlib.Path(folder)
        self.identity = identity

    def _path(self, key: str) -> pathlib.Path:
        return self.folder / f"{key}.pkl"

    def _key(self, stage, leaves) -> str:
        signature = [(tuple(x.shape), str(x.dtype)) for x in leaves]
        text = f"{self.identity}|{stage.__qualname__}|{signature}|{environment()}"
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, stage, *args):
        dynamic, static = eqx.partition(args, eqx.is_array)
        leaves, treedef = jax.tree.flatten(dynamic)
        key = self._key(stage, leaves)
        if key not in _IN_MEMORY:
            existed = self._path(key).exists()
            loaded = self._load(key, leaves)
            if loaded is not None:
                try:  # an executable that loads but does not run is compiled again
                    outputs = jax.block_until_ready(loaded[0](*leaves))
                except jax.errors.JaxRuntimeError as e:
                    self._warn(key, e)
                else:
                    _IN_MEMORY[key] = loaded
                    return _rebuild(loaded[1], outputs)
            # After a failed load, this process does not store it again: XLA may have
            # left kernels it shares with earlier programs out of the stored copy. The
            # next process compiles and stores it.
            store = not existed
            _IN_MEMORY[key] = self._compile(key, stage, leaves, treedef, static, store)
        executable, template = _IN_MEMORY[key]
        return _rebuild(template, executable(*leaves))

    def _warn(self, key: str, e: Exception) -> None:
        self._path(key).unlink(missing_ok=True)
        warnings.warn(
            f"toolkit: the stored plan program {str(self._path(key))!r} could "
            f"not be loaded ({type(e).__name__}: {e}); compiling it again.",
            stacklevel=4,
        )

    def _load(self, key: str, leaves: list) -> tuple[Any, Any] | None:
        if not self._path(key).exists():
            return None
        try:
            payload, num_outputs, template = pickle.loads(self._path(key).read_bytes())
            executable = serialize_executable.deserialize_and_load(
                payload,
                jax.tree.structure((tuple(leaves), {})),
                jax.tree.structure([0] * num_outputs),
            )
        except Exception as e:  # a corrupt or foreign entry: compile it again
            self._warn(key, e)
            return None
        return executable, template

    def _compile(self, key, stage, leaves, treedef, static, store) -> tuple[Any, Any]:
        box: dict[str, Any] = {}

        def flat(*xs):  # named after the stage: one module name per program
            out = stage._fn(*eqx.combine(jax.tree.unflatten(treedef, xs), static))
            out_dynamic, box["static"] = eqx.partition(out, eqx.is_array)
            outputs, box["treedef"] = jax.tree.flatten(out_dynamic)
            return outputs

        flat.__name__ = flat.__qualname__ = f"stored{stage.__qualname__}"
        with _persistent_cache_off():
            executable = jit(flat, planner=True).lower(*leaves).compile()
        # The outputs' structure, with a 0-d placeholder for each array.
        shapes = executable.out_info
        placeholders = [np.zeros((), s.dtype) for s in shapes]
        template = eqx.combine(jax.tree.unflatten(box["treedef"], placeholders), box["static"])
        if not store:
            return executable, template
        temporary = None
        try:
            payload, _, _ = serialize_executable.serialize(executable)
            data = pickle.dumps((payload, len(placeholders), template))
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".tmp", delete=False) as f:
                temporary = pathlib.Path(f.name)
                f.write(data)
            temporary.replace(self._path(key))
        except (OSError, ValueError, NotImplementedError, pickle.PicklingError):
            # Not storable here (a full or read-only folder, constants): compiled anyway.
            if temporary is not None:
                temporary.unlink(missing_ok=True)
        return executable, template


def _persistent_cache_off():
    """A context in which JAX's persistent cache stores nothing. An executable that
    cache hands back does not serialise whole (its kernels are missing when loaded), so
    the store's programs must never be in it."""
    try:
        from jax._src.config import persistent_cache_min_compile_time_secs
    except ImportError:  # pragma: no cover - JAX moved it
        return contextlib.nullcontext()
    return persistent_cache_min_compile_time_secs(float("inf"))


def _rebuild(template, outputs: list):
    """The stage's output: `template`'s structure with `outputs` as its arrays."""
    dynamic, static = eqx.partition(template, eqx.is_array)
    return eqx.combine(jax.tree.unflatten(jax.tree.structure(dynamic), outputs), static)


# Each program is loaded or compiled once per process: XLA:CPU refuses to run a second
# copy of a program whose kernels this process already holds.
_IN_MEMORY: dict[str, tuple[Any, Any]] = {}


@functools.cache
def _store(folder: pathlib.Path, identity: str) -> ExecutableStore:
    return ExecutableStore(folder, identity)


@functools.cache
def library_example(name: str):
    """`control.problems.get(name)`, built once per process, in one compiled program:
    a library problem's construction runs eager array operations, each a small program
    to lower and load in a new process (about 10 ms apiece)."""
    return eqx.filter_jit(functools.partial(get, name))()


def plan_library_problem(
    name: str,
    transcription: AbstractTranscription,
    solver: AbstractPlanner = KKTNewton(),
    *,
    folder: str | os.PathLike | None,
) -> Solution:
    """`control.plan(ex.problem, transcription, solver, args=ex.args, throw=False)` for
    `ex = control.problems.get(name)`, with its stages' compiled programs stored in
    `folder` (`None`: nothing is stored, and this is `control.plan`). A planner that
    does not run in stages (the least-squares planner) goes through `control.plan`.

    **Returns:**

    The [`toolkit.control.Solution`][], as `control.plan` returns it.
    """
    ex = library_example(name)
    problem, args = ex.problem, ex.args
    if problem.args_check is not None:
        args = problem.args_check(args)
    tuned = memoised_tolerance(solver, problem.x0.dtype)
    if folder is None or not can_run_in_stages(
        tuned, None, problem, transcription, tuned, args, None
    ):
        return plan(problem, transcription, solver, args=args, throw=False)
    identity = f"{name}|{transcription!r}|{tuned!r}"
    store = _store(pathlib.Path(folder).expanduser(), identity)
    return _stages(problem, transcription, tuned, args, None, run=store)[0]
