"""The PettingZoo wrapper of HeteroCloud (docs/design.md, section 8)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from pettingzoo import test as pz_test

from dgpg.domains.cloud.pettingzoo import (
    DECISIONS,
    TEAM_METRICS,
    HeteroCloudParallelEnv,
    parallel_env,
)

SHORT = {"episode_steps": 30}
# Compiling a config takes seconds: the tests share the configs (N=3, SHORT) and (N=1, SHORT).


@pytest.fixture(scope="module")
def env3() -> HeteroCloudParallelEnv:
    return parallel_env(n_agents=3, seed=0, **SHORT)


@pytest.fixture(scope="module")
def slots3() -> HeteroCloudParallelEnv:
    """The per-slot form of `env3`'s config (shares its compiled code)."""
    return parallel_env(n_agents=3, seed=0, decisions="per-slot", **SHORT)


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


# ---------------------------------------------------------------------- reset infos


ZERO_AT_RESET = (
    "reward",
    "drop_rate",
    "arrived",
    "admitted",
    "rejected",
    "shed",
    "completed",
    "slowdown_sum",
)


@pytest.mark.parametrize("form", ["env3", "slots3"])
def test_reset_infos_have_step_keys(form: str, request: pytest.FixtureRequest) -> None:
    env: HeteroCloudParallelEnv = request.getfixturevalue(form)
    obs, reset_infos = env.reset(seed=4)
    assert set(reset_infos) == set(env.possible_agents)
    _, _, _, _, step_infos = env.step({a: env.action_space(a).sample() for a in env.agents})
    for agent in env.possible_agents:
        assert reset_infos[agent].keys() == step_infos[agent].keys()
        assert all(isinstance(v, float) for v in reset_infos[agent].values())
    info = reset_infos[env.possible_agents[0]]
    assert set(TEAM_METRICS) <= set(info)
    assert all(info[name] == 0.0 for name in ZERO_AT_RESET)
    # the warm cluster's utilisations are the context's last two features, at D - 2 and D - 1
    K, J = env.config.n_candidates, env.config.jobs_per_step
    D = K * 9 + J * 6 + 4
    cpu, mem = obs[env.possible_agents[0]][D - 2 : D]
    assert info["cpu_utilisation"] == pytest.approx(float(cpu), rel=1e-6)
    assert info["memory_utilisation"] == pytest.approx(float(mem), rel=1e-6)
    assert info["cpu_utilisation"] > 0.0 and info["memory_utilisation"] > 0.0
    assert info["imbalance"] >= 0.0 and info["overload"] >= 0.0


# ---------------------------------------------------------------------- per-slot decisions


def test_parallel_api_per_slot(slots3: HeteroCloudParallelEnv) -> None:
    pz_test.parallel_api_test(slots3, num_cycles=40)


@pytest.mark.skipif(
    not hasattr(pz_test, "parallel_seed_test"), reason="pettingzoo lacks parallel_seed_test"
)
def test_parallel_seed_per_slot() -> None:
    pz_test.parallel_seed_test(
        lambda: parallel_env(n_agents=3, decisions="per-slot", **SHORT), num_cycles=30
    )


def test_per_slot_spaces(slots3: HeteroCloudParallelEnv) -> None:
    K, J = slots3.config.n_candidates, slots3.config.jobs_per_step
    D = K * 9 + J * 6 + 4
    names = [f"dispatcher_{i}_slot_{j}" for i in range(3) for j in range(J)]
    assert slots3.possible_agents == names
    assert slots3.max_num_agents == 3 * J
    assert slots3.group_map == {"agents": names}
    for agent in names:
        space = slots3.action_space(agent)
        assert isinstance(space, gymnasium.spaces.Discrete) and space.n == K
        assert slots3.observation_space(agent).shape == (D + J,)
        assert slots3.observation_space(agent).dtype == np.float32
    obs, _ = slots3.reset(seed=3)
    for i in range(3):
        for j in range(J):
            o = obs[f"dispatcher_{i}_slot_{j}"]
            assert slots3.observation_space(names[0]).contains(o)
            assert np.array_equal(o[:D], obs[f"dispatcher_{i}_slot_0"][:D])
            assert np.array_equal(o[D:], np.eye(J, dtype=np.float32)[j])


def _slot_actions(joint: np.ndarray, skip: int | None = None) -> dict[str, np.int64]:
    """The per-slot action dict of an (N, J) array of candidate indices (without dispatcher
    `skip`'s slots, which then act 0)."""
    return {
        f"dispatcher_{i}_slot_{j}": joint[i, j]
        for i in range(joint.shape[0])
        for j in range(joint.shape[1])
        if i != skip
    }


def _dispatcher_actions(joint: np.ndarray, skip: int | None = None) -> dict[str, np.ndarray]:
    return {f"dispatcher_{i}": joint[i] for i in range(joint.shape[0]) if i != skip}


def test_per_slot_actions_reach_the_same_slots(
    env3: HeteroCloudParallelEnv, slots3: HeteroCloudParallelEnv
) -> None:
    K, J = env3.config.n_candidates, env3.config.jobs_per_step
    D = K * 9 + J * 6 + 4
    rng = np.random.default_rng(11)
    joints = [rng.integers(0, K, (3, J)) for _ in range(12)]

    def dispatcher_run(order: slice) -> list[float]:
        env3.reset(seed=9)
        return [env3.step(_dispatcher_actions(j[:, order]))[1]["dispatcher_0"] for j in joints]

    # which slot gets which choice matters: the same choices with the slots reversed differ
    assert dispatcher_run(slice(None)) != dispatcher_run(slice(None, None, -1))

    def dispatcher(agent: str) -> str:
        return agent.split("_slot_")[0]

    def assert_same(obs_d, infos_d, obs_s, infos_s) -> None:
        assert set(obs_s) == set(infos_s) == set(slots3.possible_agents)
        assert infos_s == {a: infos_d[dispatcher(a)] for a in infos_s}
        for agent, o in obs_s.items():
            assert np.array_equal(o[:D], obs_d[dispatcher(agent)])

    assert_same(*env3.reset(seed=9), *slots3.reset(seed=9))
    for step, joint in enumerate(joints):
        skip = 1 if step % 3 == 0 else None  # a missing dispatcher acts 0 in both forms
        obs_d, rew_d, _, trunc_d, infos_d = env3.step(_dispatcher_actions(joint, skip))
        obs_s, rew_s, _, trunc_s, infos_s = slots3.step(_slot_actions(joint, skip))
        assert rew_s == {a: rew_d[dispatcher(a)] for a in rew_s}
        assert trunc_s == {a: trunc_d[dispatcher(a)] for a in trunc_s}
        assert_same(obs_d, infos_d, obs_s, infos_s)
    assert np.array_equal(env3.state(), slots3.state())


def test_per_slot_bad_action(slots3: HeteroCloudParallelEnv) -> None:
    slots3.reset(seed=0)
    K, J = slots3.config.n_candidates, slots3.config.jobs_per_step
    with pytest.raises(ValueError, match="one integer"):
        slots3.step({"dispatcher_0_slot_0": K})
    with pytest.raises(ValueError, match="one integer"):
        slots3.step({"dispatcher_0_slot_0": np.zeros(J, np.int64)})
    with pytest.raises(ValueError, match="unknown agent"):
        slots3.step({"dispatcher_0": np.zeros(J, np.int64)})


@pytest.mark.parametrize("decisions", ["per_slot", "joint", "", None, 1])
def test_bad_decisions(decisions) -> None:
    with pytest.raises(ValueError, match="decisions must be one of") as err:
        parallel_env(n_agents=2, decisions=decisions)
    assert all(repr(known) in str(err.value) for known in DECISIONS)
