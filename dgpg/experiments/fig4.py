"""Figure 4: scalability, test return against N (docs/design.md, section 7).

For each N, DG-PG, MAPPO and IPPO are trained with the same budget; each seed's best checkpoint
on the validation scenarios is evaluated on the 40 test scenarios (training.py does this and
stores it in summary.json) and the figure shows the mean over seeds with the 95 % CI over
scenarios. Every heuristic is evaluated on the same 40 scenarios (one task per N, cached in
`runs/heuristics_n<N>_*/result.json` like any run, and in fig4_heuristics.csv); `model-greedy`
is a task of its own beside the six older ones.

From N = 50 on, each learner trains with its own best learning rate and entropy coefficient of
the N = 50 tuning sweep (`dgpg reproduce tuning`, `TUNED_AT_SCALE`); below, with those of the
first N = 10 sweep (`TUNED`). DG-PG with the fluid model (its committed runs, trained before the
aligned model was the default) is drawn beside DG-PG with the aligned model, dashed, and so
are MAPPO and IPPO with their N = 10 pairs from N = 50 on (the first grid's runs): at N = 500
and 1,500, with 50 episodes, those score better than the N = 50 pairs, so the figure shows each
baseline's better configuration as well as the one the protocol fixed.

The y axis is the cost, -return (lower is better), on a log scale: random and round-robin are
two orders of magnitude worse than the load-aware policies. Full runs go beyond the paper to
N = 500 and 1,500 with a shorter budget there (a training episode costs O(N)), and to
N = 10,000 with 10 episodes. Writes fig4.png, fig4.csv (every point), fig4_heuristics.csv and
fig4.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.config import overrides_json, parse_overrides  # noqa: E402
from dgpg.experiments import common  # noqa: E402
from dgpg.experiments.sweep import RunSpec  # noqa: E402
from dgpg.experiments.tasks import HEURISTIC_NAMES, LEARNERS, HeuristicSpec  # noqa: E402
from dgpg.learners.config import TUNED_AT_SCALE  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: tuple[int, ...] = (5, 10, 20, 50, 100, 200, 500, 1500, 10000)
    episodes: int = 200
    """Training episodes at N <= large_n."""
    large_n: int = 200
    large_n_episodes: int = 50
    """Training episodes above large_n, up to very_large_n (same for every learner)."""
    very_large_n: int = 1500
    very_large_n_episodes: int = 10
    """Training episodes above very_large_n."""
    algos: tuple[str, ...] = LEARNERS
    alpha: float = 0.5
    seeds: int = 3
    heuristics: tuple[str, ...] = HEURISTIC_NAMES
    extra_heuristics: tuple[str, ...] = ("model-greedy",)
    """Evaluated as a second task per N, so that the older six keep their cached results."""
    overrides: str = ""
    tuned_from: int = 50
    tuned: tuple[tuple[str, str], ...] = ()
    """(algo, overrides JSON) pairs used at N >= tuned_from on top of `overrides`."""
    fluid_agents: tuple[int, ...] = ()
    """N at which DG-PG with the fluid model is drawn beside (with `overrides` only)."""
    first_pair_agents: tuple[int, ...] = ()
    """N at which `first_pair_algos` are also drawn with `overrides` only, i.e. their N = 10
    pair (`TUNED`) where `tuned` gives them another one."""
    first_pair_algos: tuple[str, ...] = ("mappo", "ippo")

    def episodes_at(self, n: int) -> int:
        if n <= self.large_n:
            return self.episodes
        return self.large_n_episodes if n <= self.very_large_n else self.very_large_n_episodes

    def overrides_at(self, algo: str, n: int) -> str:
        """The run's overrides: the grid's, then the algorithm's tuned ones from tuned_from."""
        tuned = dict(self.tuned).get(algo) if n >= self.tuned_from else None
        if not tuned:
            return self.overrides
        base, extra = parse_overrides(self.overrides), parse_overrides(tuned)
        return overrides_json(train=base["train"] | extra["train"],
                              env=base["env"] | extra["env"])


def scale_tuning() -> tuple[tuple[str, str], ...]:
    """`TUNED_AT_SCALE` as Grid.tuned."""
    return tuple((algo, overrides_json(train=pair)) for algo, pair in TUNED_AT_SCALE.items())


FULL = Grid(tuned=scale_tuning(), fluid_agents=(5, 10, 20, 50, 100, 200, 500, 1500),
            first_pair_agents=(50, 100, 200, 500, 1500))
QUICK = Grid(n_agents=(5, 20), episodes=15, seeds=1)


def learner_tasks(grid: Grid) -> list[RunSpec]:
    return [RunSpec(algo, n, grid.episodes_at(n), alpha=grid.alpha, seeds=grid.seeds,
                    overrides=grid.overrides_at(algo, n))
            for n in grid.n_agents for algo in grid.algos]


def fluid_tasks(grid: Grid) -> list[RunSpec]:
    return [RunSpec("dgpg", n, grid.episodes_at(n), alpha=grid.alpha, seeds=grid.seeds,
                    overrides=grid.overrides, model="fluid")
            for n in grid.n_agents if n in grid.fluid_agents]


def first_pair_tasks(grid: Grid) -> list[RunSpec]:
    return [RunSpec(algo, n, grid.episodes_at(n), alpha=grid.alpha, seeds=grid.seeds,
                    overrides=grid.overrides)
            for n in grid.n_agents if n in grid.first_pair_agents
            for algo in grid.algos
            if algo in grid.first_pair_algos and grid.overrides_at(algo, n) != grid.overrides]


def tasks(grid: Grid) -> tuple[list[RunSpec], list[HeuristicSpec]]:
    heuristics = [HeuristicSpec(n, names, grid.overrides) for n in grid.n_agents
                  for names in (grid.heuristics, grid.extra_heuristics) if names]
    return [*learner_tasks(grid), *fluid_tasks(grid), *first_pair_tasks(grid)], heuristics


def _label(spec: RunSpec, first_pair: list[RunSpec]) -> str:
    if spec.model == "fluid":
        return "dgpg (fluid)"
    return f"{spec.algo} (N = 10 pair)" if spec in first_pair else spec.algo


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    run_specs, heuristic_specs = tasks(grid)
    # heuristics first: cheap, and the table has them even if a long training run fails
    report = common.run_tasks([*heuristic_specs, *run_specs], opts)

    rows = []
    first_pair = first_pair_tasks(grid)
    for spec in run_specs:
        s = report.results[spec.key]
        name = _label(spec, first_pair)
        rows.append({"policy": name, "kind": "learner", "n_agents": spec.n_agents,
                     "episodes": spec.episodes, "seeds": spec.seeds,
                     "test_return": s["test_return"], "test_return_ci": s["test_return_ci"],
                     "per_seed": json.dumps([p["test_return"] for p in s["per_seed"]]),
                     **{k: s.get(k) for key in common.RETURN_KEYS[1:]
                        for k in (key, f"{key}_ci")}})
    heuristic_rows = []
    for spec in heuristic_specs:
        for name, metrics in report.results[spec.key]["policies"].items():
            r = {"policy": name, "n_agents": spec.n_agents}
            for m, v in metrics.items():
                r[m], r[f"{m}_ci"] = v["mean"], v["ci95"]
            heuristic_rows.append(r)
            rows.append({"policy": name, "kind": "heuristic", "n_agents": spec.n_agents,
                         "episodes": "", "seeds": "",
                         "test_return": metrics["return"]["mean"],
                         "test_return_ci": metrics["return"]["ci95"], "per_seed": ""})

    _plot(rows, grid, opts.out / "fig4.png")
    common.write_csv(opts.out / "fig4.csv", rows)
    common.write_csv(opts.out / "fig4_heuristics.csv", heuristic_rows)
    atomic.write_text(opts.out / "fig4.md", markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


def _plot(rows: list[dict[str, Any]], grid: Grid, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    # one colour per learner or heuristic (10 in all); a learner's second configuration shares it
    first = [p for p in policies if " (" not in p]
    for name in policies:
        mine = sorted((r for r in rows if r["policy"] == name), key=lambda r: r["n_agents"])
        n = np.array([r["n_agents"] for r in mine])
        cost = -np.array([r["test_return"] for r in mine])
        ci = np.array([r["test_return_ci"] for r in mine])
        learner = mine[0]["kind"] == "learner"
        style = {"lw": 2, "marker": "o"} if learner else {"lw": 1, "marker": ".", "ls": ":"}
        if name == "best-fit-central":
            style = {"lw": 1.5, "ls": "--", "color": "k", "marker": "."}
        base = name.split(" (")[0]
        if learner and base != name:  # a second configuration, dashed
            style = {"lw": 1.5, "ls": "--", "marker": "s", "mfc": "none"}
        color = f"C{first.index(base) % 10}" if base in first else "C9"
        ax.errorbar(n, cost, yerr=ci, capsize=3, label=name, **({"color": color} | style))
    common.n_axis(ax, [r["n_agents"] for r in rows])
    ax.set_yscale("log")
    ax.set(xlabel="N (agents)", ylabel="test cost = -return (lower is better)",
           title=f"Scalability: best checkpoint on 40 test scenarios ({grid.seeds} seed(s))")
    ax.legend(fontsize=8, ncol=2)
    common.save(fig, path)


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    ns = sorted({r["n_agents"] for r in rows})
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    by = {(r["policy"], r["n_agents"]): r for r in rows}
    episodes = ", ".join(f"N={n}: {grid.episodes_at(n)}" for n in ns)
    tuned = (f" From N = {grid.tuned_from} on, each learner's learning rate and entropy "
             "coefficient are its best of the N = 50 tuning sweep: "
             + "; ".join(f"{a} {o}" for a, o in grid.tuned) + "." if grid.tuned else "")
    fluid = (" dgpg (fluid) = DG-PG with the fluid model, the default before the aligned one, "
             "with DG-PG's N = 10 pair (`TUNED`) at every N." if grid.fluid_agents else "")
    first = (" LEARNER (N = 10 pair) = the same learner with its N = 10 pair (`TUNED`), "
             "trained in the first grid." if first_pair_tasks(grid) else "")
    head = (f"Test return (mean ± 95 % CI over the 40 test scenarios; higher is better). "
            f"Learners: best-on-validation checkpoint, mean of {grid.seeds} seed(s); training "
            f"episodes {episodes}.{tuned}{fluid}{first}\n\n")
    table = common.md_table(
        ["policy", *[f"N={n}" for n in ns]],
        [[p, *[common.pm(by[p, n]["test_return"], by[p, n]["test_return_ci"])
               if (p, n) in by else "" for n in ns]] for p in policies])
    learners = [r for r in rows if r["kind"] == "learner"]
    every = common.md_table(
        ["policy", "N", *common.RETURN_HEADERS],
        [[r["policy"], r["n_agents"], *common.return_cells(r)] for r in learners])
    return (head + table + "\nThe learners' test returns, greedy and sampled side by side, of "
            f"the best-on-validation checkpoint and of the final policy: {common.RETURN_NOTE}."
            "\n\n" + every)
