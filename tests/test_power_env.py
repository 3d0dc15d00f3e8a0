"""PowerGrid as a multi-agent environment: the domain contract, power balance and flows against
an independent float64 NumPy model, the marginal costs and the aligned model's guidance against
finite differences, the heuristics against brute force, the PettingZoo adapter, bad input on
the command line and one training run."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_harness import run_cli, snapshot

from dgpg.domains import check_domain, get_domain
from dgpg.domains.power import env as power
from dgpg.domains.power.config import (
    MAX_AGENTS_PER_BUS,
    PowerConfig,
    case_grid,
    power_data,
    sweep_key,
)
from dgpg.domains.power.dispatch import economic_dispatch
from dgpg.domains.power.heuristics import relaxed_placement
from dgpg.pettingzoo import parallel_env

SMALL = PowerConfig(n_agents=3, episode_steps=4)
"""check_domain's configuration; the episode tests reuse its compiled reset and step."""
CONGESTED = PowerConfig(n_agents=6, episode_steps=2, tide_depth=0.0, flex_share=0.3)
"""Always at the crest, with large blocks: case30's limits bind."""
TINY = PowerConfig(n_agents=2, episode_steps=2, blocks_per_step=2, n_candidates=3,
                   tide_depth=0.0, flex_share=0.3)
"""Two agents, four big blocks at most: brute force over the buses."""
DOMAIN = get_domain("power")


# --------------------------------------------------------------------------- the NumPy model


def np_period(config: PowerConfig, bus_load: np.ndarray) -> dict:
    """The period served, in float64 NumPy from the case itself: economic dispatch up to the
    capacity, flows PTDF (Cg P - s d), costs."""
    data = power_data(config)
    grid = data.grid
    bus_load = np.asarray(bus_load, np.float64)
    total = bus_load.sum()
    served = min(total, grid.gen_pmax_mw.sum())
    gen, price = economic_dispatch(grid, served)
    injection = np.bincount(grid.gen_bus, weights=gen, minlength=grid.n_buses)
    flows = data.ptdf @ (injection - served / total * bus_load)
    rating = grid.line_rating_mw
    excess = np.where(np.isfinite(rating), np.maximum(np.abs(flows) - rating, 0.0), 0.0)
    penalty = config.violation_weight * data.ref_price * (
        excess + excess**2 / (2 * config.violation_width * np.where(excess > 0, rating, 1.0)))
    gen_cost = np.sum(grid.cost_a * gen**2 + grid.cost_b * gen + grid.cost_c)
    unserved = total - served
    cost = gen_cost + penalty.sum() + config.unserved_weight * data.ref_price * unserved
    return {"gen": gen, "flows": flows, "gen_cost": gen_cost, "penalty": penalty.sum(),
            "unserved": unserved, "cost": cost, "price": price}


def np_placed(config: PowerConfig, state, actions: np.ndarray) -> np.ndarray:
    """Bus loads (B,) with each present block on its chosen candidate."""
    cand = power_data(config).candidates
    load = np.array(state.base, np.float64)
    for i, j in zip(*np.nonzero(np.asarray(state.mask)), strict=True):
        load[cand[i, actions[i, j]]] += float(state.blocks[i, j])
    return load


def episode(config: PowerConfig, seed: int, policy) -> list:
    """(state, actions, next state, reward, metrics) of each step, with eager (jitted) calls."""
    key = jax.random.key(seed)
    state = power.reset(key, config)
    steps = []
    for t in range(config.episode_steps):
        k_act, k_env = jax.random.split(jax.random.fold_in(key, t))
        actions = policy(k_act, state, config)
        new, reward, metrics = power.step(k_env, state, actions, config)
        steps.append((state, np.asarray(actions), new, float(reward), metrics))
        state = new
    return steps


# --------------------------------------------------------------------------- contract


def test_check_domain_passes():
    passed = check_domain(DOMAIN, SMALL)
    assert {"step", "vmap", "model aligned", "episode_metrics"} <= set(passed)
    assert {f"heuristic {name}" for name in DOMAIN.heuristics} <= set(passed)


def test_config_rules():
    grid = case_grid("case30")
    assert PowerConfig(n_agents=MAX_AGENTS_PER_BUS * grid.n_buses).n_agents == 120
    assert SMALL.resolved_load_scale == 1.3
    assert PowerConfig(case="case118").resolved_load_scale == 0.6
    data = power_data(PowerConfig(n_agents=40))
    assert np.array_equal(data.candidates[:, 0], data.home) and np.all(data.hops[:, 0] == 0)
    assert np.all(np.diff(data.hops, axis=1) >= 0)  # nearest first
    assert len(set(data.home[:30])) == 30 and np.array_equal(data.home[30:], data.home[:10])
    # case118 rates every line 9900 MW: synthetic limits that bind
    assert np.unique(case_grid("case118").line_rating_mw).size > 1
    assert sweep_key({"case": "case118"}) == {"case": "case118"}


# --------------------------------------------------------------------------- physics


@pytest.mark.parametrize("seed", [0, 1])
def test_power_balance_flows_and_reward_against_numpy(seed):
    scale = power_data(SMALL).cost_scale
    for state, actions, new, reward, m in episode(SMALL, seed, DOMAIN.heuristics["random"]):
        load = np_placed(SMALL, state, actions)
        expected = np_period(SMALL, load)
        # generation meets the served load; flows and costs as NumPy computes them
        np.testing.assert_allclose(m["gen_mw"], m["load_mw"] - m["unserved_mw"], rtol=1e-5)
        np.testing.assert_allclose(m["load_mw"], load.sum(), rtol=1e-5)
        np.testing.assert_allclose(m["gen_mw"], expected["gen"].sum(), rtol=1e-5)
        np.testing.assert_allclose(new.flows, expected["flows"], rtol=1e-3, atol=1e-2)
        np.testing.assert_allclose(m["gen_cost"], expected["gen_cost"], rtol=1e-4)
        np.testing.assert_allclose(m["violation_cost"], expected["penalty"], rtol=1e-3,
                                   atol=1e-2)
        np.testing.assert_allclose(reward, -expected["cost"] / scale, rtol=1e-4)
        assert np.all(np.asarray(state.blocks)[~np.asarray(state.mask)] == 0)
        # the posted flows are the base load's alone
        np.testing.assert_allclose(state.base_flows, np_period(SMALL, state.base)["flows"],
                                   rtol=1e-3, atol=1e-2)


def test_marginal_costs_are_the_cost_gradient():
    state = power.reset(jax.random.key(3), CONGESTED)
    base = np.asarray(state.base, np.float64)
    assert np_period(CONGESTED, base)["penalty"] > 0  # congested: prices differ by bus
    h = 1e-3
    for bus in range(base.size):
        step = np.zeros_like(base)
        step[bus] = h
        slope = (np_period(CONGESTED, base + step)["cost"]
                 - np_period(CONGESTED, base - step)["cost"]) / (2 * h)
        np.testing.assert_allclose(state.lmp[bus], slope, rtol=2e-3,
                                   atol=2e-3 * power_data(CONGESTED).ref_price)
    assert np.ptp(np.asarray(state.lmp)) > 1.0


def test_blocks_follow_the_profile_with_the_configured_share():
    config, draws = SMALL, 2000
    N, J = config.n_agents, config.blocks_per_step
    unit = jnp.full(N, power.net_of(config).crest_flex / (N * J * config.arrival_prob))

    @jax.jit
    def draw(keys, hour):
        u = jax.vmap(lambda k: power._uniforms(k, power._period_size(config)))(keys)
        return jax.vmap(lambda u: power._draw_period(u, 0, hour, jnp.zeros(N), unit, None,
                                                     config))(u)

    keys = jax.random.split(jax.random.key(0), draws)
    base, blocks, mask = draw(keys, jnp.float32(config.crest_hour))
    flex = np.asarray(blocks).sum(axis=(1, 2))
    assert abs(flex.mean() / power.net_of(config).crest_flex - 1) < 0.06
    assert abs(np.asarray(mask).mean() - config.arrival_prob) < 0.02
    sizes = np.asarray(blocks)[np.asarray(mask)] / float(unit[0])
    pareto_mean = power.pareto_mean(config)
    assert sizes.min() >= 1 / pareto_mean - 1e-5 and sizes.max() <= 20 / pareto_mean + 1e-4
    assert np.mean(sizes > 3) > 0.03  # a heavy tail
    load = np.asarray(power.net_of(config).load)
    np.testing.assert_allclose(np.asarray(base).mean(axis=0), load, rtol=0.01)
    trough = config.crest_hour + config.tide_period / 2
    _, _, mask = draw(keys, jnp.float32(trough))
    expected = config.arrival_prob * (1 - config.tide_depth)
    assert abs(np.asarray(mask).mean() - expected) < 0.02


# --------------------------------------------------------------------------- the model


def test_guidance_is_the_exact_cost_of_placing_each_block():
    config = CONGESTED
    state = power.reset(jax.random.key(5), config)
    N, J, K = config.n_agents, config.blocks_per_step, config.n_candidates
    probs = jax.nn.softmax(2.0 * jax.random.normal(jax.random.key(6), (N, J, K)), axis=-1)
    model = DOMAIN.make_model("aligned", config)
    reference = model.reference(state, probs)
    data = power_data(config)
    cand, p = data.candidates, np.asarray(probs, np.float64)
    sizes = np.where(np.asarray(state.mask), np.asarray(state.blocks, np.float64), 0.0)
    expected_load = np.array(state.base, np.float64)
    np.add.at(expected_load, cand, np.einsum("nj,njk->nk", sizes, p))
    spread = 0.0
    for i, j in zip(*np.nonzero(np.asarray(state.mask)), strict=True):
        q = sizes[i, j]
        others = expected_load.copy()
        np.add.at(others, cand[i], -q * p[i, j])  # the block itself out, the others expected
        costs = []
        for k in range(K):
            placed = others.copy()
            placed[cand[i, k]] += q
            costs.append(np_period(config, placed)["cost"])
        delta = np.minimum((np.array(costs) - min(costs)) / (q * data.ref_price), model.cost_cap)
        np.testing.assert_allclose(reference.cost[i, j], delta, rtol=2e-3, atol=2e-3)
        spread = max(spread, delta.max())
    assert spread > 0.1  # placement matters here
    assert np.all(np.asarray(reference.cost)[~np.asarray(state.mask)] == 0)

    # the loss is linear in the probabilities: its gradient is the cost, by finite differences
    loss = jax.jit(model.guidance_loss)
    grad = jax.grad(model.guidance_loss)(probs, reference)
    direction = jax.random.normal(jax.random.key(7), probs.shape)
    eps = 1e-2
    numeric = (loss(probs + eps * direction, reference)
               - loss(probs - eps * direction, reference)) / (2 * eps)
    np.testing.assert_allclose(numeric, jnp.sum(grad * direction), rtol=1e-3, atol=1e-5)
    n = int(np.sum(state.mask))
    np.testing.assert_allclose(grad, reference.cost / n, rtol=1e-6)


# --------------------------------------------------------------------------- heuristics


def test_model_greedy_picks_the_least_cost_bus_one_block_at_a_time():
    config = TINY
    cand = power_data(config).candidates
    heuristic = jax.jit(DOMAIN.heuristics["model-greedy"], static_argnums=2)
    decisive = 0
    for seed in range(4):
        state = power.reset(jax.random.key(seed), config)
        actions = np.asarray(heuristic(jax.random.key(0), state, config))
        load = np.array(state.base, np.float64)
        mask = np.asarray(state.mask)
        for j in range(config.blocks_per_step):  # slot-major
            for i in range(config.n_agents):
                if not mask[i, j]:
                    continue
                q = float(state.blocks[i, j])
                costs = []
                for k in range(config.n_candidates):
                    placed = load.copy()
                    placed[cand[i, k]] += q
                    costs.append(np_period(config, placed)["cost"])
                costs = np.array(costs)
                assert costs[actions[i, j]] <= costs.min() + 1e-5 * costs.min(), (seed, i, j)
                decisive += np.ptp(costs) > 1e-2 * costs.min()
                load[cand[i, actions[i, j]]] += q
    assert decisive >= 2  # the instance is congested enough for the choice to matter


def test_the_relaxed_optimum_bounds_every_placement_and_central_rounds_it():
    config = CONGESTED
    data = power_data(config)
    heuristics = {name: jax.jit(h, static_argnums=2) for name, h in DOMAIN.heuristics.items()}
    relaxed = jax.jit(relaxed_placement, static_argnums=1)
    totals = dict.fromkeys(heuristics, 0.0)
    for seed in range(3):
        state = power.reset(jax.random.key(seed), config)
        x = np.asarray(relaxed(state, config), np.float64)
        sizes = np.where(np.asarray(state.mask), np.asarray(state.blocks, np.float64), 0.0)
        fractional = np.array(state.base, np.float64)
        np.add.at(fractional, data.candidates, np.einsum("nj,njk->nk", sizes, x))
        bound = np_period(config, fractional)["penalty"]
        for name, heuristic in heuristics.items():
            actions = np.asarray(heuristic(jax.random.key(seed), state, config))
            penalty = np_period(config, np_placed(config, state, actions))["penalty"]
            assert bound <= penalty * (1 + 1e-3) + 1e-3, (seed, name)
            totals[name] += penalty
    assert totals["central-optimum"] <= min(totals.values()) * (1 + 1e-6)
    assert totals["central-optimum"] < 0.8 * totals["nearest"]


# --------------------------------------------------------------------------- PettingZoo


def test_pettingzoo_adapter():
    """PowerGrid through the generic adapter (tests/test_pettingzoo.py tests the rest): the
    team reward is minus the period's cost over the reference cost, and the infos hold the
    period's metrics."""
    env = parallel_env("power", n_agents=3, seed=0, episode_steps=4)
    assert env.config == SMALL
    observations, infos = env.reset(seed=1)
    team = {"cost", "gen_cost", "violation_cost", "violation_mw", "unserved_mw", "binding_lines"}
    assert team <= set(infos["dispatcher_0"])
    actions = {a: env.action_space(a).sample() for a in env.agents}
    _, rewards, _, _, infos = env.step(actions)
    assert len(set(rewards.values())) == 1
    info = infos["dispatcher_0"]
    np.testing.assert_allclose(rewards["dispatcher_0"],
                               -info["cost"] / power_data(SMALL).cost_scale, rtol=1e-5)
    assert env.state().shape == env.state_space.shape
    data = power_data(SMALL)
    assert np.array_equal(data.candidates[:, 0], data.home)  # an agent's home bus comes first


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(("args", "message"), [
    (["--case", "case999"], "unknown case 'case999'; known cases: case9, case14, case30"),
    (["--case", "BAD"], "bad.m: not a MATPOWER case (no bus matrix)"),
    (["--agents", "121"], "run.n_agents 121 is more than case30 holds: 4 aggregators per bus"),
    (["--set", "env.load_scale=50"],
     "env.load_scale 50 puts the crest load at 11352 MW (base and flexible), beyond case30's "
     "generation capacity 335 MW"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    bad = tmp_path / "bad.m"
    bad.write_text("function mpc = bad\nmpc.baseMVA = 100;\n")
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    argv = ["train", "--domain", "power", *[str(bad) if a == "BAD" else a for a in args],
            "--out", str(out)]
    code, stdout, stderr = run_cli(argv)
    assert (code, stdout) == (2, "")
    assert stderr.startswith("dgpg: error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert snapshot(tmp_path) == before and not out.exists()


@pytest.mark.slow  # about 45 s, mostly compiling the learner; the plug-in test trains in the suite
def test_a_short_training_run(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(["train", "--domain", "power", "--agents", "4", "--episodes",
                                    "2", "--set", "env.episode_steps=8", "--out", str(out),
                                    "--json"])
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["domain"] == "power" and summary["reference"] == "central-optimum"
    assert json.loads((out / "config.json").read_text())["env"]["case"] == "case30"
    assert np.isfinite(summary["reference_test_return"])
