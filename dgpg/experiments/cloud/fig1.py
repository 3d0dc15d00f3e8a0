"""Figure 1: the environment's characteristics.

Panels: (a) CCDFs of CPU-intensive jobs' cores and memory-intensive jobs' memory on log-log axes
with reference slopes -1.7 and -2.2; (b) CPU efficiency by hardware generation; (c) the arrival
rate over 3000 steps (noise-free tide and one noisy realisation, per agent).
Writes fig1.png, fig1_ccdf.csv, fig1_efficiency.csv, fig1_arrivals.csv and fig1.md.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.domains.cloud import workload  # noqa: E402
from dgpg.domains.cloud.env import EnvConfig, arrival_rate, make_scenario, sample_jobs  # noqa: E402


def ccdf(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """P(X > g) for each g in grid."""
    xs = np.sort(x)
    return 1.0 - np.searchsorted(xs, grid, side="right") / xs.size


def tail_index(x: np.ndarray, x_min: float, cap: float) -> float:
    """Maximum-likelihood Pareto tail index of samples capped at `cap` (censored MLE)."""
    uncensored = np.sum(x < cap * (1 - 1e-6))
    return float(uncensored / np.sum(np.log(x / x_min)))


def noisy_arrival_rate(steps: int, n_agents: int, seed: int, config: EnvConfig) -> np.ndarray:
    """Realised arrivals per agent per step over `steps` steps (phase 0, rho = 1)."""
    keys = jax.random.split(jax.random.key(seed), steps)
    rho = jnp.ones(n_agents)

    def count(key, t):
        return workload.sample_arrival_counts(
            key, t, 0.0, rho, config.arrival_rate, config.tide_period,
            config.tide_amplitude, config.tide_noise,
        ).mean()

    return np.asarray(jax.jit(jax.vmap(count))(keys, jnp.arange(steps)))


def run(out: Path, quick: bool = False) -> dict[str, float]:
    """Draw figure 1 into `out`; returns the measured workload statistics."""
    out.mkdir(parents=True, exist_ok=True)
    config = EnvConfig()
    jobs = sample_jobs(seed=0, n=50_000 if quick else 400_000)
    cpu = jobs["type"] == workload.CPU_JOB
    cpu_cores, mem_gb = jobs["cores"][cpu], jobs["memory_gb"][~cpu]
    scenario = make_scenario(n_agents=500, seed=0)
    steps = 3000
    t = np.arange(steps)
    noisy = noisy_arrival_rate(steps, 200, seed=0, config=config)

    stats = {
        "cpu_job_share": float(cpu.mean()),
        "cpu_cores_tail_index": tail_index(cpu_cores, 1.0, workload.CPU_CORES_CAP),
        "memory_gb_tail_index": tail_index(mem_gb, 4.0, workload.MEM_GB_CAP),
        "mean_work_steps": float(jobs["work"].mean()),
    }

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    rows = []
    for name, x, x_min, cap, alpha, color in (
        ("CPU job cores", cpu_cores, 1.0, workload.CPU_CORES_CAP, 1.7, "C0"),
        ("memory job GB", mem_gb, 4.0, workload.MEM_GB_CAP, 2.2, "C1"),
    ):
        grid = np.geomspace(x_min, cap, 60)
        p = ccdf(x, grid)
        ax.loglog(grid, np.where(p > 0, p, np.nan), color=color, label=name)
        ax.loglog(grid, (grid / x_min) ** -alpha, "--", color=color, alpha=0.6,
                  label=f"slope -{alpha}")
        rows += [{"series": name, "x": float(g), "ccdf": float(v)} for g, v in zip(grid, p,
                                                                                  strict=True)]
    ax.set(xlabel="cores (CPU jobs) or GB (memory jobs)", ylabel="P(X > x)",
           title="(a) job-size CCDFs")
    ax.legend(fontsize=8)
    atomic.write_csv(out / "fig1_ccdf.csv", rows, ["series", "x", "ccdf"])

    ax = axes[1]
    eff_rows = []
    for g in (1, 2, 3):
        e = scenario.efficiency[scenario.generation == g]
        ax.hist(e, bins=20, alpha=0.7, label=f"gen{g} (n={e.size})")
        eff_rows.append({"generation": g, "servers": int(e.size), "min": float(e.min()),
                         "mean": float(e.mean()), "max": float(e.max())})
    ax.set(xlabel="CPU efficiency e", ylabel="servers",
           title="(b) efficiency by generation (M=1000)")
    ax.legend(fontsize=8)
    atomic.write_csv(out / "fig1_efficiency.csv", eff_rows, list(eff_rows[0]))

    ax = axes[2]
    clean = arrival_rate(t, 0.0, config)
    ax.plot(t, noisy, lw=0.6, alpha=0.7, label="realised (N=200, noise)")
    ax.plot(t, clean, lw=2, color="k", label="lambda(t) without noise")
    ax.set(xlabel="step", ylabel="jobs per agent per step", title="(c) tidal arrivals")
    ax.legend(fontsize=8)
    atomic.write_csv(
        out / "fig1_arrivals.csv",
        [{"t": int(i), "rate": float(c), "realised": float(n)} for i, c, n in zip(t, clean, noisy,
                                                                                 strict=True)],
        ["t", "rate", "realised"],
    )
    fig.tight_layout()
    atomic.save_figure(out / "fig1.png", fig)
    plt.close(fig)

    lines = ["| statistic | measured | specified |", "|---|---|---|",
             f"| CPU-job share | {stats['cpu_job_share']:.3f} | 0.60 |",
             f"| tail index, CPU-job cores | {stats['cpu_cores_tail_index']:.2f} | 1.7 |",
             f"| tail index, memory-job memory | {stats['memory_gb_tail_index']:.2f} | 2.2 |",
             f"| mean work (steps) | {stats['mean_work_steps']:.1f} | about 20 |"]
    lines += [f"| efficiency gen{r['generation']} | {r['min']:.3f} - {r['max']:.3f} "
              f"| {('0.70-0.80', '0.85-0.95', '0.98-1.08')[r['generation'] - 1]} |"
              for r in eff_rows]
    atomic.write_text(out / "fig1.md", "\n".join(lines) + "\n")
    return stats
