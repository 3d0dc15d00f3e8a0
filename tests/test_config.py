"""A run's configuration from files and `--set` flags, the command line's output at 80 columns,
and its fast refusal of bad options. (Resume that reads a run's configuration and extends it,
and the plain progress lines, are tested with real runs in tests/test_training.py.)"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_harness import run_cli
from rich.console import Console

from dgpg import cli, config, training
from dgpg.config import ConfigError, RunConfig, parse_set, read_file, resolve, settable_keys
from dgpg.domains import get_spec
from dgpg.domains.cloud.env import EnvConfig
from dgpg.learners.ppo import TrainConfig

BASE = {"algo": "dgpg", "n_agents": 10, "episodes": 20}


def _other_value(key: str, value):
    """A valid value of `key` other than its default."""
    special = {"run.algo": "ippo", "run.model": "fluid", "run.alpha": 0.25,
               "train.gamma": 0.95, "train.gae_lambda": 0.9, "env.tide_amplitude": 0.4,
               "env.warm_utilisation": 0.5, "env.tide_noise": 0.05, "train.actor": "mlp",
               "run.domain": "roads", "env.model_error": 0.3, "env.model_error_kind": "random",
               "train.alpha_schedule": "linear", "train.guidance_scale": "slot",
               "run.defaults": 1, "env.trace": "google2019", "env.split": "validation"}
    if key in special:
        return special[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return value * 0.5


def _defaults() -> dict:
    return RunConfig(**BASE).to_json()


# --------------------------------------------------------------------------- the configuration


def test_every_field_is_settable_by_set_and_by_file(tmp_path):
    keys = settable_keys("cloud")
    tcfg_fields = {f.name for f in dataclasses.fields(TrainConfig)} - config.RUN_ONLY
    env_fields = {f.name for f in dataclasses.fields(EnvConfig)} - config.RUN_ONLY
    assert {k for k in keys if k.startswith("train.")} == {f"train.{f}" for f in tcfg_fields}
    assert {k for k in keys if k.startswith("env.")} == {f"env.{f}" for f in env_fields}
    defaults = _defaults()
    for key in keys:
        if key == "run.model":
            continue  # with algo ippo below it is "none"; checked on its own
        section, field = key.split(".")
        value = _other_value(key, defaults[section][field])
        run = resolve(BASE, parse_set([f"{key}={value}"]))
        assert run.to_json()[section][field] == value, key
        # every other field keeps its default
        changed = [k for k, *_ in config.differences(RunConfig(**BASE), run)]
        expected = ({key, "run.model", "train.learning_rate", "train.ent_coef"}
                    if key == "run.algo" else {key})
        if key == "run.defaults":  # generation 1 reads the fields it changed as they were
            expected = {key} | {f"train.{f}" for f in config.GENERATION_1}
        if key == "run.domain":  # the other domain's default model
            expected = {key, "run.model"}
        assert set(changed) <= expected and key in changed, (key, changed)
    assert resolve(BASE, parse_set(["run.model=fluid"])).model == "fluid"

    # all at once: a TOML file and the same --set flags resolve to the same configuration
    values = {k: _other_value(k, defaults[k.split(".")[0]][k.split(".")[1]])
              for k in keys if k not in ("run.algo", "run.model", "run.domain")}
    lines = []
    for section in config.SECTIONS:
        lines.append(f"[{section}]")
        lines += [f"{k.split('.')[1]} = {json.dumps(v)}" for k, v in values.items()
                  if k.startswith(section + ".")]
    (tmp_path / "run.toml").write_text("\n".join(lines) + "\n")
    from_file = resolve(BASE, read_file(tmp_path / "run.toml"))
    from_set = resolve(BASE, parse_set([f"{k}={v}" for k, v in values.items()]))
    assert from_file == from_set
    assert from_file.to_json() == from_set.to_json()
    # a run's config.json is a configuration file too, and reproduces the run
    (tmp_path / "config.json").write_text(json.dumps(from_set.to_json()))
    assert resolve(BASE, read_file(tmp_path / "config.json")) == from_set


def test_a_file_and_the_same_set_flags_write_the_same_config_json(tmp_path, monkeypatch):
    """Through the command line: the run that `dgpg train` hands to the trainer, whose first
    act is to write `run.to_json()` as config.json (the trainer itself is not run here)."""
    def first_write(out, run, **_):
        (Path(out) / "config.json").write_text(json.dumps(run.to_json(), sort_keys=True))
        raise training.RunError("stopped after writing config.json")

    monkeypatch.setattr(training, "train", first_write)
    (tmp_path / "run.toml").write_text(
        '[run]\nn_agents = 7\nseeds = 2\n[train]\nlearning_rate = 3e-4\nhidden = 32\n'
        '[env]\narrival_rate = 1.2\ntide_period = 800\n')
    argv = {"file": ["--config", str(tmp_path / "run.toml")],
            "set": ["--set", "run.n_agents=7", "--set", "run.seeds=2",
                    "--set", "train.learning_rate=0.0003", "--set", "train.hidden=32",
                    "--set", "env.arrival_rate=1.2", "--set", "env.tide_period=800.0"],
            "mixed": ["--agents", "7", "--seeds", "2", "--config", str(tmp_path / "run.toml")]}
    written = {}
    for name, args in argv.items():
        code, _, stderr = run_cli(["train", *args, "--out", str(tmp_path / name)])
        assert code == 2 and "stopped after writing config.json" in stderr, stderr
        written[name] = (tmp_path / name / "config.json").read_text()
    assert written["file"] == written["set"] == written["mixed"]
    saved = json.loads(written["file"])
    assert saved["train"]["hidden"] == 32 and saved["env"]["tide_period"] == 800.0
    assert saved["run"]["n_agents"] == 7 == saved["env"]["n_agents"]
    assert saved["run"]["model"] == "calibrated"  # a file that names no model: the default


def test_a_stored_config_json_of_an_older_run_keeps_its_model(tmp_path):
    old = RunConfig(algo="dgpg", n_agents=5, episodes=3).to_json()
    del old["run"]["model"], old["run"]["overrides"], old["train"]["model"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert resolve(BASE, read_file(tmp_path / "config.json")).model == "fluid"


def test_values_equal_to_the_defaults_are_not_overrides():
    assert resolve(BASE, parse_set(["train.learning_rate=1e-3", "env.slots=64"])) == \
        RunConfig(**BASE)
    assert RunConfig(**BASE, train={"hidden": 64}).overrides == ""


@pytest.mark.parametrize(("item", "named"), [
    ("train.nope=1", "train.nope"), ("env.nope=1", "env.nope"), ("nope.x=1", "nope"),
    ("train.hidden=abc", "train.hidden"), ("train.hidden=1.5", "train.hidden"),
    ("env.arrival_rate=fast", "env.arrival_rate"), ("train.gamma=nan", "train.gamma"),
    ("train.learning_rate=-1", "train.learning_rate"), ("env.slots=0", "env.slots"),
    ("env.tide_amplitude=2", "env.tide_amplitude"), ("run.seeds=0", "run.seeds"),
    ("run.alpha=2", "run.alpha"), ("train.alpha=0.1", "train.alpha"),
    ("env.n_agents=5", "env.n_agents"), ("run.model=nope", "model"),
    ("train.update_epochs=\u0665", "train.update_epochs"),  # ARABIC-INDIC DIGIT FIVE
    ("env.arrival_rate=\uff10.9", "env.arrival_rate"),  # FULLWIDTH DIGIT ZERO
])
def test_bad_keys_and_values_name_the_key(item, named, tmp_path):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        resolve(BASE, parse_set([item]))
    code, stdout, stderr = run_cli(["train", "--set", item, "--out", str(tmp_path / "r")])
    assert code == 2 and stderr.count("\n") == 1 and named in stderr, (item, stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", [
    "[train]\nhidden = 'wide'\n", "[training]\nhidden = 3\n", "[train\n", "hidden = 3\n",
    "[env]\nslots = 1.5\n", "[run]\nalgo = 3\n",
])
def test_bad_files_are_refused_in_one_line(text, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, _, stderr = run_cli(["train", "--config", str(path), "--out", str(tmp_path / "r")])
    assert code == 2 and stderr.count("\n") == 1 and str(path) in stderr, stderr
    assert not (tmp_path / "r").exists()


def test_stored_configurations_of_older_runs_still_load():
    sweep_run = {"algo": "mappo", "n_agents": 50, "episodes": 200, "seed": 0, "seeds": 3,
                 "alpha": 0.0, "overrides": '{"train":{"learning_rate":0.001}}'}
    run = RunConfig.from_dict(sweep_run)
    assert run.model == "none" and run.train_config().learning_rate == 1e-3
    plain = RunConfig.from_dict({"algo": "dgpg", "n_agents": 5, "episodes": 3, "seed": 0,
                                 "seeds": 1, "alpha": 0.5})
    assert plain.model == "fluid" and plain.overrides == ""


# --------------------------------------------------------------------------- resume and output


def test_evaluate_table_fits_80_columns_without_wrapping():
    spec = get_spec("cloud")
    policies, metrics = tuple(spec.heuristics), spec.table_metrics
    records = []
    for name in policies:
        record = {"policy": name}
        for i, metric in enumerate(metrics):
            record[metric] = {"mean": -678.679 / (i + 1) ** 3, "ci95": 248.3 / (i + 1) ** 4}
        records.append(record)
    title = "HeteroCloud, N=10, 10 test scenarios (mean ± 95% CI)"
    for width, wide in ((80, False), (200, True)):
        buffer = io.StringIO()
        Console(file=buffer, width=width).print(cli.metrics_table(records, title, width,
                                                                  metrics))
        lines = buffer.getvalue().splitlines()
        assert all(len(line) <= width for line in lines)
        assert "…" not in buffer.getvalue()
        rows = [line for line in lines if any(line.strip(" │").startswith(n + " ")
                                              for n in policies)]
        assert len(rows) == len(policies), buffer.getvalue()  # one line per policy
        assert ("±" in rows[0]) == wide  # mean ± CI cells only when they fit
    markdown = cli.metrics_markdown(records, title, metrics)
    assert markdown.count("\n| ") == len(records) + 1 and "±" in markdown


# --------------------------------------------------------------------------- fast refusal


@pytest.mark.parametrize("argv", [
    ["train", "--algo", "nope"], ["train", "--set", "train.nope=1"],
    ["train", "--set", "env.arrival_rate=x"], ["train", "--config", "/no/such/file.toml"],
    ["evaluate", "--policy", "nope"], ["reproduce", "nope"], ["bench", "--agents", "x"],
    ["train", "--domain", "nope"], ["train", "--domain", "roads", "--network", "/no/such/City"],
    ["evaluate", "--domain", "roads", "--policy", "best-fit"],
])
def test_a_bad_option_fails_fast_without_importing_jax(argv):
    probe = textwrap.dedent(f"""
        import json, sys
        from dgpg import cli
        try:
            cli.main({argv!r})
        except SystemExit as e:
            print(json.dumps({{"code": e.code, "jax": "jax" in sys.modules}}))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    result = json.loads(done.stdout)
    assert result["code"] == 2 and done.stderr.startswith("dgpg: error: ")
    assert not result["jax"], "JAX was imported before the option was refused"


def test_version():
    from dgpg import __version__

    code, stdout, _ = run_cli(["--version"])
    assert code == 0 and stdout.strip() == f"dgpg {__version__}" and __version__[0].isdigit()


def test_a_run_without_out_gets_a_folder_of_its_own(tmp_path, monkeypatch):
    from dgpg.cli.train import unique_run_folder

    monkeypatch.chdir(tmp_path)
    run = RunConfig(algo="mappo", n_agents=7, episodes=1, domain="roads")
    first = unique_run_folder(run)
    assert first.parent == Path("runs") and first.name.startswith("mappo-n7-roads-")
    first.mkdir(parents=True)
    second = unique_run_folder(run)
    assert second != first and not second.exists()
    code, _, err = run_cli(["train", "--resume"])
    assert code == 2 and "--resume needs --out" in err


def test_a_run_stored_without_a_generation_keeps_the_defaults_it_was_trained_with():
    """Runs written before generations read as generation 1 (fixed alpha, discount 0.99 in
    every domain), with the same overrides text and sweep key as before; a new run is of
    generation 3: the domain's discount and fixed alpha; in generation 2 (the adaptive weight)
    a fixed alpha is an override that names it."""
    from dgpg.experiments.sweep import RunSpec

    old = RunConfig.from_dict({"algo": "dgpg", "n_agents": 50, "episodes": 100, "seed": 0,
                               "seeds": 3, "alpha": 0.5, "model": "aligned",
                               "domain": "roads", "overrides": ""})
    assert old.defaults == 1 and old.overrides == ""
    assert old.train.gamma == 0.99 and old.train.alpha_schedule == "fixed"
    assert RunSpec.of(old).key == "dgpg_n50_a0.5_e100_s0x3_aligned_roads"

    new = RunConfig(algo="dgpg", n_agents=50, episodes=100, seeds=3, domain="roads")
    assert new.defaults == config.DEFAULTS == 3
    assert new.train.gamma == 0.0 and new.train.alpha_schedule == "fixed"
    assert new.train.agents_per_minibatch == 1024 and old.train.agents_per_minibatch == 128
    assert RunSpec.of(new).key == "dgpg_n50_a0.5_e100_s0x3_calibrated_roads_g3"
    assert RunConfig(**BASE).train.gamma == 0.99  # the cloud's jobs outlive a step
    second = RunConfig(**BASE, defaults=2)
    assert second.train.alpha_schedule == "adaptive" and second.overrides == ""
    fixed = RunConfig(**BASE, defaults=2, train={"alpha_schedule": "fixed"})
    assert json.loads(fixed.overrides) == {"train": {"alpha_schedule": "fixed"}}
    assert RunConfig.from_dict(fixed.to_json()["run"]) == fixed  # stored and read back
    assert fixed.train == RunConfig(**BASE).train  # generation 3 is 2 with alpha fixed
    assert RunConfig(**BASE, train={"alpha_schedule": "fixed"}).overrides == ""
    # generation 1 asked for explicitly: the old meaning, the old key
    assert RunSpec("dgpg", 50, 100, seeds=3, domain="roads").key == RunSpec.of(old).key
    for bad in (0, 4, True, "2"):
        with pytest.raises(ConfigError, match="defaults"):
            RunConfig(**BASE, defaults=bad)


def test_a_domain_s_learner_defaults_must_name_learner_fields(monkeypatch):
    import dataclasses as dc

    spec = get_spec("power")
    monkeypatch.setattr(config, "get_spec", lambda name: dc.replace(
        spec, train_defaults={"learning_rat": 0.1}) if name == "power" else get_spec(name))
    with pytest.raises(ConfigError, match="learning_rat"):
        RunConfig(algo="mappo", n_agents=5, episodes=1, domain="power")
