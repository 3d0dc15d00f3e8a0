"""The actors (`--set train.actor=...`): output shape, masking, size independent of N (all but
`scorer-id`, tested in test_scorer_id.py), and one training episode of each."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from observations import J, K, random_obs

from dgpg.config import ConfigError, RunConfig, differences, parse_set, resolve
from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import Observation, pair_features
from dgpg.learners.compaction import occupied_logits
from dgpg.learners.config import TRANSFERABLE_ACTORS
from dgpg.learners.networks import MLPActor, make_actor
from dgpg.learners.ppo import TrainConfig, init_runner, make_train_episode


def n_params(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", TRANSFERABLE_ACTORS)
def test_logits_shape_and_size_do_not_depend_on_n(name):
    actor = make_actor(TrainConfig(actor=name, hidden=16), cloud.EnvConfig())
    sizes = []
    for n in (3, 40):
        obs = random_obs(jax.random.key(n), (n,))
        params = actor.init(jax.random.key(0), obs)
        logits = actor.apply(params, obs)
        assert logits.shape == (n, J, K)
        assert np.all(np.isfinite(np.asarray(logits)))
        sizes.append(n_params(params))
    assert sizes[0] == sizes[1]
    # time x agents leading axes work too
    obs = random_obs(jax.random.key(5), (2, 3))
    assert actor.apply(actor.init(jax.random.key(0), obs), obs).shape == (2, 3, J, K)


def test_scorer_raw_sees_no_after_placement_features():
    obs = random_obs(jax.random.key(0), (4,))
    full, raw = pair_features(obs), pair_features(obs, derived=False)
    assert full.shape[-1] == raw.shape[-1] + 2
    np.testing.assert_array_equal(np.asarray(full[..., :-2]), np.asarray(raw))
    raw_actor = make_actor(TrainConfig(actor="scorer-raw", hidden=16), cloud.EnvConfig())
    first = raw_actor.init(jax.random.key(0), obs)["params"]["Dense_0"]["kernel"]
    assert first.shape[0] == raw.shape[-1]


def test_mlp_reads_the_flattened_observation():
    """Changing one agent's second job changes that agent's logits in every slot (it is not a
    per-slot scorer) and no other agent's."""
    actor = make_actor(TrainConfig(actor="mlp", hidden=16), cloud.EnvConfig())
    assert isinstance(actor, MLPActor) and not actor.per_slot
    obs = random_obs(jax.random.key(1), (3,))
    params = jax.tree.map(lambda x: 20.0 * x, actor.init(jax.random.key(0), obs))
    base = np.asarray(actor.apply(params, obs))
    moved = Observation(obs.candidates, obs.slots.at[0, 1].add(1.0), obs.context, obs.slot_mask)
    after = np.asarray(actor.apply(params, moved))
    assert np.all(np.abs(after[0, 0] - base[0, 0]) > 0)
    np.testing.assert_array_equal(after[1:], base[1:])


@pytest.mark.parametrize("name", ["scorer", "scorer-raw"])
def test_per_slot_scorers_compact_exactly(name):
    actor = make_actor(TrainConfig(actor=name, hidden=16), cloud.EnvConfig())
    obs = random_obs(jax.random.key(2), (20,), 0.3)
    params = jax.tree.map(lambda x: 20.0 * x, actor.init(jax.random.key(0), obs))
    mask = np.asarray(obs.slot_mask)
    dense = np.asarray(actor.apply(params, obs))[mask]
    comp = np.asarray(occupied_logits(actor.apply, params, obs, 16))[mask]
    np.testing.assert_allclose(comp, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [pytest.param("scorer", marks=pytest.mark.slow),
                                  "scorer-raw", "mlp"])  # the scorer trains in many other tests
def test_one_training_episode_of_each_actor(name):
    config = TrainConfig(algo="dgpg", actor=name, hidden=16)
    env_config = cloud.EnvConfig(n_agents=4, episode_steps=20)
    runner = init_runner(jax.random.key(0), config, env_config)
    before = jax.tree.leaves(runner.params["actor"])
    runner, metrics = jax.jit(make_train_episode(config, env_config))(runner)
    after = jax.tree.leaves(runner.params["actor"])
    assert all(np.all(np.isfinite(np.asarray(x))) for x in after)
    changed = [not np.array_equal(a, b) for a, b in zip(after, before, strict=True)]
    assert any(changed)
    assert np.isfinite(float(jnp.mean(metrics["return"])))


def test_unknown_actor_is_one_line_error():
    message = "actor must be one of scorer, scorer-raw, mlp, scorer-id, got 'cnn'$"
    with pytest.raises(ValueError, match="^" + message):
        TrainConfig(actor="cnn")
    base = RunConfig(algo="mappo", n_agents=5, episodes=3)
    run = resolve(base, parse_set(["train.actor=mlp"]))
    assert run.train_config().actor == "mlp"
    # what `dgpg train --resume` refuses, naming the field, when a run of one actor is asked
    # to continue with another
    assert differences(base, run) == [("train.actor", "scorer", "mlp")]
    with pytest.raises(ConfigError, match="^train." + message):
        resolve(RunConfig(algo="dgpg", n_agents=5, episodes=3), parse_set(["train.actor=cnn"]))


def test_a_checkpoint_of_one_actor_refuses_another(tmp_path):
    """An mlp checkpoint at N = 2 (K = 4, below the cap of 8, so its input size is the run's own)
    loads back as it was saved; `dgpg evaluate --actor scorer` on it, and `dgpg train --resume
    --actor scorer` on its run, are refused with one line that names both actors."""
    from cli_harness import run_cli, snapshot

    from dgpg import checkpoint
    from dgpg.training import load_actor

    run = resolve(RunConfig(algo="dgpg", n_agents=2, episodes=1), parse_set(["train.actor=mlp"]))
    env_config = run.env_config()
    assert env_config.n_candidates < cloud.EnvConfig().max_candidates
    keys = jnp.stack([jax.random.key(0)])
    actor = jax.vmap(lambda k: init_runner(k, run.train_config(), env_config))(keys)
    actor = actor.params["actor"]
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(run.to_json()))
    checkpoint.save(folder / "checkpoints" / "best.ckpt", {"actor": actor},
                    {"config": run.to_json()})

    tcfg, loaded, _ = load_actor(folder)
    assert tcfg.actor == "mlp"
    for a, b in zip(jax.tree.leaves(actor), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    before = snapshot(folder)
    code, _, stderr = run_cli(["evaluate", "--checkpoint", str(folder), "--actor", "scorer"])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "--actor scorer contradicts the checkpoint, whose actor is mlp" in stderr
    code, _, stderr = run_cli(["train", "--out", str(folder), "--resume", "--actor", "scorer"])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "train.actor is 'mlp' in the run, 'scorer' given" in stderr
    code, _, stderr = run_cli(["evaluate", "--policy", "random", "--actor", "mlp"])
    assert code == 2 and "--actor applies to a --checkpoint" in stderr, stderr
    assert snapshot(folder) == before
