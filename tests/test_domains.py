"""The domain seam: the learners, training, evaluation and the experiment runner reach an
environment only through `dgpg.domains`, and going through it left the cloud's numbers as they
were (tests/data/cloud_fingerprint.json was recorded before the seam existed): its heuristic
roll-outs bit for bit, its training numbers within the tolerances of `_assert_training_close`."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
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


RETURN_REL_TOL = 1e-4
"""Relative tolerance on each training episode's mean return."""
PARAM_SUM_ABS_TOL = 1e-3
"""Absolute tolerance on the sum of every parameter after two training episodes."""


def _assert_training_close(part: str, found: dict, recorded: dict) -> None:
    """A learner's fingerprint against the recorded one, within tolerances.

    The training numbers are not bit-exact across machines: XLA's CPU code generation (the
    processor's instruction set, LLVM's choices) changes the last bits of the forward and
    backward passes even with `fingerprint_driver.FLAGS`, and eight Adam steps carry those bits
    into the parameters. The machine that recorded the fingerprint and a 2-core AMD EPYC (AVX2)
    differ by 6e-6 in each learner's `param_sum` and not at all in the returns.

    - `returns` (the mean return of each of the two episodes, float32 sums over 20 steps):
      relative tolerance `RETURN_REL_TOL` = 1e-4. They were equal on both machines and under
      every XLA setting tried; another summation order would move them by float32 ulps (about
      1e-7 relative), while an action sampled differently or a changed reward moves them by far
      more.
    - `param_sum`: absolute tolerance `PARAM_SUM_ABS_TOL` = 1e-3, about 170 times the
      difference between machines. Multiplying every initial parameter by 1 + 1e-6 noise (about
      eight float32 ulps, more than code generation changes) moves it by up to 2e-5, 1e-5 noise
      by up to 2e-4. Each learner change tried moves it by 20 times the tolerance or more: a
      learning rate 10% higher by 0.028 to 0.042, alpha 0.4 instead of 0.5 by 0.046, DG-PG's
      guidance dropped (MAPPO) by 0.067, half the value-loss weight by 0.023 to 0.072. Smaller
      changes pass unnoticed here: no entropy bonus at all (`ent_coef` 0) moves it by 3e-5 only.
    """
    assert set(found) == set(recorded) == {"returns", "param_sum"}, part
    got = [float.fromhex(x) for x in found["returns"]]
    want = [float.fromhex(x) for x in recorded["returns"]]
    assert len(got) == len(want), (part, got, want)
    for episode, (g, w) in enumerate(zip(got, want, strict=True)):
        assert math.isclose(g, w, rel_tol=RETURN_REL_TOL, abs_tol=0.0), \
            f"{part}: return of episode {episode} is {g!r}, recorded {w!r}"
    g, w = float.fromhex(found["param_sum"]), float.fromhex(recorded["param_sum"])
    assert abs(g - w) <= PARAM_SUM_ABS_TOL, \
        f"{part}: param_sum is {g!r}, recorded {w!r} (differs by {abs(g - w):.3g})"


@pytest.mark.slow  # about 20 s; run it after any change behind the seam
def test_dgpg_training_matches_the_fingerprint():
    """DG-PG's two training episodes: returns and parameter sum within the tolerances of
    `_assert_training_close` (not bit for bit: they depend on code generation)."""
    _assert_training_close("dgpg", _fingerprint("dgpg")["dgpg"], FINGERPRINT["dgpg"])


@pytest.mark.slow  # about 60 s: two more learners and every heuristic compiled
def test_baselines_and_heuristics_match_the_fingerprint():
    """Every metric of every heuristic on two test scenarios exactly, bit for bit: those
    roll-outs take no learned parameters, and with `fingerprint_driver.FLAGS` their numbers are
    the same on both machines tried (and with XLA limited to SSE4.2 as with AVX2), so any
    change in the environment, its scenarios or a heuristic shows. MAPPO's and IPPO's training
    within the tolerances of `_assert_training_close`."""
    found = _fingerprint("mappo", "ippo", "heuristics")
    assert set(found) == {"mappo", "ippo", "heuristics"}
    assert found["heuristics"] == FINGERPRINT["heuristics"]
    for part in ("mappo", "ippo"):
        _assert_training_close(part, found[part], FINGERPRINT[part])


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
