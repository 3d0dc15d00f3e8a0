"""PettingZoo `ParallelEnv` wrapper of PowerGrid.

    from dgpg.domains.power.pettingzoo import parallel_env
    env = parallel_env(n_agents=6, seed=0)
    observations, infos = env.reset()
    observations, rewards, terminations, truncations, infos = env.step(actions)

One agent per flexible-load aggregator, `aggregator_i` placing agent i's blocks: a
`MultiDiscrete([K] * J)` action, a candidate bus per block slot. Seeding, stepping and the
flattened observations are `dgpg.domains.parallel.DispatcherParallelEnv`'s, as in RoadNet's
adapter.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.parallel import DispatcherParallelEnv, check_agents
from dgpg.domains.power import env as power
from dgpg.domains.power.env import (
    N_JOB_FEATURES,
    N_LINE_FEATURES,
    PowerConfig,
    PowerState,
)

TEAM_METRICS = ("cost", "gen_cost", "violation_cost", "violation_mw", "unserved_mw",
                "binding_lines")
"""Metrics every agent's info holds (besides the other metrics of the step)."""


def _reset(key: jax.Array, config: PowerConfig) -> tuple[PowerState, dict[str, jax.Array]]:
    """Reset from `key`; returns the state and zero metrics under `step`'s keys (no period has
    been served yet)."""
    state = power.reset(key, config)
    shapes = jax.eval_shape(lambda s: power.step(key, s, jnp.zeros(s.mask.shape, jnp.int32),
                                                 config)[2], state)
    return state, {name: jnp.zeros((), jnp.float32) for name in shapes}


_jit_reset = jax.jit(_reset, static_argnames="config")


class PowerGridParallelEnv(DispatcherParallelEnv):
    """PowerGrid as a PettingZoo `ParallelEnv`: N aggregators, K candidate buses each, J block
    slots per aggregator and period, L lines.

    Agents `aggregator_0 .. aggregator_{N-1}`, aggregator i with home bus `home_buses[i]` and
    candidate buses `candidate_buses[i]` (bus indices of the case, home first). Observation: a
    float32 `Box` of shape (D,), D = K*4 + J*2 + 5, the aggregator's `Observation` fields
    flattened row-major in this order:

    - `[0, K*4)`: candidate buses, K rows of 4 features (marginal cost at the base load alone
      and in the last period, over the reference price; headroom in mean blocks over 10;
      home-bus flag);
    - `[K*4, K*4 + J*2)`: block slots, J rows of 2 features (block size over the aggregator's
      mean block, presence; zero for an empty slot);
    - last 5: context (time of day sin and cos, the aggregator's flexible demand over its crest
      mean, the system price over the reference price, the base load over its crest mean).

    Action: `MultiDiscrete([K] * J)`, a candidate index per block slot; empty slots are ignored,
    and agents missing from the action dict act 0 (the home bus). Every agent gets the team
    reward (minus the period's cost over the reference cost); all agents are truncated after
    `episode_steps` periods (no terminations). Infos hold the period's metrics (`power.step`)
    as Python floats, `TEAM_METRICS` included; reset infos have the same keys, all 0.

    `state()` is the flattened global state: L rows of the 4 line features, then the 5 context
    features, shape (L*4 + 5,).

    Seeding: `reset(seed=s)` draws the day from `jax.random.key(s)` and the period keys from a
    separate stream `jax.random.fold_in(key, 1)`, so a seed fixes the trajectory given the
    actions. A reset without a seed uses the constructor seed (or 0) for the first episode and
    derives fresh episodes from it afterwards.
    """

    metadata = {"render_modes": [], "name": "powergrid_v0", "is_parallelizable": True}

    def __init__(self, n_agents: int = 10, seed: int | None = None, **config_kwargs: Any):
        self.config = PowerConfig(n_agents=check_agents(n_agents), **config_kwargs)
        c = self.config
        K, J = c.n_candidates, c.blocks_per_step
        data = power.power_data(c)
        self.home_buses = data.home.copy()
        self.candidate_buses = data.candidates.copy()
        # marginal costs may be negative; the other candidate and block features are >= 0
        candidate_low = np.tile(np.array([-np.inf, -np.inf, 0.0, 0.0], np.float32), K)
        context_low = np.array([-1.0, -1.0, 0.0, -np.inf, 0.0], np.float32)
        obs_low = np.concatenate([candidate_low, np.zeros(J * N_JOB_FEATURES, np.float32),
                                  context_low])
        self.possible_agents = [f"aggregator_{i}" for i in range(c.n_agents)]
        self._observation_spaces = {
            a: gymnasium.spaces.Box(obs_low, np.inf, dtype=np.float32)
            for a in self.possible_agents
        }
        self._action_spaces = {
            a: gymnasium.spaces.MultiDiscrete([K] * J) for a in self.possible_agents
        }
        self.action_text = f"{J} integers"
        L = data.grid.n_lines
        state_low = np.concatenate([np.zeros(L * N_LINE_FEATURES, np.float32),
                                    np.array([-1.0, -1.0, 0.0, 0.0, -np.inf], np.float32)])
        self.state_space = gymnasium.spaces.Box(state_low, np.inf, dtype=np.float32)
        super().__init__(seed, _jit_reset)


def parallel_env(n_agents: int = 10, seed: int | None = None,
                 **config_kwargs: Any) -> PowerGridParallelEnv:
    """A PowerGrid `ParallelEnv` with N aggregators; `config_kwargs` go to `PowerConfig`."""
    return PowerGridParallelEnv(n_agents=n_agents, seed=seed, **config_kwargs)
