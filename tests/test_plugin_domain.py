"""A domain of one's own, outside the package: `tests/data/legacy_plugin` (the `machines` domain,
written against the seam's former spelling: `Observation(jobs=..., job_mask=...)` and a spec that
names no J and K) found through its entry point, checked, trained by all three learners and
evaluated from the command line, with deprecation warnings; and the registry's behaviour with
clashing, broken and Python-registered domains."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import run_cli

import dgpg.domains as domains
from dgpg import config
from dgpg.domains import DomainError, DomainSpec, check_domain, get_domain, get_spec

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "data" / "legacy_plugin"
SMALL = ["--agents", "2", "--set", "env.episode_steps=8"]


def _install(site: Path, entry_points: dict[str, str], name: str = "dgpg_machines") -> None:
    """What `pip install` leaves for importlib.metadata: a dist-info folder with the package's
    entry points (the package itself is put on the path beside it)."""
    info = site / f"{name}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[dgpg.domains]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


def _installed(tmp_path, monkeypatch, folder: Path, entry_points: dict[str, str], name: str):
    """The plug-in package in `folder` installed into this process (and into subprocesses
    through PYTHONPATH) until the test ends; yields its site folder."""
    site = tmp_path / "site"
    _install(site, entry_points, name)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), str(folder), os.environ.get("PYTHONPATH", "")]))
    domains.refresh()
    yield site
    monkeypatch.undo()
    domains.refresh()


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The legacy plug-in installed into this process and its subprocesses."""
    yield from _installed(tmp_path, monkeypatch, PLUGIN, {"machines": "dgpg_machines:SPEC"},
                          "dgpg_machines")


def test_the_legacy_plugin_passes_check_domain_and_warns_with_the_new_spelling(plugin):
    """The former names keep working; their use warns, naming what replaces them."""
    with pytest.warns(DeprecationWarning) as caught:
        report = check_domain(get_domain("machines"), config.make_env_config(3, {}, "machines"))
    assert {"step", "vmap", "model aligned", "heuristic greedy", "slot_capacity"} <= set(report)
    messages = {str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)}
    for new in ("Observation.slots", "Observation.slot_mask", "slots_per_agent",
                "candidates_per_slot"):
        assert any(new in m for m in messages), f"no DeprecationWarning names {new}: {messages}"


@pytest.mark.parametrize("algos", [
    ("dgpg",),
    pytest.param(("dgpg", "mappo", "ippo"), marks=pytest.mark.slow),  # about 80 s
])
def test_the_learners_train_on_the_legacy_plugin_and_a_new_process_evaluates_it(plugin, tmp_path,
                                                                              algos):
    for algo in algos:
        out = tmp_path / algo
        code, _, err = run_cli(["train", "--domain", "machines", "--algo", algo, "--episodes",
                                "2", *SMALL, "--out", str(out), "--json"])
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["domain"] == "machines" and summary["reference"] == "greedy"
        assert "reference_test_return" in summary and "bestfit_central_test_return" not in summary
        assert summary["model"] == ("aligned" if algo == "dgpg" else "none")
    # a fresh process finds the domain of a checkpoint through the entry point alone
    proc = subprocess.run([sys.executable, "-m", "dgpg.cli", "evaluate", "--checkpoint",
                           str(tmp_path / "dgpg"), "--policy", "all", "--scenarios", "3",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["policy"] for r in rows] == ["random", "greedy", "dgpg (seed 0)"]
    assert all(r["domain"] == "machines" and "cost" in r for r in rows)


def test_domains_lists_the_plugin_and_the_spec_drives_the_names(plugin):
    code, out, _ = run_cli(["domains", "--json"])
    listed = {d["name"]: d for d in json.loads(out)["domains"]}
    assert code == 0 and set(listed) >= {"cloud", "roads", "machines"}
    assert listed["machines"]["heuristics"] == ["random", "greedy"]
    code, _, err = run_cli(["evaluate", "--domain", "machines", "--policy", "best-fit"])
    assert code == 2 and "unknown policy 'best-fit' in the machines domain" in err
    code, out, err = run_cli(["train", "--domain", "machines", "--help-keys"])
    assert code == 0 and "env.carry_over" in out and "env.arrival_rate" not in out, err


def test_a_model_name_is_resolved_per_domain_at_call_time(plugin):
    """config imported first, a domain with its own model name registered afterwards."""
    spec = dataclasses.replace(get_spec("machines"), name="quadratic-machines",
                               models={"quadratic": "dgpg_machines.env:AlignedModel"})
    domains.register(spec)
    try:
        run = config.RunConfig(algo="dgpg", n_agents=3, episodes=1, model="quadratic",
                               domain="quadratic-machines")
        assert config.RunConfig(algo="dgpg", n_agents=3, episodes=1,
                                domain="quadratic-machines").model == "quadratic"  # its first
        with pytest.raises(config.ConfigError, match="unknown model 'aligned' in the "
                                                     "quadratic-machines domain"):
            config.RunConfig(algo="dgpg", n_agents=3, episodes=1, model="aligned",
                             domain=spec.name)
        # MAPPO and IPPO never build a model, whatever the domain names its models
        assert config.RunConfig(algo="mappo", n_agents=3, episodes=1,
                                domain=spec.name).model == "none"
        assert run.train_config().model == "quadratic"
    finally:
        domains.unregister(spec.name)


def test_mappo_and_ippo_build_no_model(monkeypatch):
    from dgpg.domains import Domain
    from dgpg.learners import ppo
    from dgpg.learners.config import TrainConfig

    def refuse(self, name, config):
        raise AssertionError("a model was built")

    monkeypatch.setattr(Domain, "make_model", refuse)
    env = config.make_env_config(2, {"episode_steps": 4}, "cloud")
    for algo in ("mappo", "ippo"):
        ppo.make_rollout(TrainConfig(algo=algo), env)
        ppo.make_loss(TrainConfig(algo=algo), env, rows=8)
    with pytest.raises(AssertionError, match="a model was built"):
        ppo.make_rollout(TrainConfig(algo="dgpg"), env)


def test_register_refuses_a_taken_name_and_check_domain_names_the_broken_rule(plugin):
    taken = dataclasses.replace(get_spec("machines"), name="cloud")
    with pytest.raises(DomainError, match="domain 'cloud' is already registered"):
        domains.register(taken)
    bad = dataclasses.replace(get_spec("machines"), name="flat-reference",
                              models={"aligned": "test_plugin_domain:FlatReference"})
    domains.register(bad)
    try:
        from dgpg.domains import Domain

        broken = Domain(**{**{f.name: getattr(get_domain("machines"), f.name)
                              for f in dataclasses.fields(Domain)}, "spec": bad})
        with pytest.raises(AssertionError, match=r"^model aligned: every leaf of the reference "
                                                 r"must lead with \(N, J\)"):
            check_domain(broken, config.make_env_config(3, {}, "machines"))
    finally:
        domains.unregister("flat-reference")


class FlatReference:
    """A model whose reference has a (K,) leaf: the update's subsampling of agents breaks it."""

    def __init__(self, config):
        self.k = config.n_candidates

    def reference(self, state, probs=None):
        import jax.numpy as jnp

        return jnp.zeros(self.k)

    def guidance_loss(self, probs, reference):
        return (probs * reference).sum()


@pytest.mark.parametrize(("entry", "message"), [
    ({"broken": "no_such_module_anywhere:SPEC"},
     r"the domain plug-in 'broken' \(no_such_module_anywhere:SPEC, dgpg_machines\) cannot be "
     r"loaded: ModuleNotFoundError"),
    ({"broken": "dgpg_machines.config:MachinesConfig"},
     r"the domain plug-in 'broken' \(dgpg_machines.config:MachinesConfig\) is type, not a "
     r"DomainSpec named 'broken'"),
])
def test_a_broken_plugin_is_one_line_and_breaks_no_other_domain(tmp_path, monkeypatch, entry,
                                                                message):
    site = tmp_path / "site"
    _install(site, {**entry, "cloud": "dgpg_machines:SPEC"})  # also claims a built-in name
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    domains.refresh()
    try:
        code, _, err = run_cli(["train", "--domain", "broken", "--out", str(tmp_path / "run")])
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert __import__("re").search(message, err), err
        assert not (tmp_path / "run").exists()
        assert get_spec("cloud").title == "HeteroCloud"  # the built-in wins its name
        assert any("built-in domain name 'cloud'" in p for p in domains.problems().values())
        code, out, _ = run_cli(["domains"])
        assert code == 0 and "roads" in out
    finally:
        monkeypatch.undo()
        domains.refresh()


def test_a_folder_whose_run_failed_at_start_can_be_rerun(tmp_path):
    run = config.RunConfig(algo="dgpg", n_agents=2, episodes=1)
    (tmp_path / "config.json").write_text(json.dumps(run.to_json()))
    (tmp_path / "checkpoints").mkdir()
    config.check_folder(tmp_path, run, resume=False)  # no error: nothing was trained
    (tmp_path / "metrics.csv").write_text("episode,seed\n1,0\n")
    with pytest.raises(config.RunError, match="already holds a run"):
        config.check_folder(tmp_path, run, resume=False)


def test_old_summaries_read_with_the_reference_names():
    old = {"test_return": -5.0, "bestfit_central_val_return": -9.0,
           "bestfit_central_test_return": -8.0}
    new = config.upgrade_summary(old)
    assert new["reference"] == "best-fit-central"
    assert (new["reference_val_return"], new["reference_test_return"]) == (-9.0, -8.0)


def test_a_spec_is_checked_when_declared():
    base = dict(name="x", title="X", config="m:C", domain="m:D", models={"a": "m:f"},
                heuristics={"h": "m:h"}, reference="h")
    DomainSpec(**base)
    for change, message in [({"name": "Bad Name"}, "lower-case"),
                            ({"reference": "other"}, "is not one of its heuristics"),
                            ({"models": {}}, "declares no analytical model"),
                            ({"table_metrics": ("cost",)}, "must start with 'return'")]:
        with pytest.raises(DomainError, match=message):
            DomainSpec(**{**base, **change})


EXAMPLE = ROOT / "examples" / "plugin_domain"


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The example plug-in (`examples/plugin_domain`, the `charging` domain) installed into this
    process and its subprocesses."""
    yield from _installed(tmp_path, monkeypatch, EXAMPLE, {"charging": "dgpg_charging:SPEC"},
                          "dgpg_charging")


def test_the_example_plugin_guides_in_minutes_and_trains_with_the_defaults(example, tmp_path):
    """Its guidance loss is tens of minutes at the uniform policy (unscaled on purpose); the
    adaptive weight's rule, for a domain with no `model-greedy`, is the model's cheapest
    candidate, here the domain's own greedy heuristic; and the defaults train it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dgpg.learners.ppo import TrainConfig, model_rule

    domain = get_domain("charging")
    config = domain.spec.config_type()(n_agents=6)
    assert "model marginal" in check_domain(domain, config)
    state = domain.reset(jax.random.key(0), config)
    model = domain.make_model(None, config)
    J, K = domain.decision_shape(config)
    uniform = jnp.full((6, J, K), 1.0 / K)
    assert float(model.guidance_loss(uniform, model.reference(state, uniform))) > 5.0
    rule = model_rule(TrainConfig(), config)(jax.random.key(1), state, config)
    greedy = domain.heuristics["greedy"](jax.random.key(1), state, config)
    np.testing.assert_array_equal(np.asarray(rule), np.asarray(greedy))

    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--domain", "charging", "--episodes", "2", "--agents", "4",
                            "--set", "env.episode_steps=8", "--out", str(out), "--json"])
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["alpha_schedule"] == "fixed" and saved["run"]["defaults"] == 3


def test_the_adaptive_weight_logs_its_alpha_and_the_defaults_do_not(example):
    """metrics.csv gains an `alpha` column only when the weight moves (the adaptive schedule)."""
    from dgpg.learners.ppo import TrainConfig
    from dgpg.training import metric_columns

    config = get_domain("charging").spec.config_type()(n_agents=4)
    assert "alpha" in metric_columns(config, TrainConfig(alpha_schedule="adaptive"))
    assert "alpha" not in metric_columns(config, TrainConfig())
    assert "alpha" not in metric_columns(config, TrainConfig(alpha_schedule="linear"))
