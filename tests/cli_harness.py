"""Helpers shared by test modules: the CLI run in process, and a folder's contents."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from dgpg import cli


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`dgpg ARGV...` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(argv)
        except SystemExit as e:
            code = e.code
        else:
            code = 0
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path, folders: bool = True) -> dict[str, bytes | None]:
    """Every file (its bytes) and, with `folders`, every folder (None) under `folder`."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*")) if folders or p.is_file()}
