"""The machines domain's pure functions, its aligned model and its two heuristics."""

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains import Domain
from dgpg.domains.observation import Observation, pair_views
from dgpg_machines import SPEC
from dgpg_machines.config import MachinesConfig


@struct.dataclass
class State:
    speed: jax.Array  # (M,) work per step a machine clears
    candidates: jax.Array  # (N, K) machine indices
    load: jax.Array  # (M,) work on each machine
    jobs: jax.Array  # (N, J) job sizes, 0 where no job
    t: jax.Array  # () step


def _arrivals(key, config: MachinesConfig) -> jax.Array:
    shape = (config.n_agents, config.jobs_per_step)
    k_on, k_size = jax.random.split(key)
    present = jax.random.bernoulli(k_on, config.arrival_prob, shape)
    return jnp.where(present, jax.random.exponential(k_size, shape), 0.0)


def reset(key, config: MachinesConfig) -> State:
    k_speed, k_cand, k_jobs = jax.random.split(key, 3)
    M = config.n_machines
    candidates = jax.vmap(lambda k: jax.random.choice(k, M, (config.n_candidates,),
                                                      replace=False))(
        jax.random.split(k_cand, config.n_agents))
    return State(speed=jax.random.uniform(k_speed, (M,), minval=0.5, maxval=2.0),
                 candidates=candidates.astype(jnp.int32), load=jnp.zeros(M),
                 jobs=_arrivals(k_jobs, config), t=jnp.zeros((), jnp.int32))


def _placed(state: State, weights: jax.Array) -> jax.Array:
    """(M,) work placed when job j of agent i goes to candidate k with weight w (N, J, K)."""
    work = state.jobs[..., None] * weights
    return jnp.zeros_like(state.load).at[state.candidates].add(work.sum(axis=1))


def step(key, state: State, actions, config: MachinesConfig):
    load = config.carry_over * state.load + _placed(state, jax.nn.one_hot(
        actions, config.n_candidates))
    cost = jnp.sum(load**2 / state.speed) / config.n_agents
    metrics = {"cost": cost, "peak": jnp.max(load / state.speed)}
    next_state = state.replace(load=load, jobs=_arrivals(key, config), t=state.t + 1)
    return next_state, -cost, metrics


def observe(state: State, config: MachinesConfig) -> Observation:
    speed = state.speed[state.candidates]
    candidates = jnp.stack([state.load[state.candidates] / speed, speed], axis=-1)
    context = jnp.broadcast_to(state.t / config.episode_steps, (config.n_agents, 1))
    return Observation(candidates=candidates.astype(jnp.float32),
                       jobs=state.jobs[..., None].astype(jnp.float32),
                       context=context.astype(jnp.float32), job_mask=state.jobs > 0)


def global_state(state: State, config: MachinesConfig):
    entities = jnp.stack([state.load, state.speed], axis=-1).astype(jnp.float32)
    return entities, jnp.array([state.t / config.episode_steps], jnp.float32)


def pair_features(obs: Observation, derived: bool = True) -> jax.Array:
    cand, job, raw = pair_views(obs)
    if not derived:
        return jnp.concatenate(raw, axis=-1)
    after = cand[..., 0] + job[..., 0] / cand[..., 1]  # utilisation once the job is placed
    return jnp.concatenate([*raw, after[..., None]], axis=-1)


def _delta(state: State, background: jax.Array) -> jax.Array:
    """(N, J, K): the exact cost increase of each job on each candidate over `background`."""
    base, speed = background[state.candidates][:, None, :], state.speed[state.candidates]
    size = state.jobs[..., None]
    return ((base + size) ** 2 - base**2) / speed[:, None, :]


@struct.dataclass
class Reference:
    cost: jax.Array  # (N, J, K) cost increase above the job's best candidate
    mask: jax.Array  # (N, J) jobs present


class AlignedModel:
    """The reward's own cost: each job's increase of sum load^2 / speed, the other jobs of the
    step at their expected placement under the policy (mean field)."""

    def __init__(self, config: MachinesConfig):
        self.config = config

    def reference(self, state: State, probs=None) -> Reference:
        c = self.config
        if probs is None:
            probs = jnp.full((c.n_agents, c.jobs_per_step, c.n_candidates), 1 / c.n_candidates)
        expected = c.carry_over * state.load + _placed(state, probs)
        delta = _delta(state, expected)
        cost = (delta - delta.min(axis=-1, keepdims=True)) / c.n_agents
        return Reference(cost=cost, mask=state.jobs > 0)

    def guidance_loss(self, probs, reference: Reference):
        ref = jax.lax.stop_gradient(reference)
        per_job = jnp.sum(probs * ref.cost, axis=-1)
        return jnp.sum(jnp.where(ref.mask, per_job, 0.0)) / jnp.maximum(ref.mask.sum(), 1)


def random_choice(key, state: State, config: MachinesConfig):
    return jax.random.randint(key, state.jobs.shape, 0, config.n_candidates, dtype=jnp.int32)


def greedy(key, state: State, config: MachinesConfig):
    """Each job to the candidate of least cost increase at the carried-over load."""
    return jnp.argmin(_delta(state, config.carry_over * state.load), axis=-1).astype(jnp.int32)


DOMAIN = Domain(spec=SPEC, reset=reset, step=step, observe=observe, global_state=global_state,
                pair_features=pair_features, train_metrics=("cost",))
