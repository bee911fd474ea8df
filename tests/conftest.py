import gc
import os
import subprocess
import sys


def _suite_xla_flags() -> str:
    """The XLA flags the suite compiles with: XLA's cheaper CPU code generation
    (`xla_cpu_use_fusion_emitters=false`), if this XLA knows the flag (XLA aborts on
    unknown flags, so a fresh process tries it first; the answer is passed on to the
    test workers in the environment)."""
    if "TOOLKIT_TEST_XLA_FLAGS" not in os.environ:
        flags = "--xla_cpu_use_fusion_emitters=false"
        probe = subprocess.run(
            [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
            env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
            capture_output=True,
        )
        os.environ["TOOLKIT_TEST_XLA_FLAGS"] = flags if probe.returncode == 0 else ""
    return os.environ["TOOLKIT_TEST_XLA_FLAGS"]


# The suite checks what programs compute, not how fast they run: most of its time is
# XLA compiling small programs that then run once, and XLA's optimisation passes take
# half of that (measured: a test's CPU time 75 -> 33 s). Benchmarks, the slow set
# (`-m slow`) and users compile with full optimisation; TOOLKIT_TEST_OPTIMISE=1 runs
# the suite that way too. Set before JAX starts its backend; fresh processes that
# tests start inherit it (`tests.helpers.fresh_command`).
if os.environ.get("TOOLKIT_TEST_OPTIMISE") != "1":
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    _flags = os.environ.get("XLA_FLAGS", "")
    if _suite_xla_flags() not in _flags:  # test workers inherit the controller's
        os.environ["XLA_FLAGS"] = f"{_flags} {_suite_xla_flags()}".strip()

import jax  # noqa: E402
import jax.random as jr  # noqa: E402
import pytest  # noqa: E402

import toolkit  # noqa: E402


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
# Compiled programs persist between test runs (in the user's cache folder, never the
# checkout); TOOLKIT_COMPILATION_CACHE=off runs the suite with every program compiled.
toolkit.enable_compilation_cache()


# Tracing allocates millions of short-lived objects while the heap holds every jaxpr
# and executable the worker has made: at Python's default thresholds the collector
# spends 7.4 of 68 s of a control test file in full collections (measured); at these,
# 2.1 s, with the same peak memory (the guard below still collects in full).
gc.set_threshold(10_000, 20, 10)


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    # pytest collects garbage once more at the end of a session (for unraisable
    # exceptions in finalisers): seconds on a worker's heap, for nothing here.
    gc.freeze()


@pytest.fixture
def getkey():
    keys = iter(jr.split(jr.key(5678), 1000))
    return lambda: next(keys)


def _memory_mappings() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


# Every executable XLA compiles for the CPU holds a few hundred memory mappings
# until JAX's caches drop it, and Linux allows a process 65530 of them
# (vm.max_map_count). A whole test session compiles far more than that: the process
# then dies of SIGSEGV or SIGABRT inside the compiler. Dropping the caches once the
# count passes a threshold keeps the session well below the limit at the cost of
# recompiling what a later test shares with an earlier one. No test adds more than
# 3,316 mappings (measured over the suite), so clearing past 45,000 leaves a wide
# margin. Counting them reads /proc/self/maps (tens of ms at 30,000 mappings, 6 s
# of a suite): after a count, the next comes only after as many tests as cannot,
# at 5,000 mappings each, carry the count past the threshold.
_MAX_MAPPINGS = 45_000
_MAPPINGS_PER_TEST = 5_000
_tests_until_count = 0


@pytest.fixture(autouse=True)
def _release_compiled_executables():
    global _tests_until_count
    yield
    if _tests_until_count > 0:
        _tests_until_count -= 1
        return
    mappings = _memory_mappings()
    if mappings > _MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()
        mappings = _memory_mappings()
    _tests_until_count = max(_MAX_MAPPINGS - mappings, 0) // _MAPPINGS_PER_TEST
