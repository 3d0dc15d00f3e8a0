"""The configuration of the charging domain. It imports no JAX, so that `dgpg train` checks it
before JAX loads; every field is a key of `dgpg train --domain charging --set env.FIELD=VALUE`
(`dgpg train --domain charging --help-keys` lists them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from dgpg.domains.fields import require_int, require_number


@dataclass(frozen=True)
class ChargingConfig:
    """N agents each have up to J units of work to place per step, each on one of the agent's K
    candidate resources (drawn per episode from the M = resources_per_agent * N shared ones). A
    resource's cost in a step is load^2 / capacity, its load being its background load plus the
    work placed on it; the team reward is minus the summed cost over N. Work lasts one step, so
    a placement changes only the step's own cost.

    Frozen and hashable: a static argument of `jit`; buildable from `n_agents` alone."""

    domain: ClassVar[str] = "charging"
    """The domain this configuration belongs to (a class attribute, not a field)."""

    n_agents: int = 4
    """N, the agents."""
    episode_steps: int = 50
    """T, the steps of an episode."""
    resources_per_agent: int = 2
    """M = resources_per_agent * N shared resources."""
    max_candidates: int = 3
    """K = min(max_candidates, M): the resources each agent may use, drawn per episode."""
    units_per_step: int = 2
    """J: the units an agent may have to place per step (its decision slots)."""
    arrival_prob: float = 0.8
    """The chance that a slot holds a unit; a unit's size is exponential with mean 1."""
    background: float = 0.5
    """The resources' mean background utilisation (background load over capacity)."""
    persistence: float = 0.9
    """The share of a background load's deviation from its mean left at the next step."""
    volatility: float = 0.2
    """The standard deviation of a background load's noise per step, over its mean."""

    def __post_init__(self) -> None:
        for name in ("n_agents", "episode_steps", "resources_per_agent", "max_candidates",
                     "units_per_step"):
            require_int(self, name, 1)
        require_number(self, "arrival_prob", 0.0, 1.0)
        require_number(self, "background", 0.0, math.inf, high_open=True)
        require_number(self, "persistence", 0.0, 1.0, high_open=True)
        require_number(self, "volatility", 0.0, math.inf, high_open=True)

    @property
    def n_resources(self) -> int:
        """M."""
        return self.resources_per_agent * self.n_agents

    @property
    def n_candidates(self) -> int:
        """K (the spec's `candidates_per_slot`)."""
        return min(self.max_candidates, self.n_resources)

    @property
    def utilisation(self) -> float:
        """The mean utilisation (load over capacity) of a resource, background and placed work
        together: capacities and unit sizes have mean 1."""
        placed = self.units_per_step * self.arrival_prob / self.resources_per_agent
        return self.background + placed
