"""Random observation arrays for the actor tests."""

from __future__ import annotations

import jax

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import Observation

K, J = 8, 8
"""Candidates and job slots per agent, as in the default environment."""


def random_obs(key: jax.Array, lead: tuple[int, ...], p_job: float = 0.5) -> Observation:
    """Random observation arrays with leading axes `lead` and a random job mask."""
    kc, kj, kx, km = jax.random.split(key, 4)
    return Observation(
        candidates=jax.random.uniform(kc, (*lead, K, cloud.N_CANDIDATE_FEATURES)),
        slots=jax.random.uniform(kj, (*lead, J, cloud.N_JOB_FEATURES)),
        context=jax.random.uniform(kx, (*lead, cloud.N_CONTEXT_FEATURES)),
        slot_mask=jax.random.uniform(km, (*lead, J)) < p_job,
    )
