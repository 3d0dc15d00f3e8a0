"""PettingZoo `ParallelEnv` wrapper of RoadNet.

    from dgpg.domains.roads.pettingzoo import parallel_env
    env = parallel_env(n_agents=6, seed=0)
    observations, infos = env.reset()
    observations, rewards, terminations, truncations, infos = env.step(actions)

One agent per OD dispatcher, `dispatcher_i` routing agent i's platoons: a
`MultiDiscrete([K] * J)` action, a path index per platoon slot. Seeding, stepping and the
flattened observations are `dgpg.domains.parallel.DispatcherParallelEnv`'s, as in HeteroCloud's
adapter.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.parallel import DispatcherParallelEnv, check_agents
from dgpg.domains.roads import env as roads
from dgpg.domains.roads.env import (
    N_CANDIDATE_FEATURES,
    N_CONTEXT_FEATURES,
    N_JOB_FEATURES,
    N_LINK_FEATURES,
    RoadConfig,
    RoadState,
)

TEAM_METRICS = ("tstt", "so_tstt", "demand", "mean_travel_time", "gap", "overload")
"""Metrics every agent's info holds (besides the other metrics of the step)."""


def _context_low() -> np.ndarray:
    """Lower bounds of the context features: time of day (sin, cos), then demand levels."""
    return np.array([-1.0, -1.0] + [0.0] * (N_CONTEXT_FEATURES - 2), np.float32)


def _reset(key: jax.Array, config: RoadConfig) -> tuple[RoadState, dict[str, jax.Array]]:
    """Reset from `key`; returns the state and zero metrics under `step`'s keys (no period has
    been routed yet)."""
    state = roads.reset(key, config)
    shapes = jax.eval_shape(lambda s: roads.step(key, s, jnp.zeros(s.mask.shape, jnp.int32),
                                                 config)[2], state)
    return state, {name: jnp.zeros((), jnp.float32) for name in shapes}


_jit_reset = jax.jit(_reset, static_argnames="config")


class RoadNetParallelEnv(DispatcherParallelEnv):
    """RoadNet as a PettingZoo `ParallelEnv`: N OD dispatchers, K candidate paths each, J
    platoon slots per dispatcher and period, E links.

    Agents `dispatcher_0 .. dispatcher_{N-1}`, dispatcher i routing the OD pair
    `od_pairs[i]` (origin and destination zone ids; the pairs of largest demand first).
    Observation: a float32 `Box` of shape (D,), D = K*5 + J*2 + 4, dispatcher i's
    `Observation` fields flattened row-major in this order:

    - `[0, K*5)`: candidate paths, K rows of 5 features (last period's travel time, free-flow
      time, marginal cost, marginal-cost rise per peak platoon, each over the pair's shortest
      free-flow time; valid-path flag; all zero for a missing path);
    - `[K*5, K*5 + J*2)`: platoon slots, J rows of 2 features (platoon size over the pair's
      peak platoon, presence; zero for an empty slot);
    - last 4: context (time of day sin and cos, the pair's demand over its mean, the agents'
      total demand over its mean).

    Action: `MultiDiscrete([K] * J)`, a path index per platoon slot; empty slots are ignored, a
    missing path means path 0, and agents missing from the action dict act 0. Every agent gets
    the team reward (minus the period's mean travel time); all agents are truncated after
    `episode_steps` periods (no terminations). Infos hold the period's metrics
    (`roads.step`) as Python floats, `TEAM_METRICS` included; reset infos have the same keys,
    all 0.

    `state()` is the flattened global state: E rows of the 4 link features, then the context,
    shape (E*4 + 4,).

    Seeding: `reset(seed=s)` draws the day from `jax.random.key(s)` and the period keys from a
    separate stream `jax.random.fold_in(key, 1)`, so a seed fixes the trajectory given the
    actions. A reset without a seed uses the constructor seed (or 0) for the first episode and
    derives fresh episodes from it afterwards.
    """

    metadata = {"render_modes": [], "name": "roadnet_v0", "is_parallelizable": True}

    def __init__(self, n_agents: int = 10, seed: int | None = None, **config_kwargs: Any):
        self.config = RoadConfig(n_agents=check_agents(n_agents), **config_kwargs)
        c = self.config
        K, J = c.max_candidates, c.jobs_per_step
        data = roads.road_data(c)
        self.od_pairs = data.paths.od_pairs.copy()
        obs_low = np.concatenate(
            [np.zeros(K * N_CANDIDATE_FEATURES + J * N_JOB_FEATURES, np.float32), _context_low()]
        )
        self.possible_agents = [f"dispatcher_{i}" for i in range(c.n_agents)]
        self._observation_spaces = {
            a: gymnasium.spaces.Box(obs_low, np.inf, dtype=np.float32)
            for a in self.possible_agents
        }
        self._action_spaces = {
            a: gymnasium.spaces.MultiDiscrete([K] * J) for a in self.possible_agents
        }
        self.action_text = f"{J} integers"
        E = data.network.n_links
        state_low = np.concatenate([np.zeros(E * N_LINK_FEATURES, np.float32), _context_low()])
        self.state_space = gymnasium.spaces.Box(state_low, np.inf, dtype=np.float32)
        super().__init__(seed, _jit_reset)


def parallel_env(n_agents: int = 10, seed: int | None = None,
                 **config_kwargs: Any) -> RoadNetParallelEnv:
    """A RoadNet `ParallelEnv` with N OD dispatchers; `config_kwargs` go to `RoadConfig`."""
    return RoadNetParallelEnv(n_agents=n_agents, seed=seed, **config_kwargs)
