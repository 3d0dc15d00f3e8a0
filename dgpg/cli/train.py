"""`dgpg train`: parse a run's configuration, train it with a progress bar, print its summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dgpg.cli.common import (
    CLIError,
    DomainOption,
    check_contract,
    compilation_cache,
    console,
    domain_env,
    err_console,
    note,
    output_dir,
)

SUMMARY_ROWS = (
    ("test_return", "test_return_sampled", "test, best on validation"),
    ("final_test_return", "final_test_return_sampled", "test, final policy"),
    ("reference_test_return", None, "test, {reference}"),
    ("best_val_return", None, "validation, best"),
    ("last_val_return", None, "validation, final policy"),
    ("episodes_to_settle", None, "episodes to settle"),
)
"""The summary table's rows: (greedy key, sampled key, label); a test return is shown with its
95 % CI (the key + "_ci"), "-" where the summary has no value (a run written before the key)."""


def _value(summary: dict, key: str | None) -> str:
    """A summary value for the table: a return with its CI if the summary has one."""
    if key is None:
        return ""
    if key not in summary:
        return "-"  # a summary written before the key existed
    value, ci = summary[key], summary.get(f"{key}_ci")
    if value is None:
        return "never"  # episodes to settle
    if not isinstance(value, float):
        return str(value)
    return f"{value:.2f}" + (f" ± {ci:.2f}" if isinstance(ci, float) else "")


def summary_table(summary: dict, title: str, metrics_csv: Path | None = None) -> Table:
    """`dgpg train`'s table of a summary: the returns of the best-on-validation and the final
    policies, greedy and sampled side by side, and episodes to settle. A summary written before
    `episodes_to_settle` and `last_val_return` existed gets them from `metrics_csv`."""
    from dgpg.config import upgrade_summary

    summary = upgrade_summary(summary)
    if metrics_csv is not None and not {"episodes_to_settle", "last_val_return"} <= set(summary):
        summary = {**_from_metrics(summary, metrics_csv), **summary}
    reference = summary.get("reference", "reference")
    sampled = summary.get("test_sampled_scenarios")
    greedy_n = summary.get("test_scenarios", 40)
    caption = (f"± 95 % CI of the test returns; validation: greedy on the 10 validation "
               f"scenarios. Settle: the first episode from which the "
               f"greedy validation return (mean over seeds) stays within 10 % of {reference}'s "
               f"(never: it ends outside). Wall time {summary.get('wall_seconds', 0.0):.0f} s.")
    table = Table(title=title, caption=caption, caption_justify="left")
    table.add_column("")
    table.add_column(f"greedy ({greedy_n} scenarios)", justify="right")
    table.add_column("sampled" + (f" ({sampled})" if sampled else ""), justify="right")
    for greedy_key, sampled_key, name in SUMMARY_ROWS:
        table.add_row(name.format(reference=reference), _value(summary, greedy_key),
                      _value(summary, sampled_key))
    return table


def _from_metrics(summary: dict, metrics_csv: Path) -> dict:
    """`episodes_to_settle` and `last_val_return` of a run whose summary predates them, from
    its metrics.csv; {} if that cannot be read."""
    import numpy as np

    from dgpg.config import RunError, read_metric_rows
    from dgpg.training import episodes_to_settle

    reference = summary.get("reference_val_return")
    try:
        rows = read_metric_rows(metrics_csv)
        episodes = sorted({int(r["episode"]) for r in rows})
        curve = np.array([np.mean([float(r["val_return"]) for r in rows
                                   if int(r["episode"]) == e]) for e in episodes])
    except (RunError, KeyError, ValueError):
        return {}
    if curve.size == 0 or not np.all(np.isfinite(curve)):
        return {}
    found = {"last_val_return": float(curve[-1])}
    if isinstance(reference, float):
        found["episodes_to_settle"] = episodes_to_settle(curve, reference)
    return found


def run_config(out: Path, resume: bool, config_file: Path | None, flags: dict, sets: list[str],
               train_flags: dict | None = None, env_flags: dict | None = None):
    """The run's configuration from its layers (see dgpg.config), checked against `out`;
    `flags` are run fields, `train_flags` TrainConfig fields given as options."""
    from dgpg.config import (
        DEFAULT_RUN,
        ConfigError,
        RunError,
        check_folder,
        parse_set,
        read_file,
        resolve,
        saved_config,
    )

    try:
        layers = [read_file(config_file)] if config_file is not None else []
        layers.append({"run": {k: v for k, v in flags.items() if v is not None},
                       "train": dict(train_flags or {}), "env": dict(env_flags or {})})
        layers.append(parse_set(sets))
        base = saved_config(out) if resume else DEFAULT_RUN
        run = resolve(base, *layers)
        check_folder(out, run, resume)  # before creating anything, so an error stays one line
    except (ConfigError, RunError) as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot use output folder {str(out)!r}: {e.strerror}") from None
    return run


def unique_run_folder(run) -> Path:
    """runs/ALGO-nN[-DOMAIN]-YYYYmmdd-HHMMSS, with a suffix if that exists already."""
    from dgpg.domains import DEFAULT_DOMAIN

    stamp = time.strftime("%Y%m%d-%H%M%S")
    domain = "" if run.domain == DEFAULT_DOMAIN else f"-{run.domain}"
    base = Path("runs") / f"{run.algo}-n{run.n_agents}{domain}-{stamp}"
    folder, i = base, 1
    while folder.exists():
        i += 1
        folder = base.with_name(f"{base.name}-{i}")
    return folder


def train(
    ctx: typer.Context,
    algo: Annotated[str | None, typer.Option("--algo", help="dgpg (default), mappo or ippo.")]
    = None,
    agents: Annotated[
        int | None, typer.Option("--agents", min=1, max=16383, help="N agents (default 10).")
    ] = None,
    episodes: Annotated[
        int | None, typer.Option("--episodes", min=1, max=1_000_000,
                                 help="Episodes (default 20); with --resume, a larger value "
                                      "extends the run.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=2**31 - 1,
                                             help="First seed (default 0).")] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, max=64,
                                 help="Seeds trained at once (vmap; default 1).")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", min=0.0, max=1.0,
                                   help="DG-PG guidance weight (default 0.5).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="DG-PG's analytical model, one of the "
                                 "domain's (default: its first; `dgpg domains` lists them); "
                                 "MAPPO and IPPO use none.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="The actor network, the same for every "
                                 "algorithm: scorer (default), scorer-raw, mlp or scorer-id "
                                 "(train.actor).")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML or JSON file with [run], [train] and "
                                  "[env] tables (a run's config.json works too).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", metavar="SECTION.FIELD=VALUE",
                                       help="Set one field, e.g. train.learning_rate=3e-4 or "
                                            "env.arrival_rate=1.2 (repeatable; see "
                                            "--help-keys).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default: a new one, "
                                  "runs/ALGO-nN-DOMAIN-TIMESTAMP).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out with its own "
                           "configuration (options given must agree, except a larger "
                           "--episodes).")
    ] = False,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="Also log to TensorBoard in --out/tensorboard "
                           "(needs pip install -e '.[tensorboard]').")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    help_keys: Annotated[
        bool, typer.Option("--help-keys", help="List every key of --set and --config (of "
                           "--domain), and exit.")
    ] = False,
    domain: DomainOption = None,
) -> None:
    """Train DG-PG, MAPPO or IPPO; writes config.json, metrics.csv, checkpoints, summary.json.

    Values come from the defaults (or the run's own configuration with --resume), then
    --config, then the options, then --set."""
    domain, env_flags = domain_env(domain, ctx.args, default=None)  # None: the run's own
    if help_keys:
        from dgpg.config import ConfigError
        from dgpg.config import help_keys as keys_text
        from dgpg.domains import DEFAULT_DOMAIN

        try:
            text = keys_text(domain or DEFAULT_DOMAIN)
        except (ConfigError, ValueError, TypeError) as e:
            raise CLIError(str(e)) from None
        console.print(text, markup=False, highlight=False)
        return
    if tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboardX") is None:
            raise CLIError("--tensorboard needs tensorboardX: pip install -e '.[tensorboard]'")
    flags = {"algo": algo, "n_agents": agents, "episodes": episodes, "seed": seed,
             "seeds": seeds, "alpha": alpha, "model": model, "domain": domain}
    train_flags = {"actor": actor} if actor is not None else {}
    if out is None and resume:
        raise CLIError("--resume needs --out RUN_FOLDER, the run to continue")
    named = out is None
    if named:  # a name of its own, as every run gets one; checked against the defaults
        out = Path("runs") / "unnamed"
    run = run_config(out, resume, config_file, flags, set_ or [], train_flags, env_flags)
    if named:
        out = unique_run_folder(run)
    check_contract(run.env_config())
    out = output_dir(out)

    compilation_cache()
    from dgpg import training
    from dgpg.checkpoint import CheckpointError
    from dgpg.domains import DEFAULT_DOMAIN, DomainError
    from dgpg.training import RunError

    logger = None
    if tensorboard:
        from dgpg.tensorboard import TensorBoardLogger

        logger = TensorBoardLogger(out / "tensorboard")
    label = f"{run.algo} N={run.n_agents}" + (
        "" if run.domain == DEFAULT_DOMAIN else f" ({run.domain})")
    plain = not err_console.is_terminal  # a log file or a batch job: one line per event
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("train {task.fields[ret]}  validation {task.fields[val]}"),
               TimeElapsedColumn())
    phases = {"compile": "compiling (first episode)", "train": label,
              "test": f"testing on {len(training.TEST_SEEDS)} scenarios"}
    with Progress(*columns, console=err_console, disable=plain) as progress:
        task = progress.add_task(label, total=run.episodes, ret="-", val="-")

        def on_phase(name: str) -> None:
            progress.update(task, description=phases[name])
            if plain and name != "train":
                note(f"{label}: {phases[name]}")

        def on_episode(episode: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=episode, ret=f"{stats['return']:.2f}",
                            val=f"{stats['val_return']:.2f}")
            line = (f"{label}: episode {episode}/{run.episodes}  train return (sampled) "
                    f"{stats['return']:.2f}  validation return (greedy) "
                    f"{stats['val_return']:.2f}  {stats['wall_seconds']:.1f} s")
            if plain:
                note(line)
            else:  # printed above the bar, so that the history stays when the bar ends
                progress.console.print(line, markup=False, highlight=False)
            if logger is not None:
                logger.log(episode, stats)

        try:
            summary = training.train(out, run, resume=resume, on_episode=on_episode,
                                     on_phase=on_phase)
        except (RunError, CheckpointError, DomainError) as e:
            raise CLIError(str(e)) from None
        except OSError as e:
            raise CLIError(f"cannot write the run in {str(out)!r}: {e.strerror}") from None
        finally:
            if logger is not None:
                logger.close()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(summary_table(summary, f"{label}, {run.episodes} episodes, "
                                         f"{run.seeds} seed(s)", out / "metrics.csv"))
    console.print(f"wrote {out}/summary.json", markup=False, highlight=False, soft_wrap=True)
