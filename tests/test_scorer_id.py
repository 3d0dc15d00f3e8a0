"""The `scorer-id` actor: the scorer plus a learned logit offset per (agent, slot). At zero
offsets it is the scorer; an offset moves its own agent's logits only; a minibatch of some
agents reads their own offsets; compaction leaves it exact; every learner trains the offsets;
and RoadNet's free-flow ablation really hides the congestion."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from observations import J, K, random_obs

from dgpg.domains.cloud import env as cloud
from dgpg.domains.roads import env as roads
from dgpg.learners.config import TrainConfig
from dgpg.learners.networks import Actor, IdActor, make_actor
from dgpg.learners.ppo import actor_logits, init_runner, make_train_episode

N = 6
ENV = cloud.EnvConfig(n_agents=N)


def _id_actor(**fields) -> tuple[IdActor, dict]:
    actor = make_actor(TrainConfig(actor="scorer-id", hidden=16, **fields), ENV)
    params = actor.init(jax.random.key(0), random_obs(jax.random.key(1), (N,)))
    return actor, params


def test_offsets_start_at_zero_so_the_actor_starts_as_the_scorer():
    actor, params = _id_actor()
    assert isinstance(actor, IdActor)
    assert params["params"]["offset"].shape == (N, J, K)
    assert not np.any(np.asarray(params["params"]["offset"]))
    scorer = Actor(actor.features, 16)
    obs = random_obs(jax.random.key(2), (N,))
    np.testing.assert_array_equal(
        np.asarray(actor.apply(params, obs)),
        np.asarray(scorer.apply({"params": params["params"]["scorer"]}, obs)))


def test_an_offset_moves_its_own_agent_and_slot_only():
    actor, params = _id_actor(id_scale=50.0)
    obs = random_obs(jax.random.key(3), (N,))
    base = np.asarray(actor.apply(params, obs))
    params["params"]["offset"] = params["params"]["offset"].at[2, 1, 3].set(0.01)
    moved = np.asarray(actor.apply(params, obs))
    delta = moved - base
    np.testing.assert_allclose(delta[2, 1, 3], 0.5, rtol=1e-5)  # id_scale x offset
    delta[2, 1, 3] = 0.0
    assert not np.any(delta)


def test_one_offset_per_agent_is_shared_by_its_slots():
    actor, params = _id_actor(id_per_slot=False)
    assert params["params"]["offset"].shape == (N, 1, K)
    obs = random_obs(jax.random.key(4), (N,))
    base = np.asarray(actor.apply(params, obs))
    params["params"]["offset"] = params["params"]["offset"].at[4, 0, 0].set(0.02)
    delta = np.asarray(actor.apply(params, obs)) - base
    np.testing.assert_allclose(delta[4, :, 0], 1.0, rtol=1e-5)
    delta[4, :, 0] = 0.0
    assert not np.any(delta)


@pytest.mark.parametrize("dense", [True, False])
def test_a_minibatch_of_some_agents_reads_their_own_offsets(dense):
    """What the update sees: observations of agents [4, 0, 5] over 3 time steps give exactly the
    rows of those agents in the full logits, compacted or not."""
    actor, params = _id_actor()
    params = jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(5), x.shape),
                          params)
    obs = random_obs(jax.random.key(6), (3, N), 0.4)
    agents = jnp.array([4, 0, 5])
    logits_of = actor_logits(actor, ENV, 3 * 3, dense=dense)
    full = np.asarray(jax.vmap(lambda o: actor.apply(params, o))(obs))
    sub = jax.tree.map(lambda x: x[:, agents], obs)
    got = np.asarray(logits_of(params, sub, agents))
    mask = np.asarray(sub.slot_mask)
    np.testing.assert_allclose(got[mask], full[:, np.asarray(agents)][mask], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("algo", ["dgpg", pytest.param("ippo", marks=pytest.mark.slow),
                                  pytest.param("mappo", marks=pytest.mark.slow)])
def test_every_learner_trains_the_offsets(algo):
    config = TrainConfig(algo=algo, actor="scorer-id", hidden=16, agents_per_minibatch=3)
    env_config = cloud.EnvConfig(n_agents=5, episode_steps=12)
    runner = init_runner(jax.random.key(0), config, env_config)
    runner, metrics = jax.jit(make_train_episode(config, env_config))(runner)
    offset = np.asarray(runner.params["actor"]["params"]["offset"])
    assert np.all(np.isfinite(offset)) and np.any(offset != 0)
    assert np.isfinite(float(metrics["return"]))


def test_bad_offset_settings_are_refused():
    with pytest.raises(ValueError, match="^id_per_slot must be true or false"):
        TrainConfig(actor="scorer-id", id_per_slot="yes")
    with pytest.raises(ValueError, match="^id_scale must be a finite number >= 0"):
        TrainConfig(actor="scorer-id", id_scale=-1.0)


def test_free_flow_features_hide_last_periods_congestion():
    """With `congestion_features=False` the observation is the same whatever the link flows;
    with them, heavier flows raise the observed path times."""
    config = roads.RoadConfig(n_agents=4, grid_rows=3, grid_cols=3, episode_steps=4)
    blind = dataclasses.replace(config, congestion_features=False)
    state = roads.reset(jax.random.key(0), config)
    heavy = state.replace(link_flows=state.link_flows * 3.0 + 1.0,
                          path_times=state.path_times * 2.0)
    for cfg, same in ((blind, True), (config, False)):
        a, b = roads.observe(state, cfg), roads.observe(heavy, cfg)
        equal = np.array_equal(np.asarray(a.candidates), np.asarray(b.candidates))
        assert equal == same
    with pytest.raises(ValueError, match="^congestion_features must be true or false"):
        dataclasses.replace(config, congestion_features=1)
