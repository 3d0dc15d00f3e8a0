"""PowerGrid's heuristic aggregators, on the same scenarios as the learners.

Each is a pure function `(key, state, config) -> actions (N, J) int32 in [0, K)` that can be
`jit`ted:

    random           uniform over the agent's candidate buses
    nearest          every block on the agent's home bus (candidate 0)
    cheapest-lmp     every block of an agent on its candidate of least marginal cost at the
                     period's base load (the prices posted before placement; selfish, herding)
    model-greedy     one central planner placing blocks one at a time on the bus of least exact
                     cost increase, given the base load and the blocks already placed
    central-optimum  the reference: the period's relaxed central optimum, rounded

`model-greedy` visits the blocks in slot-major order (slot 0 of every agent, then slot 1, ...)
and, for each, dispatches the load placed so far plus the block and takes the candidate whose
flows cost the least violation penalty: the generation cost is the same on every candidate, so
this is the exact increase of the period's cost.

`central-optimum` solves the placement of all the period's blocks over all the agents'
candidates with fractional placements x_ij on the simplex: minimise the violation penalty of
the flows f(x) = f0 - s sum_ij q_ij sum_k x_ijk Phi_k (the dispatch of the period's total load is
fixed, `env.Period`), which is convex in x, by `central_steps` Adam steps (learning rate 0.1)
on the logits of x from the uniform placement. It then rounds one block at a time, the largest
first: each goes to the candidate of least penalty with the blocks already rounded in place and
the others at their relaxed placement (rounding by conditional expectations).

Under `market="opf"` the period's cost is a DC-OPF's and a block's marginal cost on a bus is
its LMP there, so both planners place by LMPs, clearing the OPF a bounded number of times per
period instead of once per block: `model-greedy` takes the blocks in slot-major order in
GREEDY_ROUNDS rounds, each round's blocks on their candidate of least LMP at the load placed so
far (one clearing a round); `central-optimum` relaxes the placement as above but minimises the
OPF's cost, whose gradient in x_ijk is q_ij times the LMP of candidate k (one clearing per Adam
step), and rounds the largest blocks first in GREEDY_ROUNDS rounds, each round's blocks on
their candidate of least LMP with the blocks rounded before in place and the rest at their
relaxed placement.

With `model_error` E > 0 (`dgpg.domains.power.belief`) `model-greedy` places by the grid the
misspecified model believes; `central-optimum`, the yardstick of every run, keeps the truth, and
so do `cheapest-lmp` (it reads the prices the operator posts, computed on the true grid: what the
agents observe, not a model) and `nearest` and `random` (they read nothing of the grid).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from dgpg.domains.power.belief import believed_clearing, believed_net
from dgpg.domains.power.clearing import ClearingProblem, clear
from dgpg.domains.power.env import (
    PowerConfig,
    PowerState,
    dispatch,
    injections,
    line_penalty,
    net_of,
    period,
)

Heuristic = Callable[[jax.Array, PowerState, PowerConfig], jax.Array]
CENTRAL_LEARNING_RATE = 0.1
GREEDY_ROUNDS = 16
"""Under `market="opf"`: OPF clearings a period by which the planners place the blocks."""


def _per_block(choice: jax.Array, config: PowerConfig) -> jax.Array:
    """One candidate per agent (N,) for all its J blocks, (N, J) int32."""
    return jnp.broadcast_to(choice[:, None], (config.n_agents, config.blocks_per_step)).astype(
        jnp.int32)


def random_buses(key: jax.Array, state: PowerState, config: PowerConfig) -> jax.Array:
    """Uniform over the K candidates, independently per block."""
    shape = (config.n_agents, config.blocks_per_step)
    return jax.random.randint(key, shape, 0, config.n_candidates, dtype=jnp.int32)


def nearest(key: jax.Array, state: PowerState, config: PowerConfig) -> jax.Array:
    """Candidate 0, the agent's home bus, for every block."""
    return jnp.zeros((config.n_agents, config.blocks_per_step), jnp.int32)


def cheapest_lmp(key: jax.Array, state: PowerState, config: PowerConfig) -> jax.Array:
    """The candidate of least marginal cost at the base load, for every block of the agent."""
    return _per_block(jnp.argmin(state.lmp[net_of(config).candidates], axis=1), config)


def model_greedy(key: jax.Array, state: PowerState, config: PowerConfig) -> jax.Array:
    """Blocks placed one at a time on the candidate of least exact cost increase (see above),
    as the model believes the grid (`dgpg.domains.power.belief`: the truth unless
    config.model_error > 0)."""
    if config.market == "opf":
        return _by_lmp_rounds(believed_clearing(config), state, None, config)
    net = believed_net(config)
    N, J = config.n_agents, config.blocks_per_step
    sizes = jnp.where(state.mask, state.blocks, 0.0).T.reshape(-1)  # slot-major (J N,)
    agents = jnp.tile(jnp.arange(N), J)

    def place(load, block):
        agent, q = block
        total = jnp.sum(load) + q
        gen, served, _ = dispatch(total, net)
        share = served / jnp.maximum(total, 1e-9)
        flows = net.ptdf @ injections(gen, share, load, net)
        penalty = jnp.sum(line_penalty(flows - share * q * net.cand_ptdf[agent], net), axis=-1)
        k = jnp.argmin(penalty)
        return load.at[net.candidates[agent, k]].add(q), k

    _, chosen = jax.lax.scan(place, state.base, (agents, sizes))
    return chosen.reshape(J, N).T.astype(jnp.int32)


def _by_lmp_rounds(problem: ClearingProblem, state: PowerState, relaxed: jax.Array | None,
                   config: PowerConfig) -> jax.Array:
    """Blocks placed in GREEDY_ROUNDS rounds on their candidate of least LMP, the OPF `problem`
    cleared once a round at the load placed so far: in slot-major order with every unplaced
    block absent (`relaxed` None, model-greedy), or the largest first with every unplaced block
    at its `relaxed` placement (N, J, K) (central-optimum). Returns (N, J) int32."""
    net = net_of(config)
    N, J = config.n_agents, config.blocks_per_step
    sizes = jnp.where(state.mask, state.blocks, 0.0).reshape(-1)  # agent-major (N J,)
    agents = jnp.repeat(jnp.arange(N), J)
    if relaxed is None:
        order = jnp.arange(N * J).reshape(N, J).T.reshape(-1)  # slot-major
        spread = jnp.zeros((N * J, config.n_candidates))
    else:
        order = jnp.argsort(-sizes)
        spread = relaxed.reshape(N * J, -1) * sizes[:, None]
    chunk = -(-N * J // GREEDY_ROUNDS)
    order = jnp.concatenate([order, jnp.full(chunk * GREEDY_ROUNDS - N * J, -1)])
    rounds = order.reshape(GREEDY_ROUNDS, chunk)
    cand = net.candidates[agents]  # (N J, K)

    def place(carry, blocks):
        placed, left = carry  # (B,) MW of rounded blocks; (N J, K) MW still relaxed
        load = state.base + placed + jnp.zeros_like(placed).at[cand].add(left)
        lmp = clear(problem, load).lmp
        valid = blocks >= 0
        b = jnp.where(valid, blocks, 0)
        k = jnp.argmin(lmp[cand[b]], axis=-1)
        q = jnp.where(valid, sizes[b], 0.0)
        placed = placed.at[cand[b, k]].add(q)
        left = left.at[jnp.where(valid, blocks, N * J)].set(0.0, mode="drop")
        return (placed, left), k

    _, chosen = jax.lax.scan(place, (jnp.zeros_like(state.base), spread), rounds)
    flat = jnp.zeros(N * J + 1, jnp.int32).at[rounds.reshape(-1)].set(
        chosen.reshape(-1).astype(jnp.int32), mode="drop")
    return flat[:N * J].reshape(N, J)


def _relaxed_opf(state: PowerState, config: PowerConfig) -> jax.Array:
    """The relaxed central optimum under `market="opf"` (N, J, K): Adam on the logits, the
    OPF cost's gradient from the LMPs (one clearing a step)."""
    net = net_of(config)
    sizes = jnp.where(state.mask, state.blocks, 0.0)
    optimiser = optax.adam(CENTRAL_LEARNING_RATE)

    def descend(carry, _):
        logits, opt_state = carry
        x, to_logits = jax.vjp(lambda z: jax.nn.softmax(z, axis=-1), logits)
        load = state.base.at[net.candidates].add(jnp.einsum("njk,nj->nk", x, sizes))
        lmp = clear(net.clearing, load).lmp[net.candidates]  # (N, K)
        gradient = sizes[..., None] * lmp[:, None, :] / net.cost_scale
        updates, opt_state = optimiser.update(to_logits(gradient)[0], opt_state)
        return (optax.apply_updates(logits, updates), opt_state), None

    logits = jnp.zeros((config.n_agents, config.blocks_per_step, config.n_candidates))
    (logits, _), _ = jax.lax.scan(descend, (logits, optimiser.init(logits)), None,
                                  length=config.central_steps)
    return jax.nn.softmax(logits, axis=-1)


def relaxed_placement(state: PowerState, config: PowerConfig) -> jax.Array:
    """The relaxed central optimum x (N, J, K), rows on the simplex (see above)."""
    net = net_of(config)
    if config.market == "opf":
        return _relaxed_opf(state, config)
    p = period(state, net)
    shift = p.share * p.sizes  # (N, J)

    def penalty(logits):
        x = jax.nn.softmax(logits, axis=-1)
        at_bus = jnp.einsum("njk,nj->nk", x, shift)
        flows = p.free_flows - jnp.einsum("nk,nkl->l", at_bus, net.cand_ptdf)
        return jnp.sum(line_penalty(flows, net)) / net.cost_scale

    optimiser = optax.adam(CENTRAL_LEARNING_RATE)

    def descend(carry, _):
        logits, opt_state = carry
        updates, opt_state = optimiser.update(jax.grad(penalty)(logits), opt_state)
        return (optax.apply_updates(logits, updates), opt_state), None

    logits = jnp.zeros((config.n_agents, config.blocks_per_step, config.n_candidates))
    (logits, _), _ = jax.lax.scan(descend, (logits, optimiser.init(logits)), None,
                                  length=config.central_steps)
    return jax.nn.softmax(logits, axis=-1)


def central_optimum(key: jax.Array, state: PowerState, config: PowerConfig) -> jax.Array:
    """The relaxed central optimum, rounded by conditional expectations (see above)."""
    net = net_of(config)
    if config.market == "opf":
        return _by_lmp_rounds(net.clearing, state, relaxed_placement(state, config), config)
    N, J, K = config.n_agents, config.blocks_per_step, config.n_candidates
    p = period(state, net)
    x = relaxed_placement(state, config).reshape(N * J, K)
    shift = (p.share * p.sizes).reshape(-1)
    agents = jnp.repeat(jnp.arange(N), J)
    at_bus = jnp.einsum("bk,b->bk", x, shift).reshape(N, J, K).sum(axis=1)
    flows = p.free_flows - jnp.einsum("nk,nkl->l", at_bus, net.cand_ptdf)

    def place(flows, b):
        columns = shift[b] * net.cand_ptdf[agents[b]]  # (K, L)
        without = flows + x[b] @ columns
        k = jnp.argmin(jnp.sum(line_penalty(without - columns, net), axis=-1))
        return without - columns[k], k

    order = jnp.argsort(-shift)
    _, chosen = jax.lax.scan(place, flows, order)
    return jnp.zeros(N * J, jnp.int32).at[order].set(chosen.astype(jnp.int32)).reshape(N, J)
