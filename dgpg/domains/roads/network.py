"""Road networks for static traffic assignment: data, BPR latency, TNTP files, grid cities, paths.

A network is a set of directed links e with free-flow time t0_e, capacity c_e and BPR latency
t_e(x) = t0_e (1 + b_e (x / c_e)^p_e), and a demand matrix of trips between zones. Nodes carry the
1-based ids of the TNTP format; the zones are the nodes 1..n_zones. Units are those of the data:
for Sioux Falls, times in 0.01 hours and flows in vehicles per hour; for `grid_network`, minutes
and vehicles per hour.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import scipy.sparse as sp

_INT_ARRAYS = ("init_node", "term_node")
_FLOAT_ARRAYS = ("capacity", "free_flow_time", "b", "power")
_NET_COLUMNS = (
    "init node",
    "term node",
    "capacity",
    "length",
    "free-flow time",
    "b",
    "power",
    "speed",
    "toll",
    "link type",
)


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """A road network with its demand; link arrays have shape (E,) in the net file's order.

    init_node, term_node: 1-based node ids of each link's tail and head. capacity: c_e > 0 (flow
    units). free_flow_time: t0_e >= 0 (time units). b, power: BPR coefficients >= 0.
    demand: shape (Z, Z), trips from zone i + 1 to zone j + 1 (flow units), zero diagonal.
    first_thru_node: zones with a smaller id may start or end a trip but not be passed through
    (TNTP semantics; 1 lets every node be passed through). Arrays are stored read-only.
    """

    init_node: np.ndarray
    term_node: np.ndarray
    capacity: np.ndarray
    free_flow_time: np.ndarray
    b: np.ndarray
    power: np.ndarray
    demand: np.ndarray
    n_nodes: int
    n_zones: int
    first_thru_node: int = 1
    name: str = "network"

    def __post_init__(self) -> None:
        for field in ("n_nodes", "n_zones"):
            value = getattr(self, field)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r:.40}")
            object.__setattr__(self, field, int(value))
        if self.n_zones > self.n_nodes:
            raise ValueError(f"n_zones ({self.n_zones}) exceeds n_nodes ({self.n_nodes})")
        ftn = self.first_thru_node
        if not isinstance(ftn, int | np.integer) or isinstance(ftn, bool) or ftn < 1:
            raise ValueError(f"first_thru_node must be a positive integer, got {ftn!r:.40}")
        object.__setattr__(self, "first_thru_node", int(ftn))

        arrays = {}
        for field in _INT_ARRAYS + _FLOAT_ARRAYS:
            try:
                array = np.array(getattr(self, field), dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{field} must be an array of numbers") from None
            if array.ndim != 1 or array.size == 0:
                raise ValueError(f"{field} must have shape (E,) with E >= 1, got {array.shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{field} must be finite")
            arrays[field] = array
        n_links = arrays["init_node"].size
        for field, array in arrays.items():
            if array.shape != (n_links,):
                raise ValueError(f"{field} has shape {array.shape}, expected ({n_links},)")
        for field in _INT_ARRAYS:
            nodes = arrays[field]
            if np.any(nodes != np.round(nodes)):
                raise ValueError(f"{field} must hold integer node ids")
            if nodes.min() < 1 or nodes.max() > self.n_nodes:
                raise ValueError(f"{field} must lie in 1..{self.n_nodes} (n_nodes)")
            arrays[field] = nodes.astype(np.int64)
        if np.any(arrays["init_node"] == arrays["term_node"]):
            link = int(np.argmax(arrays["init_node"] == arrays["term_node"]))
            raise ValueError(f"link {link} is a loop (init_node == term_node)")
        if np.any(arrays["capacity"] <= 0):
            raise ValueError("capacity must be positive")
        for field in ("free_flow_time", "b", "power"):
            if np.any(arrays[field] < 0):
                raise ValueError(f"{field} must be nonnegative")

        try:
            demand = np.array(self.demand, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("demand must be an array of numbers") from None
        if demand.shape != (self.n_zones, self.n_zones):
            raise ValueError(
                f"demand has shape {demand.shape}, expected ({self.n_zones}, {self.n_zones})"
            )
        if not np.all(np.isfinite(demand)) or np.any(demand < 0):
            raise ValueError("demand must be finite and nonnegative")
        if np.any(np.diag(demand) != 0):
            raise ValueError("demand must have a zero diagonal (intrazonal trips use no link)")
        arrays["demand"] = demand

        for field, array in arrays.items():
            array.setflags(write=False)
            object.__setattr__(self, field, array)
        object.__setattr__(self, "name", str(self.name))

    @property
    def n_links(self) -> int:
        """Number of directed links E."""
        return int(self.init_node.size)

    @property
    def total_demand(self) -> float:
        """Sum of the demand matrix (flow units)."""
        return float(self.demand.sum())

    def __repr__(self) -> str:
        return (
            f"RoadNetwork(name={self.name!r}, n_nodes={self.n_nodes}, n_links={self.n_links}, "
            f"n_zones={self.n_zones}, total_demand={self.total_demand:g})"
        )


def latency(network: RoadNetwork, flows: np.ndarray) -> np.ndarray:
    """BPR travel time t_e(x_e) = t0_e (1 + b_e (x_e / c_e)^p_e), shape (..., E) like flows >= 0."""
    flows = np.asarray(flows, dtype=np.float64)
    return network.free_flow_time * (1.0 + network.b * (flows / network.capacity) ** network.power)


# ---------------------------------------------------------------------------------------------
# TNTP files


class TNTPError(ValueError):
    """A TNTP file that cannot be read or does not follow the format; the message names it."""


def load_tntp(net_path: str | Path, trips_path: str | Path) -> RoadNetwork:
    """Read a network from TNTP `*_net.tntp` and `*_trips.tntp` files.

    Net rows: init node, term node, capacity, length, free-flow time, b, power, speed, toll,
    link type, ending in ';'. Intrazonal trips in the trips file count toward its
    <TOTAL OD FLOW> check and are then dropped (they use no link). Raises TNTPError, with a
    one-line message naming the file and line, on any problem.
    """
    net_path, trips_path = Path(net_path), Path(trips_path)
    net_lines = _read_lines(net_path)
    meta, body_start = _metadata(net_path, net_lines)
    n_zones = _int_metadata(net_path, meta, "NUMBER OF ZONES")
    n_nodes = _int_metadata(net_path, meta, "NUMBER OF NODES")
    n_links = _int_metadata(net_path, meta, "NUMBER OF LINKS")
    first_thru_node = _int_metadata(net_path, meta, "FIRST THRU NODE", default=1)
    if n_zones > n_nodes:
        raise TNTPError(f"{net_path}: <NUMBER OF ZONES> {n_zones} exceeds <NUMBER OF NODES>")

    rows = []
    for number, line in _body(net_lines, body_start):
        where = f"{net_path}:{number}"
        fields = line.removesuffix(";").split()
        if len(fields) != len(_NET_COLUMNS):
            raise TNTPError(
                f"{where}: expected {len(_NET_COLUMNS)} values per link row "
                f"({', '.join(_NET_COLUMNS)}), found {len(fields)}"
            )
        values = [
            _number(where, text, column) for text, column in zip(fields, _NET_COLUMNS, strict=True)
        ]
        for value, column in zip(values[:2], _NET_COLUMNS[:2], strict=True):
            if value != int(value) or not 1 <= value <= n_nodes:
                raise TNTPError(f"{where}: {column} {value:g} is not a node id in 1..{n_nodes}")
        if values[0] == values[1]:
            raise TNTPError(f"{where}: link from node {values[0]:g} to itself")
        if values[2] <= 0:
            raise TNTPError(f"{where}: capacity {values[2]:g} must be positive")
        for value, column in zip(values[4:7], _NET_COLUMNS[4:7], strict=True):
            if value < 0:
                raise TNTPError(f"{where}: {column} {value:g} must be nonnegative")
        rows.append(values[:7])
    if len(rows) != n_links:
        raise TNTPError(f"{net_path}: {len(rows)} link rows but <NUMBER OF LINKS> is {n_links}")
    links = np.array(rows, dtype=np.float64)

    demand = _read_trips(trips_path, n_zones)
    np.fill_diagonal(demand, 0.0)
    name = net_path.name.removesuffix(".tntp").removesuffix("_net")
    try:
        return RoadNetwork(
            init_node=links[:, 0].astype(np.int64),
            term_node=links[:, 1].astype(np.int64),
            capacity=links[:, 2],
            free_flow_time=links[:, 4],
            b=links[:, 5],
            power=links[:, 6],
            demand=demand,
            n_nodes=n_nodes,
            n_zones=n_zones,
            first_thru_node=first_thru_node,
            name=name,
        )
    except ValueError as error:
        raise TNTPError(f"{net_path}: {error}") from None


def _read_trips(path: Path, n_zones: int) -> np.ndarray:
    """The (Z, Z) demand matrix of a TNTP trips file, diagonal included."""
    lines = _read_lines(path)
    meta, body_start = _metadata(path, lines)
    file_zones = _int_metadata(path, meta, "NUMBER OF ZONES")
    if file_zones != n_zones:
        raise TNTPError(f"{path}: <NUMBER OF ZONES> is {file_zones} but the net file has {n_zones}")
    total = None
    if "TOTAL OD FLOW" in meta:
        number, text = meta["TOTAL OD FLOW"]
        total = _number(f"{path}:{number}", text, "<TOTAL OD FLOW>")

    demand = np.zeros((n_zones, n_zones))
    seen = np.zeros((n_zones, n_zones), dtype=bool)
    origin = None
    for number, line in _body(lines, body_start):
        where = f"{path}:{number}"
        match = re.fullmatch(r"origin\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            origin = _zone(where, match.group(1), n_zones, "origin")
            continue
        if origin is None:
            raise TNTPError(f"{where}: trips entry before any 'Origin' line")
        for entry in line.split(";"):
            if not entry.strip():
                continue
            parts = entry.split(":")
            if len(parts) != 2:
                got = entry.strip()
                raise TNTPError(f"{where}: expected 'destination : trips;', got {got!r:.40}")
            destination = _zone(where, parts[0].strip(), n_zones, "destination")
            trips = _number(where, parts[1].strip(), "trips")
            if trips < 0:
                raise TNTPError(f"{where}: negative trips {trips:g}")
            if seen[origin - 1, destination - 1]:
                raise TNTPError(f"{where}: second entry for zones {origin} -> {destination}")
            seen[origin - 1, destination - 1] = True
            demand[origin - 1, destination - 1] = trips
    if total is not None and not math.isclose(demand.sum(), total, rel_tol=1e-6):
        raise TNTPError(
            f"{path}: trips sum to {demand.sum():.10g} but <TOTAL OD FLOW> is {total:.10g}"
        )
    return demand


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise TNTPError(f"{path}: cannot read: {error.strerror or type(error).__name__}") from None


def _metadata(path: Path, lines: list[str]) -> tuple[dict[str, tuple[int, str]], int]:
    """{KEY: (line number, value)} of the `<KEY> value` lines, and the index after the header."""
    meta = {}
    for index, line in enumerate(lines):
        match = re.match(r"\s*<([^>]*)>(.*)", line)
        if not match:
            continue
        key = " ".join(match.group(1).upper().split())
        if key == "END OF METADATA":
            return meta, index + 1
        meta[key] = (index + 1, match.group(2).strip())
    raise TNTPError(f"{path}: no <END OF METADATA> line")


def _int_metadata(
    path: Path, meta: dict[str, tuple[int, str]], key: str, default: int | None = None
) -> int:
    if key not in meta:
        if default is not None:
            return default
        raise TNTPError(f"{path}: missing metadata <{key}>")
    number, text = meta[key]
    value = _number(f"{path}:{number}", text, f"<{key}>")
    if value != int(value) or value < 1:
        raise TNTPError(f"{path}:{number}: <{key}> must be a positive integer, got {text!r:.40}")
    return int(value)


def _body(lines: list[str], start: int):
    """(line number, stripped text) of the non-blank, non-comment lines after the header."""
    for index in range(start, len(lines)):
        text = lines[index].strip()
        if text and not text.startswith("~"):
            yield index + 1, text


def _number(where: str, text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise TNTPError(f"{where}: {column} is not a finite number: {text!r:.40}")
    return value


def _zone(where: str, text: str, n_zones: int, role: str) -> int:
    value = _number(where, text, f"{role} zone")
    if value != int(value) or not 1 <= value <= n_zones:
        raise TNTPError(f"{where}: {role} zone {text!r:.20} is not in 1..{n_zones}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# generated grid city


def grid_network(
    rows: int,
    cols: int,
    demand_per_zone: float = 1000.0,
    seed: int = 0,
    arterial_every: int = 3,
) -> RoadNetwork:
    """A rows x cols grid city; every node is a zone. Times in minutes, flows in vehicles/hour.

    Node (r, c) has id r * cols + c + 1; each pair of 4-neighbours is joined by a link in each
    direction (2 (rows (cols - 1) + cols (rows - 1)) links, sorted by init then term node). Rows
    and columns whose index is a multiple of `arterial_every` are arterials (capacity 2400 veh/h,
    0.6 min per block) and the others local streets (900 veh/h, 1 min per block); block lengths
    vary by a factor in [0.8, 1.2] and capacities by one in [0.9, 1.1], both directions alike,
    drawn from `seed`. BPR b = 0.15, p = 4. Demand is a gravity matrix
    d_ij ~ m_i m_j exp(-manhattan(i, j) / 3 blocks), with masses m_i up to three times higher
    downtown (the grid's centre), scaled to a total of demand_per_zone * rows * cols; at the
    default demand the busiest links of a 5 x 5 grid run near capacity at UE.
    """
    sizes = (("rows", rows, 2), ("cols", cols, 2), ("arterial_every", arterial_every, 1))
    for label, value, low in sizes:
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r:.40}")
    if not np.isfinite(demand_per_zone) or demand_per_zone < 0:
        raise ValueError(f"demand_per_zone must be finite and >= 0, got {demand_per_zone!r:.40}")
    rng = np.random.default_rng(seed)
    n_nodes = rows * cols

    # undirected edges: horizontal then vertical; arterial when on an arterial row / column
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    node = r * cols + c + 1
    tail = np.concatenate([node[:, :-1].ravel(), node[:-1, :].ravel()])
    head = np.concatenate([node[:, 1:].ravel(), node[1:, :].ravel()])
    arterial = np.concatenate(
        [r[:, :-1].ravel() % arterial_every == 0, c[:-1, :].ravel() % arterial_every == 0]
    )
    length = rng.uniform(0.8, 1.2, tail.size)
    capacity = np.where(arterial, 2400.0, 900.0) * rng.uniform(0.9, 1.1, tail.size)
    free_flow_time = np.where(arterial, 0.6, 1.0) * length

    init_node = np.concatenate([tail, head])
    term_node = np.concatenate([head, tail])
    order = np.lexsort((term_node, init_node))
    undirected = np.concatenate([np.arange(tail.size)] * 2)[order]

    # gravity demand
    y, x = r.ravel(), c.ravel()
    centre_distance = np.hypot(y - (rows - 1) / 2, x - (cols - 1) / 2) / max(rows, cols)
    mass = (1.0 + 2.0 * np.exp(-8.0 * centre_distance**2)) * rng.uniform(0.75, 1.25, n_nodes)
    manhattan = np.abs(y[:, None] - y[None, :]) + np.abs(x[:, None] - x[None, :])
    gravity = np.outer(mass, mass) * np.exp(-manhattan / 3.0)
    np.fill_diagonal(gravity, 0.0)
    demand = gravity * (demand_per_zone * n_nodes / gravity.sum())

    return RoadNetwork(
        init_node=init_node[order],
        term_node=term_node[order],
        capacity=capacity[undirected],
        free_flow_time=free_flow_time[undirected],
        b=np.full(order.size, 0.15),
        power=np.full(order.size, 4.0),
        demand=demand,
        n_nodes=n_nodes,
        n_zones=n_nodes,
        first_thru_node=1,
        name=f"grid{rows}x{cols}-seed{seed}",
    )


# ---------------------------------------------------------------------------------------------
# candidate paths


@dataclass(frozen=True, eq=False)
class CandidatePaths:
    """Up to K loopless paths per OD pair with positive demand, by free-flow time.

    od_pairs: (P, 2) int, origin and destination zone ids (1-based), origin-major order.
    demand: (P,) float, the pairs' trips. path_links: (P, K, L) int, link indices (net file
    order) from origin to destination, padded with -1; L is the longest path's link count.
    path_mask: (P, K) bool, False where a pair has fewer than K paths. free_flow_time: (P, K)
    float, each path's free-flow time, nondecreasing along K, inf where masked.
    """

    od_pairs: np.ndarray
    demand: np.ndarray
    path_links: np.ndarray
    path_mask: np.ndarray
    free_flow_time: np.ndarray
    n_links: int

    @property
    def n_pairs(self) -> int:
        """Number of OD pairs P."""
        return int(self.od_pairs.shape[0])

    @property
    def k(self) -> int:
        """Paths per pair K (some masked)."""
        return int(self.path_mask.shape[1])

    def incidence(self) -> sp.csr_array:
        """Link-path incidence, shape (E, P * K): entry (e, p * K + k) is 1 if path k of pair p
        uses link e, so link flows = incidence @ path_flows.ravel()."""
        path_index, position = np.nonzero(self.path_links.reshape(self.n_pairs * self.k, -1) >= 0)
        links = self.path_links.reshape(self.n_pairs * self.k, -1)[path_index, position]
        return sp.csr_array(
            (np.ones(links.size), (links, path_index)), shape=(self.n_links, self.n_pairs * self.k)
        )


def candidate_paths(network: RoadNetwork, k: int) -> CandidatePaths:
    """The k shortest loopless paths by free-flow time of every OD pair with positive demand.

    Uses networkx.shortest_simple_paths; zones below first_thru_node are not passed through. Of
    parallel links between the same two nodes only the fastest is used. ValueError if a pair
    with demand has no path.
    """
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r:.40}")
    graph = nx.DiGraph()
    graph.add_nodes_from(range(1, network.n_nodes + 1))
    for link in np.argsort(-network.free_flow_time, kind="stable"):  # fastest parallel link wins
        graph.add_edge(
            int(network.init_node[link]),
            int(network.term_node[link]),
            free_flow_time=float(network.free_flow_time[link]),
            link=int(link),
        )
    blocked = set(range(1, min(network.first_thru_node, network.n_zones + 1)))

    pairs, paths, times = [], [], []
    for origin, destination in zip(*np.nonzero(network.demand > 0), strict=True):
        origin, destination = int(origin) + 1, int(destination) + 1
        view = graph
        if blocked:
            view = nx.subgraph_view(
                graph, filter_edge=lambda u, v, o=origin: u == o or u not in blocked
            )
        try:
            found = list(
                itertools.islice(
                    nx.shortest_simple_paths(view, origin, destination, weight="free_flow_time"), k
                )
            )
        except nx.NetworkXNoPath:
            raise ValueError(f"no path from zone {origin} to zone {destination}") from None
        links = [[graph.edges[u, v]["link"] for u, v in itertools.pairwise(path)] for path in found]
        pairs.append((origin, destination))
        paths.append(links)
        times.append([float(network.free_flow_time[chain].sum()) for chain in links])

    longest = max((len(chain) for found in paths for chain in found), default=0)
    path_links = np.full((len(pairs), k, longest), -1, dtype=np.int64)
    path_mask = np.zeros((len(pairs), k), dtype=bool)
    free_flow_time = np.full((len(pairs), k), np.inf)
    for p, (found, found_times) in enumerate(zip(paths, times, strict=True)):
        for j, (chain, time) in enumerate(zip(found, found_times, strict=True)):
            path_links[p, j, : len(chain)] = chain
            path_mask[p, j] = True
            free_flow_time[p, j] = time
    od_pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return CandidatePaths(
        od_pairs=od_pairs,
        demand=network.demand[od_pairs[:, 0] - 1, od_pairs[:, 1] - 1],
        path_links=path_links,
        path_mask=path_mask,
        free_flow_time=free_flow_time,
        n_links=network.n_links,
    )
