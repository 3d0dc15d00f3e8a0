"""The domain seam: the learners, training, evaluation and the experiment runner reach an
environment only through `dgpg.domains`, and going through it left the cloud's numbers as they
were, bit for bit (tests/data/cloud_fingerprint.json was recorded before the seam existed)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import fingerprint_driver
import pytest

from dgpg.domains import REGISTRY, Domain, domain_of, get_domain
from dgpg.envs.cloud import EnvConfig

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = json.loads((Path(__file__).parent / "data" / "cloud_fingerprint.json").read_text())
DOMAIN_MODULES = ("dgpg.envs.cloud", "dgpg.envs.roads", "dgpg.analytical", "dgpg.heuristics")
NEUTRAL = [*sorted((ROOT / "dgpg" / "learners").glob("*.py")), ROOT / "dgpg" / "training.py",
           ROOT / "dgpg" / "evaluation.py", ROOT / "dgpg" / "experiments" / "sweep.py"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("path", NEUTRAL, ids=lambda p: p.name)
def test_the_learners_name_no_domain(path):
    named = {m for m in _imports(path) for d in DOMAIN_MODULES if m == d or m.startswith(d + ".")}
    assert not named, f"{path.relative_to(ROOT)} imports {sorted(named)}"


def test_registry():
    cloud = domain_of(EnvConfig(n_agents=3))
    assert isinstance(cloud, Domain) and cloud is get_domain("cloud")
    assert cloud.config_type is EnvConfig and cloud.reference in cloud.heuristics
    for name in REGISTRY:
        domain = get_domain(name)
        assert domain.name == name and type(domain.config_type()).domain == name
        assert domain.train_metrics and all(isinstance(m, str) for m in domain.train_metrics)
        for field in dataclasses.fields(Domain):
            if field.name not in ("name", "config_type", "heuristics", "reference",
                                  "train_metrics"):
                assert callable(getattr(domain, field.name)), (name, field.name)
    with pytest.raises(ValueError, match=r"^unknown domain 'water'; known: cloud"):
        get_domain("water")


def _fingerprint(*parts: str) -> dict:
    """tests/fingerprint_driver.py in a subprocess with its fixed XLA flags."""
    env = {**os.environ, "XLA_FLAGS": fingerprint_driver.FLAGS}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "fingerprint_driver.py"),
                           *parts], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow  # about 20 s; run it after any change behind the seam
def test_dgpg_training_is_unchanged_bit_for_bit():
    assert _fingerprint("dgpg")["dgpg"] == FINGERPRINT["dgpg"]


@pytest.mark.slow  # about 60 s: two more learners and every heuristic compiled
def test_baselines_and_heuristics_are_unchanged_bit_for_bit():
    found = _fingerprint("mappo", "ippo", "heuristics")
    for part, value in found.items():
        assert value == FINGERPRINT[part], part
