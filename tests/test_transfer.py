"""Train small, deploy large: `dgpg evaluate --checkpoint C --agents N` acts a checkpoint at
another N when its actor permits, says which N it was trained at, and refuses in one line
(exit 2, nothing written) when it cannot."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest
from cli_harness import run_cli, snapshot

from dgpg import checkpoint
from dgpg.config import RunConfig, make_env_config, parse_set, resolve
from dgpg.learners.ppo import init_runner
from dgpg.training import transfer_problem


def _checkpoint(folder, n_agents: int, actor: str):
    """A run folder holding an untrained checkpoint of `actor` at N = `n_agents` (10-step
    episodes)."""
    run = resolve(RunConfig(algo="dgpg", n_agents=n_agents, episodes=1),
                  parse_set([f"train.actor={actor}", "env.episode_steps=10"]))
    keys = jnp.stack([jax.random.key(0)])
    params = jax.vmap(lambda k: init_runner(k, run.train_config(), run.env_config()))(keys)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(run.to_json()))
    checkpoint.save(folder / "checkpoints" / "best.ckpt", {"actor": params.params["actor"]},
                    {"config": run.to_json()})
    return run


def test_a_scorer_trained_at_3_acts_at_7_and_says_where_it_was_trained(tmp_path):
    _checkpoint(tmp_path / "run", 3, "scorer")
    code, stdout, stderr = run_cli(["evaluate", "--checkpoint", str(tmp_path / "run"),
                                    "--agents", "7", "--scenarios", "2", "--json"])
    assert code == 0, stderr
    (row,) = json.loads(stdout)
    assert row["n_agents"] == 7 and row["trained_n_agents"] == 3
    assert row["policy"] == "dgpg (seed 0, trained at N = 3)"
    assert row["return"]["mean"] < 0  # a cost was paid by 7 agents' placements


@pytest.mark.parametrize(("actor", "n_trained", "n_asked", "message"), [
    ("scorer-id", 3, 7, "a scorer-id actor has one offset per agent, so it acts only at the N it "
                        "was trained at (3); leave --agents out"),
    # K = 4 candidates at N = 2, 8 at N = 50: the MLP's input size differs
    ("mlp", 2, 50, "the mlp actor's input at N = 50 differs from the one it was trained on at "
                   "N = 2; leave --agents out"),
])
def test_an_actor_that_cannot_move_is_refused_in_one_line(tmp_path, actor, n_trained, n_asked,
                                                          message):
    folder = tmp_path / "run"
    _checkpoint(folder, n_trained, actor)
    before = snapshot(tmp_path)
    code, stdout, stderr = run_cli(["evaluate", "--checkpoint", str(folder), "--agents",
                                    str(n_asked), "--scenarios", "2"])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr.strip().endswith(f"--agents {n_asked}: {message}")
    assert stdout == "" and snapshot(tmp_path) == before


def test_which_actors_can_move():
    small, large = make_env_config(20, {}), make_env_config(50, {})
    tiny = make_env_config(2, {})
    for actor in ("scorer", "scorer-raw", "mlp"):
        tcfg = resolve(RunConfig(algo="dgpg", n_agents=20, episodes=1),
                       parse_set([f"train.actor={actor}"])).train_config()
        assert transfer_problem(tcfg, small, large) is None
        assert (transfer_problem(tcfg, tiny, large) is None) == (actor != "mlp")
    tcfg = resolve(RunConfig(algo="dgpg", n_agents=20, episodes=1),
                   parse_set(["train.actor=scorer-id"])).train_config()
    assert "one offset per agent" in transfer_problem(tcfg, small, large)


def test_environment_fields_of_a_checkpoint_can_change_but_not_its_network(tmp_path):
    """`--set env.FIELD=VALUE` evaluates a cloud checkpoint under another load (the title says
    so); a roads checkpoint's network is refused in one line, as is another section."""
    folder = tmp_path / "run"
    _checkpoint(folder, 3, "scorer")
    code, stdout, stderr = run_cli(["evaluate", "--checkpoint", str(folder), "--scenarios", "2",
                                    "--set", "env.arrival_rate=1.3", "--markdown"])
    assert code == 0, stderr
    assert "arrival_rate=1.3" in stdout and "dgpg (seed 0)" in stdout
    code, _, stderr = run_cli(["evaluate", "--checkpoint", str(folder), "--set",
                               "train.hidden=8"])
    assert code == 2 and stderr.count("\n") == 1
    assert "evaluate sets env fields only" in stderr

    roads_run = tmp_path / "roads"
    run = RunConfig(algo="dgpg", n_agents=4, episodes=1, domain="roads",
                    env={"grid_cols": 3, "grid_rows": 3})
    (roads_run / "checkpoints").mkdir(parents=True)
    (roads_run / "config.json").write_text(json.dumps(run.to_json()))
    keys = jnp.stack([jax.random.key(0)])
    params = jax.vmap(lambda k: init_runner(k, run.train_config(), run.env_config()))(keys)
    checkpoint.save(roads_run / "checkpoints" / "best.ckpt", {"actor": params.params["actor"]},
                    {"config": run.to_json()})
    before = snapshot(tmp_path)
    code, stdout, stderr = run_cli(["evaluate", "--checkpoint", str(roads_run), "--set",
                                    "env.network=elsewhere"])
    assert code == 2 and stderr.count("\n") == 1 and stdout == ""
    assert ("--set env.network: a roads checkpoint acts on the network it was trained on "
            "('grid'); leave it out") in stderr
    assert snapshot(tmp_path) == before
