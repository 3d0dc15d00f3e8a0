"""Fixtures shared by test modules."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

# Compilation dominates the suite's time; XLA's CPU back end compiles about twice as fast without
# its expensive optimisations, and about twice as fast again with its older elemental emitters
# instead of the fusion emitters (a DG-PG training episode: 19.6 s -> 10.8 s). Set before JAX
# starts its back end, so it holds for this process and every subprocess a test starts; results
# within a test stay comparable.
FAST_COMPILE = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                "--xla_cpu_use_fusion_emitters=false")
# Under pytest-xdist each worker computes on one thread: the workers share the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    FAST_COMPILE += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

CACHE_OPTIONS = {
    "jax_compilation_cache_dir": "JAX_COMPILATION_CACHE_DIR",
    "jax_persistent_cache_min_compile_time_secs": "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "jax_persistent_cache_min_entry_size_bytes": "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
}


@pytest.fixture(scope="session", autouse=True)
def shared_jax_cache(tmp_path_factory) -> Path:
    """A persistent JAX compilation cache for the whole session, in this process and (through
    the environment) in the subprocesses tests start. Many tests compile the same small
    configurations (the same programs); whichever runs first compiles, the others load. Under
    pytest-xdist the workers share one cache (beside their own temporary folders)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "jax_cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("jax_cache")
    values = {"jax_compilation_cache_dir": str(cache),
              "jax_persistent_cache_min_compile_time_secs": 0.5,
              "jax_persistent_cache_min_entry_size_bytes": -1}
    saved = {name: getattr(jax.config, name) for name in values}
    saved_env = {var: os.environ.get(var) for var in CACHE_OPTIONS.values()}
    for name, value in values.items():
        jax.config.update(name, value)
        os.environ[CACHE_OPTIONS[name]] = str(value)
    compilation_cache.reset_cache()
    yield cache
    for name, value in saved.items():
        jax.config.update(name, value)
    for var, value in saved_env.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    compilation_cache.reset_cache()


@pytest.fixture(scope="session", autouse=True)
def reference_cache(tmp_path_factory) -> Path:
    """The reference heuristic's cache (`dgpg.reference_cache`) in a folder of this session, not
    the user's; shared by the xdist workers like the compilation cache."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "reference_cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("reference_cache")
    saved = os.environ.get("DGPG_REFERENCE_CACHE")
    os.environ["DGPG_REFERENCE_CACHE"] = str(cache)
    yield cache
    if saved is None:
        os.environ.pop("DGPG_REFERENCE_CACHE", None)
    else:
        os.environ["DGPG_REFERENCE_CACHE"] = saved


# The longest test files first, so that the two xdist workers (one file each at a time) finish
# together instead of one waiting for the other's last long file. Tests keep their order within
# a file, so module fixtures are still built once.
LONGEST_FIRST = ("test_experiments.py", "test_ppo.py", "test_training.py", "test_roads_env.py",
                 "test_compaction.py", "test_actors.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
