"""Calibration of lambda_bar: CPU utilisation under the `analytical` policy over tidal periods.

The tidal period is 1000 steps while an episode lasts 200, so calibration runs long episodes
(warm-up of one period, then two measured periods) on several scenarios and reports the mean
utilisation over the measured periods and the mean utilisation near the peak of the tide
(tide factor above 1.45, i.e. within about 0.1 periods of the crest).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.cloud.domain import DOMAIN
from dgpg.domains.cloud.env import EnvConfig, make_scenario
from dgpg.domains.cloud.workload import tide
from dgpg.evaluation import rollout


def measure_utilisation(
    config: EnvConfig, policy: str = "analytical", seeds: int = 4, periods: int = 2
) -> dict[str, float]:
    """Mean CPU utilisation over `periods` full tidal periods (after one period of warm-up) and
    at the peak, averaged over `seeds` scenarios; also the shed fraction."""
    warm = int(config.tide_period)
    long = dataclasses.replace(config, episode_steps=warm * (periods + 1))
    fn = DOMAIN.heuristics[policy]

    @jax.jit
    def run(keys):
        return jax.vmap(lambda k: rollout(fn, k, long))(keys)

    keys = [jax.random.key(90_000 + s) for s in range(seeds)]
    metrics = run(jnp.stack(keys))
    phases = np.array([float(make_scenario(long.n_agents, 90_000 + s, long).phase)
                       for s in range(seeds)])
    util = np.asarray(metrics["cpu_utilisation"])[:, warm:]
    t = np.arange(warm, long.episode_steps)[None, :]
    factor = np.asarray(tide(t, phases[:, None], long.tide_period, long.tide_amplitude))
    peak = factor > 1.45
    arrived = np.asarray(metrics["arrived"])[:, warm:].sum()
    shed = np.asarray(metrics["shed"])[:, warm:].sum() / arrived
    return {
        "arrival_rate": config.arrival_rate,
        "mean_utilisation": float(util.mean()),
        "peak_utilisation": float(util[peak].mean()),
        "shed_fraction": float(shed),
        "drop_rate": float(np.asarray(metrics["drop_rate"])[:, warm:].mean()),
    }
