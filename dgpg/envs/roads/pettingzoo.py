"""PettingZoo `ParallelEnv` wrapper of RoadNet.

    from dgpg.envs.roads.pettingzoo import parallel_env
    env = parallel_env(n_agents=6, seed=0)
    observations, infos = env.reset()
    observations, rewards, terminations, truncations, infos = env.step(actions)

One agent per OD dispatcher, `dispatcher_i` routing agent i's platoons: a
`MultiDiscrete([K] * J)` action, a path index per platoon slot. The pure JAX functions of
`dgpg.envs.roads.env` are jitted with the `RoadConfig` static, so they compile once per distinct
config (instances with equal configs share the compiled code); arrays are converted to NumPy at
the boundary.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pettingzoo

from dgpg.envs.roads import env as roads
from dgpg.envs.roads.env import (
    N_CANDIDATE_FEATURES,
    N_CONTEXT_FEATURES,
    N_JOB_FEATURES,
    N_LINK_FEATURES,
    RoadConfig,
    RoadState,
)

TEAM_METRICS = ("tstt", "so_tstt", "demand", "mean_travel_time", "gap", "overload")
"""Metrics every agent's info holds (besides the other metrics of the step)."""

_SEED_LIMIT = 2**32  # jax.random.key keeps only 32 bits of the seed when x64 is disabled


def _context_low() -> np.ndarray:
    """Lower bounds of the context features: time of day (sin, cos), then demand levels."""
    return np.array([-1.0, -1.0] + [0.0] * (N_CONTEXT_FEATURES - 2), np.float32)


def _flat_observation(state: RoadState, config: RoadConfig) -> jax.Array:
    """All agents' flattened local observations, shape (N, K*5 + J*2 + 4)."""
    obs = roads.observe(state, config)
    n = config.n_agents
    return jnp.concatenate(
        [obs.candidates.reshape(n, -1), obs.jobs.reshape(n, -1), obs.context], axis=1
    ).astype(jnp.float32)


def _flat_state(state: RoadState, config: RoadConfig) -> jax.Array:
    """The flattened global state, shape (E*4 + 4,)."""
    links, context = roads.global_state(state, config)
    return jnp.concatenate([links.reshape(-1), context]).astype(jnp.float32)


def _reset(key: jax.Array, config: RoadConfig) -> tuple[RoadState, dict[str, jax.Array]]:
    """Reset from `key`; returns the state and zero metrics under `step`'s keys (no period has
    been routed yet)."""
    state = roads.reset(key, config)
    shapes = jax.eval_shape(lambda s: roads.step(key, s, jnp.zeros(s.mask.shape, jnp.int32),
                                                 config)[2], state)
    return state, {name: jnp.zeros((), jnp.float32) for name in shapes}


def _step(
    key: jax.Array, state: RoadState, actions: jax.Array, config: RoadConfig
) -> tuple[jax.Array, RoadState, jax.Array, dict[str, jax.Array]]:
    """Split the step-key stream, advance one period; returns the advanced stream too."""
    key, sub = jax.random.split(key)
    state, reward, metrics = roads.step(sub, state, actions, config)
    return key, state, reward, metrics


_jit_reset = jax.jit(_reset, static_argnames="config")
_jit_step = jax.jit(_step, static_argnames="config")
_jit_observe = jax.jit(_flat_observation, static_argnames="config")
_jit_state = jax.jit(_flat_state, static_argnames="config")


class RoadNetParallelEnv(pettingzoo.ParallelEnv):
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
        if isinstance(n_agents, bool) or not isinstance(n_agents, int | np.integer):
            raise ValueError(f"n_agents must be an integer >= 1, got {n_agents!r}")
        self.config = RoadConfig(n_agents=int(n_agents), **config_kwargs)
        self._seed = _check_seed(seed)
        self.render_mode = None

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
        self.agents: list[str] = []
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        E = data.network.n_links
        state_low = np.concatenate([np.zeros(E * N_LINK_FEATURES, np.float32), _context_low()])
        self.state_space = gymnasium.spaces.Box(state_low, np.inf, dtype=np.float32)

        self._reset = partial(_jit_reset, config=c)
        self._step = partial(_jit_step, config=c)
        self._observe = partial(_jit_observe, config=c)
        self._global_state = partial(_jit_state, config=c)

        self._state: RoadState | None = None
        self._step_key: jax.Array | None = None
        self._root_key: jax.Array | None = None
        self._episode = 0  # episodes started since the root key was last seeded

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.MultiDiscrete:
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
        """Start a day; returns per-agent observations and infos (see the class docstring)."""
        if seed is not None:
            self._root_key = jax.random.key(_check_seed(seed))
            self._episode = 0
        elif self._root_key is None:
            self._root_key = jax.random.key(0 if self._seed is None else self._seed)
            self._episode = 0
        if self._episode == 0:
            key = self._root_key
        else:
            key = jax.random.fold_in(jax.random.fold_in(self._root_key, 2), self._episode)
        self._episode += 1

        self._state, metrics = self._reset(key)
        self._step_key = jax.random.fold_in(key, 1)
        self.agents = self.possible_agents[:]
        info = {name: float(value) for name, value in jax.device_get(metrics).items()}
        return self._observations(), {a: dict(info) for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, float]],
    ]:
        """Route the period's platoons with `actions`: agent -> J path indices."""
        if self._state is None or not self.agents:
            raise RuntimeError("step() called before reset() or after the episode ended")
        c = self.config
        rows = np.zeros((c.n_agents, c.jobs_per_step), np.int32)
        for agent, action in actions.items():
            if agent not in self._index:
                raise ValueError(f"unknown agent {agent!r}")
            arr = np.asarray(action)
            if not self._action_spaces[agent].contains(arr):
                raise ValueError(f"action of {agent} must be {c.jobs_per_step} integers in "
                                 f"[0, {c.max_candidates}), got {action!r}")
            rows[self._index[agent]] = arr

        self._step_key, self._state, reward, metrics = self._step(
            self._step_key, self._state, jnp.asarray(rows)
        )
        reward, metrics, t = jax.device_get((reward, metrics, self._state.t))

        live = self.agents
        observations = self._observations()
        info = {name: float(value) for name, value in metrics.items()}
        truncated = bool(t >= c.episode_steps)
        rewards = {a: float(reward) for a in live}
        terminations = {a: False for a in live}
        truncations = {a: truncated for a in live}
        infos = {a: dict(info) for a in live}
        if truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _observations(self) -> dict[str, np.ndarray]:
        """Observations of the live agents, each a float32 row of one fresh array."""
        flat = np.array(self._observe(self._state))  # (N, D)
        return {a: flat[self._index[a]] for a in self.agents}

    def state(self) -> np.ndarray:
        """The flattened global state (see the class docstring)."""
        if self._state is None:
            raise RuntimeError("state() called before reset()")
        return np.array(self._global_state(self._state))

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass


def _check_seed(seed: int | None) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be None or an integer, got {seed!r}")
    if not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
    return int(seed)


def parallel_env(n_agents: int = 10, seed: int | None = None,
                 **config_kwargs: Any) -> RoadNetParallelEnv:
    """A RoadNet `ParallelEnv` with N OD dispatchers; `config_kwargs` go to `RoadConfig`."""
    return RoadNetParallelEnv(n_agents=n_agents, seed=seed, **config_kwargs)
