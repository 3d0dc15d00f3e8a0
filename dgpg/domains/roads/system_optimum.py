"""The system optimum over the agents' candidate paths, in JAX.

Minimise TSTT(x) = sum_e x_e t_e(x_e), x = background + sum over agents and paths of the path
flows f_ik, subject to f_ik >= 0 on the paths agent i has and sum_k f_ik = d_i. The solver is
path-based gradient projection (Jayakrishnan, Tsai, Prashker and Rajadhyaksha, Transportation
Research Record 1443 (1994) 75-83): every agent at once moves flow from each path k to its
path s of least marginal cost g, by (g_k - g_s) / h_ks with h_ks the second derivative of TSTT
along that move (the marginal-cost slopes summed over the links of k and s not shared); the
moves of all agents are scaled by one step in {1, 1/2, ..., 1/64} chosen by evaluating TSTT at
each (a parallel line search), and a step that does not lower TSTT is not taken, so TSTT never
rises. The background is held fixed (it does not react), so for a network whose every OD pair
is an agent this is the system optimum restricted to the candidate paths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dgpg.domains.roads.links import (
    Links,
    link_flows,
    link_marginal,
    link_marginal_slope,
    path_sum,
    total_travel_time,
)

STEPS = tuple(2.0 ** -i for i in range(7))
"""Trial step lengths of the line search."""


def relative_gap(path_flows: jax.Array, links: Links) -> jax.Array:
    """(sum f g - sum_i d_i min_k g_ik) / sum f g with g the paths' marginal costs: zero at
    the candidate-path system optimum. path_flows (N, K)."""
    g = path_sum(link_marginal(link_flows(path_flows, links), links), links)
    total = jnp.sum(jnp.where(links.path_mask, path_flows * g, 0.0))
    best = jnp.min(jnp.where(links.path_mask, g, jnp.inf), axis=1)
    return (total - jnp.sum(jnp.sum(path_flows, axis=1) * best)) / jnp.maximum(total, 1e-30)


def solve_split(demand: jax.Array, start: jax.Array, links: Links,
                iterations: int | jax.Array) -> jax.Array:
    """Path flows (N, K) of the candidate-path system optimum for demands (N,), starting from
    the split `start` (N, K) (rows renormalised over the paths each agent has), after
    `iterations` gradient-projection steps."""
    valid = links.path_mask
    N, K = valid.shape
    start = jnp.where(valid, start, 0.0)
    start = jnp.where(jnp.sum(start, axis=1, keepdims=True) > 0, start,
                      jax.nn.one_hot(jnp.zeros(N, jnp.int32), K))
    split = start / jnp.sum(start, axis=1, keepdims=True)
    steps = jnp.asarray(STEPS, jnp.float32)

    def objective(f):
        return total_travel_time(link_flows(f, links), links)

    def iterate(_, carry):
        f, value = carry
        x = link_flows(f, links)
        g = jnp.where(valid, path_sum(link_marginal(x, links), links), jnp.inf)
        s = jnp.argmin(g, axis=1)
        g_s = jnp.take_along_axis(g, s[:, None], axis=1)
        slope = link_marginal_slope(x, links)[links.path_links]  # (N, K, L)
        h = jnp.sum(slope, axis=-1)
        shared_with_s = jnp.take_along_axis(links.overlap, s[:, None, None, None], axis=3)[..., 0]
        h_ks = h + jnp.take_along_axis(h, s[:, None], axis=1) - 2.0 * jnp.sum(
            slope * shared_with_s, axis=-1)
        off = valid & (jnp.arange(K)[None, :] != s[:, None])
        shift = jnp.where(off, (g - g_s) / jnp.maximum(h_ks, 1e-12), 0.0)
        best_path = jax.nn.one_hot(s, K)

        def moved(step):
            rest = jnp.where(off, jnp.maximum(0.0, f - step * shift), 0.0)
            return rest + best_path * (demand - jnp.sum(rest, axis=1))[:, None]

        trials = jax.vmap(moved)(steps)
        values = jax.vmap(objective)(trials)
        pick = jnp.argmin(values)
        better = values[pick] < value
        return (jnp.where(better, trials[pick], f), jnp.where(better, values[pick], value))

    f0 = split * demand[:, None]
    f, _ = jax.lax.fori_loop(0, iterations, iterate, (f0, objective(f0)))
    return f
