"""RoadNet as a multi-agent environment: conservation of vehicles, determinism, the aligned
model's guidance against finite differences, the heuristics against brute force and the system
optimum, the PettingZoo adapter, bad input, and one DG-PG episode through the real learner."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.domains import domain_of, get_domain
from dgpg.domains.roads import env as roads
from dgpg.domains.roads.assignment import assign, total_travel_time
from dgpg.domains.roads.env import RoadConfig
from dgpg.domains.roads.model import platoon_delta
from dgpg.domains.roads.network import RoadNetwork, latency
from dgpg.learners.ppo import TrainConfig, init_runner, make_train_episode
from dgpg.pettingzoo import parallel_env

TNTP_DIR = Path(
    os.environ.get(
        "DGPG_TNTP_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "siouxfalls",
    )
)
SIOUX_FALLS = TNTP_DIR / "SiouxFalls"
needs_sioux_falls = pytest.mark.skipif(
    not (TNTP_DIR / "SiouxFalls_net.tntp").is_file(), reason=f"no Sioux Falls files in {TNTP_DIR}"
)

# Compilation dominates: the tests share two small configurations and their compiled runs.
SMALL = RoadConfig(n_agents=6, grid_rows=2, grid_cols=2, episode_steps=5, max_candidates=3,
                   jobs_per_step=3, demand_scale=2.0, so_iterations=10)
"""Six of the 12 pairs of a 2 x 2 grid city, background on the rest; every pair has 2 loopless
paths, so path 2 is missing everywhere."""
ALL_PAIRS = RoadConfig(n_agents=72, grid_rows=3, grid_cols=3, episode_steps=4, max_candidates=4,
                       jobs_per_step=8, tide_amplitude=0.0, demand_noise=0.0, demand_scale=2.0,
                       so_iterations=20)
"""Every pair of a congested 3 x 3 grid (no background), demand constant at its mean."""
SEEDS = (0, 1, 2)
HEURISTICS = get_domain("roads").heuristics
MODEL = get_domain("roads").make_model("aligned", ALL_PAIRS)
_REFERENCE = jax.jit(MODEL.reference)
_GUIDANCE_GRAD = jax.jit(jax.grad(MODEL.guidance_loss))


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _random_actions(key: jax.Array, state, config: RoadConfig) -> jax.Array:
    """Uniform over [0, K), missing paths included."""
    shape = (config.n_agents, config.jobs_per_step)
    return jax.random.randint(key, shape, 0, config.max_candidates)


def _episode(key: jax.Array, config: RoadConfig, policy=_random_actions):
    """One episode of `policy`: the final state, and the states before each step, the actions,
    rewards and step metrics (leading axis T)."""
    def one(state, k):
        k_act, k_env = jax.random.split(k)
        actions = policy(k_act, state, config)
        new, reward, metrics = roads.step(k_env, state, actions, config)
        return new, (state, actions, reward, metrics)

    keys = jax.random.split(jax.random.fold_in(key, 1), config.episode_steps)
    return jax.lax.scan(one, roads.reset(key, config), keys)


def _batched(config: RoadConfig, policy=_random_actions):
    """`keys (S,) -> episodes`, compiled, vmapped over scenario keys."""
    return jax.jit(jax.vmap(lambda k: _episode(k, config, policy)))


_SMALL_RUNS = _batched(SMALL)
_KEYS = jnp.stack([jax.random.key(s) for s in SEEDS])


@pytest.fixture(scope="module")
def small_runs():
    """Random-action episodes of SMALL for SEEDS, batched (leading axis S, then T)."""
    return _np(_SMALL_RUNS(_KEYS))


@pytest.fixture(scope="module")
def all_pairs_runs():
    """so-sample episodes of ALL_PAIRS for SEEDS."""
    return _np(_batched(ALL_PAIRS, HEURISTICS["so-sample"])(_KEYS))


def _at(tree, *index):
    return jax.tree.map(lambda x: jnp.asarray(x[index]), tree)


# --------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_vehicles_conserved(small_runs, seed):
    final, (states, actions, rewards, metrics) = jax.tree.map(lambda x: x[seed], small_runs)
    data = roads.road_data(SMALL)
    incidence = data.paths.incidence()  # (E, N K)
    N, K = data.path_mask.shape
    assert not data.path_mask[:, 2].any() and (actions == 2).any()
    for t in range(SMALL.episode_steps):
        platoons, mask = states.platoons[t], states.mask[t]
        demand = states.demand[t]
        assert mask[:, 0].all() and np.all(platoons[~mask] == 0) and np.all(platoons[mask] > 0)
        np.testing.assert_allclose(platoons.sum(axis=1), demand, rtol=1e-5)
        np.testing.assert_allclose(metrics["agent_demand"][t], demand.sum(), rtol=1e-5)
        np.testing.assert_allclose(metrics["demand"][t], demand.sum() + data.background_demand,
                                   rtol=1e-5)
        # each platoon on its path, a missing path meaning path 0
        chosen = np.where(np.take_along_axis(data.path_mask, actions[t], axis=1), actions[t], 0)
        path_flows = np.zeros((N, K))
        for i, j in zip(*np.nonzero(mask), strict=True):
            path_flows[i, chosen[i, j]] += platoons[i, j]
        np.testing.assert_allclose(path_flows.sum(), demand.sum(), rtol=1e-5)
        links = states.link_flows[t + 1] if t + 1 < SMALL.episode_steps else final.link_flows
        expected = data.background_flows + incidence @ path_flows.ravel()
        np.testing.assert_allclose(links, expected, rtol=1e-5, atol=1e-3)
        tstt = total_travel_time(data.network, expected)
        np.testing.assert_allclose(metrics["tstt"][t], tstt, rtol=1e-4)
        np.testing.assert_allclose(rewards[t], -tstt / metrics["demand"][t], rtol=1e-4)
        assert metrics["so_tstt"][t] <= tstt * (1 + 1e-5)


def test_platoons_follow_the_tide(small_runs):
    """n = clip(ceil(d / q), 1, J) platoons, q the agent's noise-free peak demand over J; the
    demand follows the tide with mean-one noise."""
    states = small_runs[1][0]
    base = roads.road_data(SMALL).agent_demand
    A, J = SMALL.tide_amplitude, SMALL.jobs_per_step
    count = states.mask.sum(axis=-1)  # (S, T, N)
    expected = np.clip(np.ceil(states.demand / (base * (1 + A) / J) - 1e-4), 1, J)
    np.testing.assert_array_equal(count, expected)
    assert len(np.unique(count)) > 1
    t = np.arange(SMALL.episode_steps)[None, :, None]
    tide = 1 + A * np.sin(2 * np.pi * (t + states.phase) / SMALL.tide_period)
    noise = states.demand / (base * tide)
    assert np.all(noise > 0.5) and np.all(noise < 2) and abs(np.log(noise).std() - 0.1) < 0.03


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_trajectory(small_runs):
    again = _np(_SMALL_RUNS(_KEYS))
    for a, b in zip(jax.tree.leaves(small_runs), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    demand = small_runs[1][0].demand
    assert not np.array_equal(demand[0], demand[1])


def test_jit_and_vmap_equal_eager_runs(small_runs):
    """The compiled, batched episodes equal single eager runs step by step."""
    for seed in range(2):
        key = _KEYS[seed]
        state = roads.reset(key, SMALL)
        keys = jax.random.split(jax.random.fold_in(key, 1), SMALL.episode_steps)
        for t in range(SMALL.episode_steps):
            k_act, k_env = jax.random.split(keys[t])
            actions = _random_actions(k_act, state, SMALL)
            batched_state = jax.tree.map(lambda x, t=t, s=seed: x[s, t], small_runs[1][0])
            for a, b in zip(jax.tree.leaves(_np(state)), jax.tree.leaves(batched_state),
                            strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(actions, small_runs[1][1][seed, t])
            state, reward, metrics = roads.step(k_env, state, actions, SMALL)
            np.testing.assert_allclose(reward, small_runs[1][2][seed, t], rtol=1e-5)
            for name, value in metrics.items():
                np.testing.assert_allclose(value, small_runs[1][3][name][seed, t], rtol=1e-5,
                                           atol=1e-6, err_msg=name)


# --------------------------------------------------------------------------- observation


@jax.jit
def _views(state):
    obs = roads.observe(state, SMALL)
    return (obs, roads.pair_features(obs), roads.pair_features(obs, derived=False),
            roads.global_state(state, SMALL))


def test_observation_shapes_and_features(small_runs):
    state = _at(small_runs[1][0], 0, 2)
    obs, features, raw, (links, context) = _views(state)
    N, J, K = SMALL.n_agents, SMALL.jobs_per_step, SMALL.max_candidates
    assert obs.candidates.shape == (N, K, roads.N_CANDIDATE_FEATURES)
    assert obs.slots.shape == (N, J, roads.N_JOB_FEATURES)
    assert obs.context.shape == (N, roads.N_CONTEXT_FEATURES)
    np.testing.assert_array_equal(obs.slot_mask, state.mask)
    np.testing.assert_array_equal(obs.slots[..., 1], state.mask)
    cand = np.asarray(obs.candidates)
    assert np.all(cand[..., 0] >= cand[..., 1] - 1e-6)  # congested time >= free-flow time
    np.testing.assert_allclose(cand[:, 0, 1], 1.0, rtol=1e-6)  # path 0 is the shortest
    assert np.all(np.isfinite(cand))
    width = roads.N_CANDIDATE_FEATURES + roads.N_JOB_FEATURES + roads.N_CONTEXT_FEATURES
    assert raw.shape == (N, J, K, width)
    assert features.shape == (N, J, K, width + roads.N_DERIVED_FEATURES)
    excess = np.asarray(features[..., width])
    assert np.all(excess >= 0) and np.all(excess.min(axis=-1) == 0)
    assert links.shape == (roads.road_data(SMALL).network.n_links, roads.N_LINK_FEATURES)
    assert context.shape == (roads.N_CONTEXT_FEATURES,)
    assert roads.slot_capacity(1, SMALL) == J
    present = small_runs[1][0].mask.sum(axis=-1).mean()  # platoons per agent-step
    assert 10_000 * present <= roads.slot_capacity(10_000, SMALL) < 10_000 * J


# --------------------------------------------------------------------------- aligned model


def _dirichlet(key, shape):
    return np.asarray(jax.random.dirichlet(key, jnp.ones(shape[-1]), shape[:-1]), np.float64)


def test_guidance_gradient_is_the_exact_tstt_change(all_pairs_runs):
    """grad of the guidance in a platoon's probabilities, along every simplex direction, equals
    the finite difference of the expected TSTT change of that platoon's choice, with the others
    at their expected flows, computed in float64 from the network's own latencies (the guidance
    is that change over the best path's, summed over the present platoons and averaged)."""
    config = ALL_PAIRS
    state = _at(all_pairs_runs[1][0], 0, 1)
    data = roads.road_data(config)
    network = data.network
    N, J, K = config.n_agents, config.jobs_per_step, config.max_candidates
    probs = _dirichlet(jax.random.key(4), (N, J, K))
    reference = _REFERENCE(state, jnp.asarray(probs, jnp.float32))
    grad = np.asarray(_GUIDANCE_GRAD(jnp.asarray(probs, jnp.float32), reference), np.float64)
    mask = np.asarray(state.mask)
    q = np.where(mask, np.asarray(state.platoons, np.float64), 0.0)
    incidence = data.paths.incidence().toarray().reshape(network.n_links, N, K)
    mean = data.background_flows + np.einsum("enk,nk->e", incidence, (q[..., None] * probs).sum(1))
    eps = 1e-3
    for i, j in [(0, 0), (5, 1), (40, 2), (71, 0)]:
        assert mask[i, j]
        others = mean - q[i, j] * incidence[:, i, :] @ probs[i, j]

        def expected_change(pi, i=i, j=j, others=others):
            tstt = [total_travel_time(network, others + q[i, j] * incidence[:, i, k])
                    for k in range(K)]
            return float(np.dot(pi, tstt)) - total_travel_time(network, others)

        base = expected_change(probs[i, j])
        best = min(expected_change(np.eye(K)[k]) for k in range(K) if data.path_mask[i, k])
        for k in range(1, K):
            direction = np.eye(K)[k] - np.eye(K)[0]
            fd = (expected_change(probs[i, j] + eps * direction) - base) / eps
            model_value = grad[i, j] @ direction * best * mask.sum()
            np.testing.assert_allclose(model_value, fd, rtol=2e-3, atol=1e-4 * best)


def test_guidance_vanishes_exactly_on_the_minimising_path(all_pairs_runs):
    config = ALL_PAIRS
    state = _at(all_pairs_runs[1][0], 1, 2)
    probs = jnp.asarray(_dirichlet(jax.random.key(6), (72, 8, 4)), jnp.float32)
    model = MODEL
    reference = _REFERENCE(state, probs)
    cost = np.asarray(reference.cost)
    delta = np.asarray(jax.jit(platoon_delta, static_argnums=2)(state, probs, config))
    best = delta.argmin(axis=-1)
    assert np.all(cost >= 0)
    np.testing.assert_array_equal(np.take_along_axis(cost, best[..., None], -1), 0.0)
    at_best = jax.nn.one_hot(best, 4)
    assert float(model.guidance_loss(at_best, reference)) == 0.0
    assert float(model.guidance_loss(probs, reference)) > 0.0
    assert (best > 0).any() and np.median(cost[cost > 0]) < 20  # of order one
    known = "calibrated, aligned"
    with pytest.raises(ValueError,
                       match=rf"^unknown model 'fluid' in the roads domain; known: {known}$"):
        get_domain("roads").make_model("fluid", config)


# --------------------------------------------------------------------------- heuristics


def test_model_greedy_minimises_each_platoons_tstt_increase(all_pairs_runs):
    """Replayed in float64: each platoon, in slot-major order, takes a path whose exact TSTT
    increase at the flows placed before it is the least (ties within float32 rounding)."""
    config = ALL_PAIRS
    state = _at(all_pairs_runs[1][0], 2, 0)
    actions = np.asarray(jax.jit(HEURISTICS["model-greedy"], static_argnums=2)(
        jax.random.key(0), state, config))
    data = roads.road_data(config)
    incidence = data.paths.incidence().toarray().reshape(data.network.n_links, 72, 4)
    mask, platoons = np.asarray(state.mask), np.asarray(state.platoons, np.float64)
    flows = data.background_flows.copy()
    for j in range(config.jobs_per_step):
        for i in range(config.n_agents):
            if not mask[i, j]:
                continue
            now = total_travel_time(data.network, flows)
            increase = np.array([
                total_travel_time(data.network, flows + platoons[i, j] * incidence[:, i, k]) - now
                if data.path_mask[i, k] else np.inf for k in range(4)
            ])
            assert increase[actions[i, j]] <= increase.min() * (1 + 1e-4) + 1e-6, (i, j)
            flows += platoons[i, j] * incidence[:, i, actions[i, j]]
    assert len(np.unique(actions[mask])) > 1  # the case makes it choose


def test_so_sample_near_the_system_optimum(all_pairs_runs):
    """On the congested 3 x 3 grid with every pair an agent and constant demand: the period's
    candidate-path system optimum matches `assign(network, "so")` to 1e-4 (its four shortest
    paths hold the optimum's flows); so-sample's mean TSTT is within 1 % of it, because
    systematic sampling puts each pair's flows within one platoon (1/8 of its demand) of the
    optimal split, a second-order excess; free-flow routing costs over 20 % more."""
    data = roads.road_data(ALL_PAIRS)
    assert data.background_demand == 0
    scaled = data.network.demand * ALL_PAIRS.demand_scale
    net = data.network
    so = assign(RoadNetwork(init_node=net.init_node, term_node=net.term_node,
                            capacity=net.capacity, free_flow_time=net.free_flow_time, b=net.b,
                            power=net.power, demand=scaled, n_nodes=net.n_nodes,
                            n_zones=net.n_zones), "so")
    so_tstt = float(so @ latency(net, so))
    metrics = all_pairs_runs[1][3]
    np.testing.assert_allclose(metrics["so_tstt"], so_tstt, rtol=1e-4)
    sampled = metrics["tstt"].mean()
    assert so_tstt <= sampled <= 1.01 * so_tstt
    free_flow = np.zeros(data.path_mask.shape)
    free_flow[:, 0] = data.agent_demand  # the (constant) demand, all on the shortest paths
    free_flow_tstt = total_travel_time(net, data.paths.incidence() @ free_flow.ravel())
    assert free_flow_tstt > 1.2 * sampled


def test_heuristics_return_valid_actions(small_runs):
    state = _at(small_runs[1][0], 0, 1)
    every = jax.jit(lambda s: {name: h(jax.random.key(0), s, SMALL)
                               for name, h in HEURISTICS.items()})(state)
    for name, actions in every.items():
        actions = np.asarray(actions)
        assert actions.shape == (SMALL.n_agents, SMALL.jobs_per_step), name
        assert actions.dtype == np.int32, name
        assert np.all(np.take_along_axis(roads.road_data(SMALL).path_mask, actions, 1)), name


# --------------------------------------------------------------------------- PettingZoo


def test_pettingzoo_adapter():
    """RoadNet through the generic adapter (tests/test_pettingzoo.py tests the rest): the
    team reward is minus the period's mean travel time, and the infos hold the period's
    metrics."""
    fields = ("grid_rows", "grid_cols", "episode_steps", "max_candidates", "jobs_per_step",
              "demand_scale", "so_iterations")
    kwargs = {f: getattr(SMALL, f) for f in fields}
    env = parallel_env("roads", n_agents=6, seed=0, **kwargs)
    assert env.config == SMALL
    observations, infos = env.reset(seed=1)
    team = {"tstt", "so_tstt", "demand", "mean_travel_time", "gap", "overload"}
    assert team <= set(infos["dispatcher_0"])
    actions = {a: env.action_space(a).sample() for a in env.agents}
    _, rewards, _, _, infos = env.step(actions)
    assert len(set(rewards.values())) == 1
    np.testing.assert_allclose(rewards["dispatcher_0"], -infos["dispatcher_0"]["mean_travel_time"],
                               rtol=1e-6)
    assert env.state().shape == env.state_space.shape


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_agents": 5000}, r"^n_agents 5000 is more than the network's 600 OD pairs$"),
        ({"n_agents": 0}, r"^n_agents must be an integer >= 1, got 0$"),
        ({"max_candidates": 0}, r"^max_candidates must be an integer >= 1, got 0$"),
        ({"jobs_per_step": 2.5}, r"^jobs_per_step must be an integer >= 1, got 2.5$"),
        ({"tide_amplitude": 1.0}, r"^tide_amplitude must be a number in \[0, 1\)"),
        ({"demand_scale": 0.0}, r"^demand_scale must be a number in \(0, inf\)"),
        ({"network": "/nowhere/City"},
         r"^network '/nowhere/City': no TNTP file /nowhere/City_net.tntp$"),
    ],
)
def test_config_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        RoadConfig(**kwargs)
    assert "\n" not in str(error.value)


def test_missing_trips_file_is_named(tmp_path):
    prefix = tmp_path / "City"
    (tmp_path / "City_net.tntp").write_text("<END OF METADATA>\n")
    with pytest.raises(ValueError, match=f"no TNTP file {prefix}_trips.tntp$"):
        RoadConfig(network=str(prefix))


# --------------------------------------------------------------------------- the real learner


def test_one_dgpg_episode_trains():
    config = TrainConfig(algo="dgpg", hidden=16, update_epochs=1, num_minibatches=1)
    assert domain_of(SMALL).name == "roads"
    runner = init_runner(jax.random.key(0), config, SMALL)
    new, metrics = jax.jit(make_train_episode(config, SMALL))(runner)
    metrics = _np(metrics)
    assert all(np.isfinite(v).all() for v in metrics.values()), metrics
    assert metrics["guidance_loss"] > 0 and metrics["return"] < 0
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), runner.params, new.params)
    # every actor kernel moves (the output bias shifts all K logits alike: no gradient)
    kernels = [v["kernel"] for v in changed["actor"]["params"].values()]
    assert all(kernels) and any(jax.tree.leaves(changed["critic"]))


@pytest.mark.slow  # about 15 s: a second learner compiled
def test_one_mlp_actor_episode_trains():
    config = TrainConfig(algo="dgpg", hidden=16, update_epochs=1, num_minibatches=1, actor="mlp")
    runner = init_runner(jax.random.key(0), config, SMALL)
    new, metrics = jax.jit(make_train_episode(config, SMALL))(runner)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                            runner.params["actor"], new.params["actor"])))


# --------------------------------------------------------------------------- Sioux Falls


@needs_sioux_falls
def test_sioux_falls_agents_and_background():
    with pytest.raises(ValueError, match=r"^n_agents 529 is more than the network's 528 OD pairs$"):
        RoadConfig(network=str(SIOUX_FALLS), n_agents=529)
    config = RoadConfig(network=str(SIOUX_FALLS), n_agents=20)
    data = roads.road_data(config)
    assert np.all(np.diff(data.agent_demand) <= 0) and data.agent_demand[0] == 4400
    np.testing.assert_allclose(data.background_demand + data.agent_demand.sum(), 360600)
    assert np.all(data.background_flows >= 0) and data.background_flows.sum() > 0
    assert data.path_mask.all()
