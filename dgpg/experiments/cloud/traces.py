"""HeteroCloud on public cluster traces: figure 4's panel driven by real arrivals.

At each N of the grid and on each trace (`env.trace`), DG-PG, MAPPO and IPPO train on the
trace's training days with the current defaults and figure 4's step sizes at that N; their
best-on-validation checkpoints (validation days) are tested on the held-out test days, beside
every heuristic there. The same learners trained on the synthetic tide (seeds 100 to 102, whose
best checkpoints git keeps) are tested on each trace's test days too: does a policy trained on
the synthetic workload transfer to a real one? Writes traces.png (cost against N, one panel per
trace), traces.csv, traces_heuristics.csv, traces_workload.png (what the traces look like
against the tide) and traces.md. The mapping from a trace to arrivals is in
`dgpg.domains.cloud.trace`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.config import DEFAULTS, overrides_json, parse_overrides  # noqa: E402
from dgpg.experiments import common, fig4  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402
from dgpg.experiments.tasks import HEURISTIC_NAMES, LEARNERS, HeuristicSpec  # noqa: E402
from dgpg.experiments.transfer import TransferSpec  # noqa: E402

SYNTHETIC = "synthetic"


@dataclasses.dataclass(frozen=True)
class Grid:
    traces: tuple[str, ...] = ("alibaba2018", "google2019")
    n_agents: tuple[int, ...] = (50, 200)
    algos: tuple[str, ...] = LEARNERS
    episodes: int = 100
    seeds: int = 3
    transfer_seed: int = 100
    """First seed of the runs on the synthetic tide that are tested on the traces (seeds whose
    best checkpoints git keeps, .gitignore)."""
    heuristics: tuple[str, ...] = (*HEURISTIC_NAMES, "model-greedy")
    reference: fig4.Grid = fig4.FULL
    """Figure 4's grid: each learner's step sizes at each N and the guidance weight."""
    defaults: int = DEFAULTS

    def agent_counts(self) -> tuple[int, ...]:
        return self.n_agents

    def overrides(self, algo: str | None, n: int, trace: str | None) -> str:
        """The run's (or the heuristics', algo None) overrides: figure 4's step sizes at N and
        the trace (None: the synthetic tide)."""
        base = parse_overrides(self.reference.overrides_at(algo, n) if algo else
                               self.reference.overrides)
        env = base["env"] | ({"trace": trace} if trace else {})
        return overrides_json(train=base["train"], env=env)

    def run(self, algo: str, n: int, trace: str | None) -> RunSpec:
        return RunSpec(algo, n, self.episodes, alpha=self.reference.alpha, seeds=self.seeds,
                       seed=self.transfer_seed if trace is None else 0,
                       overrides=self.overrides(algo, n, trace), defaults=self.defaults)


FULL = Grid()
QUICK = Grid(traces=("alibaba2018",), n_agents=(5,), episodes=3, seeds=1,
             heuristics=("random", "best-fit-central", "model-greedy"), reference=fig4.QUICK)


def tasks(grid: Grid):
    """(trained on each trace, trained on the tide, heuristics per (trace, N), transfers)."""
    native = {(t, n, a): grid.run(a, n, t) for t in grid.traces for n in grid.n_agents
              for a in grid.algos}
    synthetic = {(n, a): grid.run(a, n, None) for n in grid.n_agents for a in grid.algos}
    heuristics = {(t, n): HeuristicSpec(n, grid.heuristics, grid.overrides(None, n, t))
                  for t in (*grid.traces, None) for n in grid.n_agents}
    transfers = {(t, n, a): TransferSpec(synthetic[n, a], n, overrides_json(env={"trace": t}))
                 for t in grid.traces for n in grid.n_agents for a in grid.algos}
    return native, synthetic, heuristics, transfers


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figures into `out`; returns the table rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    native, synthetic, heuristics, transfers = tasks(grid)
    # heuristics first (cheap), smallest N first; a transfer needs its run's checkpoint
    order = sorted([*native.values(), *synthetic.values()], key=lambda s: s.n_agents)
    common.run_tasks([*heuristics.values(), *order], opts)
    report = common.run_tasks([*heuristics.values(), *order, *transfers.values()], opts)

    rows, heuristic_rows = [], []
    for (trace, n), spec in heuristics.items():
        for name, metrics in report.results[spec.key]["policies"].items():
            row = {"trace": trace or SYNTHETIC, "policy": name, "trained_on": "",
                   "n_agents": n, "test_return": metrics["return"]["mean"],
                   "test_return_ci": metrics["return"]["ci95"]}
            rows.append({**row, "kind": "heuristic"})
            heuristic_rows.append({**row, **{f"{m}": v["mean"] for m, v in metrics.items()}})
    trained = [*native.items(), *(((None, n, algo), s) for (n, algo), s in synthetic.items())]
    for (trace, _, algo), spec in trained:
        summary = report.results[spec.key]
        values = common.val_curves(common.run_folder(opts, spec))
        rows.append({"trace": trace or SYNTHETIC, "policy": algo, "kind": "learner",
                     "trained_on": trace or SYNTHETIC,
                     **common.run_row(spec, summary, values),
                     "per_seed": json.dumps([p["test_return"] for p in summary["per_seed"]])})
    for (trace, n, algo), task in transfers.items():
        r = report.results[task.key]
        rows.append({"trace": trace, "policy": algo, "kind": "transfer",
                     "trained_on": SYNTHETIC, "n_agents": n, "test_return": r["test_return"],
                     "test_return_ci": r["test_return_ci"],
                     "per_seed": json.dumps(r["per_seed"])})

    _plot(rows, grid, opts.out / "traces.png")
    workload = workload_rows(grid.traces)
    _plot_workload(grid.traces, opts.out / "traces_workload.png")
    common.write_csv(opts.out / "traces.csv", rows)
    common.write_csv(opts.out / "traces_heuristics.csv", heuristic_rows)
    atomic.write_text(opts.out / "traces.md", markdown(rows, workload, grid))
    return {"rows": rows, "workload": workload, "seconds": report.seconds}


# --------------------------------------------------------------------------- the workloads


def tide_factor(steps: np.ndarray) -> np.ndarray:
    """The synthetic tide's noise-free load factor at `steps` (default configuration)."""
    from dgpg.domains.cloud.config import EnvConfig

    config = EnvConfig()
    return 1.0 + config.tide_amplitude * np.sin(2.0 * np.pi * steps / config.tide_period)


def workload_rows(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """What each trace's CPU load factor is like, beside the tide's (one sample per 300 s, a
    day as 1,000 steps): peak over mean, coefficient of variation, the standard deviation of
    its 5-minute changes (burstiness) and its autocorrelation one day apart (daily rhythm)."""
    from dgpg.domains.cloud import trace as traces

    def stats(name: str, series: np.ndarray) -> dict[str, Any]:
        day = traces.DAY_SECONDS // traces.TRACE_SECONDS
        a, b = series[:-day], series[day:]
        return {"workload": name, "days": round(series.size / day, 1),
                "peak_over_mean": float(series.max() / series.mean()),
                "cv": float(series.std() / series.mean()),
                "step_change_std": float(np.diff(series).std()),
                "daily_autocorrelation": float(np.corrcoef(a, b)[0, 1])}

    samples = np.arange(8 * 288) * (1000 / 288)  # 8 days of the tide at the traces' 300 s
    rows = [stats(SYNTHETIC + " tide (noise-free)", tide_factor(samples))]
    for name in names:
        rows.append(stats(name, traces.load(name).cpu))
    return rows


def _plot_workload(names: tuple[str, ...], path: Path) -> None:
    from dgpg.domains.cloud import trace as traces

    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(9, 2.2 * (len(names) + 1)),
                             sharex=True, squeeze=False)
    days = np.linspace(0, 7, 7 * 288)
    axes[0][0].plot(days, tide_factor(days * 1000), color="k", lw=1)
    axes[0][0].set_title("synthetic tide (noise-free; each step adds 10 % noise)", fontsize=9)
    for ax, name in zip(axes[1:, 0], names, strict=True):
        series = traces.load(name)
        t = np.arange(series.cpu.size) * traces.TRACE_SECONDS / traces.DAY_SECONDS
        shown = t < 7
        ax.plot(t[shown], series.cpu[shown], lw=0.8, label="CPU")
        ax.plot(t[shown], series.memory[shown], lw=0.8, label="memory")
        for split, (lo, _) in traces.TRACES[name].days.items():
            if 0 < lo < 7:
                ax.axvline(lo, color="0.5", ls=":", lw=1)
                ax.text(lo, ax.get_ylim()[1], f" {split}", va="top", fontsize=7)
        ax.set_title(f"{name}: load factors (mean 1 over the training days)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[:, 0]:
        ax.set_ylabel("load / mean")
    axes[-1][0].set_xlabel("day")
    fig.tight_layout()
    common.save(fig, path)


# --------------------------------------------------------------------------- figure and table


def _plot(rows: list[dict[str, Any]], grid: Grid, path: Path) -> None:
    fig, axes = plt.subplots(1, len(grid.traces), figsize=(5.5 * len(grid.traces), 4.4),
                             sharey=True, squeeze=False)
    for ax, trace in zip(axes[0], grid.traces, strict=True):
        mine = [r for r in rows if r["trace"] == trace]
        for i, algo in enumerate(grid.algos):
            for kind, ls, label in (("learner", "-", "trained on the trace"),
                                    ("transfer", "--", "trained on the tide")):
                line = sorted((r for r in mine if r["policy"] == algo and r["kind"] == kind),
                              key=lambda r: r["n_agents"])
                ax.errorbar([r["n_agents"] for r in line], [-r["test_return"] for r in line],
                            yerr=[r["test_return_ci"] for r in line], capsize=3, marker="o",
                            ls=ls, color=f"C{i}", label=f"{algo}, {label}")
        for name, color in (("best-fit-central", "k"), ("model-greedy", "0.5"),
                            ("least-loaded", "0.7")):
            line = sorted((r for r in mine if r["policy"] == name), key=lambda r: r["n_agents"])
            ax.plot([r["n_agents"] for r in line], [-r["test_return"] for r in line],
                    color=color, lw=1, ls="-.", marker=".", label=name)
        common.n_axis(ax, grid.n_agents)
        ax.set(xlabel="N (agents)", title=f"{trace}: test days", yscale="log",
               ylabel="test cost = -return (lower is better)" if ax is axes[0][0] else None)
        ax.legend(fontsize=7)
    fig.suptitle(f"HeteroCloud on cluster traces: best checkpoints on 40 test windows "
                 f"({grid.seeds} seed(s), 95 % CI)")
    fig.tight_layout()
    common.save(fig, path)


def markdown(rows: list[dict[str, Any]], workload: list[dict[str, Any]], grid: Grid) -> str:
    by = {(r["trace"], r["policy"], r["kind"], r["n_agents"]): r for r in rows}
    lines = []
    for trace in (*grid.traces, SYNTHETIC):
        for n in grid.n_agents:
            ref = by.get((trace, "best-fit-central", "heuristic", n))
            greedy = by.get((trace, "model-greedy", "heuristic", n))
            for algo in grid.algos:
                for kind in ("learner", "transfer"):
                    r = by.get((trace, algo, kind, n))
                    if r is None:
                        continue
                    native = kind == "learner"
                    lines.append([
                        trace, n, algo, r["trained_on"],
                        common.pm(r["test_return"], r["test_return_ci"]),
                        common.pm_or_dash(r.get("final_test_return"),
                                          r.get("final_test_return_ci")) if native else "-",
                        common.pm_or_dash(r.get("test_return_sampled"),
                                          r.get("test_return_sampled_ci")) if native else "-",
                        common.settle_seeds_cell(r) if native else "-",
                        _ratio(r["test_return"], greedy), _ratio(r["test_return"], ref)])
            for name in grid.heuristics:
                h = by.get((trace, name, "heuristic", n))
                if h is not None:
                    lines.append([trace, n, name, "", common.pm(h["test_return"],
                                                                 h["test_return_ci"]),
                                  "", "", "", _ratio(h["test_return"], greedy),
                                  _ratio(h["test_return"], ref)])
    head = (f"Test return on 40 windows of each trace's test days (synthetic: the tide's 40 "
            f"test scenarios), mean ± 95 % CI over windows of the seeds' mean; {grid.seeds} "
            f"seed(s), {grid.episodes} episodes, defaults generation {grid.defaults}. Greedy "
            "and sampled returns of the best-on-validation checkpoints, greedy return of the "
            "final policies; 'settle' is the first episode from which validation stays within "
            "10 % of best-fit-central's, per seed. Rows trained on the synthetic tide are its "
            "best checkpoints tested on the trace. Cost ratios are to `model-greedy` and to "
            "best-fit-central on the same windows (below 1 is better).\n\n")
    table = common.md_table(
        ["workload", "N", "policy", "trained on", "test (best)", "test (final)",
         "test (sampled)", "settle", "cost / model-greedy", "cost / best-fit-central"], lines)
    stats = common.md_table(
        ["workload", "days", "peak / mean", "CV", "5-min change std", "daily autocorr."],
        [[w["workload"], w["days"], f"{w['peak_over_mean']:.2f}", f"{w['cv']:.3f}",
          f"{w['step_change_std']:.3f}", f"{w['daily_autocorrelation']:.2f}"]
         for w in workload])
    return (head + table + "\n\nThe CPU load factor of each workload, one sample per 5 "
            "minutes (the tide at 1,000 steps a day; its 10 % noise per step is not in the "
            "noise-free series):\n\n" + stats + "\n")


def _ratio(value: float, against: dict[str, Any] | None) -> str:
    if against is None or abs(against["test_return"]) < 1e-12:
        return "-"
    return f"{value / against['test_return']:.3f}"
