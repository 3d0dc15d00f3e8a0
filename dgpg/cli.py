"""The `dgpg` command line: evaluate, reproduce, bench.

Bad input (unknown names, out-of-range numbers, malformed options, unusable paths) prints one
line to stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Descent-Guided Policy Gradient and the HeteroCloud scheduling environment.",
)
console = Console()
err_console = Console(stderr=True)

EXPERIMENTS = ("fig1",)
TABLE_METRICS = ("return", "imbalance", "overload", "drop_rate", "slowdown", "throughput")


class CLIError(Exception):
    """A user error: reported as one line, exit status 2."""


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=err_console, transient=True,
    )


def _output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create output folder {str(path)!r}: {e.strerror}") from None
    if not path.is_dir():
        raise CLIError(f"output path {str(path)!r} is not a folder")
    return path


@app.command()
def train(
    algo: Annotated[str, typer.Option("--algo", help="dgpg, mappo or ippo.")] = "dgpg",
    agents: Annotated[int, typer.Option("--agents", min=1, max=100_000, help="N agents.")] = 10,
    episodes: Annotated[int, typer.Option("--episodes", min=1, max=1_000_000)] = 20,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**31 - 1)] = 0,
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, max=64, help="Seeds trained at once (vmap).")
    ] = 1,
    alpha: Annotated[float, typer.Option("--alpha", help="DG-PG guidance weight in [0, 1].")]
    = 0.5,
    out: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/default"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")]
    = False,
) -> None:
    """Train DG-PG, MAPPO or IPPO; writes config.json, metrics.csv, checkpoints, summary.json."""
    from dgpg.checkpoint import CheckpointError
    from dgpg.learners.ppo import ALGORITHMS
    from dgpg.training import RunConfig, RunError, check_folder
    from dgpg.training import train as run_training

    if algo not in ALGORITHMS:
        raise CLIError(f"unknown algorithm {algo!r}; known: {', '.join(ALGORITHMS)}")
    if not (0.0 <= alpha <= 1.0):  # also rejects NaN
        raise CLIError(f"--alpha must be in [0, 1], got {alpha}")
    run = RunConfig(algo=algo, n_agents=agents, episodes=episodes, seed=seed, seeds=seeds,
                    alpha=alpha)
    out = _output_dir(out)
    try:
        check_folder(out, run, resume)  # before the progress bar, so an error stays one line
    except RunError as e:
        raise CLIError(str(e)) from None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("return {task.fields[ret]}  val {task.fields[val]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task(f"{algo} N={agents}", total=episodes, ret="-", val="-")

        def on_episode(episode: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=episode, ret=f"{stats['return']:.2f}",
                            val=f"{stats['val_return']:.2f}")

        try:
            summary = run_training(out, run, resume=resume, on_episode=on_episode)
        except (RunError, CheckpointError) as e:
            raise CLIError(str(e)) from None
    keys = ("test_return", "test_return_ci", "best_val_return", "episodes_to_converge",
            "bestfit_central_test_return", "wall_seconds")
    console.print({k: summary[k] for k in keys})
    console.print(f"wrote {out}/summary.json")


def _checkpoint_policies(path: Path) -> dict:
    """Greedy policies of every seed stored in a checkpoint, named after the checkpoint."""
    import jax

    from dgpg.checkpoint import CheckpointError
    from dgpg.learners.ppo import make_policy
    from dgpg.training import load_actor

    try:
        tcfg, actor, meta = load_actor(path)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    n_seeds = jax.tree.leaves(actor)[0].shape[0]
    label = meta.get("config", {}).get("run", {}).get("algo", "checkpoint")
    return {
        f"{label} (seed {meta['config']['run']['seed'] + i})": make_policy(
            tcfg, jax.tree.map(lambda x, i=i: x[i], actor), greedy=True)
        for i in range(n_seeds)
    }


@app.command()
def evaluate(
    agents: Annotated[int, typer.Option("--agents", min=1, max=100_000, help="N agents.")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Heuristic name (repeatable), or 'all'."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A checkpoint file or a run folder (its best.ckpt)."),
    ] = None,
    scenarios: Annotated[
        int, typer.Option("--scenarios", min=1, max=40, help="Test scenarios (seeds 10000+).")
    ] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Evaluate heuristics or a trained checkpoint on the test scenarios: mean and 95 % CI of
    the return and its terms."""
    from dgpg.envs.cloud import EnvConfig
    from dgpg.evaluation import TEST_SEEDS, mean_ci
    from dgpg.evaluation import evaluate as run_evaluation
    from dgpg.heuristics import HEURISTICS

    if not policy and checkpoint is None:
        raise CLIError("give --policy NAME (one of: " + ", ".join(HEURISTICS) + ", all) "
                       "or --checkpoint PATH")
    names = list(HEURISTICS) if policy and "all" in policy else list(policy or [])
    for name in names:
        if name not in HEURISTICS:
            raise CLIError(f"unknown policy {name!r}; known: {', '.join(HEURISTICS)}, all")
    policies = {name: HEURISTICS[name] for name in names}
    if checkpoint is not None:
        policies.update(_checkpoint_policies(checkpoint))
    config = EnvConfig(n_agents=agents)
    seeds = TEST_SEEDS[:scenarios]
    records = []
    with _progress() as progress:
        for name, fn in policies.items():
            task = progress.add_task(f"evaluating {name} at N={agents}")
            values = run_evaluation(fn, config, seeds)
            progress.remove_task(task)
            record = {"policy": name, "n_agents": agents, "scenarios": len(seeds)}
            for metric, v in values.items():
                mean, ci = mean_ci(v)
                record[metric] = {"mean": mean, "ci95": ci}
            records.append(record)
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title=f"HeteroCloud, N={agents}, {len(seeds)} test scenarios (mean ± 95% CI)")
    table.add_column("policy")
    for metric in TABLE_METRICS:
        table.add_column(metric, justify="right")
    for r in records:
        table.add_row(r["policy"], *(
            f"{r[m]['mean']:.4g} ± {r[m]['ci95']:.2g}" for m in TABLE_METRICS
        ))
    console.print(table)


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(help="Experiment: " + ", ".join(EXPERIMENTS) + ".")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("results"),
    quick: Annotated[bool, typer.Option("--quick", help="Reduced version, minutes on 2 CPUs.")]
    = False,
) -> None:
    """Run one of the paper's experiments; writes PNG, CSV and a Markdown table under --out."""
    if name not in EXPERIMENTS:
        raise CLIError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    out = _output_dir(out)
    from dgpg.experiments import fig1

    with _progress() as progress:
        progress.add_task(f"reproducing {name}")
        stats = fig1.run(out, quick=quick)
    console.print(f"wrote {out}/fig1.png, fig1_*.csv, fig1.md")
    console.print({k: round(v, 4) for k, v in stats.items()})


@app.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by dgpg train.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("curves.png"),
    column: Annotated[
        str, typer.Option("--column", help="metrics.csv column: val_return, return, ...")
    ] = "val_return",
) -> None:
    """Plot learning curves of training runs (mean over seeds, min-max band)."""
    from dgpg.experiments.curves import CurveError, plot_runs

    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must name a .png file, got {str(out)!r}")
    _output_dir(out.parent)
    try:
        plot_runs(list(runs), out, column)
    except CurveError as e:
        raise CLIError(str(e)) from None
    console.print(f"wrote {out} and {out.with_suffix('.csv')}")


@app.command()
def bench(
    agents: Annotated[
        str, typer.Option("--agents", help="Comma-separated N values.")
    ] = "10,100,1000,10000",
    steps: Annotated[int, typer.Option("--steps", min=1, max=100_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
) -> None:
    """Environment throughput (agent-steps per second, compiled, a batch of environments)."""
    from dgpg.bench import env_throughput

    try:
        ns = [int(a) for a in agents.split(",") if a.strip()]
    except ValueError:
        raise CLIError(f"--agents must be comma-separated integers, got {agents!r}") from None
    if not ns or min(ns) < 1:
        raise CLIError(f"--agents values must be integers >= 1, got {agents!r}")
    records = []
    with _progress() as progress:
        for n in ns:
            task = progress.add_task(f"benchmarking N={n}")
            records.append(env_throughput(n, steps=steps))
            progress.remove_task(task)
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title=f"HeteroCloud environment throughput ({records[0]['device']})")
    for col in ("N", "batch", "agent-steps/s", "step time (ms, whole batch)", "compile (s)"):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row(
            str(r["n_agents"]), str(r["batch"]), f"{r['agent_steps_per_s']:,.0f}",
            f"{1000 * r['seconds'] / r['steps']:.2f}", f"{r['compile_seconds']:.1f}",
        )
    console.print(table)


def _fail(message: str) -> None:
    print(f"dgpg: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dgpg` console script."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="dgpg", standalone_mode=False)
    except CLIError as e:
        _fail(str(e))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("dgpg: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as e:  # parsing and validation errors of the options
        if type(e).__name__ == "NoArgsIsHelpError":
            print(command.get_help(typer.Context(command, info_name="dgpg")))
            sys.exit(0)
        _fail(e.format_message())
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
