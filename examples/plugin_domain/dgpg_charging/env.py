"""The charging domain's pure functions (`reset`, `step`, `observe`, `global_state`,
`pair_features`) on an explicit state, and its `DOMAIN`.

Every function is pure and of fixed shapes: `jit`, `vmap` over episodes and `lax.scan` over steps
apply to it unchanged. `config` is a `ChargingConfig` (a static argument of `jit`), `key` a JAX
PRNG key. Shapes: N agents, M resources, J slots per agent, K candidates per slot.
"""

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains import Domain
from dgpg.domains.observation import Observation, pair_views
from dgpg_charging import SPEC
from dgpg_charging.config import ChargingConfig

MINUTES = 60.0
"""Minutes of waiting per unit of load^2 / capacity: the unit in which cost and reward are told."""


@struct.dataclass
class State:
    """Everything the next step depends on; a pytree of fixed shapes."""

    capacity: jax.Array  # (M,) float32, drawn per episode
    candidates: jax.Array  # (N, K) int32, each agent's candidate resources, drawn per episode
    background: jax.Array  # (M,) float32, the load already on each resource this step
    units: jax.Array  # (N, J) float32, the sizes of the units to place, 0 where a slot is empty
    t: jax.Array  # () int32, the step


def _arrivals(key, config: ChargingConfig) -> jax.Array:
    """(N, J) unit sizes: exponential with mean 1 where a unit arrives, 0 elsewhere."""
    shape = (config.n_agents, config.units_per_step)
    k_on, k_size = jax.random.split(key)
    present = jax.random.bernoulli(k_on, config.arrival_prob, shape)
    return jnp.where(present, jax.random.exponential(k_size, shape), 0.0)


def _drift(key, background, capacity, config: ChargingConfig) -> jax.Array:
    """The next step's background load: an AR(1) process around background * capacity."""
    mean = config.background * capacity
    noise = config.volatility * mean * jax.random.normal(key, mean.shape)
    return jnp.maximum(mean + config.persistence * (background - mean) + noise, 0.0)


def placed(state: State, weights: jax.Array) -> jax.Array:
    """(M,) the work placed on each resource when unit (i, j) goes to candidate k with weight
    weights[i, j, k]: one-hot actions give the placement, probabilities its expectation."""
    work = jnp.sum(state.units[..., None] * weights, axis=1)  # (N, K)
    return jnp.zeros_like(state.capacity).at[state.candidates].add(work)


def reset(key, config: ChargingConfig) -> State:
    """A new episode: capacities, candidates, a first background and the first units."""
    k_capacity, k_candidates, k_background, k_units = jax.random.split(key, 4)
    M, K = config.n_resources, config.n_candidates
    capacity = jax.random.uniform(k_capacity, (M,), minval=0.5, maxval=1.5)
    candidates = jax.vmap(lambda k: jax.random.choice(k, M, (K,), replace=False))(
        jax.random.split(k_candidates, config.n_agents))
    background = _drift(k_background, config.background * capacity, capacity, config)
    return State(capacity=capacity, candidates=candidates.astype(jnp.int32),
                 background=background, units=_arrivals(k_units, config),
                 t=jnp.zeros((), jnp.int32))


def step(key, state: State, actions: jax.Array, config: ChargingConfig):
    """Place every unit on its chosen candidate (actions (N, J) in [0, K)); the reward is minus
    the step's cost in minutes of waiting, MINUTES x sum over resources of load^2 / capacity,
    over N."""
    load = state.background + placed(state, jax.nn.one_hot(actions, config.n_candidates))
    cost = MINUTES * jnp.sum(load**2 / state.capacity) / config.n_agents
    metrics = {"cost": cost, "peak": jnp.max(load / state.capacity)}
    k_background, k_units = jax.random.split(key)
    next_state = state.replace(
        background=_drift(k_background, state.background, state.capacity, config),
        units=_arrivals(k_units, config), t=state.t + 1)
    return next_state, -cost, metrics


def observe(state: State, config: ChargingConfig) -> Observation:
    """Per agent: its candidates' utilisation and capacity (K, 2), its units' sizes (J, 1), the
    time of the episode (1,) and which slots hold a unit."""
    capacity = state.capacity[state.candidates]
    utilisation = state.background[state.candidates] / capacity
    time = jnp.broadcast_to(state.t / config.episode_steps, (config.n_agents, 1))
    return Observation(candidates=jnp.stack([utilisation, capacity], axis=-1).astype(jnp.float32),
                       slots=state.units[..., None].astype(jnp.float32),
                       context=time.astype(jnp.float32), slot_mask=state.units > 0)


def global_state(state: State, config: ChargingConfig):
    """The central critic's input: every resource's utilisation and capacity (M, 2), and the
    time and the work to place per resource (2,)."""
    entities = jnp.stack([state.background / state.capacity, state.capacity], axis=-1)
    context = jnp.stack([state.t / config.episode_steps,
                         jnp.sum(state.units) / config.n_resources])
    return entities.astype(jnp.float32), context.astype(jnp.float32)


def pair_features(obs: Observation, derived: bool = True) -> jax.Array:
    """(N, J, K, F): the scorer's input for every (agent, slot, candidate): the raw features and,
    with `derived`, the candidate's utilisation once the unit is placed on it."""
    candidate, slot, raw = pair_views(obs)
    if not derived:
        return jnp.concatenate(raw, axis=-1)
    after = candidate[..., 0] + slot[..., 0] / candidate[..., 1]
    return jnp.concatenate([*raw, after[..., None]], axis=-1)


DOMAIN = Domain(spec=SPEC, reset=reset, step=step, observe=observe, global_state=global_state,
                pair_features=pair_features, train_metrics=("cost",))
