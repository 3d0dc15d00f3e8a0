"""Static traffic assignment: user equilibrium (UE) and system optimum (SO) link flows.

UE minimises the Beckmann potential sum_e int_0^{x_e} t_e; SO minimises the total system travel
time TSTT(x) = sum_e x_e t_e(x_e), which is UE under the marginal cost t_e(x) + x t_e'(x). Both
are solved by bi-conjugate Frank-Wolfe (Mitradjieva and Lindberg, Transportation Science 47
(2013) 280-293) with an exact line search; all-or-nothing loads come from Dijkstra's algorithm
(scipy.sparse.csgraph) from every origin zone. Flows and times are in the network's units.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.optimize import brentq
from scipy.sparse.csgraph import dijkstra

from dgpg.domains.roads.network import RoadNetwork, latency

Kind = Literal["ue", "so"]
KINDS: tuple[str, ...] = ("ue", "so")
_MAX_ALPHA = 1.0 - 1e-6  # conjugate weight bound, keeps the direction from stalling


class AssignmentNotConverged(RuntimeError):
    """The assignment reached max_iterations before the requested relative gap."""


def total_travel_time(network: RoadNetwork, flows: np.ndarray) -> float:
    """TSTT = sum_e x_e t_e(x_e) for link flows x of shape (E,), in flow x time units."""
    flows = _flows(network, flows)
    return float(flows @ latency(network, flows))


def beckmann(network: RoadNetwork, flows: np.ndarray) -> float:
    """Beckmann potential sum_e int_0^{x_e} t_e(s) ds for link flows of shape (E,)."""
    flows = _flows(network, flows)
    ratio = flows / network.capacity
    return float(
        np.sum(
            network.free_flow_time
            * flows
            * (1 + network.b / (network.power + 1) * ratio**network.power)
        )
    )


def marginal_cost(network: RoadNetwork, flows: np.ndarray) -> np.ndarray:
    """Marginal social cost t_e(x) + x t_e'(x) = t0 (1 + b (p + 1) (x / c)^p), shape (E,)."""
    flows = _flows(network, flows)
    ratio = flows / network.capacity
    return network.free_flow_time * (1 + network.b * (network.power + 1) * ratio**network.power)


def link_costs(network: RoadNetwork, flows: np.ndarray, kind: Kind = "ue") -> np.ndarray:
    """The costs travellers minimise under `kind`: latency (UE) or marginal cost (SO), (E,)."""
    _check_kind(kind)
    return (
        latency(network, _flows(network, flows)) if kind == "ue" else marginal_cost(network, flows)
    )


def all_or_nothing(network: RoadNetwork, costs: np.ndarray) -> tuple[np.ndarray, float]:
    """Load every OD pair's demand on its shortest path under link costs of shape (E,).

    Returns the link flows (E,) and sum over OD pairs of demand x shortest-path cost.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (network.n_links,) or not np.all(np.isfinite(costs)) or np.any(costs < 0):
        raise ValueError(f"costs must be finite, nonnegative and of shape ({network.n_links},)")
    return _ShortestPaths(network).load(costs)


def relative_gap(network: RoadNetwork, flows: np.ndarray, kind: Kind = "ue") -> float:
    """(sum_e x_e c_e(x) - sum_od d_od min-path cost) / sum_e x_e c_e(x), c from `kind`.

    Zero exactly at equilibrium (UE) or optimum (SO) for flows that meet the demand.
    """
    costs = link_costs(network, flows, kind)
    _, shortest = all_or_nothing(network, costs)
    return _gap(float(_flows(network, flows) @ costs), shortest)


def assign(
    network: RoadNetwork,
    kind: Kind = "ue",
    gap: float = 1e-5,
    max_iterations: int = 10_000,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """UE or SO link flows (E,), net file order, for the network's demand, to a relative gap.

    Raises AssignmentNotConverged after max_iterations line searches. With return_info, also
    returns {"kind", "iterations", "gap", "objective", "seconds"}; objective is the Beckmann
    potential (UE) or TSTT (SO).
    """
    _check_kind(kind)
    if not isinstance(gap, int | float | np.floating) or not 0 < gap < 1:
        raise ValueError(f"gap must be a number in (0, 1), got {gap!r:.40}")
    if (
        not isinstance(max_iterations, int | np.integer)
        or isinstance(max_iterations, bool)
        or max_iterations < 1
    ):
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r:.40}")
    start = time.perf_counter()
    paths = _ShortestPaths(network)
    t0, b, power, capacity = network.free_flow_time, network.b, network.power, network.capacity
    scale = b * (power + 1) if kind == "so" else b  # cost = t0 (1 + scale (x / c)^p)

    def cost(x: np.ndarray) -> np.ndarray:
        return t0 * (1 + scale * (np.maximum(x, 0) / capacity) ** power)

    def slope(x: np.ndarray) -> np.ndarray:
        """d cost / dx, the diagonal Hessian of the objective (finite stand-in where p < 1)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            value = t0 * scale * power / capacity * (np.maximum(x, 0) / capacity) ** (power - 1)
        return np.nan_to_num(value, nan=0.0, posinf=0.0)

    def derivative(tau: float, x: np.ndarray, direction: np.ndarray) -> float:
        """d/dtau of the objective at x + tau direction."""
        return float(cost(x + tau * direction) @ direction)

    flows, _ = paths.load(cost(np.zeros(network.n_links)))
    previous = before = None  # the last two targets s_1, s_2 and their steps
    previous_step = before_step = 1.0
    iterations = 0
    while True:
        costs = cost(flows)
        target, shortest = paths.load(costs)
        current_gap = _gap(float(flows @ costs), shortest)
        if current_gap <= gap:
            break
        if iterations >= max_iterations:
            raise AssignmentNotConverged(
                f"{kind.upper()} assignment on {network.name} stopped at max_iterations="
                f"{max_iterations} with relative gap {current_gap:.3g} > {gap:g}"
            )
        # --- bi-conjugate target s: FW target y combined with the last two, conjugate to them
        if previous is not None and previous_step < 1:
            if before is None or before_step == 1:
                before = None
            candidate = _conjugate_target(
                flows, target, slope(flows), previous, previous_step, before
            )
            if costs @ (candidate - flows) < 0:  # keep a descent direction
                target = candidate
        before, before_step, previous = previous, previous_step, target
        direction = target - flows
        # --- exact line search: the directional derivative cost(x + tau d) . d vanishes
        if cost(flows + direction) @ direction <= 0:
            step = 1.0
        else:
            step = brentq(derivative, 0.0, 1.0, args=(flows, direction), xtol=1e-15)
        flows = np.maximum(flows + step * direction, 0.0)
        previous_step = step
        iterations += 1
    if not return_info:
        return flows
    objective = beckmann(network, flows) if kind == "ue" else total_travel_time(network, flows)
    info = {
        "kind": kind,
        "iterations": iterations,
        "gap": current_gap,
        "objective": objective,
        "seconds": time.perf_counter() - start,
    }
    return flows, info


def _conjugate_target(
    flows: np.ndarray,
    target: np.ndarray,
    hessian: np.ndarray,
    previous: np.ndarray,
    previous_step: float,
    before: np.ndarray | None,
) -> np.ndarray:
    """s = b0 y + b1 s_1 + b2 s_2 with s - x conjugate (w.r.t. the diagonal Hessian) to the last
    two directions; with no usable s_2, the conjugate Frank-Wolfe target alpha s_1 + (1 - alpha) y.

    flows: x; target: the all-or-nothing target y; previous, before: the last two targets s_1,
    s_2; previous_step: the step taken towards s_1 (< 1). All arrays of shape (E,).
    """
    forward = hessian * (target - flows)
    last = previous - flows
    if before is None:
        denominator = last @ (hessian * (target - previous))
        alpha = (last @ forward) / denominator if denominator else 0.0
        alpha = min(max(alpha, 0.0), _MAX_ALPHA)
        return alpha * previous + (1 - alpha) * target
    last_two = previous_step * previous + (1 - previous_step) * before - flows
    denominator = last_two @ (hessian * (before - previous))
    mu = max(-(last_two @ forward) / denominator if denominator else 0.0, 0.0)
    denominator = last @ (hessian * last)
    nu = -(last @ forward) / denominator if denominator else 0.0
    nu = max(nu + mu * previous_step / (1 - previous_step), 0.0)
    return (target + nu * previous + mu * before) / (1 + mu + nu)


class _ShortestPaths:
    """Dijkstra from every origin zone on the link graph, with no passing through the zones
    below first_thru_node: each such zone's out-links leave from a copy of the node that only
    serves as a source, so the node itself can be entered (to end a trip) but not left."""

    def __init__(self, network: RoadNetwork) -> None:
        n_nodes, n_zones = network.n_nodes, network.n_zones
        blocked = np.arange(min(network.first_thru_node - 1, n_zones))  # 0-based zone nodes
        copy_of = np.full(n_nodes, -1)
        copy_of[blocked] = n_nodes + np.arange(blocked.size)
        tail = network.init_node - 1
        self.tail = np.where(copy_of[tail] >= 0, copy_of[tail], tail)
        self.head = network.term_node - 1
        self.n_graph = n_nodes + blocked.size
        self.key = self.tail * n_nodes + self.head  # parallel links share a key
        self.n_nodes = n_nodes
        self.n_links = network.n_links

        origin, destination = np.nonzero(network.demand > 0)
        self.origins = np.unique(origin)
        self.sources = np.where(copy_of[self.origins] >= 0, copy_of[self.origins], self.origins)
        self.od_row = np.searchsorted(self.origins, origin)
        self.od_destination = destination
        self.od_demand = network.demand[origin, destination]

        if self.sources.size == 0:
            return
        distance = self._dijkstra(network.free_flow_time)[0]
        unreachable = ~np.isfinite(distance[self.od_row, self.od_destination])
        if np.any(unreachable):
            first = int(np.argmax(unreachable))
            raise ValueError(
                f"{network.name}: no path from zone {origin[first] + 1} to zone "
                f"{destination[first] + 1}, which have demand"
            )

    def _dijkstra(self, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distances and predecessors (origins, graph nodes), and the cheapest link per key."""
        order = np.lexsort((costs, self.key))
        keys = self.key[order]
        first = np.concatenate([[True], keys[1:] != keys[:-1]])
        chosen = order[first]  # cheapest of each group of parallel links, sorted by key
        graph = sp.csr_array(
            (costs[chosen], (self.tail[chosen], self.head[chosen])),
            shape=(self.n_graph, self.n_graph),
        )
        distance, predecessor = dijkstra(
            graph, directed=True, indices=self.sources, return_predecessors=True
        )
        return distance, predecessor, keys[first], chosen

    def load(self, costs: np.ndarray) -> tuple[np.ndarray, float]:
        """All-or-nothing link flows (E,) and sum_od demand x shortest-path cost."""
        flows = np.zeros(self.n_links)
        if self.sources.size == 0:
            return flows, 0.0
        distance, predecessor, keys, chosen = self._dijkstra(costs)
        shortest = float(self.od_demand @ distance[self.od_row, self.od_destination])
        row, node, demand = self.od_row, self.od_destination, self.od_demand
        while row.size:  # walk every pair back to its origin one link at a time
            previous = predecessor[row, node]
            links = chosen[np.searchsorted(keys, previous * self.n_nodes + node)]
            flows += np.bincount(links, weights=demand, minlength=self.n_links)
            active = previous != self.sources[row]
            row, node, demand = row[active], previous[active], demand[active]
        return flows, shortest


def _gap(total: float, shortest: float) -> float:
    if total > 0:
        return (total - shortest) / total
    return 0.0 if shortest == 0 else np.inf  # no cost incurred: either nothing to do or unmet


def _flows(network: RoadNetwork, flows: np.ndarray) -> np.ndarray:
    flows = np.asarray(flows, dtype=np.float64)
    if flows.shape != (network.n_links,):
        raise ValueError(f"flows has shape {flows.shape}, expected ({network.n_links},)")
    return flows


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'ue' or 'so', got {kind!r:.40}")
