"""Per-agent gradient variance against N (DESIGN sections 1 and 7).

At a fixed policy (the DG-PG actor and centralised critic at initialisation, seed s, on training
scenario s) independent roll-outs give independent samples of agent 0's update direction,
g(alpha) = (1 - alpha) g_PG + alpha g_guidance (`dgpg.learners.gradient_stats`). The plain
policy gradient (alpha = 0) and the pure guidance gradient (alpha = 1) are sampled from the same
roll-outs, so every alpha is an exact linear combination of the two; the experiment reports
alpha = 0 and alpha = 0.5 (and stores 0.25, 0.75, 1 in the CSV).

The relative variance tr Var[g] / |E g|^2 is fitted on log-log axes, log(relvar) = a_s + b log N,
by least squares over every resolved (N, seed) point, with one intercept a_s per seed (seeds
differ in policy and scenario, and one seed's gradient can be 100 times noisier than another's
at every N); the 95 % CI of the slope b uses the Student t quantile with the regression's
standard error. Error bars on the points are bootstrap 95 % intervals over roll-outs.

Resolution: |E g|^2 is estimated without bias as |mean|^2 - tr Var / n, whose standard error is
about sqrt(4 m'Sm / n + 2 tr(S^2) / n^2) (S the covariance, m the mean). When the plain policy
gradient's mean is small next to its noise, n roll-outs cannot measure it: a point is *resolved*
when the estimate exceeds twice its standard error. An unresolved point gives only a lower bound,
tr Var / (estimate + 2 standard errors), drawn as a triangle and left out of the fit.

Cost: one roll-out stores the whole trajectory of every agent (observations and references),
about 2 MB per agent at T = 200, so the experiment uses a horizon of 50 steps at every N and
computes the samples in chunks of at most `chunk` roll-outs. Both gradients come from one
compiled function of (parameters, keys), compiled once per N and shared by every seed and chunk.
Because the mean is often unresolved, the plain variance tr Var[g] is also fitted against N,
over every point (`fit_variance`): it shows how the noise itself grows, whatever the signal.
Writes variance.png (both fits), variance.csv (every point), variance_fit.csv (one row per
quantity and alpha) and variance.md.
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


FULL = Grid(rollouts=1024)
QUICK = Grid(n_agents=(2, 5, 10, 20, 50), seeds=1, rollouts=1024, chunk=32)


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


def bootstrap_interval(samples: np.ndarray, rng: np.random.Generator,
                       resamples: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % percentile interval of the relative variance over roll-out resamples."""
    from dgpg.learners.gradient_stats import relative_variance

    n = samples.shape[0]
    values = [relative_variance(samples[rng.integers(0, n, n)])["relative_variance"]
              for _ in range(resamples)]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


@functools.cache
def gradient_sampler(config, env, agent: int = 0):
    """Compiled `(params, value_norm, keys, scenario_key) -> (pg, guidance)`: for each roll-out
    key, agent `agent`'s plain policy gradient and guidance gradient (flattened, (n, P) each)
    from the same roll-out, as in `dgpg.learners.gradient_stats.agent_gradient_samples` with
    alpha = 0 and 1. The parameters are arguments, so one compilation serves every seed."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from dgpg.analytical import make_model
    from dgpg.learners.networks import Actor
    from dgpg.learners.ppo import gae, make_rollout

    rollout = make_rollout(dataclasses.replace(config, algo="dgpg"), env)
    actor = Actor(config.hidden)
    model = make_model(config.model, env)

    def one(params, value_norm, key, scenario_key):
        traj, last_value, _ = rollout(params, value_norm, key, scenario_key)
        adv, _ = gae(traj.rewards, traj.values, last_value, config.gamma, config.gae_lambda)
        obs = jax.tree.map(lambda x: x[:, agent : agent + 1], traj.obs)
        ref = jax.tree.map(lambda x: x[:, agent : agent + 1], traj.reference)
        actions = traj.actions[:, agent : agent + 1]

        def log_probs(actor_params):
            return jax.nn.log_softmax(actor.apply(actor_params, obs), axis=-1)

        def pg(actor_params):
            logp_a = jnp.take_along_axis(log_probs(actor_params), actions[..., None],
                                         axis=-1)[..., 0]
            return -jnp.sum(jnp.where(obs.job_mask, adv[:, None, None] * logp_a, 0.0)) \
                / adv.shape[0]

        def guidance(actor_params):
            probs = jnp.exp(log_probs(actor_params))
            return jnp.mean(jax.vmap(model.guidance_loss)(probs, ref))

        flat = [ravel_pytree(jax.grad(f)(params["actor"]))[0] for f in (pg, guidance)]
        return tuple(flat)

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None)))


@dataclasses.dataclass(frozen=True)
class GradientSpec:
    """Gradient samples of agent 0 at one N and seed (a sweep task)."""

    n_agents: int
    seed: int
    rollouts: int
    horizon: int
    chunk: int
    hidden: int = 64

    @property
    def key(self) -> str:
        return (f"gradvar_n{self.n_agents}_s{self.seed}_r{self.rollouts}_t{self.horizon}"
                f"_h{self.hidden}")

    def result(self, folder: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("spec") != dataclasses.asdict(self):
            return None
        if not all("resolved" in r for r in data.get("alphas", {}).values()):
            return None  # written before resolution was recorded: sample again
        return data

    def execute(self, folder: Path) -> dict[str, Any]:
        import jax

        from dgpg.envs.cloud import EnvConfig
        from dgpg.learners.gradient_stats import relative_variance
        from dgpg.learners.ppo import TrainConfig, init_runner

        folder.mkdir(parents=True, exist_ok=True)
        # the fluid model: the stored gradient samples were drawn with it and the task key
        # names no model
        config = TrainConfig(algo="dgpg", hidden=self.hidden, model="fluid")
        env = EnvConfig(n_agents=self.n_agents, episode_steps=self.horizon)
        runner = jax.jit(init_runner, static_argnums=(1, 2))(jax.random.key(self.seed), config,
                                                             env)
        sample = gradient_sampler(config, env)
        keys = jax.random.split(jax.random.key(10_000 + self.seed), math.ceil(
            self.rollouts / self.chunk))
        pgs, guides = [], []
        for i, k in enumerate(keys):
            size = min(self.chunk, self.rollouts - i * self.chunk)
            pg, guide = sample(runner.params, runner.value_norm, jax.random.split(k, size),
                               jax.random.key(self.seed))
            pgs.append(np.asarray(pg, np.float64))
            guides.append(np.asarray(guide, np.float64))
        pg, guide = np.concatenate(pgs), np.concatenate(guides)
        rng = np.random.default_rng(self.seed)
        out = {"spec": dataclasses.asdict(self), "parameters": int(pg.shape[1]), "alphas": {}}
        for a in ALPHAS:
            g = (1.0 - a) * pg + a * guide
            r = relative_variance(g) | signal(g)
            r["ci_low"], r["ci_high"] = bootstrap_interval(g, rng)
            out["alphas"][f"{a:g}"] = r
        atomic.write_json(folder / "result.json", out)
        return out

    def progress(self, folder: Path) -> tuple[int, int]:
        return 0, 1


def tasks(grid: Grid) -> list[GradientSpec]:
    return [GradientSpec(n, s, grid.rollouts, grid.horizon, grid.chunk, grid.hidden)
            for n in grid.n_agents for s in range(grid.seeds)]


def run(out: Path, quick: bool = False, seeds: int | None = None, backend: str = "local",
        address: str | None = None, workers: int | None = None, runs: Path | None = None,
        grid: Grid | None = None, progress=None) -> dict[str, Any]:
    """Sample, fit and draw into `out`; returns the fitted slopes."""
    grid = common.pick_grid(grid, quick, seeds, QUICK, FULL)
    opts = common.options(out, runs, backend, address, workers, progress)
    specs = tasks(grid)
    # largest N first: the costliest tasks start at once instead of trailing the sweep
    report = common.run_tasks(sorted(specs, key=lambda s: -s.n_agents), opts)

    rows = []
    for spec in specs:
        res = report.results[spec.key]
        for a, r in res["alphas"].items():
            rows.append({"n_agents": spec.n_agents, "seed": spec.seed, "alpha": float(a),
                         "rollouts": spec.rollouts, "horizon": spec.horizon,
                         "relative_variance": r["relative_variance"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "resolved": r["resolved"], "lower_bound": r["lower_bound"],
                         "variance": r["variance"],
                         "squared_mean_unbiased": r["squared_mean_unbiased"],
                         "squared_mean_se": r["squared_mean_se"]})
    fits = [fit_resolved(rows, a) for a in REPORTED]
    variance_fits = [fit_variance(rows, a) for a in REPORTED]

    _plot(rows, fits, variance_fits, grid, opts.out / "variance.png")
    common.write_csv(opts.out / "variance.csv", rows)
    common.write_csv(opts.out / "variance_fit.csv",
                     [{"quantity": "relative_variance"} | f for f in fits]
                     + [{"quantity": "variance"} | f for f in variance_fits])
    atomic.write_text(opts.out / "variance.md", markdown(rows, fits, variance_fits, grid))
    return {"fits": fits, "variance_fits": variance_fits, "rows": rows,
            "seconds": report.seconds}


def _fit_points(points: list[dict[str, Any]], quantity: str, found: dict[str, Any]
                ) -> dict[str, Any]:
    """`found` plus the slope fit of `quantity` over `points` (NaN where they are too few)."""
    try:
        fit = fit_slope(np.array([r["n_agents"] for r in points]),
                        np.array([r[quantity] for r in points]),
                        groups=np.array([r["seed"] for r in points]))
    except ValueError:
        nan = float("nan")
        return found | {"slope": nan, "slope_ci": nan, "slope_stderr": nan, "intercept": nan,
                        "r2": nan}
    fit.pop("points")
    return found | fit


def fit_resolved(rows: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """The slope fit over the resolved points of one alpha; NaN where they are too few."""
    mine = [r for r in rows if r["alpha"] == alpha and r["resolved"]]
    return _fit_points(mine, "relative_variance",
                       {"alpha": alpha, "resolved_points": len(mine),
                        "points": sum(r["alpha"] == alpha for r in rows)})


def fit_variance(rows: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """The slope fit of the plain variance tr Var[g] over every (N, seed) point of one alpha.
    Unlike the relative variance it needs no resolved mean, so it is measured at every point."""
    mine = [r for r in rows if r["alpha"] == alpha]
    return _fit_points(mine, "variance",
                       {"alpha": alpha, "resolved_points": len(mine), "points": len(mine)})


def _fit_line(ax, fit: dict[str, Any], ns: list[int], color: str) -> None:
    """The fitted power law over the range of `ns`, if the fit exists."""
    if np.isfinite(fit["slope"]):
        x = np.geomspace(min(ns), max(ns), 50)
        ax.plot(x, np.exp(fit["intercept"]) * x ** fit["slope"], color=color, lw=1,
                label=f"fit: slope {fit['slope']:.2f} ± {fit['slope_ci']:.2f}")


def _plot(rows, fits, variance_fits, grid: Grid, path: Path) -> None:
    fig, (ax, ax_var) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, fit in enumerate(fits):
        a = fit["alpha"]
        color = f"C{i}"
        name = "policy gradient (alpha=0)" if a == 0 else f"DG-PG (alpha={a:g})"
        good = [r for r in rows if r["alpha"] == a and r["resolved"]]
        bad = [r for r in rows if r["alpha"] == a and not r["resolved"]]
        if good:
            mid = np.array([r["relative_variance"] for r in good])
            lo = np.minimum([r["ci_low"] for r in good], mid)
            hi = np.maximum([r["ci_high"] for r in good], mid)
            ax.errorbar([r["n_agents"] for r in good], mid, yerr=[mid - lo, hi - mid], fmt="o",
                        color=color, capsize=3, label=name)
        if bad:
            ax.plot([r["n_agents"] for r in bad], [r["lower_bound"] for r in bad], "^",
                    color=color, mfc="none",
                    label=f"{name}: not resolved, lower bound")
        _fit_line(ax, fit, [r["n_agents"] for r in good], color)
    for i, fit in enumerate(variance_fits):
        a = fit["alpha"]
        mine = [r for r in rows if r["alpha"] == a]
        label = "policy gradient (alpha=0)" if a == 0 else f"DG-PG (alpha={a:g})"
        ax_var.plot([r["n_agents"] for r in mine], [r["variance"] for r in mine], "o",
                    color=f"C{i}", label=label)
        _fit_line(ax_var, fit, [r["n_agents"] for r in mine], f"C{i}")
    for a in (ax, ax_var):
        common.n_axis(a, [r["n_agents"] for r in rows])
        a.set_yscale("log")
        a.legend(fontsize=7)
    ax.set(xlabel="N (agents)", ylabel="relative variance  tr Var[g] / |E g|^2",
           title=f"Agent 0's gradient at a fixed policy ({grid.rollouts} roll-outs of "
                 f"{grid.horizon} steps, {grid.seeds} seed(s))")
    ax_var.set(xlabel="N (agents)", ylabel="variance  tr Var[g]",
               title="Variance alone (every point; needs no resolved mean)")
    for a in (ax, ax_var):
        a.title.set_fontsize(9)
    common.save(fig, path)


def markdown(rows, fits, variance_fits, grid: Grid) -> str:
    head = (f"Relative variance of agent 0's gradient at a fixed (initial) policy; "
            f"{grid.rollouts} roll-outs of {grid.horizon} steps per point, {grid.seeds} "
            "seed(s) per N. Fit: log(relvar) = a_seed + b log N over the resolved (N, seed) points "
            "(one intercept per seed; a below is that of the pooled means), "
            "95 % CI of b from the t distribution. A point is resolved when the unbiased "
            "estimate of |E g|^2 exceeds twice its standard error; otherwise only a lower "
            "bound on the relative variance is known (shown as >= bound).\n\n")

    def slope(f):
        if not np.isfinite(f["slope"]):
            return ["too few resolved points", "", "", ""]
        return [f"{f['slope']:.3f}",
                f"[{f['slope'] - f['slope_ci']:.3f}, {f['slope'] + f['slope_ci']:.3f}]",
                f"{f['intercept']:.3f}", f"{f['r2']:.3f}"]

    fit_table = common.md_table(
        ["alpha", "slope b", "95 % CI of b", "intercept a", "r^2", "resolved points"],
        [[f"{f['alpha']:g}", *slope(f), f"{f['resolved_points']}/{f['points']}"]
         for f in fits])

    def cell(r):
        if not r["resolved"]:
            return f">= {r['lower_bound']:.3g}"
        return f"{r['relative_variance']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"

    ns = sorted({r["n_agents"] for r in rows})
    per_n = [[n, *[", ".join(cell(r) for r in rows if r["n_agents"] == n and r["alpha"] == a)
                   for a in REPORTED]] for n in ns]
    point_table = common.md_table(
        ["N", *[f"relvar, alpha={a:g} (bootstrap 95 % CI), per seed" for a in REPORTED]],
        per_n)

    variance_head = ("\nThe variance alone, tr Var[g], is measured at every point (no mean to "
                     "resolve). Fit: log(tr Var) = a_seed + b log N over every (N, seed) "
                     "point.\n\n")
    variance_fit_table = common.md_table(
        ["alpha", "slope b", "95 % CI of b", "intercept a", "r^2", "points"],
        [[f"{f['alpha']:g}", *slope(f), f"{f['points']}"] for f in variance_fits])
    per_n_variance = [[n, *[", ".join(f"{r['variance']:.3g}" for r in rows
                                      if r["n_agents"] == n and r["alpha"] == a)
                            for a in REPORTED]] for n in ns]
    variance_table = common.md_table(
        ["N", *[f"tr Var, alpha={a:g}, per seed" for a in REPORTED]], per_n_variance)
    return (head + fit_table + "\n" + point_table + variance_head + variance_fit_table + "\n"
            + variance_table)
