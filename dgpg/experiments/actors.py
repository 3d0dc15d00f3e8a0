"""The actor ablation: does DG-PG's advantage depend on the actor's inductive bias?

DG-PG (aligned), MAPPO and IPPO, each with each of the three actors whose size does not depend
on N (`scorer`, the default pair scorer; `scorer-raw`, the same without the after-placement
utilisation features; `mlp`, an MLP over the flattened local observation), at N in {5, 20, 50}:
200 episodes, 3 seeds. Every learner keeps figure 4's learning rate and entropy coefficient at
that N (`TUNED` below N = 50, `TUNED_AT_SCALE` from it), whatever the actor, so the `scorer`
runs are figure 4's own runs (shared when both are given the same --runs).

Top row: test cost (-return of the best-on-validation checkpoint, 40 test scenarios, 95 % CI)
per actor and learner, with best-fit-central and least-loaded as lines. Bottom row: learning
curves (greedy validation cost, mean of seeds), colour = learner, line style = actor. Writes
actors.png, actors.csv (curves), actors_table.csv and actors.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dgpg.config import overrides_json, parse_overrides  # noqa: E402
from dgpg.experiments import common, fig4  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402
from dgpg.experiments.tasks import HEURISTIC_NAMES, LEARNERS, HeuristicSpec  # noqa: E402
from dgpg.learners.config import TRANSFERABLE_ACTORS  # noqa: E402

COLORS = {"dgpg": "C0", "mappo": "C1", "ippo": "C2"}
LINESTYLES = {"scorer": "-", "scorer-raw": "--", "mlp": ":"}
LINES = ("best-fit-central", "least-loaded")
"""Heuristics drawn as reference lines (from figure 4's heuristic task, shared)."""


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: tuple[int, ...] = (5, 20, 50)
    actors: tuple[str, ...] = TRANSFERABLE_ACTORS
    algos: tuple[str, ...] = LEARNERS
    episodes: int = 200
    alpha: float = 0.5
    seeds: int = 3
    overrides: str = ""
    heuristics: tuple[str, ...] = HEURISTIC_NAMES
    """Evaluated as figure 4's heuristic task at each N (the same task, shared); must hold
    LINES."""
    tuned_from: int = 50
    tuned: tuple[tuple[str, str], ...] = ()
    """As in figure 4's grid: (algo, overrides JSON) pairs used at N >= tuned_from."""

    def overrides_at(self, algo: str, n: int, actor: str) -> str:
        """Figure 4's overrides of (algo, N), with the actor when it is not the default."""
        base = fig4.Grid(tuned=self.tuned, tuned_from=self.tuned_from,
                         overrides=self.overrides).overrides_at(algo, n)
        if actor == "scorer":
            return base
        parts = parse_overrides(base)
        return overrides_json(train=parts["train"] | {"actor": actor}, env=parts["env"])


FULL = Grid(tuned=fig4.scale_tuning())
QUICK = Grid(n_agents=(5,), episodes=15, seeds=1)


def tasks(grid: Grid) -> tuple[list[RunSpec], list[HeuristicSpec]]:
    runs = [RunSpec(algo, n, grid.episodes, alpha=grid.alpha, seeds=grid.seeds,
                    overrides=grid.overrides_at(algo, n, actor))
            for n in grid.n_agents for actor in grid.actors for algo in grid.algos]
    heuristics = [HeuristicSpec(n, grid.heuristics, grid.overrides)
                  for n in grid.n_agents]
    return runs, heuristics


def actor_of(spec: RunSpec) -> str:
    return parse_overrides(spec.overrides)["train"].get("actor", "scorer")


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    run_specs, heuristic_specs = tasks(grid)
    report = common.run_tasks([*heuristic_specs, *run_specs], opts)

    lines = {spec.n_agents: {name: report.results[spec.key]["policies"][name]["return"]["mean"]
                             for name in LINES} for spec in heuristic_specs}
    rows, curve_rows, curves = [], [], {}
    for spec in run_specs:
        summary = report.results[spec.key]
        values = common.val_curves(common.run_folder(opts, spec))
        actor = actor_of(spec)
        curves[spec.algo, spec.n_agents, actor] = values
        curve_rows += common.curve_rows(values, algo=spec.algo, n_agents=spec.n_agents,
                                        actor=actor)
        rows.append({"actor": actor, **common.run_row(spec, summary, values),
                     "least_loaded_test_return": lines[spec.n_agents]["least-loaded"]})

    fig = _plot(rows, curves, lines, grid)
    common.write_outputs(opts.out, "actors", fig, curve_rows, rows, markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def _plot(rows, curves, lines, grid: Grid):
    ns = grid.n_agents
    fig, axes = plt.subplots(2, len(ns), figsize=(5 * len(ns), 8), squeeze=False)
    width = 0.8 / len(grid.algos)
    for col, n in enumerate(ns):
        ax = axes[0, col]
        for i, algo in enumerate(grid.algos):
            mine = [next(r for r in rows if (r["algo"], r["n_agents"], r["actor"])
                         == (algo, n, actor)) for actor in grid.actors]
            x = np.arange(len(grid.actors)) + (i - (len(grid.algos) - 1) / 2) * width
            ax.errorbar(x, [-r["test_return"] for r in mine],
                        yerr=[r["test_return_ci"] for r in mine], fmt="o", capsize=3,
                        color=COLORS.get(algo, "C3"), label=algo)
        for name, style in zip(LINES, ({"color": "k", "ls": "--"}, {"color": "0.5", "ls": ":"}),
                               strict=True):
            ax.axhline(-lines[n][name], lw=1, label=name, **style)
        ax.set_xticks(range(len(grid.actors)), grid.actors)
        ax.set(yscale="log", title=f"N={n}: test cost (40 scenarios, 95 % CI)",
               ylabel="test cost = -return (lower is better)")
        ax.legend(fontsize=8)

        ax = axes[1, col]
        for algo in grid.algos:
            for actor in grid.actors:
                v = -curves[algo, n, actor].mean(axis=1)
                ax.plot(np.arange(1, len(v) + 1), v, color=COLORS.get(algo, "C3"),
                        ls=LINESTYLES.get(actor, "-."), lw=1.2, label=f"{algo}, {actor}")
        ax.axhline(-lines[n]["best-fit-central"], color="k", ls="--", lw=1)
        ax.set(xlabel="episode", yscale="log", title=f"N={n}: learning curves",
               ylabel=f"validation cost (greedy, mean of {grid.seeds} seed(s))")
        ax.legend(fontsize=6, ncol=3)
    fig.suptitle("Actor ablation: DG-PG vs MAPPO vs IPPO with each actor (the same for all)")
    return fig


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"{grid.seeds} seed(s), {grid.episodes} episodes per run; each learner keeps its "
            f"figure 4 learning rate and entropy coefficient whatever the actor. "
            f"{common.RETURN_NOTE[0].upper()}{common.RETURN_NOTE[1:]}. "
            f"{common.SETTLE_NOTE[0].upper()}{common.SETTLE_NOTE[1:]} (the reference: "
            "best-fit-central).\n\n")
    table = common.md_table(
        ["N", "actor", "algorithm", "settle", "seeds settled", *common.RETURN_HEADERS,
         "best-fit-central", "least-loaded"],
        [[r["n_agents"], r["actor"], r["algo"], common.settle_cell(r),
          common.settle_seeds_cell(r), *common.return_cells(r),
          common.fmt(r["reference_test_return"]),
          common.fmt(r["least_loaded_test_return"])] for r in rows])
    return head + table
