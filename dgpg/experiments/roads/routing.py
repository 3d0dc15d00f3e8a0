"""RoadNet: DG-PG, MAPPO and IPPO route traffic on Sioux Falls and on grid cities (docs/design.md,
section 10).

The same learners and step sizes as in the cloud (`TUNED`: nothing was tuned for roads, for
any learner), each with the `scorer-id` actor (`dgpg reproduce roads-actors` shows why),
trained on RoadNet networks of increasing size: generated grid cities (the N OD pairs of
largest demand are agents, the rest background at its user equilibrium) and, when its TNTP
files are given (`--network PATH_PREFIX`), Sioux Falls. Each seed's
best-on-validation checkpoint is tested on the 40 test scenarios; every heuristic of the
domain is evaluated on the same scenarios. The reference line is the system optimum (SO) over
the candidate paths, period by period, which no routing of the agents can beat.

Costs are shown relative to the SO: test cost / SO cost, where cost = -return (the day's sum
of the periods' mean travel time per vehicle), so 1 is the best possible and networks of
different sizes share one axis. Writes roads.png, roads.csv (learning curves), roads_table.csv,
roads_heuristics.csv and roads.md.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from dgpg.config import overrides_json
from dgpg.domains.roads import SPEC
from dgpg.experiments import common
from dgpg.experiments.actors import actor_of
from dgpg.experiments.panels import relative_cost_figure
from dgpg.experiments.sweep import RunSpec
from dgpg.experiments.tasks import LEARNERS, HeuristicSpec

DOMAIN = SPEC.name
HEURISTIC_STYLES = {"free-flow": "v", "fastest": "^", "random": "x", "so-sample": "s",
                    "model-greedy": "D"}
TNTP = "tntp"
"""`Network.kind` of the TNTP network given as `Grid.tntp`."""


@dataclasses.dataclass(frozen=True)
class Network:
    """One panel: a grid city of rows x cols nodes, or the TNTP network, with N agents."""

    label: str
    n_agents: int
    kind: str = "grid"
    rows: int = 5
    cols: int = 5

    def env(self, tntp: str | None) -> dict[str, Any]:
        if self.kind == TNTP:
            return {"network": tntp}
        return {"grid_rows": self.rows, "grid_cols": self.cols}


@dataclasses.dataclass(frozen=True)
class Grid:
    networks: tuple[Network, ...] = (
        Network("grid 3x3", 50, rows=3, cols=3),
        Network("grid 4x4", 200, rows=4, cols=4),
        Network("grid 5x5", 500, rows=5, cols=5),
        Network("grid 6x6", 1200, rows=6, cols=6),
        Network("Sioux Falls", 528, kind=TNTP),
    )
    n_agents: tuple[int, ...] | None = None
    """Only the networks with these N (None: all); `--agents`."""
    tntp: str | None = None
    """TNTP path prefix of the `kind="tntp"` network (Sioux Falls); None leaves it out."""
    algos: tuple[str, ...] = LEARNERS
    episodes: int = 100
    alpha: float = 0.5
    seeds: int = 3
    heuristics: tuple[str, ...] = tuple(SPEC.heuristics)
    actors: tuple[str, ...] = ("scorer-id", "scorer")
    """Each learner is trained with each of these actors: the scorer with per-(agent, slot)
    offsets, without which identical agents route in waves on Sioux Falls (`dgpg reproduce
    roads-actors`), and the plain scorer, which serves MAPPO and IPPO better on the grids."""
    env: tuple[tuple[str, Any], ...] = ()
    """Other `RoadConfig` fields, (name, value) pairs, for every network (e.g. a shorter day
    in tests)."""

    def agent_counts(self) -> tuple[int, ...]:
        """The N of the grid's networks (what `--agents` picks from)."""
        return tuple(dict.fromkeys(net.n_agents for net in self.networks))

    def chosen(self) -> tuple[Network, ...]:
        return tuple(net for net in self.networks
                     if (self.n_agents is None or net.n_agents in self.n_agents)
                     and (net.kind != TNTP or self.tntp is not None))

    def overrides(self, network: Network, actor: str | None = None) -> str:
        """The overrides of the runs of `actor` on `network`; with no actor the environment's
        alone (what the heuristics see)."""
        train = {"actor": actor} if actor is not None else {}
        return overrides_json(train=train, env=dict(self.env) | network.env(self.tntp))


FULL = Grid()
QUICK = Grid(networks=(Network("grid 3x3", 20, rows=3, cols=3),), episodes=10, seeds=1)


def tasks(grid: Grid) -> tuple[dict[Network, list[RunSpec]], dict[Network, list]]:
    """Per network: its training runs, and its heuristic tasks (test, then validation)."""
    runs, heuristics = {}, {}
    for net in grid.chosen():
        overrides = grid.overrides(net)
        runs[net] = [RunSpec(algo, net.n_agents, grid.episodes, alpha=grid.alpha,
                             seeds=grid.seeds, overrides=grid.overrides(net, actor),
                             domain=DOMAIN)
                     for actor in grid.actors for algo in grid.algos]
        heuristics[net] = [
            HeuristicSpec(net.n_agents, grid.heuristics, overrides, domain=DOMAIN),
            HeuristicSpec(net.n_agents, ("so-sample",), overrides,
                               scenarios="validation", domain=DOMAIN)]
    return runs, heuristics


def run(out: Path, grid: Grid | None = None, network: str | None = None,
        **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows.
    `network` (`--network`) sets the grid's TNTP network (Sioux Falls)."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    if network is None and not opts.quick:
        print("roads: no --network given, so Sioux Falls is left out (the grid cities only)",
              file=sys.stderr)
    if network is not None:
        grid = dataclasses.replace(grid, tntp=str(network))
    if not grid.chosen():
        raise ValueError("no network to run: the grid's networks need --network "
                         "(a TNTP prefix) or other --agents")
    run_specs, heuristic_specs = tasks(grid)
    report = common.run_tasks([*(h for hs in heuristic_specs.values() for h in hs),
                               *(r for rs in run_specs.values() for r in rs)], opts)

    rows, curve_rows, curves, heuristic_rows = [], [], {}, []
    for net, specs in run_specs.items():
        test, validation = (report.results[h.key]["policies"] for h in heuristic_specs[net])
        so_test = test["so-sample"]["so_return"]["mean"]
        so_val = validation["so-sample"]["so_return"]["mean"]
        for name in grid.heuristics:
            r = test[name]
            heuristic_rows.append({
                "network": net.label, "n_agents": net.n_agents, "policy": name,
                "test_return": r["return"]["mean"], "test_return_ci": r["return"]["ci95"],
                "cost_over_so": r["return"]["mean"] / so_test,
                "so_ratio_tstt": r["so_ratio"]["mean"], "so_return": so_test})
        for spec in specs:
            summary = report.results[spec.key]
            values = common.val_curves(common.run_folder(opts, spec))
            actor = actor_of(spec)
            curves[net, learner(spec.algo, actor)] = values / so_val
            curve_rows += common.curve_rows(values, network=net.label, algo=spec.algo,
                                            actor=actor, n_agents=spec.n_agents)
            rows.append({"network": net.label, "actor": actor,
                         **common.run_row(spec, summary, values),
                         "so_test_return": so_test, "so_val_return": so_val,
                         "cost_over_so": summary["test_return"] / so_test,
                         "cost_over_so_ci": summary["test_return_ci"] / abs(so_test)})

    fig = _plot(rows, heuristic_rows, curves, grid)
    common.write_outputs(opts.out, "roads", fig, curve_rows, rows,
                         markdown(rows, heuristic_rows, grid))
    common.write_csv(opts.out / "roads_heuristics.csv", heuristic_rows)
    return {"rows": rows, "heuristics": heuristic_rows, "seconds": report.seconds}


def learner(algo: str, actor: str) -> str:
    """A series of the figure: "ALGO, ACTOR"."""
    return f"{algo}, {actor}"


def _plot(rows, heuristic_rows, curves, grid: Grid):
    nets = grid.chosen()
    series = [learner(algo, actor) for actor in grid.actors for algo in grid.algos]
    looks = [("o", "-"), ("s", "--"), ("^", ":")]
    return relative_cost_figure(
        nets, [f"{net.label}\nN={net.n_agents}" for net in nets], series,
        learners={(net, learner(r["algo"], r["actor"])): (r["cost_over_so"],
                                                         r["cost_over_so_ci"])
                  for net in nets for r in rows if r["network"] == net.label},
        heuristics={(net, r["policy"]): r["cost_over_so"]
                    for net in nets for r in heuristic_rows if r["network"] == net.label},
        markers={h: HEURISTIC_STYLES.get(h, ".") for h in grid.heuristics}, curves=curves,
        reference="system optimum", log=True,
        styles={learner(algo, actor): looks[i % len(looks)]
                for i, actor in enumerate(grid.actors) for algo in grid.algos},
        ylabel="test cost / SO cost (lower is better, 1 = optimum)",
        title=f"RoadNet: test cost relative to the system optimum (40 scenarios, 95 % CI; "
              f"{grid.episodes} episodes, {grid.seeds} seed(s))")


def markdown(rows: list[dict[str, Any]], heuristic_rows: list[dict[str, Any]],
             grid: Grid) -> str:
    head = (f"{grid.seeds} seed(s), {grid.episodes} episodes per run, every learner with its "
            "cloud step size and entropy (`TUNED`; none tuned for roads). Cost = -return, the "
            "day's sum of the periods' mean travel time per vehicle; SO = the candidate-path "
            "system optimum of each period (the reference line, 1.00). Test cost / SO = the "
            "greedy test return's ratio (± 95 % CI of the ratio); "
            f"{common.RETURN_NOTE}. {common.SETTLE_NOTE[0].upper()}{common.SETTLE_NOTE[1:]} "
            "(the reference: `so-sample`, sampling the SO path flows).\n\n")
    learners = common.md_table(
        ["network", "N", "algorithm", "actor", "test cost / SO", *common.RETURN_HEADERS,
         "settle", "seeds settled", "wall (s)"],
        [[r["network"], r["n_agents"], r["algo"], r["actor"], common.pm(r["cost_over_so"],
                                                             r["cost_over_so_ci"], 3),
          *common.return_cells(r), common.settle_cell(r), common.settle_seeds_cell(r),
          f"{r['wall_seconds']:.0f}"] for r in rows])
    ratio = {(r["network"], r["policy"]): r["cost_over_so"] for r in heuristic_rows}
    nets = list(dict.fromkeys((r["network"], r["n_agents"]) for r in heuristic_rows))
    heuristics = common.md_table(
        ["network", "N", *grid.heuristics],
        [[label, n, *(f"{ratio[label, name]:.3f}" for name in grid.heuristics)]
         for label, n in nets])
    return (head + learners + "\n\nHeuristics, test cost / SO cost:\n\n" + heuristics + "\n")
