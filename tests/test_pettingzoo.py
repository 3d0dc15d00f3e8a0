"""The PettingZoo wrapper of HeteroCloud (DESIGN section 8)."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo import test as pz_test

from dgpg.envs.pettingzoo import TEAM_METRICS, HeteroCloudParallelEnv, parallel_env

SHORT = {"episode_steps": 30}
# Compiling a config takes seconds: the tests share the configs (N=3, SHORT) and (N=1, SHORT).


@pytest.fixture(scope="module")
def env3() -> HeteroCloudParallelEnv:
    return parallel_env(n_agents=3, seed=0, **SHORT)


def test_parallel_api(env3: HeteroCloudParallelEnv) -> None:
    pz_test.parallel_api_test(env3, num_cycles=40)


def test_parallel_api_single_agent() -> None:
    env = parallel_env(n_agents=1, seed=0, **SHORT)
    assert env.config.n_servers == 2 and env.config.n_candidates == 2
    pz_test.parallel_api_test(env, num_cycles=40)


@pytest.mark.skipif(
    not hasattr(pz_test, "parallel_seed_test"), reason="pettingzoo lacks parallel_seed_test"
)
def test_parallel_seed() -> None:
    pz_test.parallel_seed_test(lambda: parallel_env(n_agents=3, **SHORT), num_cycles=30)


def _rollout(env: HeteroCloudParallelEnv, seed: int, steps: int):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    rng = np.random.default_rng(123)
    K, J = env.config.n_candidates, env.config.jobs_per_step
    for _ in range(steps):
        actions = {a: rng.integers(0, K, J) for a in env.agents}
        obs, rewards, *_ = env.step(actions)
        trace.append((obs, rewards))
    return trace


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def test_same_seed_same_trajectory(env3: HeteroCloudParallelEnv) -> None:
    other = parallel_env(n_agents=3, seed=5, **SHORT)
    first = _rollout(env3, seed=7, steps=20)
    assert _same(first, _rollout(other, seed=7, steps=20))
    assert _same(first, _rollout(env3, seed=7, steps=20))  # reseeding the same instance
    assert not _same(first, _rollout(other, seed=8, steps=20))


def test_constructor_seed() -> None:
    a, b = parallel_env(n_agents=3, seed=3, **SHORT), parallel_env(n_agents=3, seed=3, **SHORT)
    first_a, first_b = a.reset()[0], b.reset()[0]
    assert _same(first_a, first_b)
    assert _same(first_a, a.reset(seed=3)[0])
    assert not _same(a.reset()[0], first_a)  # unseeded resets draw fresh episodes


def test_infos_and_truncation(env3: HeteroCloudParallelEnv) -> None:
    env3.reset(seed=1)
    steps = 0
    while env3.agents:
        live = list(env3.agents)
        # dispatcher_0's action is left out: it defaults to 0
        actions = {a: env3.action_space(a).sample() for a in live[1:]}
        obs, rewards, terms, truncs, infos = env3.step(actions)
        steps += 1
        assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos) == set(live)
        assert len(set(rewards.values())) == 1
        assert all(isinstance(r, float) for r in rewards.values())
        assert not any(terms.values())
        for info in infos.values():
            assert set(TEAM_METRICS) <= set(info)
            assert all(isinstance(v, float) for v in info.values())
            assert info["arrived"] == info["admitted"] + info["rejected"] + info["shed"]
            assert info["reward"] == rewards[live[0]]
        assert all(truncs.values()) == (steps == env3.config.episode_steps)
    assert steps == env3.config.episode_steps
    assert env3.num_agents == 0 and env3.max_num_agents == 3
    with pytest.raises(RuntimeError):
        env3.step({})


def test_observations_in_space(env3: HeteroCloudParallelEnv) -> None:
    obs, _ = env3.reset(seed=2)
    for _ in range(10):
        for agent, o in obs.items():
            assert o.dtype == np.float32
            assert env3.observation_space(agent).contains(o)
        state = env3.state()
        assert env3.state_space.contains(state)
        obs, *_ = env3.step({a: env3.action_space(a).sample() for a in env3.agents})


def test_space_shapes(env3: HeteroCloudParallelEnv) -> None:
    # spaces only: no compile
    env = parallel_env(n_agents=5, seed=0, jobs_per_step=4, arrival_rate=0.5, **SHORT)
    K, J, M = env.config.n_candidates, 4, env.config.n_servers
    assert (K, M) == (8, 10)
    assert env.possible_agents == [f"dispatcher_{i}" for i in range(5)]
    assert env.max_num_agents == 5
    for agent in env.possible_agents:
        assert env.observation_space(agent).shape == (K * 9 + J * 6 + 4,)
        assert env.observation_space(agent).dtype == np.float32
        assert list(env.action_space(agent).nvec) == [K] * J
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
    assert env.state_space.shape == (M * 9 + 4,)

    K, J, M = env3.config.n_candidates, env3.config.jobs_per_step, env3.config.n_servers
    assert (K, J, M) == (6, 8, 6)
    obs, _ = env3.reset()
    assert env3.num_agents == env3.max_num_agents == 3
    assert all(o.shape == (K * 9 + J * 6 + 4,) for o in obs.values())
    assert env3.state().shape == (M * 9 + 4,)
    assert env3.render() is None


@pytest.mark.parametrize("n_agents", [0, -1, 2.0, True, "3"])
def test_bad_n_agents(n_agents) -> None:
    with pytest.raises(ValueError, match="n_agents"):
        parallel_env(n_agents=n_agents)


def test_bad_action(env3: HeteroCloudParallelEnv) -> None:
    env3.reset(seed=0)
    with pytest.raises(ValueError):
        env3.step({"dispatcher_0": np.full(env3.config.jobs_per_step, 99)})
    with pytest.raises(ValueError):
        env3.step({"nobody": np.zeros(env3.config.jobs_per_step, np.int64)})
