"""PettingZoo `ParallelEnv` wrapper of HeteroCloud (docs/design.md, section 8).

    from dgpg.domains.cloud.pettingzoo import parallel_env
    env = parallel_env(n_agents=10, seed=0)
    observations, infos = env.reset()
    observations, rewards, terminations, truncations, infos = env.step(actions)

Two ways to split the decisions into agents (the `decisions` option):

- `"per-dispatcher"` (default): agent `dispatcher_i` picks a candidate server for each of its
  J job slots at once (a `MultiDiscrete([K] * J)` action);
- `"per-slot"`: agent `dispatcher_i_slot_j` picks the candidate server for job slot j of
  dispatcher i alone (a `Discrete(K)` action), for the N * J agents that single-action learners
  (TorchRL, BenchMARL) expect.

The pure JAX functions of `dgpg.domains.cloud.env` are jitted with the `EnvConfig` static, so they
compile
once per distinct config (instances with equal configs share the compiled code, whatever their
`decisions`); arrays are converted to NumPy at the boundary. Seeding, stepping and the flattened
observations are `dgpg.domains.parallel.DispatcherParallelEnv`'s, the same in every domain.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import (
    N_CANDIDATE_FEATURES,
    N_JOB_FEATURES,
    EnvConfig,
    EnvState,
)
from dgpg.domains.parallel import DispatcherParallelEnv, check_agents

TEAM_METRICS = ("imbalance", "overload", "drop_rate", "arrived", "rejected", "shed")
"""Metrics every agent's info holds (besides the other metrics of the step)."""

DECISIONS = ("per-dispatcher", "per-slot")
"""Known values of the `decisions` option: one agent per dispatcher, or per (dispatcher, slot)."""

GROUP_NAME = "agents"
"""Name of the single agent group of `HeteroCloudParallelEnv.group_map`."""


def _context_low() -> np.ndarray:
    """Lower bounds of the context features: sin and cos of the tidal phase, then utilisations."""
    return np.array([-1.0, -1.0, 0.0, 0.0], np.float32)


def _reset_metrics(state: EnvState, config: EnvConfig) -> dict[str, jax.Array]:
    """The step metrics' values for a freshly reset `state` (scalars, the keys of `cloud.step`).

    The per-step counters and rates (reward, drop rate, arrived, admitted, rejected, shed,
    completed, slowdown sum) are 0: no step has happened. Imbalance, overload and the cluster's
    CPU and memory utilisation are measured on the warm cluster's loads. The keys must stay
    those of `cloud.step`'s metrics (`tests/test_pettingzoo.py` checks it): TorchRL builds its
    info specs from the reset infos.
    """
    scenario = state.scenario
    cpu_demand, mem_held, _ = cloud.server_loads(state.servers)
    imbalance, overload = cloud.reward_terms(cpu_demand, scenario)
    zero = jnp.zeros((), jnp.float32)
    return {
        "reward": zero,
        "imbalance": imbalance,
        "overload": overload,
        "drop_rate": zero,
        "arrived": zero,
        "admitted": zero,
        "rejected": zero,
        "shed": zero,
        "completed": zero,
        "slowdown_sum": zero,
        "cpu_utilisation": jnp.sum(cpu_demand) / jnp.sum(scenario.capacity),
        "memory_utilisation": jnp.sum(mem_held) / jnp.sum(scenario.memory_gb),
    }


def _reset(key: jax.Array, config: EnvConfig) -> tuple[EnvState, dict[str, jax.Array]]:
    """Reset from `key`; returns the state and its metrics (see `_reset_metrics`)."""
    state = cloud.reset(key, config)
    return state, _reset_metrics(state, config)


_jit_reset = jax.jit(_reset, static_argnames="config")


def _check_decisions(decisions: Any) -> str:
    if not isinstance(decisions, str) or decisions not in DECISIONS:
        known = ", ".join(repr(d) for d in DECISIONS)
        raise ValueError(f"decisions must be one of {known}, got {decisions!r}")
    return decisions


class HeteroCloudParallelEnv(DispatcherParallelEnv):
    """HeteroCloud as a PettingZoo `ParallelEnv` with N dispatchers, K candidate servers per
    dispatcher, J job slots per dispatcher and step, and M servers.

    The dispatcher observation, a float32 vector of length D = K*9 + J*6 + 4, is dispatcher i's
    `cloud.Observation` fields flattened row-major in this order:

    - `[0, K*9)`: candidate servers, K rows of 9 features (CPU and memory utilisation,
      efficiency, cores / 64, memory / 192 GB, free-slot fraction, generation one-hot);
    - `[K*9, K*9 + J*6)`: job slots, J rows of 6 features (presence, is-memory-job, cores / 32,
      memory / 96 GB, log work / log 200, CPU-seconds / 100; zero for empty slots);
    - last 4: context (sin and cos of the tidal phase, cluster CPU and memory utilisation).

    `decisions="per-dispatcher"` (default): agents `dispatcher_0 .. dispatcher_{N-1}`.
    Observation: the dispatcher observation, a `Box` of shape (D,). Action:
    `MultiDiscrete([K] * J)`, a candidate index per job slot.

    `decisions="per-slot"`: N * J agents `dispatcher_{i}_slot_{j}`, ordered by dispatcher, then
    slot. Observation: a `Box` of shape (D + J,), dispatcher i's observation in `[0, D)` followed
    by the one-hot of slot j in `[D, D + J)` (so agents of one dispatcher see the same `[0, D)`
    and the slot's own presence flag is element `K*9 + 6*j`); all agents share one observation
    space object. Action: `Discrete(K)`, the candidate index for that one job slot.

    In both forms the action of an empty job slot is ignored, and agents missing from the action
    dict act 0. Every agent gets the team reward; all agents are truncated when the episode's
    `episode_steps` steps are done (no terminations). Infos of `step()` hold the step's metrics
    (`cloud.step`) as Python floats, including `TEAM_METRICS`; infos of `reset()` have the same
    keys, with 0 for the per-step counters and rates and the warm cluster's values for imbalance,
    overload, `cpu_utilisation` and `memory_utilisation`.

    `state()` is the flattened global state: M rows of the 9 server features, then the context,
    shape (M*9 + 4,).

    `group_map` puts all agents in one group, `{"agents": possible_agents}`. TorchRL's
    `PettingZooWrapper` by default groups agents by the name before the last `_`, which splits
    the per-slot agents into N groups `dispatcher_{i}_slot`; pass
    `group_map=env.group_map` (or `{"agents": env.possible_agents}`) to stack them all.

    Seeding: `reset(seed=s)` draws the episode from `jax.random.key(s)` and the step keys from a
    separate stream `jax.random.fold_in(key, 1)`, so a seed fixes the trajectory given the
    actions. A reset without a seed uses the constructor seed (or 0) for the first episode and
    derives fresh episodes from it afterwards. The `decisions` form does not change the
    trajectory: equal seeds and equal per-slot choices give equal rewards, dispatcher
    observations and infos in both forms.
    """

    metadata = {"render_modes": [], "name": "heterocloud_v0", "is_parallelizable": True}

    def __init__(
        self,
        n_agents: int = 10,
        seed: int | None = None,
        decisions: str = "per-dispatcher",
        **config_kwargs: Any,
    ):
        self.decisions = _check_decisions(decisions)
        self.config = EnvConfig(n_agents=check_agents(n_agents), **config_kwargs)
        c = self.config
        K, J, M = c.n_candidates, c.jobs_per_step, c.n_servers
        obs_low = np.concatenate(
            [np.zeros(K * N_CANDIDATE_FEATURES + J * N_JOB_FEATURES, np.float32), _context_low()]
        )
        if self.decisions == "per-dispatcher":
            self.possible_agents = [f"dispatcher_{i}" for i in range(c.n_agents)]
            self._observation_spaces = {
                a: gymnasium.spaces.Box(obs_low, np.inf, dtype=np.float32)
                for a in self.possible_agents
            }
            self._action_spaces = {
                a: gymnasium.spaces.MultiDiscrete([K] * J) for a in self.possible_agents
            }
        else:
            self.possible_agents = [
                f"dispatcher_{i}_slot_{j}" for i in range(c.n_agents) for j in range(J)
            ]
            low = np.concatenate([obs_low, np.zeros(J, np.float32)])
            high = np.concatenate(
                [np.full(obs_low.shape, np.inf, np.float32), np.ones(J, np.float32)]
            )
            # one shared Box: N * J agents would otherwise hold N * J copies of the bounds
            shared = gymnasium.spaces.Box(low, high, dtype=np.float32)
            self._observation_spaces = {a: shared for a in self.possible_agents}
            self._action_spaces = {a: gymnasium.spaces.Discrete(K) for a in self.possible_agents}
        # an agent's row of the joint actions: its dispatcher (per-dispatcher, J columns) or
        # dispatcher * J + slot (per-slot, one column)
        self.action_text = (f"{J} integers" if self.decisions == "per-dispatcher"
                            else "one integer")
        state_low = np.concatenate([np.zeros(M * N_CANDIDATE_FEATURES, np.float32), _context_low()])
        self.state_space = gymnasium.spaces.Box(state_low, np.inf, dtype=np.float32)

        super().__init__(seed, _jit_reset)

    @property
    def group_map(self) -> dict[str, list[str]]:
        """All agents in one group: `{"agents": possible_agents}` (a fresh dict and list)."""
        return {GROUP_NAME: list(self.possible_agents)}

    def _observations(self) -> dict[str, np.ndarray]:
        """Observations of the live agents, each a float32 row of one fresh array (per-slot:
        the dispatcher's observation and the slot's one-hot)."""
        flat = np.array(self._observe(self._state))  # (N, D)
        if self.decisions == "per-slot":
            n, d = flat.shape
            J = self.config.jobs_per_step
            per_slot = np.empty((n, J, d + J), np.float32)
            per_slot[:, :, :d] = flat[:, None, :]
            per_slot[:, :, d:] = np.eye(J, dtype=np.float32)
            flat = per_slot.reshape(n * J, d + J)
        return {a: flat[self._index[a]] for a in self.agents}


def parallel_env(
    n_agents: int = 10,
    seed: int | None = None,
    decisions: str = "per-dispatcher",
    **config_kwargs: Any,
) -> HeteroCloudParallelEnv:
    """A HeteroCloud `ParallelEnv` with N dispatchers; `decisions` is one of `DECISIONS`
    (`"per-dispatcher"`: N `MultiDiscrete` agents, `"per-slot"`: N * J `Discrete` agents);
    `config_kwargs` go to `EnvConfig`."""
    return HeteroCloudParallelEnv(
        n_agents=n_agents, seed=seed, decisions=decisions, **config_kwargs
    )
