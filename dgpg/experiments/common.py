"""Pieces shared by the experiments of `dgpg reproduce`: options, curves, tables.

Every experiment module exposes `QUICK` and `FULL` grids (frozen dataclasses) and
`run(out, quick, seeds, backend, address, workers, runs, grid, progress)`, which builds its
tasks, runs them with the sweep runner (`dgpg.experiments.sweep`) into `runs/` (by default
`out/runs`; `dgpg reproduce all` shares one folder between experiments, so equal runs are
trained once), and writes `<name>.png`, `<name>.csv` and `<name>.md` into `out`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dgpg import atomic
from dgpg.experiments import sweep
from dgpg.experiments.sweep import RunSpec, SweepReport

# The window over which "final" returns are averaged (the last episodes of a run).
FINAL_WINDOW = 5


@dataclasses.dataclass(frozen=True)
class Options:
    """How an experiment runs (not what it computes)."""

    out: Path
    runs: Path
    backend: str = "local"
    address: str | None = None
    workers: int | None = None
    progress: sweep.ProgressFn | None = None
    quick: bool = False
    """The reduced grid (`--quick`) was asked for."""


def prepare(out: Path, grid: Any, quick_grid: Any, full_grid: Any, quick: bool = False,
            seeds: int | None = None, runs: Path | None = None, backend: str = "local",
            address: str | None = None, workers: int | None = None,
            progress: sweep.ProgressFn | None = None) -> tuple[Any, Options]:
    """What every experiment's `run(out, grid=None, **options)` starts with: the grid to run
    (`grid`, else `quick_grid` or `full_grid`, with `seeds` replaced if given) and how to run it
    (the sweep's `backend`, `address`, `workers`, the `runs` folder, default `out`, and a
    `progress` callback)."""
    return (pick_grid(grid, quick, seeds, quick_grid, full_grid),
            dataclasses.replace(options(out, runs, backend, address, workers, progress),
                                quick=quick))


def options(out, runs=None, backend="local", address=None, workers=None,
            progress=None) -> Options:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return Options(out=out, runs=Path(runs) if runs is not None else out, backend=backend,
                   address=address, workers=workers, progress=progress)


def pick_grid(grid, quick: bool, seeds: int | None, quick_grid, full_grid):
    """The grid to run: `grid` if given, else QUICK or FULL, with `seeds` replaced if given."""
    chosen = grid if grid is not None else (quick_grid if quick else full_grid)
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        chosen = dataclasses.replace(chosen, seeds=seeds)
    return chosen


def run_tasks(tasks: Sequence[sweep.Task], opts: Options) -> SweepReport:
    return sweep.run_grid(tasks, opts.runs, backend=opts.backend, workers=opts.workers,
                          address=opts.address, progress=opts.progress)


def run_folder(opts: Options, task: sweep.Task) -> Path:
    return sweep.task_folder(opts.runs, task)


# --------------------------------------------------------------------------- curves


def val_curves(folder: Path) -> np.ndarray:
    """(episodes, seeds) greedy validation returns of a finished training run."""
    with (folder / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    episodes = max(int(r["episode"]) for r in rows)
    seed_ids = sorted({int(r["seed"]) for r in rows})
    values = np.full((episodes, len(seed_ids)), np.nan)
    for r in rows:
        values[int(r["episode"]) - 1, seed_ids.index(int(r["seed"]))] = float(r["val_return"])
    return values


def plot_band(ax, values: np.ndarray, label: str, color: str, ls: str = "-",
              scale: float = 1.0) -> None:
    """Mean over seeds (columns) as a line, min-max over seeds as a shaded band."""
    x = np.arange(1, values.shape[0] + 1)
    v = values * scale
    ax.plot(x, v.mean(axis=1), color=color, ls=ls,
            label=f"{label} ({v.shape[1]} seed{'s' * (v.shape[1] > 1)})")
    if v.shape[1] > 1:
        ax.fill_between(x, v.min(axis=1), v.max(axis=1), color=color, alpha=0.2, lw=0)


def curve_rows(values: np.ndarray, **labels: Any) -> list[dict[str, Any]]:
    """CSV rows (one per episode) of a run's curve: mean, min, max over seeds."""
    return [{**labels, "episode": e + 1, "mean": float(values[e].mean()),
             "min": float(values[e].min()), "max": float(values[e].max())}
            for e in range(values.shape[0])]


def converge_per_seed(values: np.ndarray, reference: float) -> list[int | None]:
    from dgpg.training import episodes_to_converge

    return [episodes_to_converge(values[:, s], reference) for s in range(values.shape[1])]


def settle_per_seed(values: np.ndarray, reference: float) -> list[int | None]:
    """`episodes_to_settle` of each seed's curve (a column of `values`)."""
    from dgpg.training import episodes_to_settle

    return [episodes_to_settle(values[:, s], reference) for s in range(values.shape[1])]


def first_within(values: np.ndarray, reference: float) -> int | None:
    """First episode whose mean (over seeds) return is within the convergence tolerance of
    `reference`, even if later ones fall out again; None if none is."""
    from dgpg.training import CONVERGENCE_TOLERANCE

    ok = values.mean(axis=1) >= reference - CONVERGENCE_TOLERANCE * abs(reference)
    return int(np.argmax(ok)) + 1 if ok.any() else None


RETURN_KEYS = ("test_return", "test_return_sampled", "final_test_return",
               "final_test_return_sampled")
"""The test returns of a summary (each with its key + "_ci"): the best-on-validation
checkpoints and the final policies, greedy and sampled. Summaries written before the sampled or
the final policies were tested lack some; a table shows "-" for them."""


def run_row(spec: RunSpec, summary: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """The numbers of one training run that the tables report. `episodes_to_settle` comes from
    the curves (`values`, metrics.csv), so a run written before the summary held it has it
    too; the test returns a summary lacks are None."""
    from dgpg.training import episodes_to_settle

    ref = summary["reference_val_return"]
    per_seed = converge_per_seed(values, ref)
    settled = settle_per_seed(values, ref)
    final = values[-FINAL_WINDOW:].mean(axis=0)
    returns = {}
    for key in RETURN_KEYS:
        returns[key] = summary.get(key)
        returns[f"{key}_ci"] = summary.get(f"{key}_ci")
    return {
        "algo": spec.algo, "n_agents": spec.n_agents, "alpha": spec.alpha,
        "episodes": spec.episodes, "seeds": spec.seeds,
        "episodes_to_settle": episodes_to_settle(values.mean(axis=1), ref),
        "settled_seeds": sum(c is not None for c in settled),
        "episodes_to_settle_per_seed": json.dumps(settled),
        "episodes_to_converge": summary["episodes_to_converge"],
        "converged_seeds": sum(c is not None for c in per_seed),
        "episodes_to_converge_per_seed": json.dumps(per_seed),
        "first_episode_within": first_within(values, ref),
        "final_val_return": float(final.mean()),
        "final_val_return_std": float(final.std()),
        "best_val_return": summary["best_val_return"],
        **returns,
        "reference_val_return": ref,
        "reference_test_return": summary["reference_test_return"],
        "wall_seconds": summary["wall_seconds"],
    }


# --------------------------------------------------------------------------- tables


def fmt(x: Any, digits: int = 2, missing: str = "not converged") -> str:
    if x is None:
        return missing
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def pm(mean: float, ci: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def pm_or_dash(mean: float | None, ci: float | None, digits: int = 2) -> str:
    """`pm`, the mean alone without a CI, "-" without a mean (a summary that lacks it)."""
    if mean is None:
        return "-"
    return fmt(float(mean), digits) if ci is None else pm(float(mean), float(ci), digits)


RETURN_HEADERS = ["test (greedy)", "test (sampled)", "final policy test (greedy)",
                  "final policy test (sampled)"]
"""Table columns of `return_cells`."""

RETURN_NOTE = ("test = the best-on-validation checkpoint, greedy on the 40 test scenarios and "
               "sampled on the first 10 (± 95 % CI over scenarios); final policy = the policy "
               "after the last episode, tested the same way; - = not in the run's summary "
               "(written before that was tested)")


def return_cells(row: dict[str, Any], digits: int = 2) -> list[str]:
    """The cells of RETURN_HEADERS for a `run_row`: greedy and sampled side by side, for the
    best-on-validation checkpoint and the final policy."""
    return [pm_or_dash(row.get(key), row.get(f"{key}_ci"), digits) for key in RETURN_KEYS]


def settle_cell(row: dict[str, Any]) -> str:
    return fmt(row["episodes_to_settle"], missing="never")


def settle_seeds_cell(row: dict[str, Any]) -> str:
    return f"{row['settled_seeds']}/{row['seeds']}"


SETTLE_NOTE = ("settle = the first episode from which the greedy validation return (mean over "
               "seeds) stays within 10 % of the reference heuristic's to the last episode "
               "(never: it ends outside); seeds settled = seeds whose own curve settles")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    atomic.write_csv(path, rows, fields)


def n_axis(ax, ns: Sequence[int]) -> None:
    """Log-scaled x axis of N with a plain label at each N of the grid."""
    from matplotlib.ticker import NullFormatter

    ns = sorted(set(ns))
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.xaxis.set_minor_formatter(NullFormatter())


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic.save_figure(path, fig)
    plt.close(fig)


def write_outputs(out: Path, name: str, fig, curve_rows: list[dict[str, Any]],
                  rows: list[dict[str, Any]], table_md: str) -> None:
    """A learning-curve figure's files: NAME.png, NAME.csv (the curves), NAME_table.csv and
    NAME.md (one row per run)."""
    save(fig, out / f"{name}.png")
    write_csv(out / f"{name}.csv", curve_rows)
    write_csv(out / f"{name}_table.csv", rows)
    atomic.write_text(out / f"{name}.md", table_md)
