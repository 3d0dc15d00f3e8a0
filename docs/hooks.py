"""MkDocs hooks: publish the committed result figures and generate the CLI reference.

* every ``results/**/*.png`` of the repository is added to the site under the same path, so a page
  under ``docs/results/`` links ``fig4/fig4.png`` and ``mkdocs build --strict`` checks the link;
* ``reference/cli.md`` is written from the Typer app (``typer.main.get_command(dgpg.cli.app)``):
  the ``--help`` text of ``dgpg`` and of each of its commands.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def _cli_reference() -> str:
    import click
    import typer

    from dgpg.cli import app

    command = typer.main.get_command(app)
    lines = ["# Command-line reference", "",
             "Generated from the `dgpg` Typer app (`dgpg.cli:app`); each block is the command's "
             "`--help`.", ""]

    def walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=100,
                            max_content_width=100)
        title = " ".join(path)
        lines.extend([f"## `{title}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""])
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name], ctx)

    old = os.environ.get("TERM")
    os.environ["TERM"] = "dumb"  # plain help text, no colours or boxes
    try:
        walk(command, ["dgpg"], None)
    finally:
        if old is None:
            os.environ.pop("TERM", None)
        else:
            os.environ["TERM"] = old
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    for png in sorted((ROOT / "results").rglob("*.png")):
        rel = png.relative_to(ROOT).as_posix()
        if rel.startswith("results/runs/"):
            continue
        files.append(File(rel, src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, "reference/cli.md", content=_cli_reference()))
    return files
