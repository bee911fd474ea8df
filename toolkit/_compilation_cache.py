"""JAX's persistent compilation cache, in a per-user folder."""

import os
import pathlib
import tempfile
import warnings

import jax


ENV = "TOOLKIT_COMPILATION_CACHE"
_OFF = ("", "0", "off", "false", "no", "none")


def default_cache_dir() -> pathlib.Path | None:
    """Where [`toolkit.enable_compilation_cache`][] keeps compiled programs.

    `$TOOLKIT_COMPILATION_CACHE` if set (`off`, `0` or empty switch the cache off),
    else `$XDG_CACHE_HOME/toolkit/jax`, else `~/.cache/toolkit/jax`.

    **Returns:**

    The folder, or `None` when the environment switches the cache off.
    """
    value = os.environ.get(ENV)
    if value is not None:
        if value.strip().lower() in _OFF:
            return None
        return pathlib.Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "toolkit" / "jax"


def enable_compilation_cache(
    path: str | os.PathLike | None = None, *, min_compile_time: float = 0.0
) -> pathlib.Path | None:
    """Switch on JAX's persistent compilation cache, so that a program compiled once
    (a plan, its gradient, a training step) is loaded from disk by the next process
    instead of compiled again.

    toolkit's command line, tutorials, benchmarks and tests call this; in your own
    code, call it once before the first compilation:
    `toolkit.enable_compilation_cache()`. A folder that cannot be created or written
    gives a warning and leaves the cache off; a corrupt entry is compiled again (JAX
    warns). A cache folder already configured in JAX (`JAX_COMPILATION_CACHE_DIR` or
    `jax.config`) is kept.

    **Arguments:**

    - `path`: the folder; default [`toolkit.default_cache_dir`][] (set
        `TOOLKIT_COMPILATION_CACHE` to move it, or to `off` to disable it).
    - `min_compile_time`: programs that compile faster than this many seconds are not
        stored. The default stores every one: a new process compiles dozens of small
        ones (array conversions, eager operations), each slower to compile than to
        read back from a local disk.

    **Returns:**

    The folder in use, or `None` if the cache stays off.
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return pathlib.Path(configured)
    folder = default_cache_dir() if path is None else pathlib.Path(path).expanduser()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        warnings.warn(
            f"toolkit: the compilation cache folder {str(folder)!r} is not writable "
            f"({type(e).__name__}: {e}); compiling without a persistent cache. Set "
            f"{ENV} to another folder, or to 'off'.",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder
