"""The local observation every domain gives its agents: the actor's input, identical for every
algorithm. Each agent makes J decisions per step (jobs to place, platoons to route), each a
choice among its K candidates (servers, paths)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Observation:
    """Local observations of all agents; the feature sizes are the domain's."""

    candidates: jax.Array  # (N, K, Fc) per-candidate features
    jobs: jax.Array  # (N, J, Fj) per-decision features (zero where no decision is pending)
    context: jax.Array  # (N, Fx) shared features (time of day, load)
    job_mask: jax.Array  # (N, J) bool, True where a decision is pending


def pair_views(obs: Observation) -> tuple[jax.Array, jax.Array, list[jax.Array]]:
    """The pieces of a scorer's pair features: the candidate (..., N, 1, K, Fc) and job
    (..., N, J, 1, Fj) views, and the raw features of every (agent, job, candidate) triple,
    broadcast: [candidate, job, context], each (..., N, J, K, F).
    A domain's `pair_features` concatenates the list with whatever it derives from the views."""
    cand = obs.candidates[..., None, :, :]
    job = obs.jobs[..., :, None, :]
    ctx = obs.context[..., None, None, :]
    shape = jnp.broadcast_shapes(cand.shape[:-1], job.shape[:-1])
    raw = [jnp.broadcast_to(x, (*shape, x.shape[-1])) for x in (cand, job, ctx)]
    return cand, job, raw
