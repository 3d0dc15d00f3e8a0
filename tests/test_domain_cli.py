"""The domain on the command line and in a run's configuration: `--domain`, `--network`, the
domain's keys, models and heuristics, and run keys that do not depend on where a network lies."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_harness import run_cli, snapshot
from test_roads_assignment import braess_tntp

from dgpg import config
from dgpg.config import ConfigError, RunConfig, parse_set, resolve
from dgpg.domains import get_domain, get_spec, names
from dgpg.experiments.sweep import RunSpec

BASE = {"algo": "dgpg", "n_agents": 10, "episodes": 20}


def test_every_name_a_spec_declares_resolves_in_its_domain():
    assert names()[0] == "cloud" and {"roads", "power"} <= set(names())
    for name in ("cloud", "roads"):
        spec, domain = get_spec(name), get_domain(name)
        assert tuple(domain.heuristics) == tuple(spec.heuristics), name
        assert domain.config_type is spec.config_type(), name
        assert domain.reference in spec.heuristics
        config = domain.config_type(n_agents=2)
        for model in spec.models:
            assert callable(domain.make_model(model, config).guidance_loss), (name, model)


def test_a_roads_run_round_trips_and_names_its_domain(tmp_path):
    run = resolve(BASE, {"run": {"domain": "roads"}}, parse_set(["env.grid_rows=3"]))
    assert run.env_config().grid_rows == 3 and type(run.env_config()).domain == "roads"
    stored = json.loads(json.dumps(run.to_json()))
    assert stored["run"]["domain"] == "roads" and "arrival_rate" not in stored["env"]
    assert RunConfig.from_dict(stored["run"]) == run
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert resolve(BASE, config.read_file(tmp_path / "config.json")) == run


def test_a_run_stored_before_domains_is_a_cloud_run():
    stored = {"algo": "dgpg", "n_agents": 10, "episodes": 20, "seed": 0, "seeds": 1,
              "alpha": 0.5, "model": "aligned", "overrides": ""}
    assert RunConfig.from_dict(stored) == RunConfig(**BASE, defaults=1, model="aligned")
    assert RunConfig(**BASE).domain == "cloud"


@pytest.mark.parametrize(("layers", "message"), [
    ([parse_set(["env.grid_rows=6"])],
     r"^env.grid_rows is not a key of the cloud domain but of roads \(--domain roads\)$"),
    ([{"run": {"domain": "roads"}}, parse_set(["env.arrival_rate=1.2"])],
     r"^env.arrival_rate is not a key of the roads domain but of cloud \(--domain cloud\)$"),
    ([{"run": {"domain": "roads", "model": "fluid"}}],
     r"^unknown model 'fluid' in the roads domain; known: calibrated, aligned$"),
    ([{"run": {"domain": "road"}}], r"unknown domain 'road'; known: cloud, power, roads$"),
    ([{"run": {"domain": "roads", "n_agents": 601}}],
     r"^run.n_agents 601 is more than the network's 600 OD pairs$"),
])
def test_domain_errors_name_the_key(layers, message):
    with pytest.raises(ConfigError, match=message):
        resolve(BASE, *layers)


def test_runs_of_two_domains_differ_in_their_run_section_only():
    cloud, roads = RunConfig(**BASE), RunConfig(**BASE, domain="roads")
    assert config.differences(cloud, roads) == [("run.domain", "cloud", "roads")]


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--domain", "nope"], "unknown domain 'nope'; known: cloud, power, roads"),
    (["train", "--network", "CITY", "--domain", "cloud"],
     "--network applies to --domain roads, not cloud"),
    (["train", "--network", "CITY"],
     "env.network is not a key of the cloud domain but of roads (--domain roads)"),
    (["train", "--domain", "roads", "--agents", "601"],
     "run.n_agents 601 is more than the network's 600 OD pairs"),
    (["train", "--domain", "roads", "--model", "fluid"],
     "unknown model 'fluid' in the roads domain; known: calibrated, aligned"),
    (["evaluate", "--domain", "roads", "--policy", "best-fit"],
     "unknown policy 'best-fit' in the roads domain; known: free-flow, fastest, random, "
     "so-sample, model-greedy, all"),
    (["evaluate", "--network", "CITY", "--policy", "all"],
     "--network applies to --domain roads, not cloud"),
    (["bench", "--domain", "roads", "--agents", "601"],
     "--agents 601: n_agents 601 is more than the network's 600 OD pairs"),
])
def test_bad_domain_options_exit_2_with_one_line(tmp_path, argv, message):
    out = tmp_path / "run"
    argv = [a.replace("CITY", str(tmp_path / "City")) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(out)]
    code, stdout, stderr = run_cli(argv)
    assert (code, stdout) == (2, "")
    assert stderr == f"dgpg: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("broken", ["missing-trips", "net", "trips"])
def test_missing_or_malformed_network_files_exit_2_and_leave_nothing(tmp_path, broken):
    net, trips = braess_tntp(
        tmp_path, net="<NUMBER OF ZONES> 2\n" if broken == "net" else None,
        trips="<END OF METADATA>\nOrigin x\n" if broken == "trips" else None)
    if broken == "missing-trips":
        trips.unlink()
    prefix = str(tmp_path / "Braess")
    before = snapshot(tmp_path)
    for argv in (["train", "--domain", "roads", "--network", prefix, "--agents", "1",
                  "--out", str(tmp_path / "run")],
                 ["evaluate", "--domain", "roads", "--network", prefix, "--policy", "all"],
                 ["bench", "--domain", "roads", "--network", prefix, "--agents", "1"]):
        code, stdout, stderr = run_cli(argv)
        assert (code, stdout) == (2, ""), argv
        assert stderr.startswith("dgpg: error: ") and stderr.count("\n") == 1, stderr
        assert ("Braess_trips.tntp" if broken != "net" else "Braess_net.tntp") in stderr
    assert snapshot(tmp_path) == before


def test_evaluate_heuristics_on_a_tntp_network(tmp_path):
    braess_tntp(tmp_path)
    code, stdout, stderr = run_cli(
        ["evaluate", "--domain", "roads", "--network", str(tmp_path / "Braess"), "--agents", "1",
         "--policy", "free-flow", "--policy", "so-sample", "--scenarios", "2", "--json"])
    assert code == 0, stderr
    rows = {r["policy"]: r for r in json.loads(stdout)}
    assert set(rows) == {"free-flow", "so-sample"}
    assert all(r["domain"] == "roads" and r["n_agents"] == 1 for r in rows.values())
    # all of Braess's demand on one path costs more than the candidate-path system optimum
    assert rows["so-sample"]["so_ratio"]["mean"] < rows["free-flow"]["so_ratio"]["mean"]
    assert rows["so-sample"]["return"]["mean"] > rows["free-flow"]["return"]["mean"]


# --------------------------------------------------------------------------- run keys


def test_run_keys_name_the_domain_and_not_the_network_path(tmp_path):
    assert RunSpec("dgpg", 10, 20).key == "dgpg_n10_a0.5_e20_s0x1_aligned"  # cloud: as before
    assert RunSpec("ippo", 10, 20, domain="roads").key == "ippo_n10_a0_e20_s0x1_roads"
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    braess_tntp(first)
    shutil.copytree(first, second)

    def spec(folder):
        overrides = config.overrides_json(env={"network": str(folder / "Braess")})
        return RunSpec("mappo", 1, 5, domain="roads", overrides=overrides)

    assert spec(first).key == spec(second).key and spec(first) != spec(second)
    (second / "Braess_trips.tntp").write_text(
        (second / "Braess_trips.tntp").read_text().replace("6.0", "7.0"))
    assert spec(first).key != spec(second).key  # other data, another run
