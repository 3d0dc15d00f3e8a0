"""HeteroCloud: N dispatchers place jobs on M = 2N heterogeneous servers (docs/design.md, section
3).

The environment is a set of pure functions in the style of JaxMARL:

    state = reset(key, config)                        # warm cluster, first jobs drawn
    obs = observe(state, config)                      # per-agent local observations
    state, reward, metrics = step(key, state, actions, config)

`config` is a hashable `EnvConfig` (a static argument under `jit`); `state` is a pytree with
fixed shapes, so `jit` and `vmap` apply directly. An episode lasts `config.episode_steps` steps.

Within a step: the pending jobs are admitted in the fixed order (agent, then job) to the chosen
candidate servers when memory and a slot are free (rejected otherwise); the team reward is
computed on the loads after admission; every server then runs processor sharing for one step;
finished jobs leave; the next step's jobs arrive.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dgpg.domains.cloud import trace as traces
from dgpg.domains.cloud import workload
from dgpg.domains.cloud.config import (  # noqa: F401 (re-exported)
    INT32_MAX,
    LAMBDA_BAR,
    MAX_WEIGHT,
    EnvConfig,
    mean_job_memory_gb,
    mean_work,
    shed_fraction,
)
from dgpg.domains.cloud.parameters import CPU_SHARE
from dgpg.domains.cloud.scenario import Scenario, sample_scenario
from dgpg.domains.cloud.workload import sample_arrival_counts, sample_job_fields, tide
from dgpg.domains.observation import Observation, pair_views

N_CANDIDATE_FEATURES = 9
N_JOB_FEATURES = 6
N_CONTEXT_FEATURES = 4


@struct.dataclass
class Jobs:
    """The jobs waiting to be dispatched this step, one row per agent: arrays of shape (N, J)."""

    type: jax.Array  # int32, 0 CPU-intensive / 1 memory-intensive
    cores: jax.Array  # float32 cores
    memory_gb: jax.Array  # float32 GB
    work: jax.Array  # float32 steps at efficiency 1.0
    mask: jax.Array  # bool, True where a job is present
    shed: jax.Array  # () int32, arrivals beyond J this step (dropped before dispatch)


@struct.dataclass
class Servers:
    """Running jobs in fixed slot arrays of shape (M, S)."""

    active: jax.Array  # bool
    cores: jax.Array  # float32 cores demanded
    memory_gb: jax.Array  # float32 GB held
    remaining: jax.Array  # float32 remaining work (steps at efficiency 1.0)
    start: jax.Array  # int32 step at which the job was admitted
    ideal: jax.Array  # float32 steps the job would take alone on its server (work / e)


@struct.dataclass
class EnvState:
    scenario: Scenario
    servers: Servers
    jobs: Jobs
    t: jax.Array  # () int32, step index within the episode
    dispatched: jax.Array  # (N,) int32, jobs each agent has dispatched so far (for round-robin)
    measured_efficiency: jax.Array  # (M,) float32, each server's CPU efficiency as last step's
    # processing measured it (work done per job over the job's CPU share), 0 where none ran


# --------------------------------------------------------------------------- workload per step


def _draw_jobs(key: jax.Array, t: jax.Array, scenario: Scenario, config: EnvConfig) -> Jobs:
    k_n, k_jobs = jax.random.split(key)
    if config.trace == traces.NONE:
        n = sample_arrival_counts(
            k_n, t, scenario.phase, scenario.rate_multiplier, config.arrival_rate,
            config.tide_period, config.tide_amplitude, config.tide_noise,
        )
        share = scenario.cpu_share
    else:
        n, share = workload.sample_trace_arrivals(
            k_n, t, scenario.phase, scenario.rate_multiplier, scenario.cpu_share,
            config.arrival_rate, config.trace, config.tide_period)
    J = config.jobs_per_step
    kept = jnp.minimum(n, J)
    fields = sample_job_fields(k_jobs, (config.n_agents, J), share[:, None])
    return Jobs(
        type=fields["type"], cores=fields["cores"], memory_gb=fields["memory_gb"],
        work=fields["work"], mask=jnp.arange(J)[None, :] < kept[:, None],
        shed=jnp.sum(n - kept),
    )


def _warm_servers(key: jax.Array, scenario: Scenario, config: EnvConfig) -> Servers:
    """Servers pre-loaded in proportion to capacity, near the load's level at step 0 (the tide's,
    or the trace's CPU and memory factors weighted by the cluster-wide job mix)."""
    M, S = config.n_servers, config.slots
    k_jobs, k_age = jax.random.split(key)
    fields = sample_job_fields(k_jobs, (M, S))
    if config.trace == traces.NONE:
        load = tide(0.0, scenario.phase, config.tide_period, config.tide_amplitude)
    else:
        cpu, memory = workload.trace_load(0.0, scenario.phase, config.trace, config.tide_period)
        load = CPU_SHARE * cpu + (1.0 - CPU_SHARE) * memory
    level = config.warm_utilisation * load
    target = level * scenario.capacity
    cum_cores = jnp.cumsum(fields["cores"], axis=1)
    cum_mem = jnp.cumsum(fields["memory_gb"], axis=1)
    active = (cum_cores <= target[:, None]) & (cum_mem <= scenario.memory_gb[:, None])
    done_frac = jax.random.uniform(k_age, (M, S))
    ideal = fields["work"] / scenario.efficiency[:, None]
    return Servers(
        active=active,
        cores=jnp.where(active, fields["cores"], 0.0),
        memory_gb=jnp.where(active, fields["memory_gb"], 0.0),
        remaining=jnp.where(active, fields["work"] * (1.0 - done_frac), 0.0),
        start=jnp.where(active, -jnp.round(done_frac * ideal), 0).astype(jnp.int32),
        ideal=jnp.where(active, ideal, 0.0),
    )


def phase_range(config: EnvConfig) -> tuple[float, float]:
    """[low, high) of a scenario's phase: [0, tide_period) for the tide; with a trace, the
    starts in steps of the windows that fit in the split's days."""
    if config.trace == traces.NONE:
        return 0.0, config.tide_period
    return traces.window_starts(config.trace, config.split, config.tide_period,
                                config.episode_steps)


def reset(key: jax.Array, config: EnvConfig) -> EnvState:
    """Draw a scenario from `key`, warm its cluster and draw the first step's jobs."""
    k_scn, k_warm, k_jobs = jax.random.split(key, 3)
    scenario = sample_scenario(
        k_scn, config.n_agents, config.n_servers, config.n_candidates, phase_range(config))
    t = jnp.zeros((), jnp.int32)
    return EnvState(
        scenario=scenario,
        servers=_warm_servers(k_warm, scenario, config),
        jobs=_draw_jobs(k_jobs, t, scenario, config),
        t=t,
        dispatched=jnp.zeros(config.n_agents, jnp.int32),
        measured_efficiency=jnp.zeros_like(scenario.efficiency),
    )


# --------------------------------------------------------------------------- loads and reward


def server_loads(servers: Servers) -> tuple[jax.Array, jax.Array, jax.Array]:
    """CPU demand D_j (cores), memory held (GB) and running-job count per server, each (M,)."""
    return (
        jnp.sum(servers.cores, axis=1),
        jnp.sum(servers.memory_gb, axis=1),
        jnp.sum(servers.active, axis=1),
    )


def reward_terms(cpu_demand: jax.Array, scenario: Scenario) -> tuple[jax.Array, jax.Array]:
    """Capacity-weighted variance of utilisation u_j = D_j / kappa_j, and mean overload."""
    kappa = scenario.capacity
    u = cpu_demand / kappa
    u_bar = jnp.sum(cpu_demand) / jnp.sum(kappa)
    imbalance = jnp.sum(kappa * (u - u_bar) ** 2) / jnp.sum(kappa)
    overload = jnp.mean(jnp.maximum(0.0, u - 1.0))
    return imbalance, overload


# --------------------------------------------------------------------------- admission


def _pack_bits(flags: jax.Array) -> jax.Array:
    """Pack bool flags (M, S) into uint32 words (M, ceil(S / 32)); bit b of word w = flag
    32 w + b."""
    M, S = flags.shape
    W = -(-S // 32)
    padded = jnp.zeros((M, 32 * W), jnp.uint32).at[:, :S].set(flags.astype(jnp.uint32))
    shifts = jnp.arange(32, dtype=jnp.uint32)
    return jnp.sum(padded.reshape(M, W, 32) << shifts, axis=2, dtype=jnp.uint32)


def _nth_set_bit(words: jax.Array, n: jax.Array) -> jax.Array:
    """Index of the n-th (0-based) set bit of each row of packed words (P, W), int32 (P,).

    A binary search with population counts: a few elementwise operations per row instead of a
    pass over every slot (finding free slots is the hot spot of admission). Rows with fewer
    than n + 1 set bits give an unspecified index (callers only use rows where it exists).
    """
    count = jax.lax.population_count
    word = words[:, 0]
    base = jnp.zeros(n.shape, jnp.int32)
    for w in range(1, words.shape[1]):  # skip whole words (static, S / 32 - 1 steps)
        c = count(word).astype(jnp.int32)
        later = n >= c
        word = jnp.where(later, words[:, w], word)
        n = jnp.where(later, n - c, n)
        base = jnp.where(later, 32 * w, base)
    for width in (16, 8, 4, 2, 1):
        low = word & jnp.uint32((1 << width) - 1)
        c = count(low).astype(jnp.int32)
        high = n >= c
        word = jnp.where(high, word >> width, low)
        n = jnp.where(high, n - c, n)
        base = base + jnp.where(high, width, 0)
    return base


def _admit(servers: Servers, jobs: Jobs, target: jax.Array, scenario: Scenario, t, config):
    """Admit jobs in (agent, job) order where memory and a slot are free; place them in slots.

    Jobs are grouped by target server with a stable sort, then admitted in rounds: round r
    decides every server's r-th job at once, which is exactly the sequential order because jobs
    on different servers do not interact. Returns (servers, admitted count, rejected count).
    """
    M, S = config.n_servers, config.slots
    P = config.n_agents * config.jobs_per_step
    valid = jobs.mask.reshape(P)
    server = jnp.where(valid, target.reshape(P), M)
    # stable sort by server as one sort of unique uint32 keys server * P + p (several times
    # faster on CPU than a stable argsort, which sorts (key, index) pairs)
    keys = server.astype(jnp.uint32) * jnp.uint32(P) + jnp.arange(P, dtype=jnp.uint32)
    order = (jax.lax.sort(keys) % jnp.uint32(P)).astype(jnp.int32)
    s_server = server[order]
    s_mem = jobs.memory_gb.reshape(P)[order]
    seg_start = jnp.searchsorted(s_server, jnp.arange(M), side="left")
    seg_count = jnp.searchsorted(s_server, jnp.arange(M), side="right") - seg_start

    _, mem_held, n_running = server_loads(servers)
    mem_free0 = scenario.memory_gb - mem_held
    slots_free0 = S - n_running

    def round_(carry):
        r, mem_free, slots_free, rank = carry
        has = r < seg_count
        pos = jnp.where(has, seg_start + r, P)
        m = s_mem[jnp.minimum(pos, P - 1)]
        ok = has & (m <= mem_free + 1e-4) & (slots_free > 0)
        # rank[p] = the job's position among its server's admitted jobs, or S when rejected
        rank = rank.at[pos].set(jnp.where(ok, S - slots_free, S), mode="drop")
        return r + 1, mem_free - jnp.where(ok, m, 0.0), slots_free - ok, rank

    init = (jnp.zeros((), jnp.int32), mem_free0, slots_free0, jnp.full(P, S, jnp.int32))
    _, _, _, rank = jax.lax.while_loop(
        lambda c: c[0] < jnp.max(seg_count), round_, init
    )
    admitted = rank < S
    # rank counts from the first free slot: slot = the (rank - running)-th free slot in index
    # order, i.e. the number of slots whose inclusive free count is <= rank - running. (A
    # cumulative count and a row gather: an argsort of the slot array is much slower on CPU.)
    srv = jnp.minimum(s_server, M - 1)
    nth_free = jnp.clip(rank - n_running[srv], 0, S - 1)
    slot = _nth_set_bit(_pack_bits(~servers.active)[srv], nth_free)
    row = jnp.where(admitted, srv, M)  # out of range -> dropped by the scatter

    def put(arr, values):
        return arr.at[row, slot].set(values, mode="drop")

    s_work = jobs.work.reshape(P)[order]
    eff = scenario.efficiency[srv]
    servers = Servers(
        active=put(servers.active, True),
        cores=put(servers.cores, jobs.cores.reshape(P)[order]),
        memory_gb=put(servers.memory_gb, s_mem),
        remaining=put(servers.remaining, s_work),
        start=put(servers.start, t),
        ideal=put(servers.ideal, s_work / eff),
    )
    n_admitted = jnp.sum(admitted)
    return servers, n_admitted, jnp.sum(valid) - n_admitted


# --------------------------------------------------------------------------- step


def step(
    key: jax.Array, state: EnvState, actions: jax.Array, config: EnvConfig
) -> tuple[EnvState, jax.Array, dict[str, jax.Array]]:
    """Advance one step. `actions` (N, J) int: candidate index in [0, K) per job slot.

    Returns the new state, the team reward (scalar) and the step's metrics (scalars).
    """
    scenario, jobs = state.scenario, state.jobs
    actions = jnp.clip(actions.astype(jnp.int32), 0, config.n_candidates - 1)
    target = jnp.take_along_axis(scenario.candidates, actions, axis=1)  # (N, J) server ids

    # admission
    servers, admitted, rejected = _admit(state.servers, jobs, target, scenario, state.t, config)
    arrived = admitted + rejected + jobs.shed
    cpu_demand, mem_held, _ = server_loads(servers)

    # team reward on the loads the step's decisions produce
    imbalance, overload = reward_terms(cpu_demand, scenario)
    drop_rate = rejected / jnp.maximum(arrived, 1)
    reward = -(imbalance + config.overload_weight * overload + config.drop_weight * drop_rate)

    # processor sharing: speed_j = e_j * min(1, C_j / D_j)
    share = jnp.minimum(1.0, scenario.cores / jnp.maximum(cpu_demand, 1e-6))
    speed = scenario.efficiency * share
    measured = jnp.where(jnp.any(servers.active, axis=1), speed / share, 0.0)
    remaining = servers.remaining - speed[:, None]
    finished = servers.active & (remaining <= 1e-6)
    elapsed = (state.t + 1 - servers.start).astype(jnp.float32)
    slowdown = jnp.where(finished, elapsed / jnp.maximum(servers.ideal, 1.0), 0.0)
    keep = servers.active & ~finished
    servers = Servers(
        active=keep,
        cores=jnp.where(keep, servers.cores, 0.0),
        memory_gb=jnp.where(keep, servers.memory_gb, 0.0),
        remaining=jnp.where(keep, remaining, 0.0),
        start=servers.start,
        ideal=servers.ideal,
    )

    kappa_total = jnp.sum(scenario.capacity)
    metrics = {
        "reward": reward,
        "imbalance": imbalance,
        "overload": overload,
        "drop_rate": drop_rate,
        "arrived": arrived,
        "admitted": admitted,
        "rejected": rejected,
        "shed": jobs.shed,
        "completed": jnp.sum(finished),
        "slowdown_sum": jnp.sum(slowdown),
        "cpu_utilisation": jnp.sum(cpu_demand) / kappa_total,
        "memory_utilisation": jnp.sum(mem_held) / jnp.sum(scenario.memory_gb),
    }

    t = state.t + 1
    new_state = EnvState(
        scenario=scenario,
        servers=servers,
        jobs=_draw_jobs(key, t, scenario, config),
        t=t,
        dispatched=state.dispatched + jnp.sum(jobs.mask, axis=1, dtype=jnp.int32),
        measured_efficiency=measured,
    )
    return new_state, reward, metrics


# --------------------------------------------------------------------------- observations


def server_features(state: EnvState, config: EnvConfig) -> jax.Array:
    """Per-server features, shape (M, N_CANDIDATE_FEATURES): CPU and memory utilisation,
    efficiency, cores / 64, memory / 192 GB, free-slot fraction, generation one-hot."""
    sc = state.scenario
    cpu, mem, running = server_loads(state.servers)
    return jnp.concatenate(
        [
            jnp.stack(
                [
                    cpu / sc.capacity,
                    mem / sc.memory_gb,
                    sc.efficiency,
                    sc.cores / 64.0,
                    sc.memory_gb / 192.0,
                    1.0 - running / config.slots,
                ],
                axis=-1,
            ),
            jax.nn.one_hot(sc.generation - 1, 3),
        ],
        axis=-1,
    ).astype(jnp.float32)


def context_features(state: EnvState, config: EnvConfig) -> jax.Array:
    """Shared context, shape (N_CONTEXT_FEATURES,): tidal phase (sin, cos), mean CPU and memory
    utilisation of the cluster."""
    sc = state.scenario
    cpu, mem, _ = server_loads(state.servers)
    angle = 2.0 * jnp.pi * (state.t + sc.phase) / config.tide_period
    return jnp.stack(
        [jnp.sin(angle), jnp.cos(angle), jnp.sum(cpu) / jnp.sum(sc.capacity),
         jnp.sum(mem) / jnp.sum(sc.memory_gb)]
    ).astype(jnp.float32)


def job_features(jobs: Jobs) -> jax.Array:
    """Per-job features, shape (N, J, N_JOB_FEATURES): presence, is-memory-job, cores / 32,
    memory / 96 GB, log work / log 200, CPU-seconds / 100; zero for empty slots."""
    present = jobs.mask.astype(jnp.float32)
    feats = jnp.stack(
        [
            present,
            jobs.type.astype(jnp.float32),
            jobs.cores / workload.CPU_CORES_CAP,
            jobs.memory_gb / workload.MEM_GB_CAP,
            jnp.log(jobs.work) / jnp.log(workload.WORK_CAP),
            jobs.cores * jobs.work / 100.0,
        ],
        axis=-1,
    )
    return feats * present[..., None]


def observe(state: EnvState, config: EnvConfig) -> Observation:
    """Every agent's local observation (see `Observation`)."""
    servers = server_features(state, config)
    context = context_features(state, config)
    return Observation(
        candidates=servers[state.scenario.candidates],
        slots=job_features(state.jobs),
        context=jnp.broadcast_to(context, (config.n_agents, N_CONTEXT_FEATURES)),
        slot_mask=state.jobs.mask,
    )


def global_state(state: EnvState, config: EnvConfig) -> tuple[jax.Array, jax.Array]:
    """Centralised critic input: all servers' features (M, F) and the context (F_x,)."""
    return server_features(state, config), context_features(state, config)


# --------------------------------------------------------------------------- the actor's input


def pair_features(obs: Observation, derived: bool = True) -> jax.Array:
    """Features of every (agent, job, candidate) triple, shape (..., N, J, K, F).

    Besides the raw candidate, job and context features it includes, when `derived`, the
    candidate's CPU and memory utilisation after placing the job, computed from the same
    observation.
    """
    cand, job, parts = pair_views(obs)
    # candidate features: cpu_u, mem_u, efficiency, cores/64, memory/192, free slots, gen one-hot
    # job features: present, is_mem, cores/32, memory/96, log work, cpu-seconds
    capacity = jnp.maximum(cand[..., 3] * 64.0 * cand[..., 2], 1e-3)
    cpu_after = cand[..., 0] + job[..., 2] * 32.0 / capacity
    mem_after = cand[..., 1] + job[..., 3] * 96.0 / jnp.maximum(cand[..., 4] * 192.0, 1e-3)
    if derived:
        parts += [cpu_after[..., None], mem_after[..., None]]
    return jnp.concatenate(parts, axis=-1)


def slot_capacity(rows: int, config: EnvConfig) -> int:
    """P, the padded buffer's size for `rows` agent-steps of `config`: the mean number of jobs at
    the crest of the load plus four standard deviations (Poisson) and 8, at most rows x J."""
    mean = rows * min(config.jobs_per_step, config.arrival_rate * config.peak_load_factor)
    return int(min(rows * config.jobs_per_step, math.ceil(mean + 4.0 * math.sqrt(mean) + 8)))


# --------------------------------------------------------------------------- evaluation

# Reported per episode. `return` is the sum of team rewards over the episode; the reward terms
# and utilisation are per-step means; `slowdown` is the mean slowdown of the jobs that finished;
# `throughput` is finished jobs per step.
EPISODE_METRICS = (
    "return", "imbalance", "overload", "drop_rate", "slowdown", "throughput",
    "cpu_utilisation", "shed_rate",
)


def episode_metrics(step_metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Reduce one episode's per-step metrics (arrays of shape (T,)) to EPISODE_METRICS."""
    m = step_metrics
    return {
        "return": jnp.sum(m["reward"], axis=0),
        "imbalance": jnp.mean(m["imbalance"], axis=0),
        "overload": jnp.mean(m["overload"], axis=0),
        "drop_rate": jnp.mean(m["drop_rate"], axis=0),
        "slowdown": jnp.sum(m["slowdown_sum"], axis=0)
        / jnp.maximum(jnp.sum(m["completed"], axis=0), 1),
        "throughput": jnp.mean(m["completed"].astype(jnp.float32), axis=0),
        "cpu_utilisation": jnp.mean(m["cpu_utilisation"], axis=0),
        "shed_rate": jnp.sum(m["shed"], axis=0) / jnp.maximum(jnp.sum(m["arrived"], axis=0), 1),
    }



# --------------------------------------------------------------------------- inspection helpers


def sample_jobs(seed: int, n: int) -> dict[str, np.ndarray]:
    """Draw n jobs from the cluster-wide workload (60 % CPU-intensive) as NumPy arrays:
    `type` (0 CPU-intensive, 1 memory-intensive), `cores`, `memory_gb`, `work`."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    fields = jax.jit(sample_job_fields, static_argnums=1)(jax.random.key(seed), (int(n),))
    return {k: np.asarray(v) for k, v in fields.items()}


def make_scenario(n_agents: int, seed: int, config: EnvConfig | None = None) -> Scenario:
    """The scenario (cluster) that `reset` would build for this seed, with NumPy array fields
    `cores`, `memory_gb`, `efficiency`, `generation` (M,) and `candidates` (N, K)."""
    config = EnvConfig(n_agents=n_agents) if config is None else config
    k_scn = jax.random.split(jax.random.key(seed), 3)[0]
    scn = sample_scenario(
        k_scn, config.n_agents, config.n_servers, config.n_candidates, phase_range(config))
    return jax.tree.map(np.asarray, scn)


def arrival_rate(t, phase: float = 0.0, config: EnvConfig | None = None) -> np.ndarray:
    """Noise-free per-agent tidal rate lambda_bar * (1 + 0.5 sin(2 pi (t + phase) / 1000))."""
    config = EnvConfig() if config is None else config
    t = np.asarray(t, dtype=np.float64)
    return config.arrival_rate * (
        1.0 + config.tide_amplitude * np.sin(2.0 * np.pi * (t + phase) / config.tide_period)
    )
