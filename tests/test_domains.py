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

from dgpg.domains import Domain, DomainError, domain_of, get_domain, names
from dgpg.domains.cloud.env import EnvConfig

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = json.loads((Path(__file__).parent / "data" / "cloud_fingerprint.json").read_text())
DOMAIN_FOLDERS = {p.name for p in (ROOT / "dgpg" / "domains").iterdir()
                  if (p / "__init__.py").exists()}
"""The domains' packages; the modules beside them in dgpg.domains are domain-neutral."""
NEUTRAL = [*sorted((ROOT / "dgpg" / "learners").glob("*.py")), ROOT / "dgpg" / "training.py",
           ROOT / "dgpg" / "evaluation.py", *sorted((ROOT / "dgpg" / "experiments").glob("*.py")),
           *sorted((ROOT / "dgpg" / "cli").glob("*.py")), ROOT / "dgpg" / "config.py",
           ROOT / "dgpg" / "bench.py"]


def _is_domain(module: str) -> bool:
    parts = module.split(".")
    return (module.startswith(("dgpg.envs", "dgpg.analytical"))
            or (parts[:2] == ["dgpg", "domains"] and len(parts) > 2
                and parts[2] in DOMAIN_FOLDERS))


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
    named = {m for m in _imports(path) if _is_domain(m)}
    assert not named, f"{path.relative_to(ROOT)} imports {sorted(named)}"


def test_the_domain_folders_are_found():
    assert {"cloud", "roads"} <= DOMAIN_FOLDERS


def test_registry():
    cloud = domain_of(EnvConfig(n_agents=3))
    assert isinstance(cloud, Domain) and cloud is get_domain("cloud")
    assert cloud.config_type is EnvConfig and cloud.reference in cloud.heuristics
    for name in names():
        domain = get_domain(name)
        assert domain.name == name and domain_of(domain.config_type(n_agents=1)) is domain
        assert domain.train_metrics and all(isinstance(m, str) for m in domain.train_metrics)
        for field in dataclasses.fields(Domain):
            if field.name not in ("spec", "train_metrics"):
                assert callable(getattr(domain, field.name)), (name, field.name)
    with pytest.raises(DomainError, match=r"^unknown domain 'water'; known: cloud"):
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


# slow: 35 to 55 s each, mostly eager (uncompiled) steps; the plug-in example and PowerGrid
# pass the same check in the default suite, and each built-in domain's invariants have their own
@pytest.mark.slow
@pytest.mark.parametrize("name", ["cloud", "roads"])
def test_the_built_in_domains_pass_check_domain(name):
    from dgpg.config import make_env_config
    from dgpg.domains import check_domain

    report = check_domain(get_domain(name), make_env_config(3, {}, name))
    assert {"config", "step", "vmap", "episode_metrics"} <= set(report)
    assert {f"model {m}" for m in get_domain(name).spec.models} <= set(report)


def test_the_reference_line_and_table_are_named_after_the_runs_reference():
    from dgpg.experiments.curves import summary_table

    table = summary_table([("dgpg", 1, {"reference": "so-sample", "test_return": -1.0,
                                        "test_return_ci": 0.1, "reference_test_return": -2.0})])
    assert "so-sample test return" in table and "best-fit-central" not in table
