"""Fixtures shared by test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_jax_cache(tmp_path_factory) -> Path:
    """A persistent JAX compilation cache folder for the whole session. Modules that train with
    the same small configuration (tests/test_training.py in process, tests/test_reliability.py
    in subprocesses through tests/train_driver.py) use it, so whichever runs first compiles and
    the other loads the compiled functions."""
    return tmp_path_factory.mktemp("jax_cache")
