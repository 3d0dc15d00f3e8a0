"""Per-agent gradient measurement: mean and variance of one agent's update direction.

For a fixed policy and N, independent roll-outs of the same scenario give independent samples of
agent i's contribution to the actor gradient,

    g_i = (1 - alpha) grad[-(1/T) sum_t sum_j A_t log pi(a_itj)] + alpha grad[(1/T) sum_t G_it],

with A_t the GAE advantage of the team reward under the centralised critic and G_it the
agent's guidance loss. alpha = 0 is the plain policy gradient. The relative variance
tr Var[g_i] / |E g_i|^2 is what the variance experiment plots against N.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dgpg.analytical import make_model
from dgpg.envs.cloud import EnvConfig
from dgpg.learners.networks import Actor
from dgpg.learners.ppo import Runner, TrainConfig, gae, make_rollout


def agent_gradient_samples(
    config: TrainConfig,
    env_config: EnvConfig,
    runner: Runner,
    alpha: float,
    n_rollouts: int,
    key: jax.Array,
    scenario_seed: int = 0,
    agent: int = 0,
) -> np.ndarray:
    """(n_rollouts, P) samples of agent `agent`'s actor-gradient contribution (see module)."""
    if not 0 <= agent < env_config.n_agents:
        raise ValueError(f"agent must be in [0, {env_config.n_agents}), got {agent}")
    guided = dataclasses.replace(config, algo="dgpg", alpha=float(alpha))
    rollout = make_rollout(guided, env_config)
    actor = Actor(config.hidden)
    model = make_model(config.model, env_config)
    scenario_key = jax.random.key(scenario_seed)

    def one(k):
        traj, last_value, _ = rollout(runner.params, runner.value_norm, k, scenario_key)
        adv, _ = gae(traj.rewards, traj.values, last_value, config.gamma, config.gae_lambda)
        obs_i = jax.tree.map(lambda x: x[:, agent : agent + 1], traj.obs)
        ref_i = jax.tree.map(lambda x: x[:, agent : agent + 1], traj.reference)
        actions_i = traj.actions[:, agent : agent + 1]
        mask = obs_i.job_mask

        def loss(actor_params):
            logp = jax.nn.log_softmax(actor.apply(actor_params, obs_i), axis=-1)
            logp_a = jnp.take_along_axis(logp, actions_i[..., None], axis=-1)[..., 0]
            pg = -jnp.sum(jnp.where(mask, adv[:, None, None] * logp_a, 0.0)) / adv.shape[0]
            guidance = jnp.mean(jax.vmap(model.guidance_loss)(jnp.exp(logp), ref_i))
            return (1.0 - alpha) * pg + alpha * guidance

        return ravel_pytree(jax.grad(loss)(runner.params["actor"]))[0]

    keys = jax.random.split(key, n_rollouts)
    return np.asarray(jax.jit(jax.vmap(one))(keys), dtype=np.float64)


def relative_variance(samples: np.ndarray) -> dict[str, float]:
    """tr Var / |E g|^2 of gradient samples (n, P), with the parts it is made of.

    |E g|^2 is estimated without bias as |mean|^2 - tr Var / n (the sample mean's own noise
    would otherwise inflate it when the relative variance is large); floored at 1e-12 |mean|^2.
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    if n < 2:
        raise ValueError("relative_variance needs at least 2 samples")
    mean = samples.mean(axis=0)
    total_var = float(samples.var(axis=0, ddof=1).sum())
    raw = float(mean @ mean)
    sq_norm = max(raw - total_var / n, 1e-12 * raw)
    return {"variance": total_var, "squared_mean_norm": sq_norm,
            "relative_variance": total_var / max(sq_norm, 1e-300), "n": int(n)}
