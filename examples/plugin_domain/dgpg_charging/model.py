"""The analytical model of the charging domain: DG-PG's guidance.

`reference(state, probs)` gives every unit's marginal cost on each of its candidates: the
increase of the step's cost, sum over resources of load^2 / capacity, when the unit goes there,
every other unit of the step held at its expected placement under the current policy `probs`.
Units are placed independently, so the expected cost is linear in each unit's own probabilities
and that marginal cost is exactly its derivative: the guidance gradient of a unit points where
the expected cost of the step falls fastest. Work lasts one step, so the step's cost is all a
placement changes. (Were its effect to last, the marginal cost would be multiplied by the steps
it lasts.)

Units. The costs are in the problem's own units, minutes of waiting (`MINUTES` per unit of
load^2 / capacity), and are not rescaled: at the uniform policy the guidance loss is some tens
of minutes while PPO's policy loss is a few hundredths. This example keeps them so on purpose, to
show the defaults training such a model (DG-PG's adaptive guidance weight; see the plug-in
guide's section on how large the guidance should be, and `--set train.guidance_scale=slot`).
"""

import jax
import jax.numpy as jnp
from flax import struct

from dgpg_charging.config import ChargingConfig
from dgpg_charging.env import MINUTES, State, placed


@struct.dataclass
class Reference:
    """Every leaf leads with (N, J): the update subsamples agents and maps over steps."""

    cost: jax.Array  # (N, J, K) marginal cost above the unit's best candidate, in minutes
    mask: jax.Array  # (N, J) the slots that hold a unit


class MarginalCost:
    """The step's own cost, each unit's marginal cost with the other units at their expected
    placement (mean field), divided by a typical marginal cost (see the module docstring)."""

    def __init__(self, config: ChargingConfig):
        self.config = config

    def marginal(self, state: State, probs: jax.Array) -> jax.Array:
        """(N, J, K) the exact increase of sum load^2 / capacity when each unit goes to each of
        its candidates, the other units placed as `probs` (N, J, K) expects."""
        expected = state.background + placed(state, probs)  # (M,)
        size = state.units[..., None]  # (N, J, 1)
        capacity = state.capacity[state.candidates][:, None, :]  # (N, 1, K)
        others = expected[state.candidates][:, None, :] - size * probs  # without the unit
        return size * (2.0 * others + size) / capacity

    def reference(self, state: State, probs: jax.Array | None = None):
        c = self.config
        if probs is None:  # no policy yet: the other units spread uniformly
            probs = jnp.full((c.n_agents, c.units_per_step, c.n_candidates), 1.0 / c.n_candidates)
        delta = self.marginal(state, probs)
        cost = (delta - delta.min(axis=-1, keepdims=True)) * MINUTES
        return Reference(cost=cost, mask=state.units > 0)

    def guidance_loss(self, probs: jax.Array, reference: Reference) -> jax.Array:
        """The mean over units of the expected marginal cost above their best candidate: linear
        in `probs`, non-negative, 0 exactly where every unit is on a best candidate."""
        ref = jax.lax.stop_gradient(reference)
        per_unit = jnp.sum(probs * ref.cost, axis=-1)
        return jnp.sum(jnp.where(ref.mask, per_unit, 0.0)) / jnp.maximum(ref.mask.sum(), 1)
