"""The generic PettingZoo adapter (`dgpg.pettingzoo`) on every built-in domain, in both decision
forms, and the deprecated cloud aliases."""

from __future__ import annotations

import importlib

import gymnasium
import jax
import numpy as np
import pytest
from pettingzoo import test as pz_test

from dgpg.domains import DEFAULT_DOMAIN, get_domain, get_spec, names
from dgpg.pettingzoo import DECISIONS, DomainParallelEnv, parallel_env

# Compiling a configuration takes seconds: the tests share one small configuration per domain
# (and its compiled code across both decision forms).
SMALL = {
    "cloud": {"n_agents": 3, "episode_steps": 30},
    "roads": {"n_agents": 6, "grid_rows": 2, "grid_cols": 2, "episode_steps": 5,
              "max_candidates": 3, "jobs_per_step": 3, "demand_scale": 2.0,
              "so_iterations": 10},
    "power": {"n_agents": 3, "episode_steps": 4},
}
"""A small configuration of each built-in domain."""
FEATURES = {"cloud": (9, 6, 4, 9), "roads": (5, 2, 4, 4), "power": (4, 2, 5, 4)}
"""Per candidate, per slot, context, per entity of the global state (docs of each domain)."""
BUILT_IN = [n for n in names() if get_spec(n).domain.startswith("dgpg.domains.")]
_envs: dict[tuple[str, str], DomainParallelEnv] = {}


def make(domain: str, decisions: str = "per-dispatcher", seed: int | None = 0,
         **fields) -> DomainParallelEnv:
    return parallel_env(domain, seed=seed, decisions=decisions, **{**SMALL[domain], **fields})


def shared(domain: str, decisions: str = "per-dispatcher") -> DomainParallelEnv:
    """The module's instance of the domain's small configuration in one decision form."""
    if (domain, decisions) not in _envs:
        _envs[domain, decisions] = make(domain, decisions)
    return _envs[domain, decisions]


def sizes(env: DomainParallelEnv) -> tuple[int, int, int, int]:
    """N, J, K and the number of entities of the global state."""
    c = env.config
    state = jax.eval_shape(lambda k: env.domain.reset(k, c), jax.random.key(0))
    entities, _ = jax.eval_shape(lambda s: env.domain.global_state(s, c), state)
    return (c.n_agents, *env.domain.decision_shape(c), entities.shape[0])


def test_every_built_in_domain_is_tested():
    assert set(BUILT_IN) == set(SMALL) == set(FEATURES)


@pytest.mark.parametrize("decisions", DECISIONS)
@pytest.mark.parametrize("domain", BUILT_IN)
def test_parallel_api(domain, decisions):
    env = shared(domain, decisions)
    assert env.config == get_domain(domain).config_type(**SMALL[domain])
    pz_test.parallel_api_test(env, num_cycles=env.config.episode_steps + 10)


@pytest.mark.parametrize("domain", BUILT_IN)
def test_parallel_api_single_agent(domain):
    env = make(domain, n_agents=1)
    assert env.possible_agents == ["dispatcher_0"]
    pz_test.parallel_api_test(env, num_cycles=env.config.episode_steps + 2)


@pytest.mark.skipif(
    not hasattr(pz_test, "parallel_seed_test"), reason="pettingzoo lacks parallel_seed_test"
)
@pytest.mark.parametrize("decisions", DECISIONS)
@pytest.mark.parametrize("domain", BUILT_IN)
def test_parallel_seed(domain, decisions):
    pz_test.parallel_seed_test(lambda: make(domain, decisions, seed=None), num_cycles=8)


def _rollout(env: DomainParallelEnv, seed: int, steps: int):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    rng = np.random.default_rng(123)
    _, J, K, _ = sizes(env)
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


@pytest.mark.parametrize("domain", BUILT_IN)
def test_same_seed_same_trajectory(domain):
    env, other = shared(domain), make(domain, seed=5)
    steps = min(20, env.config.episode_steps)
    first = _rollout(env, seed=7, steps=steps)
    assert _same(first, _rollout(other, seed=7, steps=steps))
    assert _same(first, _rollout(env, seed=7, steps=steps))  # reseeding the same instance
    assert not _same(first, _rollout(other, seed=8, steps=steps))


@pytest.mark.parametrize("domain", BUILT_IN)
def test_constructor_seed(domain):
    a, b = make(domain, seed=3), make(domain, seed=3)
    first_a, first_b = a.reset()[0], b.reset()[0]
    assert _same(first_a, first_b)
    assert _same(first_a, a.reset(seed=3)[0])
    assert not _same(a.reset()[0], first_a)  # unseeded resets draw fresh episodes


@pytest.mark.parametrize("domain", BUILT_IN)
def test_infos_and_truncation(domain):
    env = shared(domain)
    env.reset(seed=1)
    steps = 0
    while env.agents:
        live = list(env.agents)
        # dispatcher_0's action is left out: it defaults to 0
        actions = {a: env.action_space(a).sample() for a in live[1:]}
        obs, rewards, terms, truncs, infos = env.step(actions)
        steps += 1
        assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos) == set(live)
        assert len(set(rewards.values())) == 1
        assert all(isinstance(r, float) for r in rewards.values())
        assert not any(terms.values())
        for info in infos.values():
            assert info == infos[live[0]]
            assert all(isinstance(v, float) for v in info.values())
            assert info["reward"] == rewards[live[0]]
            if domain == "cloud":
                assert info["arrived"] == info["admitted"] + info["rejected"] + info["shed"]
        assert all(truncs.values()) == (steps == env.config.episode_steps)
    assert steps == env.config.episode_steps
    assert env.num_agents == 0 and env.max_num_agents == env.config.n_agents
    with pytest.raises(RuntimeError):
        env.step({})


@pytest.mark.parametrize("decisions", DECISIONS)
@pytest.mark.parametrize("domain", BUILT_IN)
def test_reset_infos_have_step_keys_all_zero(domain, decisions):
    env = shared(domain, decisions)
    _, reset_infos = env.reset(seed=4)
    assert set(reset_infos) == set(env.possible_agents)
    _, _, _, _, step_infos = env.step({a: env.action_space(a).sample() for a in env.agents})
    for agent in env.possible_agents:
        assert reset_infos[agent].keys() == step_infos[agent].keys()
        assert all(type(v) is float and v == 0.0 for v in reset_infos[agent].values())


@pytest.mark.parametrize("domain", BUILT_IN)
def test_observations_in_space(domain):
    env = shared(domain)
    obs, _ = env.reset(seed=2)
    for _ in range(min(10, env.config.episode_steps)):
        for agent, o in obs.items():
            assert o.dtype == np.float32 and np.all(np.isfinite(o))
            assert env.observation_space(agent).contains(o)
        state = env.state()
        assert env.state_space.contains(state) and np.all(np.isfinite(state))
        obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})


@pytest.mark.parametrize("domain", BUILT_IN)
def test_space_shapes(domain):
    env = shared(domain)
    N, J, K, E = sizes(env)
    fc, fs, fx, fe = FEATURES[domain]
    D = K * fc + J * fs + fx
    assert env.possible_agents == [f"dispatcher_{i}" for i in range(N)]
    assert env.max_num_agents == N
    for agent in env.possible_agents:
        assert env.observation_space(agent).shape == (D,)
        assert env.observation_space(agent).dtype == np.float32
        assert list(env.action_space(agent).nvec) == [K] * J
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
    assert env.state_space.shape == (E * fe + fx,)
    assert env.metadata["name"] == f"{get_spec(domain).title.lower()}_v0"
    obs, _ = env.reset()
    assert env.num_agents == N
    assert all(o.shape == (D,) for o in obs.values())
    assert env.state().shape == (E * fe + fx,)
    assert env.render() is None


def test_space_shapes_follow_the_configuration():
    # spaces only: no compilation
    env = parallel_env("cloud", n_agents=5, seed=0, jobs_per_step=4, arrival_rate=0.5,
                       episode_steps=30)
    K, J, M = env.config.n_candidates, 4, env.config.n_servers
    assert (K, M) == (8, 10)
    assert env.observation_space("dispatcher_0").shape == (K * 9 + J * 6 + 4,)
    assert env.state_space.shape == (M * 9 + 4,)
    assert parallel_env(n_agents=2).config == get_domain(DEFAULT_DOMAIN).config_type(
        n_agents=2)


@pytest.mark.parametrize("n_agents", [0, -1, 2.0, True, "3"])
@pytest.mark.parametrize("domain", BUILT_IN)
def test_bad_n_agents(domain, n_agents):
    with pytest.raises(ValueError, match="n_agents"):
        parallel_env(domain, n_agents=n_agents)


@pytest.mark.parametrize("domain", BUILT_IN)
def test_bad_action(domain):
    env = shared(domain)
    _, J, K, _ = sizes(env)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"^action of dispatcher_0 must be {J} integers in "
                                         rf"\[0, {K}\), got"):
        env.step({"dispatcher_0": np.full(J, K)})
    with pytest.raises(ValueError, match=f"must be {J} integers"):
        env.step({"dispatcher_0": np.zeros(J + 1, np.int64)})
    with pytest.raises(ValueError, match="^unknown agent 'nobody'$"):
        env.step({"nobody": np.zeros(J, np.int64)})


def test_unknown_domain():
    with pytest.raises(ValueError, match="unknown domain 'water'"):
        parallel_env("water")


@pytest.mark.parametrize("decisions", ["per_slot", "joint", "", None, 1])
def test_bad_decisions(decisions):
    with pytest.raises(ValueError, match="decisions must be one of") as err:
        parallel_env(n_agents=2, decisions=decisions)
    assert all(repr(known) in str(err.value) for known in DECISIONS)


# ---------------------------------------------------------------------- per-slot decisions


@pytest.mark.parametrize("domain", BUILT_IN)
def test_per_slot_spaces(domain):
    env = shared(domain, "per-slot")
    N, J, K, _ = sizes(env)
    D = shared(domain).observation_space("dispatcher_0").shape[0]
    agents = [f"dispatcher_{i}_slot_{j}" for i in range(N) for j in range(J)]
    assert env.possible_agents == agents
    assert env.max_num_agents == N * J
    assert env.group_map == {"agents": agents}
    for agent in agents:
        space = env.action_space(agent)
        assert isinstance(space, gymnasium.spaces.Discrete) and space.n == K
        assert env.observation_space(agent).shape == (D + J,)
        assert env.observation_space(agent).dtype == np.float32
    obs, _ = env.reset(seed=3)
    for i in range(N):
        for j in range(J):
            o = obs[f"dispatcher_{i}_slot_{j}"]
            assert env.observation_space(agents[0]).contains(o)
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


@pytest.mark.parametrize("domain", BUILT_IN)
def test_per_slot_actions_reach_the_same_slots(domain):
    env, slots = shared(domain), shared(domain, "per-slot")
    N, J, K, _ = sizes(env)
    D = env.observation_space("dispatcher_0").shape[0]
    rng = np.random.default_rng(11)
    joints = [rng.integers(0, K, (N, J)) for _ in range(min(12, env.config.episode_steps))]

    if domain == "cloud":
        def dispatcher_run(order: slice) -> list[float]:
            env.reset(seed=9)
            return [env.step(_dispatcher_actions(j[:, order]))[1]["dispatcher_0"]
                    for j in joints]

        # which slot gets which choice matters: the same choices with the slots reversed differ
        assert dispatcher_run(slice(None)) != dispatcher_run(slice(None, None, -1))

    def dispatcher(agent: str) -> str:
        return agent.split("_slot_")[0]

    def assert_same(obs_d, infos_d, obs_s, infos_s) -> None:
        assert set(obs_s) == set(infos_s) == set(slots.possible_agents)
        assert infos_s == {a: infos_d[dispatcher(a)] for a in infos_s}
        for agent, o in obs_s.items():
            assert np.array_equal(o[:D], obs_d[dispatcher(agent)])

    assert_same(*env.reset(seed=9), *slots.reset(seed=9))
    for step, joint in enumerate(joints):
        skip = 1 if step % 3 == 0 else None  # a missing dispatcher acts 0 in both forms
        obs_d, rew_d, _, trunc_d, infos_d = env.step(_dispatcher_actions(joint, skip))
        obs_s, rew_s, _, trunc_s, infos_s = slots.step(_slot_actions(joint, skip))
        assert rew_s == {a: rew_d[dispatcher(a)] for a in rew_s}
        assert trunc_s == {a: trunc_d[dispatcher(a)] for a in trunc_s}
        assert_same(obs_d, infos_d, obs_s, infos_s)
    assert np.array_equal(env.state(), slots.state())


@pytest.mark.parametrize("domain", BUILT_IN)
def test_per_slot_bad_action(domain):
    env = shared(domain, "per-slot")
    _, J, K, _ = sizes(env)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one integer"):
        env.step({"dispatcher_0_slot_0": K})
    with pytest.raises(ValueError, match="one integer"):
        env.step({"dispatcher_0_slot_0": np.zeros(J, np.int64)})
    with pytest.raises(ValueError, match="unknown agent"):
        env.step({"dispatcher_0": np.zeros(J, np.int64)})


# ---------------------------------------------------------------------- deprecated aliases


def test_deprecated_cloud_paths_warn_and_still_work():
    from dgpg.domains.cloud import env as cloud_env
    from dgpg.domains.cloud import waterfill

    with pytest.warns(DeprecationWarning, match=r'dgpg\.pettingzoo\.parallel_env\("cloud"'):
        from dgpg.envs.pettingzoo import parallel_env as old_parallel_env

        old = old_parallel_env(n_agents=3, seed=0, episode_steps=30)
    assert old.config == shared("cloud").config and old.decisions == "per-dispatcher"
    with pytest.warns(DeprecationWarning, match=r"dgpg\.domains\.cloud\.env"):
        from dgpg.envs.cloud import make_scenario
    assert make_scenario is cloud_env.make_scenario
    with pytest.warns(DeprecationWarning, match=r"dgpg\.domains\.cloud\.waterfill\.waterfill"):
        assert importlib.import_module("dgpg.analytical").waterfill is waterfill.waterfill
