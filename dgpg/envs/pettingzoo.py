"""Deprecated alias of HeteroCloud's PettingZoo `ParallelEnv`: `parallel_env(...)` is
`dgpg.pettingzoo.parallel_env("cloud", ...)` and warns. It will be removed in the next release."""

import warnings
from typing import Any


def parallel_env(n_agents: int = 10, seed: int | None = None,
                 decisions: str = "per-dispatcher", **config_kwargs: Any):
    """Deprecated: `dgpg.pettingzoo.parallel_env("cloud", n_agents, seed, ...)`."""
    from dgpg import pettingzoo

    warnings.warn("dgpg.envs.pettingzoo.parallel_env(...) is deprecated and will be removed in "
                  "the next release; use dgpg.pettingzoo.parallel_env(\"cloud\", ...)",
                  DeprecationWarning, stacklevel=2)
    return pettingzoo.parallel_env("cloud", n_agents=n_agents, seed=seed, decisions=decisions,
                                   **config_kwargs)
