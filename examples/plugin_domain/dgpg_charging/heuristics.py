"""The charging domain's heuristics: `(key, state, config) -> actions (N, J)` int32 in [0, K).
`greedy` is the reference that every training run is compared with."""

import jax
import jax.numpy as jnp

from dgpg_charging.config import ChargingConfig
from dgpg_charging.env import State
from dgpg_charging.model import MarginalCost


def greedy(key, state: State, config: ChargingConfig) -> jax.Array:
    """The model's greedy rule: every unit to its candidate of least marginal cost, the other
    units of the step spread uniformly over their candidates."""
    cost = MarginalCost(config).reference(state).cost
    return jnp.argmin(cost, axis=-1).astype(jnp.int32)


def random_choice(key, state: State, config: ChargingConfig) -> jax.Array:
    """Every unit to a candidate drawn uniformly."""
    return jax.random.randint(key, state.units.shape, 0, config.n_candidates, dtype=jnp.int32)
