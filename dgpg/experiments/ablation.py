"""Ablation of the aligned model (docs/design.md, section 4): which of its choices make DG-PG work.

DG-PG at N = 20 and 50 for 100 episodes: the fluid model against the aligned one at alpha in
{0.2, 0.5, 0.8}, and each variant of the aligned model at alpha = 0.5: `aligned-state` (the
other jobs at the current state instead of their expected placements) and `aligned-step` (the
one-step cost instead of the job's lifetime). Writes ablation.csv and ablation.md; the runs are
shared with the other experiments under the same --runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dgpg import atomic
from dgpg.experiments import common
from dgpg.experiments.alignment import value_at
from dgpg.experiments.sweep import RunSpec


@dataclasses.dataclass(frozen=True)
class AblationGrid:
    n_agents: tuple[int, ...] = (20, 50)
    episodes: int = 100
    alphas: tuple[float, ...] = (0.2, 0.5, 0.8)
    models: tuple[str, ...] = ("fluid", "aligned")
    variants: tuple[str, ...] = ("aligned-state", "aligned-step")
    """Models run at `variant_alpha` only."""
    variant_alpha: float = 0.5
    seeds: int = 3
    overrides: str = ""


FULL = AblationGrid()
QUICK = AblationGrid(n_agents=(20,), episodes=15, alphas=(0.5,), variants=(), seeds=1)


def tasks(grid: AblationGrid) -> list[RunSpec]:
    specs = []
    for n in grid.n_agents:
        for model in grid.models:
            specs += [RunSpec("dgpg", n, grid.episodes, alpha=a, seeds=grid.seeds,
                              overrides=grid.overrides, model=model) for a in grid.alphas]
        specs += [RunSpec("dgpg", n, grid.episodes, alpha=grid.variant_alpha, seeds=grid.seeds,
                          overrides=grid.overrides, model=m) for m in grid.variants]
    return specs


def run(out: Path, grid: AblationGrid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the ablation and write ablation.csv and ablation.md into `out`."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    specs = tasks(grid)
    report = common.run_tasks(specs, opts)
    rows = []
    for spec in specs:
        summary = report.results[spec.key]
        values = common.val_curves(common.run_folder(opts, spec))
        row = common.run_row(spec, summary, values)
        row.update(model=spec.model, val_return_at_10=value_at(values, 10))
        rows.append(row)
    common.write_csv(opts.out / "ablation.csv", rows)
    atomic.write_text(opts.out / "ablation.md", ablation_markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def ablation_markdown(rows: list[dict[str, Any]], grid: AblationGrid) -> str:
    head = (f"DG-PG, {grid.episodes} episodes, {grid.seeds} seed(s). Greedy validation "
            "return (mean over seeds) at episode 10 and over the last 5 episodes; "
            f"{common.SETTLE_NOTE} (the reference: best-fit-central; per seed); "
            f"{common.RETURN_NOTE}.\n\n")
    table = common.md_table(
        ["N", "model", "alpha", "settle", "per seed", "val at 10", "final val",
         *common.RETURN_HEADERS, "best-fit-central test"],
        [[r["n_agents"], r["model"], f"{r['alpha']:g}", common.settle_cell(r),
          r["episodes_to_settle_per_seed"].replace("null", "-"),
          common.fmt(r["val_return_at_10"], missing="-"),
          common.pm(r["final_val_return"], r["final_val_return_std"]),
          *common.return_cells(r), common.fmt(r["reference_test_return"])] for r in rows])
    return head + table
