"""The documentation site builds with `mkdocs build --strict`: every link, image and API page
resolves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "results" / "fig4" / "fig4.png").is_file()
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
