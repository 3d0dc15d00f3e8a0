"""The cloud domain's fingerprint, printed as JSON: `python fingerprint_driver.py PART...` with
PART `dgpg`, `mappo`, `ippo` (two training episodes of that learner) or `heuristics` (every
heuristic on two test scenarios). Floats are written with `float.hex`, so equal output means
bit-for-bit equal numbers.

tests/test_domains.py runs it in a subprocess with `XLA_FLAGS` fixed (`FLAGS`), so that the
numbers do not depend on how pytest runs; tests/data/cloud_fingerprint.json is its output on
the code before `dgpg.domains` existed. With these flags the heuristics' numbers are the same on
every machine tried, and the test compares them exactly; the training numbers still differ
between processors in their last bits (XLA's code generation), and the test compares those
within the tolerances it states.
"""

from __future__ import annotations

import json
import sys

FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
         "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


def train(algo: str) -> dict:
    """N = 3, 20 steps, width 16, 2 update epochs of 2 minibatches, key 7: the mean training
    return of each of two episodes and the sum of every parameter after them."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dgpg.domains.cloud.env import EnvConfig
    from dgpg.learners.ppo import TrainConfig, init_runner, make_train_episode

    env = EnvConfig(n_agents=3, episode_steps=20)
    config = TrainConfig(algo=algo, hidden=16, update_epochs=2, num_minibatches=2)
    runner = init_runner(jax.random.key(7), config, env)
    episode = jax.jit(make_train_episode(config, env))
    returns = []
    for _ in range(2):
        runner, metrics = episode(runner)
        returns.append(float(jnp.mean(metrics["return"])).hex())
    total = sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(runner.params))
    return {"returns": returns, "param_sum": float(total).hex()}


def heuristics() -> dict:
    """Every episode metric of every heuristic at N = 5, 20 steps, test scenarios 0 and 1."""
    import numpy as np

    from dgpg.domains import get_domain
    from dgpg.domains.cloud.env import EnvConfig
    from dgpg.evaluation import TEST_SEEDS, evaluate_many

    HEURISTICS = get_domain("cloud").heuristics
    names = sorted(HEURISTICS)
    results = evaluate_many([HEURISTICS[n] for n in names],
                            EnvConfig(n_agents=5, episode_steps=20), TEST_SEEDS[:2])
    return {name: {k: [float(x).hex() for x in np.asarray(v).ravel()]
                   for k, v in sorted(result.items())}
            for name, result in zip(names, results, strict=True)}


if __name__ == "__main__":
    out = {}
    for part in sys.argv[1:]:
        out[part] = heuristics() if part == "heuristics" else train(part)
    print(json.dumps(out, sort_keys=True))
