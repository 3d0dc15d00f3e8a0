"""The aligned model of RoadNet: guidance by the team reward's own cost, TSTT (docs/design.md,
section 10).

The reward is minus TSTT over the period's vehicles, and the period's demand does not depend on
the routing, so the model's potential is TSTT(x) = sum_e x_e t_e(x_e) itself: alignment holds by
construction. For platoon j of agent i with q vehicles, taking candidate path k changes it by

    delta_k = TSTT(y + q 1_k) - TSTT(y) = sum_{e in k} [(y_e + q) t_e(y_e + q) - y_e t_e(y_e)],

exactly (no linearisation), where y are the link flows the platoon meets: the background plus
every other platoon of the period at its expected flow under the current policy (the
mean-field stand-in, `stand_in="mean-field"` of `dgpg.domains.cloud.aligned`): y = xbar - q P_ij,
xbar = background + sum over platoons of q pi on the paths' links, P_ij this platoon's own
expected share of each link. A path the agent lacks routes to path 0, so its probability mass
counts as path 0's and its delta is path 0's.

The guidance of a platoon is sum_k pi_k delta_k - min_k delta_k: linear in pi, non-negative, and
zero exactly when pi puts its mass on the minimising paths. Dividing by the best path's own
change, s = min_k delta_k (> 0: at least q times that path's free-flow time), makes the costs of
order one whatever the platoon's size, the network's units, its congestion and N: cost_k =
delta_k / min delta - 1 is how much more the path costs the system than the best one, relative
to it; `cost_cap` bounds it without changing which paths minimise it.

With `model_error` > 0 the model scores the paths with the links' believed free-flow times and
capacities (`dgpg.domains.roads.belief`); the flows it meets are the same.

`CalibratedRoadModel` (`--model calibrated`) corrects that belief from what the agents observe:
each agent sees last period's travel time on each of its paths, and the model knows last
period's link flows, so it can compare the time it believes a path took at those flows with
the time it took. Every path's TSTT changes are scaled by that ratio before the costs are
formed: a path the model believes faster than it was gets dearer. With an exact model the
ratio is 1 and the model is the aligned one.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains.roads.belief import believed_links
from dgpg.domains.roads.env import RoadConfig, RoadState
from dgpg.domains.roads.links import fold_missing, link_flows, link_times, path_increase, path_sum


@struct.dataclass
class RoadReference:
    """Per platoon and path: normalised TSTT change above the best path's."""

    cost: jax.Array  # (N, J, K) >= 0, zero on the minimising paths
    mask: jax.Array  # (N, J) bool, platoons present


def platoon_delta(state: RoadState, probs: jax.Array, config: RoadConfig) -> jax.Array:
    """delta_k (N, J, K): the exact TSTT change when each platoon takes path k, the other
    platoons at their expected flows under `probs` (N, J, K) (see the module docstring), on
    the links the model believes in (the truth unless `config.model_error` > 0)."""
    links = believed_links(config)
    p = fold_missing(probs, links)
    q = jnp.where(state.mask, state.platoons, 0.0)  # (N, J)
    mean_flows = link_flows(jnp.sum(q[..., None] * p, axis=1), links)  # (E + 1,)
    # this platoon's own expected share of link l of path k: q sum_k' p_k' [l of k on k']
    own = q[..., None, None] * jnp.einsum("njm,nklm->njkl", p, links.overlap.astype(p.dtype))
    met = mean_flows[links.path_links][:, None] - own  # (N, J, K, L)
    delta = path_increase(jnp.swapaxes(met, 0, 1), q.T, links)  # (J, N, K)
    delta = jnp.swapaxes(delta, 0, 1)
    return jnp.where(links.path_mask[:, None, :], delta, delta[..., :1])


@dataclass(frozen=True)
class AlignedRoadModel:
    """`AnalyticalModel` whose potential is TSTT, the others at the mean-field stand-in."""

    config: RoadConfig
    cost_cap: float = 50.0

    def reference(self, state: RoadState, probs: jax.Array | None = None) -> RoadReference:
        if probs is None:
            raise ValueError("the mean-field stand-in needs the policy's probabilities")
        return self.costs(state, platoon_delta(state, probs, self.config))

    def costs(self, state: RoadState, delta: jax.Array) -> RoadReference:
        """The reference of the paths' TSTT changes `delta` (N, J, K)."""
        best = jnp.min(delta, axis=-1, keepdims=True)
        cost = (delta - best) / jnp.maximum(best, 1e-12)
        cost = jnp.where(state.mask[..., None], jnp.minimum(cost, self.cost_cap), 0.0)
        return RoadReference(cost=cost, mask=state.mask)

    def guidance_loss(self, probs: jax.Array, reference: RoadReference) -> jax.Array:
        """Mean over present platoons of sum_k pi(k) cost_k; `probs` (N, J, K)."""
        ref = jax.lax.stop_gradient(reference)
        per_platoon = jnp.sum(probs * ref.cost, axis=-1)
        n = jnp.maximum(jnp.sum(ref.mask), 1)
        return jnp.sum(jnp.where(ref.mask, per_platoon, 0.0)) / n


def observed_ratio(state: RoadState, config: RoadConfig) -> jax.Array:
    """(N, K) last period's observed travel time of each path over the time the believed links
    give it at last period's link flows; 1 where a path is missing."""
    links = believed_links(config)
    believed = path_sum(link_times(jnp.append(state.link_flows, 0.0), links), links)
    ok = links.path_mask & (believed > 0) & (state.path_times > 0)
    return jnp.where(ok, state.path_times / jnp.where(ok, believed, 1.0), 1.0)


@dataclass(frozen=True)
class CalibratedRoadModel(AlignedRoadModel):
    """The aligned model with each path's believed cost scaled by its observed-to-believed
    travel-time ratio of last period (`observed_ratio`; see the module docstring)."""

    def reference(self, state: RoadState, probs: jax.Array | None = None) -> RoadReference:
        if probs is None:
            raise ValueError("the mean-field stand-in needs the policy's probabilities")
        delta = platoon_delta(state, probs, self.config)
        return self.costs(state, delta * observed_ratio(state, self.config)[:, None, :])
