"""The sweep tasks and tables that the experiments share: the learners every experiment
trains, the heuristics figure 4 evaluates, and `HeuristicSpec`, the task that evaluates
heuristics at one N (a training run's task is `dgpg.experiments.sweep.RunSpec`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from dgpg import atomic
from dgpg.domains import DEFAULT_DOMAIN, get_spec
from dgpg.experiments import sweep

LEARNERS = ("dgpg", "mappo", "ippo")
SCENARIOS = ("test", "validation")
HEURISTIC_NAMES = tuple(h for h in get_spec(DEFAULT_DOMAIN).heuristics if h != "model-greedy")
"""The default domain's heuristics but model-greedy, which figure 4 evaluates as a task of its
own."""


@dataclasses.dataclass(frozen=True)
class HeuristicSpec:
    """Evaluation of heuristics at one N on the 40 test scenarios, or on the 10 validation
    scenarios (a sweep task)."""

    n_agents: int
    heuristics: tuple[str, ...] = HEURISTIC_NAMES
    overrides: str = ""
    """Same meaning as RunSpec.overrides (only the 'env' part is used)."""
    scenarios: str = "test"
    """test or validation."""
    domain: str = DEFAULT_DOMAIN
    """The environment (`dgpg.domains`); `heuristics` are its names."""

    def __post_init__(self) -> None:
        if self.scenarios not in SCENARIOS:
            raise ValueError(f"scenarios must be one of {', '.join(SCENARIOS)}, "
                             f"got {self.scenarios!r}")

    @property
    def key(self) -> str:
        names = ",".join(self.heuristics)
        overrides = sweep.canonical_overrides(self.overrides, self.domain)  # e.g. a network
        digest = hashlib.sha256(f"{names}|{overrides}".encode()).hexdigest()[:8]
        prefix = "heuristics" if self.scenarios == "test" else f"{self.scenarios}_heuristics"
        suffix = "" if self.domain == DEFAULT_DOMAIN else f"_{self.domain}"  # keys predate it
        return f"{prefix}_n{self.n_agents}_{digest}{suffix}"

    def result(self, folder: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("n_agents") != self.n_agents:
            return None
        if set(data.get("policies", {})) != set(self.heuristics):
            return None
        return data

    def execute(self, folder: Path) -> dict[str, Any]:
        from dgpg.domains import get_domain
        from dgpg.evaluation import TEST_SEEDS, VALIDATION_SEEDS, evaluate, mean_ci

        folder.mkdir(parents=True, exist_ok=True)
        config = sweep.env_config(self.n_agents, self.overrides, self.domain)
        heuristics = get_domain(self.domain).heuristics
        seeds = TEST_SEEDS if self.scenarios == "test" else VALIDATION_SEEDS
        policies = {}
        for name in self.heuristics:
            values = evaluate(heuristics[name], config, seeds)
            policies[name] = {m: dict(zip(("mean", "ci95"), mean_ci(v), strict=True))
                              for m, v in values.items()}
        data = {"n_agents": self.n_agents, "scenarios": len(seeds), "policies": policies}
        atomic.write_json(folder / "result.json", data)
        return data

    def progress(self, folder: Path) -> tuple[int, int]:
        return 0, 1
