"""RoadNet's misspecified models (`--set model.error=E`): what the wrong model believes of the
links (free-flow times and capacities off per capacity class or per link), that the environment
keeps the truth, that E = 0 is the exact model bit for bit, and that the model's own greedy rule
pays for a systematic error on the test scenarios of a small grid and of Sioux Falls."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_harness import run_cli

from dgpg.domains import get_domain
from dgpg.domains.fields import truth
from dgpg.domains.roads import SPEC
from dgpg.domains.roads import belief as b
from dgpg.domains.roads.config import RoadConfig
from dgpg.domains.roads.env import links_of, road_data
from dgpg.evaluation import TEST_SEEDS, evaluate_many

ROADS = get_domain("roads")
KINDS = tuple(SPEC.model_errors)
SMALL = RoadConfig(n_agents=8, grid_rows=3, grid_cols=3, episode_steps=3, demand_scale=2.0,
                   so_iterations=10)
"""Eight pairs of a congested 3 x 3 grid city, for the cheap checks."""
TNTP_DIR = Path(os.environ.get(
    "DGPG_TNTP_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "siouxfalls"))
needs_sioux_falls = pytest.mark.skipif(
    not (TNTP_DIR / "SiouxFalls_net.tntp").is_file(), reason=f"no Sioux Falls files in {TNTP_DIR}")


def _wrong(config: RoadConfig, size: float, kind: str = "systematic", seed: int = 0):
    return dataclasses.replace(config, model_error=size, model_error_kind=kind,
                               model_error_seed=seed)


def _same(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


@pytest.fixture(scope="module")
def state():
    return ROADS.reset(jax.random.key(3), SMALL)


@pytest.fixture(scope="module")
def probs():
    K = SMALL.max_candidates
    logits = jax.random.normal(jax.random.key(1), (SMALL.n_agents, SMALL.jobs_per_step, K))
    return jax.nn.softmax(logits, axis=-1)


# --------------------------------------------------------------------------- the families


def test_the_kinds_and_the_default():
    assert KINDS == ("systematic", "random")
    config = RoadConfig()
    assert (config.model_error, config.model_error_kind, config.model_error_seed) == (
        0.0, "systematic", 0)
    with pytest.raises(ValueError, match="model_error_kind must be one of systematic, random"):
        RoadConfig(model_error_kind="drift")
    with pytest.raises(ValueError, match=r"model_error must be a number in \[0, 1\)"):
        RoadConfig(model_error=1.0)
    assert truth(_wrong(config, 0.3, "random", 4)) == dataclasses.replace(
        config, model_error_kind="random", model_error_seed=4)


def test_the_capacity_classes_are_the_grids_arterials():
    network = road_data(RoadConfig()).network
    high = b.high_capacity(network.capacity)
    assert np.array_equal(high, network.capacity > 2000.0)  # arterials 2400, streets 900 veh/h
    assert 0 < high.sum() < high.size
    assert np.array_equal(high, network.capacity >= network.capacity.mean())


def test_systematic_factors_are_per_capacity_class_with_the_seeds_sign():
    network = road_data(SMALL).network
    high = b.high_capacity(network.capacity)
    assert b.class_sign(0) == b.class_sign(2) == 1.0 and b.class_sign(1) == -1.0
    t0, capacity = b.link_factors(_wrong(SMALL, 0.3))
    # seed 0: the big roads believed slower and smaller, the streets faster and larger
    np.testing.assert_allclose(t0[high], 1.3)
    np.testing.assert_allclose(capacity[high], 0.7)
    np.testing.assert_allclose(t0[~high], 0.7)
    np.testing.assert_allclose(capacity[~high], 1.3)
    t0_odd, capacity_odd = b.link_factors(_wrong(SMALL, 0.3, seed=1))
    np.testing.assert_allclose(t0_odd, capacity)
    np.testing.assert_allclose(capacity_odd, t0)
    again = b.link_factors(_wrong(SMALL, 0.3, seed=2))
    assert np.array_equal(again[0], t0) and np.array_equal(again[1], capacity)


def test_random_factors_are_per_link_seeded_bounded_and_scale_with_e():
    def factors(size, seed):
        return b.link_factors(_wrong(SMALL, size, "random", seed))

    t0, capacity = factors(0.3, 0)
    assert t0.shape == capacity.shape == (road_data(SMALL).network.n_links,)
    for f in (t0, capacity):
        assert np.all((f >= 0.7) & (f <= 1.3)) and f.std() > 0.05
    assert not np.allclose(t0, capacity)  # independent draws for t0 and c
    assert all(np.array_equal(x, y) for x, y in zip(factors(0.3, 0), (t0, capacity),
                                                    strict=True))
    assert not np.allclose(factors(0.3, 1)[0], t0)
    # one draw per seed, scaled by E
    np.testing.assert_allclose((factors(0.5, 0)[0] - 1.0) / 0.5, (t0 - 1.0) / 0.3, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_the_believed_links_change_t0_and_capacity_only(kind):
    exact, wrong = links_of(SMALL), b.believed_links(_wrong(SMALL, 0.5, kind))
    t0, capacity = b.link_factors(_wrong(SMALL, 0.5, kind))
    np.testing.assert_allclose(wrong.t0[:-1], exact.t0[:-1] * t0, rtol=1e-6)
    np.testing.assert_allclose(wrong.capacity[:-1], exact.capacity[:-1] * capacity, rtol=1e-6)
    assert wrong.t0[-1] == 0.0 and wrong.capacity[-1] == exact.capacity[-1]  # the dummy link
    kept = wrong.replace(t0=exact.t0, capacity=exact.capacity)
    assert _same(kept, exact)


# --------------------------------------------------------------------------- E = 0 is exact


def test_zero_error_is_the_exact_model_bit_for_bit(state, probs):
    for kind in KINDS:
        zero = _wrong(SMALL, 0.0, kind, 7)
        assert b.believed_links(zero) is links_of(SMALL)
        np.testing.assert_array_equal(b.link_factors(zero)[0], 1.0)
        np.testing.assert_array_equal(b.link_factors(zero)[1], 1.0)
        exact = ROADS.make_model("aligned", SMALL).reference(state, probs)
        assert _same(ROADS.make_model("aligned", zero).reference(state, probs), exact)
        key = jax.random.key(5)
        for name, heuristic in ROADS.heuristics.items():
            assert np.array_equal(heuristic(key, state, zero), heuristic(key, state, SMALL)), name


# --------------------------------------------------------------------------- the truth is kept


@pytest.mark.parametrize("kind", KINDS)
def test_the_environment_and_the_reference_ignore_the_belief(state, kind):
    wrong = _wrong(SMALL, 0.5, kind, 3)
    key = jax.random.key(0)
    assert _same(ROADS.reset(key, wrong), ROADS.reset(key, SMALL))
    actions = ROADS.heuristics["random"](key, state, SMALL)
    assert _same(ROADS.step(key, state, actions, wrong), ROADS.step(key, state, actions, SMALL))
    assert _same(ROADS.observe(state, wrong), ROADS.observe(state, SMALL))
    for name in ("free-flow", "fastest", "random", "so-sample"):
        heuristic = ROADS.heuristics[name]
        assert np.array_equal(heuristic(key, state, wrong), heuristic(key, state, SMALL)), name


@pytest.mark.parametrize("kind", KINDS)
def test_the_guidance_and_model_greedy_follow_the_belief(state, probs, kind):
    exact = ROADS.make_model("aligned", SMALL).reference(state, probs)
    wrong = ROADS.make_model("aligned", _wrong(SMALL, 0.5, kind)).reference(state, probs)
    present = np.asarray(state.mask)
    assert present.any()
    assert not np.allclose(np.asarray(exact.cost)[present], np.asarray(wrong.cost)[present])
    assert np.all(np.asarray(wrong.cost) >= 0.0)
    assert np.array_equal(wrong.mask, exact.mask)


# --------------------------------------------------------------------------- what it costs


def _greedy_returns(config: RoadConfig, sizes, kind: str, scenarios: int) -> list[float]:
    rule = ROADS.heuristics["model-greedy"]
    results = []
    for size in sizes:
        metrics = evaluate_many([rule], _wrong(config, size, kind), TEST_SEEDS[:scenarios])[0]
        results.append(float(np.mean(metrics["return"])))
    return results


def test_model_greedy_pays_for_a_systematic_error_on_a_small_grid():
    """On 5 test scenarios of a 3 x 3 grid city with N = 50 the greedy rule of the wrong model
    costs clearly more than the exact one's; the random error of the same size costs less
    (measured: return -34.45 exact, -38.03 systematic, -35.10 random at E = 0.3; so-sample
    -34.35)."""
    config = RoadConfig(n_agents=50, grid_rows=3, grid_cols=3)
    exact, systematic = _greedy_returns(config, (0.0, 0.3), "systematic", 5)
    (random,) = _greedy_returns(config, (0.3,), "random", 5)
    assert systematic < exact * 1.07  # returns are negative: at least 7 % more travel time
    assert systematic < random < exact


@needs_sioux_falls
def test_model_greedy_pays_for_a_systematic_error_on_sioux_falls():
    """Sioux Falls, N = 50, 3 test scenarios of 8 periods (measured: return -207.6 exact,
    -329.5 systematic, -224.2 random at E = 0.3)."""
    config = RoadConfig(n_agents=50, network=str(TNTP_DIR / "SiouxFalls"), episode_steps=8)
    exact, systematic = _greedy_returns(config, (0.0, 0.3), "systematic", 3)
    (random,) = _greedy_returns(config, (0.3,), "random", 3)
    assert systematic < exact * 1.3  # at least 30 % more travel time
    assert systematic < random < exact


# --------------------------------------------------------------------------- the command line


def test_evaluate_takes_a_wrong_model():
    small = ["--domain", "roads", "--agents", "50", "--scenarios", "2", "--policy", "model-greedy",
             "--set", "env.grid_rows=3", "--set", "env.grid_cols=3", "--set",
             "env.episode_steps=3", "--json"]
    code, out, err = run_cli(["evaluate", *small, "--set", "model.error=0.3"])
    assert code == 0, err
    code0, out0, err0 = run_cli(["evaluate", *small])
    assert code0 == 0, err0
    assert json.loads(out)[0]["return"] != json.loads(out0)[0]["return"]
    code, _, err = run_cli(["evaluate", *small, "--set", "model.error_kind=tides"])
    assert code == 2 and err.count("\n") == 1 and "model_error_kind" in err


def test_the_calibrated_model_corrects_the_belief_from_observed_path_times():
    """With an exact model the calibrated model is the aligned one, bit for bit; with a wrong
    one its path costs are closer to the true model's than the uncorrected belief's."""
    import jax.numpy as jnp

    config = RoadConfig(n_agents=50, demand_scale=2.0)
    state = ROADS.reset(jax.random.key(0), config)
    actions = ROADS.heuristics["random"](jax.random.key(1), state, config)
    state = ROADS.step(jax.random.key(2), state, actions, config)[0]
    J, K = ROADS.decision_shape(config)
    probs = jnp.full((config.n_agents, J, K), 1.0 / K)

    def cost(model, cfg):
        return np.asarray(ROADS.make_model(model, cfg).reference(state, probs).cost)

    np.testing.assert_array_equal(cost("calibrated", config), cost("aligned", config))
    wrong = dataclasses.replace(config, model_error=0.3)
    true = cost("aligned", config)
    err_belief = np.abs(cost("aligned", wrong) - true).mean()
    err_calibrated = np.abs(cost("calibrated", wrong) - true).mean()
    assert err_calibrated < 0.5 * err_belief, (err_calibrated, err_belief)
