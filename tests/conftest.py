import gc

import jax
import jax.random as jr
import pytest

import toolkit


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
# Compiled programs persist between test runs (in the user's cache folder, never the
# checkout); TOOLKIT_COMPILATION_CACHE=off runs the suite with every program compiled.
toolkit.enable_compilation_cache()


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
# recompiling what a later test shares with an earlier one.
_MAX_MAPPINGS = 20_000


@pytest.fixture(autouse=True)
def _release_compiled_executables():
    yield
    if _memory_mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()
