"""`dgpg plot`: learning curves of training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dgpg.cli.common import CLIError, console, output_dir


def plot(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN_FOLDER",
                                               help="Run folders written by dgpg train.",
                                               show_default=False)],
    out: Annotated[
        Path | None, typer.Option("--out", help="PNG file to write (default: curves.png in the "
                                  "run folder, or in the folder that holds the runs).")
    ] = None,
    column: Annotated[
        str, typer.Option("--column", help="metrics.csv column: val_return, return, ...")
    ] = "val_return",
    steps: Annotated[
        bool, typer.Option("--steps", help="x-axis in environment steps (episodes x steps per "
                           "episode) instead of episodes.")
    ] = False,
) -> None:
    """Plot learning curves of training runs (mean over seeds, min-max band)."""
    import os

    from dgpg.experiments.curves import CurveError, load_curve, plot_runs

    if out is None:
        try:
            common = Path(os.path.commonpath([r.absolute() for r in runs]))
        except ValueError:  # paths on different drives
            common = Path(".")
        out = common / "curves.png"
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must name a .png file, got {str(out)!r}")
    for run in runs:  # every run folder is read (and its summary checked) before any write
        try:
            load_curve(run, column)
        except CurveError as e:
            raise CLIError(str(e)) from None
    if out.is_dir():
        raise CLIError(f"--out {str(out)!r} is a folder; give a .png file")
    output_dir(out.parent)
    try:
        plot_runs(list(runs), out, column, steps=steps)
    except CurveError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write {str(out)!r}: {e.strerror}") from None
    console.print(f"wrote {out}, {out.with_suffix('.csv')} and {out.with_suffix('.md')}")
