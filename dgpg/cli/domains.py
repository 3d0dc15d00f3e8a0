"""`dgpg domains`: the registered domains, their models and heuristics, and plug-ins left out;
`--check NAME` runs a domain's conformance checks, `--new NAME` writes a new domain's package."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dgpg.cli.common import CLIError, console, note


def domains(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
    = False,
    check: Annotated[
        str | None, typer.Option("--check", metavar="NAME",
                                 help="Run the conformance checks (check_domain) on domain NAME "
                                      "at N = 3 and exit 2 if one fails.")
    ] = None,
    new: Annotated[
        str | None, typer.Option("--new", metavar="NAME",
                                 help="Write an installable package for a new domain NAME "
                                      "(lower-case letters, digits, dashes) into --out: a small "
                                      "working problem with its model, heuristics and test, to "
                                      "edit into one's own.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR",
                                  help="With --new: the package's folder, new or empty "
                                       "(default: ./NAME).")
    ] = None,
) -> None:
    """List the domains (built-in and installed plug-ins): models (default first), heuristics,
    reference, options and experiments; plug-ins that could not be loaded, with the reason."""
    from dgpg.domains import DomainError, get_spec, names, problems
    from dgpg.experiments import domain_experiments

    if out is not None and new is None:
        raise CLIError("--out goes with --new NAME")
    if new is not None:
        if check is not None:
            raise CLIError("--new and --check are separate commands; give one of them")
        _new_domain(new, out, as_json)
        return
    if check is not None:
        from dgpg.cli.common import compilation_cache, spinner
        from dgpg.config import make_env_config
        from dgpg.domains import check_domain, get_domain

        try:
            domain = get_domain(check)
            config = make_env_config(3, {}, check)
        except ValueError as e:
            raise CLIError(str(e)) from None
        compilation_cache()
        with spinner() as progress:
            progress.add_task(f"checking domain {check}")
            try:
                report = check_domain(domain, config)
            except AssertionError as e:
                raise CLIError(f"domain {check} fails check_domain: {e}") from None
        console.print(f"domain {check}: {len(report)} checks passed", markup=False)
        return
    rows = []
    for name in names():
        try:
            spec = get_spec(name)
        except DomainError as e:  # pragma: no cover - names() lists loaded specs only
            note(str(e))
            continue
        rows.append({"name": name, "title": spec.title, "summary": spec.summary,
                     "models": list(spec.models), "heuristics": list(spec.heuristics),
                     "reference": spec.reference,
                     "options": [o.flag for o in spec.options],
                     "experiments": list(domain_experiments(name))})
    left_out = problems()
    if as_json:
        print(json.dumps({"domains": rows, "problems": left_out}, indent=2))
        return
    table = Table(title="dgpg domains")
    for column in ("domain", "models (default first)", "heuristics (reference *)", "options",
                   "experiments"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(f"{r['name']}\n{r['title']}", ", ".join(r["models"]),
                      ", ".join(h + "*" * (h == r["reference"]) for h in r["heuristics"]),
                      ", ".join(r["options"]) or "-", ", ".join(r["experiments"]) or "-")
    console.print(table)
    for name, reason in left_out.items():
        note(f"left out: {name}: {reason}")


def _new_domain(name: str, out: Path | None, as_json: bool) -> None:
    """`--new NAME`: the package of a new domain, written into `out`, and what to run next."""
    from dgpg.domains import names, problems
    from dgpg.skeleton import SkeletonError, check_name, create, describe, package_name

    try:
        check_name(name)
        if name in names() or name in problems():  # a plug-in of that name, even a broken one
            raise SkeletonError(f"domain {name!r} exists already (`dgpg domains` lists it); "
                                "choose another name")
        folder = Path(name) if out is None else out
        written = create(name, folder)
    except SkeletonError as e:
        raise CLIError(str(e)) from None
    if as_json:
        print(json.dumps({"domain": name, "package": package_name(name),
                          "folder": str(written[0].parent), "files": [str(p) for p in written]},
                         indent=2))
        return
    shown = shlex.quote(str(folder))
    lines = [f"wrote the domain {name} (package {package_name(name)}) into {folder}:"]
    lines += [f"  {path:<28} {what}" for path, what in describe(name)]
    lines += ["next:",
              f"  pip install -e {shown}",
              f"  dgpg domains --check {name}",
              f"  dgpg train --domain {name} --agents 8 --episodes 20 --out runs/{name}",
              f"  dgpg evaluate --checkpoint runs/{name} --policy all",
              f"  (cd {shown} && pytest)"]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
