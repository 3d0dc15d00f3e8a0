"""The aligned model: its potential changes against the environment's own reward, the guidance
gradient against finite differences, the loss's zero set, and `model-greedy` against brute force.

The brute-force reference places one job on one candidate in a float64 copy of the loads and
evaluates the reward's cost with the same formulas as `dgpg.domains.cloud.env.reward_terms`, written
out again here in NumPy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.domains import get_domain
from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.aligned import AlignedModel, placement_delta
from dgpg.domains.cloud.env import EnvConfig, server_loads
from dgpg.domains.cloud.heuristics import model_greedy

CFG = EnvConfig(n_agents=6)


def _states(config: EnvConfig, n: int, steps: int = 30):
    """States after a few steps of random dispatching, so that loads, drops and full servers
    occur; the jobs of the step are kept as drawn."""
    reset = jax.jit(cloud.reset, static_argnums=1)
    step = jax.jit(cloud.step, static_argnums=3)
    states = []
    for seed in range(n):
        key = jax.random.key(seed)
        state = reset(key, config)
        for t in range(seed % steps):
            k_a, k_s = jax.random.split(jax.random.fold_in(key, t))
            actions = jax.random.randint(k_a, state.jobs.mask.shape, 0, config.n_candidates)
            state, _, _ = step(k_s, state, actions, config)
        states.append(state)
    return states


STATES = _states(CFG, 12)


def _cost(D, kappa, w_o):
    """The reward's cost of the loads D (imbalance + w_o overload), float64."""
    u = D / kappa
    u_bar = D.sum() / kappa.sum()
    return np.sum(kappa * (u - u_bar) ** 2) / kappa.sum() + w_o * np.mean(np.maximum(0, u - 1))


def _brute_delta(state, config, i, j, base_cpu=None, base_mem=None, horizon="step",
                 extra_slots=None):
    """delta_k of agent i's job j on each candidate by placing it (NumPy, float64)."""
    sc, jobs = state.scenario, state.jobs
    cpu, mem, running = (np.asarray(x, np.float64) for x in server_loads(state.servers))
    cpu = cpu if base_cpu is None else base_cpu
    mem = mem if base_mem is None else base_mem
    slots_used = running if extra_slots is None else running + extra_slots
    kappa = np.asarray(sc.capacity, np.float64)
    eff, cores = np.asarray(sc.efficiency, np.float64), np.asarray(sc.cores, np.float64)
    c, m = float(jobs.cores[i, j]), float(jobs.memory_gb[i, j])
    w = float(jobs.work[i, j])
    arrived = float(np.sum(np.asarray(jobs.mask)) + int(jobs.shed))
    before = _cost(cpu, kappa, config.overload_weight)
    out = []
    for s in np.asarray(sc.candidates[i]):
        fits = (np.asarray(sc.memory_gb)[s] - mem[s] >= m - 1e-4) and \
            (config.slots - slots_used[s] >= 1)
        if not fits:
            out.append(config.drop_weight / arrived)
            continue
        after = cpu.copy()
        after[s] += c
        d = _cost(after, kappa, config.overload_weight) - before
        if horizon == "lifetime":
            d *= w / (eff[s] * min(1.0, cores[s] / max(after[s], 1e-6)))
        out.append(d)
    return np.array(out)


@pytest.mark.parametrize("horizon", ["step", "lifetime"])
def test_placement_delta_matches_brute_force(horizon):
    delta_fn = jax.jit(placement_delta, static_argnames=("config", "stand_in", "horizon"))
    checked = 0
    for state in STATES:
        delta = np.asarray(delta_fn(state, CFG, stand_in="state", horizon=horizon))
        for i, j in zip(*np.nonzero(np.asarray(state.jobs.mask)), strict=True):
            ref = _brute_delta(state, CFG, i, j, horizon=horizon)
            np.testing.assert_allclose(delta[i, j], ref, rtol=2e-3, atol=1e-7)
            checked += 1
    assert checked >= 30


def test_mean_field_delta_holds_the_others_at_their_expected_placements():
    state = STATES[5]
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(3), (*state.jobs.mask.shape,
                                                                 CFG.n_candidates)), axis=-1)
    delta = np.asarray(placement_delta(state, CFG, probs, stand_in="mean-field"))
    sc, jobs = state.scenario, state.jobs
    mask = np.asarray(jobs.mask)
    cand = np.asarray(sc.candidates)
    p = np.where(mask[..., None], np.asarray(probs, np.float64), 0.0)
    cpu, mem, _ = (np.asarray(x, np.float64) for x in server_loads(state.servers))
    for i, j in zip(*np.nonzero(mask), strict=True):
        others_cpu, others_mem = cpu.copy(), mem.copy()
        for a, b in zip(*np.nonzero(mask), strict=True):
            if (a, b) == (i, j):
                continue
            np.add.at(others_cpu, cand[a], float(jobs.cores[a, b]) * p[a, b])
            np.add.at(others_mem, cand[a], float(jobs.memory_gb[a, b]) * p[a, b])
        ref = _brute_delta(state, CFG, i, j, base_cpu=others_cpu, base_mem=others_mem)
        np.testing.assert_allclose(delta[i, j], ref, rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("name", ["aligned", "aligned-state", "aligned-step"])
def test_guidance_gradient_is_the_expected_potential_change(name):
    """d loss / d pi(k) equals the finite difference of the brute-force expected potential
    change sum_k pi(k) delta_k (normalised as the model does), on every present job."""
    model = get_domain("cloud").make_model(name, CFG)
    state = STATES[7]
    mask = np.asarray(state.jobs.mask)
    assert mask.sum() >= 3
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), (*mask.shape,
                                                                 CFG.n_candidates)), axis=-1)
    ref = model.reference(state, probs)
    grad = np.asarray(jax.grad(model.guidance_loss)(probs, ref), np.float64)
    assert np.all(grad[~mask] == 0.0)
    delta = np.asarray(placement_delta(state, CFG, probs, model.stand_in, model.horizon),
                       np.float64)
    scale = np.asarray(model.normaliser(state), np.float64)
    n_jobs = mask.sum()
    eps = 1e-3
    checked = 0
    for i, j in zip(*np.nonzero(mask), strict=True):
        if model.stand_in == "state":
            delta[i, j] = _brute_delta(state, CFG, i, j, horizon=model.horizon)

        def expected(p, i=i, j=j):
            return float(np.dot(p, delta[i, j]) - delta[i, j].min()) / scale[i, j] / n_jobs

        # along the simplex: move mass from the best candidate l to candidate k
        base = np.asarray(probs[i, j], np.float64)
        best = int(np.argmin(delta[i, j]))
        for k in range(CFG.n_candidates):
            if delta[i, j, k] - delta[i, j].min() > model.cost_cap * scale[i, j]:
                continue  # capped: the model bounds the cost of a drop
            move = np.zeros_like(base)
            move[k] += eps
            move[best] -= eps
            fd = (expected(base + move) - expected(base - move)) / (2 * eps)
            np.testing.assert_allclose(grad[i, j, k] - grad[i, j, best], fd, rtol=5e-3,
                                       atol=1e-6)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name", ["aligned", "aligned-state"])
def test_guidance_loss_zero_exactly_on_the_minimisers(name):
    model = get_domain("cloud").make_model(name, CFG)
    loss = jax.jit(model.guidance_loss)
    rng = np.random.default_rng(0)
    for state in STATES[:6]:
        mask = np.asarray(state.jobs.mask)
        if not mask.any():
            continue
        probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(*mask.shape, CFG.n_candidates)),
                                           jnp.float32), axis=-1)
        ref = model.reference(state, probs)
        cost = np.asarray(ref.cost)
        assert np.all(cost >= 0.0)
        assert float(loss(probs, ref)) > 0.0
        # mass spread at random over each job's minimising candidates: zero loss
        minimisers = cost == 0.0
        assert np.all(minimisers.any(axis=-1))
        weights = rng.uniform(0.1, 1.0, cost.shape) * minimisers
        on_min = jnp.asarray(weights / weights.sum(axis=-1, keepdims=True), jnp.float32)
        assert float(loss(on_min, ref)) == 0.0
        # any mass off the minimisers of a present job: positive loss
        i, j = (int(v[0]) for v in np.nonzero(mask & (~minimisers).any(axis=-1)))
        k = int(np.nonzero(~minimisers[i, j])[0][0])
        leak = np.asarray(on_min).copy()
        leak[i, j] = 0.9 * leak[i, j]
        leak[i, j, k] += 0.1
        assert float(loss(jnp.asarray(leak), ref)) > 0.0


def test_guidance_cost_order_one_whatever_n():
    """The normalised costs stay of order one from N = 2 to 200 (no 1/N or N scaling)."""
    medians = []
    for n in (2, 20, 200):
        config = EnvConfig(n_agents=n)
        model = AlignedModel(config)
        state = _states(config, 1, steps=1)[0]
        uniform = jnp.full((*state.jobs.mask.shape, config.n_candidates),
                           1.0 / config.n_candidates)
        cost = np.asarray(jax.jit(model.reference)(state, uniform).cost)
        spread = cost.max(axis=-1)[np.asarray(state.jobs.mask)]
        medians.append(float(np.median(spread)))
    assert all(0.05 < m < 20 for m in medians), medians
    assert max(medians) / min(medians) < 10, medians


def test_model_greedy_minimises_the_potential_increase():
    """Each job goes to the candidate of smallest brute-force delta, given the loads, memory
    and slots its agent's earlier jobs of the step took."""
    greedy = jax.jit(model_greedy, static_argnums=2)
    checked = 0
    for state in STATES:
        actions = np.asarray(greedy(jax.random.key(0), state, CFG))
        sc, jobs = state.scenario, state.jobs
        cand = np.asarray(sc.candidates)
        cpu0, mem0, _ = (np.asarray(x, np.float64) for x in server_loads(state.servers))
        for i in range(CFG.n_agents):
            cpu, mem = cpu0.copy(), mem0.copy()
            slots = np.zeros_like(cpu)
            for j in np.nonzero(np.asarray(jobs.mask[i]))[0]:
                delta = _brute_delta(state, CFG, i, j, base_cpu=cpu, base_mem=mem,
                                     horizon="lifetime", extra_slots=slots)
                a = actions[i, j]
                assert delta[a] <= delta.min() + 1e-6 * max(1.0, abs(delta.min())), (i, j)
                s = cand[i, a]
                fits = (float(sc.memory_gb[s]) - mem[s] >= float(jobs.memory_gb[i, j]) - 1e-4
                        and CFG.slots - (float(jnp.sum(state.servers.active[s])) + slots[s]) >= 1)
                if fits:
                    cpu[s] += float(jobs.cores[i, j])
                    mem[s] += float(jobs.memory_gb[i, j])
                    slots[s] += 1
                checked += 1
    assert checked >= 30


@pytest.mark.slow  # about 40 s
def test_model_greedy_beats_least_loaded_at_n50():
    """The alignment check: the model's own best action is at least as good as `least-loaded`
    on the 40 test scenarios at N = 50 (measured: -6.2 against -7.6, paired difference
    1.4 +- 1.1; at N = 5 and 20 the mean is also higher but the difference is within its CI)."""
    from dgpg.domains.cloud.heuristics import least_loaded
    from dgpg.evaluation import TEST_SEEDS, evaluate_many

    config = EnvConfig(n_agents=50)
    greedy, least = (r["return"].mean() for r in evaluate_many([model_greedy, least_loaded],
                                                                config, TEST_SEEDS))
    assert greedy >= least, (greedy, least)
