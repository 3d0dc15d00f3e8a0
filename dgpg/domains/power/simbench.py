"""SimBench benchmark grids and their yearly profiles as DC power-flow `Grid`s.

SimBench (the `simbench` package on pandapower, BSD licence, data bundled; install it with
`pip install -e ".[power]"`) publishes German benchmark grids from extra-high to low voltage,
each with a year of 15-minute load, renewable and storage profiles (2016: 366 days x 96
periods = 35,136 rows). `load_simbench(code)` turns one of them into a `Grid` plus per-bus
profiles, and `split_days` splits the year's days into training / validation / test sets.

Conversion of the pandapower net (every number in MW, reactances in p.u. on `BASE_MVA`):

- Topology. Buses joined by a closed bus-bus switch are fused into one bus (SimBench gives
  every switch z_ohm = 0); a fused bus keeps as its id the pandapower index of the group's
  first bus in the bus table. A
  line, transformer or three-winding transformer with an open switch at any of its ends carries
  no flow in a DC model and is dropped, as are out-of-service buses and elements and branches
  whose two ends fuse into one bus. Of what remains, the largest connected component (most
  buses) is kept, and everything outside it (loads, generators, profiles) is dropped.
- Lines: x = x_ohm_per_km * length_km / parallel / (vn_kv^2 / BASE_MVA) with vn_kv the
  from-bus nominal voltage; tap 1. Rating = max_i_ka * df * parallel * vn_kv * sqrt(3) MW
  (thermal current at nominal voltage and unity power factor; SimBench has df = 1).
- Transformers, as pandapower's DC power flow models them: x = sqrt(vk^2 - vkr^2) / 100 *
  (BASE_MVA / sn_mva) * (vn_lv_kv / vn_lv_bus)^2 / parallel, and the off-nominal ratio
  tap = (vn_hv_kv / vn_lv_kv) / (vn_hv_bus / vn_lv_bus), the rated voltage of the tapped side
  scaled by 1 + (tap_pos - tap_neutral) * tap_step_percent / 100 for tap changers of type
  Ratio or Symmetrical (pandapower 3 ignores other types; SimBench's have none, at tap_pos 0).
  Phase shifts (the vector group's shift_degree, tap_step_degree) are ignored, as pandapower's
  DC flow ignores them by default. Rating = sn_mva * parallel MW.
- Three-winding transformers (none in SimBench's data, handled for pandapower nets in
  general), as pandapower models them: a star equivalent around a new bus at the hv rated
  voltage. The pairwise short-circuit impedances (vk, vkr), each given on the smaller rating
  of its two windings, are brought to BASE_MVA and split into three windings (z_hv =
  (z_hv,mv + z_hv,lv - z_mv,lv) / 2 and so on), x = sqrt(z^2 - r^2) with z's sign; off-nominal
  rated voltages enter as for two-winding transformers; tap changers are ignored. Each winding
  is rated at its own sn_mva.
- HVDC lines (`dcline`, in some scenario 1 and 2 grids) are fixed transfers at their p_mw
  set point (SimBench gives 0 MW): a load at the from bus, an injection net of losses at the
  to bus, both in the grid's constant `shunt_mw`, with the shunts' p_mw (at 1 p.u. voltage).
  Storage units follow their profiles as loads (pandapower: p_mw > 0 charges).

Generation. Dispatchable units are every pandapower `gen` (SimBench's power plants), every
`ext_grid` and any `sgen` whose type names a fuel of `FUEL_COST_PER_MWH`; their fuel comes from
the element's type (`imp0`, `imp1` and an `ext_grid` without a type are `"import"`, an
unrecognised type is `"other"`). Their range is 0..max_p_mw: SimBench's min_p_mw is a minimum
stable output of a committed unit, not a must-run level (SimBench's own EHV dispatch profiles
have units at 0 MW in 71 % of unit-periods and between 0 and min_p_mw in 2 %), and the DC-OPF
has no commitment decisions, so it may turn any unit off; min_p_mw is kept as
`SimbenchCase.gen_min_stable_mw`. An `ext_grid` with limits (the EHV grid's nuclear plants)
gets min(min_p_mw, 0)..max_p_mw; one without limits (the infeed of a sub-transmission or
distribution grid from the level above) gets -C/k..C/k with C the summed rating of the
branches at its bus and k the number of infeeds there, so it can import or export what the
network around it carries, and no more: where renewables exceed load by more than that, no
dispatch is feasible (nothing is curtailed). The slack bus is that of the largest infeed.
Costs follow `FUEL_COST_PER_MWH` with a small quadratic term (`QUADRATIC_SHARE`). Every other
`sgen` (wind, PV, hydro, biomass, SimBench's aggregated distribution-level generation) is
non-dispatchable: its profile enters as renewable output, i.e. negative load.

Importing this module imports neither simbench nor pandapower (they are imported by
`load_simbench`), nor JAX.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dgpg.domains.power.grid import CaseError, Grid

BASE_MVA = 100.0

FUEL_COST_PER_MWH: dict[str, float] = {
    "nuclear": 10.0,
    "waste": 15.0,
    "lignite": 25.0,
    "hard coal": 35.0,
    "gas": 50.0,
    "import": 60.0,
    "other": 60.0,
    "oil": 90.0,
}
"""Short-run marginal generation cost per fuel type, $/MWh (fuel plus variable operation and
maintenance, no carbon price).

SimBench gives no cost data. These are indicative round values, not taken from a published
table: they follow the merit order of the German fleet that SimBench models (nuclear < waste <
lignite < hard coal < gas < oil; waste incineration, a must-run plant paid by gate fees, just
above nuclear), at the size fuel prices without carbon gave in the late 2010s. Imports, and the
infeed of grids below extra-high voltage from the level above, are priced at a mid-merit level
above gas; `"other"` (an unrecognised type) is priced like imports. A study whose conclusions
depend on the costs should set its own in this table.
"""

QUADRATIC_SHARE = 0.01
"""Quadratic cost term: cost_a = QUADRATIC_SHARE * cost_b / max(Pmax - Pmin, 1 MW), so a
unit's marginal cost rises by 2 * QUADRATIC_SHARE (2 %) of cost_b across its range. It makes
the DC-OPF strictly convex, hence its optimum unique, where many units share a fuel cost."""

INSTALL_HINT = 'SimBench grids need the simbench package: pip install -e ".[power]"'


@dataclass(frozen=True, eq=False)
class SimbenchCase:
    """A SimBench grid with its yearly profiles (T periods, B buses, L branches, G units).

    - code: the SimBench code.
    - grid: the DC `Grid`. Its load_mw (B,) MW is SimBench's static load p_mw per bus (no
      renewables; `grid_at(t)` gives the grid at a profile period), its shunt_mw (B,) MW the
      shunts and fixed HVDC transfers. Bus ids are pandapower bus indices (one per fused
      group); star buses of three-winding transformers have ids -1, -2, ...
    - load_mw: inflexible load (T, B) MW, float32: load profiles times rated p_mw, plus
      storage profiles (charging > 0). The constant shunts and HVDC transfers stay in
      grid.shunt_mw, which `grid_at` keeps.
    - renewable_mw: non-dispatchable generation (T, B) MW, float32: renewable profiles times
      rated p_mw, as SimBench gives them (its wind profiles dip to -1e-5 of rated power, a
      turbine's standby draw, in under 0.3 % of periods).
    - time: (T,) datetime64[m], the start of each period; periods_per_day: 96 at 15 minutes.
    - fuel: (G,) fuel type per generator, keys of FUEL_COST_PER_MWH.
    - branch_elements: (L,) the pandapower element of each branch ("line 12", "trafo 3",
      "trafo3w 0 hv"); gen_elements: (G,) that of each generator ("gen 5", "sgen 7",
      "ext_grid 0").
    - gen_min_stable_mw: (G,) MW, SimBench's min_p_mw (0 where absent), the lowest output of
      a committed unit; grid.gen_pmin_mw is 0 for these units (see the module docstring).
    """

    code: str
    grid: Grid
    load_mw: np.ndarray
    renewable_mw: np.ndarray
    time: np.ndarray
    periods_per_day: int
    fuel: tuple[str, ...]
    branch_elements: tuple[str, ...]
    gen_elements: tuple[str, ...]
    gen_min_stable_mw: np.ndarray

    def __post_init__(self) -> None:
        for field in ("load_mw", "renewable_mw", "time", "gen_min_stable_mw"):
            getattr(self, field).setflags(write=False)

    @property
    def n_periods(self) -> int:
        """Number of profile periods T."""
        return int(self.load_mw.shape[0])

    @property
    def n_days(self) -> int:
        """Number of whole days in the profiles."""
        return self.n_periods // self.periods_per_day

    def net_load_mw(self, period: int) -> np.ndarray:
        """Bus demand net of renewables at one period, (B,) MW float64 (negative where
        renewables exceed load): load_mw[period] - renewable_mw[period], without the constant
        grid.shunt_mw."""
        return self.load_mw[period].astype(np.float64) - self.renewable_mw[period]

    def grid_at(self, period: int) -> Grid:
        """The grid with load_mw replaced by the net load (B,) MW of one period (0..T-1), ready
        for `dispatch.solve_dcopf` (whose demand adds the grid's constant shunt_mw)."""
        if not 0 <= int(period) < self.n_periods:
            raise CaseError(f"{self.code}: period {period} is outside 0..{self.n_periods - 1}")
        return dataclasses.replace(self.grid, name=f"{self.grid.name}@{int(period)}",
                                   load_mw=self.net_load_mw(int(period)))

    def __repr__(self) -> str:
        return (f"SimbenchCase(code={self.code!r}, grid={self.grid!r}, n_periods="
                f"{self.n_periods}, periods_per_day={self.periods_per_day})")


def simbench_codes() -> tuple[str, ...]:
    """Every code the installed simbench package knows. Raises CaseError without it."""
    return tuple(_simbench().collect_all_simbench_codes())


def _simbench():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module("simbench")
    except ImportError:
        raise CaseError(INSTALL_HINT) from None


def load_simbench(code: str) -> SimbenchCase:
    """Load a SimBench grid and its profiles by code, e.g. "1-HV-mixed--0-sw" or
    "1-EHV-mixed--0-sw" (see `simbench_codes()`). Raises CaseError, with a one-line message,
    when simbench is not installed, for an unknown code, or for data the DC model cannot use.
    """
    sb = _simbench()
    code = str(code)
    if code not in set(sb.collect_all_simbench_codes()):
        raise CaseError(f"unknown SimBench code {code!r}; simbench_codes() lists the known codes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = sb.get_simbench_net(code)
            profiles = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
        except Exception as error:  # the package's own failures, reported in one line
            message = " ".join(str(error).split())[:200]
            raise CaseError(f"{code}: simbench could not build the grid ({message})") from None
    return case_from_net(net, profiles, code)


# ---------------------------------------------------------------------------------------------
# conversion


def _column(table, name: str, default: float) -> np.ndarray:
    """A numeric column as float64 with NaN (and a missing column) replaced by default."""
    if name not in table.columns:
        return np.full(len(table), float(default))
    values = np.array(table[name].to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    values[np.isnan(values)] = default
    return values


def _in_service(table) -> np.ndarray:
    if "in_service" not in table.columns:
        return np.ones(len(table), dtype=bool)
    return table["in_service"].fillna(False).to_numpy(dtype=bool)


def _types_of(table, column: str) -> list[str]:
    if column not in table.columns:
        return [""] * len(table)
    return ["" if not isinstance(v, str) else v.strip().lower() for v in table[column]]


def _types(table) -> list[str]:
    return _types_of(table, "type")


def _fuel(kind: str) -> str:
    """Fuel key of FUEL_COST_PER_MWH for a lower-case element type."""
    if kind in FUEL_COST_PER_MWH:
        return kind
    if kind in ("", "externalnet") or kind.startswith("imp"):
        return "import"
    return "other"


class _Buses:
    """Fused-bus bookkeeping: pandapower bus index -> root bus index (or -1 if dropped)."""

    def __init__(self, net) -> None:
        index = net.bus.index.to_numpy(dtype=np.int64)
        self.index = index
        self.position = {int(b): k for k, b in enumerate(index)}
        self.vn_kv = _column(net.bus, "vn_kv", np.nan)
        self.alive = _in_service(net.bus)
        parent = np.arange(index.size)
        switch = net.switch
        if len(switch):
            closed = switch["closed"].fillna(False).to_numpy(dtype=bool)
            bus_bus = (switch["et"].to_numpy() == "b") & closed
            ends = zip(switch["bus"].to_numpy()[bus_bus], switch["element"].to_numpy()[bus_bus],
                       strict=True)
            for a, b in ends:
                ra = self._find(parent, self.position[int(a)])
                rb = self._find(parent, self.position[int(b)])
                if ra != rb and self.alive[ra] and self.alive[rb]:
                    parent[max(ra, rb)] = min(ra, rb)
        self.root = np.array([self._find(parent, k) for k in range(index.size)])

    @staticmethod
    def _find(parent: np.ndarray, k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return int(k)

    def roots(self, buses) -> np.ndarray:
        """Root positions (into self.index) of pandapower bus indices; -1 where out of service."""
        positions = np.array([self.position[int(b)] for b in buses], dtype=np.int64)
        roots = self.root[positions] if positions.size else positions
        return np.where(self.alive[positions], roots, -1) if positions.size else positions


def _open_at_an_end(net, element_type: str) -> set[int]:
    switch = net.switch
    if not len(switch):
        return set()
    closed = switch["closed"].fillna(False).to_numpy(dtype=bool)
    chosen = (switch["et"].to_numpy() == element_type) & ~closed
    return {int(e) for e in switch["element"].to_numpy()[chosen]}


def _tapped(vn_kv: np.ndarray, side: str, table, tapped_side: np.ndarray) -> np.ndarray:
    """Rated voltage (kV) of one side with the ratio tap changer applied where it sits on that
    side. As in pandapower 3, only tap changers of type "Ratio" or "Symmetrical" act (without
    a tap_changer_type column, any tap with a step does); the step's angle is ignored."""
    step = _column(table, "tap_step_percent", 0.0)
    position = _column(table, "tap_pos", 0.0) - _column(table, "tap_neutral", 0.0)
    if "tap_changer_type" in table.columns:
        acting = np.isin(np.array(_types_of(table, "tap_changer_type")), ("ratio", "symmetrical"))
    else:
        acting = np.ones(len(table), dtype=bool)
    return vn_kv * np.where((tapped_side == side) & acting, 1.0 + position * step / 100.0, 1.0)


def _branch_tables(net, buses: _Buses, code: str):
    """Branches as (from root, to root, x p.u., tap, rating MW, element name) arrays, and the
    number of extra star buses."""
    rows = []
    # lines
    line = net.line
    keep = _in_service(line) & ~line.index.isin(list(_open_at_an_end(net, "l")))
    line = line[keep]
    f, t = buses.roots(line["from_bus"]), buses.roots(line["to_bus"])
    vn = buses.vn_kv[[buses.position[int(b)] for b in line["from_bus"]]]
    parallel = _column(line, "parallel", 1.0)
    x_ohm = _column(line, "x_ohm_per_km", np.nan) * _column(line, "length_km", np.nan) / parallel
    rating = (_column(line, "max_i_ka", np.inf) * _column(line, "df", 1.0) * parallel * vn
              * np.sqrt(3.0))
    rows.append((f, t, x_ohm / (vn**2 / BASE_MVA), np.ones(f.size), rating,
                 np.array([f"line {i}" for i in line.index], dtype=object)))
    # two-winding transformers
    trafo = net.trafo
    keep = _in_service(trafo) & ~trafo.index.isin(list(_open_at_an_end(net, "t")))
    trafo = trafo[keep]
    f, t = buses.roots(trafo["hv_bus"]), buses.roots(trafo["lv_bus"])
    vn_hv_bus = buses.vn_kv[[buses.position[int(b)] for b in trafo["hv_bus"]]]
    vn_lv_bus = buses.vn_kv[[buses.position[int(b)] for b in trafo["lv_bus"]]]
    side = np.array(_types_of(trafo, "tap_side"))
    vn_hv = _tapped(_column(trafo, "vn_hv_kv", np.nan), "hv", trafo, side)
    vn_lv = _tapped(_column(trafo, "vn_lv_kv", np.nan), "lv", trafo, side)
    sn = _column(trafo, "sn_mva", np.nan)
    parallel = _column(trafo, "parallel", 1.0)
    vk, vkr = _column(trafo, "vk_percent", np.nan), _column(trafo, "vkr_percent", 0.0)
    x = (np.sqrt(np.maximum(vk**2 - vkr**2, 0.0)) / 100.0 * (BASE_MVA / sn)
         * (vn_lv / vn_lv_bus) ** 2 / parallel)
    tap = (vn_hv / vn_lv) / (vn_hv_bus / vn_lv_bus)
    rows.append((f, t, x, tap, sn * parallel,
                 np.array([f"trafo {i}" for i in trafo.index], dtype=object)))
    # three-winding transformers: star equivalent around a new bus per transformer
    star_count = 0
    trafo3w = net.trafo3w if "trafo3w" in net else None
    if trafo3w is not None and len(trafo3w):
        keep = _in_service(trafo3w) & ~trafo3w.index.isin(list(_open_at_an_end(net, "t3")))
        trafo3w = trafo3w[keep]
        ends = {w: buses.roots(trafo3w[f"{w}_bus"]) for w in ("hv", "mv", "lv")}
        alive = (ends["hv"] >= 0) & (ends["mv"] >= 0) & (ends["lv"] >= 0)
        trafo3w = trafo3w[alive]
        ends = {w: r[alive] for w, r in ends.items()}
        sides = ("hv", "mv", "lv")
        sn = {w: _column(trafo3w, f"sn_{w}_mva", np.nan) for w in sides}
        rated = {w: _column(trafo3w, f"vn_{w}_kv", np.nan) for w in sides}
        bus_kv = {w: buses.vn_kv[[buses.position[int(b)] for b in trafo3w[f"{w}_bus"]]]
                  for w in sides}
        # pairwise impedance and resistance (p.u. on BASE_MVA) of (hv, mv), (mv, lv), (hv, lv),
        # each given on the smaller rating of its two windings, then the star values
        pairs = (("hv", "hv", "mv"), ("mv", "mv", "lv"), ("lv", "hv", "lv"))
        z = [_column(trafo3w, f"vk_{n}_percent", np.nan) / 100 * BASE_MVA
             / np.minimum(sn[a], sn[b]) for n, a, b in pairs]
        r = [_column(trafo3w, f"vkr_{n}_percent", 0.0) / 100 * BASE_MVA
             / np.minimum(sn[a], sn[b]) for n, a, b in pairs]
        star_count = len(trafo3w)
        star = buses.index.size + np.arange(star_count)
        for w, (i, j, k) in zip(sides, ((0, 2, 1), (0, 1, 2), (2, 1, 0)), strict=True):
            z_w, r_w = (z[i] + z[j] - z[k]) / 2, (r[i] + r[j] - r[k]) / 2
            x_w = np.sign(z_w) * np.sqrt(np.maximum(z_w**2 - r_w**2, 0.0))
            # the star bus sits at the hv rated voltage; hv winding: tap vn_hv / bus, mv and lv
            # windings: bus / vn_w, their reactance scaled by (vn_w / bus)^2 as a lv side
            if w == "hv":
                tap_w = rated[w] / bus_kv[w]
            else:
                tap_w = bus_kv[w] / rated[w]
                x_w = x_w * (rated[w] / bus_kv[w]) ** 2
            rows.append((ends[w], star, x_w, tap_w, sn[w],
                         np.array([f"trafo3w {n} {w}" for n in trafo3w.index], dtype=object)))
    f, t, x, tap, rating, names = (np.concatenate(parts) for parts in zip(*rows, strict=True))
    connected = (f >= 0) & (t >= 0) & (f != t)
    f, t, x, tap, rating, names = (a[connected] for a in (f, t, x, tap, rating, names))
    if np.any(~np.isfinite(x)) or np.any(x == 0) or np.any(~np.isfinite(tap)) or np.any(tap <= 0):
        raise CaseError(f"{code}: a branch has a zero or undefined reactance or ratio")
    rating = np.where(np.isfinite(rating) & (rating > 0), rating, np.inf)
    return f, t, x, tap, rating, names, star_count


def _profile_matrix(frame, table, rows_of_bus: np.ndarray, n_buses: int, n_periods: int,
                    scale: np.ndarray | None = None) -> np.ndarray:
    """Sum element profiles (T, n elements) MW into buses (T, B) float32; elements whose bus
    is dropped (rows_of_bus < 0) are left out."""
    out = np.zeros((n_periods, n_buses), dtype=np.float32)
    if frame is None or frame.shape[1] == 0 or not len(table):
        return out
    frame = frame.reindex(columns=table.index)
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.nan_to_num(values, nan=0.0)
    if scale is not None:
        values = values * scale[None, :]
    kept = rows_of_bus >= 0
    mapping = coo_matrix((np.ones(int(kept.sum())), (np.flatnonzero(kept), rows_of_bus[kept])),
                         shape=(values.shape[1], n_buses)).tocsr()
    out[:] = (mapping.T @ values.T).T
    return out


def case_from_net(net, profiles: dict, code: str) -> SimbenchCase:
    """Build a SimbenchCase from a pandapower net and its absolute profiles (the dict of
    `simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)`: (element,
    column) -> DataFrame (T, elements) MW). See the module docstring for the conversion."""
    buses = _Buses(net)
    f, t, x, tap, rating, branch_names, n_star = _branch_tables(net, buses, code)

    # largest connected component over roots (and star buses)
    n_nodes = buses.index.size + n_star
    roots_alive = np.unique(np.concatenate([buses.root[buses.alive],
                                            buses.index.size + np.arange(n_star)]))
    adjacency = coo_matrix((np.ones(f.size), (f, t)), shape=(n_nodes, n_nodes))
    _, label = connected_components(adjacency, directed=False)
    sizes = np.bincount(label[roots_alive])
    main = int(np.argmax(sizes))
    kept_nodes = roots_alive[label[roots_alive] == main]
    row = np.full(n_nodes, -1, dtype=np.int64)
    row[kept_nodes] = np.arange(kept_nodes.size)
    n_buses = int(kept_nodes.size)
    keep_branch = (row[f] >= 0) & (row[t] >= 0)
    f, t, x, tap, rating, branch_names = (a[keep_branch]
                                          for a in (f, t, x, tap, rating, branch_names))
    line_from, line_to = row[f], row[t]
    if line_from.size == 0:
        raise CaseError(f"{code}: no in-service branch")
    bus_ids = np.where(kept_nodes < buses.index.size,
                       buses.index[np.minimum(kept_nodes, buses.index.size - 1)],
                       -1 - (kept_nodes - buses.index.size))  # star buses: -1, -2, ...

    def element_rows(table, column: str = "bus") -> np.ndarray:
        """Grid bus row per element (-1 where out of service or outside the kept grid)."""
        if not len(table):
            return np.zeros(0, dtype=np.int64)
        roots = buses.roots(table[column])
        rows = np.where(roots >= 0, row[np.maximum(roots, 0)], -1)
        return np.where(_in_service(table), rows, -1)

    # static load, shunts and fixed HVDC transfers
    load_rows = element_rows(net.load)
    load_scaling = _column(net.load, "scaling", 1.0)
    static_load = np.bincount(load_rows[load_rows >= 0], minlength=n_buses,
                              weights=(_column(net.load, "p_mw", 0.0) * load_scaling)[
                                  load_rows >= 0]).astype(np.float64)
    fixed = np.zeros(n_buses)
    if "shunt" in net and len(net.shunt):
        rows = element_rows(net.shunt)
        np.add.at(fixed, rows[rows >= 0], (_column(net.shunt, "p_mw", 0.0)
                                          * _column(net.shunt, "step", 1.0))[rows >= 0])
    if "dcline" in net and len(net.dcline):
        dc = net.dcline
        sent = _column(dc, "p_mw", 0.0)
        received = sent * (1 - _column(dc, "loss_percent", 0.0) / 100) - _column(dc, "loss_mw", 0.0)
        rows_from, rows_to = element_rows(dc, "from_bus"), element_rows(dc, "to_bus")
        both = (rows_from >= 0) & (rows_to >= 0)
        np.add.at(fixed, rows_from[both], sent[both])
        np.add.at(fixed, rows_to[both], -received[both])

    # generators: gen, dispatchable sgen, ext_grid (infeed)
    gen_rows, pmin, pmax, stable, fuel, infeed, names = [], [], [], [], [], [], []
    if len(net.gen):
        p = _column(net.gen, "p_mw", 0.0)
        gen_rows.append(element_rows(net.gen))
        stable.append(np.maximum(_column(net.gen, "min_p_mw", 0.0), 0.0))
        pmin.append(np.zeros(len(net.gen)))
        pmax.append(np.where(np.isnan(_column(net.gen, "max_p_mw", np.nan)), np.maximum(p, 0.0),
                             _column(net.gen, "max_p_mw", np.nan)))
        fuel += [_fuel(k) for k in _types(net.gen)]
        infeed += [False] * len(net.gen)
        names += [f"gen {i}" for i in net.gen.index]
    sgen_types = _types(net.sgen)
    dispatchable = np.array([k in FUEL_COST_PER_MWH for k in sgen_types], dtype=bool)
    sgen_rows = element_rows(net.sgen)
    if dispatchable.any():
        sgen = net.sgen[dispatchable]
        p = _column(sgen, "p_mw", 0.0)
        gen_rows.append(sgen_rows[dispatchable])
        stable.append(np.maximum(_column(sgen, "min_p_mw", 0.0), 0.0))
        pmin.append(np.zeros(len(sgen)))
        pmax.append(np.where(np.isnan(_column(sgen, "max_p_mw", np.nan)), np.maximum(p, 0.0),
                             _column(sgen, "max_p_mw", np.nan)))
        fuel += [k for k, d in zip(sgen_types, dispatchable, strict=True) if d]
        infeed += [False] * len(sgen)
        names += [f"sgen {i}" for i in sgen.index]
    if len(net.ext_grid):
        ext = net.ext_grid
        rows = element_rows(ext)
        # an infeed without limits carries what the branches at its bus carry
        capacity = np.zeros(n_buses)
        finite = np.isfinite(rating)
        np.add.at(capacity, line_from[finite], rating[finite])
        np.add.at(capacity, line_to[finite], rating[finite])
        sharing = np.maximum(np.bincount(rows[rows >= 0], minlength=n_buses), 1)
        at = np.maximum(rows, 0)
        own = np.where(rows >= 0, capacity[at] / sharing[at], 0.0)
        everything = (np.abs(static_load).sum() + np.abs(fixed).sum()
                      + np.abs(_column(net.sgen, "p_mw", 0.0)).sum() + 1.0)
        own = np.where(own > 0, own, everything)  # no rated branch there: no limit in practice
        low, high = _column(ext, "min_p_mw", np.nan), _column(ext, "max_p_mw", np.nan)
        gen_rows.append(rows)
        stable.append(np.where(np.isnan(low), 0.0, np.maximum(low, 0.0)))
        pmin.append(np.where(np.isnan(low), -own, np.minimum(low, 0.0)))
        pmax.append(np.where(np.isnan(high), own, high))
        fuel += [_fuel(k) for k in _types(ext)]
        infeed += [True] * len(ext)
        names += [f"ext_grid {i}" for i in ext.index]
    if not gen_rows:
        raise CaseError(f"{code}: no generator and no infeed")
    gen_bus, pmin, pmax, stable = (np.concatenate(a) for a in (gen_rows, pmin, pmax, stable))
    pmin = np.minimum(pmin, pmax)
    kept = (gen_bus >= 0) & ((pmax > 0) | (pmin < 0))
    fuel = tuple(k for k, keep in zip(fuel, kept, strict=True) if keep)
    gen_names = tuple(k for k, keep in zip(names, kept, strict=True) if keep)
    infeed = np.array(infeed, dtype=bool)[kept]
    gen_bus, pmin, pmax, stable = gen_bus[kept], pmin[kept], pmax[kept], stable[kept]
    if gen_bus.size == 0:
        raise CaseError(f"{code}: no in-service generator or infeed in the main grid")
    cost_b = np.array([FUEL_COST_PER_MWH[k] for k in fuel])
    cost_a = QUADRATIC_SHARE * cost_b / np.maximum(pmax - pmin, 1.0)

    # slack: the bus of the largest infeed (ext_grid) if any, else of the largest unit
    candidates = np.flatnonzero(infeed) if infeed.any() else np.arange(gen_bus.size)
    slack = int(gen_bus[candidates[np.argmax(pmax[candidates])]])

    grid = Grid(
        name=code,
        base_mva=BASE_MVA,
        slack=slack,
        bus_ids=bus_ids,
        load_mw=static_load,
        shunt_mw=fixed,
        line_from=line_from,
        line_to=line_to,
        line_x=x,
        line_tap=tap,
        line_rating_mw=rating,
        gen_bus=gen_bus,
        gen_pmin_mw=pmin,
        gen_pmax_mw=pmax,
        cost_a=cost_a,
        cost_b=cost_b,
        cost_c=np.zeros(gen_bus.size),
    )

    # profiles
    load_frame = profiles.get(("load", "p_mw"))
    if load_frame is None or load_frame.shape[0] == 0:
        raise CaseError(f"{code}: the grid has no load profiles")
    n_periods = int(load_frame.shape[0])
    load = _profile_matrix(load_frame, net.load, load_rows, n_buses, n_periods, load_scaling)
    if "storage" in net and len(net.storage):
        load += _profile_matrix(profiles.get(("storage", "p_mw")), net.storage,
                                element_rows(net.storage), n_buses, n_periods,
                                _column(net.storage, "scaling", 1.0))
    renewable_rows = np.where(dispatchable, -1, sgen_rows)
    renewable = _profile_matrix(profiles.get(("sgen", "p_mw")), net.sgen, renewable_rows,
                                n_buses, n_periods, _column(net.sgen, "scaling", 1.0))
    times, per_day = _times(net, n_periods)
    return SimbenchCase(code=code, grid=grid, load_mw=load, renewable_mw=renewable, time=times,
                        periods_per_day=per_day, fuel=fuel,
                        branch_elements=tuple(str(n) for n in branch_names),
                        gen_elements=gen_names, gen_min_stable_mw=stable)


def _times(net, n_periods: int) -> tuple[np.ndarray, int]:
    """Period start times (T,) datetime64[m] and periods per day, from the profiles' time
    column ("dd.mm.yyyy HH:MM"); 15-minute periods from 2016-01-01 if it is missing."""
    frame = net["profiles"].get("load") if "profiles" in net else None
    times = None
    if frame is not None and "time" in frame and len(frame) == n_periods:
        import pandas as pd

        parsed = pd.to_datetime(frame["time"], format="%d.%m.%Y %H:%M", errors="coerce")
        if not parsed.isna().any():
            times = parsed.to_numpy().astype("datetime64[m]")
    if times is None:
        times = np.datetime64("2016-01-01T00:00") + np.arange(n_periods) * np.timedelta64(15, "m")
    if n_periods < 2:
        return times, 96
    step = int(np.median(np.diff(times).astype("timedelta64[m]").astype(np.int64)))
    per_day = int(round(24 * 60 / step)) if step > 0 else 96
    return times, per_day


# ---------------------------------------------------------------------------------------------
# data splits


def split_days(n_periods_per_day: int, days: int, cycle: int = 8) -> dict[str, np.ndarray]:
    """Disjoint training / validation / test days of a year of `days` days.

    Days are cut into blocks of `cycle` days (default 8): the last day of each block is a test
    day, the first day of the next block a validation day, the rest are training days. With
    cycle 8 (not a multiple of 7) the held-out days rotate through the weekdays and cover every
    season; for 366 days: 276 training, 45 validation, 45 test days (75 / 12.3 / 12.3 %).

    Returns int64 arrays: "train", "validation", "test" (day indices, 0..days-1, sorted,
    disjoint, together every day) and "train_periods", "validation_periods", "test_periods"
    (row indices into the (T, B) profiles, T = days * n_periods_per_day, of those days).
    """
    if int(n_periods_per_day) != n_periods_per_day or n_periods_per_day < 1:
        raise ValueError(f"n_periods_per_day must be a positive integer, got {n_periods_per_day!r}")
    if int(days) != days or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if int(cycle) != cycle or cycle < 3:
        raise ValueError(f"cycle must be an integer >= 3, got {cycle!r}")
    day = np.arange(int(days), dtype=np.int64)
    position = day % int(cycle)
    test = position == cycle - 1
    validation = (position == 0) & (day > 0)
    split = {"train": day[~test & ~validation], "validation": day[validation], "test": day[test]}
    per_day = int(n_periods_per_day)
    for name in ("train", "validation", "test"):
        chosen = split[name]
        split[f"{name}_periods"] = (chosen[:, None] * per_day + np.arange(per_day)).ravel()
    return split
