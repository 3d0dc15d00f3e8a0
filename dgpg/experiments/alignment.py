"""Learning curves of the aligned model against the fluid one and the baselines (docs/design.md,
section 4).

    alignment  learning curves at N = 5, 20, 50, 200 of DG-PG with the aligned model (the
               default), DG-PG with the fluid model, MAPPO and IPPO, with best-fit-central,
               least-loaded and model-greedy as lines (their greedy returns on the same
               validation scenarios). Writes alignment.png, alignment.csv, alignment_table.csv
               and alignment.md. The ablation of the model's choices is `ablation`.

A baseline may have runs with other step sizes at some N (the step-size check of figure 4):
the curves use, per learner and N, the run with the best validation return (never the test
return). Heuristic lines are evaluated once per N on the validation scenarios and cached like a
run (`runs/validation_heuristics_n<N>_<digest>/result.json`, figure 4's heuristic task).
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

from dgpg.experiments import common  # noqa: E402
from dgpg.experiments.sweep import RunSpec, overrides_json  # noqa: E402
from dgpg.experiments.tasks import HeuristicSpec  # noqa: E402

LINES = ("best-fit-central", "least-loaded", "model-greedy")
STEP_SIZE_CHECK = {
    ("mappo", 50): (overrides_json(train={"learning_rate": 1e-3}),),
    ("ippo", 50): (overrides_json(train={"learning_rate": 3e-3}),),
}
"""Baseline runs with another step size than the tuned one (figure 4's step-size check)."""


@dataclasses.dataclass(frozen=True)
class CurvesGrid:
    n_agents: tuple[int, ...] = (5, 20, 50, 200)
    episodes: int = 200
    large_n: int = 100
    """N above which `large_n_episodes` is DG-PG's (aligned) budget."""
    large_n_episodes: int = 100
    baseline_episodes: int = 200
    """Budget of the fluid model, MAPPO and IPPO (their figure 4 runs); at large N only the
    first `large_n_episodes` of their curves are drawn."""
    alpha: float = 0.5
    seeds: int = 3
    overrides: str = ""
    step_size_check: bool = True

    def episodes_at(self, n: int) -> int:
        return self.episodes if n <= self.large_n else self.large_n_episodes


FULL = CurvesGrid()
QUICK = CurvesGrid(n_agents=(5, 20), episodes=15, baseline_episodes=15, seeds=1,
                          step_size_check=False)


# --------------------------------------------------------------------------- tasks


CURVE_KINDS = (("dgpg", "aligned"), ("dgpg", "fluid"), ("mappo", "none"), ("ippo", "none"))


def curve_tasks(grid: CurvesGrid) -> dict[tuple[str, str, int], list[RunSpec]]:
    """Runs behind each curve, keyed (algo, model, N): several only for step-size variants."""
    runs: dict[tuple[str, str, int], list[RunSpec]] = {}
    for n in grid.n_agents:
        for algo, model in CURVE_KINDS:
            episodes = grid.episodes_at(n) if model == "aligned" else grid.baseline_episodes
            specs = [RunSpec(algo, n, episodes, alpha=grid.alpha, seeds=grid.seeds,
                             overrides=grid.overrides, model=model)]
            if grid.step_size_check and not grid.overrides:
                specs += [RunSpec(algo, n, episodes, seeds=grid.seeds, overrides=o, model=model)
                          for o in STEP_SIZE_CHECK.get((algo, n), ())]
            runs[(algo, model, n)] = specs
    return runs


# --------------------------------------------------------------------------- alignment


def label(algo: str, model: str) -> str:
    return f"DG-PG ({model})" if algo == "dgpg" else {"mappo": "MAPPO", "ippo": "IPPO"}[algo]


def run(out: Path, grid: CurvesGrid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the curves' runs and draw alignment.png into `out`."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    by_curve = curve_tasks(grid)
    lines = {n: HeuristicSpec(n, LINES, grid.overrides, scenarios="validation")
             for n in grid.n_agents}
    report = common.run_tasks([s for specs in by_curve.values() for s in specs]
                              + list(lines.values()), opts)

    fig, axes = plt.subplots(1, len(grid.n_agents), figsize=(4.2 * len(grid.n_agents), 4.0),
                             squeeze=False)
    curve_rows, rows, speed = [], [], []
    for ax, n in zip(axes[0], grid.n_agents, strict=True):
        shown = grid.episodes_at(n)
        full = {}
        for i, (algo, model) in enumerate(CURVE_KINDS):
            specs = by_curve[(algo, model, n)]
            spec = max(specs, key=lambda s: report.results[s.key]["best_val_return"])
            summary = report.results[spec.key]
            full[algo, model] = common.val_curves(common.run_folder(opts, spec))
            values = full[algo, model][:shown]
            name = label(algo, model)
            if spec.overrides and len(specs) > 1:
                name += f" (lr {json.loads(spec.overrides)['train']['learning_rate']:g})"
            common.plot_band(ax, values, name, f"C{i}")
            curve_rows += common.curve_rows(values, n_agents=n, learner=name)
            row = common.run_row(spec, summary, values)
            row.update(learner=name, model=model, val_return_at_10=value_at(values, 10))
            rows.append(row)
        speed.append({"n_agents": n, **speed_up(full["dgpg", "aligned"], full["mappo", "none"])})
        returns = {h: v["return"]["mean"]
                   for h, v in report.results[lines[n].key]["policies"].items()}
        for name, ls in zip(LINES, ("--", ":", "-."), strict=True):
            ax.axhline(returns[name], color="k", ls=ls, lw=1, label=name)
        ref = returns["best-fit-central"]
        ax.set_ylim(3.0 * ref, 0.5 * max(returns.values()))
        ax.set(title=f"N = {n}", xlabel="episode")
        for r in rows:
            if r["n_agents"] == n:
                r.update({f"{h}_val_return": returns[h] for h in LINES})
    axes[0][0].set_ylabel("greedy validation return")
    axes[0][0].legend(fontsize=7, loc="lower right")
    common.write_outputs(opts.out, "alignment", fig, curve_rows, rows,
                         curves_markdown(rows) + "\n" + speed_markdown(speed))
    common.write_csv(opts.out / "alignment_speed.csv", speed)
    return {"rows": rows, "speed": speed, "seconds": report.seconds}


def first_reaching(values: np.ndarray, target: float) -> int | None:
    """First episode whose 5-episode rolling mean (of the mean over seeds) is >= target."""
    mean = values.mean(axis=1)
    w = common.FINAL_WINDOW
    if mean.size < w:
        return None
    rolling = np.convolve(mean, np.ones(w) / w, mode="valid")
    hit = np.nonzero(rolling >= target)[0]
    return int(hit[0]) + w if hit.size else None


def speed_up(guided: np.ndarray, mappo: np.ndarray) -> dict[str, Any]:
    """How much sooner DG-PG reaches MAPPO's final validation return (mean of its last 5
    episodes), both measured by the 5-episode rolling mean."""
    target = float(mappo[-common.FINAL_WINDOW:].mean())
    dg, mp = first_reaching(guided, target), first_reaching(mappo, target)
    return {"mappo_episodes": mappo.shape[0], "mappo_final_val_return": target,
            "mappo_first_episode": mp, "dgpg_first_episode": dg,
            "speed_up": mp / dg if dg and mp else None}


def speed_markdown(speed: list[dict[str, Any]]) -> str:
    head = ("How soon the 5-episode rolling mean of DG-PG (aligned) reaches MAPPO's final "
            "validation return (the mean of MAPPO's last 5 episodes):\n\n")
    return head + common.md_table(
        ["N", "MAPPO episodes", "MAPPO final val", "MAPPO reaches it", "DG-PG reaches it",
         "speed-up"],
        [[r["n_agents"], r["mappo_episodes"], common.fmt(r["mappo_final_val_return"]),
          common.fmt(r["mappo_first_episode"], missing="-"),
          common.fmt(r["dgpg_first_episode"], missing="never"),
          common.fmt(r["speed_up"], 1, missing="-")] for r in speed])


def value_at(values: np.ndarray, episode: int) -> float | None:
    return float(values[episode - 1].mean()) if values.shape[0] >= episode else None


def curves_markdown(rows: list[dict[str, Any]]) -> str:
    head = (f"Greedy validation return (mean over seeds); {common.SETTLE_NOTE} (the reference: "
            "best-fit-central; per seed in brackets), over the episodes drawn; final = mean of "
            f"the last 5 episodes drawn; {common.RETURN_NOTE}.\n\n")
    table = common.md_table(
        ["N", "learner", "episodes", "settle", "per seed", "val at 10", "final val",
         *common.RETURN_HEADERS, "best-fit-central val", "least-loaded val",
         "model-greedy val"],
        [[r["n_agents"], r["learner"], r["episodes"], common.settle_cell(r),
          r["episodes_to_settle_per_seed"].replace("null", "-"),
          common.fmt(r["val_return_at_10"], missing="-"),
          common.pm(r["final_val_return"], r["final_val_return_std"]),
          *common.return_cells(r),
          common.fmt(r["best-fit-central_val_return"]),
          common.fmt(r["least-loaded_val_return"]),
          common.fmt(r["model-greedy_val_return"])] for r in rows])
    return head + table
