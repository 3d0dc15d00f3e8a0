"""Figure 5: scale-invariant convergence of DG-PG (docs/design.md, section 7).

DG-PG learning curves for every N of figure 4 (the same runs: `dgpg reproduce all` trains them
once). Returns differ in scale between N, so each curve is divided by the magnitude of its own
best-fit-central validation return: best-fit-central is the dashed line at -1 and the
convergence threshold (within 10 %) the dotted line at -1.1. The table gives the
episodes-to-converge of each N. Writes fig5.png, fig5.csv (curves), fig5_table.csv and fig5.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dgpg.experiments import common, fig4  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402
from dgpg.training import CONVERGENCE_TOLERANCE  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Grid(fig4.Grid):
    """Figure 4's grid, DG-PG alone (so that equal runs are shared)."""

    algos: tuple[str, ...] = ("dgpg",)
    heuristics: tuple[str, ...] = ()
    extra_heuristics: tuple[str, ...] = ()


FULL = Grid(**{f.name: getattr(fig4.FULL, f.name) for f in dataclasses.fields(fig4.Grid)
               if f.name not in ("algos", "heuristics", "extra_heuristics")})
QUICK = Grid(n_agents=(*fig4.QUICK.n_agents, 50), episodes=fig4.QUICK.episodes, seeds=1)
"""fig4's quick runs (shared under `reproduce all`) and N = 50, a decade of N in minutes."""


def tasks(grid: Grid) -> list[RunSpec]:
    return fig4.learner_tasks(grid)


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    specs = tasks(grid)
    report = common.run_tasks(specs, opts)

    fluid = fig4.fluid_tasks(grid)
    fluid_report = common.run_tasks(fluid, opts) if fluid else None
    fig, axes = plt.subplots(1, 2 if fluid else 1, figsize=(13 if fluid else 7.5, 4.5),
                             squeeze=False, sharey=True)
    curve_rows, rows = [], []
    panels = [("aligned", specs, report)] + ([("fluid", fluid, fluid_report)] if fluid else [])
    colours = {n: f"C{i}" for i, n in enumerate(grid.n_agents)}
    for ax, (model, panel_specs, panel_report) in zip(axes[0], panels, strict=True):
        for spec in panel_specs:
            summary = panel_report.results[spec.key]
            values = common.val_curves(common.run_folder(opts, spec))
            scale = 1.0 / abs(summary["reference_val_return"])
            common.plot_band(ax, values, f"N={spec.n_agents}", colours[spec.n_agents],
                             scale=scale)
            curve_rows += [dict(r, normalised_mean=r["mean"] * scale)
                           for r in common.curve_rows(values, n_agents=spec.n_agents,
                                                      model=model)]
            rows.append(common.run_row(spec, summary, values) | {"model": model})
        ax.axhline(-1.0, color="k", ls="--", lw=1, label="best-fit-central")
        ax.axhline(-1.0 - CONVERGENCE_TOLERANCE, color="k", ls=":", lw=1,
                   label="converged (within 10 %)")
        ax.set(xlabel="episode", title=f"DG-PG convergence across N, {model} model")
        ax.legend(fontsize=7, ncol=2)
    axes[0][0].set_ylabel("validation return / |best-fit-central|")
    shown = [r["normalised_mean"] for r in curve_rows]
    axes[0][0].set_ylim(max(1.1 * min(*shown, -1.0 - CONVERGENCE_TOLERANCE), -5.0),
                        min(max(*shown, -1.0) + 0.2, 0.0))
    common.write_outputs(opts.out, "fig5", fig, curve_rows, rows, markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"DG-PG (alpha={grid.alpha:g}), {grid.seeds} seed(s) per N; the runs of figure 4 "
            f"(fluid: the fluid model's runs, drawn beside). {common.SETTLE_NOTE} (the "
            "reference: best-fit-central); per seed in brackets. First within 10 % = the first "
            "episode whose return is within 10 %, whether or not it stays; "
            f"{common.RETURN_NOTE}.\n\n")
    table = common.md_table(
        ["N", "model", "episodes", "settle", "per seed", "first within 10 %", "final val return",
         "best-fit-central val", *common.RETURN_HEADERS, "best-fit-central test"],
        [[r["n_agents"], r["model"], r["episodes"], common.settle_cell(r),
          r["episodes_to_settle_per_seed"].replace("null", "-"),
          common.fmt(r["first_episode_within"], missing="never"),
          common.pm(r["final_val_return"], r["final_val_return_std"]),
          common.fmt(r["reference_val_return"]),
          *common.return_cells(r), common.fmt(r["reference_test_return"])] for r in rows])
    return head + table
