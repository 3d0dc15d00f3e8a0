"""RoadNet's actor ablation: what lets DG-PG route Sioux Falls (docs/design.md, section 10).

The scorer sees no identity: agents with the same observation act alike, and where that
observation is last period's congestion, all of them leave a congested path at once and the
traffic moves in waves. `scorer-id` adds a learned logit offset per (agent, slot), so each agent
can settle on its own split. Five DG-PG variants, each on Sioux Falls (`--network`) and one
grid city, 3 seeds:

    scorer                 the default pair scorer
    scorer-id              the scorer plus offsets per (agent, slot)
    per-agent offsets      the scorer plus one offset per agent, shared by its slots
    scorer-id, free-flow   scorer-id whose agents see free-flow path features, not congestion
    scorer-id, every agent scorer-id with every agent in every minibatch (not 128 sampled),
                           so each offset is updated at every step

Each variant is scored by its greedy validation cost over the system optimum (SO) per episode,
the first episode from which it stays within 1.1 x SO, its cost at episodes 10 and 20, and the
best-on-validation checkpoint's test cost per seed. Writes roads-actors.png, roads-actors.csv
(curves), roads-actors_table.csv and roads-actors.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

from dgpg.config import overrides_json  # noqa: E402
from dgpg.experiments import common  # noqa: E402
from dgpg.experiments.roads.routing import DOMAIN, TNTP, Network  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402
from dgpg.experiments.tasks import HeuristicSpec  # noqa: E402

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "scorer": ({}, {}),
    "scorer-id": ({"actor": "scorer-id"}, {}),
    "per-agent offsets": ({"actor": "scorer-id", "id_per_slot": False}, {}),
    "scorer-id, free-flow": ({"actor": "scorer-id"}, {"congestion_features": False}),
    "scorer-id, every agent": ({"actor": "scorer-id", "agents_per_minibatch": 16384}, {}),
}
"""Variant -> (TrainConfig overrides, RoadConfig overrides)."""

WITHIN = 1.1
"""The cost ratio to the SO that "settled" means here."""


@dataclasses.dataclass(frozen=True)
class Grid:
    networks: tuple[Network, ...] = (Network("Sioux Falls", 528, kind=TNTP),
                                     Network("grid 4x4", 200, rows=4, cols=4))
    n_agents: tuple[int, ...] | None = None
    """Only the networks with these N (None: all); `--agents`."""
    tntp: str | None = None
    """TNTP path prefix of Sioux Falls; None leaves it out."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    episodes: int = 30
    alpha: float = 0.5
    seeds: int = 3
    env: tuple[tuple[str, Any], ...] = ()
    """Other `RoadConfig` fields for every run (e.g. a shorter day in tests)."""

    def agent_counts(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(net.n_agents for net in self.networks))

    def chosen(self) -> tuple[Network, ...]:
        return tuple(net for net in self.networks
                     if (self.n_agents is None or net.n_agents in self.n_agents)
                     and (net.kind != TNTP or self.tntp is not None))

    def spec(self, net: Network, variant: str) -> RunSpec:
        train, env = VARIANTS[variant]
        overrides = overrides_json(train=train, env=dict(self.env) | net.env(self.tntp) | env)
        return RunSpec("dgpg", net.n_agents, self.episodes, alpha=self.alpha, seeds=self.seeds,
                       overrides=overrides, domain=DOMAIN)

    def optimum(self, net: Network, scenarios: str) -> HeuristicSpec:
        """The task whose `so_return` is the SO's return on the test or validation scenarios."""
        overrides = overrides_json(env=dict(self.env) | net.env(self.tntp))
        return HeuristicSpec(net.n_agents, ("so-sample",), overrides, scenarios=scenarios,
                                  domain=DOMAIN)


FULL = Grid()
QUICK = Grid(networks=(Network("grid 3x3", 20, rows=3, cols=3),), episodes=10, seeds=1)


def run(out: Path, grid: Grid | None = None, network: str | None = None,
        **options: Any) -> dict[str, Any]:
    """Run (or resume) the ablation and draw its figure into `out`; returns the table rows.
    `network` (`--network`) is Sioux Falls' TNTP prefix."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    if network is not None:
        grid = dataclasses.replace(grid, tntp=str(network))
    elif not opts.quick:
        print("roads-actors: no --network given, so Sioux Falls is left out", file=sys.stderr)
    if not grid.chosen():
        raise ValueError("no network to run: the grid's networks need --network "
                         "(a TNTP prefix) or other --agents")
    specs = {(net, v): grid.spec(net, v) for net in grid.chosen() for v in grid.variants}
    optima = {(net, s): grid.optimum(net, s) for net in grid.chosen()
              for s in ("test", "validation")}
    report = common.run_tasks([*optima.values(), *specs.values()], opts)

    def so_return(net: Network, scenarios: str) -> float:
        policies = report.results[optima[net, scenarios].key]["policies"]
        return policies["so-sample"]["so_return"]["mean"]

    rows, curve_rows, curves = [], [], {}
    for (net, variant), spec in specs.items():
        summary = report.results[spec.key]
        values = common.val_curves(common.run_folder(opts, spec))
        ratio = values / so_return(net, "validation")
        curves[net, variant] = ratio
        curve_rows += common.curve_rows(ratio, network=net.label, variant=variant)
        so_test = so_return(net, "test")
        rows.append({
            "network": net.label, "n_agents": net.n_agents, "variant": variant,
            "episodes": spec.episodes, "seeds": spec.seeds,
            "settled_per_seed": json.dumps([settled(ratio[:, s])
                                            for s in range(ratio.shape[1])]),
            "val_ratio_10": _at(ratio, 10), "val_ratio_20": _at(ratio, 20),
            "val_ratio_last": float(ratio[-1].mean()),
            "test_ratio": summary["test_return"] / so_test,
            "test_ratio_ci": summary["test_return_ci"] / abs(so_test),
            **_ratios(summary, so_test),
            "test_ratio_per_seed": json.dumps([round(s["test_return"] / so_test, 4)
                                               for s in summary["per_seed"]]),
            "wall_seconds": summary["wall_seconds"]})
    common.write_outputs(opts.out, "roads-actors", _plot(curves, grid), curve_rows, rows,
                         markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def _ratios(summary: dict[str, Any], so_test: float) -> dict[str, float | None]:
    """The summary's other test returns (sampled; the final policy's, greedy and sampled) over
    the SO cost, with their CIs; None where the summary lacks one (written before it)."""
    out: dict[str, float | None] = {}
    for key in common.RETURN_KEYS[1:]:
        name = key.replace("test_return", "test_ratio")
        value, ci = summary.get(key), summary.get(f"{key}_ci")
        out[name] = None if value is None else value / so_test
        out[f"{name}_ci"] = None if ci is None else ci / abs(so_test)
    return out


def settled(ratio: np.ndarray) -> int | None:
    """First episode from which one seed's validation cost / SO stays within `WITHIN`."""
    outside = np.flatnonzero(ratio > WITHIN)
    if outside.size == 0:
        return 1
    return int(outside[-1]) + 2 if outside[-1] + 1 < ratio.size else None


def _at(ratio: np.ndarray, episode: int) -> float | None:
    return float(ratio[episode - 1].mean()) if ratio.shape[0] >= episode else None


def _plot(curves: dict, grid: Grid):
    nets = grid.chosen()
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.2), squeeze=False)
    for ax, net in zip(axes[0], nets, strict=True):
        for i, variant in enumerate(grid.variants):
            common.plot_band(ax, curves[net, variant], variant, f"C{i}")
        ax.axhline(1.0, color="k", ls="--", lw=1, label="system optimum")
        ax.axhline(WITHIN, color="0.5", ls=":", lw=1, label=f"{WITHIN} x optimum")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set(yscale="log", xlabel="episode", title=f"{net.label}, N={net.n_agents}",
               ylabel="validation cost / SO (greedy; mean, min-max of seeds)")
        ax.legend(fontsize=7)
    fig.suptitle(f"RoadNet: DG-PG with each actor ({grid.seeds} seed(s))")
    fig.tight_layout()
    return fig


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"DG-PG (aligned model, alpha {grid.alpha}), {grid.seeds} seed(s), {grid.episodes} "
            f"episodes per run. Ratio = cost / system-optimum cost (1 is the best possible). "
            f"Settled = the first episode from which a seed's greedy validation ratio stays "
            f"within {WITHIN} (per seed). Test = best-on-validation checkpoint, greedy on the 40 "
            f"test scenarios (mean ± 95 % CI, and per seed) and sampled on the first 10; final "
            f"policy = the policy after the last episode, tested the same way; - = not in the "
            f"run's summary (written before that was tested).\n\n")
    table = common.md_table(
        ["network", "N", "variant", "settled (per seed)", "val. ratio ep. 10",
         "val. ratio ep. 20", "test ratio (greedy)", "test ratio per seed",
         "test ratio (sampled)", "final policy test ratio (greedy)",
         "final policy test ratio (sampled)", "wall (s)"],
        [[r["network"], r["n_agents"], r["variant"],
          ", ".join(common.fmt(s, missing="never") for s in json.loads(r["settled_per_seed"])),
          common.fmt(r["val_ratio_10"], 3, "-"), common.fmt(r["val_ratio_20"], 3, "-"),
          common.pm(r["test_ratio"], r["test_ratio_ci"], 3),
          ", ".join(f"{x:.3f}" for x in json.loads(r["test_ratio_per_seed"])),
          *(common.pm_or_dash(r.get(k), r.get(f"{k}_ci"), 3)
            for k in ("test_ratio_sampled", "final_test_ratio", "final_test_ratio_sampled")),
          f"{r['wall_seconds']:.0f}"] for r in rows])
    return head + table + "\n"
