"""Run policies on fixed scenario seeds and summarise them (docs/design.md, section 6).

An episode's key is `jax.random.key(seed)`: `reset` builds the same cluster from it as
`make_scenario(n_agents, seed)`. All scenarios of an evaluation run at once (`vmap`), each
episode as one compiled `lax.scan`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from dgpg.domains import EnvConfig, domain_of

TEST_SEEDS = tuple(range(10000, 10040))
VALIDATION_SEEDS = tuple(range(20000, 20010))

SPLIT_SEEDS = {"test": frozenset(TEST_SEEDS), "validation": frozenset(VALIDATION_SEEDS)}


def for_seeds(config: EnvConfig, seeds: Sequence[int]) -> EnvConfig:
    """`config` for an evaluation on `seeds`. A domain whose scenarios come from stretches of
    data (HeteroCloud on a cluster trace: training, validation and test days) gives its
    configuration a `for_split(split)` method; the seeds name the split: test for TEST_SEEDS,
    validation for VALIDATION_SEEDS. Other seeds, and other configurations, are unchanged."""
    if not hasattr(config, "for_split"):
        return config
    chosen = {int(s) for s in seeds}
    for split, members in SPLIT_SEEDS.items():
        if chosen and chosen <= members:
            return config.for_split(split)
    return config


Policy = Callable[[jax.Array, Any, EnvConfig], jax.Array]
"""`(key, state, env_config) -> actions (N, J) int32`: a heuristic or a trained actor."""

def rollout(policy: Policy, key: jax.Array, config: EnvConfig) -> dict[str, jax.Array]:
    """One episode from `key`; returns the per-step metrics, each of shape (T,), with the team
    reward as `reward`."""
    domain = domain_of(config)
    state = domain.reset(key, config)

    def one_step(state, k):
        k_act, k_env = jax.random.split(k)
        actions = policy(k_act, state, config)
        state, reward, metrics = domain.step(k_env, state, actions, config)
        return state, {**metrics, "reward": reward}

    keys = jax.random.split(jax.random.fold_in(key, 1), config.episode_steps)
    _, metrics = jax.lax.scan(one_step, state, keys)
    return metrics


@functools.lru_cache(maxsize=8)
def _switch_program(policies: tuple[Policy, ...], config: EnvConfig) -> Callable:
    """Compiled `(index, keys (S,)) -> episode metrics (S,)` of `policies[index]`: one program
    for all of them (`lax.switch`, which calls a single policy directly), so the environment is
    compiled once, not once per policy."""
    def chosen(index):
        branches = [lambda k, s, p=p: p(k, s, config) for p in policies]
        return lambda key, state, _config: jax.lax.switch(index, branches, key, state)

    return jax.jit(lambda index, keys: jax.vmap(
        lambda k: domain_of(config).episode_metrics(rollout(chosen(index), k, config)))(keys))


def evaluate(
    policy: Policy, config: EnvConfig, seeds: Sequence[int] = TEST_SEEDS
) -> dict[str, np.ndarray]:
    """Per-scenario episode metrics of `policy` (the domain's `episode_metrics`, `return`
    first), each an array of shape (len(seeds),)."""
    return evaluate_many([policy], config, seeds)[0]


def evaluate_many(
    policies: Sequence[Policy], config: EnvConfig, seeds: Sequence[int] = TEST_SEEDS,
    on_policy: Callable[[int], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """`evaluate` of each policy, compiled as one program (the same function object for the
    same policies and configuration, so its compiled code is reused); `on_policy(i)` is called
    before policy i runs (for progress display)."""
    seeds = [int(s) for s in seeds]
    groups: dict[EnvConfig, list[int]] = {}  # seeds of different splits run on their own
    for i, seed in enumerate(seeds):
        groups.setdefault(for_seeds(config, (seed,)), []).append(i)
    programs = [(_switch_program(tuple(policies), group_config),
                 jnp.stack([jax.random.key(seeds[i]) for i in members]), np.asarray(members))
                for group_config, members in groups.items()]
    results = []
    for i in range(len(policies)):
        if on_policy is not None:
            on_policy(i)
        parts = [(members, run(jnp.int32(i), keys)) for run, keys, members in programs]
        metrics = {}
        for name in parts[0][1]:
            values = np.empty(len(seeds), dtype=np.float64)
            for members, part in parts:
                values[members] = np.asarray(part[name], dtype=np.float64)
            metrics[name] = values
        results.append(metrics)
    return results


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its Student-t confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, 0.0
    sem = float(np.std(values, ddof=1) / np.sqrt(values.size))
    return mean, float(stats.t.ppf(0.5 + level / 2, values.size - 1) * sem)


def records(policies: dict[str, Policy], config: EnvConfig, seeds: Sequence[int] = TEST_SEEDS,
            on_policy: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """One record per policy: its name, the domain, N, the number of scenarios and every
    episode metric as {"mean", "ci95"} over the scenarios (what `dgpg evaluate` prints)."""
    results = evaluate_many(list(policies.values()), config, seeds, on_policy)
    rows = []
    for name, metrics in zip(policies, results, strict=True):
        row: dict[str, Any] = {"policy": name, "domain": domain_of(config).name,
                               "n_agents": config.n_agents, "scenarios": len(seeds)}
        for metric, values in metrics.items():
            mean, ci = mean_ci(values)
            row[metric] = {"mean": mean, "ci95": ci}
        rows.append(row)
    return rows
