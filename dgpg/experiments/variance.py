"""Per-agent gradient variance against N (docs/design.md, sections 1 and 7).

At a fixed policy (the DG-PG actor and centralised critic at initialisation, seed s, on training
scenario s) independent roll-outs give independent samples of agent 0's update direction,
g(alpha) = (1 - alpha) g_PG + alpha g_guidance (`dgpg.learners.gradient_stats`). The plain
policy gradient (alpha = 0) and the pure guidance gradient (alpha = 1) are sampled from the same
roll-outs, so every alpha is an exact linear combination of the two; the experiment reports
alpha = 0 and alpha = 0.5 (and stores 0.25, 0.75, 1 in the CSV).

The relative variance is tr Var[g] / |E g|^2: the plain estimator's variance over its squared
mean. The variance is measured from the plain samples. The mean is not: the plain policy
gradient's mean is small next to the noise that every other agent's actions put into the team
reward, and plain samples cannot resolve it beyond N = 2. It is measured with the
counterfactual estimator of the same roll-outs (each roll-out is played again with agent 0's
actions resampled under common random numbers, and its advantages subtracted), which has the
same mean and far less noise; the guidance part of g is the same in both. |E g|^2 is estimated
without bias as |mean|^2 - tr Var / n of the counterfactual samples, with standard error about
sqrt(4 m'Sm / n + 2 tr(S^2) / n^2) (S their covariance, m the mean); a point is *resolved*
when the estimate exceeds twice its standard error. An unresolved point gives only a lower
bound, tr Var / (estimate + 2 standard errors), drawn as a triangle and left out of the fit.
As a check of the estimator, the plain and counterfactual sample means are compared: their
squared distance over its expected value under equal means (`mean_gap`) is about 1.

Fits: log(y) = a_s + b log N by least squares over every resolved (N, seed) point, with one
intercept a_s per seed (seeds differ in policy and scenario, and one seed's gradient can be 100
times noisier than another's at every N); the 95 % CI of the slope b uses the Student t quantile
with the regression's standard error. y is the relative variance, and separately its two
parts: the variance tr Var[g] (every point) and the squared mean |E g|^2 (resolved points), so
that the figure shows which of the two makes the relative variance grow. Error bars on the
relative variance are bootstrap 95 % intervals over roll-outs.

Cost: a sample is two roll-outs of every agent (the roll-out and its counterfactual twin);
only agent 0's part of the trajectory is kept. Both gradients come from one compiled function
of (parameters, keys), compiled once per N and shared by every seed and chunk. Writes
variance.png, variance.csv (every point), variance_fit.csv (one row per quantity and alpha) and
variance.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.domains import DEFAULT_DOMAIN  # noqa: E402
from dgpg.experiments import common  # noqa: E402

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
REPORTED = (0.0, 0.5)
BOOTSTRAP = 400


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1500)
    seeds: int = 3
    rollouts: int = 64
    horizon: int = 50
    chunk: int = 16
    hidden: int = 64
    model: str = "aligned"
    """The analytical model of the guidance gradient (alpha > 0)."""


FULL = Grid(rollouts=1024)
QUICK = Grid(n_agents=(2, 5, 10, 20, 50), seeds=1, rollouts=256, chunk=32)


def fit_slope(n: np.ndarray, relvar: np.ndarray, level: float = 0.95,
              groups: np.ndarray | None = None) -> dict[str, float]:
    """Least-squares fit of log(relvar) = a_g + b log(n): slope b with its `level` confidence
    half-width (Student t, n_points - n_groups - 1 degrees of freedom), intercept a (of the
    pooled means), r^2 (within groups).

    `groups` (one label per point, e.g. the seed) gives each group its own intercept a_g, so
    that a seed whose policy is noisier at every N moves its own intercept instead of the
    slope's error; without it there is one intercept."""
    x, y = np.log(np.asarray(n, np.float64)), np.log(np.asarray(relvar, np.float64))
    labels = np.zeros(x.size, np.int64) if groups is None else np.asarray(groups)
    if x.size != y.size or labels.shape != x.shape:
        raise ValueError("fit_slope needs one n, one value and one group per point")
    if not np.all(np.isfinite(y)):
        raise ValueError("fit_slope needs positive, finite values")
    dx, dy = x.copy(), y.copy()
    for g in np.unique(labels):
        mine = labels == g
        dx[mine] -= x[mine].mean()
        dy[mine] -= y[mine].mean()
    sxx = float(dx @ dx)
    dof = x.size - np.unique(labels).size - 1
    if dof < 1 or sxx <= 1e-12:
        raise ValueError("fit_slope needs at least 3 points at 2 or more values of n "
                         "(and more points than groups + 1)")
    slope = float(dx @ dy) / sxx
    intercept = float(y.mean() - slope * x.mean())
    sse = float(np.sum((dy - slope * dx) ** 2))
    sst = float(dy @ dy)
    stderr = math.sqrt(sse / dof / sxx)
    t = float(stats.t.ppf(0.5 + level / 2, dof))
    return {"slope": slope, "slope_ci": t * stderr, "slope_stderr": stderr,
            "intercept": intercept, "r2": 1.0 - sse / sst if sst > 0 else 1.0,
            "points": int(x.size)}


def signal(samples: np.ndarray) -> dict[str, float | bool]:
    """Unbiased |E g|^2 of samples (n, P), its standard error, whether it is resolved (above
    twice the standard error) and the lower bound on the relative variance it implies."""
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    trace = float(np.sum(centred**2)) / (n - 1)
    estimate = float(mean @ mean) - trace / n
    gram = centred @ centred.T / (n - 1)  # (n, n): tr(S^2) = |gram|_F^2, without P x P
    tr_s2 = float(np.sum(gram**2))
    if n > 2:  # unbiased for Gaussian samples; the plain tr(S^2) is high by about tr(S)^2 / n
        tr_s2 = max((n - 1) ** 2 / ((n - 2) * (n + 1)) * (tr_s2 - trace**2 / (n - 1)),
                    tr_s2 / n)
    # m'Sm of the sample mean is high by tr(S^2) / n
    m_s_m = max(float(np.sum((centred @ mean) ** 2)) / (n - 1) - tr_s2 / n, 0.0)
    se = math.sqrt(max(4.0 * m_s_m / n + 2.0 * tr_s2 / n**2, 0.0))
    upper = max(estimate, 0.0) + 2.0 * se
    return {"squared_mean_unbiased": estimate, "squared_mean_se": se,
            "resolved": bool(estimate > 2.0 * se),
            "lower_bound": trace / upper if upper > 0 else math.inf}


@functools.cache
def gradient_sampler(config, env, agent: int = 0):
    """`dgpg.learners.gradient_stats.agent_gradients`, cached per (config, N)."""
    from dgpg.learners.gradient_stats import agent_gradients

    return agent_gradients(config, env, agent)


def point(pg: np.ndarray, counterfactual: np.ndarray, guide: np.ndarray, alpha: float,
          rng: np.random.Generator) -> dict[str, Any]:
    """The numbers of one (N, seed, alpha) point from the samples (n, P) of one seed."""
    from dgpg.learners.gradient_stats import relative_variance

    plain = (1.0 - alpha) * pg + alpha * guide
    resolved_by = (1.0 - alpha) * counterfactual + alpha * guide
    n = plain.shape[0]
    variance = float(plain.var(axis=0, ddof=1).sum())
    sig = signal(resolved_by)
    upper = max(sig["squared_mean_unbiased"], 0.0) + 2.0 * sig["squared_mean_se"]
    plain_signal = signal(plain)
    gap = plain.mean(axis=0) - resolved_by.mean(axis=0)
    gap_noise = float((plain - resolved_by).var(axis=0, ddof=1).sum()) / n
    row = {"variance": variance,
           "counterfactual_variance": float(resolved_by.var(axis=0, ddof=1).sum()),
           "squared_mean_unbiased": sig["squared_mean_unbiased"],
           "squared_mean_se": sig["squared_mean_se"], "resolved": sig["resolved"],
           "relative_variance": variance / max(sig["squared_mean_unbiased"], 1e-300),
           "lower_bound": variance / upper if upper > 0 else math.inf,
           "plain_resolved": plain_signal["resolved"],
           "plain_relative_variance": relative_variance(plain)["relative_variance"],
           "mean_gap": float(gap @ gap) / gap_noise if gap_noise > 0 else 0.0}
    values = []
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, n, n)
        m = resolved_by[rows].mean(axis=0)
        sq = float(m @ m) - float(resolved_by[rows].var(axis=0, ddof=1).sum()) / n
        values.append(float(plain[rows].var(axis=0, ddof=1).sum()) / max(sq, 1e-300))
    row["ci_low"], row["ci_high"] = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    return row


@dataclasses.dataclass(frozen=True)
class GradientSpec:
    """Gradient samples of agent 0 at one N and seed (a sweep task)."""

    n_agents: int
    seed: int
    rollouts: int
    horizon: int
    chunk: int
    hidden: int = 64
    model: str = "aligned"

    @property
    def key(self) -> str:
        return (f"cfgrad_n{self.n_agents}_s{self.seed}_r{self.rollouts}_t{self.horizon}"
                f"_h{self.hidden}_{self.model}")

    def result(self, folder: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("spec") != dataclasses.asdict(self):
            return None
        return data

    def execute(self, folder: Path) -> dict[str, Any]:
        import jax

        from dgpg.config import make_env_config
        from dgpg.learners.ppo import TrainConfig, init_runner

        folder.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(algo="dgpg", hidden=self.hidden, model=self.model)
        env = make_env_config(self.n_agents, {"episode_steps": self.horizon},
                              DEFAULT_DOMAIN)
        runner = jax.jit(init_runner, static_argnums=(1, 2))(jax.random.key(self.seed), config,
                                                             env)
        sample = gradient_sampler(config, env)
        keys = jax.random.split(jax.random.key(10_000 + self.seed), math.ceil(
            self.rollouts / self.chunk))
        parts: list[list[np.ndarray]] = [[], [], []]
        for i, k in enumerate(keys):
            size = min(self.chunk, self.rollouts - i * self.chunk)
            out = sample(runner.params, runner.value_norm, jax.random.split(k, size),
                         jax.random.key(self.seed))
            for store, x in zip(parts, out, strict=True):
                store.append(np.asarray(x, np.float64))
        pg, counterfactual, guide = (np.concatenate(p) for p in parts)
        rng = np.random.default_rng(self.seed)
        result = {"spec": dataclasses.asdict(self), "parameters": int(pg.shape[1]),
                  "alphas": {f"{a:g}": point(pg, counterfactual, guide, a, rng)
                             for a in ALPHAS}}
        atomic.write_json(folder / "result.json", result)
        return result

    def progress(self, folder: Path) -> tuple[int, int]:
        return 0, 1


def tasks(grid: Grid) -> list[GradientSpec]:
    return [GradientSpec(n, s, grid.rollouts, grid.horizon, grid.chunk, grid.hidden, grid.model)
            for n in grid.n_agents for s in range(grid.seeds)]


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Sample, fit and draw into `out`; returns the fitted slopes."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    specs = tasks(grid)
    # largest N first: the costliest tasks start at once instead of trailing the sweep
    report = common.run_tasks(sorted(specs, key=lambda s: -s.n_agents), opts)

    rows = []
    for spec in specs:
        for a, r in report.results[spec.key]["alphas"].items():
            rows.append({"n_agents": spec.n_agents, "seed": spec.seed, "alpha": float(a),
                         "rollouts": spec.rollouts, "horizon": spec.horizon, **r})
    fits = {quantity: [fit(rows, a, quantity) for a in REPORTED] for quantity in QUANTITIES}
    _plot(rows, fits, grid, opts.out / "variance.png")
    common.write_csv(opts.out / "variance.csv", rows)
    common.write_csv(opts.out / "variance_fit.csv",
                     [{"quantity": q} | f for q, per_alpha in fits.items() for f in per_alpha])
    atomic.write_text(opts.out / "variance.md", markdown(rows, fits, grid))
    return {"fits": fits["relative_variance"], "variance_fits": fits["variance"],
            "squared_mean_fits": fits["squared_mean_unbiased"], "rows": rows,
            "seconds": report.seconds}


QUANTITIES = ("relative_variance", "variance", "squared_mean_unbiased")
"""What is fitted against N: the relative variance and its two parts."""


def fit(rows: list[dict[str, Any]], alpha: float, quantity: str) -> dict[str, Any]:
    """The slope fit of `quantity` over the points of one alpha that measure it (every point
    for the variance, the resolved ones otherwise); NaN where they are too few."""
    mine = [r for r in rows if r["alpha"] == alpha]
    used = mine if quantity == "variance" else [r for r in mine if r["resolved"]]
    found = {"alpha": alpha, "resolved_points": len(used), "points": len(mine)}
    try:
        slope = fit_slope(np.array([r["n_agents"] for r in used]),
                          np.array([r[quantity] for r in used]),
                          groups=np.array([r["seed"] for r in used]))
    except ValueError:
        nan = float("nan")
        return found | {"slope": nan, "slope_ci": nan, "slope_stderr": nan, "intercept": nan,
                        "r2": nan}
    slope.pop("points")
    return found | slope


def _fit_line(ax, fit: dict[str, Any], ns: list[int], color: str) -> None:
    """The fitted power law over the range of `ns`, if the fit exists."""
    if np.isfinite(fit["slope"]):
        x = np.geomspace(min(ns), max(ns), 50)
        ax.plot(x, np.exp(fit["intercept"]) * x ** fit["slope"], color=color, lw=1,
                label=f"slope {fit['slope']:.2f} ± {fit['slope_ci']:.2f}")


def _label(alpha: float) -> str:
    return "policy gradient (alpha=0)" if alpha == 0 else f"DG-PG (alpha={alpha:g})"


def _plot(rows, fits, grid: Grid, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax, ax_var, ax_mean = axes
    for i, a in enumerate(REPORTED):
        color = f"C{i}"
        mine = [r for r in rows if r["alpha"] == a]
        good = [r for r in mine if r["resolved"]]
        bad = [r for r in mine if not r["resolved"]]
        if good:
            mid = np.array([r["relative_variance"] for r in good])
            lo = np.minimum([r["ci_low"] for r in good], mid)
            hi = np.maximum([r["ci_high"] for r in good], mid)
            ax.errorbar([r["n_agents"] for r in good], mid, yerr=[mid - lo, hi - mid], fmt="o",
                        color=color, capsize=3, label=_label(a))
            ax_mean.plot([r["n_agents"] for r in good],
                         [r["squared_mean_unbiased"] for r in good], "o", color=color,
                         label=_label(a))
        if bad:
            ax.plot([r["n_agents"] for r in bad], [r["lower_bound"] for r in bad], "^",
                    color=color, mfc="none", label=f"{_label(a)}: not resolved, lower bound")
        ax_var.plot([r["n_agents"] for r in mine], [r["variance"] for r in mine], "o",
                    color=color, label=_label(a))
        for axis, quantity, points in ((ax, "relative_variance", good),
                                       (ax_var, "variance", mine),
                                       (ax_mean, "squared_mean_unbiased", good)):
            if points:
                _fit_line(axis, fits[quantity][i], [r["n_agents"] for r in points], color)
    for axis in axes:
        common.n_axis(axis, [r["n_agents"] for r in rows])
        axis.set_yscale("log")
        axis.legend(fontsize=7)
        axis.set_xlabel("N (agents)")
    ax.set(ylabel="relative variance  tr Var[g] / |E g|^2",
           title=f"Agent 0's gradient at a fixed policy ({grid.rollouts} roll-outs of "
                 f"{grid.horizon} steps, {grid.seeds} seed(s))")
    ax_var.set(ylabel="variance  tr Var[g]", title="Its numerator: the plain variance")
    ax_mean.set(ylabel="squared mean  |E g|^2",
                title="Its denominator: the squared mean (counterfactual samples)")
    for axis in axes:
        axis.title.set_fontsize(9)
    common.save(fig, path)


def markdown(rows, fits, grid: Grid) -> str:
    head = (f"Agent 0's gradient at a fixed (initial) policy, {grid.model} model; "
            f"{grid.rollouts} roll-outs of {grid.horizon} steps per point, {grid.seeds} "
            "seed(s) per N. Relative variance = tr Var[g] of the plain samples / |E g|^2 of "
            "the counterfactual samples of the same roll-outs (same mean, less noise). Fits: "
            "log(y) = a_seed + b log N over the (N, seed) points that measure y (one intercept "
            "per seed; a below is that of the pooled means), 95 % CI of b from the t "
            "distribution. A point is resolved when the unbiased estimate of |E g|^2 exceeds "
            "twice its standard error; otherwise only a lower bound on the relative variance "
            "is known (shown as >= bound).\n\n")

    def slope(f):
        if not np.isfinite(f["slope"]):
            return ["too few resolved points", "", "", ""]
        return [f"{f['slope']:.3f}",
                f"[{f['slope'] - f['slope_ci']:.3f}, {f['slope'] + f['slope_ci']:.3f}]",
                f"{f['intercept']:.3f}", f"{f['r2']:.3f}"]

    names = {"relative_variance": "relative variance", "variance": "variance tr Var[g]",
             "squared_mean_unbiased": "squared mean \\|E g\\|^2"}
    fit_table = common.md_table(
        ["quantity", "alpha", "slope b", "95 % CI of b", "intercept a", "r^2", "points used"],
        [[names[q], f"{f['alpha']:g}", *slope(f), f"{f['resolved_points']}/{f['points']}"]
         for q in QUANTITIES for f in fits[q]])

    def cell(r):
        if not r["resolved"]:
            return f">= {r['lower_bound']:.3g}"
        return f"{r['relative_variance']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"

    ns = sorted({r["n_agents"] for r in rows})

    def per_n(render) -> list[list[Any]]:
        return [[n, *[", ".join(render(r) for r in rows
                                if r["n_agents"] == n and r["alpha"] == a) for a in REPORTED]]
                for n in ns]

    point_table = common.md_table(
        ["N", *[f"relvar, alpha={a:g} (bootstrap 95 % CI), per seed" for a in REPORTED]],
        per_n(cell))
    parts_table = common.md_table(
        ["N", *[f"tr Var / \\|E g\\|^2, alpha={a:g}, per seed" for a in REPORTED]],
        per_n(lambda r: f"{r['variance']:.3g} / {r['squared_mean_unbiased']:.3g}"))
    check = [r for r in rows if r["alpha"] == 0.0]
    check_head = (
        "\nThe estimator's check (alpha = 0): the squared distance between the plain and the "
        "counterfactual sample means, over its expected value if the means are equal, is "
        f"{min(r['mean_gap'] for r in check):.2f} to {max(r['mean_gap'] for r in check):.2f} "
        f"(about 1 when unbiased); the counterfactual samples' variance is "
        f"{min(r['counterfactual_variance'] / r['variance'] for r in check):.3g} to "
        f"{max(r['counterfactual_variance'] / r['variance'] for r in check):.3g} times the "
        f"plain one; the plain samples alone resolve the mean at "
        f"{sum(r['plain_resolved'] for r in check)} of {len(check)} points.\n\n")
    return (head + fit_table + "\n" + point_table + "\nThe two parts (plain variance / "
            "squared mean):\n\n" + parts_table + check_head)
