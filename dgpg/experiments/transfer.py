"""Train small, deploy large: a policy trained at one N acting at another, on HeteroCloud.

The `scorer` actor has no parameter that depends on N, so a checkpoint trained on a small cluster
is a policy for any cluster. DG-PG, MAPPO and IPPO are trained at N = 20 and 50 (figure 4's step
sizes at that N, `TRANSFER_EPISODES` episodes, seeds 100 to 102); each seed's best-on-validation
checkpoint is then tested on the 40 test scenarios at every N of `test_n`. Beside them: the same
learner trained at each N (figure 4's runs) and figure 4's heuristics. Writes transfer.png,
transfer.csv (every point) and transfer.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.experiments import common, fig4  # noqa: E402
from dgpg.experiments.sweep import RunSpec, overrides_digest  # noqa: E402
from dgpg.experiments.tasks import LEARNERS, HeuristicSpec  # noqa: E402

TRANSFER_EPISODES = 100
"""Training episodes of the runs that are moved: runs of their own (seeds 100 to 102), whose best
checkpoints are kept in git (.gitignore), as figure 4's at the same N (200 episodes) are not."""


@dataclasses.dataclass(frozen=True)
class TransferSpec:
    """The best checkpoints of training run `run` tested at N = `n_agents` (a sweep task; the
    run's folder is its sibling and must hold its checkpoint), on the run's environment with
    the environment fields of `env` (an overrides JSON, `overrides_json(env=...)`) set over
    it."""

    run: RunSpec
    n_agents: int
    env: str = ""

    @property
    def key(self) -> str:
        key = f"transfer_{self.run.key}_to_n{self.n_agents}"
        return key + "_" + overrides_digest(self.env, self.run.domain) if self.env else key

    def result(self, folder: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None
        ok = (isinstance(data, dict) and data.get("n_agents") == self.n_agents
              and data.get("run") == self.run.key and data.get("env", "") == self.env)
        return data if ok else None

    def execute(self, folder: Path) -> dict[str, Any]:
        import numpy as np

        from dgpg.checkpoint import CheckpointError
        from dgpg.config import make_env_config, parse_overrides
        from dgpg.evaluation import TEST_SEEDS, mean_ci
        from dgpg.training import load_actor, make_validator, transfer_problem

        run_folder = folder.parent / self.run.key
        try:
            tcfg, actor, _ = load_actor(run_folder)
        except (CheckpointError, OSError) as e:
            raise RuntimeError(f"{self.key} needs the best checkpoint of {self.run.key} "
                               f"(remove that folder to train it again): {e}") from None
        trained = self.run.run_config().env_config()
        fields = parse_overrides(self.run.overrides)["env"] | parse_overrides(self.env)["env"]
        target = make_env_config(self.n_agents, fields, self.run.domain)
        if problem := transfer_problem(tcfg, trained, target):
            raise ValueError(problem)
        folder.mkdir(parents=True, exist_ok=True)
        matrix = np.asarray(make_validator(tcfg, target, TEST_SEEDS)(actor), np.float64)
        mean, ci = mean_ci(matrix.mean(axis=0))
        data = {"run": self.run.key, "algo": self.run.algo, "n_agents": self.n_agents,
                "trained_n_agents": self.run.n_agents, "test_return": mean,
                "test_return_ci": ci, "per_seed": [float(x) for x in matrix.mean(axis=1)]}
        if self.env:
            data["env"] = self.env
        atomic.write_json(folder / "result.json", data)
        return data

    def progress(self, folder: Path) -> tuple[int, int]:
        return 0, 1


@dataclasses.dataclass(frozen=True)
class Grid:
    train_n: tuple[int, ...] = (20, 50)
    test_n: tuple[int, ...] = (5, 20, 50, 200, 1500, 10000)
    algos: tuple[str, ...] = LEARNERS
    episodes: int = TRANSFER_EPISODES
    seeds: int = 3
    seed: int = 100
    """First seed of the moved runs: seeds of their own, so that no other experiment's run (whose
    checkpoint git does not keep) has their folder."""
    reference: fig4.Grid = fig4.FULL
    """Figure 4's grid: its step sizes, its runs at each N and its heuristics."""
    n_agents: tuple[int, ...] | None = None
    """Only these of `test_n` (`--agents`); None: all of them."""

    def agent_counts(self) -> tuple[int, ...]:
        return self.test_n

    def tested(self) -> tuple[int, ...]:
        """The N the policies are tested at: `test_n`, or those of it in `n_agents`."""
        return tuple(n for n in self.test_n if self.n_agents is None or n in self.n_agents)

    def runs(self) -> list[RunSpec]:
        return [RunSpec(algo, n, self.episodes, alpha=self.reference.alpha, seed=self.seed,
                        seeds=self.seeds, overrides=self.reference.overrides_at(algo, n))
                for n in self.train_n for algo in self.algos]

    def native(self) -> list[RunSpec]:
        """Figure 4's runs of each learner at each tested N."""
        grid = dataclasses.replace(self.reference, n_agents=self.tested())
        return [s for s in fig4.learner_tasks(grid) if s.algo in self.algos]


FULL = Grid()
QUICK = Grid(train_n=(5,), test_n=(5, 20), episodes=10, seeds=1, reference=fig4.QUICK)


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Train (or resume) the runs, test them at every N and draw the figure into `out`."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    moved = grid.runs()
    heuristics = [HeuristicSpec(n, names, grid.reference.overrides) for n in grid.tested()
                  for names in (grid.reference.heuristics, grid.reference.extra_heuristics)
                  if names]
    # training first: a transfer task reads its run's checkpoint
    common.run_tasks([*heuristics, *moved, *grid.native()], opts)
    # smallest N first: the cheap columns of the table land before N = 10,000's
    transfers = [TransferSpec(spec, n) for n in grid.tested() for spec in moved]
    report = common.run_tasks([*heuristics, *grid.native(), *transfers], opts)

    rows = []
    for spec in grid.native():
        s = report.results[spec.key]
        rows.append({"policy": spec.algo, "trained_at": "each N", "n_agents": spec.n_agents,
                     "test_return": s["test_return"], "test_return_ci": s["test_return_ci"],
                     "per_seed": json.dumps([p["test_return"] for p in s["per_seed"]])})
    for task in transfers:
        r = report.results[task.key]
        rows.append({"policy": task.run.algo, "trained_at": str(task.run.n_agents),
                     "n_agents": task.n_agents, "test_return": r["test_return"],
                     "test_return_ci": r["test_return_ci"], "per_seed": json.dumps(r["per_seed"])})
    for spec in heuristics:
        for name, metrics in report.results[spec.key]["policies"].items():
            rows.append({"policy": name, "trained_at": "", "n_agents": spec.n_agents,
                         "test_return": metrics["return"]["mean"],
                         "test_return_ci": metrics["return"]["ci95"], "per_seed": ""})

    _plot(rows, grid, opts.out / "transfer.png")
    common.write_csv(opts.out / "transfer.csv", rows)
    atomic.write_text(opts.out / "transfer.md", markdown(rows, grid))
    return {"rows": rows, "seconds": report.seconds}


LINESTYLES = ("-", "--", ":", "-.")


def _plot(rows: list[dict[str, Any]], grid: Grid, path: Path) -> None:
    algos = list(grid.algos)
    # cost (minus the return) on a log axis: the learners trained at large N lose by a factor of
    # 10 to 30 there, which a linear axis shared by the panels would flatten everything else into
    fig, axes = plt.subplots(1, len(algos), figsize=(5 * len(algos), 4.2), sharey=True,
                             squeeze=False)
    for ax, algo in zip(axes[0], algos, strict=True):
        trained = ["each N", *(str(n) for n in grid.train_n)]
        for i, where in enumerate(trained):
            mine = sorted((r for r in rows if r["policy"] == algo and r["trained_at"] == where),
                          key=lambda r: r["n_agents"])
            ax.errorbar([r["n_agents"] for r in mine], [-r["test_return"] for r in mine],
                        yerr=[r["test_return_ci"] for r in mine], capsize=3, marker="o",
                        ls=LINESTYLES[i % len(LINESTYLES)],
                        color=f"C{i}", label=f"{algo}, trained at " + (
                            where if where == "each N" else f"N = {where}"))
        for name, color in (("best-fit-central", "0.3"), ("model-greedy", "0.6")):
            mine = sorted((r for r in rows if r["policy"] == name), key=lambda r: r["n_agents"])
            ax.plot([r["n_agents"] for r in mine], [-r["test_return"] for r in mine], color=color,
                    lw=1, ls="-.", label=name)
        common.n_axis(ax, grid.tested())
        ax.set(xlabel="N at test", title=algo, yscale="log",
               ylabel="test cost, minus the return (lower is better)"
               if ax is axes[0][0] else None)
        ax.legend(fontsize=7)
    fig.suptitle("HeteroCloud: policies trained at one N, tested at every N (40 scenarios, "
                 "95 % CI)")
    fig.tight_layout()
    common.save(fig, path)


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"Greedy test return (40 test scenarios, mean ± 95 % CI over scenarios of the "
            f"seeds' mean; {grid.seeds} seed(s); the sampled policy is not tested at other N) "
            f"of each learner's best-on-validation checkpoints, trained at "
            f"N = {', '.join(map(str, grid.train_n))} ({grid.episodes} episodes) and tested at "
            f"every N; 'each N' is figure 4's run trained at that N. Higher is better.\n\n")
    cell = {(r["policy"], r["trained_at"], r["n_agents"]): common.pm(r["test_return"],
                                                                     r["test_return_ci"])
            for r in rows}
    lines = []
    for algo in grid.algos:
        for where in ("each N", *(str(n) for n in grid.train_n)):
            label = "each N" if where == "each N" else f"N = {where}"
            lines.append([algo, label, *(cell.get((algo, where, n), "-") for n in grid.tested())])
    for name in (*grid.reference.heuristics, *grid.reference.extra_heuristics):
        lines.append([name, "", *(cell.get((name, "", n), "-") for n in grid.tested())])
    return head + common.md_table(["policy", "trained at", *(f"N = {n}" for n in grid.tested())],
                                  lines) + "\n"
