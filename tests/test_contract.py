"""A plug-in that breaks its contract is refused before anything compiles: `dgpg train`,
`evaluate` and `reproduce` run `check_contract` (imports, shapes by `jax.eval_shape`, a scalar
reward) and exit 2 with one line; a checkpoint whose domain cannot be loaded names the domain.

The broken domains are HeteroCloud with one thing changed, registered for this process."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import ClassVar

import jax.numpy as jnp
import pytest
from cli_harness import run_cli

from dgpg import domains
from dgpg.domains import Domain, check_contract, get_domain
from dgpg.domains.cloud import SPEC as CLOUD
from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.config import EnvConfig

MODULE = __name__


def _config(name: str) -> type:
    """A configuration class of domain `name`: the cloud's, renamed."""
    return dataclasses.dataclass(frozen=True)(
        type(f"Config_{name.replace('-', '_')}", (EnvConfig,), {
            "__module__": MODULE, "domain": name, "__annotations__": {"domain": ClassVar[str]}}))


def _vector_step(key, state, actions, config):
    state, reward, metrics = cloud.step(key, state, actions, config)
    return state, jnp.full((config.n_agents,), reward), metrics  # one reward per agent


def _wide_observe(state, config):
    obs = cloud.observe(state, config)
    return obs.replace(slot_mask=jnp.concatenate([obs.slot_mask, obs.slot_mask], axis=1))


BROKEN = {
    "vector-reward": ({"step": _vector_step}, {}, "the reward must be a float scalar"),
    "wide-mask": ({"observe": _wide_observe}, {}, "slot_mask must be (N, J)"),
    "lost-heuristic": ({}, {"heuristics": {**CLOUD.heuristics,
                                          "gone": "dgpg.domains.cloud.heuristics:nowhere"}},
                       "has no attribute 'nowhere'"),
}
CONFIGS = {name: _config(name) for name in BROKEN}
for _name, _cls in CONFIGS.items():
    globals()[_cls.__name__] = _cls


def _domain(name: str) -> Domain:
    functions, _, _ = BROKEN[name]
    cloud_domain = get_domain("cloud")
    fields = {f.name: getattr(cloud_domain, f.name) for f in dataclasses.fields(Domain)}
    return Domain(**{**fields, **functions, "spec": SPECS[name]})


SPECS = {name: dataclasses.replace(
    CLOUD, name=name, title=name, config=f"{MODULE}:{CONFIGS[name].__name__}",
    domain=f"{MODULE}:DOMAINS.{name.replace('-', '_')}", **spec_fields)
    for name, (_, spec_fields, _) in BROKEN.items()}


class _Domains:
    def __getattr__(self, attribute: str) -> Domain:
        return _domain(attribute.replace("_", "-"))


DOMAINS = _Domains()


@pytest.fixture(params=list(BROKEN))
def broken(request):
    name = request.param
    domains.register(SPECS[name])
    yield name, BROKEN[name][2]
    domains.unregister(name)


def test_check_contract_names_the_broken_rule(broken):
    name, message = broken
    config = CONFIGS[name](n_agents=3)
    with pytest.raises(AssertionError, match=f"^domain {name}: .*{re.escape(message)}"):
        check_contract(get_domain(name), config)


def test_check_contract_passes_the_built_in_domains():
    for name in domains.names():
        if name in BROKEN:
            continue
        config = domains.get_spec(name).config_type()(n_agents=3)
        check_contract(get_domain(name), config)


@pytest.mark.parametrize("argv", [
    ["train", "--agents", "3", "--episodes", "1", "--out", "{out}"],
    ["evaluate", "--policy", "all", "--agents", "3", "--scenarios", "2"],
    ["reproduce", "fig2", "--quick", "--out", "{out}"],
], ids=["train", "evaluate", "reproduce"])
def test_the_commands_refuse_a_broken_plugin_in_one_line(broken, argv, tmp_path, monkeypatch):
    """Refused before any compilation (the compilation cache, set up first thing before the
    first compile, is never reached) and before the output folder is made."""
    name, message = broken
    out = tmp_path / "run"
    argv = [a.format(out=out) for a in argv]
    if argv[0] == "reproduce":  # the shared experiments run in the default domain
        monkeypatch.setattr(domains, "DEFAULT_DOMAIN", name)
    else:
        argv += ["--domain", name]

    def compiling(*args, **kwargs):
        raise AssertionError("went on to compile before the contract was checked")

    for where in ("dgpg.cli.train.compilation_cache", "dgpg.cli.evaluate.compilation_cache",
                  "dgpg.experiments.run"):
        monkeypatch.setattr(where, compiling)
    code, stdout, stderr = run_cli(argv)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and message in lines[0], stderr
    assert not out.exists()


def test_a_checkpoint_of_a_domain_that_cannot_load_names_the_domain(tmp_path):
    """A good checkpoint of a plug-in that is not installed (or is broken) is not called
    corrupt: the message names the domain and why it cannot be loaded."""
    from dgpg import checkpoint

    source = Path(__file__).resolve().parents[1] / "results/train/dgpg_n5/checkpoints/best.ckpt"
    meta, state = checkpoint.read(source)
    meta["config"]["run"]["domain"] = "ev-charging"
    moved = tmp_path / "best.ckpt"
    checkpoint.save(moved, state, meta)
    code, _, stderr = run_cli(["evaluate", "--checkpoint", str(moved), "--scenarios", "2"])
    assert code == 2
    assert stderr.strip().splitlines() == [
        f"dgpg: error: checkpoint {moved} was trained in the domain 'ev-charging', which cannot "
        f"be loaded: unknown domain 'ev-charging'; known: {', '.join(domains.names())}"]
