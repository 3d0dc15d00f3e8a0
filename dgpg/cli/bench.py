"""`dgpg bench`: environment throughput and training wall time, as tables."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from dgpg.cli.common import CLIError, DomainOption, console, domain_env, parse_agents, spinner


def bench(
    ctx: typer.Context,
    agents: Annotated[
        str, typer.Option("--agents", help="Comma-separated N values.")
    ] = "10,100,1000,10000",
    steps: Annotated[int, typer.Option("--steps", min=1, max=100_000)] = 50,
    train: Annotated[
        str, typer.Option("--train", help="Also time DG-PG training: comma-separated "
                          "N:EPISODES, e.g. 20:10,200:10,1500:20.")
    ] = "",
    split: Annotated[
        str | None,
        typer.Option("--split", help="Also time one DG-PG training episode part by part "
                     "(roll-out, update, validation, environment only): comma-separated N "
                     "values, e.g. 20,200."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
    domain: DomainOption = None,
) -> None:
    """Environment throughput (agent-steps per second, compiled, a batch of environments);
    with --train, DG-PG training wall time (compilation reported apart); with --split, a
    training episode part by part and its ratio to the environment-only cost."""
    train_runs = []
    for spec in (t.strip() for t in train.split(",") if t.strip()):
        try:
            n_text, episodes_text = spec.split(":")
            n, episodes = int(n_text), int(episodes_text)
        except ValueError:
            raise CLIError(f"--train must be comma-separated N:EPISODES, got {train!r}") from None
        if not (1 <= n <= 16383 and 1 <= episodes <= 10_000):
            raise CLIError(f"--train {spec!r}: N must be in [1, 16383], episodes in [1, 10000]")
        train_runs.append((n, episodes))
    if train.strip() and not train_runs:
        raise CLIError(f"--train must be comma-separated N:EPISODES, got {train!r}")

    ns = parse_agents(agents)
    split_ns = parse_agents(split, "--split") if split is not None else []
    domain, env = domain_env(domain, ctx.args)
    from dgpg.config import make_env_config
    from dgpg.domains import get_spec

    for option, values in (("--agents", ns), ("--split", split_ns),
                           ("--train", [n for n, _ in train_runs])):
        for n in values:
            try:
                make_env_config(n, env, domain)
            except ValueError as e:
                raise CLIError(f"{option} {n}: {e}") from None
    from dgpg.bench import env_throughput, in_fresh_process, train_timing
    where = {"domain": domain, "env": env}
    records = []
    with spinner() as progress:
        for n in ns:
            task = progress.add_task(f"benchmarking N={n}")
            records.append({"kind": "env", **env_throughput(n, steps=steps, **where)})
            progress.remove_task(task)
        timings = []
        for n, episodes in train_runs:
            task = progress.add_task(f"training DG-PG at N={n}, {episodes} episodes")
            timings.append({"kind": "train", **train_timing(n, episodes, **where)})
            progress.remove_task(task)
        splits = []
        for n in split_ns:
            task = progress.add_task(f"timing a training episode at N={n} part by part")
            splits.append({"kind": "split", **in_fresh_process("split", n_agents=n, **where)})
            progress.remove_task(task)
    if as_json:
        print(json.dumps(records + timings + splits, indent=2))
        return
    table = Table(title=f"{get_spec(domain).title} environment throughput "
                        f"({records[0]['device']})")
    for col in ("N", "batch", "agent-steps/s", "step time (ms, whole batch)", "compile (s)"):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row(
            str(r["n_agents"]), str(r["batch"]), f"{r['agent_steps_per_s']:,.0f}",
            f"{1000 * r['seconds'] / r['steps']:.2f}", f"{r['compile_seconds']:.1f}",
        )
    console.print(table)
    if timings:
        table = Table(title="DG-PG training, one seed")
        for col in ("N", "episodes", "wall time (s)", "of which compile (s)", "s / episode",
                    "recompiles"):
            table.add_column(col, justify="right")
        for r in timings:
            table.add_row(str(r["n_agents"]), str(r["episodes"]), f"{r['train_seconds']:.1f}",
                          f"{r['compile_seconds']:.1f}", f"{r['seconds_per_episode']:.2f}",
                          str(r["recompiles_after_first_episode"]))
        console.print(table)
    if splits:
        table = Table(title="A DG-PG training episode part by part, one seed (s)")
        for col in ("N", "roll-out", "update", "validation", "episode", "environment only",
                    "episode / environment", "compile", "peak RSS (MB)"):
            table.add_column(col, justify="right")
        for r in splits:
            table.add_row(str(r["n_agents"]), f"{r['rollout_seconds']:.2f}",
                          f"{r['update_seconds']:.2f}", f"{r['validation_seconds']:.2f}",
                          f"{r['episode_seconds']:.2f}", f"{r['env_only_seconds']:.2f}",
                          f"{r['ratio_to_env']:.1f}", f"{r['compile_seconds']:.1f}",
                          f"{r['peak_rss_mb']:.0f}")
        console.print(table)
