"""The reference heuristic's returns, computed once per (domain, configuration, scenario seeds)
and kept on disk, so that every run of a sweep (and every later one) reuses them instead of
evaluating the reference again: at N = 10,000 that evaluation took longer than training.

The cache folder is `DGPG_REFERENCE_CACHE`, by default $XDG_CACHE_HOME/dgpg/reference or
~/.cache/dgpg/reference; `off` turns the cache off. An entry's key is the digest of the domain's
name and reference, the configuration (its env fields as a sweep keys them, so a network file
counts by its content, not its path), the seeds and the source of the domain's package, so that
a change of the domain's code computes the returns again. Entries are written atomically; an
unreadable one is computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dgpg import atomic
from dgpg.domains import domain_of, get_spec, load_object


def cache_dir() -> Path | None:
    """The cache folder, or None when `DGPG_REFERENCE_CACHE=off`."""
    folder = os.environ.get("DGPG_REFERENCE_CACHE")
    if folder == "off":
        return None
    if folder:
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgpg" / "reference"


def _source_digest(module: str) -> str:
    """Digest of the source of the package that holds `module` (every .py file under it) and of
    the evaluation's roll-out."""
    import dgpg.evaluation

    holder = importlib.import_module(module.rsplit(".", 1)[0] if "." in module else module)
    root = Path(holder.__file__).parent
    digest = hashlib.sha256(Path(dgpg.evaluation.__file__).read_bytes())
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def entry_key(config: Any, seeds: Sequence[int]) -> str:
    """The cache key of the reference's returns of `config` on `seeds`."""
    spec = get_spec(domain_of(config).name)
    env = dataclasses.asdict(config)
    if spec.sweep_key is not None:
        env = load_object(spec.sweep_key)(env)
    text = json.dumps({"domain": spec.name, "reference": spec.reference, "env": env,
                       "seeds": [int(s) for s in seeds],
                       "code": _source_digest(spec.heuristics[spec.reference].split(":")[0])},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def reference_returns(config: Any, seeds: Sequence[int],
                      compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The reference heuristic's returns (len(seeds),) float64: read from the cache, or
    `compute()`d and stored."""
    folder = cache_dir()
    if folder is None:
        return np.asarray(compute(), np.float64)
    path = folder / f"{entry_key(config, seeds)}.json"
    try:
        values = np.asarray(json.loads(path.read_text())["returns"], np.float64)
        if values.shape == (len(seeds),):
            return values
    except (OSError, ValueError, KeyError, TypeError):
        pass
    values = np.asarray(compute(), np.float64)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, {"domain": domain_of(config).name,
                                 "n_agents": config.n_agents, "seeds": len(seeds),
                                 "returns": values.tolist()})
    except OSError:
        pass  # an unusable cache folder only costs the evaluation
    return values
