"""The configuration of the machines domain (JAX-free: checked before JAX loads)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MachinesConfig:
    """Hashable and frozen: a static argument of `jit`. Every field can be set with
    `dgpg train --domain machines --set env.FIELD=VALUE`."""

    n_agents: int = 4
    episode_steps: int = 50
    machines_per_agent: int = 2
    """M = machines_per_agent * N machines."""
    n_candidates: int = 3
    """K: the machines each dispatcher may use (drawn per episode)."""
    jobs_per_step: int = 2
    """J: job slots per dispatcher and step."""
    arrival_prob: float = 0.7
    """Chance that a slot holds a job."""
    carry_over: float = 0.5
    """Share of a machine's load still there at the next step."""

    def __post_init__(self) -> None:
        if not isinstance(self.n_agents, int) or self.n_agents < 1:
            raise ValueError(f"n_agents must be an integer >= 1, got {self.n_agents!r}")
        if not 1 <= self.n_candidates <= self.machines_per_agent * self.n_agents:
            raise ValueError("n_candidates must be in [1, M]")
        if not 0.0 <= self.arrival_prob <= 1.0 or not 0.0 <= self.carry_over < 1.0:
            raise ValueError("arrival_prob must be in [0, 1] and carry_over in [0, 1)")

    @property
    def n_machines(self) -> int:
        return self.machines_per_agent * self.n_agents
