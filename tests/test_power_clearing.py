"""The jittable DC-OPF clearing (`dgpg.domains.power.clearing`): agreement with the Clarabel
DC-OPF (`dispatch.solve_dcopf`) in float32 and float64, the optimality conditions on a congested
grid, shedding at the value of lost load, LMPs as derivatives of the cost, and jit + vmap."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dgpg.domains.power.clearing import VOLL, clear, clearing_problem
from dgpg.domains.power.dispatch import solve_dcopf
from dgpg.domains.power.grid import CaseError, Grid, load_case, ptdf, with_limits, with_ratings

# Targets: objective to 1e-4 relative and LMPs to 1e-3 $/MWh of solve_dcopf. Dispatch and
# flows have no stated target; they follow from the prices: a unit of quadratic cost a moves
# 1 / (2a) MW per $/MWh of price, 50 MW for case118's a = 0.01 $/MW^2h, so the price tolerance
# allows 0.05 MW. On the congested case solve_dcopf (Clarabel at its default tolerances) is the
# less exact of the two there: its unit 48 runs at 0.093 MW with a marginal cost 8e-4 $/MWh off
# its bus's LMP, where the clearing's 0.058 MW meets the LMP to 1e-9 at a cost 2e-5 $/h lower.
OBJECTIVE_RTOL = 1e-4
LMP_ATOL = 1e-3
DISPATCH_ATOL = 0.05

_clear = jax.jit(clear)


def solve(problem, demand_mw, x64: bool = False):
    """The clearing as NumPy arrays, computed (and fetched) in float64 when x64."""
    with jax.enable_x64(x64):
        return jax.device_get(_clear(problem, np.asarray(demand_mw)))


def congested_case118() -> Grid:
    """case118 with `with_limits` ratings, each raised by a seeded factor in [1, 1.1]: 12 lines
    bind at base load, 17 at 1.2. Without the factors, lines in series get equal ratings and
    bind together, so the line duals and the LMPs between them are not unique."""
    grid = with_limits(load_case("case118"))
    factors = np.random.default_rng(0).uniform(1.0, 1.1, grid.n_lines)
    return with_ratings(grid, grid.line_rating_mw * factors)


@pytest.fixture(scope="module")
def grids() -> dict[str, Grid]:
    return {"case30": load_case("case30"), "case118": load_case("case118"),
            "congested118": congested_case118()}


CASES = [("case30", 1.3), ("case118", 1.0), ("congested118", 1.0), ("congested118", 1.2)]


# float32 is what the environment runs; float64 (the same algorithm) runs with the slow suite
FLOAT32_AND_64 = [False, pytest.param(True, marks=pytest.mark.slow)]


@pytest.mark.parametrize("x64", FLOAT32_AND_64, ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}@{s}" for n, s in CASES])
def test_matches_solve_dcopf(grids, name, scale, x64):
    grid = grids[name]
    reference = solve_dcopf(grid, load_scale=scale)
    result = solve(clearing_problem(grid), scale * grid.demand_mw, x64)
    assert result.converged
    assert result.shed.sum() < 1e-6
    assert result.cost == pytest.approx(reference.objective, rel=OBJECTIVE_RTOL)
    np.testing.assert_allclose(result.dispatch, reference.dispatch, rtol=0, atol=DISPATCH_ATOL)
    np.testing.assert_allclose(result.lmp, reference.lmp, rtol=0, atol=LMP_ATOL)
    np.testing.assert_allclose(result.flows, reference.flows, rtol=0, atol=DISPATCH_ATOL)
    if name == "congested118":
        binding = np.flatnonzero(result.congestion != 0)
        assert binding.size > 10
        np.testing.assert_array_equal(binding, reference.binding)


@pytest.mark.parametrize(("x64", "price_atol", "flow_atol"),
                         [(False, 1e-3, 1e-3),
                          pytest.param(True, 1e-8, 1e-8, marks=pytest.mark.slow)],
                         ids=["float32", "float64"])
def test_optimality_conditions_on_a_congested_grid(grids, x64, price_atol, flow_atol):
    """A KKT certificate without a reference solver: every unit strictly inside its range runs
    at marginal cost = its bus's LMP, a unit at Pmax has a marginal cost at most its LMP (at
    Pmin at least), flows respect the ratings and only lines at their rating carry a congestion
    price, of the flow's sign, and the LMPs are the balance price less PTDF^T congestion."""
    grid = grids["congested118"]
    demand = 1.2 * grid.demand_mw
    result = solve(clearing_problem(grid), demand, x64)
    assert result.converged
    dispatch, lmp = result.dispatch, result.lmp
    marginal_cost = 2 * grid.cost_a * dispatch + grid.cost_b
    gen_lmp = lmp[grid.gen_bus]
    inside = (dispatch > grid.gen_pmin_mw + 1e-3) & (dispatch < grid.gen_pmax_mw - 1e-3)
    assert inside.sum() >= 10
    np.testing.assert_allclose(marginal_cost[inside], gen_lmp[inside], rtol=0, atol=price_atol)
    at_max = dispatch >= grid.gen_pmax_mw - 1e-3
    at_min = dispatch <= grid.gen_pmin_mw + 1e-3
    assert np.all(marginal_cost[at_max] <= gen_lmp[at_max] + price_atol)
    assert np.all(marginal_cost[at_min] >= gen_lmp[at_min] - price_atol)

    rating = grid.line_rating_mw
    assert np.all(np.abs(result.flows) <= rating + flow_atol)
    congested = result.congestion != 0
    np.testing.assert_allclose(np.abs(result.flows[congested]), rating[congested], rtol=0,
                               atol=flow_atol)
    assert np.all(np.sign(result.congestion[congested]) == np.sign(result.flows[congested]))
    assert result.dispatch.sum() == pytest.approx(demand.sum(), abs=flow_atol)
    balance_price = lmp[grid.slack]  # the slack bus's PTDF column is zero
    np.testing.assert_allclose(lmp, balance_price - ptdf(grid).T @ result.congestion,
                               rtol=0, atol=price_atol)


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_demand_beyond_capacity_is_shed_at_voll(x64):
    """case30 without line limits at twice its load (378 MW against 335 MW of generation):
    every unit at Pmax, the excess shed, every LMP at VOLL."""
    grid = with_ratings(load_case("case30"), np.inf)
    demand = 2.0 * grid.demand_mw
    result = solve(clearing_problem(grid), demand, x64)
    excess = demand.sum() - grid.gen_pmax_mw.sum()
    assert excess > 40
    assert result.converged
    np.testing.assert_allclose(result.dispatch, grid.gen_pmax_mw, rtol=0, atol=1e-3)
    assert result.shed.sum() == pytest.approx(excess, abs=1e-3)
    assert np.all((result.shed >= 0) & (result.shed <= demand + 1e-3))
    np.testing.assert_allclose(result.lmp, VOLL, rtol=1e-6)
    pmax = grid.gen_pmax_mw
    generation = np.sum(grid.cost_a * pmax**2 + grid.cost_b * pmax + grid.cost_c)
    assert result.cost == pytest.approx(generation + VOLL * excess, rel=1e-6)


def test_congestion_sheds_only_where_no_dispatch_reaches():
    """case30 with half its ratings at 1.2 x load: generation would suffice but the lines do
    not; the clearing sheds at the buses the network cannot serve, and a bus that sheds part of
    its demand has LMP = VOLL."""
    base = load_case("case30")
    grid = with_ratings(base, 0.5 * base.line_rating_mw)
    demand = 1.2 * grid.demand_mw
    assert demand.sum() < grid.gen_pmax_mw.sum()
    with pytest.raises(CaseError):
        solve_dcopf(grid, load_scale=1.2)
    result = solve(clearing_problem(grid), demand, x64=True)
    assert result.converged
    partial = (result.shed > 1e-6) & (result.shed < demand - 1e-6)
    assert partial.any()
    np.testing.assert_allclose(result.lmp[partial], VOLL, rtol=1e-9)
    assert np.all(result.lmp <= VOLL + 1e-6)
    assert result.dispatch.sum() == pytest.approx(demand.sum() - result.shed.sum(), abs=1e-8)


@pytest.mark.slow  # float64 clearings of case118 (test_power_opf checks LMP differences fast)
def test_lmp_is_the_derivative_of_the_cost(grids):
    """Central differences of the clearing's cost in one bus's demand (h = 0.01 MW, float64:
    the float32 cost, about 1e5 $/h, resolves only ~0.01 $/h) equal the LMP to 1e-6 $/MWh at
    the cheapest and the dearest bus and at one between, on the congested grid."""
    grid = grids["congested118"]
    problem = clearing_problem(grid)
    demand = 1.2 * grid.demand_mw
    lmp = solve(problem, demand, x64=True).lmp
    assert lmp.max() - lmp.min() > 4.0  # congestion separates the prices
    middle = int(np.argsort(lmp)[grid.n_buses // 2])
    h = 0.01
    for bus in (int(np.argmin(lmp)), int(np.argmax(lmp)), middle):
        step = np.zeros(grid.n_buses)
        step[bus] = h
        up = solve(problem, demand + step, x64=True)
        down = solve(problem, demand - step, x64=True)
        assert up.converged and down.converged
        assert (up.cost - down.cost) / (2 * h) == pytest.approx(lmp[bus], abs=1e-6)


def test_jit_vmap_over_a_batch_equals_one_by_one(grids):
    grid = grids["congested118"]
    problem = clearing_problem(grid)
    rng = np.random.default_rng(3)
    demands = np.stack([scale * grid.demand_mw * rng.uniform(0.9, 1.1, grid.n_buses)
                        for scale in (0.9, 1.0, 1.1, 1.2)])
    batch = jax.device_get(jax.jit(jax.vmap(clear, in_axes=(None, 0)))(problem, demands))
    assert batch.lmp.shape == (4, grid.n_buses)
    assert batch.dispatch.shape == (4, grid.n_gens)
    assert batch.flows.shape == (4, grid.n_lines)
    assert np.all(batch.converged)
    for k, demand in enumerate(demands):
        one = solve(problem, demand)
        np.testing.assert_allclose(batch.cost[k], one.cost, rtol=1e-6)
        np.testing.assert_allclose(batch.dispatch[k], one.dispatch, rtol=0, atol=1e-3)
        np.testing.assert_allclose(batch.lmp[k], one.lmp, rtol=0, atol=1e-4)
        np.testing.assert_allclose(batch.shed[k], one.shed, rtol=0, atol=1e-4)


def test_voll_must_be_positive(grids):
    with pytest.raises(CaseError, match="voll"):
        clearing_problem(grids["case30"], voll=0.0)
