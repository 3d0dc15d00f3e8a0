"""HeteroCloud scenario: the cluster an episode runs on (docs/design.md, section 3.1).

A scenario is drawn from a key and fixed for the episode: three hardware generations, balanced
overlapping candidate neighbourhoods, per-agent arrival-rate multipliers and CPU-job shares, and
the tidal phase.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains.cloud.parameters import CPU_SHARE, GENERATIONS  # noqa: F401 (GENERATIONS re-exported)


@struct.dataclass
class Scenario:
    """The cluster of one episode. M servers, N agents, K candidates per agent."""

    cores: jax.Array  # (M,) float32, physical cores C_j
    memory_gb: jax.Array  # (M,) float32, memory G_j
    efficiency: jax.Array  # (M,) float32, CPU efficiency e_j in [0.70, 1.08]
    generation: jax.Array  # (M,) int32 in {1, 2, 3}
    candidates: jax.Array  # (N, K) int32 server indices of each agent's neighbourhood
    coverage: jax.Array  # (M,) float32, number of agents that have server j as a candidate
    rate_multiplier: jax.Array  # (N,) float32, rho_i ~ U[0.8, 1.2]
    cpu_share: jax.Array  # (N,) float32, share of CPU-intensive jobs of agent i
    phase: jax.Array  # () float32, tidal phase phi in steps (with a trace: the trace's time
    # at the episode's first step, in steps from its start)

    @property
    def capacity(self) -> jax.Array:
        """Effective CPU capacity kappa_j = C_j * e_j, shape (M,)."""
        return self.cores * self.efficiency


def generation_counts(n_servers: int) -> tuple[int, int, int]:
    """Servers per generation for 30/40/30 % proportions, summing to n_servers."""
    n1 = round(0.3 * n_servers)
    n3 = round(0.3 * n_servers)
    return n1, n_servers - n1 - n3, n3


def balanced_candidates(key: jax.Array, n_agents: int, n_servers: int, k: int) -> jax.Array:
    """(N, K) candidate sets in which every server appears in nearly the same number of sets.

    Servers sit on a ring in random order; agent i takes the ring positions
    (servers_per_agent * i + o) mod M for K distinct offsets o, half of them even and half odd.
    With M = 2N every offset visits each position of its parity exactly once, so each server is a
    candidate of exactly K/2 agents, and neighbourhoods overlap at random.
    """
    k_perm, k_even, k_odd = jax.random.split(key, 3)
    ring = jax.random.permutation(k_perm, n_servers)
    if k >= n_servers:
        offsets = jnp.arange(n_servers)
    else:
        evens = jnp.arange(0, n_servers, 2)
        odds = jnp.arange(1, n_servers, 2)
        n_even = k // 2
        offsets = jnp.concatenate(
            [
                jax.random.choice(k_even, evens, (n_even,), replace=False),
                jax.random.choice(k_odd, odds, (k - n_even,), replace=False),
            ]
        )
    stride = n_servers // n_agents
    positions = (stride * jnp.arange(n_agents)[:, None] + offsets[None, :]) % n_servers
    return ring[positions].astype(jnp.int32)


def sample_scenario(
    key: jax.Array, n_agents: int, n_servers: int, n_candidates: int,
    phases: tuple[float, float],
) -> Scenario:
    """Draw a scenario (pure; shapes fixed by the integer arguments). `phases` is the range
    [low, high) of the phase: [0, period) for the tide, the split's window starts (in steps
    from the trace's start) for a trace."""
    k_gen, k_eff, k_cand, k_rho, k_share, k_phase = jax.random.split(key, 6)
    counts = generation_counts(n_servers)
    gen_idx = jnp.concatenate([jnp.full((c,), g, jnp.int32) for g, c in enumerate(counts)])
    gen_idx = jax.random.permutation(k_gen, gen_idx)
    table = jnp.asarray([g[1:] for g in GENERATIONS], jnp.float32)  # (3, 4)
    cores, memory, e_lo, e_hi = (table[gen_idx, c] for c in range(4))
    efficiency = e_lo + (e_hi - e_lo) * jax.random.uniform(k_eff, (n_servers,))

    candidates = balanced_candidates(k_cand, n_agents, n_servers, n_candidates)
    coverage = jnp.zeros(n_servers, jnp.float32).at[candidates.reshape(-1)].add(1.0)

    rho = jax.random.uniform(k_rho, (n_agents,), minval=0.8, maxval=1.2)
    # Per-agent CPU shares around 0.6, re-centred so that the arrival-weighted share is exactly 0.6.
    d = jax.random.uniform(k_share, (n_agents,), minval=-0.1, maxval=0.1)
    share = CPU_SHARE + d - jnp.sum(rho * d) / jnp.sum(rho)

    return Scenario(
        cores=cores,
        memory_gb=memory,
        efficiency=efficiency.astype(jnp.float32),
        generation=gen_idx + 1,
        candidates=candidates,
        coverage=coverage,
        rate_multiplier=rho.astype(jnp.float32),
        cpu_share=share.astype(jnp.float32),
        phase=jax.random.uniform(k_phase, (), minval=phases[0], maxval=phases[1]),
    )
