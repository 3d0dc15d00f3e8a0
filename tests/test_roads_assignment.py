"""Road networks and static traffic assignment: TNTP loading, Braess, Sioux Falls, grid cities."""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from scipy.integrate import trapezoid

from dgpg.domains.roads.assignment import (
    AssignmentNotConverged,
    assign,
    beckmann,
    link_costs,
    marginal_cost,
    relative_gap,
    total_travel_time,
)
from dgpg.domains.roads.network import (
    RoadNetwork,
    TNTPError,
    candidate_paths,
    grid_network,
    latency,
    load_tntp,
)

TNTP_DIR = Path(
    os.environ.get(
        "DGPG_TNTP_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "siouxfalls",
    )
)
SIOUX_FALLS_NET = TNTP_DIR / "SiouxFalls_net.tntp"
SIOUX_FALLS_TRIPS = TNTP_DIR / "SiouxFalls_trips.tntp"
SIOUX_FALLS_UE_BECKMANN = 42.313e5  # best-known UE objective, in the data's units
GAP = 1e-5

# Braess's network: s = 1, t = 2, a = 3, b = 4; demand 6 from s to t. Latencies 5 + 10x (s->a,
# b->t), 50 + x (a->t, s->b), 5 + x (a->b): the classic 10x / 50 + x / 10 + x instance with 5
# moved from the bridge onto the first and last links, so that every free-flow time is positive
# and every path costs the classic value plus 5. UE: 2 on each path, cost 97. SO: 3 on each outer
# path, none on the bridge, cost 88.
BRAESS_LINKS = [(1, 3, 5.0, 10.0), (3, 2, 50.0, 1.0), (1, 4, 50.0, 1.0), (4, 2, 5.0, 10.0)]
BRAESS_LINKS.append((3, 4, 5.0, 1.0))
BRAESS_PATHS = {(0, 1), (2, 3), (0, 4, 3)}  # link indices s-a-t, s-b-t, s-a-b-t


def braess() -> RoadNetwork:
    """Affine latencies t0 + slope x in BPR form: power 1, b = 0.15, capacity 0.15 t0 / slope."""
    init_node, term_node, t0, slope = np.array(BRAESS_LINKS).T
    demand = np.zeros((2, 2))
    demand[0, 1] = 6.0
    return RoadNetwork(
        init_node=init_node,
        term_node=term_node,
        capacity=0.15 * t0 / slope,
        free_flow_time=t0,
        b=np.full(5, 0.15),
        power=np.ones(5),
        demand=demand,
        n_nodes=4,
        n_zones=2,
        name="braess",
    )


def braess_tntp(tmp_path: Path, net: str | None = None, trips: str | None = None):
    """Braess's network written as TNTP files (optionally replaced texts); their paths."""
    rows = "\n".join(
        f"\t{i}\t{j}\t{0.15 * t0 / slope:.17g}\t1\t{t0:g}\t0.15\t1\t0\t0\t1\t;"
        for i, j, t0, slope in BRAESS_LINKS
    )
    net = net if net is not None else BRAESS_NET.format(rows=rows)
    trips = trips if trips is not None else BRAESS_TRIPS
    net_path, trips_path = tmp_path / "Braess_net.tntp", tmp_path / "Braess_trips.tntp"
    net_path.write_text(net)
    trips_path.write_text(trips)
    return net_path, trips_path


BRAESS_NET = """<NUMBER OF ZONES> 2
<NUMBER OF NODES> 4
<FIRST THRU NODE> 1
<NUMBER OF LINKS> 5
<END OF METADATA>

~\tinit_node\tterm_node\tcapacity\tlength\tfree_flow_time\tb\tpower\tspeed\ttoll\tlink_type\t;
{rows}
"""
BRAESS_TRIPS = """<NUMBER OF ZONES> 2
<TOTAL OD FLOW> 6.0
<END OF METADATA>

Origin \t1
    1 :      0.0;     2 :      6.0;

Origin \t2
    1 :      0.0;     2 :      0.0;
"""


def path_cost(network: RoadNetwork, flows: np.ndarray, links) -> float:
    return float(latency(network, flows)[list(links)].sum())


def networkx_gap(network: RoadNetwork, flows: np.ndarray, costs: np.ndarray) -> float:
    """Relative gap recomputed with NetworkX's Dijkstra (all nodes may be passed through)."""
    graph = nx.DiGraph()
    for tail, head, cost in zip(network.init_node, network.term_node, costs, strict=True):
        graph.add_edge(int(tail), int(head), cost=float(cost))
    shortest = 0.0
    for origin in range(1, network.n_zones + 1):
        distance = nx.single_source_dijkstra_path_length(graph, origin, weight="cost")
        for destination in np.nonzero(network.demand[origin - 1])[0] + 1:
            shortest += network.demand[origin - 1, destination - 1] * distance[int(destination)]
    total = float(flows @ costs)
    return (total - shortest) / total


# --- network data and latency


def test_latency_is_bpr_and_reproduces_braess_affine_costs():
    network = braess()
    flows = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = [t0 + slope * x for (_, _, t0, slope), x in zip(BRAESS_LINKS, flows, strict=True)]
    np.testing.assert_allclose(latency(network, flows), expected)
    assert network.n_links == 5 and network.total_demand == 6.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"capacity": np.array([1.0, 1.0, 0.0, 1.0, 1.0])}, "capacity must be positive"),
        ({"free_flow_time": np.full(5, -1.0)}, "free_flow_time must be nonnegative"),
        ({"term_node": np.array([3, 2, 4, 2, 5])}, "term_node must lie in 1..4"),
        ({"b": np.ones(4)}, "b has shape (4,)"),
        ({"demand": np.array([[0.0, -1.0], [0.0, 0.0]])}, "nonnegative"),
        ({"demand": np.ones((2, 2))}, "zero diagonal"),
        ({"n_zones": 5}, "n_zones (5) exceeds n_nodes"),
    ],
)
def test_network_rejects_bad_values(change, message):
    fields = {name: getattr(braess(), name) for name in RoadNetwork.__dataclass_fields__}
    with pytest.raises(ValueError) as error:
        RoadNetwork(**(fields | change))
    assert message in str(error.value) and "\n" not in str(error.value)


# --- Braess's network: closed-form UE and SO


def test_braess_user_equilibrium_and_system_optimum():
    network = braess()
    ue, ue_info = assign(network, "ue", gap=1e-10, return_info=True)
    np.testing.assert_allclose(ue, [4, 2, 2, 4, 2], atol=1e-4)
    for links in BRAESS_PATHS:
        assert path_cost(network, ue, links) == pytest.approx(97, abs=1e-3)
    assert total_travel_time(network, ue) == pytest.approx(6 * 97, rel=1e-8)
    assert relative_gap(network, ue, "ue") <= 1e-10 and ue_info["gap"] <= 1e-10

    so, so_info = assign(network, "so", gap=1e-10, return_info=True)
    np.testing.assert_allclose(so, [3, 3, 3, 3, 0], atol=1e-4)
    for links in [(0, 1), (2, 3)]:
        assert path_cost(network, so, links) == pytest.approx(88, abs=1e-3)
    assert total_travel_time(network, so) == pytest.approx(6 * 88, rel=1e-8)
    # SO: equal marginal costs on the used paths, higher on the unused bridge path
    marginal = marginal_cost(network, so)
    assert marginal[[0, 1]].sum() == pytest.approx(marginal[[2, 3]].sum(), rel=1e-6)
    assert marginal[[0, 4, 3]].sum() > marginal[[0, 1]].sum() + 1
    assert so_info["iterations"] >= 1 and so_info["seconds"] >= 0


def test_beckmann_is_the_integral_of_latency():
    network = grid_network(3, 3, seed=1)
    flows = np.linspace(0, 2000, network.n_links)
    grid = np.linspace(0, 1, 20001)[:, None] * flows  # trapezoid rule along the ray 0 -> x
    integral = np.sum(trapezoid(latency(network, grid), grid, axis=0))
    assert beckmann(network, flows) == pytest.approx(integral, rel=1e-8)


def test_zones_below_first_thru_node_are_not_passed_through():
    # zones 1-3, thru node 4: the short route 1 -> 2 -> 3 passes through zone 2
    def network(first_thru_node: int) -> RoadNetwork:
        demand = np.zeros((3, 3))
        demand[0, 2], demand[0, 1], demand[1, 2] = 10.0, 1.0, 1.0
        return RoadNetwork(
            init_node=np.array([1, 2, 1, 4]),
            term_node=np.array([2, 3, 4, 3]),
            capacity=np.full(4, 1e9),
            free_flow_time=np.array([1.0, 1.0, 5.0, 5.0]),
            b=np.zeros(4),
            power=np.zeros(4),
            demand=demand,
            n_nodes=4,
            n_zones=3,
            first_thru_node=first_thru_node,
        )

    np.testing.assert_allclose(assign(network(4), "ue"), [1, 1, 10, 10])
    np.testing.assert_allclose(assign(network(1), "ue"), [11, 11, 0, 0])
    paths = candidate_paths(network(4), k=3)
    pair = [tuple(p) for p in paths.od_pairs].index((1, 3))
    assert paths.path_mask[pair].tolist() == [True, False, False]
    assert paths.path_links[pair, 0].tolist() == [2, 3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "nash"}, "kind must be 'ue' or 'so'"),
        ({"gap": 0.0}, "gap must be a number in (0, 1)"),
        ({"gap": 2.0}, "gap must be a number in (0, 1)"),
        ({"max_iterations": 0}, "max_iterations must be a positive integer"),
    ],
)
def test_assign_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as error:
        assign(braess(), **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_assign_raises_when_max_iterations_is_reached():
    with pytest.raises(AssignmentNotConverged, match="max_iterations=2"):
        assign(grid_network(5, 5), "so", gap=1e-9, max_iterations=2)


# --- Sioux Falls


@pytest.fixture(scope="module")
def sioux_falls() -> RoadNetwork:
    if not SIOUX_FALLS_NET.is_file() or not SIOUX_FALLS_TRIPS.is_file():
        pytest.skip(f"Sioux Falls TNTP files not found in {TNTP_DIR} (set DGPG_TNTP_DIR)")
    return load_tntp(SIOUX_FALLS_NET, SIOUX_FALLS_TRIPS)


@pytest.fixture(scope="module")
def sioux_falls_solutions(sioux_falls):
    return {kind: assign(sioux_falls, kind, gap=GAP, return_info=True) for kind in ("ue", "so")}


def test_sioux_falls_loads(sioux_falls):
    network = sioux_falls
    assert (network.n_nodes, network.n_links, network.n_zones) == (24, 76, 24)
    assert network.first_thru_node == 1 and network.name == "SiouxFalls"
    assert network.total_demand == pytest.approx(360_600)
    assert (network.init_node[0], network.term_node[0]) == (1, 2)
    assert network.capacity[0] == pytest.approx(25900.20064)
    assert network.free_flow_time[0] == 6
    assert np.all(network.b == 0.15) and np.all(network.power == 4)
    assert network.demand[0, 1] == 100 and network.demand[0, 9] == 1300


def test_sioux_falls_user_equilibrium(sioux_falls, sioux_falls_solutions):
    network = sioux_falls
    flows, info = sioux_falls_solutions["ue"]
    assert info["gap"] <= GAP and relative_gap(network, flows, "ue") <= GAP
    assert beckmann(network, flows) == pytest.approx(SIOUX_FALLS_UE_BECKMANN, rel=1e-3)
    assert info["objective"] == pytest.approx(beckmann(network, flows))
    # Wardrop: demand x shortest-path time sums to the TSTT (used paths are shortest)
    assert networkx_gap(network, flows, latency(network, flows)) <= GAP
    assert flows.sum() > 0 and np.all(flows >= 0)


def test_sioux_falls_system_optimum(sioux_falls, sioux_falls_solutions):
    network = sioux_falls
    ue, _ = sioux_falls_solutions["ue"]
    so, info = sioux_falls_solutions["so"]
    assert info["gap"] <= GAP and relative_gap(network, so, "so") <= GAP
    # equal marginal costs on used paths, checked with an independent shortest-path code
    assert networkx_gap(network, so, marginal_cost(network, so)) <= GAP
    assert total_travel_time(network, so) < total_travel_time(network, ue)
    assert beckmann(network, ue) < beckmann(network, so)
    assert info["objective"] == pytest.approx(total_travel_time(network, so))


# --- TNTP errors


def test_tntp_round_trip(tmp_path):
    network = load_tntp(*braess_tntp(tmp_path))
    reference = braess()
    for field in ("init_node", "term_node", "capacity", "free_flow_time", "b", "power", "demand"):
        np.testing.assert_allclose(getattr(network, field), getattr(reference, field))
    assert (network.n_nodes, network.n_zones, network.name) == (4, 2, "Braess")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def _net_text(tmp_path: Path) -> str:
    return braess_tntp(tmp_path)[0].read_text()


@pytest.mark.parametrize(
    "corrupt, which, message",
    [
        (lambda net, trips: (net[: net.rindex("0.15\t1\t0")], trips), "net", ":12: expected 10"),
        (lambda net, trips: (_replace(net, "LINKS> 5", "LINKS> 6"), trips), "net", "5 link rows"),
        (lambda net, trips: (_replace(net, "\t0.15\t1", "\tabc\t1"), trips), "net", ":8: b is not"),
        (lambda net, trips: (_replace(net, "\t1\t3\t", "\t1\t9\t"), trips), "net", ":8: term node"),
        (lambda net, trips: (_replace(net, "<NUMBER OF LINKS> 5\n", ""), trips), "net", "missing"),
        (lambda net, trips: (_replace(net, "<END OF METADATA>", ""), trips), "net", "no <END"),
        (lambda net, trips: (net, _replace(trips, "Origin \t2", "Origin \t3")), "trips", ":8: ori"),
        (lambda net, trips: (net, _replace(trips, "2 :      6.0", "7 : 6.0")), "trips", ":6: des"),
        (lambda net, trips: (net, _replace(trips, "FLOW> 6.0", "FLOW> 7.0")), "trips", "sum to 6"),
        (lambda net, trips: (net, _replace(trips, "6.0;", "six;")), "trips", ":6: trips is not"),
    ],
    ids=[
        "truncated",
        "link-count",
        "non-numeric",
        "node-id",
        "no-link-count",
        "no-end-of-metadata",
        "origin-zone",
        "destination-zone",
        "total-flow",
        "non-numeric-trips",
    ],
)
def test_malformed_tntp_files_raise_one_line_errors(tmp_path, corrupt, which, message):
    net, trips = corrupt(_net_text(tmp_path), BRAESS_TRIPS)
    net_path, trips_path = braess_tntp(tmp_path, net, trips)
    with pytest.raises(TNTPError) as error:
        load_tntp(net_path, trips_path)
    text = str(error.value)
    assert str(net_path if which == "net" else trips_path) in text
    assert message in text and "\n" not in text


def test_missing_tntp_files_raise_one_line_errors(tmp_path):
    net_path, trips_path = braess_tntp(tmp_path)
    for paths, missing in (
        ((tmp_path / "absent_net.tntp", trips_path), tmp_path / "absent_net.tntp"),
        ((net_path, tmp_path / "absent_trips.tntp"), tmp_path / "absent_trips.tntp"),
    ):
        with pytest.raises(TNTPError) as error:
            load_tntp(*paths)
        assert str(missing) in str(error.value) and "cannot read" in str(error.value)
        assert "\n" not in str(error.value)


# --- generated grid city


def test_grid_network_is_deterministic_and_two_way():
    rows, cols = 4, 6
    first, again, other = (grid_network(rows, cols, seed=s) for s in (3, 3, 4))
    for field in ("init_node", "term_node", "capacity", "free_flow_time", "demand"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert not np.array_equal(first.capacity, other.capacity)
    assert first.n_links == 2 * (rows * (cols - 1) + cols * (rows - 1))
    assert first.n_zones == first.n_nodes == rows * cols
    assert first.total_demand == pytest.approx(1000.0 * rows * cols)
    links = {
        (i, j): e for e, (i, j) in enumerate(zip(first.init_node, first.term_node, strict=True))
    }
    for (i, j), e in links.items():
        assert abs(i - j) in (1, cols)
        reverse = links[(j, i)]
        assert first.capacity[e] == first.capacity[reverse]
        assert first.free_flow_time[e] == first.free_flow_time[reverse]


def test_grid_network_user_equilibrium_and_system_optimum():
    network = grid_network(5, 5)
    ue = assign(network, "ue", gap=GAP)
    so = assign(network, "so", gap=GAP)
    assert relative_gap(network, ue, "ue") <= GAP and relative_gap(network, so, "so") <= GAP
    assert total_travel_time(network, so) <= total_travel_time(network, ue)
    assert beckmann(network, ue) <= beckmann(network, so)
    assert np.max(ue / network.capacity) > 0.8  # the default demand congests the grid
    np.testing.assert_allclose(link_costs(network, so, "so"), marginal_cost(network, so))


# --- candidate paths


def test_candidate_paths_on_braess():
    network = braess()
    paths = candidate_paths(network, k=3)
    assert paths.od_pairs.tolist() == [[1, 2]] and paths.demand.tolist() == [6.0]
    assert paths.path_mask.tolist() == [[True, True, True]]
    found = {tuple(int(e) for e in chain if e >= 0) for chain in paths.path_links[0]}
    assert found == BRAESS_PATHS
    for chain in paths.path_links[0]:
        chain = chain[chain >= 0]
        assert network.init_node[chain[0]] == 1 and network.term_node[chain[-1]] == 2
        assert np.all(network.term_node[chain[:-1]] == network.init_node[chain[1:]])
    assert np.all(np.diff(paths.free_flow_time[0]) >= 0)
    np.testing.assert_allclose(
        paths.free_flow_time[0],
        [network.free_flow_time[chain[chain >= 0]].sum() for chain in paths.path_links[0]],
    )


def test_candidate_paths_pad_missing_paths_and_give_link_flows():
    network = braess()
    paths = candidate_paths(network, k=5)
    assert paths.path_links.shape == (1, 5, 3) and paths.k == 5 and paths.n_pairs == 1
    assert paths.path_mask.tolist() == [[True, True, True, False, False]]
    assert np.all(paths.path_links[0, 3:] == -1) and np.all(np.isinf(paths.free_flow_time[0, 3:]))
    path_flows = np.where(paths.path_mask, 2.0, 0.0)  # the UE: 2 on each path
    np.testing.assert_allclose(paths.incidence() @ path_flows.ravel(), [4, 2, 2, 4, 2])


def test_candidate_paths_on_a_grid_cover_every_od_pair():
    network = grid_network(3, 4, seed=2)
    paths = candidate_paths(network, k=4)
    assert paths.n_pairs == int(np.count_nonzero(network.demand))
    assert np.all(paths.path_mask)  # a grid has many paths between any two nodes
    assert np.all(np.diff(paths.free_flow_time, axis=1) >= -1e-12)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        candidate_paths(network, k=0)
