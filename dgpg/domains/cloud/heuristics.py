"""Heuristic dispatchers (docs/design.md, section 5), evaluated on the same scenarios as the
learners.

Each heuristic is a pure function `(key, state, config) -> actions (N, J) int32` that can be
`jit`ted. Decentralised heuristics see only an agent's candidates (and the agent's own earlier
jobs of the step); `best-fit-central` is one scheduler that sees every earlier placement of the
step, the reference line of the figures.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dgpg.domains.cloud.aligned import greedy_placement
from dgpg.domains.cloud.belief import believed
from dgpg.domains.cloud.env import EnvConfig, EnvState, server_loads
from dgpg.domains.cloud.fluid import WaterFillingModel

Heuristic = Callable[[jax.Array, EnvState, EnvConfig], jax.Array]

# Reference scales for the Tetris alignment score: the largest server's cores and memory.
_CORE_SCALE, _MEM_SCALE = 64.0, 192.0


def random_policy(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """Uniform over the K candidates."""
    shape = state.jobs.mask.shape
    return jax.random.randint(key, shape, 0, config.n_candidates, dtype=jnp.int32)


def round_robin(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """Each agent cycles through its candidates, continuing where its last job left off."""
    j = jnp.arange(config.jobs_per_step, dtype=jnp.int32)
    return (state.dispatched[:, None] + j[None, :]) % config.n_candidates


def _candidate_state(state: EnvState):
    """Per-agent views of the candidates: CPU demand, memory free, slots free, kappa, (N, K)."""
    sc = state.scenario
    cpu, mem, running = server_loads(state.servers)
    cand = sc.candidates
    return (
        cpu[cand],
        (sc.memory_gb - mem)[cand],
        (state.servers.active.shape[1] - running)[cand].astype(jnp.float32),
        sc.capacity[cand],
        sc.efficiency[cand],
        sc.cores[cand],
    )


def _sequential_over_jobs(choose, carry, state: EnvState) -> jax.Array:
    """Place each agent's J jobs in order, all agents at once; `choose(carry, job) ->
    (carry, action)` sees the agent's own earlier placements through `carry`."""
    jobs = state.jobs
    per_job = (jobs.cores.T, jobs.memory_gb.T, jobs.mask.T)  # (J, N) each
    _, actions = jax.lax.scan(choose, carry, per_job)
    return actions.T.astype(jnp.int32)


def least_loaded(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """The candidate with the lowest CPU utilisation after placing the job."""
    cpu, _, _, kappa, _, _ = _candidate_state(state)

    def choose(load, job):
        cores, _, present = job
        a = jnp.argmin((load + cores[:, None]) / kappa, axis=1)
        add = jax.nn.one_hot(a, load.shape[1]) * jnp.where(present, cores, 0.0)[:, None]
        return load + add, a

    return _sequential_over_jobs(choose, cpu, state)


def _fit_score(cores, mem, free_cpu, free_mem, free_slots):
    """Tetris alignment of the demand vector with the candidates' free (effective CPU, memory);
    infeasible candidates (memory or slot) score below every feasible one."""
    score = (cores[..., None] / _CORE_SCALE) * (free_cpu / _CORE_SCALE) + (
        mem[..., None] / _MEM_SCALE
    ) * (free_mem / _MEM_SCALE)
    feasible = (free_mem >= mem[..., None]) & (free_slots >= 1)
    # infeasible everywhere: fall back to the most free memory
    return jnp.where(feasible, score, -1e6 + free_mem / _MEM_SCALE)


def best_fit(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """Multi-resource best fit: the feasible candidate whose free effective CPU and free memory
    best align with the job's (cores, memory) demand; ties go to the lowest candidate index."""
    cpu, free_mem, free_slots, kappa, eff, _ = _candidate_state(state)

    def choose(carry, job):
        cpu, free_mem, free_slots = carry
        cores, mem, present = job
        free_cpu = kappa - cpu
        a = jnp.argmax(_fit_score(cores, mem, free_cpu, free_mem, free_slots), axis=1)
        put = jax.nn.one_hot(a, cpu.shape[1]) * present[:, None]
        return (cpu + put * cores[:, None], free_mem - put * mem[:, None],
                free_slots - put), a

    return _sequential_over_jobs(choose, (cpu, free_mem, free_slots), state)


def best_fit_central(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """Best fit by one central scheduler that visits the jobs in admission order (agent, then
    job) and sees every earlier placement of the step. Sequential by design: a reference, not a
    decentralised policy."""
    sc, jobs = state.scenario, state.jobs
    cpu, mem, running = server_loads(state.servers)
    carry = (cpu, sc.memory_gb - mem, (config.slots - running).astype(jnp.float32))
    per_job = (
        jnp.repeat(sc.candidates, config.jobs_per_step, axis=0),
        jobs.cores.reshape(-1),
        jobs.memory_gb.reshape(-1),
        jobs.mask.reshape(-1),
    )

    def choose(carry, job):
        cpu, free_mem, free_slots = carry
        cand, cores, mem, present = job
        free_cpu = sc.capacity[cand] - cpu[cand]
        score = _fit_score(cores, mem, free_cpu, free_mem[cand], free_slots[cand])
        a = jnp.argmax(score)
        j = cand[a]
        fits = (free_mem[j] >= mem) & (free_slots[j] >= 1) & present
        return (
            cpu.at[j].add(jnp.where(fits, cores, 0.0)),
            free_mem.at[j].add(jnp.where(fits, -mem, 0.0)),
            free_slots.at[j].add(jnp.where(fits, -1.0, 0.0)),
        ), a

    _, actions = jax.lax.scan(choose, carry, per_job)
    return actions.reshape(config.n_agents, config.jobs_per_step).astype(jnp.int32)


def analytical(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """Sample each job's server from the water-filling reference p* (the fluid model's guidance
    target; under `model_error` > 0, the misspecified model's)."""
    probs = WaterFillingModel(config).reference(state).probs  # (N, J, K)
    return jax.random.categorical(key, jnp.log(probs + 1e-12), axis=-1).astype(jnp.int32)


def model_greedy(key: jax.Array, state: EnvState, config: EnvConfig) -> jax.Array:
    """Each job to the candidate whose expected potential change under the aligned model
    (`dgpg.domains.cloud.aligned`, lifetime horizon) is smallest, an agent's jobs one after another:
    the alignment check of DG-PG's default model. With `model_error` > 0 it places by the
    misspecified model's belief (`dgpg.domains.cloud.belief`)."""
    return greedy_placement(believed(state, config), config, horizon="lifetime")
