"""Figure 2: sensitivity of DG-PG to the guidance weight alpha (docs/design.md, section 7).

DG-PG at one N (50 in the full run) for each alpha; learning curves (greedy validation return,
mean of seeds with a min-max band) with the best-fit-central return dashed, and a table of the
final validation return, the best checkpoint's test return (95 % CI over the 40 test scenarios)
and the episodes to converge. Writes fig2.png, fig2.csv (curves), fig2_table.csv and fig2.md.
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


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: int = 50
    alphas: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    episodes: int = 100
    seeds: int = 3
    overrides: str = ""


FULL = Grid()
QUICK = Grid(n_agents=10, episodes=15, seeds=1)


def tasks(grid: Grid) -> list[RunSpec]:
    return [RunSpec("dgpg", grid.n_agents, grid.episodes, alpha=a, seeds=grid.seeds,
                    overrides=grid.overrides) for a in grid.alphas]


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    specs = tasks(grid)
    report = common.run_tasks(specs, opts)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    curve_rows, rows = [], []
    reference = None
    for i, spec in enumerate(specs):
        summary = report.results[spec.key]
        values = common.val_curves(common.run_folder(opts, spec))
        common.plot_band(ax, values, f"alpha={spec.alpha:g}", f"C{i}")
        curve_rows += common.curve_rows(values, alpha=spec.alpha)
        rows.append(common.run_row(spec, summary, values))
        reference = summary["reference_val_return"]
    ax.axhline(reference, color="k", ls="--", lw=1, label="best-fit-central")
    ax.set(xlabel="episode", ylabel="validation return (greedy, 10 scenarios)",
           title=f"DG-PG, alpha sensitivity, N={grid.n_agents}")
    ax.legend(fontsize=8)
    common.write_outputs(opts.out, "fig2", fig, curve_rows, rows, markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"DG-PG at N={grid.n_agents}, {grid.episodes} episodes, {grid.seeds} seed(s). "
            f"Final = mean greedy validation return of the last {common.FINAL_WINDOW} episodes "
            f"(± std over seeds); {common.RETURN_NOTE}; {common.SETTLE_NOTE} (the reference: "
            "best-fit-central); first within 10 % = the first episode within 10 %, whether or "
            "not it stays.\n\n")
    table = common.md_table(
        ["alpha", "final val return", *common.RETURN_HEADERS, "best-fit-central test", "settle",
         "seeds settled", "first within 10 %"],
        [[f"{r['alpha']:g}", common.pm(r["final_val_return"], r["final_val_return_std"]),
          *common.return_cells(r), common.fmt(r["reference_test_return"]),
          common.settle_cell(r), common.settle_seeds_cell(r),
          common.fmt(r["first_episode_within"], missing="never")]
         for r in rows])
    return head + table
