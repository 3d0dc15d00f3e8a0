"""PowerGrid with `market="opf"`: every period cleared by the DC-OPF (`clearing`). Energy
balance and line ratings in every step, the step's cost against the Clarabel DC-OPF on the
placed load, the guidance as LMP differences checked against finite differences of the OPF
cost, the model error's believed OPF, the heuristics against random placement, bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.domains.power import env, heuristics
from dgpg.domains.power.belief import believed_clearing, rating_factor
from dgpg.domains.power.clearing import clear, clearing_problem
from dgpg.domains.power.config import PowerConfig, power_data
from dgpg.domains.power.dispatch import solve_dcopf
from dgpg.domains.power.model import AlignedPowerModel, expected_load

CONFIG = PowerConfig(n_agents=20, case="case30", market="opf")


def _episode(policy, config: PowerConfig, seed: int, steps: int):
    """(states before each step, actions, metrics) of `steps` periods under `policy`."""
    act = jax.jit(lambda key, state: policy(key, state, config))
    key = jax.random.PRNGKey(seed)
    key, first = jax.random.split(key)
    state = env.reset(first, config)
    out = []
    for _ in range(steps):
        key, k_act, k_step = jax.random.split(key, 3)
        actions = act(k_act, state)
        next_state, reward, metrics = env.step(k_step, state, actions, config)
        out.append((state, actions, next_state, float(reward), jax.device_get(metrics)))
        state = next_state
    return out


@pytest.fixture(scope="module")
def random_episode():
    return _episode(heuristics.random_buses, CONFIG, seed=0, steps=6)


def test_energy_balances_and_no_line_exceeds_its_rating(random_episode):
    net = env.net_of(CONFIG)
    rating = np.where(np.asarray(net.limited), np.asarray(net.rating), np.inf)
    for _, _, next_state, reward, m in random_episode:
        assert m["gen_mw"] == pytest.approx(m["load_mw"] - m["unserved_mw"], abs=1e-2)
        assert np.all(np.abs(np.asarray(next_state.flows)) <= rating * (1 + 1e-4) + 1e-3)
        assert m["violation_cost"] == 0.0
        assert m["violation_mw"] < 1e-3  # float32 flows at a rating: ~1e-6 MW over it
        assert reward == pytest.approx(-m["cost"] / net.cost_scale, rel=1e-6)


def test_step_cost_is_the_dcopf_of_the_placed_load(random_episode):
    """The environment's cost equals the Clarabel DC-OPF of the period's placed bus loads."""
    grid = power_data(CONFIG).grid
    net = env.net_of(CONFIG)
    for state, actions, _, _, m in random_episode[:3]:
        load = np.asarray(env.placed_load(state, actions, net), np.float64)
        placed = dataclasses.replace(grid, load_mw=load - grid.shunt_mw)
        reference = solve_dcopf(placed)
        assert m["unserved_mw"] < 1e-3  # a load the network serves: Clarabel's problem
        assert m["cost"] == pytest.approx(reference.objective, rel=1e-4)


def test_guidance_is_the_lmp_excess_and_the_lmps_are_cost_derivatives():
    """The model's cost of candidate k is (LMP_k - min LMP) / p_ref at the expected load, and
    the LMP differences between an agent's candidates are the OPF cost's: central differences
    (float64, 0.05 MW) of the clearing's cost in the load of two candidate buses."""
    config = CONFIG
    net = env.net_of(config)
    k = config.n_candidates
    probs = jnp.full((config.n_agents, config.blocks_per_step, k), 1.0 / k)
    for seed in range(20):  # the first day that starts congested (near its crest)
        state = env.reset(jax.random.PRNGKey(seed), config)
        if float(jnp.ptp(state.lmp)) > 0.1:
            break
    reference = AlignedPowerModel(config).reference(state, probs)
    load = np.asarray(expected_load(state, probs, config), np.float64)
    problem = clearing_problem(power_data(config).grid, voll=net.voll)  # = net.clearing
    with jax.enable_x64(True):
        cost = jax.jit(lambda d: clear(problem, d))
        lmp = np.asarray(cost(load).lmp)
        candidates = np.asarray(net.candidates)
        excess = (lmp[candidates] - lmp[candidates].min(axis=1, keepdims=True)) / net.ref_price
        present = np.asarray(state.mask)
        np.testing.assert_allclose(np.asarray(reference.cost)[present],
                                   np.broadcast_to(excess[:, None], present.shape + (k,))[present],
                                   rtol=0, atol=1e-3)
        spread = lmp[candidates].max(axis=1) - lmp[candidates].min(axis=1)
        agent = int(np.argmax(spread))
        assert spread[agent] > 0.01  # congestion separates the agent's candidate prices
        h = 0.05
        derivative = []
        for bus in candidates[agent][[np.argmin(lmp[candidates[agent]]),
                                      np.argmax(lmp[candidates[agent]])]]:
            step = np.zeros_like(load)
            step[bus] = h
            derivative.append((float(cost(load + step).cost) - float(cost(load - step).cost))
                              / (2 * h))
        assert derivative[1] - derivative[0] == pytest.approx(spread[agent], abs=1e-4)


def test_model_error_clears_the_believed_grid():
    exact = believed_clearing(CONFIG)
    assert exact is env.net_of(CONFIG).clearing
    wrong = dataclasses.replace(CONFIG, model_error=0.3)
    believed = believed_clearing(wrong)
    np.testing.assert_allclose(believed.rating_pu,
                               exact.rating_pu * rating_factor(wrong)[exact.rated])
    out = dataclasses.replace(CONFIG, model_error=0.3, model_error_kind="outage")
    assert believed_clearing(out).ptdf.shape[0] == exact.ptdf.shape[0] - 3
    with pytest.raises(ValueError, match="clears no OPF"):
        believed_clearing(dataclasses.replace(CONFIG, market="penalty"))


@pytest.mark.slow  # about a minute: 3 episodes of each planner, one OPF per Adam step
def test_planners_cost_less_than_random_placement():
    steps = 24
    total = {}
    for name, policy in (("random", heuristics.random_buses),
                         ("model-greedy", heuristics.model_greedy),
                         ("central-optimum", heuristics.central_optimum)):
        total[name] = np.mean([sum(m["cost"] for *_, m in _episode(policy, CONFIG, s, steps))
                               for s in range(3)])
    assert total["model-greedy"] < total["random"]
    assert total["central-optimum"] < total["random"]


def test_unknown_market_is_refused():
    with pytest.raises(ValueError, match="market must be one of penalty, opf"):
        PowerConfig(market="auction")
