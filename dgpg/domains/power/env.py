"""PowerGrid: flexible-load aggregators on a transmission grid with DC power flow, as a
cooperative multi-agent environment. Pure functions in the style of `dgpg.domains.roads.env`:

    state = reset(key, config)                  # the day's start, the agents' rates, period 0
    obs = observe(state, config)                # per-agent local observations
    state, reward, metrics = step(key, state, actions, config)

Units: MW for power, $/h for costs, $/MWh for prices; B buses, L lines, G generators (the
case's, `dgpg.domains.power.config`), N agents, K candidate buses, J block slots.

A step is one period (an hour: `tide_period` periods a day). The daily profile is

    profile(h) = 1 - depth (1 - cos(2 pi (h - crest_hour) / tide_period)) / 2,

1 at the crest and 1 - depth in the trough, h = h0 + t the period's hour, h0 ~ U[0, period)
drawn at reset. The inflexible base load of bus b is load_scale x PD_b x profile(h) x eps_b + GS_b,
eps_b lognormal with mean 1 and log-sd `base_noise`, drawn per bus and period. On a SimBench
case the episode starts at midnight (h0 = 0) of a day drawn from the configuration's split, and
PD_b x profile(h) is the bus's measured net load in that hour (`config.hourly_net_load`,
negative where renewables exceed load), held in the state as the day's (T, B) table.

Agent i (an EV fleet, a flexible industrial load) has a rate w_i (lognormal, log-sd
`rate_spread`, normalised to mean 1 over the agents, drawn at reset) and a phase phi_i ~
phase_spread x period x U[-1/2, 1/2). Each of its J slots holds a block of flexible demand with
chance arrival_prob x profile(h + phi_i), of size u_i x xi, xi = min(U^(-1/alpha), block_cap)
/ m (a Pareto draw with shape alpha = `block_tail`, capped, m its mean: xi has mean 1) and
u_i = F w_i / (N J arrival_prob) the agent's mean block, F = flex_share x the crest's base load:
at the crest the agents' flexible demand is F on average. Each block is placed on one of the
agent's K candidate buses (its action).

The period's load is served by economic dispatch (every unit at one incremental cost, no line
limits; `dispatch.economic_dispatch_jax`), up to the generation capacity: a total load D beyond
sum Pmax is shed in proportion at every bus (unserved load D - sum Pmax). Line flows are
f = PTDF (Cg P - s d), s the served share, so generation equals the served load. The period's
cost ($/h) is

    cost = sum_g (a_g P_g^2 + b_g P_g + c_g) + sum_l pi (e_l + e_l^2 / (2 w r_l)) + VOLL x unserved,

e_l = max(|f_l| - r_l, 0) MW the overload of line l (rating r_l; unrated lines have none),
pi = violation_weight x p_ref, w = violation_width, VOLL = unserved_weight x p_ref, p_ref the
system incremental cost at the day's mean load (`PowerData.ref_price`). The team reward is
-cost / C_ref, C_ref the generation cost at the day's mean load (`PowerData.cost_scale`): about
-1 a period without congestion, -24 a day.

Generation cost depends on the total load only, so placement acts through the flows: the
locational marginal cost of bus b (the gradient of the period's cost in its load) is the
system's incremental cost plus the penalty's change through the PTDF.

That is the `penalty` market (`PowerConfig.market`), a congestion-pricing game: no operator
serves load that way. With `market="opf"` the period is cleared as an operator clears it: a
DC optimal power flow (`dgpg.domains.power.clearing`) redispatches the units around the line
ratings (flows never exceed them) and sheds load at VOLL only where no dispatch can serve it:

    cost = sum_g (a_g P_g^2 + b_g P_g + c_g) + VOLL x shed,

and the marginal costs are the OPF's LMPs (its duals). Placement then changes the generation
cost itself (redispatch out of merit order) and the shedding.

The state holds, for the period to place, its base load and the marginal costs, flows and
headroom (MW that one bus can take before a line overloads) at the base load alone, as the
system operator would post them before the aggregators bid; and the last period's realised
flows and marginal costs. The grid and the agents' buses enter the compiled code as constants
(`net_of`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dgpg.domains.observation import Observation, pair_views
from dgpg.domains.power.clearing import ClearingProblem, clear, clearing_problem
from dgpg.domains.power.config import (
    PowerConfig,
    day_starts,
    exact_config,
    hourly_net_load,
    is_simbench,
    power_data,
)
from dgpg.domains.power.dispatch import economic_dispatch_jax

N_CANDIDATE_FEATURES = 4
N_JOB_FEATURES = 2
N_CONTEXT_FEATURES = 5
N_LINE_FEATURES = 4
N_DERIVED_FEATURES = 3
HEADROOM_CAP = 10.0
"""Headroom features count the agent's mean blocks that fit, up to this many."""
BINDING_TOLERANCE = 1e-4
"""Under `market="opf"` a line binds at 1 - this of its rating (float32 flows at the limit)."""
DISPATCH_ITERATIONS = 40
"""Bisection steps of each economic dispatch (float32 converges well before)."""


# --------------------------------------------------------------------------- constants


@dataclass(frozen=True, eq=False)
class Net:
    """The configuration's grid and agents as JAX arrays (constants under `jit`).

    ptdf (L, B); cand_ptdf (N, K, L): the PTDF column of each candidate bus; candidates (N, K);
    gen_bus, cost_a, cost_b, cost_c, pmin, pmax (G,); limited (L,) bool, rated lines; rating
    (L,) MW (1 where unrated); load (B,) MW, the base load at the crest; shunt (B,) MW. Scalars:
    violation_price ($/MWh per MW over), violation_width, voll ($/MWh), ref_price ($/MWh),
    cost_scale ($/h), crest_base and crest_flex (MW), shunt_total (MW), mean_rating (MW).
    clearing: the DC-OPF of `market="opf"` (None for the penalty market).
    """

    ptdf: jax.Array
    cand_ptdf: jax.Array
    candidates: jax.Array
    gen_bus: jax.Array
    cost_a: jax.Array
    cost_b: jax.Array
    cost_c: jax.Array
    pmin: jax.Array
    pmax: jax.Array
    limited: jax.Array
    rating: jax.Array
    load: jax.Array
    shunt: jax.Array
    violation_price: float
    violation_width: float
    voll: float
    ref_price: float
    cost_scale: float
    crest_base: float
    crest_flex: float
    shunt_total: float
    mean_rating: float
    clearing: ClearingProblem | None = None

    @property
    def capacity(self) -> jax.Array:
        return jnp.sum(self.pmax)


def net_of(config: PowerConfig) -> Net:
    """The configuration's `Net` (built once, concrete even when first asked for in a trace):
    the true grid, the same object whatever the configuration's model error (the environment
    ignores it; `dgpg.domains.power.belief` has what a misspecified model believes)."""
    return _net_of(exact_config(config))


@functools.lru_cache(maxsize=16)
def _net_of(config: PowerConfig) -> Net:
    data = power_data(config)
    grid = data.grid
    limited = np.isfinite(grid.line_rating_mw)
    rating = np.where(limited, grid.line_rating_mw, 1.0)
    voll = config.unserved_weight * data.ref_price
    opf = clearing_problem(grid, voll=voll) if config.market == "opf" else None
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    with jax.ensure_compile_time_eval():
        return Net(
            ptdf=f32(data.ptdf), cand_ptdf=f32(data.ptdf.T[data.candidates]),
            candidates=jnp.asarray(data.candidates, jnp.int32),
            gen_bus=jnp.asarray(grid.gen_bus, jnp.int32), cost_a=f32(grid.cost_a),
            cost_b=f32(grid.cost_b), cost_c=f32(grid.cost_c), pmin=f32(grid.gen_pmin_mw),
            pmax=f32(grid.gen_pmax_mw), limited=jnp.asarray(limited), rating=f32(rating),
            load=f32(data.load_scale * grid.load_mw), shunt=f32(grid.shunt_mw),
            violation_price=config.violation_weight * data.ref_price,
            violation_width=float(config.violation_width),
            voll=voll, ref_price=data.ref_price,
            cost_scale=data.cost_scale, crest_base=data.crest_base_mw,
            crest_flex=data.crest_flex_mw, shunt_total=float(grid.shunt_mw.sum()),
            mean_rating=float(rating[limited].mean()) if limited.any() else 1.0,
            clearing=opf,
        )


# --------------------------------------------------------------------------- dispatch and cost


def marginal_share(gen: jax.Array, cost_a: jax.Array, pmin: jax.Array,
                   pmax: jax.Array) -> jax.Array:
    """(G,) how a dispatch's outputs share one more MW of load: the units strictly inside their
    range in proportion to 1 / (2 a) (the equal-incremental-cost rule), or equally among such
    units of linear cost if there are any; if every unit sits at a bound, the units below Pmax
    in proportion to their range."""
    tol = 1e-5 * (pmax - pmin) + 1e-6
    inside = (gen > pmin + tol) & (gen < pmax - tol)
    linear = inside & (cost_a <= 0)
    slope = jnp.where(inside & ~linear, 1.0 / (2.0 * jnp.where(cost_a > 0, cost_a, 1.0)), 0.0)
    room = jnp.where(gen < pmax - tol, pmax - pmin, 0.0)
    weight = jnp.where(jnp.any(linear), linear.astype(gen.dtype),
                       jnp.where(jnp.any(slope > 0), slope, room))
    return weight / jnp.maximum(jnp.sum(weight), 1e-30)


@jax.custom_jvp
def _economic_dispatch(total_mw: jax.Array, net_arrays: tuple) -> tuple[jax.Array, jax.Array]:
    cost_a, cost_b, pmin, pmax = net_arrays
    return economic_dispatch_jax(cost_a, cost_b, pmin, pmax, total_mw, DISPATCH_ITERATIONS)


@_economic_dispatch.defjvp
def _economic_dispatch_jvp(primals, tangents):
    """The outputs' derivative in the load from the marginal units (`marginal_share`), not
    through the bisection (whose float32 bracket makes that derivative noisy)."""
    total_mw, net_arrays = primals
    gen, price = _economic_dispatch(total_mw, net_arrays)
    cost_a, _, pmin, pmax = net_arrays
    weight = marginal_share(gen, cost_a, pmin, pmax)
    return (gen, price), (weight * tangents[0], jnp.zeros_like(price))


def dispatch(total_mw: jax.Array, net: Net) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Economic dispatch of a total load: outputs (G,) MW, the served load (at most the
    capacity) MW and the system incremental cost $/MWh. Its derivative in the load is the
    marginal units' share (equal incremental cost), exactly."""
    served = jnp.minimum(total_mw, net.capacity)
    gen, price = _economic_dispatch(served, (net.cost_a, net.cost_b, net.pmin, net.pmax))
    return gen, served, price


def generation_cost(gen: jax.Array, net: Net) -> jax.Array:
    """sum_g a P^2 + b P + c, $/h."""
    return jnp.sum(net.cost_a * gen**2 + net.cost_b * gen + net.cost_c, axis=-1)


def overload(flows: jax.Array, net: Net) -> jax.Array:
    """Overload (..., L) MW: |f| beyond the rating, 0 on unrated lines."""
    return jnp.where(net.limited, jnp.maximum(jnp.abs(flows) - net.rating, 0.0), 0.0)


def line_penalty(flows: jax.Array, net: Net) -> jax.Array:
    """Violation cost (..., L) $/h: pi (e + e^2 / (2 w r)), e the overload."""
    e = overload(flows, net)
    return net.violation_price * (e + e**2 / (2.0 * net.violation_width * net.rating))


def injections(gen: jax.Array, served_share: jax.Array, bus_load: jax.Array,
               net: Net) -> jax.Array:
    """Net injections (B,) MW: generation at its buses minus the served bus load."""
    return jnp.zeros_like(bus_load).at[net.gen_bus].add(gen) - served_share * bus_load


class Outcome(NamedTuple):
    """A period served: gen (G,) MW, flows (L,) MW, costs $/h, unserved MW, price $/MWh."""

    gen: jax.Array
    flows: jax.Array
    gen_cost: jax.Array
    violation_cost: jax.Array
    unserved_mw: jax.Array
    unserved_cost: jax.Array
    price: jax.Array

    @property
    def cost(self) -> jax.Array:
        return self.gen_cost + self.violation_cost + self.unserved_cost


def cleared(bus_load: jax.Array, net: Net) -> tuple[Outcome, jax.Array]:
    """The DC-OPF clearing of the bus loads (B,) MW (`market="opf"`): the outcome, no line over
    its rating, with `price` the LMPs' mean weighted by the buses' positive loads, and the LMPs
    (B,) $/MWh."""
    result = clear(net.clearing, bus_load)
    unserved = jnp.sum(result.shed)
    unserved_cost = net.voll * unserved
    weight = jnp.maximum(bus_load, 0.0)
    price = jnp.sum(result.lmp * weight) / jnp.maximum(jnp.sum(weight), 1e-9)
    return Outcome(gen=result.dispatch, flows=result.flows, gen_cost=result.cost - unserved_cost,
                   violation_cost=jnp.zeros_like(unserved), unserved_mw=unserved,
                   unserved_cost=unserved_cost, price=price), result.lmp


def outcome(bus_load: jax.Array, net: Net) -> Outcome:
    """Serve the bus loads (B,) MW: dispatch, shedding beyond the capacity, flows, costs (the
    OPF's under `market="opf"`, `cleared`)."""
    if net.clearing is not None:
        return cleared(bus_load, net)[0]
    total = jnp.sum(bus_load)
    gen, served, price = dispatch(total, net)
    share = served / jnp.maximum(total, 1e-9)
    flows = net.ptdf @ injections(gen, share, bus_load, net)
    unserved = total - served
    return Outcome(gen=gen, flows=flows, gen_cost=generation_cost(gen, net),
                   violation_cost=jnp.sum(line_penalty(flows, net)), unserved_mw=unserved,
                   unserved_cost=net.voll * unserved, price=price)


@functools.partial(jax.jit, static_argnums=1)  # one program when called eagerly
def marginal_costs(bus_load: jax.Array, net: Net) -> tuple[Outcome, jax.Array]:
    """The outcome at `bus_load` and the locational marginal costs (B,) $/MWh: the gradient of
    the period's cost in each bus's load (dispatch, shedding and penalty included; the OPF's
    LMPs under `market="opf"`, which are that gradient)."""
    if net.clearing is not None:
        return cleared(bus_load, net)

    def cost(load):
        result = outcome(load, net)
        return result.cost, result

    (_, result), lmp = jax.value_and_grad(cost, has_aux=True)(bus_load)
    return result, lmp


def headroom(bus_load: jax.Array, result: Outcome, net: Net) -> jax.Array:
    """(B,) MW that each bus can take, the dispatch following (`marginal_share`), before a
    rated line overloads (0 where one already is; at most the generation capacity). Under
    `market="opf"` it is the same estimate from the OPF's dispatch: MW before a line binds if
    the units that are neither at Pmin nor at Pmax follow, not the OPF's redispatch."""
    dgen = marginal_share(result.gen, net.cost_a, net.pmin, net.pmax)
    sens = (net.ptdf @ jnp.zeros_like(bus_load).at[net.gen_bus].add(dgen))[:, None] - net.ptdf
    flows = result.flows[:, None]
    up = jnp.where(sens > 1e-6, (net.rating[:, None] - flows) / jnp.where(sens > 1e-6, sens, 1.0),
                   jnp.inf)
    down = jnp.where(sens < -1e-6,
                     (net.rating[:, None] + flows) / jnp.where(sens < -1e-6, -sens, 1.0), jnp.inf)
    room = jnp.where(net.limited[:, None], jnp.minimum(up, down), jnp.inf).min(axis=0)
    return jnp.clip(room, 0.0, net.capacity)


class Period(NamedTuple):
    """The period's dispatch, which placement does not change (every present block is placed
    somewhere): share (), the served share of the load; free_flows (L,), the flows with the
    generation of the whole load and the base load alone withdrawn; sizes (N, J), the blocks
    (0 where absent). A block of size q on bus k adds -share q cand_ptdf to the flows."""

    share: jax.Array
    free_flows: jax.Array
    sizes: jax.Array


def period(state: PowerState, net: Net) -> Period:
    """The state's `Period`: the dispatch of its base load plus all its blocks."""
    sizes = jnp.where(state.mask, state.blocks, 0.0)
    total = jnp.sum(state.base) + jnp.sum(sizes)
    gen, served, _ = dispatch(total, net)
    share = served / jnp.maximum(total, 1e-9)
    return Period(share=share, free_flows=net.ptdf @ injections(gen, share, state.base, net),
                  sizes=sizes)


def placed_load(state: PowerState, actions: jax.Array, net: Net) -> jax.Array:
    """The period's bus loads (B,) MW with each block on its chosen candidate bus."""
    bus = jnp.take_along_axis(net.candidates, actions.astype(jnp.int32), axis=1)
    sizes = jnp.where(state.mask, state.blocks, 0.0)
    return state.base.at[bus].add(sizes)


# --------------------------------------------------------------------------- state and demand


@struct.dataclass
class PowerState:
    """One period's state (shapes above)."""

    t: jax.Array  # () int32, period within the episode
    hour0: jax.Array  # () float32, the hour of period 0
    phase: jax.Array  # (N,) float32, each agent's profile offset (hours)
    unit: jax.Array  # (N,) float32, each agent's mean block (MW)
    base: jax.Array  # (B,) float32, this period's base load (MW)
    blocks: jax.Array  # (N, J) float32, block sizes (MW), 0 where absent
    mask: jax.Array  # (N, J) bool, blocks present
    lmp: jax.Array  # (B,) float32, marginal costs at the base load alone ($/MWh)
    headroom: jax.Array  # (B,) float32, MW each bus takes at the base load before an overload
    base_flows: jax.Array  # (L,) float32, flows at the base load alone (MW)
    price: jax.Array  # () float32, system incremental cost at the base load ($/MWh)
    flows: jax.Array  # (L,) float32, last period's realised flows (MW)
    last_lmp: jax.Array  # (B,) float32, last period's realised marginal costs ($/MWh)
    day_load: jax.Array  # (T, B) float32, a SimBench day's hourly net load (MW); (1, B) 0 else


def profile(hour: jax.Array, config: PowerConfig) -> jax.Array:
    """The daily profile, 1 at the crest, 1 - depth in the trough; shape of `hour`."""
    angle = 2.0 * jnp.pi * (hour - config.crest_hour) / config.tide_period
    return 1.0 - config.tide_depth * (1.0 - jnp.cos(angle)) / 2.0


def pareto_mean(config: PowerConfig) -> float:
    """Mean of min(X, cap), X Pareto with shape alpha and minimum 1."""
    a, cap = config.block_tail, config.block_cap
    return (a - cap ** (1.0 - a)) / (a - 1.0)


def _uniforms(key: jax.Array, size: int) -> jax.Array:
    """`size` uniforms in (0, 1), one draw (one random-bits program to compile)."""
    return jax.random.uniform(key, (size,), jnp.float32, minval=1e-7, maxval=1.0 - 1e-7)


def _normal(u: jax.Array) -> jax.Array:
    """Standard normals from uniforms (the inverse normal CDF)."""
    return jax.scipy.special.ndtri(u)


def _period_size(config: PowerConfig) -> int:
    """Uniforms one period's draw uses: a noise per bus, an arrival and a size per slot."""
    return net_of(config).load.shape[0] + 2 * config.n_agents * config.blocks_per_step


def _draw_period(u: jax.Array, t: jax.Array, hour0: jax.Array, phase: jax.Array,
                 unit: jax.Array, day_load: jax.Array, config: PowerConfig):
    """The period's base load (B,) and blocks (N, J) with their mask, from the uniforms `u`
    (`_period_size(config)`,) and, on a SimBench case, the day's net load (T, B) (unused, and
    may be None, on the other cases)."""
    net = net_of(config)
    B = net.load.shape[0]
    shape = (config.n_agents, config.blocks_per_step)
    u_on, u_size = u[B:].reshape(2, *shape)
    hour = hour0 + t
    sigma = config.base_noise
    noise = jnp.exp(sigma * _normal(u[:B]) - 0.5 * sigma**2)
    if is_simbench(config.case):
        row = day_load[jnp.minimum(t, day_load.shape[0] - 1)]
        base = config.resolved_load_scale * row * noise + net.shunt
    else:
        base = net.load * profile(hour, config) * noise + net.shunt
    on = u_on < config.arrival_prob * profile(hour + phase, config)[:, None]
    xi = jnp.minimum(u_size ** (-1.0 / config.block_tail), config.block_cap) / pareto_mean(config)
    blocks = jnp.where(on, unit[:, None] * xi, 0.0)
    return base, blocks, on


@functools.partial(jax.jit, static_argnums=1)
def _posted(base: jax.Array, net: Net):
    """What the operator posts before placement: outcome, marginal costs and headroom at the
    base load alone."""
    result, lmp = marginal_costs(base, net)
    return result, lmp, headroom(base, result, net)


@functools.partial(jax.jit, static_argnames="config")  # one program when called eagerly
def reset(key: jax.Array, config: PowerConfig) -> PowerState:
    """Draw the day's start, the agents' rates and phases and period 0 (whose `last` fields are
    its own base-load values)."""
    net = net_of(config)
    N, J = config.n_agents, config.blocks_per_step
    u = _uniforms(key, 1 + 2 * N + _period_size(config))
    if is_simbench(config.case):  # u[0] draws the day, which starts at midnight
        starts = day_starts(config.case, config.split)
        start = jnp.asarray(starts, jnp.int32)[jnp.minimum(
            (u[0] * starts.size).astype(jnp.int32), starts.size - 1)]
        day_load = jax.lax.dynamic_slice_in_dim(
            jnp.asarray(hourly_net_load(config.case)), start, config.episode_steps)
        hour0 = jnp.zeros((), jnp.float32)
    else:
        day_load = jnp.zeros((1, net.load.shape[0]), jnp.float32)
        hour0 = u[0] * config.tide_period
    phase = config.phase_spread * config.tide_period * (u[1:N + 1] - 0.5)
    rate = jnp.exp(config.rate_spread * _normal(u[N + 1:2 * N + 1]))
    rate = rate * N / jnp.sum(rate)
    unit = net.crest_flex * rate / (N * J * config.arrival_prob)
    t = jnp.zeros((), jnp.int32)
    base, blocks, mask = _draw_period(u[2 * N + 1:], t, hour0, phase, unit, day_load, config)
    result, lmp, room = _posted(base, net)
    return PowerState(t=t, hour0=hour0, phase=phase, unit=unit, base=base, blocks=blocks,
                      mask=mask, lmp=lmp, headroom=room, base_flows=result.flows,
                      price=result.price, flows=result.flows, last_lmp=lmp,
                      day_load=day_load)


# --------------------------------------------------------------------------- step


@functools.partial(jax.jit, static_argnames="config")
def step(key: jax.Array, state: PowerState, actions: jax.Array, config: PowerConfig
         ) -> tuple[PowerState, jax.Array, dict[str, jax.Array]]:
    """Place the period's blocks: `actions` (N, J) int, a candidate index in [0, K) per block
    (absent blocks are ignored). Returns the next period's state, the team reward -cost /
    C_ref and the period's metrics (scalars): `reward`; `cost`, `gen_cost`, `violation_cost`,
    `unserved_cost` ($/h); `load_mw` (base and flexible), `flex_mw`, `gen_mw` (= the served
    load), `unserved_mw`, `violation_mw` (summed overload of the lines); `binding_lines`, rated
    lines at or beyond their rating; `price`, the system incremental cost ($/MWh)."""
    net = net_of(config)
    load = placed_load(state, actions, net)
    result, lmp = marginal_costs(load, net)
    reward = -result.cost / net.cost_scale
    flex = jnp.sum(jnp.where(state.mask, state.blocks, 0.0))
    rated_flow = jnp.where(net.limited, jnp.abs(result.flows) / net.rating, 0.0)
    at_rating = 1.0 if net.clearing is None else 1.0 - BINDING_TOLERANCE
    metrics = {
        "reward": reward,
        "cost": result.cost,
        "gen_cost": result.gen_cost,
        "violation_cost": result.violation_cost,
        "unserved_cost": result.unserved_cost,
        "load_mw": jnp.sum(load),
        "flex_mw": flex,
        "gen_mw": jnp.sum(result.gen),
        "unserved_mw": result.unserved_mw,
        "violation_mw": jnp.sum(overload(result.flows, net)),
        "binding_lines": jnp.sum(rated_flow >= at_rating).astype(jnp.float32),
        "price": result.price,
    }
    t = state.t + 1
    base, blocks, mask = _draw_period(_uniforms(key, _period_size(config)), t, state.hour0,
                                      state.phase, state.unit, state.day_load, config)
    posted, next_lmp, room = _posted(base, net)
    new_state = state.replace(t=t, base=base, blocks=blocks, mask=mask, lmp=next_lmp,
                              headroom=room, base_flows=posted.flows, price=posted.price,
                              flows=result.flows, last_lmp=lmp)
    return new_state, reward, metrics


# --------------------------------------------------------------------------- observations


def _time_of_day(state: PowerState, config: PowerConfig) -> jax.Array:
    angle = 2.0 * jnp.pi * (state.hour0 + state.t) / config.tide_period
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)])


def _levels(state: PowerState, net: Net) -> jax.Array:
    """The base load over its crest mean, the flexible demand over its crest mean and the
    system price over the reference price, (3,)."""
    flex = jnp.sum(jnp.where(state.mask, state.blocks, 0.0))
    return jnp.stack([jnp.sum(state.base) / max(net.crest_base + net.shunt_total, 1e-6),
                      flex / max(net.crest_flex, 1e-6), state.price / net.ref_price])


@functools.partial(jax.jit, static_argnames="config")
def observe(state: PowerState, config: PowerConfig) -> Observation:
    """Every agent's local observation. Candidates (N, K, 4), per candidate bus: its marginal
    cost at the base load alone and in the last period, over the reference price; its headroom
    in the agent's mean blocks, capped at HEADROOM_CAP, over the cap; a home-bus flag. Jobs
    (N, J, 2): block size over the agent's mean block, present flag (zero where absent).
    Context (N, 5): time of day (sin, cos), the agent's flexible demand over its crest mean,
    the system price over the reference price, the base load over its crest mean."""
    net = net_of(config)
    N, K, J = config.n_agents, config.n_candidates, config.blocks_per_step
    unit = jnp.maximum(state.unit, 1e-9)
    cand = net.candidates
    room = jnp.minimum(state.headroom[cand] / unit[:, None], HEADROOM_CAP) / HEADROOM_CAP
    home = jnp.broadcast_to((jnp.arange(K) == 0).astype(jnp.float32), (N, K))
    candidates = jnp.stack([state.lmp[cand] / net.ref_price,
                            state.last_lmp[cand] / net.ref_price, room, home], axis=-1)
    jobs = jnp.stack([state.blocks / unit[:, None], jnp.ones_like(state.blocks)],
                     axis=-1) * state.mask[..., None]
    own = jnp.sum(jnp.where(state.mask, state.blocks, 0.0), axis=1) / (
        J * config.arrival_prob * unit)
    levels = _levels(state, net)
    context = jnp.concatenate(
        [jnp.broadcast_to(_time_of_day(state, config), (N, 2)), own[:, None],
         jnp.broadcast_to(levels[2], (N, 1)), jnp.broadcast_to(levels[0], (N, 1))], axis=-1)
    return Observation(candidates=candidates.astype(jnp.float32), slots=jobs.astype(jnp.float32),
                       context=context.astype(jnp.float32), slot_mask=state.mask)


@functools.partial(jax.jit, static_argnames="config")
def global_state(state: PowerState, config: PowerConfig) -> tuple[jax.Array, jax.Array]:
    """Centralised critic input: per line (L, 4) last period's |flow| over the rating, this
    period's |flow| at the base load alone over the rating, last period's overload over the
    rating (all 0 on unrated lines) and the rating over the mean rating; context (5,): time of
    day (sin, cos), the base load, the flexible demand and the price over their references."""
    net = net_of(config)
    rated = net.limited.astype(jnp.float32)
    feats = jnp.stack([jnp.abs(state.flows) / net.rating * rated,
                       jnp.abs(state.base_flows) / net.rating * rated,
                       overload(state.flows, net) / net.rating,
                       net.rating / net.mean_rating * rated], axis=-1)
    context = jnp.concatenate([_time_of_day(state, config), _levels(state, net)])
    return feats.astype(jnp.float32), context.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames="derived")
def pair_features(obs: Observation, derived: bool = True) -> jax.Array:
    """Features of every (agent, block, bus) triple, shape (..., N, J, K, F): the raw bus, block
    and context features broadcast and, when `derived`, three more from the same observation:
    the bus's marginal cost above the agent's cheapest, the headroom left after this block (in
    mean blocks over the cap, in [-1, 1]) and the block's extra cost, size x that excess."""
    cand, job, parts = pair_views(obs)
    shape = parts[0].shape[:-1]
    if derived:
        lmp = cand[..., 0]
        excess = lmp - jnp.min(lmp, axis=-1, keepdims=True)
        left = jnp.clip(cand[..., 2] - job[..., 0] / HEADROOM_CAP, -1.0, 1.0)
        parts += [jnp.broadcast_to(v, shape)[..., None]
                  for v in (excess, left, excess * job[..., 0])]
    return jnp.concatenate(parts, axis=-1)


def slot_capacity(rows: int, config: PowerConfig) -> int:
    """Buffer size for the blocks of `rows` agent-steps: the mean number present at the crest,
    plus a margin of 4 sqrt(rows x J) + 8, at most rows x J."""
    J = config.blocks_per_step
    mean = rows * J * config.arrival_prob
    return int(min(rows * J, math.ceil(mean + 4.0 * math.sqrt(rows * J) + 8)))


# --------------------------------------------------------------------------- evaluation

EPISODE_METRICS = ("return", "cost", "gen_cost", "violation_cost", "violation_mw",
                   "unserved_mw", "binding_lines", "load_mw", "flex_mw", "price")
"""`return`, the summed reward; the others the means per period of the step's metrics."""


def episode_metrics(step_metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Reduce one episode's per-step metrics (arrays (T,)) to EPISODE_METRICS."""
    m = step_metrics
    return {"return": jnp.sum(m["reward"], axis=0),
            **{name: jnp.mean(m[name], axis=0) for name in EPISODE_METRICS[1:]}}
