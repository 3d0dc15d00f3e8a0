"""PowerGrid's misspecified models (`--set model.error=E`): what the wrong model believes of the
grid (ratings off per line group or per line, lines believed out), that the environment and the
reference keep the truth, that E = 0 is the exact model bit for bit, and that the model's own
greedy rule pays for a systematic error on the test scenarios."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_harness import run_cli

from dgpg.domains import get_domain
from dgpg.domains.fields import truth
from dgpg.domains.power import SPEC
from dgpg.domains.power import belief as b
from dgpg.domains.power.config import PowerConfig, power_data
from dgpg.domains.power.env import net_of
from dgpg.evaluation import TEST_SEEDS, evaluate

POWER = get_domain("power")
KINDS = tuple(SPEC.model_errors)
SMALL = PowerConfig(n_agents=6, episode_steps=2, tide_depth=0.0, flex_share=0.3)
"""Always at the crest, with large blocks: case30's limits bind."""


def _wrong(config: PowerConfig, size: float, kind: str = "systematic", seed: int = 0):
    return dataclasses.replace(config, model_error=size, model_error_kind=kind,
                               model_error_seed=seed)


@pytest.fixture(scope="module")
def state():
    return POWER.reset(jax.random.key(3), SMALL)


def _same(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


# --------------------------------------------------------------------------- the families


def test_the_kinds_and_the_default():
    assert KINDS == ("systematic", "random", "outage")
    config = PowerConfig()
    assert (config.model_error, config.model_error_kind, config.model_error_seed) == (
        0.0, "systematic", 0)
    with pytest.raises(ValueError, match="model_error_kind must be one of systematic, random, "
                                         "outage"):
        PowerConfig(model_error_kind="drift")
    with pytest.raises(ValueError, match=r"model_error must be a number in \[0, 1\)"):
        PowerConfig(model_error=1.0)
    assert truth(_wrong(config, 0.3, "outage", 4)).model_error == 0.0


@pytest.mark.parametrize("case", ["case30", "case118"])
def test_loaded_lines_are_the_most_loaded_third_at_base_case(case):
    config = PowerConfig(case=case)
    data = power_data(config)
    grid = data.grid
    demand = data.load_scale * grid.load_mw + grid.shunt_mw
    from dgpg.domains.power.dispatch import economic_dispatch
    gen, _ = economic_dispatch(grid, demand.sum())
    flows = data.ptdf @ (np.bincount(grid.gen_bus, gen, grid.n_buses) - demand)
    np.testing.assert_allclose(b.base_loading(config), np.abs(flows) / grid.line_rating_mw)
    loaded = b.loaded_lines(config)
    assert loaded.sum() == math.ceil(grid.n_lines / 3)
    loading = b.base_loading(config)
    assert loading[loaded].min() >= loading[~loaded].max()
    # the loading and so the groups belong to the grid, not to the error or the agents
    assert np.array_equal(b.loaded_lines(_wrong(PowerConfig(case=case, n_agents=7), 0.5, "random",
                                                3)), loaded)


def test_systematic_factor_is_tied_to_the_loading_with_the_seed_s_sign():
    config = PowerConfig()
    loaded = b.loaded_lines(config)
    assert b.systematic_sign(0) == 1.0 and b.systematic_sign(1) == -1.0
    assert b.systematic_sign(2) == 1.0
    for seed, sign in ((0, 1.0), (1, -1.0), (4, 1.0)):
        factor = b.rating_factor(_wrong(config, 0.3, seed=seed))
        np.testing.assert_allclose(factor[loaded], 1.0 + sign * 0.3)
        np.testing.assert_allclose(factor[~loaded], 1.0 - sign * 0.3)
    same = _wrong(config, 0.3)
    assert np.array_equal(b.rating_factor(same), b.rating_factor(same))
    assert np.array_equal(b.rating_factor(config), np.ones(41))


def test_random_factor_is_per_line_seeded_and_bounded():
    config = PowerConfig()

    def factor(seed, size=0.3):
        return b.rating_factor(_wrong(config, size, "random", seed))

    a = factor(0)
    assert a.shape == (41,) and np.all((a >= 0.7) & (a <= 1.3)) and a.std() > 0.05
    assert np.array_equal(a, factor(0)) and not np.allclose(a, factor(1))
    # E scales the same draw: (factor - 1) / E does not depend on E
    np.testing.assert_allclose((factor(0, 0.1) - 1.0) / 0.1, (a - 1.0) / 0.3, atol=1e-9)


@pytest.mark.parametrize("case", ["case30", "case118"])
def test_outage_lines_are_loaded_seeded_nested_and_keep_the_grid_connected(case):
    config = PowerConfig(case=case)
    grid = power_data(config).grid
    pool = b.outage_pool(config)
    order = b.loading_order(config)
    assert pool.size == b.OUTAGE_POOL and set(pool) <= set(order[:2 * b.OUTAGE_POOL])
    loading = b.base_loading(config)
    assert np.all(np.diff(loading[pool]) <= 0)  # by decreasing loading
    assert b.outaged_lines(config) == () and b.outaged_lines(_wrong(config, 0.5)) == ()
    for seed in range(4):
        last: tuple[int, ...] = ()
        for size in (0.05, 0.1, 0.3, 0.5, 0.99):
            out = b.outaged_lines(_wrong(config, size, "outage", seed))
            assert out == b.outaged_lines(_wrong(config, size, "outage", seed))
            count = math.ceil(size * b.OUTAGE_POOL)  # fewer only if the grid would split
            assert (len(out) == count if size <= 0.5 else 0 < len(out) <= count)
            assert set(out) <= set(pool)
            assert set(last) <= set(out)  # a larger E adds lines
            keep = ~np.isin(np.arange(grid.n_lines), out)
            assert b._connected(grid.n_buses, grid.line_from[keep], grid.line_to[keep])
            last = out
    assert len({b.outaged_lines(_wrong(config, 0.1, "outage", s)) for s in range(6)}) > 2


def test_a_believed_outage_is_the_truth_plus_the_line_outage_factors():
    """One line out: PTDF' = PTDF + LODF_l PTDF_l, LODF_l = PTDF (e_from - e_to) / (1 - PTDF_l
    (e_from - e_to)), the textbook update, against the rebuilt network's PTDF."""
    config = _wrong(PowerConfig(), 0.1, "outage")
    (line,) = b.outaged_lines(config)
    data = power_data(config)
    true = data.ptdf
    transfer = true[:, data.grid.line_from[line]] - true[:, data.grid.line_to[line]]
    lodf = transfer / (1.0 - transfer[line])
    expected = true + np.outer(lodf, true[line])
    expected[line] = 0.0
    np.testing.assert_allclose(b.believed_ptdf(config), expected, atol=1e-9)


def test_the_believed_net_differs_from_the_truth_only_where_documented():
    config = PowerConfig(n_agents=6)
    true = net_of(config)
    assert b.believed_net(config) is true
    for kind in ("systematic", "random"):
        wrong = b.believed_net(_wrong(config, 0.3, kind))
        np.testing.assert_allclose(wrong.rating, np.asarray(true.rating)
                                   * b.rating_factor(_wrong(config, 0.3, kind)), rtol=1e-6)
        assert np.array_equal(wrong.ptdf, true.ptdf) and np.array_equal(wrong.limited,
                                                                         true.limited)
    outage = _wrong(config, 0.3, "outage")
    wrong = b.believed_net(outage)
    out = list(b.outaged_lines(outage))
    assert np.array_equal(wrong.rating, true.rating)
    assert not np.asarray(wrong.limited)[out].any() and np.asarray(wrong.limited).sum() == 41 - 3
    np.testing.assert_allclose(wrong.ptdf, b.believed_ptdf(outage), atol=1e-6)
    np.testing.assert_allclose(wrong.cand_ptdf, np.asarray(wrong.ptdf).T[
        power_data(config).candidates], atol=0)
    for field in ("candidates", "gen_bus", "cost_a", "cost_b", "pmin", "pmax", "load"):
        assert np.array_equal(getattr(wrong, field), getattr(true, field))


# --------------------------------------------------------------------------- truth and exactness


def test_e_zero_is_the_exact_model_bit_for_bit(state):
    """E = 0 with any kind or seed: the same reference and the same heuristic actions as the
    configuration without the fields set."""
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), (6, 4, 4)), axis=-1)
    exact = POWER.make_model(None, SMALL).reference(state, probs)
    key = jax.random.key(2)
    actions = {name: POWER.heuristics[name](key, state, SMALL)
               for name in ("model-greedy", "central-optimum")}
    for kind in KINDS:
        zero = _wrong(SMALL, 0.0, kind, 5)
        assert b.believed_net(zero) is net_of(SMALL)
        assert _same(POWER.make_model(None, zero).reference(state, probs), exact)
        for name, expected in actions.items():
            assert np.array_equal(POWER.heuristics[name](key, state, zero), expected), name


@pytest.mark.parametrize("kind", KINDS)
def test_the_environment_and_the_unmodelled_heuristics_keep_the_truth(state, kind):
    wrong = _wrong(SMALL, 0.5, kind)
    key = jax.random.key(0)
    assert _same(POWER.reset(key, wrong), POWER.reset(key, SMALL))
    actions = jnp.tile(jnp.arange(4, dtype=jnp.int32) % 4, (6, 1))
    assert _same(POWER.step(key, state, actions, wrong), POWER.step(key, state, actions, SMALL))
    assert _same(POWER.observe(state, wrong), POWER.observe(state, SMALL))
    for name in ("central-optimum", "cheapest-lmp", "nearest"):
        heuristic = POWER.heuristics[name]
        assert np.array_equal(heuristic(key, state, wrong), heuristic(key, state, SMALL)), name


@pytest.mark.parametrize("kind", KINDS)
def test_the_guidance_follows_the_belief(state, kind):
    probs = jnp.full((6, 4, 4), 0.25)
    exact = POWER.make_model(None, SMALL).reference(state, probs)
    wrong = POWER.make_model(None, _wrong(SMALL, 0.5, kind)).reference(state, probs)
    present = np.asarray(state.mask)
    assert present.any() and np.asarray(exact.cost)[present].max() > 0
    assert not np.allclose(np.asarray(exact.cost)[present], np.asarray(wrong.cost)[present])
    assert np.all(np.asarray(wrong.cost) >= 0)


def test_model_greedy_pays_for_a_systematic_error():
    """case30 at N = 20 on the first 10 test scenarios: the wrong model's greedy rule costs
    clearly more than the exact one's, on every scenario (measured: -31.2 against -25.4 at
    E = 0.3, seed 0; each scenario 3.3 to 9.9 worse)."""
    config = PowerConfig(n_agents=20)
    rule = POWER.heuristics["model-greedy"]
    exact = evaluate(rule, config, TEST_SEEDS[:10])["return"]
    wrong = evaluate(rule, _wrong(config, 0.3), TEST_SEEDS[:10])["return"]
    assert np.mean(wrong) < 1.1 * np.mean(exact)  # returns are negative: 10 % more cost
    assert np.all(wrong < exact - 1.0)


# --------------------------------------------------------------------------- command line


def test_evaluate_takes_a_wrong_model():
    args = ["evaluate", "--domain", "power", "--policy", "model-greedy", "--agents", "6",
            "--scenarios", "2", "--json"]
    code, out, err = run_cli([*args, "--set", "model.error=0.3"])
    assert code == 0, err
    code0, out0, _ = run_cli(args)
    assert code0 == 0 and out != out0
    code, _, err = run_cli([*args, "--set", "model.error_kind=drift"])
    assert code == 2 and err.count("\n") == 1 and "model_error_kind" in err


def test_domains_check_passes():
    code, out, err = run_cli(["domains", "--check", "power"])
    assert code == 0, err
    assert "checks passed" in out
