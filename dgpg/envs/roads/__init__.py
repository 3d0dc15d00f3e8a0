"""RoadNet: road networks with BPR latencies, loaded from TNTP files or generated as grid cities."""

from dgpg.envs.roads.network import (
    CandidatePaths,
    RoadNetwork,
    TNTPError,
    candidate_paths,
    grid_network,
    latency,
    load_tntp,
)

__all__ = [
    "CandidatePaths",
    "RoadNetwork",
    "TNTPError",
    "candidate_paths",
    "grid_network",
    "latency",
    "load_tntp",
]
