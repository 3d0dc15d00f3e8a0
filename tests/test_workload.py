"""HeteroCloud workload: job-size distributions and the tidal arrival process."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud import workload
from dgpg.domains.cloud.env import EnvConfig
from dgpg.domains.cloud.workload import sample_arrival_counts

N_JOBS = 400_000
N_AGENTS = 50
N_STEPS = 10_000
DEFAULT = EnvConfig()


@pytest.fixture(scope="module")
def jobs():
    return cloud.sample_jobs(0, N_JOBS)


def _tail_mle(x: np.ndarray, x_min: float, cap: float) -> float:
    """MLE of a Pareto tail index from samples right-censored at `cap`:
    alpha = n_uncensored / sum(log(min(x, cap) / x_min))."""
    x = x.astype(np.float64)
    uncensored = x < cap * (1 - 1e-6)
    return uncensored.sum() / np.log(np.minimum(x, cap) / x_min).sum()


def _ccdf_slope(x: np.ndarray, lo: float, hi: float) -> float:
    """Least-squares slope of log CCDF vs log x on a log grid inside [lo, hi)."""
    xs = np.sort(x.astype(np.float64))
    grid = np.exp(np.linspace(np.log(lo), np.log(0.9 * hi), 25))
    ccdf = 1.0 - np.searchsorted(xs, grid, side="right") / xs.size
    return float(np.polyfit(np.log(grid), np.log(ccdf), 1)[0])


def test_fields_and_dtypes(jobs):
    assert set(jobs) == {"type", "cores", "memory_gb", "work"}
    for v in jobs.values():
        assert v.shape == (N_JOBS,)
        assert np.all(np.isfinite(v))
    assert set(np.unique(jobs["type"]).tolist()) == {workload.CPU_JOB, workload.MEM_JOB}


def test_cpu_job_share(jobs):
    share = np.mean(jobs["type"] == workload.CPU_JOB)
    assert abs(share - 0.60) <= 0.02


def test_cpu_cores_tail_index(jobs):
    cores = jobs["cores"][jobs["type"] == workload.CPU_JOB]
    assert abs(_tail_mle(cores, 1.0, 32.0) - 1.7) <= 0.15
    assert abs(-_ccdf_slope(cores, 1.0, 32.0) - 1.7) <= 0.15
    # the cap is hit with the Pareto probability 32^-1.7
    np.testing.assert_allclose(np.mean(cores >= 32.0), 32.0**-1.7, rtol=0.15)


def test_memory_gb_tail_index(jobs):
    mem = jobs["memory_gb"][jobs["type"] == workload.MEM_JOB]
    assert abs(_tail_mle(mem, 4.0, 96.0) - 2.2) <= 0.15
    assert abs(-_ccdf_slope(mem, 4.0, 96.0) - 2.2) <= 0.15
    np.testing.assert_allclose(np.mean(mem >= 96.0), 24.0**-2.2, rtol=0.25)


def test_caps_and_ranges(jobs):
    cpu = jobs["type"] == workload.CPU_JOB
    cores, mem, work = jobs["cores"], jobs["memory_gb"], jobs["work"]
    assert cores.max() <= 32.0 and cores[cpu].min() >= 1.0
    assert mem.max() <= 96.0 and mem[~cpu].min() >= 4.0
    assert work.max() <= 200.0 and work.min() >= 10.0
    assert 15.0 <= work.mean() <= 25.0
    # the caps are reached (heavy tails, not truncated distributions)
    assert cores[cpu].max() == 32.0 and mem[~cpu].max() == 96.0 and work.max() == 200.0
    # memory jobs: 0.5 to 8 cores, growing with memory
    assert cores[~cpu].min() >= 0.5 and cores[~cpu].max() <= 8.0
    assert np.corrcoef(cores[~cpu], mem[~cpu])[0, 1] > 0.9
    # CPU jobs: memory between 1x and 2x their cores
    ratio = mem[cpu] / cores[cpu]
    assert ratio.min() >= 1.0 - 1e-6 and ratio.max() <= 2.0 + 1e-6
    assert ratio.min() < 1.01 and ratio.max() > 1.99


def test_sample_jobs_seeded():
    a, b, c = cloud.sample_jobs(1, 1000), cloud.sample_jobs(1, 1000), cloud.sample_jobs(2, 1000)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["cores"], c["cores"])
    with pytest.raises(ValueError):
        cloud.sample_jobs(0, 0)


# --------------------------------------------------------------------------- arrivals


@functools.partial(jax.jit, static_argnames="noise")  # rates are static config floats
def _arrival_series(key, ts, phase, rate_multiplier, noise):
    """Arrivals (T, N) at the times `ts` under the default config's rate, period, amplitude."""
    keys = jax.random.split(key, ts.shape[0])

    def one(k, t):
        return sample_arrival_counts(
            k, t, phase, rate_multiplier, DEFAULT.arrival_rate, DEFAULT.tide_period,
            DEFAULT.tide_amplitude, noise,
        )

    return jax.vmap(one)(keys, ts)


def _rho(seed):
    return jax.random.uniform(jax.random.key(seed), (N_AGENTS,), minval=0.8, maxval=1.2)


@pytest.fixture(scope="module")
def series():
    rho = _rho(0)
    phase = jnp.float32(123.0)
    ts = jnp.arange(N_STEPS, dtype=jnp.float32)
    out = {
        noise: np.asarray(_arrival_series(jax.random.key(1), ts, phase, rho, noise))
        for noise in (0.0, DEFAULT.tide_noise)
    }
    return out, float(np.sum(rho))


@pytest.mark.parametrize("noise", [0.0, DEFAULT.tide_noise])
def test_arrivals_tidal_period_amplitude_phase(series, noise):
    counts, rho_sum = series
    total = counts[noise].sum(axis=1).astype(np.float64)  # (T,)
    assert np.all(counts[noise] >= 0)
    np.testing.assert_allclose(total.mean(), rho_sum * DEFAULT.arrival_rate, rtol=0.02)
    spectrum = np.fft.rfft(total - total.mean())
    k = int(np.argmax(np.abs(spectrum[1:]))) + 1
    period = N_STEPS / k
    assert abs(period - 1000.0) <= 0.02 * 1000.0
    # amplitude of the tide: 0.5 of the mean rate
    amplitude = 2 * np.abs(spectrum[k]) / N_STEPS
    np.testing.assert_allclose(amplitude, 0.5 * rho_sum, rtol=0.05)
    # phase: lambda(t) ~ 1 + 0.5 sin(2 pi (t + 123) / 1000)
    phase = ((np.angle(spectrum[k]) + np.pi / 2) * 1000.0 / (2 * np.pi)) % 1000.0
    assert abs(phase - 123.0) <= 5.0


def test_arrival_noise_adds_dispersion(series):
    counts, rho_sum = series
    t = np.arange(N_STEPS)
    mean_rate = rho_sum * DEFAULT.arrival_rate * (1 + 0.5 * np.sin(2 * np.pi * (t + 123) / 1000))
    dispersion = {}
    for noise, c in counts.items():
        total = c.sum(axis=1)
        dispersion[noise] = np.mean((total - mean_rate) ** 2) / np.mean(mean_rate)
    # Poisson alone: variance == mean; shared multiplicative noise: + 0.01 E[lambda^2]
    assert 0.9 <= dispersion[0.0] <= 1.1
    expected = 1 + DEFAULT.tide_noise**2 * np.mean(mean_rate**2) / np.mean(mean_rate)
    np.testing.assert_allclose(dispersion[DEFAULT.tide_noise], expected, rtol=0.15)


def test_arrival_rate_mean_and_peak():
    t = np.arange(1000)
    for phase in (0.0, 250.0, 617.5):
        rate = cloud.arrival_rate(t, phase)
        np.testing.assert_allclose(rate.mean(), cloud.LAMBDA_BAR, rtol=1e-9)
        np.testing.assert_allclose(rate.max(), 1.5 * cloud.LAMBDA_BAR, rtol=1e-5)
        np.testing.assert_allclose(rate.min(), 0.5 * cloud.LAMBDA_BAR, rtol=1e-4)
        # the environment's tide is the same function
        tide = np.asarray(workload.tide(jnp.asarray(t, jnp.float32), phase, 1000.0, 0.5))
        np.testing.assert_allclose(rate, cloud.LAMBDA_BAR * tide, rtol=1e-5, atol=1e-5)
    assert DEFAULT.arrival_rate == cloud.LAMBDA_BAR
    assert np.isclose(cloud.arrival_rate(250.0), 1.5 * cloud.LAMBDA_BAR)
    doubled = cloud.arrival_rate(t, 0.0, EnvConfig(arrival_rate=2.0))
    np.testing.assert_allclose(doubled.mean(), 2.0, rtol=1e-9)


def test_shed_fraction_at_peak_below_0_1_percent():
    """Every step at the tide's peak (t + phase = period / 4), with the largest rate multiplier
    1.2 on every agent: arrivals beyond J per agent per step are under 0.1 % of all arrivals."""
    rho = jnp.full((N_AGENTS,), 1.2, jnp.float32)
    ts = jnp.full((N_STEPS,), DEFAULT.tide_period / 4, jnp.float32)
    counts = np.asarray(
        _arrival_series(jax.random.key(5), ts, jnp.float32(0.0), rho, DEFAULT.tide_noise)
    )
    np.testing.assert_allclose(counts.mean(), 1.2 * 1.5 * DEFAULT.arrival_rate, rtol=0.01)
    shed = np.maximum(counts - DEFAULT.jobs_per_step, 0).sum() / counts.sum()
    assert shed < 1e-3
    # the check has power: with J = 3 the same arrivals would shed several percent
    assert np.maximum(counts - 3, 0).sum() / counts.sum() > 0.01
