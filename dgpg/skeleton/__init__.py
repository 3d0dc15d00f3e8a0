"""A new domain's installable package, generated (`dgpg domains --new NAME`).

The package's files are rendered from the templates beside this module (`*.tmpl`, shipped as
package data and never imported) with `string.Template`. The generated domain is a small working
problem (N agents place units of work on K of M shared resources whose cost is load^2 /
capacity) with an exact analytical model and two heuristics; it passes `check_domain` and trains
as written, and its author replaces the problem with their own. `create` writes the package into
a temporary folder beside the target and moves it into place, so a refusal leaves nothing behind.
This module imports no JAX.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent

FILES = (
    ("pyproject.toml", "pyproject.toml.tmpl",
     "the distribution and its entry point (group dgpg.domains)"),
    ("{package}/__init__.py", "__init__.py.tmpl",
     "the DomainSpec: the domain's names, by import path (no JAX)"),
    ("{package}/config.py", "config.py.tmpl",
     "the configuration, a frozen dataclass (no JAX)"),
    ("{package}/env.py", "env.py.tmpl",
     "the state, the pure functions and the DOMAIN"),
    ("{package}/model.py", "model.py.tmpl",
     "the analytical model: reference and guidance loss"),
    ("{package}/heuristics.py", "heuristics.py.tmpl",
     "the reference heuristic (the model's greedy rule) and random"),
    ("tests/test_domain.py", "test_domain.py.tmpl",
     "check_domain, and the reference against random"),
)
"""(path in the package's folder, template, what the file is for), in the order to read them."""

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


class SkeletonError(ValueError):
    """A name or folder the skeleton cannot be written for; the message is one line."""


def check_name(name: str) -> None:
    """SkeletonError unless `name` is a domain name the skeleton can use: lower-case letters
    and digits, words joined by single dashes, starting with a letter."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SkeletonError(f"domain name {name!r:.40} must be lower-case letters and digits, "
                            "words joined by single dashes, starting with a letter "
                            "(e.g. 'my-shop')")


def package_name(name: str) -> str:
    """The Python package of domain `name`: "my-shop" -> "dgpg_my_shop"."""
    check_name(name)
    return "dgpg_" + name.replace("-", "_")


def names_of(name: str) -> dict[str, str]:
    """The values the templates are rendered with."""
    words = name.split("-")
    title = "".join(w[:1].upper() + w[1:] for w in words)
    return {"name": name, "package": package_name(name), "distribution": f"dgpg-{name}",
            "title": title, "config_class": f"{title}Config"}


def render(name: str) -> dict[str, str]:
    """Path in the package's folder -> text of each file of domain `name`'s package."""
    values = names_of(name)
    return {path.format(package=values["package"]):
            Template((TEMPLATES / template).read_text()).substitute(values)
            for path, template, _ in FILES}


def create(name: str, out: str | os.PathLike) -> list[Path]:
    """Write domain `name`'s package into the folder `out` (made, with its parents, if missing;
    it may exist if empty); returns the files written. SkeletonError (one line) for a bad name,
    a folder that holds something or cannot be written; then nothing is written."""
    files = render(name)
    shown = str(out)
    try:
        out = Path(os.path.abspath(out))
        if out.exists() or out.is_symlink():
            if not out.is_dir():
                raise SkeletonError(f"{shown!r} exists and is not a folder")
            if any(out.iterdir()):
                raise SkeletonError(f"folder {shown!r} is not empty; choose another --out")
        first = out.parent  # the nearest folder that exists
        while not first.exists():
            first = first.parent
    except SkeletonError:
        raise
    except (OSError, ValueError) as e:  # unreadable, or a name with a NUL character
        raise SkeletonError(f"cannot use the folder {shown!r}: "
                            f"{getattr(e, 'strerror', None) or e}") from None
    if not first.is_dir():
        raise SkeletonError(f"cannot make folder {shown!r}: {str(first)!r} is a file")
    staging = first / f".{out.name}.{secrets.token_hex(4)}.tmp"
    made: list[Path] = []
    try:
        staging.mkdir()
        for path, text in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for folder in reversed(out.parents):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
        os.replace(staging, out)  # onto an empty folder as well
    except (OSError, ValueError) as e:  # ValueError: a name with a NUL character
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise SkeletonError(f"cannot write the domain's package into {shown!r}: {reason}") \
            from None
    return [out / path for path in files]


def describe(name: str) -> list[tuple[str, str]]:
    """(path in the package's folder, what it is for) of each generated file, in order."""
    package = package_name(name)
    return [(path.format(package=package), what) for path, _, what in FILES]
