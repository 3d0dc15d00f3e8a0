"""RoadNet's configuration, `RoadConfig`, and what it is checked against: the network it names.

Importable without JAX (NumPy, SciPy and NetworkX only), so that the command line checks a
RoadNet configuration (a missing or malformed TNTP file, more agents than the network has OD
pairs) before JAX loads. `dgpg.domains.roads.env` re-exports everything here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from dgpg.domains.fields import require_int, require_model_error, require_number
from dgpg.domains.roads import SPEC
from dgpg.domains.roads.network import RoadNetwork, grid_network, load_tntp

# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RoadConfig:
    """RoadNet's configuration: hashable, a static argument under `jit`."""

    domain: ClassVar[str] = "roads"

    n_agents: int = 10
    """N, dispatchers: the N OD pairs of largest demand."""
    episode_steps: int = 24
    """T, periods per episode (one day)."""
    max_candidates: int = 4
    """K, candidate paths per agent (fewer where a pair has fewer loopless paths)."""
    jobs_per_step: int = 4
    """J, platoons per agent and period at most."""
    network: str = "grid"
    """"grid" (the generated grid city) or a TNTP prefix P with files P_net.tntp, P_trips.tntp
    (a path is kept as its string)."""
    grid_rows: int = 5
    """Rows of the grid city."""
    grid_cols: int = 5
    """Columns of the grid city."""
    grid_seed: int = 0
    """Seed of the grid city's link lengths, capacities and zone masses."""
    tide_amplitude: float = 0.5
    """Relative amplitude of the daily tide of every agent's demand, in [0, 1)."""
    tide_period: float = 24.0
    """Period of the tide, steps."""
    phase_spread: float = 0.25
    """Spread of the agents' tidal phases around the day's, as a fraction of the period."""
    demand_noise: float = 0.1
    """Log-standard deviation of the lognormal (mean 1) noise on each agent's period demand."""
    demand_scale: float = 1.0
    """Multiplier of the network's demand matrix (agents and background)."""
    so_iterations: int = 40
    """Gradient-projection iterations of each period's candidate-path system optimum."""
    congestion_features: bool = True
    """Whether the agents observe last period's congestion (path travel time, marginal cost and
    its rise at last period's flows); False gives them the free-flow values instead (an
    ablation: what the actor does without the signal every agent reacts to)."""
    model_error: float = 0.0
    """E in [0, 1): how wrong the analytical model and `model-greedy` believe the links'
    free-flow times and capacities to be (`dgpg.domains.roads.belief`; 0 = exact). The
    environment ignores it. Set as `--set model.error=E`."""
    model_error_kind: str = "systematic"
    """The misspecification family: systematic (per capacity class: the links of at least the
    mean capacity believed slower and smaller by E, the others faster and larger, the sign
    reversed by an odd seed) or random (independent factors in [1 - E, 1 + E] for each link's
    free-flow time and capacity). `--set model.error_kind=NAME`."""
    model_error_seed: int = 0
    """The family's seed. `--set model.error_seed=S`."""

    def __post_init__(self) -> None:
        for name in ("n_agents", "episode_steps", "max_candidates", "jobs_per_step",
                     "so_iterations"):
            require_int(self, name, 1)
        require_int(self, "grid_rows", 2)
        require_int(self, "grid_cols", 2)
        require_int(self, "grid_seed", 0)
        require_number(self, "tide_amplitude", 0.0, 1.0, False, True)
        require_number(self, "tide_period", 0.0, math.inf, True, True)
        require_number(self, "phase_spread", 0.0, 1.0, False, False)
        require_number(self, "demand_noise", 0.0, math.inf, False, True)
        require_number(self, "demand_scale", 0.0, math.inf, True, True)
        if not isinstance(self.congestion_features, bool):
            raise ValueError(f"congestion_features must be true or false, got "
                             f"{self.congestion_features!r:.40}")
        if isinstance(self.network, os.PathLike):
            object.__setattr__(self, "network", os.fspath(self.network))
        if not isinstance(self.network, str) or not self.network:
            raise ValueError(f"network must be 'grid' or a TNTP path prefix, got "
                             f"{self.network!r:.60}")
        pairs = od_pair_count(self.network, self.grid_rows, self.grid_cols, self.grid_seed)
        if self.n_agents > pairs:
            raise ValueError(f"n_agents {self.n_agents} is more than the network's {pairs} OD "
                             f"pairs")
        require_model_error(self, tuple(SPEC.model_errors))

    @property
    def n_candidates(self) -> int:
        """K, as `dgpg.domains.cloud.env.EnvConfig` names it."""
        return self.max_candidates


@functools.lru_cache(maxsize=16)
def load_network(network: str, grid_rows: int = 5, grid_cols: int = 5,
                 grid_seed: int = 0) -> RoadNetwork:
    """The grid city (`network="grid"`) or the TNTP network with prefix `network`; ValueError
    naming the missing file."""
    if network == "grid":
        return grid_network(grid_rows, grid_cols, seed=grid_seed)
    net, trips = Path(f"{network}_net.tntp"), Path(f"{network}_trips.tntp")
    for path in (net, trips):
        if not path.is_file():
            raise ValueError(f"network {network!r:.200}: no TNTP file {path}")
    return load_tntp(net, trips)


def reachable_pairs(network: RoadNetwork) -> tuple[np.ndarray, np.ndarray]:
    """0-based origin and destination zones of the pairs with demand and a path, (P,) each,
    origin-major; zones below first_thru_node are not passed through."""
    n_nodes, n_zones = network.n_nodes, network.n_zones
    blocked = np.arange(min(network.first_thru_node - 1, n_zones))
    copy_of = np.full(n_nodes, -1)
    copy_of[blocked] = n_nodes + np.arange(blocked.size)  # a source-only copy of each
    tail = network.init_node - 1
    tail = np.where(copy_of[tail] >= 0, copy_of[tail], tail)
    size = n_nodes + blocked.size
    graph = csr_array((np.ones(network.n_links), (tail, network.term_node - 1)),
                      shape=(size, size))
    origin, destination = np.nonzero(network.demand > 0)
    if origin.size == 0:
        return origin, destination
    sources = np.unique(origin)
    distance = dijkstra(graph, directed=True, unweighted=True,
                        indices=np.where(copy_of[sources] >= 0, copy_of[sources], sources))
    reach = np.isfinite(distance[np.searchsorted(sources, origin), destination])
    return origin[reach], destination[reach]


@functools.lru_cache(maxsize=16)
def od_pair_count(network: str, grid_rows: int = 5, grid_cols: int = 5,
                  grid_seed: int = 0) -> int:
    """OD pairs with demand and at least one path: the most agents a network has."""
    return int(reachable_pairs(load_network(network, grid_rows, grid_cols, grid_seed))[0].size)


def sweep_key(env: dict) -> dict:
    """A run's env overrides as a sweep's folder key names them: a TNTP network as its file
    name and the digest of its two files, not its path (the same run has the same key wherever
    the files lie)."""
    network = env.get("network")
    if network in (None, "grid"):
        return env
    digest = hashlib.sha256()
    for suffix in ("_net.tntp", "_trips.tntp"):
        try:
            digest.update(Path(f"{network}{suffix}").read_bytes())
        except OSError:
            digest.update(b"missing")
    return {**env, "network": f"{Path(network).name}:{digest.hexdigest()[:16]}"}
