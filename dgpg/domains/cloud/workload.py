"""HeteroCloud workload: bimodal heavy-tailed jobs and tidal Poisson arrivals (docs/design.md,
section 3.2).

All samplers are pure JAX functions of a PRNG key and fixed shapes, so they can run inside `jit`.
Units: cores in CPU cores (fractional), memory in GB, work in steps at efficiency 1.0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.cloud import trace as traces
from dgpg.domains.cloud.parameters import (  # noqa: F401 (re-exported)
    CPU_CORES_ALPHA,
    CPU_CORES_CAP,
    CPU_CORES_MIN,
    CPU_JOB,
    CPU_SHARE,
    MAX_RATE_MULTIPLIER,
    MEM_GB_ALPHA,
    MEM_GB_CAP,
    MEM_GB_MIN,
    MEM_JOB,
    MEM_JOB_CORES,
    WORK_ALPHA,
    WORK_CAP,
    WORK_MIN,
)


def pareto(key: jax.Array, alpha: float, x_min: float, shape: tuple[int, ...]) -> jax.Array:
    """Pareto(alpha, x_min) samples by inversion: x_min * U^(-1/alpha)."""
    u = jax.random.uniform(key, shape, minval=1e-7, maxval=1.0)
    return x_min * u ** (-1.0 / alpha)


def sample_job_fields(
    key: jax.Array, shape: tuple[int, ...], cpu_share: jax.Array | float = CPU_SHARE
) -> dict[str, jax.Array]:
    """Draw jobs of the given shape.

    `cpu_share` broadcasts against `shape` (e.g. one share per agent with shape (N, J) and
    cpu_share of shape (N, 1)). Returns `type` (int32, 0 CPU / 1 memory job), `cores`,
    `memory_gb` and `work` (float32), each of `shape`.
    """
    k_type, k_cores, k_ratio, k_mem, k_work = jax.random.split(key, 5)
    is_mem = jax.random.uniform(k_type, shape) >= cpu_share

    cpu_cores = jnp.minimum(pareto(k_cores, CPU_CORES_ALPHA, CPU_CORES_MIN, shape), CPU_CORES_CAP)
    cpu_mem = cpu_cores * jax.random.uniform(k_ratio, shape, minval=1.0, maxval=2.0)

    mem_mem = jnp.minimum(pareto(k_mem, MEM_GB_ALPHA, MEM_GB_MIN, shape), MEM_GB_CAP)
    lo, hi = MEM_JOB_CORES
    mem_cores = lo + (hi - lo) * jnp.sqrt((mem_mem - MEM_GB_MIN) / (MEM_GB_CAP - MEM_GB_MIN))

    work = jnp.minimum(pareto(k_work, WORK_ALPHA, WORK_MIN, shape), WORK_CAP)
    return {
        "type": is_mem.astype(jnp.int32),
        "cores": jnp.where(is_mem, mem_cores, cpu_cores).astype(jnp.float32),
        "memory_gb": jnp.where(is_mem, mem_mem, cpu_mem).astype(jnp.float32),
        "work": work.astype(jnp.float32),
    }


def tide(t: jax.Array | float, phase: jax.Array | float, period: float, amplitude: float):
    """Noise-free tidal factor 1 + amplitude * sin(2 pi (t + phase) / period)."""
    return 1.0 + amplitude * jnp.sin(2.0 * jnp.pi * (t + phase) / period)


def sample_arrival_counts(
    key: jax.Array,
    t: jax.Array,
    phase: jax.Array,
    rate_multiplier: jax.Array,
    mean_rate: float,
    period: float,
    amplitude: float,
    noise: float,
) -> jax.Array:
    """Jobs arriving at each agent in step t, shape (N,) int32 (before the per-step cap J).

    lambda(t) = mean_rate * tide(t) * max(0, 1 + noise * eps_t), eps_t ~ N(0, 1) shared by all
    agents; agent i receives Poisson(rate_multiplier_i * lambda(t)).
    """
    k_eps, k_n = jax.random.split(key)
    eps = jax.random.normal(k_eps)
    lam = mean_rate * tide(t, phase, period, amplitude) * jnp.maximum(0.0, 1.0 + noise * eps)
    # a static bound on the rate: the crest of the tide, rho <= 1.2 and eps <= 8 (P ~ 1e-15)
    lam_max = mean_rate * (1.0 + amplitude) * MAX_RATE_MULTIPLIER * (1.0 + 8.0 * noise)
    return poisson(k_n, rate_multiplier * lam, poisson_max_count(lam_max))


def trace_load(t: jax.Array, phase: jax.Array, name: str,
               steps_per_day: float) -> tuple[jax.Array, jax.Array]:
    """The CPU and memory load factors (mean 1 over the training days) of trace `name` at step
    t of an episode that starts `phase` steps into the trace: the 300 s series interpolated
    linearly, one trace day per `steps_per_day` steps. Two float32 scalars (or arrays of t's
    shape)."""
    series = traces.load(name)
    samples = (t + phase) * (traces.DAY_SECONDS / steps_per_day / traces.TRACE_SECONDS)
    grid = np.arange(series.cpu.size, dtype=np.float32)
    cpu = jnp.interp(samples, grid, series.cpu.astype(np.float32))
    memory = jnp.interp(samples, grid, series.memory.astype(np.float32))
    return cpu, memory


def sample_trace_arrivals(
    key: jax.Array,
    t: jax.Array,
    phase: jax.Array,
    rate_multiplier: jax.Array,
    cpu_share: jax.Array,
    mean_rate: float,
    name: str,
    steps_per_day: float,
) -> tuple[jax.Array, jax.Array]:
    """Jobs arriving at each agent in step t under trace `name`, shape (N,) int32 (before the
    per-step cap J), and the share of CPU-intensive jobs among them, (N,) float32.

    CPU-intensive jobs arrive at rate_multiplier_i * mean_rate * cpu_share_i * c(t), memory-
    intensive ones at rate_multiplier_i * mean_rate * (1 - cpu_share_i) * m(t), with c and m the
    trace's load factors (`trace_load`); agent i receives Poisson of their sum.
    """
    cpu, memory = trace_load(t, phase, name, steps_per_day)
    lam_cpu = rate_multiplier * mean_rate * cpu_share * cpu
    lam = lam_cpu + rate_multiplier * mean_rate * (1.0 - cpu_share) * memory
    lam_max = mean_rate * traces.load(name).peak() * MAX_RATE_MULTIPLIER
    share = lam_cpu / jnp.maximum(lam, 1e-12)
    return poisson(key, lam, poisson_max_count(lam_max)), share


def poisson_max_count(lam_max: float) -> int:
    """A count above which Poisson(lam <= lam_max) has negligible mass (< 1e-12)."""
    return int(math.ceil(lam_max + 12.0 * math.sqrt(lam_max) + 12.0))


def poisson(key: jax.Array, lam: jax.Array, max_count: int) -> jax.Array:
    """Poisson(lam) samples by inversion of the CDF over 0..max_count-1, int32 of lam's shape.

    Samples Poisson(lam) conditioned on n < max_count (choose max_count with
    `poisson_max_count`, so that the condition removes negligible mass). Loop-free (the loop
    over k unrolls into one fused elementwise kernel), so much cheaper under `vmap` than
    `jax.random.poisson`, whose rejection loops run for every lane.
    """
    u = jax.random.uniform(key, lam.shape)
    pmf = jnp.exp(-lam)
    total = pmf
    for k in range(1, max_count):  # total = P(n < max_count)
        pmf = pmf * lam / k
        total = total + pmf
    threshold = u * total
    pmf = jnp.exp(-lam)
    cdf = pmf
    n = (threshold >= cdf).astype(jnp.int32)
    for k in range(1, max_count - 1):
        pmf = pmf * lam / k
        cdf = cdf + pmf
        n = n + (threshold >= cdf)
    return n
