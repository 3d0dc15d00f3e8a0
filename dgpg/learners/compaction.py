"""The actor on occupied job slots only (docs/design.md, section 9).

An agent has J = 8 job slots per step but receives about one job, so scoring every slot wastes
most of the actor's work. `occupied_logits` gathers the occupied slots of a batch into a padded
buffer of fixed size P (the domain's `slot_capacity`, sized from its arrival statistics), scores
only those and scatters the logits back; the slots without a job get logits 0 (a uniform
distribution that nothing reads: the environment ignores their actions and every loss masks
them). When a batch holds more than P jobs, further buffers of P follow in a `while_loop` until
every job is scored, so the result never depends on P. The gradient goes through a custom VJP
that walks the same buffers, because `while_loop` cannot be differentiated in reverse mode.

On the occupied slots the logits equal the dense actor's up to float reassociation of the
matrix products (the same rows in a batch of another shape).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from dgpg.domains.observation import Observation

Scorer = Callable[[Any, Observation], jax.Array]
"""`scorer(params, obs) -> logits (..., J, K)`: the actor applied densely."""


def _flatten(obs: Observation) -> tuple[Observation, tuple[int, ...]]:
    """Leading axes merged into one agent axis R: candidates (R, K, Fc), jobs (R, J, Fj),
    context (R, Fx), slot_mask (R, J); also returns the leading shape."""
    lead = obs.slot_mask.shape[:-1]
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[len(lead):]), obs)
    return flat, lead


def _buffer(flat: Observation, rank: jax.Array, chunk: jax.Array, capacity: int):
    """The `chunk`-th buffer of occupied slots: an Observation of `capacity` one-job agents
    (candidates (P, K, Fc), jobs (P, 1, Fj), context (P, Fx)), the flat slot index of each
    entry (P,) and whether the entry holds a job (P,)."""
    R, J = flat.slot_mask.shape
    mask = flat.slot_mask.reshape(R * J)
    pos = jnp.where(mask & (rank // capacity == chunk), rank % capacity, capacity)
    slot = jnp.zeros(capacity, jnp.int32).at[pos].set(jnp.arange(R * J, dtype=jnp.int32),
                                                      mode="drop")
    valid = jnp.zeros(capacity, bool).at[pos].set(True, mode="drop")
    agent = slot // J
    buf = Observation(
        candidates=flat.candidates[agent],
        slots=flat.slots.reshape(R * J, 1, -1)[slot],
        context=flat.context[agent],
        slot_mask=valid[:, None],
    )
    return buf, slot, valid


def _chunks(flat: Observation, capacity: int) -> tuple[jax.Array, jax.Array]:
    """Rank of every slot among the occupied ones (R * J,) and the number of buffers needed."""
    mask = flat.slot_mask.reshape(-1)
    rank = jnp.cumsum(mask.astype(jnp.int32)) - 1
    count = jnp.sum(mask.astype(jnp.int32))
    return rank, (count + capacity - 1) // capacity


def _forward(scorer: Scorer, capacity: int, params: Any, obs: Observation) -> jax.Array:
    flat, lead = _flatten(obs)
    R, J = flat.slot_mask.shape
    K = flat.candidates.shape[1]
    rank, n_chunks = _chunks(flat, capacity)

    def body(carry):
        c, out = carry
        buf, slot, valid = _buffer(flat, rank, c, capacity)
        logits = scorer(params, buf)[:, 0, :]  # (P, K)
        return c + 1, out.at[jnp.where(valid, slot, R * J)].set(logits, mode="drop")

    out = jnp.zeros((R * J, K), flat.candidates.dtype)
    _, out = jax.lax.while_loop(lambda carry: carry[0] < n_chunks, body, (0, out))
    return out.reshape(*lead, J, K)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _occupied(scorer: Scorer, capacity: int, params: Any, obs: Observation) -> jax.Array:
    return _forward(scorer, capacity, params, obs)


def _occupied_fwd(scorer, capacity, params, obs):
    return _forward(scorer, capacity, params, obs), (params, obs)


def _occupied_bwd(scorer, capacity, residuals, g):
    """Parameter cotangent, accumulated buffer by buffer (each buffer's forward recomputed);
    the observation is data, with zero cotangent."""
    params, obs = residuals
    flat, _ = _flatten(obs)
    R, J = flat.slot_mask.shape
    g = g.reshape(R * J, -1)
    rank, n_chunks = _chunks(flat, capacity)

    def body(carry):
        c, acc = carry
        buf, slot, valid = _buffer(flat, rank, c, capacity)
        _, vjp = jax.vjp(lambda p: scorer(p, buf)[:, 0, :], params)
        (grad,) = vjp(jnp.where(valid[:, None], g[slot], 0.0))
        return c + 1, jax.tree.map(jnp.add, acc, grad)

    zero = jax.tree.map(jnp.zeros_like, params)
    _, grad = jax.lax.while_loop(lambda carry: carry[0] < n_chunks, body, (0, zero))
    obs_zero = jax.tree.map(_zero_cotangent, obs)
    return grad, obs_zero


def _zero_cotangent(x: jax.Array) -> jax.Array:
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return jnp.zeros(x.shape, jax.dtypes.float0)


_occupied.defvjp(_occupied_fwd, _occupied_bwd)


def occupied_logits(scorer: Scorer, params: Any, obs: Observation, capacity: int) -> jax.Array:
    """`scorer`'s logits (..., J, K) on the occupied slots of `obs` (leading axes any), 0 on
    the empty ones, evaluated `capacity` occupied slots at a time (see module docstring).
    Differentiable in `params`; `capacity` must be a Python int."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
    return _occupied(scorer, capacity, params, obs)
