"""Figure 3: the controlled comparison at small N (docs/design.md, section 7).

DG-PG, MAPPO and IPPO (identical actors; each with its tuned learning rate and entropy
coefficient, `dgpg.learners.ppo.TUNED`) at N in {2, 5, 10}: DG-PG for 200 episodes, MAPPO and
IPPO for 500. One panel per N with each algorithm's learning curve (greedy validation return,
mean of seeds with a min-max band) and best-fit-central dashed, drawn as the cost -return on a
log axis: early MAPPO and IPPO policies are 100 times worse than the others. Writes fig3.png,
fig3.csv (curves), fig3_table.csv and fig3.md (episodes to converge, final and test returns).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dgpg.experiments import common  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402

COLORS = {"dgpg": "C0", "mappo": "C1", "ippo": "C2"}


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: tuple[int, ...] = (2, 5, 10)
    episodes: tuple[tuple[str, int], ...] = (("dgpg", 200), ("mappo", 500), ("ippo", 500))
    """(algorithm, training episodes) pairs."""
    alpha: float = 0.5
    seeds: int = 3
    overrides: str = ""


FULL = Grid()
QUICK = Grid(n_agents=(2, 5), episodes=(("dgpg", 15), ("mappo", 40), ("ippo", 40)), seeds=1)


def tasks(grid: Grid) -> list[RunSpec]:
    return [RunSpec(algo, n, episodes, alpha=grid.alpha, seeds=grid.seeds,
                    overrides=grid.overrides)
            for n in grid.n_agents for algo, episodes in grid.episodes]


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    specs = tasks(grid)
    report = common.run_tasks(specs, opts)

    ns = grid.n_agents
    fig, axes = plt.subplots(1, len(ns), figsize=(5 * len(ns), 4), squeeze=False)
    curve_rows, rows = [], []
    for ax, n in zip(axes[0], ns, strict=True):
        reference = None
        for spec in (s for s in specs if s.n_agents == n):
            summary = report.results[spec.key]
            values = common.val_curves(common.run_folder(opts, spec))
            common.plot_band(ax, values, spec.algo, COLORS.get(spec.algo, "C3"), scale=-1.0)
            curve_rows += common.curve_rows(values, algo=spec.algo, n_agents=n)
            rows.append(common.run_row(spec, summary, values))
            reference = summary["reference_val_return"]
        ax.axhline(-reference, color="k", ls="--", lw=1, label="best-fit-central")
        ax.set(xlabel="episode", yscale="log", title=f"N={n}",
               ylabel="validation cost = -return (greedy, 10 scenarios)")
        ax.legend(fontsize=8)
    fig.suptitle("DG-PG vs MAPPO vs IPPO (identical actors)")
    common.write_outputs(opts.out, "fig3", fig, curve_rows, rows, markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"{grid.seeds} seed(s) per run. {common.SETTLE_NOTE} (the reference: "
            "best-fit-central); first within 10 % = the first episode within 10 %, whether or "
            f"not it stays. Final = mean of the last {common.FINAL_WINDOW} episodes (± std over "
            f"seeds); {common.RETURN_NOTE}.\n\n")
    table = common.md_table(
        ["N", "algorithm", "episodes", "settle", "seeds settled", "first within 10 %",
         "final val return", *common.RETURN_HEADERS, "best-fit-central test"],
        [[r["n_agents"], r["algo"], r["episodes"], common.settle_cell(r),
          common.settle_seeds_cell(r),
          common.fmt(r["first_episode_within"], missing="never"),
          common.pm(r["final_val_return"], r["final_val_return_std"]),
          *common.return_cells(r), common.fmt(r["reference_test_return"])] for r in rows])
    return head + table
