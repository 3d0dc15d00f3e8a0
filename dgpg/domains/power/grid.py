"""Transmission grids for DC power flow: MATPOWER/PYPOWER test cases, PTDFs and line limits.

A `Grid` has B buses (indices 0..B-1, in the case's bus order), L in-service lines and G
in-service generators. Powers are in MW, reactances in per unit on `base_mva`, generation costs
a P^2 + b P + c in $/h with P in MW. DC power flow: the flow on line l from bus i to bus j is
(theta_i - theta_j) / (x_l tap_l), and the line flows for net bus injections p (B,) MW, balanced
by the slack bus, are `ptdf(grid) @ p` (L,) MW.

Named cases come from PYPOWER (`load_case("case30")`); files may be MATPOWER `.m` case files or
JSON objects with the same fields (`baseMVA`, `bus`, `gen`, `branch`, `gencost`, MATPOWER
column order). NumPy only: importing this module does not import JAX.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

CASE_NAMES: tuple[str, ...] = (
    "case9",
    "case14",
    "case30",
    "case39",
    "case57",
    "case118",
    "case300",
)

# MATPOWER column indices (0-based) of the fields used here
_BUS_I, _BUS_TYPE, _PD, _GS = 0, 1, 2, 4
_REF_BUS, _ISOLATED_BUS = 3, 4
_F_BUS, _T_BUS, _BR_X, _RATE_A, _TAP, _SHIFT, _BR_STATUS = 0, 1, 3, 5, 8, 9, 10
_GEN_BUS, _GEN_STATUS, _PMAX, _PMIN = 0, 7, 8, 9
_MODEL, _NCOST, _COST = 0, 3, 4
_POLYNOMIAL, _PIECEWISE_LINEAR = 2, 1
_MIN_COLUMNS = {"bus": 5, "branch": 11, "gen": 10, "gencost": 4}

_INT_FIELDS = ("bus_ids", "line_from", "line_to", "gen_bus")
_BUS_FIELDS = ("bus_ids", "load_mw", "shunt_mw")
_LINE_FIELDS = ("line_from", "line_to", "line_x", "line_tap", "line_rating_mw")
_GEN_FIELDS = ("gen_bus", "gen_pmin_mw", "gen_pmax_mw", "cost_a", "cost_b", "cost_c")


class CaseError(ValueError):
    """A case that cannot be loaded or used; the message is one line and names the case."""


@dataclass(frozen=True, eq=False)
class Grid:
    """A transmission grid for DC power flow. Arrays are stored read-only.

    Buses (B,): bus_ids (the case's bus numbers; bus index k has id bus_ids[k]), load_mw (PD),
    shunt_mw (GS: MW drawn by shunt conductance at 1 p.u. voltage, a fixed load in the DC
    model). Lines (L,): line_from, line_to (bus indices), line_x (series reactance, p.u.),
    line_tap (off-nominal turns ratio, 1 for lines), line_rating_mw (RATE_A, MW; inf where the
    case gives 0, i.e. unlimited). Generators (G,): gen_bus (bus index), gen_pmin_mw,
    gen_pmax_mw, and cost a P^2 + b P + c ($/h, P in MW) as cost_a ($/MW^2h), cost_b ($/MWh),
    cost_c ($/h). slack: index of the reference bus.
    """

    name: str
    base_mva: float
    slack: int
    bus_ids: np.ndarray
    load_mw: np.ndarray
    shunt_mw: np.ndarray
    line_from: np.ndarray
    line_to: np.ndarray
    line_x: np.ndarray
    line_tap: np.ndarray
    line_rating_mw: np.ndarray
    gen_bus: np.ndarray
    gen_pmin_mw: np.ndarray
    gen_pmax_mw: np.ndarray
    cost_a: np.ndarray
    cost_b: np.ndarray
    cost_c: np.ndarray

    def __post_init__(self) -> None:
        for group in (_BUS_FIELDS, _LINE_FIELDS, _GEN_FIELDS):
            size = None
            for field in group:
                dtype = np.int64 if field in _INT_FIELDS else np.float64
                array = np.array(getattr(self, field), dtype=dtype)
                if array.ndim != 1 or (size is not None and array.size != size):
                    raise ValueError(f"{self.name}: {field} has shape {array.shape}, "
                                     f"expected ({size if size is not None else 'n'},)")
                size = array.size
                array.setflags(write=False)
                object.__setattr__(self, field, array)
        n_buses = self.bus_ids.size
        for field in ("line_from", "line_to", "gen_bus"):
            indices = getattr(self, field)
            if indices.size and (indices.min() < 0 or indices.max() >= n_buses):
                raise ValueError(f"{self.name}: {field} must hold bus indices in 0..{n_buses - 1}")
        if not 0 <= int(self.slack) < n_buses:
            raise ValueError(f"{self.name}: slack {self.slack} is not a bus index")
        if np.any(np.isnan(self.line_rating_mw)) or np.any(self.line_rating_mw <= 0):
            raise ValueError(f"{self.name}: line ratings must be positive (inf for unlimited)")
        object.__setattr__(self, "slack", int(self.slack))
        object.__setattr__(self, "base_mva", float(self.base_mva))
        object.__setattr__(self, "name", str(self.name))

    @property
    def n_buses(self) -> int:
        """Number of buses B."""
        return int(self.bus_ids.size)

    @property
    def n_lines(self) -> int:
        """Number of in-service lines L (lines and transformers)."""
        return int(self.line_from.size)

    @property
    def n_gens(self) -> int:
        """Number of in-service generators G."""
        return int(self.gen_bus.size)

    @property
    def demand_mw(self) -> np.ndarray:
        """Fixed demand per bus at base load (B,) MW: load_mw + shunt_mw."""
        return self.load_mw + self.shunt_mw

    def __repr__(self) -> str:
        return (
            f"Grid(name={self.name!r}, n_buses={self.n_buses}, n_lines={self.n_lines}, "
            f"n_gens={self.n_gens}, load_mw={self.load_mw.sum():g})"
        )


def load_case(name_or_path: str | Path) -> Grid:
    """Load a test case by name (one of CASE_NAMES, from PYPOWER) or from a file.

    Files: a MATPOWER case (`.m`) or a JSON object (`.json`) with baseMVA, bus, gen, branch and
    gencost in MATPOWER's column order. Out-of-service lines and generators, and isolated buses
    (type 4) with what touches them, are dropped. Generator costs must be polynomial (model 2)
    of degree at most 2. Raises CaseError, with a one-line message naming the case, on any
    problem (unknown name, missing or unparsable file, invalid data).
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in CASE_NAMES:
        return grid_from_ppc(_pypower_case(text), name=text)
    path = Path(name_or_path)
    looks_like_name = isinstance(name_or_path, str) and path.suffix == "" and len(path.parts) == 1
    if looks_like_name and not path.exists():
        raise CaseError(f"unknown case {text!r}; known cases: {', '.join(CASE_NAMES)}, "
                        "or a path to a MATPOWER .m or JSON case file")
    if not path.is_file():
        raise CaseError(f"{path}: no such case file")
    if path.suffix.lower() not in (".m", ".json"):
        raise CaseError(f"{path}: unsupported case file type {path.suffix!r} (use .m or .json)")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CaseError(f"{path}: cannot read ({error})") from None
    if path.suffix.lower() == ".m":
        ppc = _parse_matpower(path, content)
    else:
        ppc = _parse_json(path, content)
    return grid_from_ppc(ppc, name=path.stem, source=str(path))


def _pypower_case(name: str) -> dict:
    try:
        module = importlib.import_module(f"pypower.{name}")
    except ImportError as error:
        message = f"{name}: named cases need PYPOWER (pip install pypower): {error}"
        raise CaseError(message) from None
    return getattr(module, name)()


def _parse_matpower(path: Path, content: str) -> dict:
    """MATPOWER `mpc.baseMVA = ...;` and `mpc.<matrix> = [ rows ];` assignments."""
    code = re.sub(r"%[^\n]*", "", content)
    ppc: dict = {}
    base = re.search(r"\b\w+\.baseMVA\s*=\s*([^;\n]+)", code)
    if base is None:
        raise CaseError(f"{path}: not a MATPOWER case (no baseMVA assignment)")
    try:
        ppc["baseMVA"] = float(base.group(1))
    except ValueError:
        raise CaseError(f"{path}: baseMVA {base.group(1).strip()!r:.40} is not a number") from None
    for field in ("bus", "gen", "branch", "gencost"):
        match = re.search(rf"\b\w+\.{field}\s*=\s*\[(.*?)\]", code, flags=re.DOTALL)
        if match is None:
            raise CaseError(f"{path}: not a MATPOWER case (no {field} matrix)")
        rows = []
        for row in re.split(r"[;\n]", match.group(1)):
            values = row.replace(",", " ").split()
            if not values:
                continue
            try:
                rows.append([float(value) for value in values])
            except ValueError:
                raise CaseError(f"{path}: {field} row {row.strip()!r:.60} is not numeric") from None
        ppc[field] = rows
    return ppc


def _parse_json(path: Path, content: str) -> dict:
    try:
        ppc = json.loads(content)
    except json.JSONDecodeError as error:
        raise CaseError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(ppc, dict):
        raise CaseError(f"{path}: expected a JSON object with baseMVA, bus, gen, branch, gencost")
    return ppc


def _matrix(ppc: dict, field: str, where: str) -> np.ndarray:
    if field not in ppc:
        raise CaseError(f"{where}: missing {field}")
    try:
        matrix = np.array(ppc[field], dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseError(f"{where}: {field} is not a rectangular numeric matrix") from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] < _MIN_COLUMNS[field]:
        raise CaseError(f"{where}: {field} must be a matrix of at least {_MIN_COLUMNS[field]} "
                        f"columns, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix[:, : _MIN_COLUMNS[field]])):
        raise CaseError(f"{where}: {field} holds non-finite values")
    return matrix


def grid_from_ppc(ppc: dict, name: str, source: str | None = None) -> Grid:
    """Build a Grid from a PYPOWER/MATPOWER case dict (MATPOWER column order, external bus
    numbers). Raises CaseError naming `source` (default: `name`)."""
    where = source or name
    try:
        base_mva = float(ppc.get("baseMVA", float("nan")))
    except (TypeError, ValueError):
        base_mva = float("nan")
    if not np.isfinite(base_mva) or base_mva <= 0:
        raise CaseError(f"{where}: baseMVA must be a positive number")
    bus, branch, gen = (_matrix(ppc, field, where) for field in ("bus", "branch", "gen"))
    gencost = _matrix(ppc, "gencost", where)
    if gencost.shape[0] < gen.shape[0]:
        raise CaseError(f"{where}: gencost has {gencost.shape[0]} rows for {gen.shape[0]} "
                        "generators")
    gencost = gencost[: gen.shape[0]]  # rows beyond G are reactive-power costs

    ids = bus[:, _BUS_I]
    if np.any(ids != np.round(ids)) or np.unique(ids).size != ids.size:
        raise CaseError(f"{where}: bus numbers must be distinct integers")
    keep_bus = bus[:, _BUS_TYPE] != _ISOLATED_BUS
    kept_ids = ids[keep_bus]
    position = {int(bus_id): k for k, bus_id in enumerate(kept_ids)}

    def indices(values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        unknown = ~np.isin(values, ids)
        if np.any(unknown):
            raise CaseError(f"{where}: {what} refers to unknown bus {values[unknown][0]:g}")
        connected = np.isin(values, kept_ids)
        return np.array([position.get(int(v), -1) for v in values], dtype=np.int64), connected

    line_from, from_ok = indices(branch[:, _F_BUS], "branch")
    line_to, to_ok = indices(branch[:, _T_BUS], "branch")
    keep_line = (branch[:, _BR_STATUS] > 0) & from_ok & to_ok
    gen_bus, gen_ok = indices(gen[:, _GEN_BUS], "gen")
    keep_gen = (gen[:, _GEN_STATUS] > 0) & gen_ok
    branch, gen, gencost = branch[keep_line], gen[keep_gen], gencost[keep_gen]
    line_from, line_to, gen_bus = line_from[keep_line], line_to[keep_line], gen_bus[keep_gen]
    if gen.shape[0] == 0:
        raise CaseError(f"{where}: no in-service generator")
    if np.any(line_from == line_to):
        raise CaseError(f"{where}: a branch connects a bus to itself")
    if np.any(branch[:, _BR_X] == 0):
        raise CaseError(f"{where}: a branch has zero reactance (BR_X), undefined in DC flow")
    if np.any(branch[:, _SHIFT] != 0):
        raise CaseError(f"{where}: phase-shifting transformers (SHIFT != 0) are not supported")

    n_buses = int(keep_bus.sum())
    reference = np.flatnonzero(bus[keep_bus, _BUS_TYPE] == _REF_BUS)
    if reference.size == 0:
        raise CaseError(f"{where}: no reference (type 3) bus")
    adjacency = coo_matrix((np.ones(line_from.size), (line_from, line_to)),
                           shape=(n_buses, n_buses))
    n_islands, _ = connected_components(adjacency, directed=False)
    if n_islands > 1:
        raise CaseError(f"{where}: the in-service network has {n_islands} islands, expected 1")

    pmin, pmax = gen[:, _PMIN], gen[:, _PMAX]
    if np.any(pmin > pmax):
        raise CaseError(f"{where}: a generator has Pmin > Pmax")
    cost_a, cost_b, cost_c = _polynomial_costs(gencost, where)

    tap = branch[:, _TAP].copy()
    tap[tap == 0] = 1.0
    rating = branch[:, _RATE_A].copy()
    if np.any(rating < 0):
        raise CaseError(f"{where}: negative line rating (RATE_A)")
    rating[rating == 0] = np.inf
    return Grid(
        name=name,
        base_mva=base_mva,
        slack=int(reference[0]),
        bus_ids=kept_ids.astype(np.int64),
        load_mw=bus[keep_bus, _PD],
        shunt_mw=bus[keep_bus, _GS],
        line_from=line_from,
        line_to=line_to,
        line_x=branch[:, _BR_X],
        line_tap=tap,
        line_rating_mw=rating,
        gen_bus=gen_bus,
        gen_pmin_mw=pmin,
        gen_pmax_mw=pmax,
        cost_a=cost_a,
        cost_b=cost_b,
        cost_c=cost_c,
    )


def _polynomial_costs(gencost: np.ndarray, where: str) -> tuple[np.ndarray, ...]:
    """(a, b, c) per generator from MATPOWER model-2 rows [2 startup shutdown n c_{n-1}..c_0]."""
    coefficients = np.zeros((gencost.shape[0], 3))
    for g, row in enumerate(gencost):
        if row[_MODEL] == _PIECEWISE_LINEAR:
            raise CaseError(f"{where}: generator {g} has a piecewise-linear cost (model 1); "
                            "only polynomial costs (model 2) are supported")
        if row[_MODEL] != _POLYNOMIAL:
            raise CaseError(f"{where}: generator {g} has unknown cost model {row[_MODEL]:g}")
        n = row[_NCOST]
        if n != round(n) or n < 1 or _COST + n > row.size:
            raise CaseError(f"{where}: generator {g} has an invalid cost coefficient count {n:g}")
        poly = row[_COST : _COST + int(n)]  # highest order first
        if not np.all(np.isfinite(poly)):
            raise CaseError(f"{where}: generator {g} has non-finite cost coefficients")
        if poly.size > 3 and np.any(poly[:-3] != 0):
            raise CaseError(f"{where}: generator {g} has a cost of degree {poly.size - 1}; "
                            "at most quadratic is supported")
        tail = poly[-3:]
        coefficients[g, 3 - tail.size :] = tail
    if np.any(coefficients[:, 0] < 0):
        raise CaseError(f"{where}: a generator has a concave cost (negative quadratic term)")
    return coefficients[:, 0], coefficients[:, 1], coefficients[:, 2]


def incidence(grid: Grid) -> np.ndarray:
    """Line-bus incidence matrix (L, B): +1 at each line's from bus, -1 at its to bus."""
    matrix = np.zeros((grid.n_lines, grid.n_buses))
    rows = np.arange(grid.n_lines)
    matrix[rows, grid.line_from] = 1.0
    matrix[rows, grid.line_to] = -1.0
    return matrix


def ptdf(grid: Grid) -> np.ndarray:
    """DC power-transfer distribution factors (L, B), MW of line flow (from -> to) per MW
    injected at each bus and withdrawn at the slack bus (whose column is zero)."""
    a = incidence(grid)
    susceptance = 1.0 / (grid.line_x * grid.line_tap)
    branch_b = susceptance[:, None] * a  # (L, B)
    bus_b = a.T @ branch_b  # (B, B)
    keep = np.arange(grid.n_buses) != grid.slack
    factors = np.zeros((grid.n_lines, grid.n_buses))
    factors[:, keep] = np.linalg.solve(bus_b[np.ix_(keep, keep)], branch_b[:, keep].T).T
    return factors


def line_flows(grid: Grid, dispatch_mw: np.ndarray, demand_mw: np.ndarray) -> np.ndarray:
    """DC line flows (L,) MW for generator outputs (G,) MW and bus demand (B,) MW; the slack
    bus absorbs any imbalance."""
    injection = np.bincount(grid.gen_bus, weights=dispatch_mw, minlength=grid.n_buses)
    return ptdf(grid) @ (injection - demand_mw)


def with_ratings(grid: Grid, ratings_mw: float | np.ndarray) -> Grid:
    """The grid with line ratings replaced by ratings_mw (scalar or (L,), MW; inf: unlimited)."""
    ratings = np.broadcast_to(np.asarray(ratings_mw, dtype=np.float64), (grid.n_lines,))
    return dataclasses.replace(grid, line_rating_mw=ratings.copy())


LIMIT_HEADROOM = 1.5
LIMIT_FLOOR_FRACTION = 0.3


def proportional_dispatch(grid: Grid, load_mw_total: float) -> np.ndarray:
    """Outputs (G,) MW with every unit at the same fraction of its range:
    P_g = Pmin_g + theta (Pmax_g - Pmin_g), theta = (D - sum Pmin) / (sum Pmax - sum Pmin)."""
    pmin, pmax = grid.gen_pmin_mw, grid.gen_pmax_mw
    span = pmax.sum() - pmin.sum()
    theta = (load_mw_total - pmin.sum()) / span if span > 0 else 0.0
    return pmin + theta * (pmax - pmin)


def with_limits(
    grid: Grid,
    headroom: float = LIMIT_HEADROOM,
    floor_fraction: float = LIMIT_FLOOR_FRACTION,
    dispatch_mw: np.ndarray | None = None,
) -> Grid:
    """The grid with synthetic line ratings, for cases whose ratings are absent or placeholders
    (MATPOWER case118 and case300 rate every line at 9900 MW, which never binds).

    Rule: let f (L,) MW be the DC line flows at base load of a reference dispatch, then

        rating_l = max(headroom * |f_l|, floor_fraction * max_k |f_k|).

    The default reference is the capacity-proportional dispatch (`proportional_dispatch`: every
    unit at the same fraction of its range). When Pmin = 0 and shunts are negligible, that
    dispatch scales with the load, so its flows at load_scale s are s f and it satisfies these
    ratings for every s <= headroom: the DC-OPF stays feasible up to load_scale `headroom` (or
    the generation capacity, if smaller). The least-cost dispatch loads cheap units harder than
    the proportional one, so it overloads some lines and the base load is already congested
    (for the defaults 1.5 and 0.3: 15 binding lines on case118, 5 on case300). The floor keeps
    lightly loaded lines from ratings near zero.

    `dispatch_mw` (G,) MW at base load replaces the reference dispatch: with the unconstrained
    economic dispatch (`dispatch.economic_dispatch`) any headroom >= 1 leaves the base load
    uncongested (that dispatch stays feasible), and a headroom < 1 is usually infeasible (flows
    on radial lines are fixed by the loads).
    """
    if not (np.isfinite(headroom) and headroom > 0):
        raise ValueError(f"headroom must be positive and finite, got {headroom!r}")
    if not (np.isfinite(floor_fraction) and floor_fraction > 0):
        raise ValueError(f"floor_fraction must be positive and finite, got {floor_fraction!r}")
    demand = grid.demand_mw
    total = float(demand.sum())
    if dispatch_mw is None:
        dispatch_mw = proportional_dispatch(grid, total)
    dispatch_mw = np.asarray(dispatch_mw, dtype=np.float64)
    if dispatch_mw.shape != (grid.n_gens,):
        raise ValueError(f"dispatch_mw must have one value per generator ({grid.n_gens}), got "
                         f"shape {dispatch_mw.shape}")
    flows = np.abs(line_flows(grid, dispatch_mw, demand))
    return with_ratings(grid, np.maximum(headroom * flows, floor_fraction * flows.max()))
