"""What a misspecified model believes of the cluster (`DomainSpec.model_errors`).

With `model_error` E > 0 the analytical models and the model-based heuristics (`analytical`,
`model-greedy`) see every server's CPU efficiency e_j, and so its capacity C_j e_j, off by a
factor; the environment, the agents' observations and the reference heuristic keep the truth.

    systematic  a factor per hardware generation, 1 + E u_g, with u a permutation of (+1, 0, -1)
                chosen by the seed (seed 0: generation-1 servers believed faster by E,
                generation-3 slower by E): an error tied to what the agents see, so it does not
                average out (the default)
    random      a factor per server, uniform in [1 - E, 1 + E], drawn from the seed: the
                agents cannot tell servers apart, so its effect averages out
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from dgpg.domains.cloud.config import EnvConfig
from dgpg.domains.cloud.env import EnvState

_PATTERNS = tuple(itertools.permutations((1.0, 0.0, -1.0)))


def generation_pattern(seed: int) -> tuple[float, float, float]:
    """u_g of the systematic error for generations 1, 2, 3 (seed 0: +1, 0, -1)."""
    return _PATTERNS[seed % len(_PATTERNS)]


def efficiency_factor(generation: jax.Array, config: EnvConfig) -> jax.Array:
    """The believed / true efficiency of each server, (M,), from its generation (M,) in 1..3."""
    size = config.model_error
    if config.model_error_kind == "systematic":
        u = jnp.asarray(generation_pattern(config.model_error_seed), jnp.float32)
        return 1.0 + size * u[generation - 1]
    key = jax.random.key(config.model_error_seed)
    return jax.random.uniform(key, generation.shape, jnp.float32, 1.0 - size, 1.0 + size)


def believed(state: EnvState, config: EnvConfig) -> EnvState:
    """The state as the model believes it: server efficiencies scaled by `efficiency_factor`
    (the state itself when the model is exact)."""
    if config.model_error == 0.0:
        return state
    sc = state.scenario
    factor = efficiency_factor(sc.generation, config)
    return state.replace(scenario=sc.replace(efficiency=sc.efficiency * factor))


def calibrated(state: EnvState, config: EnvConfig) -> EnvState:
    """The believed state corrected by what the cluster measured: each server that processed
    jobs last step has the efficiency that processing showed (`EnvState.measured_efficiency`);
    the others keep the belief. The truth wherever a server ran, whatever the error."""
    state = believed(state, config)
    sc, measured = state.scenario, state.measured_efficiency
    return state.replace(scenario=sc.replace(
        efficiency=jnp.where(measured > 0, measured, sc.efficiency)))
