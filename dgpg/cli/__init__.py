"""The `dgpg` command line: train, evaluate, reproduce, plot, bench, domains.

Each command lives in its own module and only parses and prints; the work is done by
`dgpg.training`, `dgpg.evaluation` and `dgpg.experiments`. Bad input (unknown names,
out-of-range numbers, malformed options, unusable paths) prints one line to stderr and exits
with status 2; no traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dgpg.cli import bench, domains, evaluate, plot, reproduce, train
from dgpg.cli.common import DOMAIN_CONTEXT, CLIError, domain_options_help
from dgpg.cli.evaluate import metrics_markdown, metrics_table

ABOUT = ("Descent-Guided Policy Gradient for cooperative multi-agent RL, in every domain "
         "installed (`dgpg domains` lists them; `dgpg domains --new NAME` starts one of "
         "your own).")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help=ABOUT)


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
    pass


_options.__doc__ = ABOUT
_epilog = domain_options_help()
app.command(context_settings=DOMAIN_CONTEXT, epilog=_epilog)(train.train)
app.command(context_settings=DOMAIN_CONTEXT, epilog=_epilog)(evaluate.evaluate)
app.command(context_settings=DOMAIN_CONTEXT, epilog=_epilog)(reproduce.reproduce)
app.command()(plot.plot)
app.command(context_settings=DOMAIN_CONTEXT, epilog=_epilog)(bench.bench)
app.command()(domains.domains)


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


__all__ = ["CLIError", "app", "main", "metrics_markdown", "metrics_table"]

if __name__ == "__main__":
    main()
