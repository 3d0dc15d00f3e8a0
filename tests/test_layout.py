"""The package's layout: a domain is a leaf (it imports only the seam, JAX and its own
libraries, never the learners, training, evaluation, experiments or the command line), and no
two modules of dgpg import each other, directly or through others. Imports are read from the
source (`ast`), those inside functions included, so a lazy import counts as much as one at the
top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dgpg"
SEAM = ("dgpg.domains", "dgpg.domains.spec", "dgpg.domains.domain", "dgpg.domains.observation",
        "dgpg.domains.model", "dgpg.domains.fields")
"""What a domain may import of dgpg besides its own folder."""
DOMAIN_FOLDERS = sorted(p for p in (PACKAGE / "domains").iterdir() if (p / "__init__.py").exists())


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """The dgpg modules that `path` (module `name`, by default its own) imports anywhere in its
    body: for `from a.b import c`, the module a.b.c where it is one, else a.b."""
    found = set()
    name = module_name(path) if name is None else name
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        graph.add_edges_from((name, other) for other in imported_modules(path) if other != name)
    return graph


@pytest.mark.parametrize("folder", DOMAIN_FOLDERS, ids=lambda p: p.name)
def test_a_domain_is_a_leaf(folder):
    own = module_name(folder / "__init__.py")
    above = {}
    for path in sorted(folder.rglob("*.py")):
        bad = {m for m in imported_modules(path)
               if m not in SEAM and m != own and not m.startswith(own + ".")}
        if bad:
            above[str(path.relative_to(ROOT))] = sorted(bad)
    assert not above, f"a domain imports above the seam: {above}"


def test_no_import_circle():
    circles = sorted(sorted(c) for c in nx.simple_cycles(import_graph()))
    assert not circles, f"modules that import each other: {circles}"


def test_the_guards_see_what_they_guard(tmp_path):
    """The two rules fail where they should: a lazy import of the training code in a domain's
    module is seen, and two modules importing each other make a circle."""
    leaf = tmp_path / "leaf.py"
    leaf.write_text("def f():\n    from dgpg.training import train\n    from . import env\n")
    assert imported_modules(leaf, "dgpg.domains.cloud.leaf") == {"dgpg.training",
                                                                 "dgpg.domains.cloud.env"}
    graph = import_graph()
    graph.add_edge("dgpg.domains.power.grid", "dgpg.domains.power.dispatch")
    assert list(nx.simple_cycles(graph))
