"""The local observation every domain gives its agents: the actor's input, identical for every
algorithm. Each agent makes J decisions per step (jobs to place, platoons to route), each a
choice among its K candidates (servers, paths)."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class Observation:
    """Local observations of all agents; the feature sizes are the domain's."""

    candidates: jax.Array  # (N, K, Fc) per-candidate features
    jobs: jax.Array  # (N, J, Fj) per-decision features (zero where no decision is pending)
    context: jax.Array  # (N, Fx) shared features (time of day, load)
    job_mask: jax.Array  # (N, J) bool, True where a decision is pending
