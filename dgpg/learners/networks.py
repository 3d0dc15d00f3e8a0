"""Networks shared by DG-PG, MAPPO and IPPO (docs/design.md, section 5).

The default actor is one scorer MLP applied to every (job, candidate, context) triple, followed
by a softmax over the K candidates; `scorer-raw` is the same without the derived after-placement
features, and `mlp` maps an agent's flattened local observation to J x K logits: no size of
theirs depends on N. `scorer-id` adds a learned logit offset per (agent, slot, candidate) to the
scorer's logits, so that identical agents can learn to act differently. The centralised critic
embeds every server, pools the embeddings (cost linear in M) and adds the context; the local
critic does the same over one agent's candidates and jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from dgpg.domains import domain_of
from dgpg.domains.observation import Observation


class Actor(nn.Module):
    """Scorer MLP over the domain's (job, candidate) pair features -> logits over candidates,
    (..., N, J, K). `features(obs, derived)` is the domain's `pair_features`; `derived=False`
    is the `scorer-raw` actor: only the features the observation holds."""

    features: Callable[..., jax.Array]
    hidden: int = 64
    derived: bool = True
    per_slot: ClassVar[bool] = True
    """Each slot's logits depend on that slot's job alone (`compaction` relies on this)."""

    @nn.compact
    def __call__(self, obs: Observation) -> jax.Array:
        x = self.features(obs, self.derived)
        x = nn.tanh(nn.Dense(self.hidden)(x))
        x = nn.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(0.01))(x)[..., 0]


class MLPActor(nn.Module):
    """MLP over one agent's flattened local observation (candidates, jobs, context; the
    PettingZoo observation) -> logits (..., N, J, K). A slot's logits depend on every job
    the agent holds, so it is applied densely, on every slot."""

    hidden: int = 64
    per_slot: ClassVar[bool] = False

    @nn.compact
    def __call__(self, obs: Observation) -> jax.Array:
        *lead, K, Fc = obs.candidates.shape
        J, Fj = obs.slots.shape[-2:]
        x = jnp.concatenate(
            [obs.candidates.reshape(*lead, K * Fc), obs.slots.reshape(*lead, J * Fj), obs.context],
            axis=-1,
        )
        x = nn.tanh(nn.Dense(self.hidden)(x))
        x = nn.tanh(nn.Dense(self.hidden)(x))
        logits = nn.Dense(J * K, kernel_init=nn.initializers.orthogonal(0.01))(x)
        return logits.reshape(*lead, J, K)


class IdActor(nn.Module):
    """The scorer plus a learned logit offset per agent: logits (..., A, J, K) =
    scorer(obs) + id_scale x offset[agents], with offset (N, J, K) (or (N, 1, K), one per agent
    shared by its slots, when `per_slot_offsets` is False), initialised to zero.

    The scorer sees no identity, so agents with the same observation act alike; where all of
    them react to one congestion signal at once (RoadNet on Sioux Falls), that sends traffic
    in waves. The offsets let each agent settle on its own split. `id_scale` sets their step:
    with Adam, one update moves an offset logit by about id_scale x learning rate (0.05 at the
    defaults), while a scale of 1 leaves them too slow to matter. `agents` (A,) are the indices
    of the observation's agent axis among the N (all N, in order, when None)."""

    features: Callable[..., jax.Array]
    n_agents: int
    n_slots: int
    n_candidates: int
    hidden: int = 64
    id_scale: float = 50.0
    per_slot_offsets: bool = True
    per_slot: ClassVar[bool] = True
    """`score` is per slot (compacted); the offsets are added outside it."""

    def setup(self) -> None:
        self.scorer = Actor(self.features, self.hidden)
        slots = self.n_slots if self.per_slot_offsets else 1
        self.offset = self.param("offset", nn.initializers.zeros,
                                 (self.n_agents, slots, self.n_candidates))

    def score(self, obs: Observation) -> jax.Array:
        """The scorer's logits alone, (..., N, J, K)."""
        return self.scorer(obs)

    def agent_offsets(self, agents: jax.Array) -> jax.Array:
        """id_scale x offset of `agents` (A,) -> (A, J or 1, K)."""
        return self.id_scale * self.offset[agents]

    def __call__(self, obs: Observation, agents: jax.Array | None = None) -> jax.Array:
        if agents is None:
            agents = jnp.arange(obs.slot_mask.shape[-2])
        return self.score(obs) + self.agent_offsets(agents)


def make_actor(config, env_config) -> nn.Module:
    """The actor `config.actor` names (a `TrainConfig`), of width `config.hidden`, for the
    domain of `env_config`."""
    if config.actor == "mlp":
        return MLPActor(config.hidden)
    features = domain_of(env_config).pair_features
    if config.actor == "scorer-id":
        obs = jax.eval_shape(lambda: _observation(env_config))
        n, k = obs.candidates.shape[-3:-1]
        return IdActor(features, n, obs.slots.shape[-2], k, config.hidden, config.id_scale,
                       config.id_per_slot)
    return Actor(features, config.hidden, derived=config.actor != "scorer-raw")


def _observation(env_config) -> Observation:
    domain = domain_of(env_config)
    return domain.observe(domain.reset(jax.random.key(0), env_config), env_config)


class CentralCritic(nn.Module):
    """Value of the global state: entities (..., E, F) (the cloud's servers, the roads' links)
    and context (..., Fx) -> (...)."""

    hidden: int = 64

    @nn.compact
    def __call__(self, entities: jax.Array, context: jax.Array) -> jax.Array:
        e = nn.tanh(nn.Dense(self.hidden)(entities))
        e = nn.tanh(nn.Dense(self.hidden)(e))
        pooled = jnp.concatenate([jnp.mean(e, axis=-2), jnp.max(e, axis=-2), context], axis=-1)
        h = nn.tanh(nn.Dense(self.hidden)(pooled))
        return nn.Dense(1)(h)[..., 0]


class LocalCritic(nn.Module):
    """Per-agent value from the local observation -> (..., N)."""

    hidden: int = 64

    @nn.compact
    def __call__(self, obs: Observation) -> jax.Array:
        c = nn.tanh(nn.Dense(self.hidden)(obs.candidates))  # (..., N, K, H)
        c = nn.tanh(nn.Dense(self.hidden)(c))
        j = nn.tanh(nn.Dense(self.hidden)(obs.slots))  # (..., N, J, H)
        mask = obs.slot_mask[..., None].astype(j.dtype)
        j_pool = jnp.sum(j * mask, axis=-2) / jnp.maximum(jnp.sum(mask, axis=-2), 1.0)
        pooled = jnp.concatenate(
            [jnp.mean(c, axis=-2), jnp.max(c, axis=-2), j_pool, obs.context], axis=-1
        )
        h = nn.tanh(nn.Dense(self.hidden)(pooled))
        return nn.Dense(1)(h)[..., 0]
