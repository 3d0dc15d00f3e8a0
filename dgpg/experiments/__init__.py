"""The experiments of `dgpg reproduce`: the registry that names them and runs one.

The paper's figures and studies live here (`fig2` ... `transfer`); a built-in domain's own
experiments live in a subpackage named after it (`cloud/fig1.py`, `roads/routing.py`,
`power/placement.py`), whose `__init__` declares `DOMAIN` and `EXPERIMENTS`; a plug-in declares
its own in its spec (`DomainSpec.experiments`). An experiment is a module with
`run(out, quick=..., ...)` and, when it sweeps over N, grids `FULL` and `QUICK` whose N
`--agents` picks from. This module imports no JAX and no domain.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import pkgutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dgpg.domains import get_spec, names

SHARED = ("fig2", "fig3", "tuning", "fig4", "fig5", "variance", "nash", "alignment", "ablation",
          "actors", "transfer", "model-error")
"""The experiments of this package, in the order of `dgpg reproduce all` (tuning before figure 4,
which uses its winners)."""


@functools.cache
def _built_in() -> dict[str, dict[str, str]]:
    """Domain -> {experiment name: module} of this package's per-domain subpackages."""
    found: dict[str, dict[str, str]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            package = importlib.import_module(f"{__name__}.{info.name}")
            found[package.DOMAIN] = dict(package.EXPERIMENTS)
    return found


def domain_experiments(domain: str) -> dict[str, str]:
    """Domain `domain`'s own experiments (name -> module): those of its subpackage here, then
    those its spec declares (a plug-in's)."""
    return {**_built_in().get(domain, {}), **get_spec(domain).experiments}


def experiment_domain(name: str) -> str | None:
    """The domain whose own experiment `name` is (None: a shared experiment or none)."""
    return next((d for d in names() if name in domain_experiments(d)), None)


def registry() -> dict[str, str]:
    """Experiment name -> module: the default domain's own first, then the shared ones, then
    every other domain's."""
    found: dict[str, str] = {}
    domains = names()
    for domain in domains[:1]:
        found.update(domain_experiments(domain))
    found.update({name: f"{__name__}.{name.replace('-', '_')}" for name in SHARED})
    for domain in domains[1:]:
        for name, module in domain_experiments(domain).items():
            found.setdefault(name, module)
    return found


def module(name: str):
    """The module of experiment `name`; ValueError naming the known ones."""
    known = registry()
    if name not in known:
        raise ValueError(f"unknown experiment {name!r:.40}; known: {', '.join(known)}, all")
    return importlib.import_module(known[name])


def agent_counts(name: str, quick: bool = False) -> tuple[int, ...] | None:
    """The N of an experiment's grid, or None when it has no grid over N."""
    grid = getattr(module(name), "QUICK" if quick else "FULL", None)
    if grid is None:
        return None
    if hasattr(grid, "agent_counts"):
        return tuple(grid.agent_counts())
    return tuple(grid.n_agents) if isinstance(getattr(grid, "n_agents", None), tuple) else None


def grid_part(name: str, quick: bool, agents: list[int]):
    """The experiment's grid restricted to `agents`; ValueError if it has no grid over N or
    lacks one of them."""
    counts = agent_counts(name, quick) if name in registry() else None
    if counts is None:
        grids = [n for n in registry() if agent_counts(n) is not None]
        raise ValueError(f"--agents applies to {', '.join(grids)}, not {name}")
    if unknown := sorted(set(agents) - set(counts)):
        raise ValueError(f"--agents {','.join(map(str, unknown))}: not in {name}'s grid "
                         f"(N = {', '.join(map(str, counts))})")
    full = getattr(module(name), "QUICK" if quick else "FULL")
    return dataclasses.replace(full, n_agents=tuple(n for n in counts if n in agents))


def run(name: str, out: Path, progress: Callable[[dict], None] | None = None,
        **options: Any) -> float:
    """Run (or resume) experiment `name` into `out`; returns its wall time in seconds and adds
    it to `out/NAME_timing.json`. `options` (quick, seeds, backend, address, workers, runs,
    grid, and a domain's option fields such as `network`) go to those that its `run` takes."""
    experiment = module(name)
    accepted = inspect.signature(experiment.run).parameters
    everything = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    given = {k: v for k, v in {**options, "progress": progress}.items()
             if everything or k in accepted}
    t0 = time.perf_counter()
    experiment.run(out, **given)
    seconds = time.perf_counter() - t0
    grid = options.get("grid")
    record_timing(out / f"{name}_timing.json", {
        "experiment": name, "quick": options.get("quick", False), "seeds": options.get("seeds"),
        "backend": options.get("backend", "local"),
        "agents": list(grid.n_agents) if grid is not None else None,
        "workers": options.get("workers"), "wall_seconds": round(seconds, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return seconds


def record_timing(path: Path, entry: dict) -> None:
    """Append one finished invocation to `path`. A resumed sweep's cost is spread over several
    invocations, so the file keeps all of them and their total (an unreadable file starts a new
    history)."""
    from dgpg import atomic

    history: list = []
    try:
        old = json.loads(path.read_text())
        if isinstance(old, dict) and isinstance(old.get("invocations"), list):
            history = [h for h in old["invocations"] if isinstance(h, dict)]
        elif isinstance(old, dict) and "wall_seconds" in old:  # one invocation, older format
            history = [old]
    except (OSError, ValueError):
        pass
    history.append(entry)
    total = sum(h["wall_seconds"] for h in history
                if isinstance(h.get("wall_seconds"), int | float))
    atomic.write_json(path, {"experiment": entry["experiment"], "invocations": history,
                             "total_wall_seconds": round(total, 1),
                             "note": "wall time of finished invocations only; one killed "
                                     "before it finished is not recorded"})


__all__ = ["SHARED", "agent_counts", "domain_experiments", "experiment_domain", "grid_part",
           "module", "record_timing", "registry", "run"]
