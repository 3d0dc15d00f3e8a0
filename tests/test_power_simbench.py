"""SimBench grids as DC power-flow Grids: sizes after cleaning, ratings, yearly profiles, DC-OPF
feasibility, the conversion checked against pandapower's own DC power flow, errors, day splits.

The SimBench tests need the optional `simbench` package (`pip install -e ".[power]"`) and are
skipped without it. Loading a grid takes about 5 s (HV) and 8 s (EHV) on a free core; each is
loaded once per module. One EHV DC-OPF takes several seconds (a dense QP with 345 units and
1,058 branches).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dgpg.domains.power.config import PowerConfig, day_starts, hourly_net_load, simbench_case
from dgpg.domains.power.dispatch import InfeasibleDispatch, solve_dcopf
from dgpg.domains.power.grid import CaseError, ptdf
from dgpg.domains.power.simbench import (
    FUEL_COST_PER_MWH,
    INSTALL_HINT,
    QUADRATIC_SHARE,
    case_from_net,
    load_simbench,
    split_days,
)

HV = "1-HV-mixed--0-sw"
EHV = "1-EHV-mixed--0-sw"
YEAR_PERIODS = 366 * 96  # SimBench's profile year is 2016, a leap year, at 15 minutes


def _needs_simbench():
    return pytest.importorskip("simbench", reason="needs the optional simbench package")


@pytest.fixture(scope="module")
def hv():
    _needs_simbench()
    return simbench_case(HV)  # the environment's cached copy, loaded once per process


@pytest.fixture(scope="module")
def ehv():
    _needs_simbench()
    return load_simbench(EHV)


def _net_load_total(case) -> np.ndarray:
    return case.load_mw.sum(axis=1, dtype=np.float64) - case.renewable_mw.sum(axis=1,
                                                                              dtype=np.float64)


# --------------------------------------------------------------------------------------------
# sizes, ratings, costs, profiles


def test_hv_grid_sizes_after_cleaning(hv):
    grid = hv.grid
    # 306 pandapower buses fuse through closed bus-bus switches into 64, as in SimBench's own
    # switch-free variant 1-HV-mixed--0-no_sw; 95 lines + 6 transformers; 3 infeeds from EHV
    assert (grid.n_buses, grid.n_lines, grid.n_gens) == (64, 101, 3)
    assert sum(name.startswith("line") for name in hv.branch_elements) == 95
    assert hv.fuel == ("import",) * 3
    assert all(name.startswith("ext_grid") for name in hv.gen_elements)
    # infeeds without SimBench limits may import or export what their transformers carry
    assert np.all(grid.gen_pmin_mw < 0) and np.allclose(grid.gen_pmin_mw, -grid.gen_pmax_mw)
    assert np.isclose(grid.load_mw.sum(), 521.61)


@pytest.mark.slow  # the EHV grid: seconds to load, tens of seconds per DC-OPF
def test_ehv_grid_sizes_after_cleaning(ehv):
    grid = ehv.grid
    # 3,085 buses fuse into 571 (as in 1-EHV-mixed--0-no_sw); 849 lines + 209 transformers;
    # 338 power plants + 7 ext_grids (nuclear plants)
    assert (grid.n_buses, grid.n_lines, grid.n_gens) == (571, 1058, 345)
    counts = {fuel: ehv.fuel.count(fuel) for fuel in set(ehv.fuel)}
    assert counts == {"gas": 138, "hard coal": 65, "lignite": 45, "oil": 39, "waste": 24,
                      "import": 27, "nuclear": 7}
    assert np.all(grid.gen_pmin_mw == 0)
    assert ehv.gen_min_stable_mw.max() > 0 and np.all(ehv.gen_min_stable_mw <= grid.gen_pmax_mw)


@pytest.mark.parametrize("name", ["hv", pytest.param("ehv", marks=pytest.mark.slow)])
def test_ratings_finite_and_positive(name, request):
    case = request.getfixturevalue(name)
    rating = case.grid.line_rating_mw
    assert np.all(np.isfinite(rating)) and np.all(rating > 0)
    assert np.all(case.grid.line_x > 0) and np.all(np.isfinite(case.grid.line_tap))


def test_line_rating_is_thermal_current_at_nominal_voltage(hv):
    # HV lines: Al/St 265/35 at 110 kV, 0.68 kA -> 0.68 * 110 * sqrt(3) = 129.6 MW
    ratings = hv.grid.line_rating_mw[[n.startswith("line") for n in hv.branch_elements]]
    assert np.any(np.isclose(ratings, 0.68 * 110 * np.sqrt(3)))
    trafo = hv.grid.line_rating_mw[[n.startswith("trafo") for n in hv.branch_elements]]
    assert set(np.round(trafo)) <= {300.0, 350.0}


@pytest.mark.parametrize("name", ["hv", pytest.param("ehv", marks=pytest.mark.slow)])
def test_costs_follow_the_fuel_table(name, request):
    case = request.getfixturevalue(name)
    grid = case.grid
    expected = np.array([FUEL_COST_PER_MWH[fuel] for fuel in case.fuel])
    np.testing.assert_allclose(grid.cost_b, expected)
    span = np.maximum(grid.gen_pmax_mw - grid.gen_pmin_mw, 1.0)
    np.testing.assert_allclose(grid.cost_a, QUADRATIC_SHARE * expected / span)
    assert np.all(grid.cost_a > 0) and np.all(grid.cost_c == 0)


@pytest.mark.parametrize("name", ["hv", pytest.param("ehv", marks=pytest.mark.slow)])
def test_profiles_cover_the_year(name, request):
    case = request.getfixturevalue(name)
    n_buses = case.grid.n_buses
    assert case.load_mw.shape == case.renewable_mw.shape == (YEAR_PERIODS, n_buses)
    assert case.load_mw.dtype == case.renewable_mw.dtype == np.float32
    assert case.periods_per_day == 96 and case.n_days == 366
    assert case.time[0] == np.datetime64("2016-01-01T00:00")
    assert case.time[-1] == np.datetime64("2016-12-31T23:45")
    assert np.all(np.isfinite(case.load_mw)) and np.all(np.isfinite(case.renewable_mw))
    # SimBench's wind profiles dip to -1e-5 of rated power (standby draw)
    assert case.renewable_mw.max() > 10
    assert case.renewable_mw.min() > -1e-4 * case.renewable_mw.max()
    assert not case.load_mw.flags.writeable
    # the profiles vary over the year and the period grid is that of grid_at
    assert case.load_mw.sum(axis=1).std() > 0
    np.testing.assert_allclose(case.grid_at(5).load_mw, case.net_load_mw(5))


def test_hv_renewables_exceed_load_most_of_the_year(hv):
    net = _net_load_total(hv)
    assert net.min() < -1000 and net.max() > 100  # MW: the HV grid exports most of the time


# --------------------------------------------------------------------------------------------
# DC-OPF at profile periods


def test_hv_dcopf_is_feasible_at_peak_and_off_peak(hv):
    net = _net_load_total(hv)
    for period in (int(np.argmax(net)), int(np.argmin(net))):
        result = solve_dcopf(hv.grid_at(period))
        assert np.isclose(result.dispatch.sum(), net[period], atol=1e-3)
        assert np.all(np.abs(result.flows) <= hv.grid.line_rating_mw + 1e-3)


def _clear_float32(case, period):
    """The jitted JAX clearing of one period (float32, as in the environment), as NumPy."""
    import jax

    from dgpg.domains.power.clearing import clear, clearing_problem

    grid = case.grid_at(period)
    return grid, jax.device_get(jax.jit(clear)(clearing_problem(grid), grid.demand_mw))


def test_hv_clearing_matches_solve_dcopf(hv):
    """The JAX clearing equals the Clarabel DC-OPF at the HV grid's peak, its deepest export
    and two periods between: cost to 1e-4 relative, LMPs to 1e-3 $/MWh."""
    net = _net_load_total(hv)
    for period in (int(np.argmax(net)), int(np.argmin(net)), 7027, 21081):
        grid, result = _clear_float32(hv, period)
        reference = solve_dcopf(grid)
        assert result.converged
        assert result.shed.sum() < 1e-6
        assert result.cost == pytest.approx(reference.objective, rel=1e-4)
        np.testing.assert_allclose(result.lmp, reference.lmp, rtol=0, atol=1e-3)


@pytest.mark.slow  # the EHV grid: tens of seconds per clearing and per DC-OPF
def test_ehv_clearing_matches_solve_dcopf_and_sheds_at_the_peak(ehv):
    """Off-peak the JAX clearing equals the Clarabel DC-OPF (cost 1e-4 relative, LMPs 1e-3
    $/MWh); at the peak, where no dispatch is feasible, it sheds load behind the radial lines
    and prices it at VOLL."""
    from dgpg.domains.power.clearing import VOLL

    net = _net_load_total(ehv)
    grid, result = _clear_float32(ehv, int(np.argmin(net)))
    reference = solve_dcopf(grid)
    assert result.converged
    assert result.cost == pytest.approx(reference.objective, rel=1e-4)
    np.testing.assert_allclose(result.lmp, reference.lmp, rtol=0, atol=1e-3)

    _, peak = _clear_float32(ehv, int(np.argmax(net)))
    assert peak.converged
    assert peak.shed.sum() > 1.0
    shedding = peak.shed > 1e-3
    np.testing.assert_allclose(peak.lmp[shedding], VOLL, rtol=1e-4)


@pytest.mark.slow  # the EHV grid: seconds to load, tens of seconds per DC-OPF
def test_ehv_dcopf_is_feasible_at_off_peak(ehv):
    net = _net_load_total(ehv)
    period = int(np.argmin(net))  # 2016-04-16 03:00, 13.0 GW net of renewables
    result = solve_dcopf(ehv.grid_at(period))
    assert np.isclose(result.dispatch.sum(), net[period], rtol=1e-6)
    assert np.all(np.abs(result.flows) <= ehv.grid.line_rating_mw * (1 + 1e-6) + 1e-3)
    # a merit order: the LMPs lie within the fuel costs
    assert FUEL_COST_PER_MWH["nuclear"] <= np.median(result.lmp) <= FUEL_COST_PER_MWH["oil"] * 1.1


@pytest.mark.slow  # the EHV grid: seconds to load, tens of seconds per DC-OPF
def test_ehv_peak_is_infeasible_behind_radial_lines(ehv):
    """SimBench's EHV grid feeds two load pockets over a single line each (no generation behind
    them): 'line 169' (248 MW) and 'line 665' (495 MW). In 5.7 % of the year, the peak
    included, their net load exceeds that rating, and no dispatch is feasible. This is a
    property of the data, kept as it is."""
    grid = ehv.grid
    period = int(np.argmax(_net_load_total(ehv)))
    line = ehv.branch_elements.index("line 665")
    ends = {int(grid.line_from[line]), int(grid.line_to[line])}
    # the pocket: buses reached from the line's far end without crossing it
    neighbours: dict[int, set[int]] = {}
    for k, (a, b) in enumerate(zip(grid.line_from.tolist(), grid.line_to.tolist(), strict=True)):
        if k != line:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    pockets = []
    for start in ends:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in neighbours.get(frontier.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        pockets.append(seen)
    pocket = np.array(sorted(min(pockets, key=len)))
    assert pocket.size == 3 and not np.isin(grid.gen_bus, pocket).any()
    assert ehv.net_load_mw(period)[pocket].sum() > grid.line_rating_mw[line]
    with pytest.raises(InfeasibleDispatch):
        solve_dcopf(ehv.grid_at(period))


# --------------------------------------------------------------------------------------------
# the conversion against pandapower's DC power flow, on a small hand-built net


def _small_net():
    pp = pytest.importorskip("pandapower")
    net = pp.create_empty_network(sn_mva=1.0)
    b = [pp.create_bus(net, vn_kv=kv) for kv in (380, 380, 380, 110, 110, 110, 20, 10, 110)]
    # b1 and b2 are one busbar (closed bus-bus switch); b5 hangs off an open bus-bus switch and
    # a line with an open line switch, so it is cut off; b8 is out of service
    pp.create_switch(net, b[1], b[2], et="b", closed=True)
    pp.create_switch(net, b[4], b[5], et="b", closed=False)
    net.bus.loc[b[8], "in_service"] = False
    pp.create_ext_grid(net, b[0])
    kw = {"r_ohm_per_km": 0.03, "c_nf_per_km": 10.0}
    pp.create_line_from_parameters(net, b[0], b[1], 50, x_ohm_per_km=0.3, max_i_ka=2.0, **kw)
    pp.create_line_from_parameters(net, b[0], b[2], 80, x_ohm_per_km=0.25, max_i_ka=1.0,
                                   parallel=2, **kw)
    pp.create_line_from_parameters(net, b[3], b[4], 20, x_ohm_per_km=0.4, max_i_ka=0.6, **kw)
    cut = pp.create_line_from_parameters(net, b[4], b[5], 5, x_ohm_per_km=0.4, max_i_ka=0.6,
                                         **kw)
    pp.create_switch(net, b[5], cut, et="l", closed=False)
    pp.create_line_from_parameters(net, b[3], b[8], 5, x_ohm_per_km=0.4, max_i_ka=0.6, **kw)
    off = pp.create_line_from_parameters(net, b[3], b[4], 9, x_ohm_per_km=0.4, max_i_ka=0.6,
                                         **kw)
    net.line.loc[off, "in_service"] = False
    common = {"vkr_percent": 0.3, "pfe_kw": 0.0, "i0_percent": 0.0, "shift_degree": 0.0}
    pp.create_transformer_from_parameters(net, b[1], b[3], 300, 380, 110, vk_percent=12,
                                          tap_side="hv", tap_neutral=0, tap_pos=2,
                                          tap_changer_type="Ratio",
                                          tap_step_percent=1.25, tap_min=-9, tap_max=9,
                                          **common)
    pp.create_transformer_from_parameters(net, b[2], b[4], 200, 400, 110, vk_percent=11,
                                          parallel=2, **common)
    pp.create_transformer3w_from_parameters(
        net, b[4], b[6], b[7], vn_hv_kv=110, vn_mv_kv=21, vn_lv_kv=10, sn_hv_mva=60,
        sn_mv_mva=40, sn_lv_mva=30, vk_hv_percent=10, vk_mv_percent=8, vk_lv_percent=12,
        vkr_hv_percent=0.3, vkr_mv_percent=0.2, vkr_lv_percent=0.3, pfe_kw=0, i0_percent=0)
    pp.create_transformer_from_parameters(net, b[3], b[7], 25, 110, 10, vk_percent=9, **common)
    pp.create_gen(net, b[4], p_mw=120.0, type="gas", max_p_mw=200.0, min_p_mw=40.0)
    pp.create_gen(net, b[3], p_mw=30.0, type="imp0", max_p_mw=90.0)
    pp.create_sgen(net, b[6], p_mw=25.0, type="PV")
    for bus, p in ((b[3], 150.0), (b[6], 20.0), (b[7], 35.0), (b[4], 60.0), (b[5], 7.0)):
        pp.create_load(net, bus, p_mw=p)
    return pp, net


def test_conversion_matches_pandapower_dc_power_flow():
    import pandas as pd

    pp, net = _small_net()
    profiles = {
        ("load", "p_mw"): pd.DataFrame([net.load.p_mw.to_numpy()] * 2, columns=net.load.index),
        ("sgen", "p_mw"): pd.DataFrame([net.sgen.p_mw.to_numpy()] * 2, columns=net.sgen.index),
    }
    case = case_from_net(net, profiles, "small")
    grid = case.grid
    # main component: b0, b1 (with b2), b3, b4, b6, b7 and the star bus (id -1)
    assert grid.n_buses == 7 and grid.bus_ids.tolist()[-1] == -1
    assert grid.n_lines == 3 + 3 + 3  # 3 lines, 3 transformers, 3 star windings
    assert case.fuel == ("gas", "import", "import")
    assert case.gen_min_stable_mw.tolist() == [40.0, 0.0, 0.0]
    assert np.isclose(case.net_load_mw(0).sum(), 150 + 20 + 35 + 60 - 25)  # b5's load dropped
    assert np.isclose(grid.line_rating_mw[case.branch_elements.index("line 1")],
                      1.0 * 2 * 380 * np.sqrt(3))
    assert np.isclose(grid.line_rating_mw[case.branch_elements.index("trafo 1")], 400.0)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.rundcpp(net)
    injection = np.zeros(grid.n_buses)
    row = {int(bus_id): k for k, bus_id in enumerate(grid.bus_ids)}
    fused = {0: 0, 1: 1, 2: 1, 3: 3, 4: 4, 6: 6, 7: 7}
    for table, result in ((net.gen, net.res_gen), (net.ext_grid, net.res_ext_grid)):
        for bus, p in zip(table.bus, result.p_mw, strict=True):
            injection[row[fused[int(bus)]]] += p
    flows = ptdf(grid) @ (injection - case.net_load_mw(0))
    expected = []
    for name in case.branch_elements:
        kind, index = name.split()[:2]
        if kind == "line":
            expected.append(net.res_line.p_from_mw[int(index)])
        elif kind == "trafo":
            expected.append(net.res_trafo.p_hv_mw[int(index)])
        else:  # star windings run winding bus -> star: the power into the winding
            winding = name.split()[2]
            expected.append(net.res_trafo3w[f"p_{winding}_mw"][int(index)])
    np.testing.assert_allclose(flows, expected, atol=1e-3)


# --------------------------------------------------------------------------------------------
# errors


def test_unknown_code_is_a_one_line_case_error():
    _needs_simbench()
    with pytest.raises(CaseError) as error:
        load_simbench("1-HV-nowhere--0-sw")
    message = str(error.value)
    assert "1-HV-nowhere--0-sw" in message and "\n" not in message


def test_missing_package_is_a_one_line_case_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "simbench", None)
    with pytest.raises(CaseError) as error:
        load_simbench(HV)
    message = str(error.value)
    assert message == INSTALL_HINT
    assert 'pip install -e ".[power]"' in message and "\n" not in message


# --------------------------------------------------------------------------------------------
# day splits


@pytest.mark.parametrize("days", [366, 365, 30, 7])
def test_split_days_is_disjoint_and_covers_the_year(days):
    split = split_days(96, days)
    parts = [split["train"], split["validation"], split["test"]]
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(days))
    assert joined.size == days  # disjoint: no day twice
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        assert np.array_equal(part, np.sort(part))
        periods = split[f"{name}_periods"]
        assert periods.size == part.size * 96
        assert np.array_equal(np.unique(periods // 96), part)
    if days == 366:
        assert [p.size for p in parts] == [276, 45, 45]
        # held-out days rotate through the weekdays
        assert np.unique(split["test"] % 7).size == 7


def test_split_days_rejects_bad_arguments():
    with pytest.raises(ValueError):
        split_days(0, 366)
    with pytest.raises(ValueError):
        split_days(96, 0)
    with pytest.raises(ValueError):
        split_days(96, 366, cycle=2)


# --------------------------------------------------------------------------------------------
# the environment on a SimBench grid


def test_environment_base_load_is_the_measured_day(hv):
    """With base_noise 0 each period's base load is the day's hourly net load (load less
    renewables, 15-minute values averaged) plus the shunts, from midnight of a day of the
    configuration's split; the episode's day differs between splits' days."""
    import jax

    from dgpg.domains.power import env

    hourly = hourly_net_load(HV)
    assert hourly.shape == (366 * 24, hv.grid.n_buses)
    np.testing.assert_allclose(hourly[5], hv.load_mw[20:24].mean(axis=0)
                               - hv.renewable_mw[20:24].mean(axis=0), rtol=1e-5, atol=1e-4)
    starts = {split: set(day_starts(HV, split).tolist()) for split in ("train", "test")}
    assert not starts["train"] & starts["test"]
    config = PowerConfig(case=HV, n_agents=10, base_noise=0.0, market="opf", split="test")
    state = env.reset(jax.random.PRNGKey(4), config)
    table = np.asarray(state.day_load)
    start = [s for s in starts["test"] if np.array_equal(hourly[s:s + 24], table)]
    assert len(start) == 1
    shunt = hv.grid.shunt_mw
    for t in range(3):
        np.testing.assert_allclose(np.asarray(state.base), hourly[start[0] + t] + shunt,
                                   rtol=1e-5, atol=1e-3)
        actions = jax.numpy.zeros((10, config.blocks_per_step), jax.numpy.int32)
        state, reward, metrics = env.step(jax.random.PRNGKey(t), state, actions, config)
        assert np.isfinite(float(reward))
    assert config.for_split("validation").split == "validation"
    assert PowerConfig(n_agents=10).for_split("test").split == "train"  # no profiles: unchanged


def test_simbench_day_is_refused_beyond_24_periods(hv):
    with pytest.raises(ValueError, match="SimBench day's 24 hourly periods"):
        PowerConfig(case=HV, n_agents=10, episode_steps=25)
