"""A misspecified model on purpose (`--set model.error=E`): what HeteroCloud's wrong model
believes, that the environment keeps the truth, and that the model's own greedy rule pays for the
error on the test scenarios."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_harness import run_cli

from dgpg.config import ConfigError, parse_set, resolve
from dgpg.domains import get_domain
from dgpg.domains.cloud.belief import believed, efficiency_factor, generation_pattern
from dgpg.domains.cloud.config import EnvConfig
from dgpg.domains.fields import truth
from dgpg.evaluation import TEST_SEEDS, evaluate

CLOUD = get_domain("cloud")
N = 10


@pytest.fixture(scope="module")
def state():
    return CLOUD.reset(jax.random.key(3), EnvConfig(n_agents=N))


def test_systematic_error_is_per_generation(state):
    config = EnvConfig(n_agents=N, model_error=0.3)
    factor = np.asarray(efficiency_factor(state.scenario.generation, config))
    generation = np.asarray(state.scenario.generation)
    assert generation_pattern(0) == (1.0, 0.0, -1.0)  # generation 1 believed faster
    for g, expected in zip((1, 2, 3), (1.3, 1.0, 0.7), strict=True):
        np.testing.assert_allclose(factor[generation == g], expected, rtol=1e-6)
    patterns = {generation_pattern(seed) for seed in range(6)}
    assert len(patterns) == 6 and all(sorted(p) == [-1.0, 0.0, 1.0] for p in patterns)


def test_random_error_is_per_server_seeded_and_bounded(state):
    def factor(seed):
        config = EnvConfig(n_agents=N, model_error=0.3, model_error_kind="random",
                           model_error_seed=seed)
        return np.asarray(efficiency_factor(state.scenario.generation, config))

    a, b = factor(0), factor(1)
    assert np.all((a >= 0.7) & (a <= 1.3)) and np.array_equal(a, factor(0))
    assert not np.allclose(a, b) and a.std() > 0.05  # servers differ, seeds differ


def test_the_belief_changes_efficiency_only_and_is_the_truth_at_zero(state):
    exact = EnvConfig(n_agents=N)
    assert believed(state, exact) is state
    wrong = believed(state, dataclasses.replace(exact, model_error=0.5))
    assert not np.allclose(wrong.scenario.efficiency, state.scenario.efficiency)
    same = jax.tree.map(np.array_equal, wrong.replace(scenario=wrong.scenario.replace(
        efficiency=state.scenario.efficiency)), state)
    assert all(jax.tree.leaves(same))
    assert truth(dataclasses.replace(exact, model_error=0.5)) == exact


def test_the_guidance_follows_the_belief(state):
    """The aligned model's per-candidate costs move with the believed efficiencies."""
    probs = jnp.full((N, EnvConfig().jobs_per_step, EnvConfig(n_agents=N).n_candidates),
                     1.0 / EnvConfig(n_agents=N).n_candidates)
    exact = CLOUD.make_model(None, EnvConfig(n_agents=N)).reference(state, probs)
    wrong = CLOUD.make_model(None, EnvConfig(n_agents=N, model_error=0.5)).reference(state, probs)
    present = np.asarray(state.jobs.mask)
    assert present.any()
    assert not np.allclose(np.asarray(exact.cost)[present], np.asarray(wrong.cost)[present])


def test_model_greedy_pays_for_a_systematic_error():
    """On 10 test scenarios at N = 10 the wrong model's greedy rule costs clearly more than the
    exact one's (measured: -28.0 against -10.0 at E = 0.3)."""
    rule = CLOUD.heuristics["model-greedy"]
    exact = evaluate(rule, EnvConfig(n_agents=N), TEST_SEEDS[:10])["return"]
    wrong = evaluate(rule, EnvConfig(n_agents=N, model_error=0.3), TEST_SEEDS[:10])["return"]
    assert np.mean(wrong) < 1.5 * np.mean(exact)  # returns are negative: 50 % more cost


def test_model_section_sets_the_env_fields():
    run = resolve({"algo": "dgpg", "n_agents": 5, "episodes": 2},
                  parse_set(["model.error=0.3", "model.error_kind=random",
                             "model.error_seed=4"]))
    assert (run.env.model_error, run.env.model_error_kind, run.env.model_error_seed) == (
        0.3, "random", 4)
    for bad, message in (("model.error=1.5", r"model_error must be a number in \[0, 1\)"),
                         ("model.error_kind=tides", "model_error_kind must be one of"),
                         ("model.speed=1", "unknown key 'model.speed'")):
        with pytest.raises(ConfigError, match=message):
            resolve({"algo": "dgpg", "n_agents": 5, "episodes": 2}, parse_set([bad]))


def test_evaluate_takes_a_wrong_model():
    code, out, err = run_cli(["evaluate", "--policy", "model-greedy", "--agents", str(N),
                              "--scenarios", "3", "--set", "model.error=0.3", "--json"])
    assert code == 0, err
    code0, out0, _ = run_cli(["evaluate", "--policy", "model-greedy", "--agents", str(N),
                              "--scenarios", "3", "--json"])
    assert code0 == 0 and out != out0
    code, _, err = run_cli(["evaluate", "--policy", "model-greedy", "--agents", str(N),
                            "--set", "model.error=2"])
    assert code == 2 and err.count("\n") == 1 and "model_error" in err


def test_step_ignores_the_belief(state):
    config = EnvConfig(n_agents=N)
    actions = jnp.zeros((N, config.jobs_per_step), jnp.int32)
    key = jax.random.key(0)
    a = CLOUD.step(key, state, actions, config)
    b = CLOUD.step(key, state, actions, dataclasses.replace(config, model_error=0.5))
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_the_calibrated_model_sees_the_measured_efficiency_where_a_server_ran():
    """After a step every server that processed jobs reports its true efficiency; the
    calibrated model's state has it there whatever the error, and the belief elsewhere."""
    from dgpg.domains.cloud import belief as cloud_belief
    from dgpg.domains.cloud.env import reset, step

    config = dataclasses.replace(EnvConfig(n_agents=10), model_error=0.3)
    state = reset(jax.random.key(0), config)
    assert not np.asarray(state.measured_efficiency).any()  # nothing measured yet
    actions = jnp.zeros((10, config.jobs_per_step), jnp.int32)
    state = step(jax.random.key(1), state, actions, config)[0]
    measured = np.asarray(state.measured_efficiency)
    truth_ = np.asarray(state.scenario.efficiency)
    ran = measured > 0
    assert ran.any()
    np.testing.assert_allclose(measured[ran], truth_[ran], rtol=1e-5)
    seen = np.asarray(cloud_belief.calibrated(state, config).scenario.efficiency)
    wrong = np.asarray(cloud_belief.believed(state, config).scenario.efficiency)
    np.testing.assert_allclose(seen[ran], truth_[ran], rtol=1e-5)
    np.testing.assert_array_equal(seen[~ran], wrong[~ran])
