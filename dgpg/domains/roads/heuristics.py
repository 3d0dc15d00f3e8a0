"""RoadNet's heuristic dispatchers (docs/design.md, section 10), on the same scenarios as the
learners.

Each is a pure function `(key, state, config) -> actions (N, J) int32` that can be `jit`ted:

    free-flow     every platoon on its agent's free-flow shortest path (all-or-nothing)
    fastest       every platoon on the path that was fastest in the last period (selfish)
    random        uniform over the paths the agent has
    so-sample     platoons sampled from the period's system-optimal split over the candidate
                  paths (the reference line, as best-fit-central is the cloud's)
    model-greedy  one central planner placing platoons one at a time on the path of least exact
                  TSTT increase given the background and the platoons already placed

`so-sample` reads the state's `so_flows`, the candidate-path system optimum of the period's
demand (gradient projection, `dgpg.domains.roads.system_optimum`, solved when the demand is
drawn and warm-started from the period before). An agent's platoons are drawn by systematic
sampling: one u ~ U[0, 1) per agent, platoon j of n takes the path whose cumulative share holds
(j + u) / n, so each platoon's path has exactly the optimal split as its distribution and the
agent's path flows are within one platoon of the optimum's.

`model-greedy` visits the platoons in slot-major order (slot 0 of every agent in agent order,
i.e. by decreasing demand, then slot 1, ...) and scores each path by the exact increase
sum_{e in k} [(x_e + q) t_e(x_e + q) - x_e t_e(x_e)] at the flows placed so far: incremental
assignment by marginal TSTT. With `model_error` > 0 it scores the paths with the links'
believed free-flow times and capacities (`dgpg.domains.roads.belief`), as the aligned model
does; the other four keep the truth (`so-sample` is the reference line, the others read only
the observation or the paths).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dgpg.domains.roads.belief import believed_links
from dgpg.domains.roads.env import RoadConfig, RoadState, links_of
from dgpg.domains.roads.links import link_increase, valid_actions

Heuristic = Callable[[jax.Array, RoadState, RoadConfig], jax.Array]


def _per_platoon(choice: jax.Array, config: RoadConfig) -> jax.Array:
    """One path per agent (N,) for all its J platoons, (N, J) int32."""
    return jnp.broadcast_to(choice[:, None], (config.n_agents, config.jobs_per_step)).astype(
        jnp.int32)


def free_flow(key: jax.Array, state: RoadState, config: RoadConfig) -> jax.Array:
    """Path 0, the free-flow shortest, for every platoon."""
    return jnp.zeros((config.n_agents, config.jobs_per_step), jnp.int32)


def fastest(key: jax.Array, state: RoadState, config: RoadConfig) -> jax.Array:
    """The path of least travel time at last period's flows, for every platoon of the agent."""
    valid = links_of(config).path_mask
    return _per_platoon(jnp.argmin(jnp.where(valid, state.path_times, jnp.inf), axis=1), config)


def random_paths(key: jax.Array, state: RoadState, config: RoadConfig) -> jax.Array:
    """Uniform over the agent's paths, independently per platoon."""
    valid = links_of(config).path_mask
    logits = jnp.where(valid, 0.0, -jnp.inf)[:, None, :]
    shape = (config.n_agents, config.jobs_per_step)
    return jax.random.categorical(key, logits, axis=-1, shape=shape).astype(jnp.int32)


def so_sample(key: jax.Array, state: RoadState, config: RoadConfig) -> jax.Array:
    """Platoons drawn from the period's system-optimal split by systematic sampling (absent
    platoons: path 0)."""
    links = links_of(config)
    flows = jnp.where(links.path_mask, state.so_flows, 0.0)
    total = jnp.sum(flows, axis=1, keepdims=True)
    K = config.max_candidates
    split = jnp.where(total > 0, flows / jnp.maximum(total, 1e-30), jax.nn.one_hot(0, K))
    cumulative = jnp.cumsum(split, axis=1)  # (N, K)
    count = jnp.maximum(jnp.sum(state.mask, axis=1), 1).astype(jnp.float32)  # (N,)
    u = jax.random.uniform(key, (config.n_agents,))
    points = (jnp.arange(config.jobs_per_step)[None, :] + u[:, None]) / count[:, None]
    paths = jnp.sum(cumulative[:, None, :] <= points[..., None], axis=-1)
    return valid_actions(jnp.where(state.mask, paths, 0), links)


def model_greedy(key: jax.Array, state: RoadState, config: RoadConfig) -> jax.Array:
    """Platoons placed one at a time on the path of least exact TSTT increase (see above), by
    the model's belief of the links (`dgpg.domains.roads.belief`; the truth at model_error 0)."""
    links = believed_links(config)
    N, J = config.n_agents, config.jobs_per_step
    sizes = jnp.where(state.mask, state.platoons, 0.0).T.reshape(-1)  # slot-major (J N,)
    agents = jnp.tile(jnp.arange(N), J)

    def place(x, platoon):
        agent, q = platoon
        ids = links.path_links[agent]  # (K, L)
        increase = link_increase(x[ids], q, links.t0[ids], links.b[ids], links.power[ids],
                                 links.capacity[ids]).sum(axis=-1)
        path = jnp.argmin(jnp.where(links.path_mask[agent], increase, jnp.inf))
        return x.at[ids[path]].add(q), path

    _, paths = jax.lax.scan(place, links.background, (agents, sizes))
    return paths.reshape(J, N).T.astype(jnp.int32)
