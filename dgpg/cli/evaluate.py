"""`dgpg evaluate`: heuristics or a trained checkpoint on the test scenarios, as a table."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dgpg.cli.common import (
    CLIError,
    DomainOption,
    check_contract,
    compilation_cache,
    console,
    domain_env,
    spinner,
)

METRIC_LEGEND = {"return": "return", "imbalance": "imbal.", "overload": "overl.",
                 "drop_rate": "drop", "slowdown": "slowd.", "throughput": "thrpt.",
                 "mean_travel_time": "time", "so_ratio": "/SO", "gap": "gap"}
"""Short column names of the narrow table (other metrics: their first six letters)."""


def _short(metric: str) -> str:
    return METRIC_LEGEND.get(metric, metric[:6])


def _cell(mean: float, ci: float) -> str:
    return f"{mean:.4g} ± {ci:.2g}"


def metrics_table(records: list[dict], title: str, width: int,
                  metrics: tuple[str, ...]) -> Table:
    """The evaluate table: every metric as mean ± 95 % CI when that fits in `width` columns;
    otherwise the return with its CI and the other metrics' means under short names, with a
    legend."""
    from rich import box
    from rich.measure import Measurement

    wide = Table(title=title)
    wide.add_column("policy", no_wrap=True)
    for metric in metrics:
        wide.add_column(metric, justify="right", no_wrap=True)
    for r in records:
        wide.add_row(r["policy"], *(_cell(r[m]["mean"], r[m]["ci95"]) for m in metrics))
    probe = Console(width=10_000, file=io.StringIO())
    if Measurement.get(probe, probe.options, wide).maximum <= width:
        return wide
    narrow = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                   caption=(
        "means; ± is the return's 95 % CI; " + ", ".join(
            f"{_short(m)} = {m}" for m in metrics if _short(m) != m)
        + "; every CI: --json or --markdown"), caption_justify="left")
    narrow.add_column("policy", no_wrap=True)
    narrow.add_column("return", justify="right", no_wrap=True)
    narrow.add_column("±", justify="right", no_wrap=True)
    for metric in metrics[1:]:
        narrow.add_column(_short(metric), justify="right", no_wrap=True)
    for r in records:
        narrow.add_row(r["policy"], f"{r['return']['mean']:.1f}", f"{r['return']['ci95']:.3g}",
                       *(f"{r[m]['mean']:.3g}" for m in metrics[1:]))
    return narrow


def metrics_markdown(records: list[dict], title: str, metrics: tuple[str, ...]) -> str:
    """The evaluate table in Markdown, every metric as mean ± 95 % CI."""
    lines = [f"**{title}**", "", "| policy | " + " | ".join(metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for r in records:
        lines.append(f"| {r['policy']} | " + " | ".join(
            _cell(r[m]["mean"], r[m]["ci95"]) for m in metrics) + " |")
    return "\n".join(lines)


def evaluate(
    ctx: typer.Context,
    agents: Annotated[
        int | None, typer.Option("--agents", min=1, max=16383,
                                 help="N agents (default: the checkpoint's, else 10); a "
                                 "checkpoint trained at another N acts at this one.")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Heuristic name (repeatable), or 'all'."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A checkpoint file or a run folder (its best.ckpt, "
                     "or with --final its last.ckpt): best.ckpt holds each seed's best policy "
                     "on validation, last.ckpt its final one; evaluated on the environment it "
                     "was trained on, at its N or at --agents (not for scorer-id)."),
    ] = None,
    final: Annotated[
        bool, typer.Option("--final", help="Evaluate each seed's final policy (the actor after "
                           "the run's last episode, in its last.ckpt) rather than its best on "
                           "validation; a last.ckpt given as --checkpoint is evaluated so "
                           "without it.")
    ] = False,
    actor: Annotated[
        str | None, typer.Option("--actor", help="The actor the checkpoint must hold (scorer, "
                                 "scorer-raw, mlp or scorer-id); refused if it holds another.")
    ] = None,
    scenarios: Annotated[
        int, typer.Option("--scenarios", min=1, max=40, help="Test scenarios (seeds 10000+).")
    ] = 40,
    set_: Annotated[
        list[str] | None, typer.Option("--set", metavar="env.FIELD=VALUE",
                                       help="Set one environment field (repeatable), for "
                                            "heuristics or a checkpoint, e.g. "
                                            "env.arrival_rate=1.2.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print a Markdown table instead.")
    ] = False,
    domain: DomainOption = None,
) -> None:
    """Evaluate heuristics or a trained checkpoint on the test scenarios: mean and 95 % CI of
    the return and its terms."""
    from dgpg.domains import get_spec

    given_domain = domain
    domain, env_flags = domain_env(domain, ctx.args)
    if checkpoint is not None and env_flags:
        raise CLIError(f"{ctx.args[0].partition('=')[0]} applies to heuristics; a checkpoint "
                       "is evaluated on the environment it was trained on")
    spec = get_spec(domain)
    known = tuple(spec.heuristics)
    if not policy and checkpoint is None:
        raise CLIError("give --policy NAME (one of: " + ", ".join(known) + ", all) "
                       "or --checkpoint PATH")
    for name in policy or []:
        if name not in known and name != "all" and checkpoint is None:
            raise CLIError(f"unknown policy {name!r:.40} in the {domain} domain; known: "
                           f"{', '.join(known)}, all")
    if as_json and markdown:
        raise CLIError("give --json or --markdown, not both")
    env_sets = _env_sets(set_ or [])
    if final and checkpoint is None:
        raise CLIError("--final applies to a --checkpoint (the final policies of a run)")
    if actor is not None:
        from dgpg.learners.config import ACTOR_NAMES

        if checkpoint is None:
            raise CLIError("--actor applies to a --checkpoint (heuristics have no actor)")
        if actor not in ACTOR_NAMES:
            raise CLIError(f"unknown actor {actor!r:.40}; known: {', '.join(ACTOR_NAMES)}")
    every = bool(policy) and "all" in policy  # the heuristics of the domain evaluated in
    names = list(known) if every else list(dict.fromkeys(policy or []))
    if checkpoint is not None:  # a missing file is refused before JAX loads
        try:
            name = "last.ckpt" if final else "best.ckpt"
            target = checkpoint / "checkpoints" / name if checkpoint.is_dir() else checkpoint
            missing = not target.exists()
        except (OSError, ValueError):  # e.g. an embedded NUL character
            target, missing = checkpoint, False  # left to the checkpoint reader's message
        if missing:
            raise CLIError(f"checkpoint not found: {target}")

    if checkpoint is None:  # a bad network or N is refused before JAX loads
        from dgpg.config import make_env_config

        try:
            config = make_env_config(agents if agents is not None else 10,
                                     env_flags | env_sets, domain)
        except (ValueError, TypeError) as e:
            raise CLIError(str(e)) from None
        check_contract(config)

    compilation_cache()
    from dgpg.checkpoint import CheckpointError
    from dgpg.config import ConfigError
    from dgpg.domains import DomainError, get_domain
    from dgpg.evaluation import TEST_SEEDS, records
    from dgpg.training import checkpoint_policies

    policies = {}
    if checkpoint is not None:
        try:
            trained, run, tcfg = checkpoint_policies(checkpoint, agents, final or None)
        except (CheckpointError, ConfigError) as e:
            raise CLIError(str(e)) from None
        if actor is not None and actor != tcfg.actor:
            raise CLIError(f"--actor {actor} contradicts the checkpoint, whose actor is "
                           f"{tcfg.actor}; leave --actor out")
        if given_domain is not None and given_domain != run.domain:
            raise CLIError(f"--domain {given_domain} contradicts the checkpoint, which was "
                           f"trained in the {run.domain} domain; leave --domain out")
        domain, spec, config = run.domain, get_spec(run.domain), run.env_config()
        config = _moved(tcfg, run, config, agents, env_sets)  # train small, deploy large
        check_contract(config)
        if every:
            names = list(spec.heuristics)
        if unknown := [name for name in names if name not in spec.heuristics]:
            raise CLIError(f"unknown policy {unknown[0]!r:.40} in the {domain} domain of the "
                           f"checkpoint; known: {', '.join(spec.heuristics)}")
    try:
        heuristics = get_domain(domain).heuristics
        policies = {name: heuristics[name] for name in names}
    except DomainError as e:
        raise CLIError(str(e)) from None
    if checkpoint is not None:
        policies.update(trained)
    n = config.n_agents
    seeds = TEST_SEEDS[:scenarios]
    labels = list(policies)
    with spinner() as progress:
        task = progress.add_task(f"compiling the evaluation at N={n}")

        def on_policy(i: int) -> None:
            progress.update(task, description=f"evaluating {labels[i]} at N={n}")

        # one compiled program for every policy: the environment is compiled once
        rows = records(policies, config, seeds, on_policy)
    title = f"{spec.title}, N={n}, {len(seeds)} test scenarios (mean ± 95% CI)"
    if env_sets:
        title += "; " + ", ".join(f"{k}={v}" for k, v in env_sets.items())
    if checkpoint is not None and n != run.n_agents:
        title += f"; the checkpoint was trained at N={run.n_agents}"
        for row in rows:
            if row["policy"] in trained:
                row["trained_n_agents"] = run.n_agents
    if as_json:
        print(json.dumps(rows, indent=2))
    elif markdown:
        print(metrics_markdown(rows, title, spec.table_metrics))
    else:
        console.print(metrics_table(rows, title, console.width, spec.table_metrics))


def _env_sets(items: list[str]) -> dict:
    """The environment fields of --set (checked before JAX loads)."""
    from dgpg.config import ConfigError, parse_set

    try:
        sections = parse_set(items)
    except ConfigError as e:
        raise CLIError(str(e)) from None
    if other := sorted(set(sections) - {"env"}):
        raise CLIError(f"--set {other[0]}.FIELD: evaluate sets env fields only (a checkpoint "
                       f"keeps its run's {other[0]} section)")
    return sections.get("env", {})


def _moved(tcfg, run, config, agents: int | None, env_sets: dict):
    """The environment a checkpoint acts in: its run's, at --agents and with the --set fields;
    CLIError when its policy cannot act there (`transfer_problem`) or a domain option such as
    the network would change."""
    from dgpg.config import make_env_config, parse_overrides
    from dgpg.domains import get_spec
    from dgpg.training import transfer_problem

    for option in get_spec(run.domain).options:
        if option.field in env_sets and env_sets[option.field] != getattr(config, option.field):
            raise CLIError(f"--set env.{option.field}: a {run.domain} checkpoint acts on the "
                           f"{option.field} it was trained on "
                           f"({getattr(config, option.field)!r:.80}); leave it out")
    n = agents if agents is not None else run.n_agents
    if n == run.n_agents and not env_sets:
        return config
    given = f"--agents {n}" if n != run.n_agents else "--set"
    try:
        target = make_env_config(n, parse_overrides(run.overrides)["env"] | env_sets,
                                 run.domain)
    except (ValueError, TypeError) as e:
        raise CLIError(f"{given}: {e}") from None
    if problem := transfer_problem(tcfg, config, target):
        raise CLIError(f"{given}: {problem}; leave {given.split()[0]} out")
    return target
