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
    ("test_return", "test return (greedy, mean over seeds)"),
    ("test_return_ci", "  95 % CI half-width"),
    ("test_return_sampled", "test return (sampled policy)"),
    ("best_val_return", "best validation return"),
    ("episodes_to_converge", "episodes to converge"),
    ("reference_test_return", "{reference} test return"),
    ("wall_seconds", "wall time (s)"),
)


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
    table = Table(title=f"{label}, {run.episodes} episodes, {run.seeds} seed(s)")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, name in SUMMARY_ROWS:
        value = summary.get(key)
        table.add_row(name.format(reference=summary.get("reference", "reference")),
                      "-" if value is None else
                      f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"wrote {out}/summary.json", markup=False, highlight=False, soft_wrap=True)
