"""One PPO-family learner with parameter sharing: DG-PG, MAPPO, IPPO and dr (docs/design.md,
sections 4-5).

The algorithms share the actor network and every hyperparameter; they differ only in
    MAPPO  centralised critic on the global state,
    IPPO   local critic on each agent's observation,
    DG-PG  MAPPO plus the guidance loss: (1 - alpha) * L_PPO + alpha * guidance,
    dr     MAPPO's critic, but each agent's advantage is its modelled difference reward from
           the same analytical model (`difference_reward`) instead of the team's GAE.
DG-PG with alpha = 0 is MAPPO (bit for bit with the aligned model; to float rounding with
models whose compiled program rounds differently).

One update per episode: `make_train_episode(config, env_config)` returns a pure function
`runner -> (runner, metrics)` that rolls out one episode (T steps, all agents), computes GAE on
the team reward, and runs `update_epochs` epochs of `num_minibatches` minibatches over time
steps. It is compiled once with `jit` and `vmap`ped over seeds by the training loop.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from dgpg.domains import EnvConfig, domain_of
from dgpg.domains.observation import Observation
from dgpg.learners.compaction import occupied_logits
from dgpg.learners.config import (  # noqa: F401 (re-exported)
    ACTOR_NAMES,
    ALGORITHMS,
    MODEL_RULE,
    TUNED,
    TrainConfig,
)
from dgpg.learners.networks import CentralCritic, IdActor, LocalCritic, make_actor

# --------------------------------------------------------------------------- state


@struct.dataclass
class ValueNorm:
    """Running mean and variance of value targets (value normalisation)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls) -> ValueNorm:
        f32 = jnp.float32
        return cls(jnp.zeros((), f32), jnp.ones((), f32), jnp.full((), 1e-4, f32))

    def update(self, x: jax.Array) -> ValueNorm:
        """Merge the batch `x` into the running statistics (parallel Welford)."""
        n = jnp.asarray(x.size, jnp.float32)
        b_mean, b_var = jnp.mean(x), jnp.var(x)
        total = self.count + n
        delta = b_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        return ValueNorm(mean, m2 / total, total)

    def normalize(self, x: jax.Array) -> jax.Array:
        return (x - self.mean) / jnp.sqrt(self.var + 1e-8)

    def denormalize(self, x: jax.Array) -> jax.Array:
        return x * jnp.sqrt(self.var + 1e-8) + self.mean


@struct.dataclass
class GuidanceTrust:
    """The adaptive guidance weight's state (`alpha_schedule="adaptive"`): the weight of the
    next episode, set after each episode by `trust_weight` from how the policy compares with the
    model's own rule."""

    alpha: jax.Array  # () float32


def trust_weight(alpha: float, policy_return: Any, rule_return: float,
                 margin: float = 0.5) -> Any:
    """The adaptive guidance weight: `alpha` while the model's own rule (`model-greedy`, on the
    model's belief) does at least as well as the policy on the validation scenarios, falling
    linearly to 0 as the policy's lead grows to `margin` of the rule's cost
    (`TrainConfig.trust_margin`). The guidance pulls the policy towards the model's choices:
    worth it while they are better than the policy's, harmful once the policy has gone past
    them. Works on arrays (one per seed)."""
    lead = (policy_return - rule_return) / max(abs(rule_return), 1e-9)
    return alpha * (1.0 - lead / max(margin, 1e-9)).clip(0.0, 1.0)


@struct.dataclass
class Runner:
    """Everything a training run carries from one episode to the next."""

    params: dict[str, Any]  # {"actor": ..., "critic": ...}
    opt_state: Any
    value_norm: ValueNorm
    key: jax.Array
    episode: jax.Array  # () int32, episodes trained so far (= next training scenario seed)
    trust: GuidanceTrust | None = None  # the adaptive guidance weight; None for the others


@struct.dataclass
class Trajectory:
    """One episode, leading axis T."""

    obs: Observation  # (T, N, ...)
    entities: jax.Array  # (T, E, F) global state for the centralised critic
    context: jax.Array  # (T, Fx)
    actions: jax.Array  # (T, N, J)
    log_probs: jax.Array  # (T, N, J)
    values: jax.Array  # (T,) central or (T, N) local, denormalised
    rewards: jax.Array  # (T,)
    reference: Any  # the model's reference, leading axes (T, N, J); DG-PG only
    credit: Any = None  # (T, N) each agent's modelled difference reward; dr only


def _networks(config: TrainConfig, env_config: EnvConfig):
    critic = CentralCritic(config.hidden) if config.central_critic else LocalCritic(config.hidden)
    return make_actor(config, env_config), critic


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.learning_rate, eps=1e-5),
    )


def _example_inputs(env_config: EnvConfig) -> tuple[Observation, tuple[jax.Array, jax.Array]]:
    """Zeros shaped like one state's observation and global state: initialising the networks
    needs only the shapes, and tracing `reset` for them costs no compilation."""
    def inputs():
        domain = domain_of(env_config)
        state = domain.reset(jax.random.key(0), env_config)
        return domain.observe(state, env_config), domain.global_state(state, env_config)

    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(inputs))


def init_runner(key: jax.Array, config: TrainConfig, env_config: EnvConfig) -> Runner:
    """Initial parameters, optimiser state and key of one seed."""
    k_actor, k_critic, _, k_run = jax.random.split(key, 4)
    actor, critic = _networks(config, env_config)
    obs, (entities, context) = _example_inputs(env_config)
    params = {
        "actor": actor.init(k_actor, obs),
        "critic": critic.init(k_critic, entities, context)
        if config.central_critic
        else critic.init(k_critic, obs),
    }
    return Runner(
        params=params,
        opt_state=make_optimizer(config).init(params),
        value_norm=ValueNorm.create(),
        key=k_run,
        episode=jnp.zeros((), jnp.int32),
        trust=GuidanceTrust(jnp.float32(config.alpha)) if adaptive(config) else None,
    )


def adaptive(config: TrainConfig) -> bool:
    """DG-PG with the adaptive guidance weight."""
    return config.algo == "dgpg" and config.alpha_schedule == "adaptive"


# --------------------------------------------------------------------------- pieces


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def gae(
    rewards: jax.Array, values: jax.Array, last_value: jax.Array, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and returns for one truncated episode.

    rewards (T,), values (T, ...) and last_value (...) broadcast together; the episode is cut
    at T, so V(s_T) bootstraps the last step. Returns (advantages, returns), each of
    values' shape.
    """
    rewards = jnp.broadcast_to(rewards.reshape(rewards.shape + (1,) * (values.ndim - 1)),
                               values.shape)

    def backwards(carry, x):
        next_adv, next_value = carry
        r, v = x
        delta = r + gamma * next_value - v
        adv = delta + gamma * lam * next_adv
        return (adv, v), adv

    init = (jnp.zeros_like(last_value), last_value)
    _, adv = jax.lax.scan(backwards, init, (rewards, values), reverse=True)
    return adv, adv + values


def clipped_surrogate(
    log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array, clip_eps: float,
    mask: jax.Array,
) -> jax.Array:
    """PPO's clipped policy loss, averaged over present jobs (to be minimised)."""
    ratio = jnp.exp(log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -masked_mean(jnp.minimum(unclipped, clipped), mask)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


# --------------------------------------------------------------------------- rollout


def actor_logits(actor: nn.Module, env_config: EnvConfig, rows: int, dense: bool = False):
    """`logits(actor_params, obs, agents=None) -> (..., J, K)` for observations of `rows`
    agent-steps: the actor on the occupied job slots only (`dgpg.learners.compaction`), or on
    every slot with `dense=True` (the same logits on occupied slots; for tests and benchmarks).
    An actor whose slots depend on each other (`mlp`) is always applied densely. `agents` (A,)
    are the indices of the observation's agent axis (all N when None); only `scorer-id` reads
    them."""
    if isinstance(actor, IdActor):
        def score(params, obs):
            return actor.apply(params, obs, method="score")

        if not dense:
            score = _compacted(score, env_config, rows)

        def id_logits(params, obs, agents=None):
            if agents is None:
                agents = jnp.arange(obs.slot_mask.shape[-2])
            return score(params, obs) + actor.apply(params, agents, method="agent_offsets")

        return id_logits
    if dense or not actor.per_slot:
        return lambda params, obs, agents=None: actor.apply(params, obs)
    compacted = _compacted(actor.apply, env_config, rows)
    return lambda params, obs, agents=None: compacted(params, obs)


def _compacted(scorer, env_config: EnvConfig, rows: int):
    capacity = domain_of(env_config).slot_capacity(rows, env_config)
    return lambda params, obs: occupied_logits(scorer, params, obs, capacity)


def make_value_fn(config: TrainConfig, env_config: EnvConfig):
    """`value_of(params, state, obs, value_norm)`: the critic's denormalised value, () central
    or (N,) local."""
    critic = _networks(config, env_config)[1]
    domain = domain_of(env_config)

    def value_of(params, state, obs, value_norm):
        if config.central_critic:
            entities, context = domain.global_state(state, env_config)
            v = critic.apply(params["critic"], entities, context)
        else:
            v = critic.apply(params["critic"], obs)
        return value_norm.denormalize(v)

    return value_of


def difference_reward(model: Any, probs: jax.Array, reference: Any, actions: jax.Array,
                      mask: jax.Array) -> jax.Array:
    """Each agent's modelled difference reward (N,) (Wolpert & Tumer 2001; Proper & Tumer
    2013): over its pending slots, the model's cost of the slot's counterfactual, the policy's
    expected placement, minus the cost of the candidate it took. The model's per-candidate cost
    is its guidance loss's gradient in the probabilities (for the linear aligned models, their
    per-candidate costs); its scale drops out when the advantages are normalised."""
    cost = jax.lax.stop_gradient(jax.grad(model.guidance_loss)(probs, reference))  # (N, J, K)
    expected = jnp.sum(probs * cost, axis=-1)
    taken = jnp.take_along_axis(cost, actions[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(mask, expected - taken, 0.0), axis=-1)


def make_rollout(config: TrainConfig, env_config: EnvConfig, dense: bool = False):
    """Return `rollout(params, key, scenario_key) -> (Trajectory, last_value, metrics)`."""
    domain = domain_of(env_config)
    actor = _networks(config, env_config)[0]
    logits_of = actor_logits(actor, env_config, env_config.n_agents, dense)
    guided = config.algo == "dgpg"
    model = domain.make_model(config.model, env_config) if config.uses_model else None
    value_of = make_value_fn(config, env_config)

    def rollout(params, value_norm: ValueNorm, key: jax.Array, scenario_key: jax.Array):
        state = domain.reset(scenario_key, env_config)

        def one_step(state, k):
            k_act, k_env = jax.random.split(k)
            obs = domain.observe(state, env_config)
            logits = logits_of(params["actor"], obs)
            actions = jax.random.categorical(k_act, logits, axis=-1)
            log_probs = jnp.take_along_axis(
                jax.nn.log_softmax(logits, axis=-1), actions[..., None], axis=-1
            )[..., 0]
            value = value_of(params, state, obs, value_norm)
            entities, context = domain.global_state(state, env_config)
            probs = jax.nn.softmax(logits, axis=-1)
            reference = model.reference(state, probs) if model is not None else None
            credit = (difference_reward(model, probs, reference, actions, obs.slot_mask)
                      if config.algo == "dr" else None)
            next_state, reward, metrics = domain.step(k_env, state, actions, env_config)
            metrics = {**metrics, "reward": reward}  # a domain need not report it
            transition = Trajectory(obs, entities, context, actions, log_probs, value, reward,
                                    reference if guided else None, credit)
            return next_state, (transition, metrics)

        keys = jax.random.split(key, env_config.episode_steps)
        final, (traj, metrics) = jax.lax.scan(one_step, state, keys)
        last_value = value_of(params, final, domain.observe(final, env_config), value_norm)
        return traj, last_value, metrics

    return rollout


# --------------------------------------------------------------------------- loss and update


def guidance_weight(config: TrainConfig, episode: jax.Array) -> jax.Array:
    """`config.guidance_weight_at(episode)` for a traced episode count (0-based), float32."""
    if config.algo != "dgpg" or config.alpha_schedule in ("fixed", "adaptive"):
        return jnp.float32(config.guidance_weight)
    done = jnp.clip(episode / config.alpha_decay_episodes, 0.0, 1.0)
    return jnp.float32(config.alpha + (config.alpha_final - config.alpha) * done)


def slot_scaled_guidance(model: Any, probs: jax.Array, reference: Any,
                         mask: jax.Array) -> jax.Array:
    """The guidance loss made scale-free: the model's guidance gradient at `probs`
    (B, A, J, K), per slot rescaled over its candidates to [0, 1] (0 the model's best
    candidate, 1 its worst), dotted with the probabilities and averaged over the pending
    slots. Its gradient in `probs` points where the model's does, slot by slot, whatever units
    the model's costs are in (for a loss linear in `probs`, such as the aligned models', the
    model's per-candidate costs normalised per slot)."""
    grad = jax.lax.stop_gradient(jax.vmap(jax.grad(model.guidance_loss))(probs, reference))
    low = jnp.min(grad, axis=-1, keepdims=True)
    span = jnp.max(grad, axis=-1, keepdims=True) - low
    unit = jnp.where(span > 0, (grad - low) / jnp.where(span > 0, span, 1.0), 0.0)
    return masked_mean(jnp.sum(probs * unit, axis=-1), mask)


def make_loss(config: TrainConfig, env_config: EnvConfig, rows: int, dense: bool = False):
    """Return `loss(params, batch) -> (total, aux)` on a minibatch of `rows` agent-steps
    (time steps x agents)."""
    actor, critic = _networks(config, env_config)
    logits_of = actor_logits(actor, env_config, rows, dense)
    guided = config.algo == "dgpg"
    model = domain_of(env_config).make_model(config.model, env_config) if guided else None
    # a fixed weight stays a Python constant, as it always was (the same arithmetic, bit for
    # bit); a scheduled one is the episode's, `batch["alpha"]` (`guidance_weight_at`)
    fixed = None if guided and config.alpha_schedule != "fixed" else config.guidance_weight

    def loss(params, batch):
        traj: Trajectory = batch["traj"]
        mask = traj.obs.slot_mask  # (B, A, J)
        logits = logits_of(params["actor"], traj.obs, batch["agents"])  # (B, A, J, K)
        logp_all = jax.nn.log_softmax(logits, axis=-1)
        log_probs = jnp.take_along_axis(logp_all, traj.actions[..., None], axis=-1)[..., 0]
        adv = batch["advantages"]  # (B,) central or (B, A) local
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        adv = jnp.broadcast_to(adv.reshape(adv.shape + (1,) * (mask.ndim - adv.ndim)), mask.shape)
        policy_loss = clipped_surrogate(log_probs, traj.log_probs, adv, config.clip_eps, mask)
        entropy = masked_mean(categorical_entropy(logits), mask)

        if config.central_critic:
            v = critic.apply(params["critic"], batch["entities"], batch["context"])
        else:
            v = critic.apply(params["critic"], traj.obs)
        value_loss = 0.5 * jnp.mean((v - batch["targets"]) ** 2)

        if traj.reference is not None:
            probs = jnp.exp(logp_all)
            if config.guidance_scale == "slot":
                guidance = slot_scaled_guidance(model, probs, traj.reference, mask)
            else:
                guidance = jax.vmap(model.guidance_loss)(probs, traj.reference).mean()
        else:
            guidance = jnp.zeros(())
        alpha = batch["alpha"] if fixed is None else fixed
        actor_loss = (1.0 - alpha) * policy_loss + alpha * guidance
        total = actor_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        aux = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
               "guidance_loss": guidance}
        return total, aux

    return loss


def make_update(config: TrainConfig, env_config: EnvConfig, dense: bool = False):
    """Return the pure `update(runner, traj, last_value, key) -> (params, opt_state, value_norm,
    aux)`: GAE on the team reward, value normalisation, then `update_epochs` epochs of
    `num_minibatches` minibatches over time steps (agents subsampled beyond
    `agents_per_minibatch`)."""
    optimizer = make_optimizer(config)
    T, N = env_config.episode_steps, env_config.n_agents
    n_mb = min(config.num_minibatches, T)
    steps_per_mb = T // n_mb
    n_sub = min(config.agents_per_minibatch, N)
    loss_fn = make_loss(config, env_config, steps_per_mb * n_sub, dense)

    def update_minibatch(carry, mb):
        params, opt_state, data, k = carry
        t_idx = mb
        k, k_agents = jax.random.split(k)
        agents = (jnp.arange(N) if n_sub == N
                  else jax.random.choice(k_agents, N, (n_sub,), replace=False))
        full = data["traj"]
        entities, context = full.entities[t_idx], full.context[t_idx]
        # one gather of (steps, agents) per leaf: at large N, gathering the steps first would
        # copy every agent's data before the subsample
        traj = full.replace(entities=None, context=None, values=None, rewards=None, credit=None)
        traj = jax.tree.map(lambda x: x[t_idx[:, None], agents[None, :]], traj)
        adv, targets = data["advantages"][t_idx], data["targets"][t_idx]
        if adv.ndim == 2:  # per agent: IPPO's local critic, dr's credit
            adv = jnp.take(adv, agents, axis=1)
        if not config.central_critic:
            targets = jnp.take(targets, agents, axis=1)
        batch = {"traj": traj, "entities": entities, "context": context, "advantages": adv,
                 "targets": targets, "agents": agents, "alpha": data["alpha"]}
        (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        aux["grad_norm"] = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, data, k), aux

    def update_epoch(carry, _):
        params, opt_state, data, k = carry
        k, k_perm = jax.random.split(k)
        perm = jax.random.permutation(k_perm, T)[: n_mb * steps_per_mb].reshape(n_mb, -1)
        (params, opt_state, data, k), aux = jax.lax.scan(
            update_minibatch, (params, opt_state, data, k), perm
        )
        return (params, opt_state, data, k), aux

    def update(runner: Runner, traj: Trajectory, last_value: jax.Array, key: jax.Array):
        # advantages on the team reward, value targets normalised with running statistics
        advantages, returns = gae(
            traj.rewards, traj.values, last_value, config.gamma, config.gae_lambda
        )
        if config.algo == "dr":  # the actor follows the modelled credit; the critic still learns
            advantages = traj.credit
        value_norm = runner.value_norm.update(returns)
        alpha = runner.trust.alpha if adaptive(config) else guidance_weight(config, runner.episode)
        data = {"traj": traj, "advantages": advantages, "targets": value_norm.normalize(returns),
                "alpha": alpha}
        (params, opt_state, _, _), aux = jax.lax.scan(
            update_epoch, (runner.params, runner.opt_state, data, key), None,
            length=config.update_epochs,
        )
        return params, opt_state, value_norm, aux

    return update


def make_train_episode(config: TrainConfig, env_config: EnvConfig, dense: bool = False):
    """Return the pure `train_episode(runner) -> (runner, metrics)` (see module docstring);
    `dense=True` scores every job slot (`actor_logits`)."""
    rollout = make_rollout(config, env_config, dense)
    update = make_update(config, env_config, dense)
    logged = domain_of(env_config).train_metrics

    def train_episode(runner: Runner):
        key, k_roll, k_update = jax.random.split(runner.key, 3)
        scenario_key = jax.random.key(runner.episode)  # training scenarios are seeds 0, 1, ...
        traj, last_value, env_metrics = rollout(
            runner.params, runner.value_norm, k_roll, scenario_key
        )
        params, opt_state, value_norm, aux = update(runner, traj, last_value, k_update)
        metrics = {k: jnp.mean(v) for k, v in aux.items()}
        metrics["return"] = jnp.sum(env_metrics["reward"])
        metrics.update({name: jnp.mean(env_metrics[name]) for name in logged})
        if runner.trust is not None:
            metrics["alpha"] = runner.trust.alpha
        runner = Runner(params, opt_state, value_norm, key, runner.episode + 1, runner.trust)
        return runner, metrics

    return train_episode


# --------------------------------------------------------------------------- acting


def model_rule(config: TrainConfig, env_config: EnvConfig):
    """The model's own rule as a `Policy` (key, state, env_config) -> actions (N, J): the
    domain's `model-greedy` heuristic where it has one, else each slot to the candidate of
    least guidance gradient at the uniform policy (the model's cheapest candidate). Both act on
    the model's belief (`model.error`) in the true environment."""
    domain = domain_of(env_config)
    if MODEL_RULE in domain.spec.heuristics:
        return domain.heuristics[MODEL_RULE]
    model = domain.make_model(config.model, env_config)
    J, K = domain.decision_shape(env_config)

    def policy(key, state, env_config):
        probs = jnp.full((env_config.n_agents, J, K), 1.0 / K)
        cost = jax.grad(model.guidance_loss)(probs, model.reference(state, probs))
        return jnp.argmin(cost, axis=-1).astype(jnp.int32)

    return policy


def make_policy(config: TrainConfig, actor_params, greedy: bool = True, dense: bool = False):
    """A `Policy` (key, state, env_config) -> actions from actor parameters, for evaluation.
    Actions of empty job slots are arbitrary (the environment ignores them)."""
    def policy(key, state, env_config):
        actor = make_actor(config, env_config)
        logits_of = actor_logits(actor, env_config, env_config.n_agents, dense)
        logits = logits_of(actor_params, domain_of(env_config).observe(state, env_config))
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)

    return policy
