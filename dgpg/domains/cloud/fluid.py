"""The water-filling model of HeteroCloud: DG-PG's reference policy and guidance loss.

For each resource (CPU for CPU-intensive jobs, memory for memory-intensive jobs) the step's total
incoming demand W is water-filled over all servers given their current loads. Agent i's
reference p*_i over its K candidates is proportional to x*_j / c_j, where c_j is the number of
agents that have server j as a candidate (each gets an equal part of the server's allocation);
when every candidate's allocation is zero, the reference is the least-utilised candidate.

The guidance loss of agent i for a job of demand w holds the other agents at their reference,
x*_{-i,k} = x*_k - w p*_i(k), and lets agent i contribute w pi(k):

    G_i(pi) = sum_k (L_k + x*_{-i,k} + w pi(k))^2 / kappa_k / (w lam)  -  (the same at p*)

At pi = p*, L_k + x*_{-i,k} + w pi(k) = L_k + x*_k = lam kappa_k on every server the reference
uses, so the gradient is constant across them and vanishes on the simplex. Dividing by w lam (lam
the water level) makes dG/dpi(k) = 2 u_k / lam, of order one whatever w and N.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains.cloud.belief import believed
from dgpg.domains.cloud.env import EnvConfig, EnvState, server_loads
from dgpg.domains.cloud.waterfill import water_level
from dgpg.domains.cloud.workload import MEM_JOB


@struct.dataclass
class CloudReference:
    """Reference of every agent's job slots; arrays of shape (N, J, K) unless noted."""

    probs: jax.Array  # reference policy p* over candidates
    base: jax.Array  # L_k + x*_{-i,k}: load on candidate k with the others at their reference
    capacity: jax.Array  # kappa_k of the job's resource
    demand: jax.Array  # (N, J) w, the job's demand in its resource
    scale: jax.Array  # (N, J) normaliser w * lam
    mask: jax.Array  # (N, J) bool, slots holding a job


def _reference_for_resource(load, capacity, total, candidates, coverage):
    """Water-fill one resource; per-agent reference (N, K), candidate loads x*, level."""
    lam = water_level(load, capacity, total)
    x = jnp.where(total > 0, jnp.maximum(0.0, lam * capacity - load), 0.0)
    share = (x / jnp.maximum(coverage, 1.0))[candidates]  # (N, K)
    util = (load / capacity)[candidates]
    fallback = jax.nn.one_hot(jnp.argmin(util, axis=1), candidates.shape[1])
    total_share = jnp.sum(share, axis=1, keepdims=True)
    probs = jnp.where(total_share > 0, share / jnp.maximum(total_share, 1e-12), fallback)
    return probs, load[candidates], x[candidates], capacity[candidates], lam


@dataclass(frozen=True)
class WaterFillingModel:
    """`AnalyticalModel` for HeteroCloud (see module docstring)."""

    config: EnvConfig

    def reference(self, state: EnvState, probs: jax.Array | None = None) -> CloudReference:
        """The water-filling reference; `probs` is not used (the others are at p*)."""
        state = believed(state, self.config)  # the truth unless config.model_error > 0
        sc, jobs = state.scenario, state.jobs
        cpu, mem, _ = server_loads(state.servers)
        is_mem = jobs.type == MEM_JOB
        demand = jnp.where(is_mem, jobs.memory_gb, jobs.cores)  # (N, J)
        w_cpu = jnp.sum(jnp.where(jobs.mask & ~is_mem, demand, 0.0))
        w_mem = jnp.sum(jnp.where(jobs.mask & is_mem, demand, 0.0))
        per_resource = [
            _reference_for_resource(cpu, sc.capacity, w_cpu, sc.candidates, sc.coverage),
            _reference_for_resource(mem, sc.memory_gb, w_mem, sc.candidates, sc.coverage),
        ]
        # stack CPU (index 0) and memory (index 1), then pick each job's resource
        probs, load, x, cap, lam = (jnp.stack(v) for v in zip(*per_resource, strict=True))
        r = jobs.type  # (N, J)
        agent = jnp.arange(jobs.type.shape[0])[:, None]

        def per_job(v):  # (2, N, K) -> (N, J, K)
            return v[r, agent]

        p_job = per_job(probs)
        base = per_job(load) + per_job(x) - demand[..., None] * p_job
        level = jnp.maximum(lam[r], 1e-2)
        return CloudReference(
            probs=p_job,
            base=base,
            capacity=per_job(cap),
            demand=demand,
            scale=jnp.maximum(demand, 1e-3) * level,
            mask=jobs.mask,
        )

    def guidance_loss(self, probs: jax.Array, reference: CloudReference) -> jax.Array:
        """Mean over present jobs of G_i(pi) - G_i(p*) (so it is 0 at the reference);
        `probs` (N, J, K) is the policy over candidates."""
        ref = jax.lax.stop_gradient(reference)

        def g(p):
            occupied = ref.base + ref.demand[..., None] * p
            return jnp.sum(occupied**2 / ref.capacity, axis=-1) / ref.scale

        n = jnp.maximum(jnp.sum(ref.mask), 1)
        return jnp.sum(jnp.where(ref.mask, g(probs) - g(ref.probs), 0.0)) / n
