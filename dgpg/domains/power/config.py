"""PowerGrid's configuration, `PowerConfig`, and the static data it names: the case's grid, its
PTDF, the agents' candidate buses and the cost scales (NumPy arrays, MW and $/h).

Importable without JAX (NumPy and SciPy only), so that the command line refuses a bad
configuration (an unknown case, a case file that does not parse, more agents than the grid
holds, a load the generators cannot meet) in one line before JAX loads.

Rules fixed here:

- Line ratings: the case's own, unless they are placeholders (no finite rating, or one rating
  shared by every line, as MATPOWER's 9900 MW in case14, case57, case118 and case300); then
  `grid.with_limits` synthesises them (1.5 x the lines' flows at base load under the
  capacity-proportional dispatch, floored at 0.3 x the largest such flow).
- Agents: at most MAX_AGENTS_PER_BUS aggregators per bus, N <= 4 B. Agent i's home bus is
  `bus_order[i mod B]`, the buses by decreasing base load (ties by index), so the first B agents
  have distinct homes. Its K candidate buses are its home, then the K - 1 other buses nearest
  to it in hops over the lines (ties by bus index); neighbourhoods overlap.
- SimBench grids (`case` a SimBench code such as 1-HV-mixed--0-sw, needing the `simbench`
  package): the grid and ratings of `simbench.load_simbench`, and the base load of each hourly
  period is the bus's measured net load (load less renewables, the mean of the hour's four
  15-minute values) on a day of the profile year, times `load_scale` (default 1): the
  training, validation or test days of `simbench.split_days` by `split`, an episode starting
  at midnight of a day drawn uniformly from them (episode_steps <= 24). The daily cosine then
  shapes only the agents' flexible demand. The static rated loads stand for the crest's base
  load in the scales below.
- Load scale: `load_scale` multiplies the case's loads at the daily crest; None means 1.3 for
  case30 (its line limits bind from about 1.3 x load), 0.6 for case118 (whose synthetic limits
  the unconstrained dispatch already overloads heavily at 0.8 x load) and 1.0 for other cases,
  lowered where needed so that the crest load, base and flexible, is at most 95 % of the
  generation capacity. At these defaults a day's violation cost under uninformed placement is
  of the order of its generation cost.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path

from dgpg.domains.fields import require_int, require_model_error, require_number
from dgpg.domains.power import SPEC
from dgpg.domains.power.grid import CASE_NAMES, Grid, load_case, ptdf, with_limits

MAX_AGENTS_PER_BUS = 4
"""N <= MAX_AGENTS_PER_BUS x B aggregators."""
DEFAULT_LOAD_SCALE = {"case30": 1.3, "case118": 0.6}
"""The crest's load multiplier when `load_scale` is None (1.0 for cases not named here)."""
SPLITS = ("train", "validation", "test")
"""The day sets of a SimBench case (`PowerConfig.split`)."""
HOURS_PER_DAY = 24
"""A SimBench case's periods per day (the profiles' 15-minute values averaged per hour)."""
MARKETS = ("penalty", "opf")
"""How a period is cleared (`PowerConfig.market`)."""
DEFAULT_CAPACITY_SHARE = 0.95
"""A default load scale puts the crest load at no more than this share of the capacity."""


@dataclass(frozen=True)
class PowerConfig:
    """PowerGrid's configuration: hashable, a static argument under `jit`. Every field can be
    set with `dgpg train --domain power --set env.FIELD=VALUE` (`--case` sets `case`)."""

    domain: ClassVar[str] = "power"

    n_agents: int = 10
    """N, flexible-load aggregators (at most 4 per bus of the case)."""
    episode_steps: int = 24
    """T, periods per episode (hours: 24 is a day)."""
    case: str = "case30"
    """A PYPOWER case name (case9 ... case300), a MATPOWER .m / JSON case file or a SimBench
    code (e.g. 1-HV-mixed--0-sw; `pip install -e ".[power]"`)."""
    load_scale: float | None = None
    """Multiplier of the case's loads at the daily crest (None: the case's default, see the
    module docstring)."""
    n_candidates: int = 4
    """K, candidate buses per agent: its home bus and the K - 1 nearest."""
    blocks_per_step: int = 4
    """J, slots for flexible-demand blocks per agent and period."""
    flex_share: float = 0.2
    """The agents' mean flexible demand at the crest, as a share of the base load there."""
    arrival_prob: float = 0.75
    """Chance that a slot holds a block at the crest (scaled by the daily profile elsewhere)."""
    rate_spread: float = 0.5
    """Log-standard deviation of the agents' demand rates (lognormal, drawn per episode)."""
    block_tail: float = 2.0
    """Pareto shape alpha (> 1) of the block sizes: heavy-tailed, infinite variance below 2."""
    block_cap: float = 20.0
    """Largest block over the smallest (the Pareto draw is capped there)."""
    tide_period: float = 24.0
    """Periods per day."""
    tide_depth: float = 0.4
    """Depth of the daily profile: the trough is 1 - depth of the crest, in [0, 1)."""
    crest_hour: float = 18.0
    """Period of the day at which the profile peaks."""
    phase_spread: float = 0.1
    """Spread of the agents' profiles around the day's, as a share of the day."""
    base_noise: float = 0.05
    """Log-standard deviation of the mean-one lognormal noise on each bus's base load, drawn
    per period."""
    violation_weight: float = 10.0
    """Price of 1 MW over a line's rating, in multiples of the reference price (the system's
    incremental cost at the day's mean load)."""
    violation_width: float = 0.1
    """Overload, as a share of the line's rating, at which the penalty's marginal price has
    doubled (the quadratic term)."""
    unserved_weight: float = 20.0
    """Value of lost load, in multiples of the reference price."""
    market: str = "penalty"
    """How each period's load is served and priced. `penalty`: an economic dispatch that
    ignores the network, with line overloads charged at `violation_weight` (a congestion-pricing
    game, not how an operator runs a grid). `opf`: a DC optimal power flow that redispatches
    around the line ratings and sheds load, at the value of lost load, only where no dispatch
    serves it (`dgpg.domains.power.clearing`); its prices are the OPF's LMPs and
    `violation_weight` and `violation_width` are unused."""
    central_steps: int = 200
    """Adam steps of the reference heuristic's relaxed central placement."""
    split: str = "train"
    """SimBench cases: the days the scenarios are drawn from, train, validation or test
    (`simbench.split_days`); evaluation sets it from the scenario seeds (`for_split`). Unused
    by the other cases."""
    model_error: float = 0.0
    """E in [0, 1): how wrong the analytical model and `model-greedy` believe the grid to be
    (`dgpg.domains.power.belief`; 0 = exact). The environment, the posted prices and the
    reference heuristic ignore it. Set as `--set model.error=E`."""
    model_error_kind: str = "systematic"
    """The misspecification family (`--set model.error_kind=NAME`): systematic (believed
    ratings 1 + s E on the most loaded third of the lines at base case, 1 - s E on the others,
    s = +1 for an even seed, -1 for an odd one), random (each line's believed rating off by a
    seeded factor in [1 - E, 1 + E]) or outage (ceil(10 E) lines, drawn by the seed from the
    ten most loaded, believed out of service, their flows rerouted over the reduced network,
    while the grid keeps them)."""
    model_error_seed: int = 0
    """The family's seed (`--set model.error_seed=S`)."""

    def __post_init__(self) -> None:
        for name in ("n_agents", "episode_steps", "n_candidates", "blocks_per_step",
                     "central_steps"):
            require_int(self, name, 1)
        require_number(self, "flex_share", 0.0, 1.0, False, False)
        require_number(self, "arrival_prob", 0.0, 1.0, True, False)
        require_number(self, "rate_spread", 0.0, math.inf, False, True)
        require_number(self, "block_tail", 1.0, math.inf, True, True)
        require_number(self, "block_cap", 1.0, math.inf, False, True)
        require_number(self, "tide_period", 0.0, math.inf, True, True)
        require_number(self, "tide_depth", 0.0, 1.0, False, True)
        require_number(self, "crest_hour", -math.inf, math.inf, True, True)
        require_number(self, "phase_spread", 0.0, 1.0, False, False)
        require_number(self, "base_noise", 0.0, math.inf, False, True)
        require_number(self, "violation_weight", 0.0, math.inf, False, True)
        require_number(self, "violation_width", 0.0, math.inf, True, True)
        require_number(self, "unserved_weight", 0.0, math.inf, True, True)
        if self.load_scale is not None:
            require_number(self, "load_scale", 0.0, math.inf, True, True)
        if self.market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, got "
                             f"{self.market!r:.40}")
        if not isinstance(self.case, str) or not self.case:
            raise ValueError(f"case must be a case name ({', '.join(CASE_NAMES)}) or a case "
                             f"file, got {self.case!r:.60}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got "
                             f"{self.split!r:.40}")
        grid = case_grid(self.case)  # CaseError (a ValueError, one line) if it cannot be used
        if is_simbench(self.case):
            if self.episode_steps > HOURS_PER_DAY:
                raise ValueError(f"episode_steps {self.episode_steps} is more than a SimBench "
                                 f"day's {HOURS_PER_DAY} hourly periods")
        elif self.case not in CASE_NAMES:  # a file: kept absolute, so a run resumes elsewhere
            object.__setattr__(self, "case", str(Path(self.case).absolute()))
        most = MAX_AGENTS_PER_BUS * grid.n_buses
        if self.n_agents > most:
            raise ValueError(f"n_agents {self.n_agents} is more than {grid.name} holds: "
                             f"{MAX_AGENTS_PER_BUS} aggregators per bus, {most} for its "
                             f"{grid.n_buses} buses")
        if self.n_candidates > grid.n_buses:
            raise ValueError(f"n_candidates {self.n_candidates} is more than {grid.name}'s "
                             f"{grid.n_buses} buses")
        scale = self.resolved_load_scale
        crest = crest_load_mw(grid, scale, self.flex_share)
        capacity = float(grid.gen_pmax_mw.sum())
        if crest > capacity:
            raise ValueError(f"load_scale {scale:g} puts the crest load at {crest:.6g} MW "
                             f"(base and flexible), beyond {grid.name}'s generation capacity "
                             f"{capacity:.6g} MW")
        trough = (1.0 - self.tide_depth) * scale * float(grid.load_mw.sum()) \
            + float(grid.shunt_mw.sum())
        floor = float(grid.gen_pmin_mw.sum())
        if trough < floor:
            raise ValueError(f"load_scale {scale:g} puts the trough's base load at "
                             f"{trough:.6g} MW, below {grid.name}'s least generation "
                             f"{floor:.6g} MW")
        require_model_error(self, tuple(SPEC.model_errors))

    def for_split(self, split: str) -> PowerConfig:
        """This configuration with its scenarios drawn from `split`'s days (itself for a case
        without profiles, where the split changes nothing, so that nothing recompiles)."""
        if not is_simbench(self.case) or split == self.split:
            return self
        return dataclasses.replace(self, split=split)

    @property
    def resolved_load_scale(self) -> float:
        """`load_scale`, or the case's default when it is None."""
        if self.load_scale is not None:
            return float(self.load_scale)
        return default_load_scale(self.case, self.flex_share)


def exact_config(config: PowerConfig) -> PowerConfig:
    """`config` with the misspecification fields at their defaults (the exact model): what the
    grid's static data depends on, so that every error shares the truth's compiled constants."""
    if (config.model_error, config.model_error_kind, config.model_error_seed) == (
            0.0, "systematic", 0):
        return config
    return dataclasses.replace(config, model_error=0.0, model_error_kind="systematic",
                               model_error_seed=0)


# --------------------------------------------------------------------------- the case


def placeholder_ratings(grid: Grid) -> bool:
    """True when the case's line ratings carry no information: none is finite, or every line
    has the same one."""
    finite = grid.line_rating_mw[np.isfinite(grid.line_rating_mw)]
    return finite.size == 0 or (finite.size == grid.n_lines and np.unique(finite).size == 1)


def is_simbench(case: str) -> bool:
    """True when `case` has the form of a SimBench code (e.g. 1-HV-mixed--0-sw), not a
    PYPOWER name or a case file."""
    return isinstance(case, str) and re.fullmatch(r"\d-[A-Za-z]+-[\w-]*", case) is not None


@functools.lru_cache(maxsize=4)
def simbench_case(code: str):
    """The SimBench case `code` (`simbench.SimbenchCase`, loaded once); CaseError, one line,
    without the simbench package or for a code it does not know."""
    from dgpg.domains.power.simbench import load_simbench

    return load_simbench(code)


@functools.lru_cache(maxsize=4)
def hourly_net_load(code: str) -> np.ndarray:
    """(days x 24, B) float32 MW: a SimBench case's net load (load less renewables) per bus,
    the mean of each hour's 15-minute values, read-only."""
    case = simbench_case(code)
    per_hour = case.periods_per_day // HOURS_PER_DAY
    net = case.load_mw.astype(np.float64) - case.renewable_mw
    hours = net.shape[0] // per_hour
    hourly = net[:hours * per_hour].reshape(hours, per_hour, -1).mean(axis=1).astype(np.float32)
    hourly.setflags(write=False)
    return hourly


def day_starts(code: str, split: str) -> np.ndarray:
    """(D,) int64: the first hourly row, in `hourly_net_load(code)`, of each of `split`'s
    days (`simbench.split_days`)."""
    from dgpg.domains.power.simbench import split_days

    days = hourly_net_load(code).shape[0] // HOURS_PER_DAY
    return split_days(HOURS_PER_DAY, days)[split] * HOURS_PER_DAY


@functools.lru_cache(maxsize=16)
def case_grid(case: str) -> Grid:
    """The case `case` (name, file or SimBench code) with the ratings the domain uses (module
    docstring); CaseError, one line, if it cannot be loaded."""
    if is_simbench(case):
        return simbench_case(case).grid
    grid = load_case(case)
    return with_limits(grid) if placeholder_ratings(grid) else grid


@functools.lru_cache(maxsize=16)
def case_ptdf(case: str) -> np.ndarray:
    """The PTDF (L, B) of `case_grid(case)`, read-only."""
    factors = ptdf(case_grid(case))
    factors.setflags(write=False)
    return factors


def crest_load_mw(grid: Grid, load_scale: float, flex_share: float) -> float:
    """The mean total load at the daily crest, MW: the scaled base load, the agents' flexible
    demand (`flex_share` of it) and the shunts."""
    return load_scale * float(grid.load_mw.sum()) * (1.0 + flex_share) \
        + float(grid.shunt_mw.sum())


def default_load_scale(case: str, flex_share: float) -> float:
    """The load scale of `load_scale=None` (module docstring)."""
    grid = case_grid(case)
    scale = DEFAULT_LOAD_SCALE.get(case, 1.0)
    base = float(grid.load_mw.sum()) * (1.0 + flex_share)
    room = DEFAULT_CAPACITY_SHARE * float(grid.gen_pmax_mw.sum()) - float(grid.shunt_mw.sum())
    return min(scale, room / base) if base > 0 else scale


def sweep_key(env: dict) -> dict:
    """A run's env overrides as a sweep's folder key names them: a case file as its name and
    the digest of its content, not its path."""
    case = env.get("case")
    if case is None or case in CASE_NAMES or is_simbench(case):
        return env
    try:
        digest = hashlib.sha256(Path(case).read_bytes()).hexdigest()[:16]
    except OSError:
        digest = "missing"
    return {**env, "case": f"{Path(case).name}:{digest}"}


# --------------------------------------------------------------------------- static data


@dataclass(frozen=True, eq=False)
class PowerData:
    """What a configuration's compiled code holds as constants (NumPy, read-only).

    grid: the case with the ratings used (B buses, L lines, G generators). ptdf (L, B): MW of
    line flow per MW injected at a bus and withdrawn at the slack. home (N,): each agent's home
    bus; candidates (N, K): its candidate buses, home first; hops (N, K): their hop distances
    from home. load_scale: the resolved crest multiplier. crest_base_mw: the scaled base load
    at the crest (shunts excluded); crest_flex_mw: the agents' mean flexible demand there.
    ref_price ($/MWh): the system incremental cost at the day's mean load; cost_scale ($/h):
    the generation cost there, the reward's unit.
    """

    grid: Grid
    ptdf: np.ndarray
    home: np.ndarray
    candidates: np.ndarray
    hops: np.ndarray
    load_scale: float
    crest_base_mw: float
    crest_flex_mw: float
    ref_price: float
    cost_scale: float


def power_data(config: PowerConfig) -> PowerData:
    """The configuration's static data (cached on the fields it depends on)."""
    return _power_data(config.case, config.n_agents, config.n_candidates,
                       config.resolved_load_scale, float(config.flex_share),
                       float(config.tide_depth))


def hop_distances(grid: Grid) -> np.ndarray:
    """(B, B) number of lines on the shortest path between two buses."""
    graph = coo_matrix((np.ones(grid.n_lines), (grid.line_from, grid.line_to)),
                       shape=(grid.n_buses, grid.n_buses)).tocsr()
    return shortest_path(graph, directed=False, unweighted=True)


def bus_order(grid: Grid) -> np.ndarray:
    """Bus indices by decreasing base load, ties by index: the agents' homes in turn."""
    return np.lexsort((np.arange(grid.n_buses), -grid.load_mw))


@functools.lru_cache(maxsize=16)
def _power_data(case: str, n_agents: int, k: int, load_scale: float, flex_share: float,
                tide_depth: float) -> PowerData:
    from dgpg.domains.power.dispatch import economic_dispatch

    grid = case_grid(case)
    distance = hop_distances(grid)
    home = bus_order(grid)[np.arange(n_agents) % grid.n_buses]
    order = np.lexsort((np.broadcast_to(np.arange(grid.n_buses), (n_agents, grid.n_buses)),
                        distance[home]), axis=1)
    candidates = order[:, :k]  # the home bus first: its distance, 0, is the only zero
    hops = np.take_along_axis(distance[home], candidates, axis=1).astype(np.int64)
    base = load_scale * float(grid.load_mw.sum())
    mean_load = (1.0 - tide_depth / 2.0) * base * (1.0 + flex_share) + float(grid.shunt_mw.sum())
    dispatch_mw, ref_price = economic_dispatch(grid, mean_load)
    cost = float(np.sum(grid.cost_a * dispatch_mw**2 + grid.cost_b * dispatch_mw + grid.cost_c))
    factors = case_ptdf(case)
    for array in (home, candidates, hops):
        array.setflags(write=False)
    return PowerData(grid=grid, ptdf=factors, home=home, candidates=candidates, hops=hops,
                     load_scale=load_scale, crest_base_mw=base, crest_flex_mw=flex_share * base,
                     ref_price=max(ref_price, 1e-6), cost_scale=max(cost, 1e-6))
