"""The `dgpg` command line: evaluate, reproduce, bench.

Bad input (unknown names, out-of-range numbers, malformed options, unusable paths) prints one
line to stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
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
    help="Descent-Guided Policy Gradient, the HeteroCloud scheduling environment and RoadNet "
         "traffic assignment.",
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from dgpg import __version__

        print(f"dgpg {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Descent-Guided Policy Gradient, the HeteroCloud scheduling environment and RoadNet
    traffic assignment."""

EXPERIMENTS = ("fig1", "fig2", "fig3", "tuning", "fig4", "fig5", "variance", "nash",
               "alignment", "ablation", "actors", "roads")
"""In the order of `dgpg reproduce all` (tuning before figure 4, which uses its winners)."""
GRID_EXPERIMENTS = ("fig3", "tuning", "fig4", "fig5", "variance", "nash", "alignment",
                    "ablation", "actors", "roads")
"""Experiments whose grid has several N (--agents picks part of it)."""
TABLE_METRICS = ("return", "imbalance", "overload", "drop_rate", "slowdown", "throughput")
"""The cloud's metrics in `dgpg evaluate`'s table (`dgpg.domains.SPECS` has every domain's)."""


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
    except ValueError as e:  # e.g. an embedded NUL character
        raise CLIError(f"cannot create output folder {str(path)!r}: {e}") from None
    if not path.is_dir():
        raise CLIError(f"output path {str(path)!r} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"output folder {str(path)!r} is not writable")
    return path


def _check_output_dir(path: Path) -> None:
    """Refuse a folder that `_output_dir` could not make or write to, without making it (so
    that a second bad path refused after this one leaves nothing behind)."""
    try:
        first = path.absolute()
        while not first.exists():
            first = first.parent
    except ValueError as e:  # e.g. an embedded NUL character
        raise CLIError(f"cannot create output folder {str(path)!r}: {e}") from None
    if not first.is_dir():
        what = "is not a folder" if first == path.absolute() else "cannot be created: " \
            f"{str(first)!r} is a file"
        raise CLIError(f"output path {str(path)!r} {what}")
    if not os.access(first, os.W_OK | os.X_OK):
        raise CLIError(f"output folder {str(path)!r} is not writable")


def _compilation_cache() -> None:
    """JAX's persistent compilation cache, on by default for the command line (a second run of
    the same shapes does not compile again); `DGPG_JAX_CACHE` names its folder, `off` turns it
    off."""
    from dgpg.experiments.sweep import enable_compilation_cache

    try:
        enable_compilation_cache(arrays_as_arguments=False)
    except OSError:
        pass  # an unusable cache folder only costs compile time


DomainOption = Annotated[
    str | None, typer.Option("--domain", help="The environment: cloud (HeteroCloud, default) or "
                             "roads (RoadNet traffic assignment).")
]
NetworkOption = Annotated[
    Path | None, typer.Option("--network", metavar="PATH_PREFIX",
                              help="RoadNet: the TNTP network with files PATH_PREFIX_net.tntp "
                                   "and PATH_PREFIX_trips.tntp (default: the generated grid "
                                   "city; env.network).")
]


def _domain_env(domain: str | None, network: Path | None, default: str | None = "cloud"
                ) -> tuple[str | None, dict]:
    """The domain of --domain (`default` when not given) and the env fields of --network;
    CLIError for an unknown domain or a --network that the domain has no use for."""
    from dgpg.domains import SPECS

    if domain is not None and domain not in SPECS:
        raise CLIError(f"unknown domain {domain!r:.40}; known: {', '.join(SPECS)}")
    domain = domain if domain is not None else default
    if network is None:
        return domain, {}
    if domain is not None and domain != "roads":
        raise CLIError(f"--network applies to --domain roads, not {domain}")
    try:
        return domain, {"network": str(network.expanduser().absolute())}
    except (OSError, ValueError, RuntimeError) as e:  # e.g. an embedded NUL character
        raise CLIError(f"--network {str(network)!r:.200}: {e}") from None


def _train_config(out: Path, resume: bool, config_file: Path | None, flags: dict,
                  sets: list[str], train_flags: dict | None = None,
                  env_flags: dict | None = None):
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


SUMMARY_ROWS = (
    ("test_return", "test return (greedy, mean over seeds)"),
    ("test_return_ci", "  95 % CI half-width"),
    ("test_return_sampled", "test return (sampled policy)"),
    ("best_val_return", "best validation return"),
    ("episodes_to_converge", "episodes to converge"),
    ("bestfit_central_test_return", "best-fit-central test return"),
    ("wall_seconds", "wall time (s)"),
)


@app.command()
def train(
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
        str | None, typer.Option("--model", help="DG-PG's analytical model: aligned (default), "
                                 "aligned-state, aligned-step or fluid; MAPPO and IPPO use none.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="The actor network, the same for every "
                                 "algorithm: scorer (default), scorer-raw or mlp "
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
    out: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/default"),
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
    network: NetworkOption = None,
) -> None:
    """Train DG-PG, MAPPO or IPPO; writes config.json, metrics.csv, checkpoints, summary.json.

    Values come from the defaults (or the run's own configuration with --resume), then
    --config, then the options, then --set."""
    domain, env_flags = _domain_env(domain, network, default=None)  # None: the run's own
    if help_keys:
        from dgpg.config import help_keys as keys_text

        console.print(keys_text(domain or "cloud"), markup=False, highlight=False)
        return
    if tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboardX") is None:
            raise CLIError("--tensorboard needs tensorboardX: pip install -e '.[tensorboard]'")
    flags = {"algo": algo, "n_agents": agents, "episodes": episodes, "seed": seed,
             "seeds": seeds, "alpha": alpha, "model": model, "domain": domain}
    train_flags = {"actor": actor} if actor is not None else {}
    run = _train_config(out, resume, config_file, flags, set_ or [], train_flags, env_flags)
    out = _output_dir(out)

    _compilation_cache()
    from dgpg import training
    from dgpg.checkpoint import CheckpointError
    from dgpg.training import RunError

    logger = None
    if tensorboard:
        from dgpg.tensorboard import TensorBoardLogger

        logger = TensorBoardLogger(out / "tensorboard")
    label = f"{run.algo} N={run.n_agents}" + ("" if run.domain == "cloud" else f" ({run.domain})")
    plain = not err_console.is_terminal  # a log file or a batch job: one line per event
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("return {task.fields[ret]}  val {task.fields[val]}"),
               TimeElapsedColumn())
    phases = {"compile": "compiling (first episode)", "train": label,
              "test": f"testing on {len(training.TEST_SEEDS)} scenarios"}
    with Progress(*columns, console=err_console, disable=plain) as progress:
        task = progress.add_task(label, total=run.episodes, ret="-", val="-")

        def on_phase(name: str) -> None:
            progress.update(task, description=phases[name])
            if plain and name != "train":
                _note(f"{label}: {phases[name]}")

        def on_episode(episode: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=episode, ret=f"{stats['return']:.2f}",
                            val=f"{stats['val_return']:.2f}")
            if plain:
                _note(f"{label}: episode {episode}/{run.episodes}  return "
                      f"{stats['return']:.2f}  val {stats['val_return']:.2f}  "
                      f"{stats['wall_seconds']:.1f} s")
            if logger is not None:
                logger.log(episode, stats)

        try:
            summary = training.train(out, run, resume=resume, on_episode=on_episode,
                                     on_phase=on_phase)
        except (RunError, CheckpointError) as e:
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
    reference = summary.get("reference", "best-fit-central")
    for key, name in SUMMARY_ROWS:
        value = summary.get(key)
        name = name.replace("best-fit-central", reference)
        table.add_row(name, "-" if value is None else
                      f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"wrote {out}/summary.json", markup=False, highlight=False, soft_wrap=True)


def _note(text: str) -> None:
    """One plain line on stderr (progress when stderr is not a terminal)."""
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def _checkpoint_policies(path: Path, actor: str | None = None):
    """(greedy policies of every seed stored in a checkpoint, named after the checkpoint; the
    environment configuration the checkpoint was trained on). `actor`, when given, must be the
    checkpoint's."""
    import jax

    from dgpg.checkpoint import CheckpointError
    from dgpg.config import ConfigError, RunConfig
    from dgpg.learners.ppo import make_policy
    from dgpg.training import load_actor

    try:
        tcfg, params, meta = load_actor(path)
        run = RunConfig.from_dict(meta["config"]["run"])
    except (CheckpointError, ConfigError) as e:
        raise CLIError(str(e)) from None
    if actor is not None and actor != tcfg.actor:
        raise CLIError(f"--actor {actor} contradicts the checkpoint, whose actor is "
                       f"{tcfg.actor}; leave --actor out")
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    policies = {
        f"{run.algo} (seed {run.seed + i})": make_policy(
            tcfg, jax.tree.map(lambda x, i=i: x[i], params), greedy=True)
        for i in range(n_seeds)
    }
    return policies, run.env_config()


POLICY_NAMES = ("random", "round-robin", "least-loaded", "best-fit", "best-fit-central",
                "analytical", "model-greedy")
"""The cloud's heuristics (dgpg.heuristics.HEURISTICS); `dgpg.domains.SPECS` names every
domain's, so that a bad name is refused before JAX loads."""
METRIC_LEGEND = {"return": "return", "imbalance": "imbal.", "overload": "overl.",
                 "drop_rate": "drop", "slowdown": "slowd.", "throughput": "thrpt.",
                 "mean_travel_time": "time", "so_ratio": "/SO", "gap": "gap"}


def _cell(mean: float, ci: float) -> str:
    return f"{mean:.4g} ± {ci:.2g}"


def metrics_table(records: list[dict], title: str, width: int,
                  metrics: tuple[str, ...] = TABLE_METRICS) -> Table:
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
            f"{METRIC_LEGEND[m]} = {m}" for m in metrics if METRIC_LEGEND[m] != m)
        + "; every CI: --json or --markdown"), caption_justify="left")
    narrow.add_column("policy", no_wrap=True)
    narrow.add_column("return", justify="right", no_wrap=True)
    narrow.add_column("±", justify="right", no_wrap=True)
    for metric in metrics[1:]:
        narrow.add_column(METRIC_LEGEND[metric], justify="right", no_wrap=True)
    for r in records:
        narrow.add_row(r["policy"], f"{r['return']['mean']:.1f}", f"{r['return']['ci95']:.3g}",
                       *(f"{r[m]['mean']:.3g}" for m in metrics[1:]))
    return narrow


def metrics_markdown(records: list[dict], title: str,
                     metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """The evaluate table in Markdown, every metric as mean ± 95 % CI."""
    lines = [f"**{title}**", "", "| policy | " + " | ".join(metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for r in records:
        lines.append(f"| {r['policy']} | " + " | ".join(
            _cell(r[m]["mean"], r[m]["ci95"]) for m in metrics) + " |")
    return "\n".join(lines)


@app.command()
def evaluate(
    agents: Annotated[
        int | None, typer.Option("--agents", min=1, max=16383,
                                 help="N agents (default: the checkpoint's, else 10).")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Heuristic name (repeatable), or 'all'."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A checkpoint file or a run folder (its best.ckpt); "
                     "evaluated on the environment it was trained on."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="The actor the checkpoint must hold (scorer, "
                                 "scorer-raw or mlp); refused if it holds another.")
    ] = None,
    scenarios: Annotated[
        int, typer.Option("--scenarios", min=1, max=40, help="Test scenarios (seeds 10000+).")
    ] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print a Markdown table instead.")
    ] = False,
    domain: DomainOption = None,
    network: NetworkOption = None,
) -> None:
    """Evaluate heuristics or a trained checkpoint on the test scenarios: mean and 95 % CI of
    the return and its terms."""
    from dgpg.domains import SPECS

    if checkpoint is not None and network is not None:
        raise CLIError("--network applies to heuristics; a checkpoint is evaluated on its own "
                       "network")
    given_domain = domain
    domain, env_flags = _domain_env(domain, network)
    spec = SPECS[domain]
    known = spec.heuristics
    if not policy and checkpoint is None:
        raise CLIError("give --policy NAME (one of: " + ", ".join(known) + ", all) "
                       "or --checkpoint PATH")
    for name in policy or []:
        if name not in known and name != "all":
            where = "" if domain == "cloud" else f" in the {domain} domain"
            raise CLIError(f"unknown policy {name!r:.40}{where}; known: {', '.join(known)}, all")
    if as_json and markdown:
        raise CLIError("give --json or --markdown, not both")
    if actor is not None:
        from dgpg.learners.config import ACTOR_NAMES

        if checkpoint is None:
            raise CLIError("--actor applies to a --checkpoint (heuristics have no actor)")
        if actor not in ACTOR_NAMES:
            raise CLIError(f"unknown actor {actor!r:.40}; known: {', '.join(ACTOR_NAMES)}")
    names = list(known) if policy and "all" in policy else list(dict.fromkeys(policy or []))
    if checkpoint is not None:  # a missing file is refused before JAX loads
        try:
            target = checkpoint / "checkpoints" / "best.ckpt" if checkpoint.is_dir() else checkpoint
            missing = not target.exists()
        except (OSError, ValueError):  # e.g. an embedded NUL character
            target, missing = checkpoint, False  # left to the checkpoint reader's message
        if missing:
            raise CLIError(f"checkpoint not found: {target}")

    if checkpoint is None:  # a bad network or N is refused before JAX loads
        from dgpg.config import make_env_config

        try:
            config = make_env_config(agents if agents is not None else 10, env_flags, domain)
        except ValueError as e:
            raise CLIError(str(e)) from None

    _compilation_cache()
    from dgpg.domains import domain_of, get_domain
    from dgpg.evaluation import TEST_SEEDS, evaluate_many, mean_ci

    if checkpoint is not None:
        trained, config = _checkpoint_policies(checkpoint, actor)
        trained_in = domain_of(config).name
        if given_domain is not None and given_domain != trained_in:
            raise CLIError(f"--domain {given_domain} contradicts the checkpoint, which was "
                           f"trained in the {trained_in} domain; leave --domain out")
        if agents is not None and agents != config.n_agents:
            raise CLIError(f"--agents {agents} contradicts the checkpoint, which was trained at "
                           f"N = {config.n_agents}; leave --agents out")
        domain, spec = trained_in, SPECS[trained_in]
        if unknown := [name for name in names if name not in spec.heuristics]:
            raise CLIError(f"unknown policy {unknown[0]!r:.40} in the {domain} domain of the "
                           f"checkpoint; known: {', '.join(spec.heuristics)}")
    heuristics = get_domain(domain).heuristics
    policies = {name: heuristics[name] for name in names}
    if checkpoint is not None:
        policies.update(trained)
    n = config.n_agents
    seeds = TEST_SEEDS[:scenarios]
    names = list(policies)
    with _progress() as progress:
        task = progress.add_task(f"compiling the evaluation at N={n}")

        def on_policy(i: int) -> None:
            progress.update(task, description=f"evaluating {names[i]} at N={n}")

        # one compiled program for every policy: the environment is compiled once
        results = evaluate_many(list(policies.values()), config, seeds, on_policy)
    records = dict(zip(names, results, strict=True))
    rows = []
    for name in policies:
        record = {"policy": name, "domain": domain, "n_agents": n, "scenarios": len(seeds)}
        for metric, v in records[name].items():
            mean, ci = mean_ci(v)
            record[metric] = {"mean": mean, "ci95": ci}
        rows.append(record)
    title = f"{spec.title}, N={n}, {len(seeds)} test scenarios (mean ± 95% CI)"
    if as_json:
        print(json.dumps(rows, indent=2))
    elif markdown:
        print(metrics_markdown(rows, title, spec.table_metrics))
    else:
        console.print(metrics_table(rows, title, console.width, spec.table_metrics))


def _parse_agents(text: str, option: str = "--agents") -> list[int]:
    """--agents "5,10,20" as a list of ints >= 1 (CLIError otherwise)."""
    try:
        ns = [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise CLIError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not ns or min(ns) < 1:
        raise CLIError(f"{option} values must be integers >= 1, got {text!r}")
    return ns


def _grid_part(name: str, quick: bool, agents: str | None):
    """The experiment's grid restricted to the N of --agents (None: the whole grid)."""
    if agents is None:
        return None
    if name not in GRID_EXPERIMENTS:
        raise CLIError(f"--agents applies to {', '.join(GRID_EXPERIMENTS)}, not {name}")
    import importlib

    full = getattr(importlib.import_module(f"dgpg.experiments.{name}"),
                   "QUICK" if quick else "FULL")
    ns = _parse_agents(agents)
    grid_ns = full.agent_counts() if hasattr(full, "agent_counts") else full.n_agents
    if unknown := sorted(set(ns) - set(grid_ns)):
        raise CLIError(f"--agents {','.join(map(str, unknown))}: not in {name}'s grid "
                       f"(N = {', '.join(map(str, grid_ns))})")
    return dataclasses.replace(full, n_agents=tuple(n for n in grid_ns if n in ns))


def _run_experiment(name: str, out: Path, runs: Path | None, quick: bool, seeds: int | None,
                    backend: str, address: str | None, workers: int | None,
                    grid=None, tntp: str | None = None) -> float:
    """Run one experiment with a progress display; returns its wall time in seconds.
    `grid` replaces the experiment's FULL or QUICK grid when given."""
    import importlib
    import time

    from dgpg.experiments.sweep import SweepError

    module = importlib.import_module(f"dgpg.experiments.{name}")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[units]}"), TimeElapsedColumn())
    t0 = time.perf_counter()
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"{name}: starting", total=None, units="")
        logged_units: int | None = None  # episodes done at the last log line (a log file)

        def on_progress(event: dict) -> None:
            nonlocal logged_units
            units = ""
            if event.get("units_total"):
                units = f"episodes {event['units_done']}/{event['units_total']}"
            progress.update(task, total=event["total"], completed=event["finished"],
                            units=units, description=f"{name}: runs")
            if err_console.is_terminal:
                return
            # a log file has no live bar: one line per finished run, and one per finished
            # episode, so that a run of hours at large N shows that it is moving
            done = event.get("units_done") or 0
            if logged_units is None:  # episodes already done when the sweep starts
                logged_units = done
            if event.get("last"):
                _note(f"{name}: {event['finished']}/{event['total']} runs finished "
                      f"(latest: {event['last']}){'; ' + units if units else ''}")
            elif done > logged_units and units:
                _note(f"{name}: {units}; {event['finished']}/{event['total']} runs finished")
            logged_units = max(logged_units, done)

        try:
            if name == "fig1":
                module.run(out, quick=quick)
            elif name == "roads":
                module.run(out, quick=quick, seeds=seeds, backend=backend, address=address,
                           workers=workers, runs=runs, grid=grid, progress=on_progress,
                           tntp=tntp)
            else:
                module.run(out, quick=quick, seeds=seeds, backend=backend, address=address,
                           workers=workers, runs=runs, grid=grid, progress=on_progress)
        except (SweepError, ValueError) as e:
            raise CLIError(f"{name}: {e}") from None
        except OSError as e:
            raise CLIError(f"{name}: cannot write under {str(out)!r}: {e}") from None
    seconds = time.perf_counter() - t0
    _record_timing(out / f"{name}_timing.json", {
        "experiment": name, "quick": quick, "seeds": seeds, "backend": backend,
        "agents": list(grid.n_agents) if grid is not None else None,
        "workers": workers, "wall_seconds": round(seconds, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return seconds


def _record_timing(path: Path, entry: dict) -> None:
    """Append one finished invocation to `path`. A resumed sweep's cost is spread over several
    invocations, so the file keeps all of them and their total (an unreadable file starts a new
    history)."""
    from dgpg import atomic

    history: list = []
    try:
        old = json.loads(path.read_text())
        if isinstance(old, dict) and isinstance(old.get("invocations"), list):
            history = [h for h in old["invocations"] if isinstance(h, dict)]
        elif isinstance(old, dict) and "wall_seconds" in old:  # one invocation, older format
            history = [old]
    except (OSError, ValueError):
        pass
    history.append(entry)
    total = sum(h["wall_seconds"] for h in history
                if isinstance(h.get("wall_seconds"), int | float))
    atomic.write_json(path, {"experiment": entry["experiment"], "invocations": history,
                             "total_wall_seconds": round(total, 1),
                             "note": "wall time of finished invocations only; one killed "
                                     "before it finished is not recorded"})


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(
        help="Experiment: " + ", ".join(EXPERIMENTS) + ", or all (each into --out/NAME).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("results"),
    quick: Annotated[bool, typer.Option("--quick", help="Reduced version, minutes on 2 CPUs.")]
    = False,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, max=64,
                                 help="Seeds per run (default: 1 with --quick, else 3).")
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="local (a process pool) or ray.")
    ] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (with --backend ray).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=1024,
                                 help="Runs at once (default: 2 locally, the cluster's CPUs "
                                      "on Ray).")
    ] = None,
    runs: Annotated[
        Path | None, typer.Option("--runs", help="Folder whose runs/ holds finished runs "
                                  "(default: --out). Figures given the same --runs share "
                                  "their runs: fig5 reuses fig4's DG-PG runs.")
    ] = None,
    agents: Annotated[
        str | None, typer.Option("--agents", help="Only these N of the grid, comma-separated "
                                 "(fig3, fig4, fig5, variance, nash, alignment, ablation, "
                                 "actors, roads): run or draw part of it.")
    ] = None,
    network: Annotated[
        Path | None, typer.Option("--network", metavar="PATH_PREFIX",
                                  help="roads: the Sioux Falls TNTP files, PATH_PREFIX_net.tntp "
                                       "and PATH_PREFIX_trips.tntp (without it: the grid "
                                       "cities only).")
    ] = None,
) -> None:
    """Run one of the paper's experiments (or all); writes PNG, CSV and a Markdown table under
    --out. Finished runs are kept in --out/runs (or --runs/runs): run the same command again
    to continue."""
    from dgpg.experiments.sweep import BACKENDS

    if name not in (*EXPERIMENTS, "all"):
        raise CLIError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}, all")
    if backend not in BACKENDS:
        raise CLIError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise CLIError("--address needs --backend ray")
    if backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise CLIError("the ray backend needs Ray: pip install -e '.[ray]'")
    tntp = None
    if network is not None:
        if name not in ("roads", "all"):
            raise CLIError(f"--network applies to roads, not {name}")
        from dgpg.config import make_env_config

        _, env = _domain_env("roads", network)
        try:
            make_env_config(1, env, "roads")
        except ValueError as e:
            raise CLIError(str(e)) from None
        tntp = env["network"]
    grid = _grid_part(name, quick, agents)
    if runs is not None:
        _check_output_dir(runs)
    out = _output_dir(out)
    if runs is not None:
        runs = _output_dir(runs)
    elif name == "all":
        runs = out  # `all`: one runs/ folder shared by every figure
    names = EXPERIMENTS if name == "all" else (name,)
    for n in names:
        folder = _output_dir(out / n) if name == "all" else out
        if n == "roads" and tntp is None and not quick:
            _note("roads: no --network given, so Sioux Falls is left out (the grid cities only)")
        seconds = _run_experiment(n, folder, runs, quick, seeds, backend, address, workers,
                                  grid, tntp)
        console.print(f"[bold]{n}[/bold]: wrote {folder}/{n}.png, {n}*.csv, {n}.md "
                      f"in {seconds:.0f} s")
        table = folder / f"{n}.md"
        if table.exists():
            console.print(table.read_text(), markup=False, highlight=False)


@app.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN_FOLDER",
                                               help="Run folders written by dgpg train.",
                                               show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("curves.png"),
    column: Annotated[
        str, typer.Option("--column", help="metrics.csv column: val_return, return, ...")
    ] = "val_return",
) -> None:
    """Plot learning curves of training runs (mean over seeds, min-max band)."""
    from dgpg.experiments.curves import CurveError, load_curve, plot_runs

    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must name a .png file, got {str(out)!r}")
    for run in runs:  # every run folder is read (and its summary checked) before any write
        try:
            load_curve(run, column)
        except CurveError as e:
            raise CLIError(str(e)) from None
    if out.is_dir():
        raise CLIError(f"--out {str(out)!r} is a folder; give a .png file")
    _output_dir(out.parent)
    try:
        plot_runs(list(runs), out, column)
    except CurveError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write {str(out)!r}: {e.strerror}") from None
    console.print(f"wrote {out}, {out.with_suffix('.csv')} and {out.with_suffix('.md')}")


@app.command()
def bench(
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
    network: NetworkOption = None,
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

    ns = _parse_agents(agents)
    split_ns = _parse_agents(split, "--split") if split is not None else []
    domain, env = _domain_env(domain, network)
    from dgpg.config import make_env_config
    from dgpg.domains import SPECS

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
    with _progress() as progress:
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
    table = Table(title=f"{SPECS[domain].title} environment throughput "
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
