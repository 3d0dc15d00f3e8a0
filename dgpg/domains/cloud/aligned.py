"""The aligned model of HeteroCloud: guidance by the reward's own cost (docs/design.md, section 4).

The potential is the team reward's per-step cost as a function of the servers' CPU demand D:

    Phi(D) = imbalance(D) + w_o overload(D) + w_d drop_rate,

with imbalance = sum_j kappa_j (u_j - u_bar)^2 / sum kappa, overload = mean_j max(0, u_j - 1),
u_j = D_j / kappa_j, exactly as `dgpg.domains.cloud.env.reward_terms` computes them. For one job of
c cores and m GB, placing it on candidate k changes the potential by

    delta_k = Phi(B + c e_k) - Phi(B)        when k has m GB and a slot free,
    delta_k = w_d / A                        otherwise (the job is rejected; A = the step's
                                             arrivals, so the drop rate rises by 1 / A),

where B are the loads the job meets: the current state (`stand_in="state"`), or the current
state plus every other job of the step at its expected placement under the current policy
(`stand_in="mean-field"`). With `horizon="lifetime"` a feasible placement's delta is multiplied
by the steps the job would run there, w / (e_k min(1, C_k / D_k)): a placement's imbalance
persists for the job's stay while a drop costs once.

The guidance of a job is the expected change under the agent's own probabilities minus the
best candidate's, sum_k pi(k) delta_k - min_k delta_k: linear in pi, non-negative, and zero
exactly when pi puts its mass on the minimising candidates. It is computed from the state and
probabilities alone (no sampled action, no return). Dividing by s = max(c, 1/2) / sum kappa
(times the mean work for the lifetime horizon) makes the per-candidate costs of order one
whatever the job's size and N; `cost_cap` bounds the normalised cost of a drop (a few hundred
otherwise) without changing which candidates minimise it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from dgpg.domains.cloud.belief import believed, calibrated
from dgpg.domains.cloud.env import EnvConfig, EnvState, mean_work, server_loads

STAND_INS = ("state", "mean-field")
HORIZONS = ("step", "lifetime")


@struct.dataclass
class AlignedReference:
    """Per job slot and candidate: normalised potential change above the best candidate's."""

    cost: jax.Array  # (N, J, K) >= 0, zero on the minimising candidates
    mask: jax.Array  # (N, J) bool, slots holding a job


@struct.dataclass
class CandidateView:
    """What a job meets on each of its candidates, arrays of shape (..., K) (cores, GB)."""

    load: jax.Array  # CPU demand D_k before the job
    mem_free: jax.Array  # free memory
    slots_free: jax.Array  # free running-job slots
    kappa: jax.Array  # effective capacity C_k e_k
    efficiency: jax.Array  # e_k
    cores: jax.Array  # C_k


def candidate_view(state: EnvState, config: EnvConfig) -> CandidateView:
    """Every job slot's view of its agent's candidates in the current state, (N, J, K)."""
    sc, jobs = state.scenario, state.jobs
    cpu, mem, running = server_loads(state.servers)
    N, J = jobs.mask.shape
    cand = jnp.broadcast_to(sc.candidates[:, None, :], (N, J, sc.candidates.shape[1]))
    return CandidateView(
        load=cpu[cand], mem_free=(sc.memory_gb - mem)[cand],
        slots_free=(config.slots - running)[cand].astype(jnp.float32),
        kappa=sc.capacity[cand], efficiency=sc.efficiency[cand], cores=sc.cores[cand],
    )


def fits(view: CandidateView, memory_gb: jax.Array) -> jax.Array:
    """Whether a job of `memory_gb` (shape (...)) is admitted on each candidate: free memory
    and a free slot, (..., K) bool."""
    return (view.mem_free >= memory_gb[..., None] - 1e-4) & (view.slots_free >= 1)


def delta_potential(cores: jax.Array, memory_gb: jax.Array, work: jax.Array,
                    view: CandidateView, total: jax.Array, state: EnvState, config: EnvConfig,
                    horizon: str = "step") -> jax.Array:
    """delta_k, the change of the potential when a job of `cores`, `memory_gb`, `work` (shape
    (...)) is placed on each candidate of `view` (shape (..., K)); `total` (...) is the
    cluster's CPU demand before the job."""
    sc = state.scenario
    k_tot = jnp.sum(sc.capacity)
    M = sc.capacity.shape[0]
    c, total = cores[..., None], total[..., None]
    imbalance = (c * (2.0 * view.load + c) / view.kappa / k_tot
                 - c * (2.0 * total + c) / k_tot**2)
    overload = (jnp.maximum(0.0, (view.load + c) / view.kappa - 1.0)
                - jnp.maximum(0.0, view.load / view.kappa - 1.0)) / M
    delta = imbalance + config.overload_weight * overload
    if horizon == "lifetime":
        speed = view.efficiency * jnp.minimum(1.0, view.cores / jnp.maximum(view.load + c, 1e-6))
        delta = delta * work[..., None] / speed
    elif horizon != "step":
        raise ValueError(f"unknown horizon {horizon!r}; known: {', '.join(HORIZONS)}")
    arrived = jnp.maximum(jnp.sum(state.jobs.mask) + state.jobs.shed, 1)
    return jnp.where(fits(view, memory_gb), delta, config.drop_weight / arrived)


def placement_delta(state: EnvState, config: EnvConfig, probs: jax.Array | None = None,
                    stand_in: str = "state", horizon: str = "step") -> jax.Array:
    """delta_k for every job slot with the others at the stand-in, shape (N, J, K).

    probs (N, J, K): the current policy, needed for the mean-field stand-in.
    """
    sc, jobs = state.scenario, state.jobs
    N, J = jobs.mask.shape
    M = sc.capacity.shape[0]
    view = candidate_view(state, config)
    c = jnp.where(jobs.mask, jobs.cores, 0.0)  # (N, J)
    m = jnp.where(jobs.mask, jobs.memory_gb, 0.0)
    total = jnp.full((N, J), jnp.sum(server_loads(state.servers)[0]))
    if stand_in == "mean-field":
        if probs is None:
            raise ValueError("the mean-field stand-in needs the policy's probabilities")
        p = jnp.where(jobs.mask[..., None], probs, 0.0)
        cand = jnp.broadcast_to(sc.candidates[:, None, :], p.shape)
        exp_cpu = jnp.zeros(M).at[cand].add(c[..., None] * p)  # (M,) expected added load
        exp_mem = jnp.zeros(M).at[cand].add(m[..., None] * p)
        # the other jobs only, not this one
        view = view.replace(load=view.load + exp_cpu[cand] - c[..., None] * p,
                            mem_free=view.mem_free - (exp_mem[cand] - m[..., None] * p))
        total = total + jnp.sum(c) - c
    elif stand_in != "state":
        raise ValueError(f"unknown stand-in {stand_in!r}; known: {', '.join(STAND_INS)}")
    return delta_potential(jobs.cores, jobs.memory_gb, jobs.work, view, total, state, config,
                           horizon)


def greedy_placement(state: EnvState, config: EnvConfig, horizon: str = "step") -> jax.Array:
    """`model-greedy`: each job to the candidate of smallest delta_k, an agent's jobs one after
    another (each sees the agent's earlier placements of the step, as `least-loaded` does);
    actions (N, J) int32."""
    jobs = state.jobs
    view = candidate_view(state, config)
    first = jax.tree.map(lambda x: x[:, 0], view)  # (N, K), the same for every slot
    total = jnp.sum(server_loads(state.servers)[0])

    def choose(carry, job):
        load, mem_free, slots_free, added = carry
        cores, mem, work, present = job
        v = first.replace(load=load, mem_free=mem_free, slots_free=slots_free)
        delta = delta_potential(cores, mem, work, v, total + added, state, config, horizon)
        a = jnp.argmin(delta, axis=-1)
        admitted = present & jnp.take_along_axis(fits(v, mem), a[:, None], axis=1)[:, 0]
        put = jax.nn.one_hot(a, load.shape[1]) * admitted[:, None]
        return (load + put * cores[:, None], mem_free - put * mem[:, None], slots_free - put,
                added + jnp.where(admitted, cores, 0.0)), a

    per_job = (jobs.cores.T, jobs.memory_gb.T, jobs.work.T, jobs.mask.T)  # (J, N) each
    init = (first.load, first.mem_free, first.slots_free, jnp.zeros(jobs.mask.shape[0]))
    _, actions = jax.lax.scan(choose, init, per_job)
    return actions.T.astype(jnp.int32)


@dataclass(frozen=True)
class AlignedModel:
    """`AnalyticalModel` whose potential is the team reward's cost (see module docstring)."""

    config: EnvConfig
    stand_in: str = "mean-field"
    horizon: str = "lifetime"
    cost_cap: float = 50.0
    calibrate: bool = False
    """Correct the belief by the servers' measured efficiency (`belief.calibrated`)."""

    def __post_init__(self) -> None:
        if self.stand_in not in STAND_INS:
            raise ValueError(f"unknown stand-in {self.stand_in!r}; known: {', '.join(STAND_INS)}")
        if self.horizon not in HORIZONS:
            raise ValueError(f"unknown horizon {self.horizon!r}; known: {', '.join(HORIZONS)}")

    def normaliser(self, state: EnvState) -> jax.Array:
        """s (N, J): the scale of a job's potential changes, max(c, 1/2) / sum kappa."""
        s = jnp.maximum(state.jobs.cores, 0.5) / jnp.sum(state.scenario.capacity)
        return s * mean_work() if self.horizon == "lifetime" else s

    def reference(self, state: EnvState, probs: jax.Array | None = None) -> AlignedReference:
        # the truth unless config.model_error > 0; calibrated, the measured truth where it ran
        state = (calibrated if self.calibrate else believed)(state, self.config)
        delta = placement_delta(state, self.config, probs, self.stand_in, self.horizon)
        cost = (delta - jnp.min(delta, axis=-1, keepdims=True)) / self.normaliser(state)[..., None]
        cost = jnp.where(state.jobs.mask[..., None], jnp.minimum(cost, self.cost_cap), 0.0)
        return AlignedReference(cost=cost, mask=state.jobs.mask)

    def guidance_loss(self, probs: jax.Array, reference: AlignedReference) -> jax.Array:
        """Mean over present jobs of sum_k pi(k) cost_k; `probs` (N, J, K)."""
        ref = jax.lax.stop_gradient(reference)
        per_job = jnp.sum(probs * ref.cost, axis=-1)
        n = jnp.maximum(jnp.sum(ref.mask), 1)
        return jnp.sum(jnp.where(ref.mask, per_job, 0.0)) / n
