"""toolkit's compiled functions: `eqx.filter_jit` with XLA options that cut the time
XLA's CPU compiler takes, at the same run time."""

import functools
import hashlib
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax


try:
    from jax._src.core import trace_state_clean
except ImportError:  # pragma: no cover - JAX moved it: never pass options

    def trace_state_clean() -> bool:
        return False


ENV = "TOOLKIT_COMPILER_OPTIONS"
# XLA:CPU's MLIR fusion emitters spend a large part of a plan's compile time in codegen
# that its older elemental emitters skip, for no measured change in run time
# (benchmarks/cold_start.py). The option only exists while XLA keeps both emitters.
_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}
# Added for the planner's programs: XLA:CPU hands reductions and elementwise work to
# YNNPACK library fusions, whose fixed cost per call outweighs the arithmetic of the
# planner's small blocks (the block product of the backward-error check of every
# block-tridiagonal solve: 38 us against 17 us as plain additions, 102 blocks of 9x9).
# Training steps keep them: their matrix products and convolutions gain from the
# library as often as they lose (measured both ways on LeNet-5).
_PLANNER_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


def _probe(options: dict[str, Any]) -> bool:
    try:
        jax.jit(lambda x: x, compiler_options=options).lower(0.0).compile()
    except Exception:  # this XLA does not know the options
        return False
    return True


def _options(planner: bool) -> dict[str, Any]:
    return {**_OPTIONS, **_PLANNER_OPTIONS} if planner else dict(_OPTIONS)


@functools.cache
def _supported(planner: bool) -> bool:
    # The probe lowers and compiles a program, a tenth of a second of a new process
    # that loads everything else from the persistent cache: its answer for this
    # jaxlib and backend is kept beside that cache.
    options = _options(planner)
    folder = _memo_folder()
    if not folder:
        return _probe(options)
    digest = _digest(options)
    name = f"toolkit-xla-options-{_jaxlib_version()}-{jax.default_backend()}-{digest}"
    memo = pathlib.Path(folder) / name
    try:
        return {"yes": True, "no": False}[memo.read_text().strip()]
    except (OSError, KeyError, UnicodeDecodeError):
        pass
    answer = _probe(options)
    try:
        memo.write_text("yes" if answer else "no")
    except OSError:  # an unwritable cache folder only costs the probe next time
        pass
    return answer


def _memo_folder() -> str | None:
    return jax.config.jax_compilation_cache_dir


def _digest(options: dict[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:12]


def _jaxlib_version() -> str:
    import jaxlib

    return jaxlib.__version__


def compiler_options(*, planner: bool = False) -> dict[str, Any]:
    """The XLA compile options of toolkit's own compiled functions (planning, training
    and evaluation steps).

    They switch XLA's CPU backend to its older fusion emitters, which compile a plan
    markedly faster at the same run time (measured in benchmarks/README.md, "Cold
    start"). The planner's programs also keep XLA from handing reductions and
    elementwise work to its YNNPACK library fusions, whose fixed cost per call
    outweighs the arithmetic of a plan's small blocks (cart_pole planned in 10.7-11.7
    ms against 27.5-28.2 ms without, in fresh processes on 2 cores). Pass them to your
    own top-level
    `jax.jit(..., compiler_options=toolkit.compiler_options(planner=True))` around
    a plan for the same savings. Set `TOOLKIT_COMPILER_OPTIONS=off` to use XLA's
    defaults everywhere.

    **Arguments:**

    - `planner`: the options of programs that plan, rather than those of training
        and evaluation steps.

    **Returns:**

    A new dict; empty if switched off, or if this version of XLA does not know the
    options (checked once per process by compiling an identity).
    """
    if os.environ.get(ENV, "").strip().lower() in ("0", "off", "false", "no", "none"):
        return {}
    # An XLA without the planner's (experimental) option still gets the others.
    if planner and _supported(True):
        return _options(True)
    return _options(False) if _supported(False) else {}


class _Program:
    """One compiled program of a `_FlatDispatch`: `fn` with every leaf of its inputs
    but the arrays fixed, taking and returning flat lists of arrays."""

    def __init__(self, fn: Callable, treedef, static: tuple, options: dict[str, Any]):
        self.outputs: tuple | None = None

        def flat(*arrays):
            out = fn(*jax.tree.unflatten(treedef, _fill(static, arrays)))
            out_leaves, out_treedef = jax.tree.flatten(out)
            arrays_out, kept = _split(out_leaves)
            self.outputs = (out_treedef, kept)
            return arrays_out

        flat.__name__ = flat.__qualname__ = getattr(fn, "__name__", "flat")
        self.jitted = jax.jit(flat, compiler_options=options or None)

    def __call__(self, arrays: list) -> Any:
        # Waited for here, on the flat list: the same arrays as in the pytree built
        # from them, whose flattening for `jax.block_until_ready` costs more.
        out = jax.block_until_ready(self.jitted(*arrays))
        assert self.outputs is not None
        treedef, kept = self.outputs
        return jax.tree.unflatten(treedef, _fill(kept, out))


class _ArrayMarker:
    def __repr__(self):
        return "<array>"


_ARRAY = _ArrayMarker()


_IS_ARRAY: dict[type, bool] = {}


def _is_array(x: Any) -> bool:
    # `eqx.is_array`, looked up by type: its isinstance against an abstract class costs
    # more than the lookup, at each of the tens of leaves of every call.
    kind = type(x)
    try:
        return _IS_ARRAY[kind]
    except KeyError:
        answer = _IS_ARRAY[kind] = eqx.is_array(x)
        return answer


def _split(leaves: list) -> tuple[list, tuple]:
    """The array leaves, and the leaves with `_ARRAY` in their places."""
    arrays, template = [], []
    for x in leaves:
        if _is_array(x):
            arrays.append(x)
            template.append(_ARRAY)
        else:
            template.append(x)
    return arrays, tuple(template)


def _fill(template: tuple, arrays) -> list:
    """`template`'s leaves with `arrays` put back in the places of `_ARRAY`."""
    it = iter(arrays)
    return [next(it) if x is _ARRAY else x for x in template]


_UNSERVED = object()


class _FlatDispatch:
    """Top-level calls by `jax.jit` on the array leaves of the inputs alone, one
    program per input structure, non-array leaves and array shapes: what
    `eqx.filter_jit` computes (arrays traced, everything else static), without the
    cost of its partitioning, argument binding and error plumbing on every call,
    which is about 0.2 ms, as much as several Newton steps of a small plan.

    `__call__` returns `_UNSERVED` where it cannot serve a call (a non-array leaf
    that cannot be hashed or compared), and re-raises a runtime error through
    `eqx.filter_jit` (the `fallback`), which turns Equinox's runtime checks into
    their own errors. It keeps the `MAX_PROGRAMS` most recently made programs: each
    holds its non-array leaves (a problem's functions and what they close over)."""

    MAX_PROGRAMS = 256

    def __init__(self, fn: Callable, options: dict[str, Any], fallback: Callable):
        self._fn = fn
        self._options = options
        self._fallback = fallback
        self._programs: dict[Any, _Program] = {}

    @staticmethod
    def _key(args: tuple) -> tuple[Any, list]:
        leaves, treedef = jax.tree.flatten(args)
        arrays, static = _split(leaves)
        signature = tuple((x.shape, x.dtype) for x in arrays)
        return (treedef, static, signature), arrays

    def has_program(self, args: tuple) -> bool:
        """Whether a call with `args` would run a program made by an earlier call."""
        key, _ = self._key(args)
        try:
            program = self._programs.get(key)
        except (TypeError, ValueError):
            return False
        return program is not None and program.outputs is not None

    def __call__(self, args: tuple) -> Any:
        key, arrays = self._key(args)
        treedef, static, _ = key
        try:
            program = self._programs.get(key)
        except (TypeError, ValueError):  # unhashable, or compares as an array
            return _UNSERVED
        if program is None:
            while len(self._programs) >= self.MAX_PROGRAMS:
                del self._programs[next(iter(self._programs))]
            program = self._programs[key] = _Program(self._fn, treedef, static, self._options)
        # As `eqx.filter_jit` does, keep JAX from logging a failed runtime check: the
        # fallback raises it as Equinox's error.
        _CALLBACK_LOG.addFilter(_QUIET)
        try:
            return program(arrays)
        except (jax.errors.JaxRuntimeError, ValueError):
            return self._fallback(*args)
        finally:
            _CALLBACK_LOG.removeFilter(_QUIET)


class _QuietCallbacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "jax.pure_callback failed"


_CALLBACK_LOG = logging.getLogger("jax._src.callback")
_QUIET = _QuietCallbacks()


class _FilterJit:
    def __init__(self, fn: Callable, planner: bool, jitkwargs: dict[str, Any]):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._planner = planner
        self._jitkwargs = jitkwargs
        self._nested = eqx.filter_jit(fn, **jitkwargs)
        self._top: Callable | None = None
        self._flat: _FlatDispatch | None = None

    def _top_level(self) -> Callable:
        if self._top is None:
            options = compiler_options(planner=self._planner)
            self._top = (
                eqx.filter_jit(self._fn, compiler_options=options, **self._jitkwargs)
                if options
                else self._nested
            )
        return self._top

    def __call__(self, *args, **kwargs):
        # JAX accepts compile options only on a top-level jit: inside a user's
        # transformation the call is part of their program, compiled with theirs.
        if not trace_state_clean():
            return self._nested(*args, **kwargs)
        return self.top_level(*args, **kwargs)

    def top_level(self, *args, **kwargs):
        """Call the function compiled with the options, as at the top level, whatever
        is being traced: only for inputs that carry no tracer that any transformation
        but autodiff would see, and no tangent (values behind `stop_gradient` under an
        eager `jax.grad`: autodiff passes such a call down to the evaluation below it,
        which compiles it as a program of its own).

        A planner's stages (`planner=True`, no keyword arguments) are dispatched on
        their array leaves by `jax.jit` directly (`_FlatDispatch`)."""
        if self._planner and not kwargs and not self._jitkwargs:
            if self._flat is None:
                options = compiler_options(planner=True)
                self._flat = _FlatDispatch(self._fn, options, self._top_level())
            out = self._flat(args)
            if out is not _UNSERVED:
                return out
        return self._top_level()(*args, **kwargs)

    def has_program(self, *args) -> bool:
        """Whether a top-level call with `args` would run a program that an earlier
        call made (rather than trace and compile one)."""
        return self._flat is not None and self._flat.has_program(args)

    def __getattr__(self, name: str) -> Any:
        # `lower`, ... of the top-level compiled function.
        if name.startswith("__") or name in (
            "_fn",
            "_planner",
            "_jitkwargs",
            "_nested",
            "_top",
            "_flat",
        ):
            raise AttributeError(name)
        return getattr(self._top_level(), name)


def filter_jit(fn: Callable | None = None, *, planner: bool = False, **jitkwargs) -> Callable:
    """`eqx.filter_jit(fn, **jitkwargs)`, compiled with [`toolkit.compiler_options`][]
    when called at the top level (not inside another transformation).

    **Arguments:**

    - `fn`: the function; omitted, a decorator is returned.
    - `planner`: compile with the planner's options.
    - `jitkwargs`: passed on to `eqx.filter_jit` (e.g. `donate`).

    **Returns:**

    The compiled function.
    """
    if fn is None:
        return functools.partial(filter_jit, planner=planner, **jitkwargs)
    return _FilterJit(fn, planner, jitkwargs)


def jit(fn: Callable, *, planner: bool = False, **jitkwargs) -> Callable:
    """`jax.jit(fn, **jitkwargs)` with [`toolkit.compiler_options`][], for functions
    only ever called at the top level.

    **Arguments:**

    - `fn`: the function.
    - `planner`: compile with the planner's options.
    - `jitkwargs`: passed on to `jax.jit`.

    **Returns:**

    The compiled function.
    """
    options = compiler_options(planner=planner)
    return jax.jit(fn, compiler_options=options or None, **jitkwargs)
