import os
import pathlib
import subprocess
import sys

import jax
import pytest

import toolkit


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(toolkit._compilation_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert toolkit.default_cache_dir() == tmp_path / "xdg" / "toolkit" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert toolkit.default_cache_dir() == pathlib.Path.home() / ".cache" / "toolkit" / "jax"
    monkeypatch.setenv("TOOLKIT_COMPILATION_CACHE", str(tmp_path / "moved"))
    assert toolkit.default_cache_dir() == tmp_path / "moved"
    for off in ("off", "0", "", "None"):
        monkeypatch.setenv("TOOLKIT_COMPILATION_CACHE", off)
        assert toolkit.default_cache_dir() is None


@pytest.fixture
def no_cache_configured():
    # The suite's own cache (conftest) is set aside while a test configures another.
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_unwritable_folder_warns_and_leaves_the_cache_off(tmp_path, no_cache_configured):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="not writable.*TOOLKIT_COMPILATION_CACHE"):
        assert toolkit.enable_compilation_cache(blocker / "cache") is None
    assert jax.config.jax_compilation_cache_dir is None


def test_switched_off_by_the_environment(monkeypatch, no_cache_configured):
    monkeypatch.setenv("TOOLKIT_COMPILATION_CACHE", "off")
    assert toolkit.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_a_configured_folder_is_kept(tmp_path):
    configured = jax.config.jax_compilation_cache_dir
    if not configured:
        pytest.skip("the suite runs with the cache off")
    assert toolkit.enable_compilation_cache(tmp_path) == pathlib.Path(configured)


_SMALL = """
import jax
import jax.numpy as jnp
import toolkit

print("cache:", toolkit.enable_compilation_cache())


@jax.jit
def doubled_cumsum(x):
    return 2.0 * jnp.cumsum(x)


print("small:", doubled_cumsum(jnp.arange(5.0)).tolist())
"""
_PLAN = (
    _SMALL
    + """
from toolkit import control

jax.config.update("jax_enable_x64", True)
ex = control.problems.get("van_der_pol")
sol = control.plan(ex.problem, control.Trapezoidal(10), args=ex.args)
print("cost:", repr(float(sol.cost)))
"""
)


def _run(code: str, cache: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOOLKIT_COMPILATION_CACHE": str(cache), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return out


def _entries(cache: pathlib.Path, name: str) -> list[pathlib.Path]:
    return sorted(p for p in cache.iterdir() if p.name.startswith(f"jit_{name}-"))


def test_plan_is_stored_and_a_corrupt_cache_compiles_again(tmp_path):
    cache = tmp_path / "cache"
    first = _run(_PLAN, cache)
    # JAX refuses to store a program that holds a host callback (`eqx.error_if` with
    # `throw=True`, say): the eager plan's stage being there shows it holds none.
    assert _entries(cache, "_newton"), sorted(p.name for p in cache.iterdir())
    assert _entries(cache, "doubled_cumsum")
    # Every entry overwritten with garbage of the same size: warned about, compiled
    # again, same numbers.
    for entry in cache.iterdir():
        size = entry.stat().st_size
        entry.write_bytes((b"\x00garbage" * (size // 8 + 1))[:size])
    second = _run(_SMALL, cache)
    assert "Error reading persistent compilation cache entry" in second.stderr

    def small(out):
        return [s for s in out.stdout.splitlines() if s.startswith("small")]

    assert small(second) == small(first) == ["small: [0.0, 2.0, 6.0, 12.0, 20.0]"]
