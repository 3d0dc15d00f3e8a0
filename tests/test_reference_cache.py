"""The reference heuristic's returns are computed once per (domain, configuration, seeds) and
read back equal, bit for bit; another configuration, other seeds or a corrupt entry compute
them again, and `DGPG_REFERENCE_CACHE=off` keeps nothing."""

from __future__ import annotations

import numpy as np
import pytest

from dgpg.config import make_env_config
from dgpg.domains import get_domain
from dgpg.evaluation import evaluate
from dgpg.reference_cache import entry_key, reference_returns

CONFIG = make_env_config(2, {"episode_steps": 6}, "cloud")
SEEDS = (10000, 10001, 10002)


def _computed(config, seeds, calls):
    def compute():
        calls.append(1)
        domain = get_domain("cloud")
        return evaluate(domain.heuristics[domain.reference], config, seeds)["return"]
    return compute


def test_computed_once_then_read_back_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("DGPG_REFERENCE_CACHE", str(tmp_path))
    calls: list[int] = []
    first = reference_returns(CONFIG, SEEDS, _computed(CONFIG, SEEDS, calls))
    again = reference_returns(CONFIG, SEEDS, _computed(CONFIG, SEEDS, calls))
    assert len(calls) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float64 and first.shape == (3,)
    other = make_env_config(2, {"episode_steps": 7}, "cloud")
    others = (10003, 10004, 10005)  # as many as SEEDS: the compiled evaluation is reused
    assert entry_key(other, SEEDS) != entry_key(CONFIG, SEEDS) != entry_key(CONFIG, others)
    assert entry_key(CONFIG, SEEDS) != entry_key(CONFIG, SEEDS[:2])
    reference_returns(CONFIG, others, _computed(CONFIG, others, calls))
    assert len(calls) == 2
    for path in tmp_path.glob("*.json"):
        path.write_text("{not json")
    np.testing.assert_array_equal(
        reference_returns(CONFIG, SEEDS, _computed(CONFIG, SEEDS, calls)), first)
    assert len(calls) == 3


@pytest.mark.parametrize("setting", ["off"])
def test_off_keeps_nothing(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("DGPG_REFERENCE_CACHE", setting)
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    reference_returns(CONFIG, SEEDS, _computed(CONFIG, SEEDS, calls))
    reference_returns(CONFIG, SEEDS, _computed(CONFIG, SEEDS, calls))
    assert len(calls) == 2 and not list(tmp_path.iterdir())
