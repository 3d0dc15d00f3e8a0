"""RoadNet: static traffic assignment as a cooperative multi-agent environment (docs/design.md,
section 10).

N dispatchers, one per origin-destination (OD) pair, route their pair's demand over a shared road
network. Pure functions in the style of `dgpg.domains.cloud.env`:

    state = reset(key, config)                        # the day's phases, the first period's demand
    obs = observe(state, config)                      # per-agent local observations
    state, reward, metrics = step(key, state, actions, config)

A step is one period of the day (`episode_steps` periods; the tide's period is `tide_period`
steps). Agent i's demand in period t is

    d_i(t) = demand_scale * D_i * (1 + tide_amplitude * sin(2 pi (t + phi_i) / tide_period)) * eps,

D_i its pair's trips in the network's demand matrix, phi_i = phi + phase_spread * tide_period *
(u_i - 1/2) with the day's phase phi ~ U[0, tide_period) and u_i ~ U[0, 1) drawn at reset, and
eps lognormal with mean 1 and log-standard deviation `demand_noise`, drawn per agent and period.
The demand travels in platoons of equal size: n_i(t) = clip(ceil(d_i(t) / q_i), 1, J) platoons
of d_i(t) / n_i(t) vehicles, q_i = demand_scale D_i (1 + tide_amplitude) / J the agent's peak
platoon, so all J slots are used at the crest of the tide and fewer in the trough (the mask
says which are present). Demand is in the data's flow units (vehicles per hour for the grid
city and Sioux Falls), one period's flow. Each platoon takes one of the agent's K candidate
paths (the K shortest loopless paths by free-flow time; path 0 is the free-flow shortest); an
action on a path the pair does not have (fewer than K paths) takes path 0.

Agents are the N OD pairs of largest demand (ties by origin, then destination); the other pairs
are background traffic, constant over the day at its tidal mean demand_scale D and routed at
its own user equilibrium (computed once per configuration, relative gap 1e-4, without the
agents), so the agents meet a realistically loaded network whose background does not react.

Link flows are the background's plus every platoon's on its path's links; link times follow the
network's BPR latencies. The team reward is minus the mean travel time of the period's vehicles,
-TSTT / (agents' demand + background demand), TSTT = sum_e x_e t_e(x_e) (time units of the data:
minutes for the grid city, 0.01 h for Sioux Falls). The state also holds the period's system
optimum restricted to the candidate paths (the agents' best possible routing with the
background fixed; `dgpg.domains.roads.system_optimum`), solved when the period's demand is drawn
and warm-started from the period before; each step reports its TSTT beside the agents'.

The network, the agents' candidate paths and the background flows are built in Python once per
configuration (`road_data`) and enter the compiled code as constants.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dgpg.domains.observation import Observation, pair_views
from dgpg.domains.roads.assignment import assign
from dgpg.domains.roads.config import (  # noqa: F401 (re-exported)
    RoadConfig,
    load_network,
    od_pair_count,
    reachable_pairs,
)
from dgpg.domains.roads.links import (
    Links,
    link_flows,
    link_marginal,
    link_marginal_slope,
    link_times,
    path_sum,
    platoon_path_flows,
    total_travel_time,
    valid_actions,
)
from dgpg.domains.roads.network import (
    CandidatePaths,
    RoadNetwork,
    candidate_paths,
)
from dgpg.domains.roads.system_optimum import solve_split

N_CANDIDATE_FEATURES = 5
N_JOB_FEATURES = 2
N_CONTEXT_FEATURES = 4
N_LINK_FEATURES = 4
N_DERIVED_FEATURES = 3
BACKGROUND_GAP = 1e-4
"""Relative gap of the background's user equilibrium."""
RESET_SO_ITERATIONS = 4
"""The first period's system optimum, solved from the free-flow paths, takes this many times
`so_iterations` steps (the later ones start from the period before)."""


# --------------------------------------------------------------------------- static data


@dataclass(frozen=True, eq=False)
class RoadData:
    """What a configuration's compiled code holds as constants (NumPy arrays).

    network: the road network (E links). paths: the agents' candidate paths, row i agent i
    (`CandidatePaths`; its `demand` is the agents' tidal-mean demand, vehicles per period).
    background_flows (E,): the background's link flows; background_demand: its vehicles per
    period. path_links (N, K, L) int: link ids, padded with E (a dummy link of zero time).
    overlap (N, K, L, K) bool: whether link l of path k is on path k' of the same agent.
    free_flow_path_time (N, K): free-flow time of each path, 0 where the path is missing.
    """

    network: RoadNetwork
    paths: CandidatePaths
    background_flows: np.ndarray
    background_demand: float
    path_links: np.ndarray
    overlap: np.ndarray
    free_flow_path_time: np.ndarray

    @property
    def agent_demand(self) -> np.ndarray:
        """(N,) tidal-mean demand of each agent, vehicles per period."""
        return self.paths.demand

    @property
    def path_mask(self) -> np.ndarray:
        """(N, K) bool, True where the agent has path k."""
        return self.paths.path_mask


def road_data(config: RoadConfig) -> RoadData:
    """The configuration's static data (cached on the fields it depends on)."""
    return _road_data(config.network, config.grid_rows, config.grid_cols, config.grid_seed,
                      config.n_agents, config.max_candidates, float(config.demand_scale))


@functools.lru_cache(maxsize=16)
def _road_data(network_name: str, grid_rows: int, grid_cols: int, grid_seed: int,
               n_agents: int, k: int, demand_scale: float) -> RoadData:
    network = load_network(network_name, grid_rows, grid_cols, grid_seed)
    origin, destination = reachable_pairs(network)
    demand = network.demand[origin, destination]
    order = np.lexsort((destination, origin, -demand))[:n_agents]
    a_origin, a_destination = origin[order], destination[order]

    # candidate paths of the agents' pairs only (the k-shortest search is slow per pair)
    only = np.zeros_like(network.demand)
    only[a_origin, a_destination] = 1.0
    sub = RoadNetwork(init_node=network.init_node, term_node=network.term_node,
                      capacity=network.capacity, free_flow_time=network.free_flow_time,
                      b=network.b, power=network.power, demand=only, n_nodes=network.n_nodes,
                      n_zones=network.n_zones, first_thru_node=network.first_thru_node,
                      name=network.name)
    found = candidate_paths(sub, k)
    row = {(int(o), int(d)): i for i, (o, d) in enumerate(found.od_pairs)}
    rows = np.array([row[(int(o) + 1, int(d) + 1)] for o, d in zip(a_origin, a_destination,
                                                                      strict=True)])
    paths = CandidatePaths(
        od_pairs=found.od_pairs[rows], demand=demand_scale * demand[order],
        path_links=found.path_links[rows], path_mask=found.path_mask[rows],
        free_flow_time=found.free_flow_time[rows], n_links=network.n_links,
    )

    # background: the other reachable pairs at their own user equilibrium
    background = np.zeros_like(network.demand)
    background[origin, destination] = demand_scale * demand
    background[a_origin, a_destination] = 0.0
    bg_network = RoadNetwork(init_node=network.init_node, term_node=network.term_node,
                             capacity=network.capacity, free_flow_time=network.free_flow_time,
                             b=network.b, power=network.power, demand=background,
                             n_nodes=network.n_nodes, n_zones=network.n_zones,
                             first_thru_node=network.first_thru_node, name=network.name)
    bg_flows = (assign(bg_network, "ue", gap=BACKGROUND_GAP) if background.sum() > 0
                else np.zeros(network.n_links))

    E = network.n_links
    padded = np.where(paths.path_links >= 0, paths.path_links, E)
    on = (paths.path_links[:, :, :, None, None] == paths.path_links[:, None, None, :, :])
    overlap = on.any(axis=-1) & (paths.path_links >= 0)[..., None]

    free_flow = np.where(paths.path_mask, paths.free_flow_time, 0.0)
    for array in (bg_flows, padded, overlap, free_flow):
        array.setflags(write=False)
    return RoadData(
        network=network, paths=paths, background_flows=bg_flows,
        background_demand=float(background.sum()), path_links=padded, overlap=overlap,
        free_flow_path_time=free_flow,
    )


def links_of(config: RoadConfig) -> Links:
    """The configuration's links and candidate paths as JAX arrays (constants under `jit`)."""
    return _links(config.network, config.grid_rows, config.grid_cols, config.grid_seed,
                  config.n_agents, config.max_candidates, float(config.demand_scale))


@functools.lru_cache(maxsize=16)
def _links(*key) -> Links:
    data = _road_data(*key)
    with jax.ensure_compile_time_eval():  # concrete arrays even when first built in a trace
        return Links.build(data.network, data.background_flows, data.path_links, data.overlap,
                           data.path_mask)


_solve_split = jax.jit(solve_split)  # compiled once per shape when called eagerly


def period_optimum(demand: jax.Array, start: jax.Array, config: RoadConfig,
                   iterations: int | None = None) -> jax.Array:
    """Path flows (N, K) of the candidate-path system optimum for the agents' demand (N,) of a
    period: gradient projection (`dgpg.domains.roads.system_optimum`) from the split of the path
    flows `start` (N, K), `so_iterations` steps unless `iterations` says otherwise."""
    steps = config.so_iterations if iterations is None else iterations
    return _solve_split(demand, start, links_of(config), jnp.asarray(steps, jnp.int32))


# --------------------------------------------------------------------------- state and demand


@struct.dataclass
class RoadState:
    """One period's state. Shapes: N agents, J platoon slots, K paths, E links."""

    t: jax.Array  # () int32, period within the episode
    day_phase: jax.Array  # () float32, the day's tidal phase (steps)
    phase: jax.Array  # (N,) float32, each agent's tidal phase (steps)
    demand: jax.Array  # (N,) float32, this period's demand (vehicles)
    platoons: jax.Array  # (N, J) float32, platoon sizes (vehicles), 0 where absent
    mask: jax.Array  # (N, J) bool, platoons present
    link_flows: jax.Array  # (E,) float32, last period's link flows (vehicles)
    path_times: jax.Array  # (N, K) float32, last period's path travel times, 0 where missing
    so_flows: jax.Array  # (N, K) float32, this period's candidate-path system optimum (vehicles)


def tide(t: jax.Array, phase: jax.Array, config: RoadConfig) -> jax.Array:
    """Noise-free demand multiplier 1 + A sin(2 pi (t + phase) / period), shape of `phase`."""
    return 1.0 + config.tide_amplitude * jnp.sin(2.0 * jnp.pi * (t + phase) / config.tide_period)


def _draw_demand(key: jax.Array, t: jax.Array, phase: jax.Array, config: RoadConfig):
    """This period's demand (N,) and its platoons (N, J) with their mask."""
    base = jnp.asarray(road_data(config).agent_demand, jnp.float32)
    sigma = config.demand_noise
    noise = jnp.exp(sigma * jax.random.normal(key, phase.shape) - 0.5 * sigma**2)
    demand = base * tide(t, phase, config) * noise
    J = config.jobs_per_step
    unit = base * (1.0 + config.tide_amplitude) / J
    count = jnp.clip(jnp.ceil(demand / jnp.maximum(unit, 1e-30) - 1e-4), 1, J)
    mask = (jnp.arange(J)[None, :] < count[:, None]) & (demand[:, None] > 0)
    platoons = jnp.where(mask, (demand / count)[:, None], 0.0)
    return demand, platoons, mask


def reset(key: jax.Array, config: RoadConfig) -> RoadState:
    """Draw the day's phases and the first period's demand; last period's flows are the
    background plus this demand split equally over each agent's paths. The period's system
    optimum is solved from the free-flow paths (RESET_SO_ITERATIONS x `so_iterations` steps)."""
    links = links_of(config)
    k_day, k_phase, k_demand = jax.random.split(key, 3)
    N = config.n_agents
    day_phase = jax.random.uniform(k_day, (), jnp.float32) * config.tide_period
    spread = config.phase_spread * config.tide_period
    phase = day_phase + spread * (jax.random.uniform(k_phase, (N,), jnp.float32) - 0.5)
    t = jnp.zeros((), jnp.int32)
    demand, platoons, mask = _draw_demand(k_demand, t, phase, config)
    valid = links.path_mask.astype(jnp.float32)
    split = valid / jnp.sum(valid, axis=1, keepdims=True)
    x = link_flows(demand[:, None] * split, links)
    free_flow_paths = jax.nn.one_hot(jnp.zeros(N, jnp.int32), config.max_candidates)
    so_flows = period_optimum(demand, free_flow_paths, config,
                              RESET_SO_ITERATIONS * config.so_iterations)
    return RoadState(
        t=t, day_phase=day_phase, phase=phase, demand=demand, platoons=platoons, mask=mask,
        link_flows=x[:-1], path_times=_path_times(x, links), so_flows=so_flows,
    )


def _path_times(x: jax.Array, links: Links) -> jax.Array:
    return jnp.where(links.path_mask, path_sum(link_times(x, links), links), 0.0)


def _padded(flows: jax.Array) -> jax.Array:
    """Link flows (E,) with the dummy link appended."""
    return jnp.append(flows, 0.0)


# --------------------------------------------------------------------------- step


def step(
    key: jax.Array, state: RoadState, actions: jax.Array, config: RoadConfig
) -> tuple[RoadState, jax.Array, dict[str, jax.Array]]:
    """Route the period's platoons: `actions` (N, J) int, a path index in [0, K) per platoon
    (a missing path means path 0; absent platoons are ignored).

    Returns the next period's state, the team reward -TSTT / demand (time units per vehicle)
    and the period's metrics (scalars): `reward`; `tstt` (vehicles x time); `so_tstt`, the
    candidate-path system optimum's TSTT for this period's demand and `so_reward`, the reward
    of routing at it (the best reward of the period, to the solver's accuracy); `demand` (all
    vehicles) and
    `agent_demand`; `mean_travel_time` = tstt / demand; `gap`, the relative gap of the agents'
    routing, (sum_k F_k tau_k - sum_i d_i min_k tau_i,k) / sum_k F_k tau_k with the paths' times
    tau (0 when every platoon is on a fastest path); `overload`, the mean over links of
    max(0, x / c - 1).
    """
    links = links_of(config)
    data = road_data(config)
    actions = valid_actions(actions, links)
    path_flows = platoon_path_flows(actions, state.platoons, state.mask, links)
    x = link_flows(path_flows, links)
    times = link_times(x, links)
    tstt = jnp.sum(x * times)
    agent_demand = jnp.sum(state.demand)
    demand = agent_demand + data.background_demand
    reward = -tstt / jnp.maximum(demand, 1e-6)

    path_time = path_sum(times, links)
    fastest = jnp.min(jnp.where(links.path_mask, path_time, jnp.inf), axis=1)
    routed = jnp.sum(path_flows * jnp.where(links.path_mask, path_time, 0.0))
    gap = (routed - jnp.sum(state.demand * fastest)) / jnp.maximum(routed, 1e-6)
    capacity = links.capacity[:-1]
    overload = jnp.mean(jnp.maximum(0.0, x[:-1] / capacity - 1.0))
    so_tstt = total_travel_time(link_flows(state.so_flows, links), links)

    metrics = {
        "reward": reward,
        "tstt": tstt,
        "so_tstt": so_tstt,
        "so_reward": -so_tstt / jnp.maximum(demand, 1e-6),
        "demand": demand,
        "agent_demand": agent_demand,
        "mean_travel_time": tstt / jnp.maximum(demand, 1e-6),
        "gap": gap,
        "overload": overload,
    }
    t = state.t + 1
    next_demand, platoons, mask = _draw_demand(key, t, state.phase, config)
    new_state = state.replace(
        t=t, demand=next_demand, platoons=platoons, mask=mask, link_flows=x[:-1],
        path_times=jnp.where(links.path_mask, path_time, 0.0),
        so_flows=period_optimum(next_demand, state.so_flows, config),  # warm start: last period
    )
    return new_state, reward, metrics


# --------------------------------------------------------------------------- observations


def _agent_scales(config: RoadConfig) -> tuple[jax.Array, jax.Array]:
    """Each agent's reference time, the free-flow time of its shortest path (N,), and its peak
    platoon size (N,)."""
    data = road_data(config)
    ref = jnp.asarray(np.maximum(data.free_flow_path_time[:, 0], 1e-6), jnp.float32)
    unit = jnp.asarray(data.agent_demand * (1.0 + config.tide_amplitude) / config.jobs_per_step,
                       jnp.float32)
    return ref, jnp.maximum(unit, 1e-6)


def _time_of_day(state: RoadState, config: RoadConfig) -> jax.Array:
    angle = 2.0 * jnp.pi * (state.t + state.day_phase) / config.tide_period
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)])


def _demand_level(state: RoadState, config: RoadConfig) -> jax.Array:
    base = road_data(config).agent_demand
    return jnp.sum(state.demand) / max(float(base.sum()), 1e-6)


def observe(state: RoadState, config: RoadConfig) -> Observation:
    """Every agent's local observation. Candidates (N, K, 5), per path at last period's flows:
    travel time, free-flow time and marginal cost sum_e d(x t)/dx, each over the agent's
    shortest free-flow time; the rise of the marginal cost per peak platoon on the path (same
    scale); a valid-path flag (all zero for a missing path). Jobs (N, J, 2): platoon size over
    the agent's peak platoon, present flag (zero where absent). Context (N, 4): time of day
    (sin, cos), the agent's demand over its tidal mean, the agents' total demand over its mean.
    With `config.congestion_features` False, the first, third and fourth are taken at zero flow.
    """
    links = links_of(config)
    data = road_data(config)
    ref, unit = _agent_scales(config)
    x = _padded(state.link_flows)
    free_flow = jnp.asarray(data.free_flow_path_time, jnp.float32)
    path_times = state.path_times
    if not config.congestion_features:
        x, path_times = jnp.zeros_like(x), jnp.broadcast_to(free_flow, path_times.shape)
    valid = links.path_mask
    scale = ref[:, None]
    marginal = path_sum(link_marginal(x, links), links)
    rise = path_sum(link_marginal_slope(x, links), links) * unit[:, None]
    candidates = jnp.stack(
        [path_times / scale, free_flow / scale, marginal / scale, rise / scale,
         jnp.ones_like(marginal)], axis=-1,
    ) * valid[..., None]
    jobs = jnp.stack([state.platoons / unit[:, None], jnp.ones_like(state.platoons)],
                     axis=-1) * state.mask[..., None]
    base = jnp.asarray(np.maximum(data.agent_demand, 1e-6), jnp.float32)
    N = config.n_agents
    context = jnp.concatenate(
        [jnp.broadcast_to(_time_of_day(state, config), (N, 2)),
         (state.demand / base)[:, None],
         jnp.broadcast_to(_demand_level(state, config), (N, 1))], axis=-1,
    )
    return Observation(candidates=candidates.astype(jnp.float32), slots=jobs.astype(jnp.float32),
                       context=context.astype(jnp.float32), slot_mask=state.mask)


def global_state(state: RoadState, config: RoadConfig) -> tuple[jax.Array, jax.Array]:
    """Centralised critic input: per link (E, 4) last period's volume over capacity, travel time
    over free-flow time, free-flow time and capacity over their network means; context (4,):
    time of day (sin, cos), the agents' demand over its mean, the mean volume over capacity."""
    links = links_of(config)
    x = state.link_flows
    t0, capacity = links.t0[:-1], links.capacity[:-1]
    v_c = x / capacity
    feats = jnp.stack(
        [v_c, link_times(_padded(x), links)[:-1] / jnp.maximum(t0, 1e-6),
         t0 / jnp.maximum(jnp.mean(t0), 1e-6), capacity / jnp.mean(capacity)], axis=-1,
    )
    context = jnp.concatenate(
        [_time_of_day(state, config), jnp.stack([_demand_level(state, config), jnp.mean(v_c)])]
    )
    return feats.astype(jnp.float32), context.astype(jnp.float32)


def pair_features(obs: Observation, derived: bool = True) -> jax.Array:
    """Features of every (agent, platoon, path) triple, shape (..., N, J, K, F): the raw path,
    platoon and context features broadcast, and when `derived` three more, computed from the
    same observation: the path's travel time above the agent's fastest path, its marginal cost
    after this platoon (marginal cost + platoon size x rise, first order), and that cost above
    the smallest over the agent's paths."""
    cand, job, parts = pair_views(obs)
    shape = parts[0].shape[:-1]
    if derived:
        # candidate features: time, free-flow time, marginal, rise, valid; job: size, present
        valid = cand[..., 4] > 0
        time = cand[..., 0]
        excess = time - jnp.min(jnp.where(valid, time, jnp.inf), axis=-1, keepdims=True)
        after = cand[..., 2] + job[..., 0] * cand[..., 3]
        after_excess = after - jnp.min(jnp.where(valid, after, jnp.inf), axis=-1, keepdims=True)
        derived_parts = [jnp.broadcast_to(jnp.where(valid, v, 0.0), shape)[..., None]
                         for v in (excess, after, after_excess)]
        parts += derived_parts
    return jnp.concatenate(parts, axis=-1)


def slot_capacity(rows: int, config: RoadConfig) -> int:
    """Buffer size for the platoons of `rows` agent-steps: the noise-free mean number present
    over a tidal period, plus a margin of 4 sqrt(rows x J) + 8, at most rows x J."""
    J, A = config.jobs_per_step, config.tide_amplitude
    phases = np.linspace(0.0, 2.0 * np.pi, 256, endpoint=False)
    count = np.clip(np.ceil(J * (1.0 + A * np.sin(phases)) / (1.0 + A) - 1e-4), 1, J)
    mean = rows * float(np.mean(count))
    return int(min(rows * J, math.ceil(mean + 4.0 * math.sqrt(rows * J) + 8)))


# --------------------------------------------------------------------------- evaluation

# Reported per episode. `return` is the sum of team rewards; `mean_travel_time` = total TSTT /
# total vehicles over the episode (time units per vehicle); `tstt` and `demand` are means per
# period; `so_ratio` = total TSTT / total candidate-path system-optimum TSTT (>= 1 up to the
# solver's tolerance); `gap` and `overload` are means per period (see `step`).
EPISODE_METRICS = ("return", "so_return", "mean_travel_time", "tstt", "so_ratio", "demand",
                   "gap", "overload")


def episode_metrics(step_metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Reduce one episode's per-step metrics (arrays of shape (T,)) to EPISODE_METRICS."""
    m = step_metrics
    tstt = jnp.sum(m["tstt"], axis=0)
    return {
        "return": jnp.sum(m["reward"], axis=0),
        "so_return": jnp.sum(m["so_reward"], axis=0),
        "mean_travel_time": tstt / jnp.maximum(jnp.sum(m["demand"], axis=0), 1e-6),
        "tstt": jnp.mean(m["tstt"], axis=0),
        "so_ratio": tstt / jnp.maximum(jnp.sum(m["so_tstt"], axis=0), 1e-6),
        "demand": jnp.mean(m["demand"], axis=0),
        "gap": jnp.mean(m["gap"], axis=0),
        "overload": jnp.mean(m["overload"], axis=0),
    }
