"""Step-size and entropy tuning for fair baselines: the same grid for every learner.

Every learner (DG-PG, MAPPO, IPPO) is trained at each (learning rate, entropy coefficient) of
one grid, with the same budget and seeds, at each N of the grid. A configuration is scored on
the validation scenarios, never on test: the greedy validation return over the last
`common.FINAL_WINDOW` episodes, averaged over seeds (the return of the last episode alone, the
score of the first sweep, is reported beside it). Each grid point is an ordinary training run
(`RunSpec` with the pair as overrides), so an interrupted sweep resumes where it stopped.

`TUNED` (N = 10) and `TUNED_AT_SCALE` (N = 50) in `dgpg.learners.config` hold the winners;
a test checks them against the committed table. Writes tuning.png (the score of every pair, one
panel per learner and N), tuning.csv (every run) and tuning.md.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.config import overrides_json  # noqa: E402
from dgpg.experiments import common  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402
from dgpg.learners.config import ALGORITHMS  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: tuple[int, ...] = (10, 50)
    episodes: int = 100
    """Training episodes at N > small_n."""
    small_n: int = 10
    small_n_episodes: int = 20
    """Training episodes at N <= small_n (the budget of the first sweep, at N = 10)."""
    seeds: int = 2
    learning_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    entropy_coefs: tuple[float, ...] = (0.0, 0.003, 0.01)
    algos: tuple[str, ...] = ALGORITHMS
    alpha: float = 0.5

    def episodes_at(self, n: int) -> int:
        return self.small_n_episodes if n <= self.small_n else self.episodes


FULL = Grid()
QUICK = Grid(n_agents=(5,), small_n=5, small_n_episodes=4, seeds=1,
             learning_rates=(1e-3, 3e-3), entropy_coefs=(0.01,))


def pair_overrides(learning_rate: float, ent_coef: float) -> str:
    return overrides_json(train={"learning_rate": learning_rate, "ent_coef": ent_coef})


def tasks(grid: Grid) -> list[RunSpec]:
    return [RunSpec(algo, n, grid.episodes_at(n), alpha=grid.alpha, seeds=grid.seeds,
                    overrides=pair_overrides(lr, ent))
            for n in grid.n_agents
            for algo, lr, ent in itertools.product(grid.algos, grid.learning_rates,
                                                   grid.entropy_coefs)]


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid; writes the table and figure into `out`; returns the rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    specs = tasks(grid)
    report = common.run_tasks(specs, opts)

    rows = []
    for spec in specs:
        train = spec.run_config().train_config()
        values = common.val_curves(common.run_folder(opts, spec))
        summary = report.results[spec.key]
        rows.append({"algo": spec.algo, "n_agents": spec.n_agents, "episodes": spec.episodes,
                     "seeds": spec.seeds, "learning_rate": train.learning_rate,
                     "ent_coef": train.ent_coef,
                     "score": float(values[-common.FINAL_WINDOW:].mean()),
                     "score_std": float(values[-common.FINAL_WINDOW:].mean(axis=0).std()),
                     "last_val_return": float(values[-1].mean()),
                     "best_val_return": summary["best_val_return"],
                     "wall_seconds": summary["wall_seconds"]})
    for row in rows:
        row["best"] = row is best(rows, row["algo"], row["n_agents"])
    _plot(rows, grid, opts.out / "tuning.png")
    common.write_csv(opts.out / "tuning.csv", rows)
    atomic.write_text(opts.out / "tuning.md", markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def best(rows: list[dict[str, Any]], algo: str, n_agents: int) -> dict[str, Any]:
    """The row of the best score of `algo` at `n_agents` (the first of equal ones)."""
    mine = [r for r in rows if r["algo"] == algo and r["n_agents"] == n_agents]
    if not mine:
        raise ValueError(f"no tuning runs of {algo} at N={n_agents}")
    return max(mine, key=lambda r: r["score"])


def _plot(rows: list[dict[str, Any]], grid: Grid, path: Path) -> None:
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    ns = sorted({r["n_agents"] for r in rows})
    fig, axes = plt.subplots(len(ns), len(algos), figsize=(3.6 * len(algos), 3.0 * len(ns)),
                             squeeze=False)
    for (i, n), (j, algo) in itertools.product(enumerate(ns), enumerate(algos)):
        ax = axes[i][j]
        score = np.full((len(grid.learning_rates), len(grid.entropy_coefs)), np.nan)
        for r in rows:
            if r["algo"] == algo and r["n_agents"] == n:
                score[grid.learning_rates.index(r["learning_rate"]),
                      grid.entropy_coefs.index(r["ent_coef"])] = r["score"]
        image = ax.imshow(score, cmap="viridis", origin="lower", aspect="auto")
        winner = best(rows, algo, n)
        for a, b in itertools.product(range(score.shape[0]), range(score.shape[1])):
            chosen = (grid.learning_rates[a] == winner["learning_rate"]
                      and grid.entropy_coefs[b] == winner["ent_coef"])
            light = image.norm(score[a, b]) > 0.6  # dark text on viridis' yellow end
            ax.text(b, a, f"{score[a, b]:.1f}", ha="center", va="center", fontsize=8,
                    color="k" if light else "w", fontweight="bold" if chosen else "normal")
        ax.set_xticks(range(len(grid.entropy_coefs)), [f"{e:g}" for e in grid.entropy_coefs])
        ax.set_yticks(range(len(grid.learning_rates)), [f"{x:g}" for x in grid.learning_rates])
        ax.set(xlabel="entropy coefficient", ylabel="learning rate",
               title=f"{algo}, N={n}, {grid.episodes_at(n)} episodes")
        ax.title.set_fontsize(9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"Validation return, mean of the last {common.FINAL_WINDOW} episodes and "
                 f"{grid.seeds} seed(s); the best of each panel in bold", fontsize=9)
    common.save(fig, path)


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"The same grid for every learner: learning rate x entropy coefficient, "
            f"{grid.seeds} seed(s). Score = greedy validation return (10 scenarios) over the "
            f"last {common.FINAL_WINDOW} episodes, mean of seeds (± std over seeds); higher "
            "is better, the best of each learner and N in bold. Last = the last episode "
            "alone.\n")
    out = [head]
    for n in sorted({r["n_agents"] for r in rows}):
        mine = [r for r in rows if r["n_agents"] == n]
        out.append(f"\n**N = {n}, {grid.episodes_at(n)} episodes**\n\n")
        out.append(common.md_table(
            ["algo", "learning rate", "entropy coef", "score", "last", "best val"],
            [[r["algo"], f"{r['learning_rate']:g}", f"{r['ent_coef']:g}",
              ("**{}**" if r["best"] else "{}").format(common.pm(r["score"], r["score_std"])),
              f"{r['last_val_return']:.2f}", f"{r['best_val_return']:.2f}"] for r in mine]))
    return "".join(out)
