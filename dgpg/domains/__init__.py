"""Domains: what the learners, training, evaluation and the experiments need of an environment.

A domain is an environment family with a differentiable model of its efficient state. The
learners never name one: they call `domain_of(env_config)` and use its pure functions

    state = domain.reset(key, config)
    obs = domain.observe(state, config)                  # an `Observation`, (N, J, K) decisions
    state, reward, metrics = domain.step(key, state, actions, config)
    entities, context = domain.global_state(state, config)   # the central critic's input
    features = domain.pair_features(obs, derived)        # (..., N, J, K, F), the scorer's input
    model = domain.make_model(name, config)              # an `AnalyticalModel`

Adding a domain is adding its package (environment, model, heuristics), one module here that
builds its `Domain`, and one entry in `REGISTRY` and in `SPECS`. An environment configuration
names its domain in the class attribute `domain`.

This module imports neither JAX nor a domain: `SPECS` holds what the command line checks names
against before JAX loads (a test checks them against the domains themselves).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

EnvConfig = Any
"""A domain's environment configuration: a hashable frozen dataclass (a `jit` static argument)
with the class attribute `domain` and at least `n_agents` and `episode_steps`."""

REGISTRY: dict[str, str] = {"cloud": "dgpg.domains.cloud", "roads": "dgpg.domains.roads"}
"""Domain name -> module whose `DOMAIN` is its `Domain` (imported on first use)."""
DEFAULT_DOMAIN = "cloud"


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """What is known of a domain without importing it: its names, for checks before JAX loads."""

    title: str
    """The environment's name in tables and figures."""
    config: str
    """"module:Class" of its environment configuration (a JAX-free module)."""
    models: tuple[str, ...]
    """Its analytical models (`Domain.make_model`'s names), the default first."""
    heuristics: tuple[str, ...]
    """`Domain.heuristics`' names, in their order."""
    table_metrics: tuple[str, ...]
    """The episode metrics that `dgpg evaluate` tabulates, `return` first."""

    def config_type(self) -> type:
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)


SPECS: dict[str, DomainSpec] = {
    "cloud": DomainSpec(
        title="HeteroCloud", config="dgpg.envs.config:EnvConfig",
        models=("aligned", "aligned-state", "aligned-step", "fluid"),
        heuristics=("random", "round-robin", "least-loaded", "best-fit", "best-fit-central",
                    "analytical", "model-greedy"),
        table_metrics=("return", "imbalance", "overload", "drop_rate", "slowdown",
                       "throughput")),
    "roads": DomainSpec(
        title="RoadNet", config="dgpg.envs.roads.config:RoadConfig",
        models=("aligned",),
        heuristics=("free-flow", "fastest", "random", "so-sample", "model-greedy"),
        table_metrics=("return", "mean_travel_time", "so_ratio", "gap", "overload")),
}


def get_spec(name: str) -> DomainSpec:
    """The spec of domain `name`; ValueError naming the known ones."""
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown domain {name!r:.40}; known: {', '.join(SPECS)}") from None


@dataclasses.dataclass(frozen=True)
class Domain:
    """The pure functions and registries of one domain (see the module docstring)."""

    name: str
    config_type: type
    reset: Callable[..., Any]
    step: Callable[..., Any]
    observe: Callable[..., Any]
    global_state: Callable[..., Any]
    pair_features: Callable[..., Any]
    """`(obs, derived=True) -> (..., N, J, K, F)`; `derived=False` keeps the observation's own
    features only (the `scorer-raw` actor)."""
    slot_capacity: Callable[[int, Any], int]
    """`(rows, config) -> C`: decisions pending among `rows` agent-steps, bounded with a margin
    (the compacted actor's buffer size; `dgpg.learners.compaction`)."""
    train_metrics: tuple[str, ...]
    """Per-step metrics of `step` whose episode means the training log records (metrics.csv
    columns after `return`)."""
    episode_metrics: Callable[[dict[str, Any]], dict[str, Any]]
    """One episode's per-step metrics (arrays (T,)) -> its summary metrics, `return` first."""
    make_model: Callable[[str, Any], Any]
    heuristics: Mapping[str, Callable[..., Any]]
    """Name -> `(key, state, config) -> actions (N, J)`."""
    reference: str
    """The heuristic that training reports beside every run (its convergence reference)."""


def get_domain(name: str) -> Domain:
    """The domain `name`; ValueError naming the known ones."""
    try:
        module = REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown domain {name!r:.40}; known: {', '.join(REGISTRY)}") from None
    return importlib.import_module(module).DOMAIN


def domain_of(env_config: Any) -> Domain:
    """The domain of an environment configuration (its class attribute `domain`)."""
    return get_domain(type(env_config).domain)
