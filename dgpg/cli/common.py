"""What every command of the command line shares: its consoles, one-line errors, output folders,
progress displays and the domains' own options.

Bad input (unknown names, out-of-range numbers, malformed options, unusable paths) raises
`CLIError`, which `dgpg.cli.main` prints as one line to stderr with exit status 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dgpg.domains import DEFAULT_DOMAIN

console = Console()
err_console = Console(stderr=True)

DOMAIN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
"""Context settings of the commands that take a domain's own options (`DomainSpec.options`):
they arrive as the context's extra arguments and are parsed by `domain_env`."""


class CLIError(Exception):
    """A user error: reported as one line, exit status 2."""


def note(text: str) -> None:
    """One plain line on stderr (progress when stderr is not a terminal)."""
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def spinner() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=err_console, transient=True)


def output_dir(path: Path) -> Path:
    """`path` as a writable folder, made if missing; CLIError otherwise."""
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


def check_output_dir(path: Path) -> None:
    """Refuse a folder that `output_dir` could not make or write to, without making it (so
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


def compilation_cache() -> None:
    """JAX's persistent compilation cache, on by default for the command line (a second run of
    the same shapes does not compile again); `DGPG_JAX_CACHE` names its folder, `off` turns it
    off."""
    from dgpg.experiments.sweep import enable_compilation_cache

    try:
        enable_compilation_cache(arrays_as_arguments=False)
    except OSError:
        pass  # an unusable cache folder only costs compile time


def parse_agents(text: str, option: str = "--agents") -> list[int]:
    """--agents "5,10,20" as a list of ints >= 1 (CLIError otherwise)."""
    try:
        ns = [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise CLIError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not ns or min(ns) < 1:
        raise CLIError(f"{option} values must be integers >= 1, got {text!r}")
    return ns


# --------------------------------------------------------------------------- domains


def _domain_help() -> str:
    from dgpg.domains import get_spec, names

    listed = "; ".join(f"{n} ({get_spec(n).title})" for n in names())
    return f"The environment: {listed}. `dgpg domains` lists them."


def domain_options_help() -> str:
    """The domains' own options, for a command's help (its epilog)."""
    from dgpg.domains import get_spec, names

    lines = [f"{o.flag} {o.metavar}  (--domain {n}) {o.help}"
             for n in names() for o in get_spec(n).options]
    return ("Domain options:\n\n" + "\n\n".join(lines)) if lines else ""


DomainOption = Annotated[str | None, typer.Option("--domain", help=_domain_help())]


def check_domain_name(domain: str | None) -> None:
    from dgpg.domains import DomainError, get_spec

    if domain is not None:
        try:
            get_spec(domain)
        except DomainError as e:
            raise CLIError(str(e)) from None


def check_contract(env_config: Any) -> None:
    """Refuse, in one line (exit 2), a domain that breaks the cheap rules of its contract
    (`dgpg.domains.check_contract`: imports, shapes, a scalar reward), before anything
    compiles."""
    from dgpg.domains import DomainCheckError, DomainError, check_contract, domain_of

    try:
        check_contract(domain_of(env_config), env_config)
    except (DomainCheckError, DomainError) as e:
        raise CLIError(f"{e} (`dgpg domains --check NAME` runs every rule)") from None


def domain_env(domain: str | None, extra: list[str], default: str | None = DEFAULT_DOMAIN
               ) -> tuple[str | None, dict[str, Any]]:
    """The domain of --domain (`default` when not given) and the env fields set by its own
    options among `extra` (the command's unparsed arguments, e.g. `--network PREFIX`);
    CLIError for an unknown domain, an unknown option, or an option of another domain."""
    from dgpg.domains import get_spec, names

    check_domain_name(domain)
    domain = domain if domain is not None else default
    owners = {o.flag: (n, o) for n in names() for o in get_spec(n).options}
    env: dict[str, Any] = {}
    args = list(extra)
    while args:
        arg = args.pop(0)
        flag, eq, value = arg.partition("=")
        if flag not in owners:
            raise CLIError(f"No such option: {flag}" if flag.startswith("-")
                           else f"Got unexpected extra argument ({arg})")
        owner, option = owners[flag]
        if domain is not None and domain != owner:
            raise CLIError(f"{flag} applies to --domain {owner}, not {domain}")
        if not eq:
            if not args:
                raise CLIError(f"Option '{flag}' requires an argument.")
            value = args.pop(0)
        if option.path and (os.sep in value or "/" in value or Path(value).exists()):
            try:
                value = str(Path(value).expanduser().absolute())
            except (OSError, ValueError, RuntimeError) as e:  # e.g. an embedded NUL character
                raise CLIError(f"{flag} {value!r:.200}: {e}") from None
        env[option.field] = value
    return domain, env
