"""The actor on occupied job slots: same logits, log-probabilities, gradients and training
episodes as the dense actor, whatever the padding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from observations import J, K, random_obs

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import EnvConfig, slot_capacity
from dgpg.domains.cloud.workload import sample_arrival_counts
from dgpg.learners.compaction import occupied_logits
from dgpg.learners.networks import Actor
from dgpg.learners.ppo import TrainConfig, init_runner, make_train_episode


@pytest.fixture(scope="module")
def actor_and_params():
    actor = Actor(cloud.pair_features, 64)
    obs = random_obs(jax.random.key(0), (3,), 0.5)
    params = actor.init(jax.random.key(1), obs)
    # larger weights than at initialisation, so that logits differ between candidates
    return actor, jax.tree.map(lambda x: 20.0 * x, params)


@pytest.mark.parametrize("lead,p_job,capacity", [
    ((50,), 0.15, 118),  # about one job per agent, padding sized as in training
    ((50,), 1.0, 118),  # every slot holds a job: 400 jobs, four buffers of 118
    ((4, 30), 0.3, 7),  # time x agents, many small buffers
    ((6,), 0.0, 5),  # no job at all
])
def test_compacted_logits_equal_dense(actor_and_params, lead, p_job, capacity):
    actor, params = actor_and_params
    obs = random_obs(jax.random.key(2), lead, p_job)
    dense = np.asarray(actor.apply(params, obs))
    comp = np.asarray(jax.jit(lambda p, o: occupied_logits(actor.apply, p, o, capacity))(
        params, obs))
    mask = np.asarray(obs.slot_mask)
    assert comp.shape == dense.shape
    np.testing.assert_allclose(comp[mask], dense[mask], rtol=1e-5, atol=1e-5)
    assert np.all(comp[~mask] == 0.0)
    logp_d = np.asarray(jax.nn.log_softmax(dense, axis=-1))[mask]
    logp_c = np.asarray(jax.nn.log_softmax(comp, axis=-1))[mask]
    np.testing.assert_allclose(logp_c, logp_d, rtol=1e-5, atol=1e-5)
    if mask.sum() > 0:
        assert np.ptp(dense[mask], axis=-1).max() > 0.1  # the comparison is not trivial


@pytest.mark.parametrize("capacity", [118, 13])
def test_compacted_gradient_equals_dense(actor_and_params, capacity):
    """The parameter gradient of a masked loss, also when the jobs need several buffers."""
    actor, params = actor_and_params
    obs = random_obs(jax.random.key(3), (50,), 0.4)  # about 160 jobs
    weights = jax.random.normal(jax.random.key(4), (50, J, K))

    def loss(logits):
        logp = jax.nn.log_softmax(logits, axis=-1)
        return jnp.sum(jnp.where(obs.slot_mask[..., None], weights * logp + logits**2, 0.0))

    g_dense = jax.grad(lambda p: loss(actor.apply(p, obs)))(params)
    g_comp = jax.jit(jax.grad(lambda p: loss(occupied_logits(actor.apply, p, obs, capacity))))(
        params)
    for a, b in zip(jax.tree.leaves(g_dense), jax.tree.leaves(g_comp), strict=True):
        scale = float(jnp.abs(a).max())
        assert scale > 0
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=3e-5 * scale + 1e-6)


def test_compacted_under_vmap(actor_and_params):
    """Batched over seeds, each member gets its own result (buffers: the largest member's)."""
    actor, params = actor_and_params
    obs = jax.tree.map(lambda *x: jnp.stack(x), random_obs(jax.random.key(5), (20,), 0.1),
                       random_obs(jax.random.key(6), (20,), 0.9))
    both = jax.vmap(lambda o: occupied_logits(actor.apply, params, o, 20))(obs)
    for i in range(2):
        one = jax.tree.map(lambda x, i=i: x[i], obs)
        mask = np.asarray(one.slot_mask)
        np.testing.assert_allclose(np.asarray(both[i])[mask],
                                   np.asarray(actor.apply(params, one))[mask], atol=1e-5)


def test_slot_capacity():
    config = EnvConfig(n_agents=200)
    for rows in (1, 2, 50, 200, 6400):
        p = slot_capacity(rows, config)
        assert p <= rows * config.jobs_per_step
        assert p >= min(rows * config.jobs_per_step, 1.5 * rows)  # the crest of the tide
    assert slot_capacity(200, config) < 200 * config.jobs_per_step / 4
    with pytest.raises(ValueError, match="capacity"):
        occupied_logits(Actor(cloud.pair_features, 8).apply, {},
                        random_obs(jax.random.key(0), (2,), 0.5), 0)


def test_capacity_covers_the_environment():
    """Over a whole tidal period of arrivals, one buffer holds every job of a step almost always
    (the loop is a fallback, not the common case), and the padding is not wasteful."""
    config = EnvConfig(n_agents=200)
    cap = slot_capacity(config.n_agents, config)
    scenario = cloud.make_scenario(config.n_agents, 0, config)
    t = jnp.arange(0, int(config.tide_period), 2)

    @jax.jit
    def jobs_per_step(key):
        def one(k, t):
            n = sample_arrival_counts(k, t, scenario.phase, scenario.rate_multiplier,
                                      config.arrival_rate, config.tide_period,
                                      config.tide_amplitude, config.tide_noise)
            return jnp.sum(jnp.minimum(n, config.jobs_per_step))
        return jax.vmap(one)(jax.random.split(key, t.shape[0]), t)

    counts = np.concatenate([np.asarray(jobs_per_step(jax.random.key(s))) for s in range(4)])
    assert np.mean(counts <= cap) >= 0.95
    assert cap < 2.5 * counts.max()


# slow: about 40 s each; the compacted logits and gradients equal the dense ones in the tests above
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dgpg", "ippo"])
def test_training_episode_equals_dense(algo):
    """Two training episodes with compaction and without: the same metrics and parameters up to
    float reassociation (relative 1e-4)."""
    config = TrainConfig(algo=algo)
    env = EnvConfig(n_agents=12, episode_steps=16)
    runner = init_runner(jax.random.key(0), config, env)
    results = []
    for dense in (True, False):
        episode = jax.jit(make_train_episode(config, env, dense=dense))
        r, _ = episode(runner)
        r, metrics = episode(r)
        results.append((r, metrics))
    (r_d, m_d), (r_c, m_c) = results
    for k in m_d:
        np.testing.assert_allclose(float(m_c[k]), float(m_d[k]), rtol=1e-4, atol=1e-6,
                                   err_msg=k)
    for a, b in zip(jax.tree.leaves(r_d.params), jax.tree.leaves(r_c.params), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
