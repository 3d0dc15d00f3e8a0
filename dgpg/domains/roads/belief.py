"""What a misspecified model believes of the road network (`DomainSpec.model_errors`).

With `model_error` E > 0 the analytical model (`AlignedRoadModel`, DG-PG's guidance) and the
model-based heuristic `model-greedy` see every link's free-flow time t0_e and capacity c_e off
by factors, t0_e a_e and c_e b_e, in the BPR latency t_e(x) = t0_e (1 + b (x / c_e)^p) of the
TSTT they score paths by. The environment (its flows, times, reward and the period's system
optimum), the agents' observations and the reference heuristic `so-sample` keep the truth;
`free-flow`, `fastest` and `random` read only the observation and are unaffected. The
background's flows and the candidate paths are data of the scenario, not of the model: they
stay as they are.

    systematic  a factor per capacity class: a link is high-capacity when c_e is at least the
                mean capacity of the network's links (the grid city's arterials; Sioux Falls'
                freeways and arterials) and low-capacity otherwise. With u_e = s on the
                low-capacity links and -s on the high-capacity ones, a_e = 1 - E u_e and
                b_e = 1 + E u_e: one class is believed faster and larger by E, the other slower
                and smaller by E. The seed picks the sign s: +1 for an even seed (seed 0: the
                big roads believed slower and smaller than they are, the local streets faster
                and larger), -1 for an odd one (the big roads believed better). The default.
    random      independent factors per link, a_e = 1 + E v_e and b_e = 1 + E w_e with v_e,
                w_e uniform in [-1, 1] drawn from the seed (the same draw for every E, so E
                scales one error pattern).

Why the capacity class. A link's capacity is what the agents' observations reflect (the rise
of a path's marginal cost per platoon is sum_e t0_e b p (p + 1) (x_e / c_e)^(p - 1) / c_e, and
the critic sees every link's capacity and free-flow time; in the grid city the big roads are
also the fast ones per block), so the error is tied to something every agent sees
alike, and it has the same sign on every path through a class, for every agent and every
period: it does not average out over a path's links, over agents or over time. Seed 0 is the
more harmful sign: believed-worse big roads move the free-flow ranking itself (on the grid city
an arterial block, 0.6 min, is believed 0.78 min and a street block, 1 min, 0.7 min, so
street paths look fastest even on an empty network), and the believed-better streets'
congestion term t0 b (x / c)^p is believed (1 - E) / (1 + E)^p of the truth, 0.25 at E = 0.3
with p = 4, so a rule that follows the model keeps loading the small roads well past the point
where they stop paying: its ranking of paths is biased the same way everywhere, which is what
pins a model-following policy to a worse routing. In the random family a path's believed cost
sums independent errors over its links and every class of link is believed too good as often
as too bad, so the greedy rule's errors partly cancel (tests/test_model_error_roads.py
measures both).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.roads.config import RoadConfig
from dgpg.domains.roads.env import links_of, road_data
from dgpg.domains.roads.links import Links


def class_sign(seed: int) -> float:
    """s of the systematic error: +1 (low-capacity links believed better, high-capacity ones
    worse) for an even seed, -1 (the reverse) for an odd one."""
    return 1.0 if seed % 2 == 0 else -1.0


def high_capacity(capacity: np.ndarray) -> np.ndarray:
    """(E,) bool: the links whose capacity is at least the mean of the network's links'."""
    capacity = np.asarray(capacity, np.float64)
    return capacity >= capacity.mean()


def link_factors(config: RoadConfig) -> tuple[np.ndarray, np.ndarray]:
    """The believed / true free-flow time a_e and capacity b_e of each of the network's E links,
    (E,) float64 each (all ones when `model_error` is 0); see the module docstring."""
    capacity = road_data(config).network.capacity
    size = config.model_error
    if config.model_error_kind == "systematic":
        u = np.where(high_capacity(capacity), -1.0, 1.0) * class_sign(config.model_error_seed)
        return 1.0 - size * u, 1.0 + size * u
    draw = np.random.default_rng(config.model_error_seed).uniform(-1.0, 1.0,
                                                                   (2, capacity.size))
    return 1.0 + size * draw[0], 1.0 + size * draw[1]


def believed_links(config: RoadConfig) -> Links:
    """The configuration's links as the model believes them: `links_of(config)` with t0 and
    capacity scaled by `link_factors` (the dummy link unchanged); `links_of(config)` itself
    when the model is exact."""
    if config.model_error == 0.0:
        return links_of(config)
    return _believed_links(config)


@functools.lru_cache(maxsize=16)
def _believed_links(config: RoadConfig) -> Links:
    links = links_of(config)
    t0_factor, capacity_factor = link_factors(config)
    with jax.ensure_compile_time_eval():  # concrete arrays even when first built in a trace
        return links.replace(
            t0=links.t0 * jnp.asarray(np.append(t0_factor, 1.0), jnp.float32),
            capacity=links.capacity * jnp.asarray(np.append(capacity_factor, 1.0), jnp.float32),
        )
