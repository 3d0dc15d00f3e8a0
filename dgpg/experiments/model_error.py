"""Learning past the model: every learner when the analytical model is wrong on purpose
(`dgpg reproduce model-error`).

In each domain the model's belief is off by a systematic error of relative size E (the
domain's first `model_errors` family: cloud server speeds per generation, road link times and
capacities per capacity class, line ratings by loading), while the environment keeps the truth.
DG-PG (the adaptive guidance weight of the defaults, fixed alpha, and the paper's linear
schedule 0.9 -> 0.2) and `dr` (modelled difference rewards, the closest prior method) use the
wrong model; MAPPO and IPPO use none, so they are trained once per panel and drawn flat across
E. `model-greedy` is evaluated with the wrong model (what deploying the model's rule costs) and
with the true one (an oracle no deployed system has). Every run is of defaults generation 2
(the domain's discount; the adaptive weight unless the learner sets another schedule): `dgpg`
sets fixed alpha, which makes it a run of generation 3, the current defaults, whose choice
these runs measured.

Costs are relative to the domain's reference heuristic (test cost / reference cost, 1 = the
reference); "gap closed" is the fraction of the way from the wrong model's rule to the true
model's rule that a policy's test cost covers (1: as good as the oracle rule; below 0: worse
than the wrong rule). Writes model-error.png, model-error.csv (learning curves),
model-error_table.csv, model-error_heuristics.csv and model-error.md.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dgpg.config import overrides_json
from dgpg.domains import get_spec
from dgpg.experiments import common
from dgpg.experiments.sweep import RunSpec
from dgpg.experiments.tasks import HeuristicSpec
from dgpg.learners.config import MODEL_RULE

RULE = MODEL_RULE
CHECK_EPISODE = 20
"""The episode whose validation cost the table also reports (the issue's budget for getting
past the model)."""


@dataclasses.dataclass(frozen=True)
class Learner:
    """One learner of the comparison: an algorithm with its guidance setting."""

    name: str
    algo: str
    alpha: float = 0.5
    train: tuple[tuple[str, Any], ...] = ()
    model: str | None = None
    """The analytical model (None: the domain's default)."""

    @property
    def uses_model(self) -> bool:
        return self.algo in ("dgpg", "dr")


LEARNERS = {learner.name: learner for learner in (
    Learner("dgpg", "dgpg", train=(("alpha_schedule", "fixed"),)),
    Learner("dgpg-adaptive", "dgpg"),
    Learner("dgpg-aligned", "dgpg", train=(("alpha_schedule", "fixed"),), model="aligned"),
    Learner("dgpg-linear", "dgpg", alpha=0.9,
            train=(("alpha_schedule", "linear"), ("alpha_final", 0.2))),
    Learner("dr", "dr"),
    Learner("mappo", "mappo"),
    Learner("ippo", "ippo"),
)}
"""dgpg = the defaults (alpha 0.5 throughout, the domain's default model: HeteroCloud's and
RoadNet's is `calibrated`, the aligned model corrected by what the roll-outs observe);
dgpg-adaptive = generation 2's adaptive weight; dgpg-aligned = dgpg with the aligned model
uncorrected (a run of its own where the default model is another; PowerGrid's default is the
aligned model); dgpg-linear = the paper's 0.9 -> 0.2 over 20 episodes."""


@dataclasses.dataclass(frozen=True)
class Panel:
    """One domain at one N, with the environment and actor it is run with."""

    domain: str
    n_agents: int
    label: str
    env: tuple[tuple[str, Any], ...] = ()
    train: tuple[tuple[str, Any], ...] = ()
    needs_network: bool = False
    """The panel is a TNTP network given by `--network` (left out without one)."""
    episodes: int | None = None
    """Training episodes of the panel's runs (None: the grid's)."""


@dataclasses.dataclass(frozen=True)
class Grid:
    panels: tuple[Panel, ...] = (
        Panel("cloud", 50, "HeteroCloud, N=50"),
        Panel("roads", 528, "RoadNet Sioux Falls, N=528", train=(("actor", "scorer-id"),),
              needs_network=True, episodes=50),
        Panel("power", 100, "PowerGrid case118, N=100", env=(("case", "case118"),),
              episodes=30),
    )
    """RoadNet and PowerGrid settle sooner than HeteroCloud (Sioux Falls in about 11 episodes,
    the grids in 1 to 3), so they train for 50 and 30 episodes."""
    errors: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5)
    first: tuple[float, ...] = (0.3, 0.0, 0.5)
    """The order in which the runs of the errors are trained (the others after): the issue's
    question first, then the exact model, then the larger error."""
    learners: tuple[str, ...] = tuple(LEARNERS)
    episodes: int = 100
    seeds: int = 3
    kind: str | None = None
    """The misspecification family (None: each domain's default, its systematic one)."""
    network: str | None = None
    """TNTP path prefix of the panels that need one (`--network`)."""
    n_agents: tuple[int, ...] | None = None
    """Only the panels with these N (None: all); `--agents` (one N per domain: 50 cloud, 528
    roads, 100 power)."""
    defaults: int = 2
    """The defaults generation of every run (`RunConfig.defaults`): the grid's runs were
    trained in generation 2, whose results chose generation 3; `dgpg` sets what generation 3
    changed (fixed alpha), so its runs are those of the current defaults."""
    budget: int | None = CHECK_EPISODE
    """DG-PG with the defaults is also trained for only this many episodes at each E > 0, a
    run of its own (`budget_name`), so that its best and final policies are those of a run of
    that budget (None: no such runs)."""

    @property
    def budget_name(self) -> str:
        return f"dgpg, {self.budget} episodes"

    def names(self) -> tuple[str, ...]:
        """The table's learners: `learners`, then the budget runs' name."""
        budget = (self.budget_name,) if self.budget is not None and "dgpg" in self.learners else ()
        return (*self.learners, *budget)

    def agent_counts(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(p.n_agents for p in self.panels))

    def chosen(self) -> tuple[Panel, ...]:
        return tuple(p for p in self.panels
                     if (self.n_agents is None or p.n_agents in self.n_agents)
                     and (not p.needs_network or self.network is not None))

    def env(self, panel: Panel, error: float) -> dict[str, Any]:
        env = dict(panel.env)
        if panel.needs_network:
            env["network"] = self.network
        if error > 0:
            env["model_error"] = error
            if self.kind is not None:
                env["model_error_kind"] = self.kind
        return env

    def run_spec(self, panel: Panel, learner: Learner, error: float,
                 episodes: int | None = None) -> RunSpec:
        train = dict(panel.train) | dict(learner.train)
        overrides = overrides_json(train=train, env=self.env(panel, error))
        if episodes is None:
            episodes = panel.episodes if panel.episodes is not None else self.episodes
        return RunSpec(learner.algo, panel.n_agents, episodes, alpha=learner.alpha,
                       seeds=self.seeds, overrides=overrides, domain=panel.domain,
                       defaults=self.defaults, model=learner.model)


FULL = Grid()
QUICK = Grid(panels=(Panel("cloud", 10, "HeteroCloud, N=10"),), errors=(0.0, 0.3),
             learners=("dgpg", "dgpg-adaptive", "mappo"), episodes=4, seeds=1, budget=None)



def tasks(grid: Grid):
    """Per panel: {(learner, E): run} (a model-free learner's one run under every E) and the
    heuristic tasks: the rule at each E and the reference on the test and validation
    scenarios."""
    runs, heuristics = {}, {}
    for panel in grid.chosen():
        reference = get_spec(panel.domain).reference
        mine = {}
        for name in grid.learners:
            learner = LEARNERS[name]
            for error in grid.errors:
                spec = grid.run_spec(panel, learner, error if learner.uses_model else 0.0)
                if any(s.key == spec.key for (_, e), s in mine.items() if e == error):
                    continue  # the same run as an earlier learner's (dgpg-aligned off roads)
                mine[name, error] = spec
        if grid.budget_name in grid.names():
            for error in grid.errors:
                if error > 0:
                    mine[grid.budget_name, error] = grid.run_spec(
                        panel, LEARNERS["dgpg"], error, episodes=grid.budget)
        runs[panel] = mine
        every = tuple(get_spec(panel.domain).heuristics)  # at E = 0: random and the reference
        heuristics[panel] = {
            error: HeuristicSpec(panel.n_agents, (RULE,) if error > 0 else every,
                                 overrides_json(env=grid.env(panel, error)),
                                 domain=panel.domain)
            for error in grid.errors}
        heuristics[panel]["validation"] = HeuristicSpec(
            panel.n_agents, (reference,), overrides_json(env=grid.env(panel, 0.0)),
            scenarios="validation", domain=panel.domain)
    return runs, heuristics


def run(out: Path, grid: Grid | None = None, network: str | None = None,
        **options: Any) -> dict[str, Any]:
    """Run (or resume) the grid and draw the figure into `out`; returns the table rows.
    `network` (`--network`) is the Sioux Falls TNTP prefix of the roads panel, which is left
    out without it."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    if network is not None:
        grid = dataclasses.replace(grid, network=str(network))
    if 0.0 not in grid.errors:
        raise ValueError("the grid's errors must include 0 (the true model's rule)")
    if any(p.needs_network for p in grid.panels) and grid.network is None and not opts.quick:
        print("model-error: no --network given, so the Sioux Falls panel is left out",
              file=sys.stderr)
    if not grid.chosen():
        raise ValueError("no panel to run: " + ", ".join(p.label for p in grid.panels)
                         + " (roads needs --network)")
    run_specs, heuristic_specs = tasks(grid)
    order: dict[str, tuple[tuple[int, int], RunSpec]] = {}  # a run shared by several E: once
    for specs in run_specs.values():
        for i, ((_, error), spec) in enumerate(specs.items()):
            rank = (_rank(error, grid.first), i)
            if spec.key not in order or rank < order[spec.key][0]:
                order[spec.key] = (rank, spec)
    unique_runs = [spec for _, spec in sorted(order.values(), key=lambda t: t[0])]
    report = common.run_tasks([*(h for hs in heuristic_specs.values() for h in hs.values()),
                               *unique_runs], opts)

    rows, heuristic_rows, curve_rows, curves = [], [], [], {}
    for panel, specs in run_specs.items():
        reference = get_spec(panel.domain).reference
        results = {k: report.results[h.key]["policies"] for k, h in heuristic_specs[panel].items()}
        ref_test = results[0.0][reference]["return"]["mean"]
        ref_val = results["validation"][reference]["return"]["mean"]
        true_rule = results[0.0][RULE]["return"]["mean"]
        random = results[0.0].get("random", {}).get("return", {}).get("mean")
        for error in grid.errors:
            rule = results[error][RULE]["return"]
            heuristic_rows.append({
                "domain": panel.domain, "panel": panel.label, "error": error,
                "reference": reference, "reference_test_return": ref_test,
                "random_test_return": random,
                "rule_test_return": rule["mean"], "rule_test_return_ci": rule["ci95"],
                "true_rule_test_return": true_rule,
                "rule_cost_over_reference": rule["mean"] / ref_test,
                "true_rule_cost_over_reference": true_rule / ref_test})
        for (name, error), spec in specs.items():
            summary = report.results[spec.key]
            folder = common.run_folder(opts, spec)
            values = common.val_curves(folder)
            wrong_rule = results[error][RULE]["return"]["mean"]
            row = {"domain": panel.domain, "panel": panel.label, "learner": name,
                   "error": error, **common.run_row(spec, summary, values)}
            row.update(_relative(row, ref_test, wrong_rule, true_rule))
            final = row.get("final_test_return")
            row["final_random_gap_closed"] = (
                None if random is None or final is None or abs(ref_test - random) < 1e-12
                else (final - random) / (ref_test - random))
            check = min(CHECK_EPISODE, values.shape[0])
            row["check_episode"] = check
            row["val_cost_over_reference_at_check"] = float(values[check - 1].mean()) / ref_val
            rows.append(row)
            if name in LEARNERS and (error in (0.0, max(grid.errors))
                                     or not LEARNERS[name].uses_model):
                curves.setdefault((panel.label, name, error), values / ref_val)
            curve_rows += common.curve_rows(values, panel=panel.label, learner=name,
                                            error=error)

    fig = _plot(rows, heuristic_rows, curves, grid)
    common.write_outputs(opts.out, "model-error", fig, curve_rows, rows,
                         markdown(rows, heuristic_rows, grid))
    common.write_csv(opts.out / "model-error_heuristics.csv", heuristic_rows)
    return {"rows": rows, "heuristics": heuristic_rows, "seconds": report.seconds}


def _rank(error: float, first: tuple[float, ...]) -> int:
    return first.index(error) if error in first else len(first)


def _relative(row: dict[str, Any], ref_test: float, wrong_rule: float,
              true_rule: float) -> dict[str, Any]:
    """The row's test returns as cost over the reference, and the fraction of the gap between
    the wrong model's rule and the true model's rule they close (None at E = 0)."""
    out = {}
    for which, key in (("best", "test_return"), ("final", "final_test_return")):
        value, ci = row.get(key), row.get(f"{key}_ci")
        out[f"{which}_cost_over_reference"] = None if value is None else value / ref_test
        out[f"{which}_cost_over_reference_ci"] = None if ci is None else ci / abs(ref_test)
        gap = true_rule - wrong_rule  # in returns: the true model's rule does better
        out[f"{which}_gap_closed"] = (None if value is None or abs(gap) <= 1e-9 * abs(true_rule)
                                      else (value - wrong_rule) / gap)
    return out


def _plot(rows, heuristic_rows, curves, grid: Grid):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = grid.chosen()
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 8.5), squeeze=False)
    colors = {name: f"C{i}" for i, name in enumerate(LEARNERS)}
    for col, panel in enumerate(panels):
        ax = axes[0, col]
        for name in grid.learners:
            mine = sorted((r for r in rows if r["panel"] == panel.label and r["learner"] == name),
                          key=lambda r: r["error"])
            xs = [r["error"] for r in mine if r["final_cost_over_reference"] is not None]
            ys = [r["final_cost_over_reference"] for r in mine
                  if r["final_cost_over_reference"] is not None]
            cis = [r["final_cost_over_reference_ci"] or 0.0 for r in mine
                   if r["final_cost_over_reference"] is not None]
            ax.errorbar(xs, ys, yerr=cis, marker="o", ms=5, capsize=3, color=colors[name],
                        ls="-" if LEARNERS[name].uses_model else ":", label=name)
        mine = sorted((h for h in heuristic_rows if h["panel"] == panel.label),
                      key=lambda h: h["error"])
        ax.plot([h["error"] for h in mine], [h["rule_cost_over_reference"] for h in mine],
                "k--", marker="D", ms=5, label=f"{RULE}, wrong model")
        ax.axhline(mine[0]["true_rule_cost_over_reference"], color="0.5", lw=1,
                   label=f"{RULE}, true model")
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set(xlabel="model error E", title=panel.label,
               ylabel=f"final policy's test cost / {mine[0]['reference']}" if col == 0 else None)
        ax.set_xticks(grid.errors)
        if col == 0:
            ax.legend(fontsize=7)
        low = axes[1, col]
        worst = max(grid.errors)
        for (label, name, error), values in curves.items():
            if label != panel.label or (LEARNERS[name].uses_model and error != worst):
                continue
            low.plot(np.arange(1, len(values) + 1), values.mean(axis=1), color=colors[name],
                     lw=1.2, ls="-" if LEARNERS[name].uses_model else ":", label=name)
        wrong = next(h for h in mine if h["error"] == worst)
        low.axhline(wrong["rule_cost_over_reference"], color="k", ls="--", lw=1)
        low.axhline(wrong["true_rule_cost_over_reference"], color="0.5", lw=1)
        low.set(xlabel="episode", title=f"validation cost, E = {worst:g}",
                ylabel=f"validation cost / {wrong['reference']}" if col == 0 else None)
    fig.suptitle(f"Learning past a wrong model ({grid.seeds} seed(s); 40 test scenarios, "
                 "95 % CI)")
    fig.tight_layout()
    return fig


def markdown(rows: list[dict[str, Any]], heuristic_rows: list[dict[str, Any]],
             grid: Grid) -> str:
    episodes = ", ".join(f"{p.label}: {p.episodes or grid.episodes}" for p in grid.chosen())
    head = (f"{grid.seeds} seed(s); episodes per run: {episodes}. Every run is of defaults "
            "generation 2 (the domain's discount; the adaptive guidance weight unless the "
            "learner sets another schedule): `dgpg` (alpha 0.5 throughout) is DG-PG with the "
            "current defaults, generation 3. E = the model's systematic error; MAPPO and IPPO "
            "use no model (one run each, the same at every E). Cost = -return over the reference "
            f"heuristic's test cost; best = the best-on-validation checkpoint, final = the "
            "policy after the last episode, both greedy on the 40 test scenarios (± 95 % CI); "
            f"gap closed = the share of the way from `{RULE}` with the wrong model to `{RULE}` "
            "with the true model that the policy covers (below 0: worse than the wrong rule); "
            "random to ref = the share of the way from `random` to the reference (a cost no "
            "policy changes, such as a grid's base load, makes cost ratios look close to 1); "
            + (f"`{grid.budget_name}` = DG-PG with the defaults in a run of {grid.budget} "
               "episodes (its best and final policies are those of that shorter training); "
               if grid.budget_name in grid.names() else "")
            + f"val @ {CHECK_EPISODE} = the validation cost at episode {CHECK_EPISODE} over the "
            f"reference's; {common.SETTLE_NOTE}.\n\n")
    parts = [head]
    for panel in grid.chosen():
        hs = {h["error"]: h for h in heuristic_rows if h["panel"] == panel.label}
        parts.append(f"## {panel.label}\n\n")
        parts.append(common.md_table(
            ["E", f"{RULE}, wrong model", f"{RULE}, true model"],
            [[f"{e:g}", f"{hs[e]['rule_cost_over_reference']:.3f}",
              f"{hs[e]['true_rule_cost_over_reference']:.3f}"] for e in sorted(hs)]))
        parts.append("\n")
        mine = sorted((r for r in rows if r["panel"] == panel.label),
                      key=lambda r: (r["error"], grid.names().index(r["learner"])))
        parts.append(common.md_table(
            ["E", "learner", "best: cost / ref", "best: gap closed", "final: cost / ref",
             "final: gap closed", "final: random to ref", "final (sampled) return",
             f"val @ {CHECK_EPISODE}",
             "settle", "seeds settled"],
            [[f"{r['error']:g}", r["learner"],
              common.pm_or_dash(r["best_cost_over_reference"],
                                r["best_cost_over_reference_ci"], 3),
              _share(r["best_gap_closed"]),
              common.pm_or_dash(r["final_cost_over_reference"],
                                r["final_cost_over_reference_ci"], 3),
              _share(r["final_gap_closed"]), _share(r["final_random_gap_closed"]),
              common.pm_or_dash(r["final_test_return_sampled"],
                                r["final_test_return_sampled_ci"]),
              f"{r['val_cost_over_reference_at_check']:.3f}", common.settle_cell(r),
              common.settle_seeds_cell(r)] for r in mine]))
        parts.append("\n")
    return "".join(parts)


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"
