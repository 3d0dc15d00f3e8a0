"""Any domain as a PettingZoo `ParallelEnv`: one adapter built from the domain's `Domain`.

    from dgpg.pettingzoo import parallel_env
    env = parallel_env("roads", n_agents=6, seed=0)     # any name of dgpg.domains.names()
    observations, infos = env.reset()
    observations, rewards, terminations, truncations, infos = env.step(actions)

Two ways to split the (N, J) joint action into agents (the `decisions` option):

- `"per-dispatcher"` (default): agent `dispatcher_i` makes agent i's J slot choices at once, a
  `MultiDiscrete([K] * J)` action (row i of the joint action);
- `"per-slot"`: agent `dispatcher_i_slot_j` makes slot j's choice of agent i alone, a
  `Discrete(K)` action, for the N * J agents that single-action learners expect; its
  observation is agent i's followed by the one-hot of slot j.

An observation is agent i's `Observation` flattened row-major (`flat_observation`: the K
candidates' features, the J slots' features, the context), a float32 `Box` of shape (D,); what
each feature means is the domain's (its `observe`). `state()` is the flattened global state
(`flat_state`). Every agent gets the team reward; all agents are truncated after the
configuration's `episode_steps` steps (no terminations); infos hold the step's metrics as Python
floats, and reset infos the same keys, all 0. An empty slot's action is ignored (as the domain's
`step` does), and agents missing from the action dict act 0.

Seeding: `reset(seed=s)` draws the episode from `jax.random.key(s)` and the step keys from a
separate stream `jax.random.fold_in(key, 1)`, so a seed fixes the trajectory given the actions.
A reset without a seed uses the constructor seed (or 0) for the first episode and derives fresh
episodes from it afterwards (episode e > 0 from `fold_in(fold_in(root, 2), e)`); the
`decisions` form does not change the trajectory. `dgpg.torchrl.DomainEnv` seeds the same way.

The domain's pure functions are reached through `dgpg.domains.domain_of(config)` and jitted with
the configuration static, so they compile once per distinct configuration (instances with
equal configurations share the compiled code, whatever their `decisions`); arrays are converted
to NumPy at the boundary.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pettingzoo

from dgpg.domains import DEFAULT_DOMAIN, domain_of, get_domain

DECISIONS = ("per-dispatcher", "per-slot")
"""Known values of the `decisions` option: one agent per dispatcher, or per (dispatcher, slot)."""

GROUP_NAME = "agents"
"""Name of the single agent group of `DomainParallelEnv.group_map`."""

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


def check_decisions(decisions: Any) -> str:
    if not isinstance(decisions, str) or decisions not in DECISIONS:
        known = ", ".join(repr(d) for d in DECISIONS)
        raise ValueError(f"decisions must be one of {known}, got {decisions!r}")
    return decisions


def flat_observation(state: Any, config: Any) -> jax.Array:
    """All agents' flattened local observations, (N, K*Fc + J*Fs + Fx): the candidates, the
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


def _reset(key: jax.Array, config: Any) -> tuple[Any, dict[str, jax.Array]]:
    """The first state from `key`, and zeros under the keys of the step's metrics (no step has
    happened yet)."""
    domain = domain_of(config)
    state = domain.reset(key, config)
    actions = jnp.zeros((config.n_agents, domain.decision_shape(config)[0]), jnp.int32)
    names = jax.eval_shape(lambda s: domain.step(key, s, actions, config)[2], state)
    return state, {name: jnp.zeros((), jnp.float32) for name in names}


def _step(key: jax.Array, state: Any, actions: jax.Array, config: Any):
    """Split the step-key stream, advance one step; returns the advanced stream too."""
    key, sub = jax.random.split(key)
    state, reward, metrics = domain_of(config).step(sub, state, actions, config)
    return key, state, reward, metrics


_jit_reset = jax.jit(_reset, static_argnames="config")
_jit_step = jax.jit(_step, static_argnames="config")
_jit_observe = jax.jit(flat_observation, static_argnames="config")
_jit_state = jax.jit(flat_state, static_argnames="config")

Step = tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
             dict[str, dict[str, float]]]


class DomainParallelEnv(pettingzoo.ParallelEnv):
    """The domain of `config` (an environment configuration) as a PettingZoo `ParallelEnv`, with
    the agents of `decisions` (see the module docstring). `seed`: the constructor seed of the
    first unseeded reset (None: 0).

    Attributes besides PettingZoo's: `config`, `domain` (its `Domain`), `decisions`,
    `state_space` (a `Box` of the shape of `state()`) and `group_map`. Observation spaces are
    unbounded float32 `Box`es, one object shared by all agents.
    """

    metadata = {"render_modes": [], "name": "dgpg_v0", "is_parallelizable": True}

    def __init__(self, config: Any, seed: int | None = None, decisions: str = "per-dispatcher"):
        self.decisions = check_decisions(decisions)
        self._seed = check_seed(seed)
        self.config = c = config
        self.domain = domain_of(config)
        self.metadata = {**type(self).metadata, "name": f"{self.domain.spec.title.lower()}_v0"}
        self.render_mode = None
        n = check_agents(c.n_agents)
        J, K = self.domain.decision_shape(c)
        state = jax.eval_shape(lambda k: self.domain.reset(k, c), jax.random.key(0))
        D = jax.eval_shape(lambda s: flat_observation(s, c), state).shape[1]
        S = jax.eval_shape(lambda s: flat_state(s, c), state).shape[0]

        if self.decisions == "per-dispatcher":
            self.possible_agents = [f"dispatcher_{i}" for i in range(n)]
            action = gymnasium.spaces.MultiDiscrete([K] * J)
            self.action_text = f"{J} integers"
        else:
            self.possible_agents = [f"dispatcher_{i}_slot_{j}" for i in range(n)
                                    for j in range(J)]
            action = gymnasium.spaces.Discrete(K)
            self.action_text = "one integer"
            D += J
        # one shared space each: N * J agents would otherwise hold N * J copies of the bounds
        observation = gymnasium.spaces.Box(-np.inf, np.inf, (D,), np.float32)
        self._observation_spaces = {a: observation for a in self.possible_agents}
        self._action_spaces = {a: action for a in self.possible_agents}
        self.state_space = gymnasium.spaces.Box(-np.inf, np.inf, (S,), np.float32)
        self._shape = (J, K)
        # agent k's action fills row k of the joint actions, reshaped row-major to (N, J)
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self._state: Any = None
        self._step_key: jax.Array | None = None
        self._root_key: jax.Array | None = None
        self._episode = 0  # episodes started since the root key was last seeded
        self._t = 0  # steps since the reset

    @property
    def group_map(self) -> dict[str, list[str]]:
        """All agents in one group: `{"agents": possible_agents}` (a fresh dict and list).
        TorchRL's `PettingZooWrapper` groups agents by the name before the last `_` unless
        given this, which splits the per-slot agents into N groups."""
        return {GROUP_NAME: list(self.possible_agents)}

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

        self._state, metrics = _jit_reset(key, config=self.config)
        self._step_key = jax.random.fold_in(key, 1)
        self._t = 0
        self.agents = self.possible_agents[:]
        info = {name: float(value) for name, value in jax.device_get(metrics).items()}
        return self._observations(), {a: dict(info) for a in self.agents}

    def step(self, actions: dict[str, Any]) -> Step:
        """Advance one step with `actions` (agent -> action; missing agents act 0)."""
        if self._state is None or not self.agents:
            raise RuntimeError("step() called before reset() or after the episode ended")
        c = self.config
        J, K = self._shape
        rows = np.zeros((len(self.possible_agents), c.n_agents * J // len(self.possible_agents)),
                        np.int32)
        for agent, action in actions.items():
            if agent not in self._index:
                raise ValueError(f"unknown agent {agent!r}")
            arr = np.asarray(action)
            if not self._action_spaces[agent].contains(arr):
                raise ValueError(f"action of {agent} must be {self.action_text} in "
                                 f"[0, {K}), got {action!r}")
            rows[self._index[agent]] = arr

        self._step_key, self._state, reward, metrics = _jit_step(
            self._step_key, self._state, jnp.asarray(rows.reshape(c.n_agents, J)), config=c)
        reward, metrics = jax.device_get((reward, metrics))
        self._t += 1

        live = self.agents
        observations = self._observations()
        info = {name: float(value) for name, value in metrics.items()}
        truncated = self._t >= c.episode_steps
        rewards = {a: float(reward) for a in live}
        terminations = {a: False for a in live}
        truncations = {a: truncated for a in live}
        infos = {a: dict(info) for a in live}
        if truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _observations(self) -> dict[str, np.ndarray]:
        """Observations of the live agents, each a float32 row of one fresh array (per-slot:
        the dispatcher's observation and the slot's one-hot)."""
        flat = np.array(_jit_observe(self._state, config=self.config))  # (N, D)
        if self.decisions == "per-slot":
            n, d = flat.shape
            J = self._shape[0]
            per_slot = np.empty((n, J, d + J), np.float32)
            per_slot[:, :, :d] = flat[:, None, :]
            per_slot[:, :, d:] = np.eye(J, dtype=np.float32)
            flat = per_slot.reshape(n * J, d + J)
        return {a: flat[self._index[a]] for a in self.agents}

    def state(self) -> np.ndarray:
        """The flattened global state (`flat_state`)."""
        if self._state is None:
            raise RuntimeError("state() called before reset()")
        return np.array(_jit_state(self._state, config=self.config))

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass


def parallel_env(domain: str = DEFAULT_DOMAIN, n_agents: int = 10, seed: int | None = None,
                 decisions: str = "per-dispatcher", **env_fields: Any) -> DomainParallelEnv:
    """The `ParallelEnv` of domain `domain` (a name of `dgpg.domains.names()`) with `n_agents`
    agents; `decisions` is one of `DECISIONS`; `env_fields` go to the domain's configuration."""
    config_type = get_domain(domain).config_type
    return DomainParallelEnv(config_type(n_agents=check_agents(n_agents), **env_fields),
                             seed=seed, decisions=decisions)
