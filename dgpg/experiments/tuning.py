"""Hyperparameter sweep for fair baselines: learning rate x entropy coefficient, per algorithm.

Every algorithm gets the same grid, budget and seeds. A configuration is scored on the
validation scenarios (never on test): the mean greedy validation return of the final policy,
averaged over seeds. Writes tuning.csv (every run) and tuning.md (the grid per algorithm).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dgpg import atomic
from dgpg.envs.cloud import EnvConfig
from dgpg.evaluation import VALIDATION_SEEDS
from dgpg.learners.ppo import ALGORITHMS, TrainConfig, init_runner, make_train_episode
from dgpg.training import make_validator

LEARNING_RATES = (3e-4, 1e-3, 3e-3)
ENTROPY_COEFS = (0.0, 0.003, 0.01)


def run_config(
    config: TrainConfig, env_config: EnvConfig, episodes: int, seeds: int
) -> dict[str, float]:
    """Train `seeds` seeds for `episodes` episodes; final validation and training returns."""
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    runners = jax.vmap(lambda k: init_runner(k, config, env_config))(keys)
    train_episode = jax.jit(jax.vmap(make_train_episode(config, env_config)))
    returns = []
    t0 = time.perf_counter()
    for _ in range(episodes):
        runners, metrics = train_episode(runners)
        returns.append(np.asarray(metrics["return"]))
    validate = make_validator(config, env_config, VALIDATION_SEEDS)
    val = np.asarray(validate(runners.params["actor"])).mean(axis=1)  # (seeds,)
    last = np.mean(returns[-5:], axis=0)
    return {"val_return": float(val.mean()), "val_return_std": float(val.std()),
            "train_return_last5": float(last.mean()), "seconds": time.perf_counter() - t0}


def sweep(
    out: Path, n_agents: int = 10, episodes: int = 20, seeds: int = 2,
    algos=ALGORITHMS, learning_rates=LEARNING_RATES, entropy_coefs=ENTROPY_COEFS,
    progress=None,
) -> list[dict]:
    """Run the grid; writes tuning.csv and tuning.md under `out` after every run."""
    out.mkdir(parents=True, exist_ok=True)
    env_config = EnvConfig(n_agents=n_agents)
    rows: list[dict] = []
    for algo, lr, ent in itertools.product(algos, learning_rates, entropy_coefs):
        config = dataclasses.replace(TrainConfig(algo=algo), learning_rate=lr, ent_coef=ent)
        result = run_config(config, env_config, episodes, seeds)
        rows.append({"algo": algo, "learning_rate": lr, "ent_coef": ent, **result})
        if progress is not None:
            progress(rows[-1])
        atomic.write_csv(out / "tuning.csv", rows, list(rows[0]))
        atomic.write_text(out / "tuning.md", markdown(rows, n_agents, episodes, seeds))
    return rows


def markdown(rows: list[dict], n_agents: int, episodes: int, seeds: int) -> str:
    lines = [f"Validation return after {episodes} episodes at N={n_agents}, mean of {seeds} "
             "seeds (higher is better); best per algorithm in bold.", ""]
    lines += ["| algo | learning rate | entropy coef | val return | train return (last 5) |",
              "|---|---|---|---|---|"]
    for algo in dict.fromkeys(r["algo"] for r in rows):
        mine = [r for r in rows if r["algo"] == algo]
        best = max(mine, key=lambda r: r["val_return"])
        for r in mine:
            b = "**" if r is best else ""
            lines.append(f"| {algo} | {r['learning_rate']:g} | {r['ent_coef']:g} | "
                         f"{b}{r['val_return']:.2f}{b} | {r['train_return_last5']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m dgpg.experiments.tuning [OUT]
    import sys

    from rich.progress import Progress

    grid = len(ALGORITHMS) * len(LEARNING_RATES) * len(ENTROPY_COEFS)
    with Progress() as bar:
        task = bar.add_task("tuning sweep", total=grid)
        sweep(Path(sys.argv[1] if len(sys.argv) > 1 else "results/tuning"),
              progress=lambda row: bar.advance(task))
