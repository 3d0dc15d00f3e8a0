"""The power domain's grid core: case loading, PTDFs, economic dispatch and DC optimal power flow,
checked against published MATPOWER results and PYPOWER's own PTDF and DC-OPF."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from pypower.ext2int import ext2int
from pypower.makePTDF import makePTDF
from pypower.ppoption import ppoption
from pypower.rundcopf import rundcopf

from dgpg.domains.power.dispatch import (
    InfeasibleDispatch,
    economic_dispatch,
    economic_dispatch_jax,
    solve_dcopf,
)
from dgpg.domains.power.grid import (
    CASE_NAMES,
    CaseError,
    Grid,
    line_flows,
    load_case,
    proportional_dispatch,
    ptdf,
    with_limits,
    with_ratings,
)

# MATPOWER's published DC-OPF objectives ($/h)
PUBLISHED_OBJECTIVE = {"case30": 565.2060, "case118": 125947.87}
CASE30_LAMBDA = 3.789196  # $/MWh, case30 without line limits
CASE30_COST_AT_1_3 = 790.98  # $/h, case30 at load_scale 1.3 (one line at its limit)
QUIET = ppoption(VERBOSE=0, OUT_ALL=0)
LAM_P = 13  # PYPOWER bus column of the active-power price, $/MWh


def pypower_case(name: str, load_scale: float = 1.0, ratings: np.ndarray | None = None) -> dict:
    import pypower.api

    ppc = getattr(pypower.api, name)()
    ppc["bus"][:, 2] *= load_scale
    if ratings is not None:
        ppc["branch"][:, 5] = ratings
    return ppc


@pytest.fixture(scope="module")
def grids() -> dict[str, Grid]:
    return {name: load_case(name) for name in ("case30", "case118", "case300")}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ---------------------------------------------------------------- loading and PTDF


def test_load_case_shapes_and_units(grids):
    grid = grids["case30"]
    assert (grid.n_buses, grid.n_lines, grid.n_gens) == (30, 41, 6)
    assert grid.base_mva == 100.0 and grid.slack == 0
    assert grid.load_mw.sum() == pytest.approx(189.2)
    assert np.all(np.isfinite(grid.line_rating_mw))  # case30 has real ratings
    np.testing.assert_allclose(grid.cost_a[:2], [0.02, 0.0175])
    np.testing.assert_allclose(grid.cost_b[:2], [2.0, 1.75])
    with pytest.raises(ValueError):
        grid.load_mw[0] = 1.0  # stored read-only

    big = grids["case300"]  # bus numbers are not 1..B: they map to indices in file order
    assert big.n_buses == 300 and big.bus_ids[big.slack] == 7049
    assert big.shunt_mw.sum() == pytest.approx(1.3)


@pytest.mark.parametrize("name", ["case30", "case118", "case300"])
def test_ptdf_matches_pypower(grids, name):
    grid = grids[name]
    internal = ext2int(pypower_case(name))
    expected = makePTDF(internal["baseMVA"], internal["bus"], internal["branch"], grid.slack)
    factors = ptdf(grid)
    assert factors.shape == (grid.n_lines, grid.n_buses)
    np.testing.assert_allclose(factors, expected, rtol=0, atol=1e-8)
    assert np.all(factors[:, grid.slack] == 0)


def test_matpower_and_json_files_load_like_the_named_case(tmp_path):
    ppc = pypower_case("case9")
    lines = ["function mpc = case9", "% a comment", "mpc.version = '2';", "mpc.baseMVA = 100;"]
    for field in ("bus", "gen", "branch", "gencost"):
        rows = [" ".join(f"{v:.10g}" for v in row) + ";" for row in ppc[field]]
        lines += [f"mpc.{field} = [", *rows, "];"]
    m_file = tmp_path / "mycase.m"
    m_file.write_text("\n".join(lines))
    json_file = tmp_path / "mycase.json"
    json_file.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in ppc.items()
                                     if k in ("baseMVA", "bus", "gen", "branch", "gencost")}))
    named = load_case("case9")
    for path in (m_file, json_file, str(m_file)):
        grid = load_case(path)
        assert grid.name == "mycase"
        for field in ("load_mw", "line_x", "line_rating_mw", "cost_a", "cost_b", "gen_pmax_mw"):
            np.testing.assert_array_equal(getattr(grid, field), getattr(named, field))
        assert solve_dcopf(grid).objective == pytest.approx(solve_dcopf(named).objective)


def test_bad_cases_raise_one_line_case_errors(tmp_path):
    with pytest.raises(CaseError, match="unknown case 'case31'") as error:
        load_case("case31")
    assert all(name in one_line(error) for name in CASE_NAMES)

    missing = tmp_path / "nowhere" / "grid.m"
    with pytest.raises(CaseError, match="no such case file") as error:
        load_case(missing)
    assert str(missing) in one_line(error)

    garbage = tmp_path / "garbage.m"
    garbage.write_text("this is not\na MATPOWER case\n")
    with pytest.raises(CaseError, match="not a MATPOWER case") as error:
        load_case(garbage)
    assert str(garbage) in one_line(error)

    broken = tmp_path / "broken.json"
    broken.write_text('{"baseMVA": 100, "bus": [[1, 3')
    with pytest.raises(CaseError, match="not valid JSON") as error:
        load_case(broken)
    assert str(broken) in one_line(error)

    ppc = pypower_case("case9")
    ppc["gencost"] = np.array([[1, 0, 0, 2, 0, 0, 100, 1000]] * 3, dtype=float)
    piecewise = tmp_path / "piecewise.json"
    piecewise.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in ppc.items()
                                     if k in ("baseMVA", "bus", "gen", "branch", "gencost")}))
    with pytest.raises(CaseError, match="piecewise-linear cost") as error:
        load_case(piecewise)
    assert str(piecewise) in one_line(error)


# ---------------------------------------------------------------- DC optimal power flow


@pytest.mark.parametrize("name", ["case30", "case118"])
def test_dcopf_objective_matches_published_and_pypower(grids, name):
    result = solve_dcopf(grids[name])
    assert result.objective == pytest.approx(PUBLISHED_OBJECTIVE[name], rel=1e-5)
    reference = rundcopf(pypower_case(name), QUIET)
    assert reference["success"]
    assert result.objective == pytest.approx(reference["f"], rel=1e-7)
    np.testing.assert_allclose(result.lmp, reference["bus"][:, LAM_P], atol=1e-4)
    assert result.solve_seconds > 0


def test_case30_uncongested_price_is_the_economic_dispatch_lambda(grids):
    grid = grids["case30"]
    unlimited = with_ratings(grid, np.inf)
    result = solve_dcopf(unlimited)
    assert result.binding.size == 0
    np.testing.assert_allclose(result.lmp, CASE30_LAMBDA, atol=5e-7)  # one price at every bus
    dispatch_mw, lam = economic_dispatch(grid, grid.demand_mw.sum())
    assert lam == pytest.approx(CASE30_LAMBDA, abs=5e-7)
    np.testing.assert_allclose(result.lmp, lam, rtol=1e-7)
    np.testing.assert_allclose(result.dispatch, dispatch_mw, atol=1e-5)
    # case30's own ratings do not bind at base load, so the limited solution is the same
    assert solve_dcopf(grid).objective == pytest.approx(result.objective, rel=1e-9)


def test_case30_at_load_scale_1_3_has_one_binding_line(grids):
    result = solve_dcopf(grids["case30"], load_scale=1.3)
    assert result.binding.size == 1
    assert result.objective == pytest.approx(CASE30_COST_AT_1_3, rel=1e-4)
    reference = rundcopf(pypower_case("case30", 1.3), QUIET)
    assert result.objective == pytest.approx(reference["f"], rel=1e-7)
    ref_flows = reference["branch"][:, 13]
    assert np.flatnonzero(np.isclose(np.abs(ref_flows), reference["branch"][:, 5])).tolist() == (
        result.binding.tolist()
    )
    np.testing.assert_allclose(result.lmp, reference["bus"][:, LAM_P], atol=1e-4)
    assert np.ptp(result.lmp) > 0.3  # congestion separates the prices


def check_dcopf_solution(grid: Grid, result) -> None:
    """Power balance, consistent flows and line limits of a DC-OPF result."""
    total = result.load_mw.sum()
    assert result.dispatch.sum() == pytest.approx(total, rel=1e-8)
    assert np.all(result.dispatch >= grid.gen_pmin_mw)
    assert np.all(result.dispatch <= grid.gen_pmax_mw)
    np.testing.assert_allclose(result.flows, line_flows(grid, result.dispatch, result.load_mw),
                               atol=1e-8 * total)
    assert np.all(np.abs(result.flows) <= grid.line_rating_mw * (1 + 1e-7) + 1e-6)
    slack = grid.line_rating_mw - np.abs(result.flows)
    assert np.all(slack[result.binding] < 1e-3)
    assert np.all(np.delete(slack, result.binding) > 1e-3)


def test_dcopf_balance_and_limits(grids):
    check_dcopf_solution(grids["case30"], solve_dcopf(grids["case30"], load_scale=1.3))
    check_dcopf_solution(grids["case30"], solve_dcopf("case30", load_scale=0.6))
    limited = with_limits(grids["case118"])
    check_dcopf_solution(limited, solve_dcopf(limited, load_scale=1.2))


def test_case300_matches_pypower(grids):
    result = solve_dcopf(grids["case300"])
    reference = rundcopf(pypower_case("case300"), QUIET)
    assert result.objective == pytest.approx(reference["f"], rel=1e-7)
    check_dcopf_solution(grids["case300"], result)


def test_infeasible_and_invalid_load_scales(grids):
    grid = grids["case30"]
    with pytest.raises(InfeasibleDispatch, match="outside the generation range") as error:
        solve_dcopf(grid, load_scale=100)
    assert "case30" in one_line(error)
    assert issubclass(InfeasibleDispatch, CaseError) and issubclass(CaseError, ValueError)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "lots"):
        with pytest.raises(CaseError, match="load_scale must be") as error:
            solve_dcopf(grid, load_scale=bad)
        one_line(error)
    with pytest.raises(InfeasibleDispatch, match="within the line limits") as error:
        solve_dcopf(with_ratings(grid, 1.0), load_scale=1.0)  # 1 MW lines cannot carry the load
    one_line(error)
    with pytest.raises(InfeasibleDispatch, match="outside the generation range"):
        economic_dispatch(grid, 1e6)
    with pytest.raises(CaseError, match="unknown case"):
        solve_dcopf("case31")


# ---------------------------------------------------------------- synthetic line limits


def test_with_limits_congests_case118(grids):
    grid = grids["case118"]
    assert solve_dcopf(grid).binding.size == 0  # 9900 MW placeholders never bind
    limited = with_limits(grid)
    assert np.all(np.isfinite(limited.line_rating_mw)) and np.all(limited.line_rating_mw > 0)
    base = solve_dcopf(limited)
    assert base.binding.size >= 1  # congested at base load ...
    assert np.ptp(base.lmp) > 1.0  # ... with separated prices
    assert base.objective > solve_dcopf(grid).objective
    raised = solve_dcopf(limited, load_scale=1.2)
    assert raised.binding.size >= 1
    reference = rundcopf(pypower_case("case118", 1.2, limited.line_rating_mw), QUIET)
    assert raised.objective == pytest.approx(reference["f"], rel=1e-7)
    np.testing.assert_allclose(raised.lmp, reference["bus"][:, LAM_P], atol=1e-3)
    # the rule's guarantee: the proportional dispatch fits the ratings up to load_scale headroom
    for scale in (1.0, 1.3, 1.45):
        demand = scale * grid.load_mw + grid.shunt_mw
        flows = line_flows(grid, proportional_dispatch(grid, demand.sum()), demand)
        assert np.all(np.abs(flows) <= limited.line_rating_mw)


def test_with_limits_economic_reference(grids):
    grid = grids["case118"]
    economic, _ = economic_dispatch(grid, float(grid.demand_mw.sum()))
    limited = with_limits(grid, headroom=1.1, dispatch_mw=economic)
    assert solve_dcopf(limited).binding.size == 0  # the economic dispatch itself still fits
    assert solve_dcopf(limited, load_scale=1.1).binding.size >= 1
    with pytest.raises(ValueError, match="one value per generator"):
        with_limits(grid, dispatch_mw=economic[:-1])


# ---------------------------------------------------------------- economic dispatch


def generator_arrays(grid: Grid) -> tuple[np.ndarray, ...]:
    return grid.cost_a, grid.cost_b, grid.gen_pmin_mw, grid.gen_pmax_mw


@pytest.mark.parametrize("name", ["case30", "case118"])
def test_economic_dispatch_numpy_and_jax_agree(grids, name):
    grid = grids[name]
    arrays = generator_arrays(grid)
    jitted = jax.jit(economic_dispatch_jax, static_argnames="iterations")
    for scale in (0.4, 1.0, 1.3):
        load = scale * grid.demand_mw.sum()
        dispatch_mw, lam = economic_dispatch(grid, load)
        assert dispatch_mw.sum() == pytest.approx(load, rel=1e-12)
        assert np.all(dispatch_mw >= grid.gen_pmin_mw) and np.all(dispatch_mw <= grid.gen_pmax_mw)
        # equal incremental cost for every unit strictly inside its range
        inside = (dispatch_mw > grid.gen_pmin_mw + 1e-6) & (dispatch_mw < grid.gen_pmax_mw - 1e-6)
        np.testing.assert_allclose(grid.cost_b[inside] + 2 * grid.cost_a[inside]
                                   * dispatch_mw[inside], lam, rtol=1e-9)
        jit_p, jit_lam = jitted(*arrays, load)
        if scale == 1.0:
            eager_p, eager_lam = economic_dispatch_jax(*arrays, load)
            np.testing.assert_allclose(np.asarray(jit_p), np.asarray(eager_p), rtol=1e-6,
                                       atol=1e-6)
            assert float(jit_lam) == pytest.approx(float(eager_lam), rel=1e-6)
        assert float(jit_lam) == pytest.approx(lam, rel=1e-6)
        np.testing.assert_allclose(np.asarray(jit_p), dispatch_mw, rtol=1e-6,
                                   atol=1e-6 * dispatch_mw.max())


def test_economic_dispatch_with_linear_costs():
    """Units with a = 0 follow merit order; the marginal one is part loaded."""
    grid = Grid(
        name="linear", base_mva=100.0, slack=0, bus_ids=[1, 2], load_mw=[0.0, 150.0],
        shunt_mw=[0.0, 0.0], line_from=[0], line_to=[1], line_x=[0.1], line_tap=[1.0],
        line_rating_mw=[np.inf], gen_bus=[0, 0, 0], gen_pmin_mw=[0.0, 0.0, 0.0],
        gen_pmax_mw=[100.0, 100.0, 100.0], cost_a=[0.0, 0.0, 0.01], cost_b=[10.0, 20.0, 5.0],
        cost_c=[0.0, 0.0, 0.0],
    )
    dispatch_mw, lam = economic_dispatch(grid, 150.0)
    np.testing.assert_allclose(dispatch_mw, [50.0, 0.0, 100.0], atol=1e-9)
    assert lam == pytest.approx(10.0)
    jax_p, jax_lam = jax.jit(economic_dispatch_jax)(*generator_arrays(grid), 150.0)
    np.testing.assert_allclose(np.asarray(jax_p), [50.0, 0.0, 100.0], atol=1e-4)
    assert float(jax_lam) == pytest.approx(10.0, rel=1e-6)
    opf = solve_dcopf(grid)
    np.testing.assert_allclose(opf.dispatch, dispatch_mw, atol=1e-5)
    np.testing.assert_allclose(opf.lmp, 10.0, atol=1e-5)
