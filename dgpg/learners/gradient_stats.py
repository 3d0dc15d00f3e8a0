"""Per-agent gradient measurement: mean and variance of one agent's update direction.

For a fixed policy and N, independent roll-outs of the same scenario give independent samples of
agent i's contribution to the actor gradient,

    g_i = (1 - alpha) grad[-(1/T) sum_t sum_j A_t log pi(a_itj)] + alpha grad[(1/T) sum_t G_it],

with A_t the GAE advantage of the team reward under the centralised critic and G_it the
agent's guidance loss. alpha = 0 is the plain policy gradient. The relative variance
tr Var[g_i] / |E g_i|^2 is what the variance experiment plots against N.

The plain policy gradient's mean is small next to its noise (every other agent's actions move
the team reward), so its mean cannot be measured from plain samples at large N. The
counterfactual estimator removes most of that noise without moving the mean: the same roll-out
is played again with agent i's actions resampled and everything else (arrivals, the other
agents' sampling noise) from the same random numbers, and the advantages A'_t of that second
roll-out are subtracted,

    g_i^cf = -grad (1/T) sum_t sum_j (A_t - A'_t) log pi(a_itj).

A'_t is a function of random numbers independent of agent i's own draws in the first roll-out,
so E[grad log pi(a_it) A'_t] = 0 at every t and E g_i^cf = E g_i (`make_split_rollout`,
`agent_gradients`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.flatten_util import ravel_pytree

from dgpg.domains import EnvConfig, domain_of
from dgpg.domains.observation import Observation
from dgpg.learners.networks import make_actor
from dgpg.learners.ppo import (
    TrainConfig,
    ValueNorm,
    actor_logits,
    gae,
    make_value_fn,
)


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


# --------------------------------------------------------------------------- counterfactual


def score_gradients(log_prob: Callable[[Any], jax.Array], params: Any,
                    weights: jax.Array) -> jax.Array:
    """(W, P): for each row w of `weights` (W, T), the flattened gradient of
    -(1/T) sum_t w_t log_prob(params)_t, with `log_prob(params)` (T,) an agent's log-probability
    of its actions at each step. One vector-Jacobian product serves every row."""
    logp, pullback = jax.vjp(log_prob, params)
    steps = logp.shape[0]
    return jax.vmap(lambda w: ravel_pytree(pullback(-w / steps)[0])[0])(weights)


@struct.dataclass
class AgentTrajectory:
    """One roll-out seen by one agent, leading axis T."""

    obs: Observation  # (T, 1, ...) the agent's own observations
    actions: jax.Array  # (T, 1, J)
    reference: Any  # the model's reference for the agent, leading axes (T, 1, J); or None
    rewards: jax.Array  # (T,) team reward
    values: jax.Array  # (T,) the critic's value (the agent's own for a local critic)
    last_value: jax.Array  # () bootstrap value after the last step


def make_split_rollout(config: TrainConfig, env_config: EnvConfig, agent: int = 0,
                       with_reference: bool = True):
    """`rollout(params, value_norm, world_key, own_key, scenario_key) -> AgentTrajectory`.

    Agent `agent` samples its actions (Gumbel-max) with noise drawn from `own_key` alone; the
    arrivals and every other agent's noise come from `world_key`. Two roll-outs with one world
    key and two own keys are counterfactuals of each other under common random numbers: they
    differ only through the agent's own choices and what those change downstream."""
    if not 0 <= agent < env_config.n_agents:
        raise ValueError(f"agent must be in [0, {env_config.n_agents}), got {agent}")
    actor = make_actor(config, env_config)
    logits_of = actor_logits(actor, env_config, env_config.n_agents)
    value_of = make_value_fn(config, env_config)
    domain = domain_of(env_config)
    model = domain.make_model(config.model, env_config)

    def own(x):
        return jax.tree.map(lambda leaf: leaf[agent : agent + 1], x)

    def own_value(v):
        return v if v.ndim == 0 else v[agent]

    def rollout(params, value_norm: ValueNorm, world_key, own_key, scenario_key):
        state = domain.reset(scenario_key, env_config)

        def one_step(state, keys):
            k_world, k_own = keys
            k_act, k_env = jax.random.split(k_world)
            obs = domain.observe(state, env_config)
            logits = logits_of(params["actor"], obs)  # (N, J, K)
            noise = jax.random.gumbel(k_act, logits.shape, logits.dtype)
            noise = noise.at[agent].set(jax.random.gumbel(k_own, logits.shape[1:], logits.dtype))
            actions = jnp.argmax(logits + noise, axis=-1)
            value = own_value(value_of(params, state, obs, value_norm))
            reference = (own(model.reference(state, jax.nn.softmax(logits, axis=-1)))
                         if with_reference else None)
            next_state, reward, _ = domain.step(k_env, state, actions, env_config)
            return next_state, (own(obs), actions[agent : agent + 1], reference, reward, value)

        steps = env_config.episode_steps
        keys = (jax.random.split(world_key, steps), jax.random.split(own_key, steps))
        final, (obs, actions, reference, rewards, values) = jax.lax.scan(one_step, state, keys)
        last = own_value(value_of(params, final, domain.observe(final, env_config), value_norm))
        return AgentTrajectory(obs, actions, reference, rewards, values, last)

    return rollout


def agent_gradients(config: TrainConfig, env_config: EnvConfig, agent: int = 0):
    """`sample(params, value_norm, keys (n,), scenario_key) -> (pg, counterfactual, guidance)`,
    each (n, P): for every key, agent `agent`'s plain policy gradient, its counterfactual
    estimate (same mean, see the module docstring) and its guidance gradient, all from one
    roll-out (and its counterfactual twin). Compiled once; the parameters are arguments."""
    factual = make_split_rollout(config, env_config, agent, with_reference=True)
    twin = make_split_rollout(config, env_config, agent, with_reference=False)
    actor = make_actor(config, env_config)
    model = domain_of(env_config).make_model(config.model, env_config)

    def one(params, value_norm, key, scenario_key):
        k_world, k_own, k_alt = jax.random.split(key, 3)
        traj = factual(params, value_norm, k_world, k_own, scenario_key)
        other = twin(params, value_norm, k_world, k_alt, scenario_key)
        adv, _ = gae(traj.rewards, traj.values, traj.last_value, config.gamma,
                     config.gae_lambda)
        adv_cf, _ = gae(other.rewards, other.values, other.last_value, config.gamma,
                        config.gae_lambda)

        def log_probs(actor_params):
            return jax.nn.log_softmax(actor.apply(actor_params, traj.obs), axis=-1)

        def log_prob(actor_params):  # (T,) log pi of the agent's actions, present jobs only
            logp_a = jnp.take_along_axis(log_probs(actor_params), traj.actions[..., None],
                                         axis=-1)[..., 0]
            return jnp.sum(jnp.where(traj.obs.slot_mask, logp_a, 0.0), axis=(1, 2))

        pg, counterfactual = score_gradients(log_prob, params["actor"],
                                             jnp.stack([adv, adv - adv_cf]))

        def guidance(actor_params):
            probs = jnp.exp(log_probs(actor_params))
            return jnp.mean(jax.vmap(model.guidance_loss)(probs, traj.reference))

        return pg, counterfactual, ravel_pytree(jax.grad(guidance)(params["actor"]))[0]

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None)))
