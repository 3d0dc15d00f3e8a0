"""HeteroCloud's configuration, `EnvConfig`, and the sizing rules it is checked against.

Importable without JAX (Python and NumPy only), so that a configuration is checked before JAX
loads; `dgpg.domains.cloud.env` re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dgpg.domains.cloud import SPEC, parameters
from dgpg.domains.cloud import trace as traces
from dgpg.domains.cloud.parameters import GENERATIONS, MAX_RATE_MULTIPLIER
from dgpg.domains.fields import require_model_error

# Mean arrivals per agent per step (lambda_bar). Calibrated so that under the `analytical` policy
# the cluster's mean CPU utilisation is about 0.6 over a tidal period and about 0.9 at the peak;
# see docs/guides/cloud.md, "Calibration", and `dgpg.experiments.cloud.calibration`.
LAMBDA_BAR = 1.0

INT32_MAX = 2**31 - 1
MAX_WEIGHT = 1e6
MIN_EFFICIENCY = min(g[3] for g in GENERATIONS)  # slowest generation, 0.70
MAX_SERVER_MEMORY_GB = max(g[2] for g in GENERATIONS)  # 192 GB
MAX_SHED_FRACTION = 0.01  # of the busiest agent's arrivals at the crest of the tide
SLOT_MARGIN = 1.5  # slots per server / jobs a server runs at the crest of the tide


@dataclass(frozen=True)
class EnvConfig:
    """Static configuration of HeteroCloud. Hashable, so it can be a `jit` static argument."""

    domain: ClassVar[str] = "cloud"
    """The domain (`dgpg.domains`) this configuration belongs to."""

    n_agents: int = 10
    """N, the number of dispatcher agents (1 <= N)."""
    servers_per_agent: int = 2
    """M = servers_per_agent * N servers."""
    max_candidates: int = 8
    """K = min(max_candidates, M) candidate servers per agent."""
    jobs_per_step: int = 8
    """J, job slots per agent per step; arrivals beyond J are shed (counted). Configurations that
    would shed more than 1 % of the busiest agent's jobs at the crest of the tide are refused."""
    slots: int = 64
    """Running-job slots per server; refused when smaller than 1.5 times the jobs a server runs
    at the crest of the tide (`peak_running_per_server`)."""
    episode_steps: int = 200
    """T, steps per episode."""
    arrival_rate: float = LAMBDA_BAR
    """lambda_bar, mean jobs per agent per step over a tidal period."""
    tide_period: float = 1000.0
    """Period of the tidal arrival rate, in steps; with a trace, the steps of one of its days."""
    tide_amplitude: float = 0.5
    """Relative amplitude of the tide (unused with a trace)."""
    tide_noise: float = 0.1
    """Standard deviation of the multiplicative Gaussian noise on the rate, shared by all agents
    (unused with a trace, which carries its own fluctuations)."""
    trace: str = traces.NONE
    """The arrival process: "none", the synthetic tide, or a public cluster trace
    (`dgpg.domains.cloud.trace.TRACES`: alibaba2018, google2019, azure_v2) whose CPU and memory
    utilisation drive the arrival rates of CPU- and memory-intensive jobs, one trace day per
    `tide_period` steps. Needs the `traces` extra."""
    split: str = "train"
    """Which of a trace's stretches of days scenarios come from: train, validation or test. The
    evaluation sets it from the scenario seeds (`for_split`); unused without a trace."""
    warm_utilisation: float = 0.6
    """Mean CPU utilisation the warm start targets, scaled by the tide at the first step."""
    overload_weight: float = 2.0
    """w_o: weight of the overload term in the team reward."""
    drop_weight: float = 10.0
    """w_d: weight of the drop-rate term in the team reward."""
    model_error: float = 0.0
    """E in [0, 1): how wrong the analytical models and model-based heuristics believe the
    servers' efficiencies to be (`dgpg.domains.cloud.belief`; 0 = exact). The environment
    ignores it. Set as `--set model.error=E`."""
    model_error_kind: str = "systematic"
    """The misspecification family: systematic (per hardware generation) or random (per
    server). `--set model.error_kind=NAME`."""
    model_error_seed: int = 0
    """The family's seed. `--set model.error_seed=S`."""

    def __post_init__(self) -> None:
        ints = ("n_agents", "servers_per_agent", "max_candidates", "jobs_per_step", "slots",
                "episode_steps")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {_show(value)}")
            if value > INT32_MAX - 1:
                raise ValueError(f"{name} must be < 2**31 - 1 (int32 arrays), got {_show(value)}")
            object.__setattr__(self, name, int(value))
        floats = ("arrival_rate", "tide_period", "tide_amplitude", "tide_noise",
                  "warm_utilisation", "overload_weight", "drop_weight")
        for name in floats:
            value = getattr(self, name)
            if isinstance(value, np.integer | np.floating):
                value = value.item()  # a Python number: np.float32(inf) <= 1e300 in float32
            number = isinstance(value, int | float)
            if isinstance(value, bool) or not number or not abs(value) <= 1e300:  # NaN, inf
                raise ValueError(f"{name} must be a finite number, got {_show(value)}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {_show(value)}")
            object.__setattr__(self, name, value)
        if not 1 <= self.tide_period <= 1e9:
            raise ValueError(f"tide_period must be in [1, 1e9] steps, got {self.tide_period!r}")
        if self.tide_amplitude > 1:
            raise ValueError("tide_amplitude must be <= 1 (the rate must stay non-negative)")
        if self.tide_noise > 1:
            raise ValueError(f"tide_noise must be <= 1, got {self.tide_noise!r}")
        for name in ("overload_weight", "drop_weight"):
            if getattr(self, name) > MAX_WEIGHT:
                raise ValueError(f"{name} must be <= {MAX_WEIGHT:g} (float32 rewards), "
                                 f"got {getattr(self, name)!r}")
        if (self.n_servers * self.slots > INT32_MAX or self.n_agents * self.jobs_per_step > 2**26
                or (self.n_servers + 1) * self.n_agents * self.jobs_per_step >= 2**32):
            # the last bound: admission sorts uint32 keys server * (N * J) + job
            raise ValueError(f"n_agents={self.n_agents} too large for the environment's 32-bit "
                             "indices (with servers_per_agent=2 and jobs_per_step=8: at most "
                             "16383)")
        if not isinstance(self.trace, str) or (self.trace != traces.NONE
                                                and self.trace not in traces.TRACES):
            raise ValueError(f"trace must be one of none, {', '.join(traces.TRACES)}, got "
                             f"{_show(self.trace)}")
        if not isinstance(self.split, str) or self.split not in traces.SPLITS:
            raise ValueError(f"split must be one of {', '.join(traces.SPLITS)}, got "
                             f"{_show(self.split)}")
        if self.trace != traces.NONE:  # every split, so that `for_split` cannot fail
            for split in traces.SPLITS:
                traces.window_starts(self.trace, split, self.tide_period, self.episode_steps)
        self._check_array_sizes()
        require_model_error(self, tuple(SPEC.model_errors))

    # Sizes of the fixed arrays against the load they must hold. A job that does not fit is not
    # lost without trace (shed and rejected jobs are counted), but a configuration in which the
    # arrays rather than the cluster decide what is dropped is a mistake, so it is refused.

    def for_split(self, split: str) -> EnvConfig:
        """This configuration with its scenarios drawn from `split`'s days of the trace (itself
        without a trace, where the split changes nothing, so that nothing recompiles)."""
        if self.trace == traces.NONE or split == self.split:
            return self
        return dataclasses.replace(self, split=split)

    @property
    def peak_load_factor(self) -> float:
        """The rate at the crest of the load over its mean: 1 + tide_amplitude for the tide
        (noise-free), the largest CPU or memory factor of the whole trace with one."""
        if self.trace == traces.NONE:
            return 1.0 + self.tide_amplitude
        return traces.load(self.trace).peak()

    @property
    def peak_arrival_rate(self) -> float:
        """Mean arrivals per step of the busiest agent (rate multiplier 1.2) at the noise-free
        crest of the load (`peak_load_factor`)."""
        return MAX_RATE_MULTIPLIER * self.arrival_rate * self.peak_load_factor

    def shed_fraction_at_peak(self) -> float:
        """Expected share of the busiest agent's arrivals beyond the J job slots of a step, at
        the crest of the tide (`shed_fraction`)."""
        return shed_fraction(self.peak_arrival_rate, self.jobs_per_step)

    def peak_running_per_server(self) -> float:
        """Rough number of jobs a server runs at the crest of the tide: by Little's law,
        arrivals per server per step times the mean work at the slowest efficiency (0.70), but
        no more than the largest server's memory holds on average (192 GB / 5.0 GB, about 39)."""
        per_server = (min(self.arrival_rate * self.peak_load_factor, self.jobs_per_step)
                      / self.servers_per_agent)
        by_arrivals = per_server * mean_work() / MIN_EFFICIENCY
        by_memory = MAX_SERVER_MEMORY_GB / mean_job_memory_gb()
        return min(by_arrivals, by_memory)

    def _check_array_sizes(self) -> None:
        shed = self.shed_fraction_at_peak()
        if shed > MAX_SHED_FRACTION:
            raise ValueError(
                f"jobs_per_step={self.jobs_per_step} is too small for arrival_rate="
                f"{self.arrival_rate:g}: at the peak of the tide {100 * shed:.3g} % of the "
                f"busiest agent's jobs would be shed (at most {100 * MAX_SHED_FRACTION:g} % "
                "allowed); raise jobs_per_step or lower arrival_rate"
            )
        needed = SLOT_MARGIN * self.peak_running_per_server()
        if self.slots < needed:
            raise ValueError(
                f"slots={self.slots} is too small: at the peak of the tide a server runs about "
                f"{needed / SLOT_MARGIN:.3g} jobs, and slots must be at least {SLOT_MARGIN:g} "
                f"times that ({math.ceil(needed)}) so that busy servers do not run out of "
                "slots; raise slots"
            )

    @property
    def n_servers(self) -> int:
        """M."""
        return self.servers_per_agent * self.n_agents

    @property
    def n_candidates(self) -> int:
        """K."""
        return min(self.max_candidates, self.n_servers)


def _show(value) -> str:
    """A value for an error message, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def poisson_sf(k: int, lam: float) -> float:
    """P(n > k) for n ~ Poisson(lam), summed over the terms within 40 standard deviations (plus
    40) of the mean; the terms left out add up to less than 1e-140."""
    if lam <= 0:
        return 0.0 if k >= 0 else 1.0
    width = 40.0 * math.sqrt(lam) + 40.0
    if k + 1 <= lam - width:
        return 1.0
    if k + 1 > lam + width:
        return 0.0
    n = np.arange(max(k + 1, 0), math.ceil(lam + width) + 1, dtype=np.float64)
    log_first = n[0] * math.log(lam) - lam - math.lgamma(n[0] + 1.0)
    log_pmf = log_first + np.concatenate([[0.0], np.cumsum(np.log(lam / n[1:]))])
    return float(min(1.0, np.exp(log_pmf).sum()))


def shed_fraction(lam: float, jobs_per_step: int) -> float:
    """E[(n - J)+] / lambda for n ~ Poisson(lambda): the expected share of arrivals beyond J.
    Uses E[(n - J)+] = lambda P(n >= J) - J P(n > J)."""
    if lam <= 0:
        return 0.0
    J = jobs_per_step
    excess = lam * poisson_sf(J - 1, lam) - J * poisson_sf(J, lam)
    return min(1.0, max(0.0, excess / lam))


def _capped_pareto_mean(alpha: float, x_min: float, cap: float) -> float:
    """E[min(X, cap)] for X ~ Pareto(alpha, x_min): x_min + x_min / (alpha - 1) *
    (1 - (x_min / cap)^(alpha - 1))."""
    return x_min + x_min / (alpha - 1.0) * (1.0 - (x_min / cap) ** (alpha - 1.0))


def mean_work() -> float:
    """Mean work of a job, in steps at efficiency 1.0 (19.5)."""
    return _capped_pareto_mean(parameters.WORK_ALPHA, parameters.WORK_MIN, parameters.WORK_CAP)


def mean_job_memory_gb() -> float:
    """Mean memory of a job over the cluster-wide mix (about 5.0 GB): CPU-intensive jobs hold
    cores * U[1, 2] GB, memory-intensive ones a capped Pareto."""
    cpu = 1.5 * _capped_pareto_mean(parameters.CPU_CORES_ALPHA, parameters.CPU_CORES_MIN,
                                    parameters.CPU_CORES_CAP)
    mem = _capped_pareto_mean(parameters.MEM_GB_ALPHA, parameters.MEM_GB_MIN, parameters.MEM_GB_CAP)
    return parameters.CPU_SHARE * cpu + (1.0 - parameters.CPU_SHARE) * mem
