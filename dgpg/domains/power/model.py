"""The aligned model of PowerGrid: guidance by the team reward's own cost, the period's cost.

Every present block is placed somewhere, so the period's total load D, its economic dispatch
P(D), its served share s and its generation and unserved-load costs do not depend on where the
blocks go: by the envelope theorem a block of q MW adds lambda q to the generation cost wherever
it lands (lambda the system incremental cost), and the locational part of its cost is the
violation penalty's change through the PTDF. The model takes that change exactly (no
linearisation). For block j of agent i, of size q, placed on candidate bus k:

    delta_k = Cost(y + q 1_k) - Cost(y),
    flows(y + q 1_k) = fbar + s q (Phi ebar_ij - Phi_k),

where y is the load the block meets: the base load plus every other block of the period at its
expected placement under the current policy (the mean-field stand-in of
`dgpg.domains.roads.model`), y = dbar - q ebar_ij, dbar the expected bus loads, ebar_ij = sum_k
pi_k 1_k the block's own expected bus, fbar = Phi (Cg P(D) - s dbar) the expected flows and Phi_k
the PTDF column of bus k. The generation and unserved-load terms of delta_k are the same for
every k, so delta_k - min_k delta_k is the penalty's difference alone.

The guidance of a block is sum_k pi_k cost_k, cost_k = (delta_k - min_k delta_k) / (q p_ref):
linear in pi, non-negative, zero exactly where pi puts its mass on the minimising buses. The
division by the block's energy at the reference price p_ref makes it dimensionless (the extra
cost per MW of bus k over the best bus, in reference prices) and of order one whatever the
case, the block's size and N; `cost_cap` bounds it without changing which buses minimise it.

Under `market="opf"` the period's cost is the DC-OPF's, and the first-order change of that
cost when a block of q MW lands on bus k is its LMP there times q (the LMP is the cost's
derivative in the bus's load). The model clears the OPF once per period at the expected bus
loads dbar (every block at its expected placement, its own included: a first-order stand-in
for y, whose difference from dbar is one block) and takes

    cost_k = (lambda_k - min_k' lambda_k') / p_ref,

lambda the LMPs of that clearing at the block's candidate buses: the same normalisation (extra
cost per MW over the best bus, in reference prices), and the same for every block of an agent.

With `model_error` E > 0 the model prices the penalty on the grid it believes
(`dgpg.domains.power.belief.believed_net`: other line ratings, or lines it believes out of
service; `believed_clearing` under `market="opf"`), while the environment keeps the truth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains.power.belief import believed_clearing, believed_net
from dgpg.domains.power.clearing import clear
from dgpg.domains.power.env import PowerConfig, PowerState, line_penalty, net_of, period


@struct.dataclass
class PowerReference:
    """Per block and candidate bus: the normalised cost above the best bus's."""

    cost: jax.Array  # (N, J, K) >= 0, zero on the minimising buses
    mask: jax.Array  # (N, J) bool, blocks present


@functools.partial(jax.jit, static_argnums=2)
def block_penalty(state: PowerState, probs: jax.Array, config: PowerConfig) -> jax.Array:
    """(N, J, K) $/h: the period's violation cost when each block goes to candidate k, the
    other blocks at their expected placement under `probs` (N, J, K) (module docstring), on
    the grid the model believes (`dgpg.domains.power.belief`: the truth unless
    config.model_error > 0)."""
    net = believed_net(config)
    p = period(state, net)
    own = jnp.einsum("njk,nkl->njl", probs, net.cand_ptdf)  # Phi ebar per block
    shift = p.share * p.sizes  # (N, J): MW each block withdraws, served share included
    expected = p.free_flows - jnp.einsum("nj,njl->l", shift, own)
    flows = expected + shift[..., None, None] * (own[:, :, None, :] - net.cand_ptdf[:, None])
    return jnp.sum(line_penalty(flows, net), axis=-1)


def expected_load(state: PowerState, probs: jax.Array, config: PowerConfig) -> jax.Array:
    """(B,) MW: the base load plus every present block at its expected bus under `probs`
    (N, J, K)."""
    net = net_of(config)
    sizes = jnp.where(state.mask, state.blocks, 0.0)
    at_candidate = jnp.einsum("njk,nj->nk", probs, sizes)
    return state.base.at[net.candidates].add(at_candidate)


@functools.partial(jax.jit, static_argnums=2)
def candidate_lmp(state: PowerState, probs: jax.Array, config: PowerConfig) -> jax.Array:
    """(N, K) $/MWh: the LMPs at each agent's candidate buses of the DC-OPF the model believes
    (`believed_clearing`), cleared at the `expected_load` under `probs` (N, J, K)."""
    result = clear(believed_clearing(config), expected_load(state, probs, config))
    return result.lmp[net_of(config).candidates]


@dataclass(frozen=True)
class AlignedPowerModel:
    """`AnalyticalModel` whose potential is the period's cost, the others at the mean-field
    stand-in."""

    config: PowerConfig
    cost_cap: float = 50.0

    def reference(self, state: PowerState, probs: jax.Array | None = None) -> PowerReference:
        if probs is None:
            raise ValueError("the mean-field stand-in needs the policy's probabilities")
        if self.config.market == "opf":
            lmp = candidate_lmp(state, probs, self.config)
            excess = (lmp - jnp.min(lmp, axis=-1, keepdims=True)) / net_of(self.config).ref_price
            cost = jnp.broadcast_to(excess[:, None, :], state.blocks.shape + excess.shape[-1:])
            cost = jnp.where(state.mask[..., None], jnp.minimum(cost, self.cost_cap), 0.0)
            return PowerReference(cost=cost, mask=state.mask)
        net = believed_net(self.config)
        penalty = block_penalty(state, probs, self.config)
        energy = jnp.maximum(jnp.where(state.mask, state.blocks, 0.0), 1e-9) * net.ref_price
        cost = (penalty - jnp.min(penalty, axis=-1, keepdims=True)) / energy[..., None]
        cost = jnp.where(state.mask[..., None], jnp.minimum(cost, self.cost_cap), 0.0)
        return PowerReference(cost=cost, mask=state.mask)

    def guidance_loss(self, probs: jax.Array, reference: PowerReference) -> jax.Array:
        """Mean over present blocks of sum_k pi(k) cost_k; `probs` (N, J, K)."""
        ref = jax.lax.stop_gradient(reference)
        per_block = jnp.sum(probs * ref.cost, axis=-1)
        n = jnp.maximum(jnp.sum(ref.mask), 1)
        return jnp.sum(jnp.where(ref.mask, per_block, 0.0)) / n
