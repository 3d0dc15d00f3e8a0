"""What the PettingZoo adapters of every domain share: `DispatcherParallelEnv`.

A domain's adapter (`dgpg.domains.cloud.pettingzoo` for HeteroCloud,
`dgpg.domains.roads.pettingzoo` for
RoadNet) builds its configuration and spaces and names its reset; this base class does the
rest the same way for every domain: seeding, the step-key stream, turning the action dict into
the joint (N, J) action array, the team reward, truncation after `episode_steps` steps, infos
as Python floats, and the flattened observations and global state. The domain's pure functions
are reached through `dgpg.domains.domain_of(config)` and jitted with the configuration static,
so they compile once per distinct configuration (instances with equal configurations share
the compiled code); arrays are converted to NumPy at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pettingzoo

from dgpg.domains import domain_of

SEED_LIMIT = 2**32  # jax.random.key keeps only 32 bits of the seed when x64 is disabled


def check_seed(seed: int | None) -> int | None:
    """`seed` as an int in [0, 2**32), or None; ValueError otherwise."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be None or an integer, got {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
    return int(seed)


def check_agents(n_agents: Any) -> int:
    if isinstance(n_agents, bool) or not isinstance(n_agents, int | np.integer) or n_agents < 1:
        raise ValueError(f"n_agents must be an integer >= 1, got {n_agents!r}")
    return int(n_agents)


def flat_observation(state: Any, config: Any) -> jax.Array:
    """All agents' flattened local observations, (N, K*Fc + J*Fj + Fx): the candidates, the
    decision slots and the context, each row-major."""
    obs = domain_of(config).observe(state, config)
    n = config.n_agents
    return jnp.concatenate(
        [obs.candidates.reshape(n, -1), obs.slots.reshape(n, -1), obs.context], axis=1
    ).astype(jnp.float32)


def flat_state(state: Any, config: Any) -> jax.Array:
    """The flattened global state: the entities' features row-major, then the context."""
    entities, context = domain_of(config).global_state(state, config)
    return jnp.concatenate([entities.reshape(-1), context]).astype(jnp.float32)


def _step(key: jax.Array, state: Any, actions: jax.Array, config: Any):
    """Split the step-key stream, advance one step; returns the advanced stream too."""
    key, sub = jax.random.split(key)
    state, reward, metrics = domain_of(config).step(sub, state, actions, config)
    return key, state, reward, metrics


_jit_step = jax.jit(_step, static_argnames="config")
_jit_observe = jax.jit(flat_observation, static_argnames="config")
_jit_state = jax.jit(flat_state, static_argnames="config")

Step = tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
             dict[str, dict[str, float]]]


class DispatcherParallelEnv(pettingzoo.ParallelEnv):
    """A domain as a PettingZoo `ParallelEnv`. Subclasses set, before calling
    `DispatcherParallelEnv.__init__`: `config`, `possible_agents` (agent k's action fills row k
    of the joint actions, reshaped row-major to (N, J)), `_observation_spaces`,
    `_action_spaces`, `state_space` and `action_text` (how an action is described in errors).

    Seeding: `reset(seed=s)` draws the episode from `jax.random.key(s)` and the step keys from a
    separate stream `jax.random.fold_in(key, 1)`, so a seed fixes the trajectory given the
    actions. A reset without a seed uses the constructor seed (or 0) for the first episode and
    derives fresh episodes from it afterwards.
    """

    action_text = "an action"

    def __init__(self, seed: int | None, reset: Callable[..., Any]):
        """`reset(key, config) -> (state, metrics)`, jitted with `config` static: the first
        state and the infos' values before any step (the keys of the step's metrics)."""
        self._seed = check_seed(seed)
        self.render_mode = None
        self.agents: list[str] = []
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self._reset = partial(reset, config=self.config)
        self._step = partial(_jit_step, config=self.config)
        self._observe = partial(_jit_observe, config=self.config)
        self._global_state = partial(_jit_state, config=self.config)
        self._state: Any = None
        self._step_key: jax.Array | None = None
        self._root_key: jax.Array | None = None
        self._episode = 0  # episodes started since the root key was last seeded

    def observation_space(self, agent: str):
        return self._observation_spaces[agent]

    def action_space(self, agent: str):
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
        """Start an episode; returns per-agent observations and infos."""
        if seed is not None:
            self._root_key = jax.random.key(check_seed(seed))
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

    def step(self, actions: dict[str, Any]) -> Step:
        """Advance one step with `actions` (agent -> action; missing agents act 0)."""
        if self._state is None or not self.agents:
            raise RuntimeError("step() called before reset() or after the episode ended")
        c = self.config
        J, K = domain_of(c).decision_shape(c)
        n_rows = len(self.possible_agents)
        rows = np.zeros((n_rows, c.n_agents * J // n_rows), np.int32)
        for agent, action in actions.items():
            if agent not in self._index:
                raise ValueError(f"unknown agent {agent!r}")
            arr = np.asarray(action)
            if not self._action_spaces[agent].contains(arr):
                raise ValueError(f"action of {agent} must be {self.action_text} in "
                                 f"[0, {K}), got {action!r}")
            rows[self._index[agent]] = arr

        self._step_key, self._state, reward, metrics = self._step(
            self._step_key, self._state, jnp.asarray(rows.reshape(c.n_agents, J)))
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
        """The flattened global state (`flat_state`)."""
        if self._state is None:
            raise RuntimeError("state() called before reset()")
        return np.array(self._global_state(self._state))

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass
