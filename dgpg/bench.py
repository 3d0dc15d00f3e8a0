"""Environment throughput benchmark: agent-steps per second of the compiled environment.

A batch of B environments is stepped `steps` times inside one compiled `lax.scan` (random
actions drawn inside the compiled function); the time of a second call, after compilation, is
reported: agent_steps_per_s = B * N * steps / seconds.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from dgpg.envs import cloud
from dgpg.envs.cloud import EnvConfig

DEFAULT_AGENTS = (10, 100, 1000, 10000)


def default_batch(n_agents: int) -> int:
    """Environments per batch: about 4000 agents per step in total, at least one env."""
    return max(1, 4000 // n_agents)


def env_throughput(n_agents: int, batch: int | None = None, steps: int = 50) -> dict[str, float]:
    """Measure the compiled environment; returns a record with agent_steps_per_s."""
    config = EnvConfig(n_agents=n_agents)
    batch = default_batch(n_agents) if batch is None else batch

    def run(key):
        keys = jax.random.split(key, batch)
        state = jax.vmap(lambda k: cloud.reset(k, config))(keys)

        def one(state, k):
            k_a, k_s = jax.random.split(k)
            actions = jax.random.randint(
                k_a, (batch, n_agents, config.jobs_per_step), 0, config.n_candidates
            )
            step_keys = jax.random.split(k_s, batch)
            state, reward, _ = jax.vmap(lambda kk, s, a: cloud.step(kk, s, a, config))(
                step_keys, state, actions
            )
            return state, reward

        _, rewards = jax.lax.scan(one, state, jax.random.split(key, steps))
        return jnp.sum(rewards)

    fn = jax.jit(run)
    t0 = time.perf_counter()
    fn(jax.random.key(0)).block_until_ready()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn(jax.random.key(1)).block_until_ready()
    seconds = time.perf_counter() - t0
    return {
        "n_agents": n_agents,
        "batch": batch,
        "steps": steps,
        "seconds": seconds,
        "compile_seconds": compile_s,
        "agent_steps_per_s": batch * n_agents * steps / seconds,
        "device": jax.devices()[0].platform,
    }
