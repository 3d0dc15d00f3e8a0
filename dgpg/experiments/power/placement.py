"""PowerGrid: DG-PG, MAPPO and IPPO place flexible demand on IEEE test grids (`dgpg reproduce
power`).

The same learners, actors and step sizes as in the cloud (`TUNED`: each learner's own pair;
nothing was tuned for the grid), trained on case30 (congested at 1.3 times its load), case118
and case300 (line limits by `grid.with_limits`) with N from 20 to 1,000 aggregators. Each
seed's best-on-validation checkpoint is tested on the 40 test scenarios, and every heuristic of
the domain is evaluated on the same scenarios. The reference line is `central-optimum`, the
centrally optimal placement of each period's blocks (the relaxed problem, then rounded).

Costs are shown relative to the reference: test cost / reference cost, cost = -return (the
day's generation, violation and unserved-load cost over the cost of the day's mean load), so
1 is the reference and grids of different sizes share one axis. Writes power.png, power.csv
(learning curves), power_table.csv, power_heuristics.csv and power.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dgpg.config import overrides_json
from dgpg.domains.power import SPEC
from dgpg.experiments import common
from dgpg.experiments.panels import relative_cost_figure
from dgpg.experiments.sweep import RunSpec
from dgpg.experiments.tasks import LEARNERS, HeuristicSpec

DOMAIN = SPEC.name
REFERENCE = SPEC.reference
HEURISTIC_STYLES = {"random": "x", "nearest": "v", "cheapest-lmp": "^", "model-greedy": "D",
                    "central-optimum": "s"}


@dataclasses.dataclass(frozen=True)
class Panel:
    """One point of the grid: a case with N aggregators."""

    case: str
    n_agents: int

    @property
    def label(self) -> str:
        return f"{self.case}, N={self.n_agents}"


@dataclasses.dataclass(frozen=True)
class Grid:
    panels: tuple[Panel, ...] = (
        Panel("case30", 20), Panel("case30", 100),
        Panel("case118", 100), Panel("case118", 400),
        Panel("case300", 1000),
    )
    n_agents: tuple[int, ...] | None = None
    """Only the panels with these N (None: all); `--agents`."""
    case: str | None = None
    """Only the panels of this case (None: all); `--case`."""
    algos: tuple[str, ...] = LEARNERS
    episodes: int = 100
    alpha: float = 0.5
    seeds: int = 3
    heuristics: tuple[str, ...] = tuple(SPEC.heuristics)
    env: tuple[tuple[str, Any], ...] = ()
    """Other `PowerConfig` fields, (name, value) pairs, for every panel (e.g. a shorter day in
    tests)."""

    def agent_counts(self) -> tuple[int, ...]:
        """The N of the grid's panels (what `--agents` picks from)."""
        return tuple(dict.fromkeys(p.n_agents for p in self.panels))

    def chosen(self) -> tuple[Panel, ...]:
        return tuple(p for p in self.panels
                     if (self.n_agents is None or p.n_agents in self.n_agents)
                     and (self.case is None or p.case == self.case))

    def overrides(self, panel: Panel) -> str:
        return overrides_json(env=dict(self.env) | {"case": panel.case})


FULL = Grid()
QUICK = Grid(panels=(Panel("case30", 20),), episodes=10, seeds=1)


def tasks(grid: Grid) -> tuple[dict[Panel, list[RunSpec]], dict[Panel, list]]:
    """Per panel: its training runs, and its heuristic tasks (test, then validation)."""
    runs, heuristics = {}, {}
    for panel in grid.chosen():
        overrides = grid.overrides(panel)
        runs[panel] = [RunSpec(algo, panel.n_agents, grid.episodes, alpha=grid.alpha,
                               seeds=grid.seeds, overrides=overrides, domain=DOMAIN)
                       for algo in grid.algos]
        heuristics[panel] = [
            HeuristicSpec(panel.n_agents, grid.heuristics, overrides, domain=DOMAIN),
            HeuristicSpec(panel.n_agents, (REFERENCE,), overrides, scenarios="validation",
                               domain=DOMAIN)]
    return runs, heuristics


def run(out: Path, grid: Grid | None = None, case: str | None = None,
        **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows.
    `case` (`--case`) keeps the panels of that case only."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    if case is not None:
        grid = dataclasses.replace(grid, case=case)
    if not grid.chosen():
        raise ValueError("no panel to run: the grid has no panel of that case and N "
                         f"(panels: {', '.join(p.label for p in grid.panels)})")
    run_specs, heuristic_specs = tasks(grid)
    report = common.run_tasks([*(h for hs in heuristic_specs.values() for h in hs),
                               *(r for rs in run_specs.values() for r in rs)], opts)

    rows, curve_rows, curves, heuristic_rows = [], [], {}, []
    for panel, specs in run_specs.items():
        test, validation = (report.results[h.key]["policies"] for h in heuristic_specs[panel])
        ref_test = test[REFERENCE]["return"]["mean"]
        ref_val = validation[REFERENCE]["return"]["mean"]
        for name in grid.heuristics:
            r = test[name]
            heuristic_rows.append({
                "case": panel.case, "n_agents": panel.n_agents, "policy": name,
                "test_return": r["return"]["mean"], "test_return_ci": r["return"]["ci95"],
                "cost_over_reference": r["return"]["mean"] / ref_test,
                "violation_mw": r["violation_mw"]["mean"]})
        for spec in specs:
            summary = report.results[spec.key]
            values = common.val_curves(common.run_folder(opts, spec))
            curves[panel, spec.algo] = values / ref_val
            curve_rows += common.curve_rows(values, case=panel.case, algo=spec.algo,
                                            n_agents=spec.n_agents)
            rows.append({"case": panel.case, **common.run_row(spec, summary, values),
                         "reference_test": ref_test, "reference_val": ref_val,
                         "cost_over_reference": summary["test_return"] / ref_test,
                         "cost_over_reference_ci": summary["test_return_ci"] / abs(ref_test)})

    fig = _plot(rows, heuristic_rows, curves, grid)
    common.write_outputs(opts.out, "power", fig, curve_rows, rows,
                         markdown(rows, heuristic_rows, grid))
    common.write_csv(opts.out / "power_heuristics.csv", heuristic_rows)
    return {"rows": rows, "heuristics": heuristic_rows, "seconds": report.seconds}


def _plot(rows, heuristic_rows, curves, grid: Grid):
    panels = grid.chosen()

    def at(row: dict[str, Any]) -> Panel:
        return Panel(row["case"], row["n_agents"])

    return relative_cost_figure(
        panels, [f"{p.case}\nN={p.n_agents}" for p in panels], grid.algos,
        learners={(at(r), r["algo"]): (r["cost_over_reference"], r["cost_over_reference_ci"])
                  for r in rows},
        heuristics={(at(r), r["policy"]): r["cost_over_reference"] for r in heuristic_rows},
        markers={h: HEURISTIC_STYLES.get(h, ".") for h in grid.heuristics}, curves=curves,
        reference=REFERENCE, ylabel=f"test cost / {REFERENCE} cost (lower is better)",
        title=f"PowerGrid: test cost relative to {REFERENCE} (40 scenarios, 95 % CI; "
              f"{grid.episodes} episodes, {grid.seeds} seed(s))")


def markdown(rows: list[dict[str, Any]], heuristic_rows: list[dict[str, Any]],
             grid: Grid) -> str:
    head = (f"{grid.seeds} seed(s), {grid.episodes} episodes per run, every learner with its "
            "cloud step size and entropy (`TUNED`; none tuned for the grid). Cost = -return: "
            "the day's generation, line-violation and unserved-load cost over the cost of the "
            f"day's mean load. Reference = `{REFERENCE}` (1.00). Test cost / {REFERENCE} = the "
            "greedy test return's ratio (± 95 % CI of the ratio); "
            f"{common.RETURN_NOTE}. {common.SETTLE_NOTE[0].upper()}{common.SETTLE_NOTE[1:]} "
            f"(the reference: `{REFERENCE}`).\n\n")
    learners = common.md_table(
        ["case", "N", "algorithm", f"test cost / {REFERENCE}", *common.RETURN_HEADERS,
         "settle", "seeds settled", "wall (s)"],
        [[r["case"], r["n_agents"], r["algo"], common.pm(r["cost_over_reference"],
                                                         r["cost_over_reference_ci"], 3),
          *common.return_cells(r), common.settle_cell(r), common.settle_seeds_cell(r),
          f"{r['wall_seconds']:.0f}"] for r in rows])
    ratio = {(r["case"], r["n_agents"], r["policy"]): r["cost_over_reference"]
             for r in heuristic_rows}
    panels = list(dict.fromkeys((r["case"], r["n_agents"]) for r in heuristic_rows))
    heuristics = common.md_table(
        ["case", "N", *grid.heuristics],
        [[case, n, *(f"{ratio[case, n, name]:.3f}" for name in grid.heuristics)]
         for case, n in panels])
    return (head + learners + f"\n\nHeuristics, test cost / {REFERENCE} cost:\n\n"
            + heuristics + "\n")
