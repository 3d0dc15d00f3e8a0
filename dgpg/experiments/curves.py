"""Learning curves of training runs: validation return per episode, mean over seeds with a band.

Reads each run folder's metrics.csv and summary.json (for the line of the run's reference heuristic)
and writes one PNG, a CSV of the plotted numbers and a Markdown table of the runs' summaries
(test returns of the best checkpoint and of the final policy, greedy and sampled, episodes to
settle, wall time).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.config import read_summary  # noqa: E402


class CurveError(Exception):
    """A run folder is missing or unreadable."""


def load_curve(run_dir: Path, column: str = "val_return") -> tuple[str, np.ndarray, dict]:
    """(label, (episodes, seeds) array of `column`, summary dict or {}) of one run folder."""
    metrics = run_dir / "metrics.csv"
    try:
        return _read_curve(run_dir, metrics, column)
    except CurveError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise CurveError(f"cannot read run folder {run_dir}: it is not one written by dgpg "
                         f"train ({type(e).__name__})") from None


def _read_curve(run_dir: Path, metrics: Path, column: str) -> tuple[str, np.ndarray, dict]:
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    config = json.loads((run_dir / "config.json").read_text())["run"]
    if not rows or column not in rows[0]:
        raise CurveError(f"{metrics} has no {column!r} values")
    episodes = sorted({int(r["episode"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    values = np.full((len(episodes), len(seeds)), np.nan)
    for r in rows:
        values[episodes.index(int(r["episode"])), seeds.index(int(r["seed"]))] = float(r[column])
    summary_path = run_dir / "summary.json"
    summary = read_summary(summary_path) if summary_path.exists() else {}
    if summary is None:
        raise CurveError(f"{summary_path} is not a summary written by dgpg train")
    summary_table([("check", 1, summary)])  # a malformed summary fails here, before any write
    reference = summary.get("reference_val_return")
    if "episodes_to_settle" not in summary and isinstance(reference, float) and values.size:
        from dgpg.training import episodes_to_settle  # a summary written before the key

        summary = {**summary, "episodes_to_settle": episodes_to_settle(
            np.nanmean(values, axis=1), reference)}
    label = config["algo"] if config["algo"] != "dgpg" else f"dgpg (alpha={config['alpha']})"
    return f"{label}, N={config['n_agents']}", values, summary


def plot_runs(run_dirs: list[Path], out_png: Path, column: str = "val_return",
              title: str | None = None, steps: bool = False) -> None:
    """Plot the runs' curves into `out_png` (and the numbers into the same name .csv); the
    x-axis in episodes, or with `steps` in environment steps."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = []
    reference = reference_name = None
    summaries = []
    for i, run_dir in enumerate(run_dirs):
        label, values, summary = load_curve(run_dir, column)
        summaries.append((label, values.shape[1], summary))
        episodes = np.arange(1, values.shape[0] + 1)
        x = episodes * (_episode_steps(run_dir) if steps else 1)
        mean = np.nanmean(values, axis=1)
        lo, hi = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        n_seeds = values.shape[1]
        ax.plot(x, mean, color=f"C{i}", label=f"{label} ({n_seeds} seed{'s' * (n_seeds > 1)})")
        if n_seeds > 1:
            ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.2)
        rows += [{"run": str(run_dir), "label": label, "episode": int(e), "mean": float(m),
                  "min": float(a), "max": float(b)}
                 for e, m, a, b in zip(episodes, mean, lo, hi, strict=True)]
        key = "reference_val_return" if column == "val_return" else None
        if key and key in summary:
            reference, reference_name = summary[key], summary.get("reference", "reference")
    magnitudes = np.abs([r["mean"] for r in rows]) if rows else np.ones(1)
    if magnitudes.max() > 20 * max(magnitudes.min(), 1.0):  # early returns dwarf late ones
        ax.set_yscale("symlog", linthresh=10.0)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="environment steps" if steps else "episode", ylabel=column.replace("_", " "),
           title=title or "learning curves (greedy policy on the 10 validation scenarios)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_figure(out_png, fig)
    plt.close(fig)
    if rows:
        atomic.write_csv(out_png.with_suffix(".csv"), rows, list(rows[0]))
    atomic.write_text(out_png.with_suffix(".md"), summary_table(summaries))


def _episode_steps(run_dir: Path) -> int:
    """Steps per episode of a run (its config.json's env section)."""
    return int(json.loads((run_dir / "config.json").read_text())["env"]["episode_steps"])


def summary_table(summaries: list[tuple[str, int, dict]]) -> str:
    """Markdown table of (label, seeds, summary.json contents); '-' where a run has no summary
    yet (it is unfinished) or its summary lacks a value (written before it was computed)."""

    def num(summary: dict, key: str, fmt: str) -> str:
        value = summary.get(key)
        return "-" if value is None else format(value, fmt)

    def test(summary: dict, key: str) -> str:
        value = summary.get(key)
        if value is None:
            return "-"
        return f"{value:.2f} ± {summary[f'{key}_ci']:.2f}"  # a value without its CI: refused

    references = {s.get("reference", "reference") for _, _, s in summaries if s}
    reference = references.pop() if len(references) == 1 else "reference"
    lines = [f"| run | seeds | test, greedy (95 % CI) | test, sampled | final policy test, greedy "
             f"| final policy test, sampled | {reference} test return | best val return | "
             "episodes to settle | wall time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, seeds, s in summaries:
        settle = s.get("episodes_to_settle", "-") if s else "-"
        returns = " | ".join(test(s, k) for k in ("test_return", "test_return_sampled",
                                                  "final_test_return",
                                                  "final_test_return_sampled"))
        lines.append(f"| {label} | {seeds} | {returns} | "
                     f"{num(s, 'reference_test_return', '.2f')} | "
                     f"{num(s, 'best_val_return', '.2f')} | "
                     f"{'not within 10 %' if settle is None else settle} | "
                     f"{num(s, 'wall_seconds', '.0f')} |")
    head = ("Test = the best-on-validation checkpoint, greedy on the test scenarios and sampled "
            "on the first 10 (± 95 % CI); final policy = the policy after the last episode, "
            "tested the same way; episodes to settle = the first episode from which the greedy "
            f"validation return (mean over seeds) stays within 10 % of {reference}'s; - = not in "
            "the run's summary.\n\n")
    return head + "\n".join(lines) + "\n"
