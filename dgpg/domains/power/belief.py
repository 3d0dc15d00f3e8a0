"""What a misspecified model believes of the grid (`DomainSpec.model_errors`).

With `model_error` E > 0 the analytical model (`aligned`, DG-PG's guidance) and `model-greedy`
price line overloads on a believed network, `believed_net(config)`: the environment's `Net`
(`env.net_of`) with other line ratings or, for an outage, another PTDF; under `market="opf"`
they clear the believed grid's DC-OPF instead, `believed_clearing(config)`. The environment, the
agents' observations (the prices and headroom the operator posts) and the reference heuristic
`central-optimum` keep the truth. `cheapest-lmp` reads the posted prices and `nearest` reads
nothing of the grid: neither is model-based, so neither changes with E.

The lines' loading at base case, |f_l| / r_l with f the flows of the crest's base load (the
case's loads times the load scale, shunts, no flexible demand) under the economic dispatch,
orders the rated lines (`base_loading`); the most loaded third (at least one line, ties by
index) are the loaded lines (`loaded_lines`). The families:

    systematic  (the default) believed ratings off by a factor tied to the loading: 1 + s E
                on the loaded lines and 1 - s E on the others, s = +1 for an even seed (the
                model believes the congested lines larger: it underestimates congestion where
                it matters and overestimates it where there is room) and -1 for an odd one
    random      each line's believed rating off by a factor uniform in [1 - E, 1 + E], drawn
                from the seed independently per line
    outage      the model believes ceil(E x OUTAGE_POOL) lines out of service while the
                environment keeps them in: drawn in a seeded order from the pool of the
                OUTAGE_POOL most loaded rated lines whose removal keeps the grid connected, each
                kept only if the grid stays connected without it and the ones kept before (so a
                larger E adds lines to a smaller one's). The model routes flows over the reduced
                network (its PTDF, the truth's plus the line outage distribution factors) and
                prices no overload on the lines it believes out. E scales how many lines.

Why the systematic family is tied to the loading: the agents see it. The prices and the headroom
posted at their candidate buses, and the critic's per-line loading, are shaped by the loaded
lines, so the error is met in the same observable situations day after day and does not average
out, whereas the random family's errors are independent of the loading and partly cancel over
the lines a block's placement moves. With an even seed a model-following policy is pinned to
the wrong buses: a loaded line rated r is believed to carry (1 + E) r, so the model sees no
overload in the band between r and (1 + E) r, exactly where the crest's flows on those lines
lie, while lightly loaded lines believed at (1 - E) r look congested and push blocks back onto
the loaded ones. `model-greedy` then overloads the congested lines that the exact model
protects (docs/guides/power.md has the measured costs). An odd seed's error is cautious
(congestion believed earlier where it matters) and costs the greedy rule nothing.

The environment could not drop a line without changing its dynamics (its flows, prices and
costs), so the outage is the model's, not the grid's: the belief has a line out that is in.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dgpg.domains.power.clearing import ClearingProblem, clearing_problem
from dgpg.domains.power.config import PowerConfig, exact_config, power_data
from dgpg.domains.power.dispatch import economic_dispatch
from dgpg.domains.power.env import Net, net_of
from dgpg.domains.power.grid import ptdf

LOADED_SHARE = 1.0 / 3.0
"""The share of the rated lines, the most loaded at base case, that are `loaded_lines`."""
OUTAGE_POOL = 10
"""The outage family draws its lines from this many of the most loaded rated lines."""


@functools.lru_cache(maxsize=16)
def _loading(config: PowerConfig) -> np.ndarray:
    data = power_data(config)
    grid = data.grid
    demand = data.load_scale * grid.load_mw + grid.shunt_mw
    total = min(float(demand.sum()), float(grid.gen_pmax_mw.sum()))
    gen, _ = economic_dispatch(grid, max(total, float(grid.gen_pmin_mw.sum())))
    injection = np.bincount(grid.gen_bus, weights=gen, minlength=grid.n_buses)
    flows = data.ptdf @ (injection - demand)
    rated = np.isfinite(grid.line_rating_mw)
    loading = np.where(rated, np.abs(flows) / np.where(rated, grid.line_rating_mw, 1.0), 0.0)
    loading.setflags(write=False)
    return loading


def base_loading(config: PowerConfig) -> np.ndarray:
    """(L,) each line's |flow| over its rating at the crest's base load under the economic
    dispatch (module docstring); 0 on unrated lines."""
    return _loading(exact_config(config))


def loading_order(config: PowerConfig) -> np.ndarray:
    """The rated lines' indices by decreasing `base_loading`, ties by index."""
    loading = base_loading(config)
    rated = np.flatnonzero(np.isfinite(power_data(config).grid.line_rating_mw))
    return rated[np.lexsort((rated, -loading[rated]))]


def loaded_lines(config: PowerConfig) -> np.ndarray:
    """(L,) bool: the most loaded third of the rated lines at base case (at least one)."""
    order = loading_order(config)
    count = max(1, math.ceil(LOADED_SHARE * order.size)) if order.size else 0
    loaded = np.zeros(power_data(config).grid.n_lines, bool)
    loaded[order[:count]] = True
    return loaded


def systematic_sign(seed: int) -> float:
    """s of the systematic family: +1 for an even seed (loaded lines believed larger), -1 for
    an odd one."""
    return 1.0 if seed % 2 == 0 else -1.0


def rating_factor(config: PowerConfig) -> np.ndarray:
    """(L,) believed / true rating of each line: 1 + s E on the loaded lines and 1 - s E on the
    others (systematic), seeded uniforms in [1 - E, 1 + E] (random), ones otherwise (exact,
    outage)."""
    size = config.model_error
    n_lines = power_data(config).grid.n_lines
    if size == 0.0 or config.model_error_kind == "outage":
        return np.ones(n_lines)
    if config.model_error_kind == "systematic":
        s = systematic_sign(config.model_error_seed)
        return np.where(loaded_lines(config), 1.0 + s * size, 1.0 - s * size)
    rng = np.random.default_rng(config.model_error_seed)
    return rng.uniform(1.0 - size, 1.0 + size, n_lines)


def _connected(n_buses: int, line_from: np.ndarray, line_to: np.ndarray) -> bool:
    graph = coo_matrix((np.ones(line_from.size), (line_from, line_to)), shape=(n_buses, n_buses))
    return connected_components(graph, directed=False)[0] == 1


def outage_pool(config: PowerConfig) -> np.ndarray:
    """The OUTAGE_POOL most loaded rated lines at base case whose removal alone keeps the grid
    connected, by decreasing loading."""
    grid = power_data(config).grid
    pool = []
    for line in loading_order(config):
        keep = np.arange(grid.n_lines) != line
        if _connected(grid.n_buses, grid.line_from[keep], grid.line_to[keep]):
            pool.append(int(line))
            if len(pool) == OUTAGE_POOL:
                break
    return np.asarray(pool, np.int64)


def outaged_lines(config: PowerConfig) -> tuple[int, ...]:
    """The lines the outage family believes out: ceil(E x OUTAGE_POOL) drawn from
    `outage_pool` in a seeded order, each kept if the grid stays connected without it and those
    kept before (fewer if the pool runs out); none when E = 0 or for another family."""
    if config.model_error == 0.0 or config.model_error_kind != "outage":
        return ()
    grid = power_data(config).grid
    pool = outage_pool(config)
    count = math.ceil(config.model_error * OUTAGE_POOL)
    order = np.random.default_rng(config.model_error_seed).permutation(pool.size)
    out: list[int] = []
    for line in pool[order]:
        keep = ~np.isin(np.arange(grid.n_lines), [*out, line])
        if _connected(grid.n_buses, grid.line_from[keep], grid.line_to[keep]):
            out.append(int(line))
            if len(out) == count:
                break
    return tuple(sorted(out))


def believed_ptdf(config: PowerConfig) -> np.ndarray:
    """(L, B) the PTDF the model believes: the truth's, or that of the network without the
    `outaged_lines` (their rows zero)."""
    data = power_data(config)
    out = list(outaged_lines(config))
    if not out:
        return data.ptdf
    grid = data.grid
    keep = ~np.isin(np.arange(grid.n_lines), out)
    reduced = dataclasses.replace(
        grid, line_from=grid.line_from[keep], line_to=grid.line_to[keep],
        line_x=grid.line_x[keep], line_tap=grid.line_tap[keep],
        line_rating_mw=grid.line_rating_mw[keep])
    factors = np.zeros_like(data.ptdf)
    factors[keep] = ptdf(reduced)
    return factors


@functools.lru_cache(maxsize=32)
def believed_net(config: PowerConfig) -> Net:
    """The `Net` the model prices overloads on: `net_of(config)` itself when the model is exact
    (`model_error` = 0), else with the believed ratings (`rating_factor`) or the believed PTDF
    and no rating on the lines believed out (`believed_ptdf`)."""
    net = net_of(config)
    if config.model_error == 0.0:
        return net
    data = power_data(config)
    factor = rating_factor(config)
    factors = believed_ptdf(config)
    limited = np.asarray(net.limited) & ~np.isin(np.arange(factor.size),
                                                 outaged_lines(config))
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    with jax.ensure_compile_time_eval():
        return dataclasses.replace(
            net, ptdf=f32(factors), cand_ptdf=f32(factors.T[data.candidates]),
            limited=jnp.asarray(limited), rating=f32(np.asarray(net.rating) * factor))


@functools.lru_cache(maxsize=32)
def believed_clearing(config: PowerConfig) -> ClearingProblem:
    """The DC-OPF the model clears under `market="opf"`: the environment's own when the model
    is exact, else the one of the grid with the believed ratings (`rating_factor`) and without
    the lines believed out (`outaged_lines`). Requires config.market == "opf"."""
    net = net_of(config)
    if net.clearing is None:
        raise ValueError(f"the {config.market!r} market clears no OPF")
    if config.model_error == 0.0:
        return net.clearing
    grid = power_data(config).grid
    keep = ~np.isin(np.arange(grid.n_lines), outaged_lines(config))
    rating = grid.line_rating_mw * rating_factor(config)
    believed = dataclasses.replace(
        grid, line_from=grid.line_from[keep], line_to=grid.line_to[keep],
        line_x=grid.line_x[keep], line_tap=grid.line_tap[keep], line_rating_mw=rating[keep])
    return clearing_problem(believed, voll=net.voll)
