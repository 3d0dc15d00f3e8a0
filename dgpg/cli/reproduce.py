"""`dgpg reproduce`: run one experiment (or all) with a progress display, then print its table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from dgpg.cli.common import (
    CLIError,
    check_contract,
    check_output_dir,
    console,
    domain_env,
    err_console,
    note,
    output_dir,
    parse_agents,
)


def run_with_progress(name: str, out: Path, **options) -> float:
    """Run one experiment with a live bar (a log line per finished run and episode when stderr
    is not a terminal); returns its wall time in seconds."""
    from dgpg import experiments
    from dgpg.experiments.sweep import SweepError

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[units]}"), TimeElapsedColumn())
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
                note(f"{name}: {event['finished']}/{event['total']} runs finished "
                     f"(latest: {event['last']}){'; ' + units if units else ''}")
            elif done > logged_units and units:
                note(f"{name}: {units}; {event['finished']}/{event['total']} runs finished")
            logged_units = max(logged_units, done)

        try:
            return experiments.run(name, out, progress=on_progress, **options)
        except (SweepError, ValueError) as e:
            raise CLIError(f"{name}: {e}") from None
        except OSError as e:
            raise CLIError(f"{name}: cannot write under {str(out)!r}: {e}") from None


def reproduce(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(
        help="Experiment (`dgpg reproduce --help` lists them), or all (each into --out/NAME).")],
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
        str | None, typer.Option("--agents", help="Only these N of the experiment's grid, "
                                 "comma-separated: run or draw part of it.")
    ] = None,
) -> None:
    """Run one of the paper's experiments (or all); writes PNG, CSV and a Markdown table under
    --out. Finished runs are kept in --out/runs (or --runs/runs): run the same command again
    to continue. A domain's own experiment takes that domain's options (roads: --network)."""
    from dgpg import experiments
    from dgpg.experiments.sweep import BACKENDS

    known = experiments.registry()
    if name not in (*known, "all"):
        raise CLIError(f"unknown experiment {name!r}; known: {', '.join(known)}, all")
    if backend not in BACKENDS:
        raise CLIError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise CLIError("--address needs --backend ray")
    if backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise CLIError("the ray backend needs Ray: pip install -e '.[ray]'")
    owner, env = domain_env(None, ctx.args, default=None)
    if env:
        from dgpg.config import make_env_config
        from dgpg.domains import get_spec, names

        flag = ctx.args[0].partition("=")[0]
        owner = next(d for d in names() if get_spec(d).option(flag) is not None)
        if (name != "all" and experiments.experiment_domain(name) != owner
                and not takes(name, env)):
            raise CLIError(f"{flag} applies to "
                           f"{', '.join(experiments.domain_experiments(owner))}, not {name}")
        try:
            make_env_config(1, env, owner)
        except ValueError as e:
            raise CLIError(str(e)) from None
    grid = None
    if agents is not None:
        try:
            grid = experiments.grid_part(name, quick, parse_agents(agents))
        except ValueError as e:
            raise CLIError(str(e)) from None
    from dgpg.config import make_env_config
    from dgpg.domains import DEFAULT_DOMAIN

    for d in dict.fromkeys(experiments.experiment_domain(n) or DEFAULT_DOMAIN
                           for n in (known if name == "all" else (name,))):
        check_contract(make_env_config(3, env if d == owner else {}, d))
    if runs is not None:
        check_output_dir(runs)
    out = output_dir(out)
    if runs is not None:
        runs = output_dir(runs)
    elif name == "all":
        runs = out  # `all`: one runs/ folder shared by every figure
    for n in known if name == "all" else (name,):
        folder = output_dir(out / n) if name == "all" else out
        given = env if experiments.experiment_domain(n) == owner or takes(n, env) else {}
        seconds = run_with_progress(n, folder, runs=runs, quick=quick, seeds=seeds,
                                    backend=backend, address=address, workers=workers,
                                    grid=grid, **given)
        console.print(f"[bold]{n}[/bold]: wrote {folder}/{n}.png, {n}*.csv, {n}.md "
                      f"in {seconds:.0f} s")
        table = folder / f"{n}.md"
        if table.exists():
            console.print(table.read_text(), markup=False, highlight=False)


def takes(name: str, env: dict) -> bool:
    """Whether experiment `name`'s `run` takes the domain options `env` as its own arguments
    (a shared experiment with a panel of that domain: model-error's --network)."""
    import inspect

    from dgpg import experiments

    return bool(env) and set(env) <= set(inspect.signature(experiments.module(name).run)
                                         .parameters)
