"""The link model of RoadNet in JAX: BPR times, marginal costs and exact TSTT increases.

Links are held as `Links`, arrays of shape (E + 1,): the network's E links and one dummy link of
zero time (index E) to which the padding of the candidate-path arrays points, so a gather over a
path's links and a scatter of path flows need no masks. Flows are vehicles per period, times in
the network's units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dgpg.domains.roads.network import RoadNetwork


@struct.dataclass
class Links:
    """Links (E + 1,) and the agents' candidate paths (N, K, ...) as JAX arrays."""

    t0: jax.Array  # free-flow time
    b: jax.Array  # BPR coefficient
    power: jax.Array  # BPR power
    capacity: jax.Array  # capacity (vehicles per period)
    background: jax.Array  # background flow
    path_links: jax.Array  # (N, K, L) int32 link ids, padding = E
    overlap: jax.Array  # (N, K, L, K) bool, link l of path k lies on path k'
    path_mask: jax.Array  # (N, K) bool, the agent has path k

    @classmethod
    def build(cls, network: RoadNetwork, background: np.ndarray, path_links: np.ndarray,
              overlap: np.ndarray, path_mask: np.ndarray) -> Links:
        """From the network, background link flows (E,), padded path links (N, K, L), overlap
        (N, K, L, K) and path mask (N, K)."""
        def pad(values, fill):
            return jnp.asarray(np.append(values, fill), jnp.float32)

        return cls(
            t0=pad(network.free_flow_time, 0.0), b=pad(network.b, 0.0),
            power=pad(network.power, 1.0), capacity=pad(network.capacity, 1.0),
            background=pad(background, 0.0), path_links=jnp.asarray(path_links, jnp.int32),
            overlap=jnp.asarray(overlap), path_mask=jnp.asarray(path_mask),
        )

    @property
    def n_links(self) -> int:
        """E + 1 (the dummy link included)."""
        return self.t0.shape[0]


def link_times(x: jax.Array, links: Links) -> jax.Array:
    """BPR travel time t_e(x_e) = t0 (1 + b (x / c)^p) of flows (..., E + 1)."""
    return links.t0 * (1.0 + links.b * jnp.power(jnp.maximum(x, 0.0) / links.capacity,
                                                   links.power))


def link_marginal(x: jax.Array, links: Links) -> jax.Array:
    """Marginal cost d(x t(x))/dx = t0 (1 + b (p + 1) (x / c)^p), (..., E + 1)."""
    ratio = jnp.maximum(x, 0.0) / links.capacity
    return links.t0 * (1.0 + links.b * (links.power + 1.0) * jnp.power(ratio, links.power))


def link_marginal_slope(x: jax.Array, links: Links) -> jax.Array:
    """d^2(x t(x))/dx^2 = t0 b p (p + 1) (x / c)^(p - 1) / c, (..., E + 1); at x = 0 it is 0
    for p > 1 (and a finite 0 stands in for p < 1)."""
    p = links.power
    ratio = jnp.maximum(x, 0.0) / links.capacity
    safe = jnp.where(ratio > 0, ratio, 1.0)
    value = jnp.where(ratio > 0, jnp.power(safe, p - 1.0), jnp.where(p == 1.0, 1.0, 0.0))
    return links.t0 * links.b * p * (p + 1.0) * value / links.capacity


def link_increase(y: jax.Array, q: jax.Array, t0: jax.Array, b: jax.Array, power: jax.Array,
                  capacity: jax.Array) -> jax.Array:
    """Exact TSTT increase (y + q) t(y + q) - y t(y) of q more vehicles on links carrying y, for
    link parameters t0, b, power, capacity; all broadcast together.

    Computed as t0 q + t0 b c [(u + r)^(p+1) - u^(p+1)], u = y / c, r = q / c, with the
    difference formed by expm1 / log1p, so a small platoon on a busy link loses no precision.
    """
    u, r = jnp.maximum(y, 0.0) / capacity, q / capacity
    safe = jnp.where(u > 0, u, 1.0)
    grown = jnp.where(
        u > 0,
        jnp.power(safe, power + 1.0) * jnp.expm1((power + 1.0) * jnp.log1p(r / safe)),
        jnp.power(r, power + 1.0),
    )
    return t0 * q + t0 * b * capacity * grown


def path_increase(y: jax.Array, q: jax.Array, links: Links) -> jax.Array:
    """Exact TSTT increase sum_l [(y_l + q) t(y_l + q) - y_l t(y_l)] of q more vehicles on each
    candidate path, y (..., N, K, L) the flows met on the paths' links, q (..., N) -> (..., N, K).
    """
    ids = links.path_links
    inc = link_increase(y, q[..., None, None], links.t0[ids], links.b[ids], links.power[ids],
                        links.capacity[ids])
    return jnp.sum(inc, axis=-1)


def link_flows(path_flows: jax.Array, links: Links) -> jax.Array:
    """Background plus path flows (N, K) on their links: (E + 1,), the dummy link last."""
    ids = links.path_links
    values = jnp.broadcast_to(path_flows[..., None], ids.shape)
    added = jax.ops.segment_sum(values.reshape(-1), ids.reshape(-1), num_segments=links.n_links)
    return links.background + added


def path_sum(link_values: jax.Array, links: Links) -> jax.Array:
    """Sum over each candidate path's links of a per-link quantity (E + 1,) -> (N, K)."""
    return jnp.sum(link_values[links.path_links], axis=-1)


def total_travel_time(x: jax.Array, links: Links) -> jax.Array:
    """TSTT = sum_e x_e t_e(x_e) of link flows (..., E + 1)."""
    return jnp.sum(x * link_times(x, links), axis=-1)


def valid_actions(actions: jax.Array, links: Links) -> jax.Array:
    """Actions (N, J) clipped to [0, K), a path the agent lacks replaced by path 0."""
    K = links.path_mask.shape[1]
    actions = jnp.clip(actions.astype(jnp.int32), 0, K - 1)
    valid = jnp.take_along_axis(links.path_mask, actions, axis=1)
    return jnp.where(valid, actions, 0)


def fold_missing(probs: jax.Array, links: Links) -> jax.Array:
    """Path probabilities (N, J, K) with the mass of missing paths moved to path 0, the path
    such an action takes."""
    valid = links.path_mask[:, None, :]
    lost = jnp.sum(jnp.where(valid, 0.0, probs), axis=-1)
    kept = jnp.where(valid, probs, 0.0)
    return kept.at[..., 0].add(lost)


def platoon_path_flows(actions: jax.Array, platoons: jax.Array, mask: jax.Array,
                       links: Links) -> jax.Array:
    """Path flows (N, K) of platoons (N, J) of the given sizes on their chosen paths (actions
    already valid); absent platoons carry nothing."""
    K = links.path_mask.shape[1]
    load = jnp.where(mask, platoons, 0.0)[..., None] * jax.nn.one_hot(actions, K)
    return jnp.sum(load, axis=1)
