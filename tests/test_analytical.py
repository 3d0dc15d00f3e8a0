"""Water-filling and the water-filling guidance of HeteroCloud."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import EnvConfig
from dgpg.domains.cloud.fluid import WaterFillingModel
from dgpg.domains.cloud.waterfill import potential, water_level, waterfill
from dgpg.domains.cloud.workload import MEM_JOB

_WATERFILL = jax.jit(waterfill)
_F32_MILLI = float(np.float32(1e-3))  # hypothesis wants float32-exact bounds
_F32_TENTH = float(np.float32(0.1))
_LEVEL = jax.jit(water_level)


def _wf(load, capacity, total) -> np.ndarray:
    return np.asarray(
        _WATERFILL(
            np.asarray(load, np.float32), np.asarray(capacity, np.float32), np.float32(total)
        ),
        np.float64,
    )


def _phi(load, capacity, x) -> float:
    load, capacity, x = (np.asarray(v, np.float64) for v in (load, capacity, x))
    return float(np.sum((load + x) ** 2 / capacity))


def _bisection(load, capacity, total) -> np.ndarray:
    """Reference solution in float64: bisect on the level lam of sum max(0, lam k - L) = W."""
    load, capacity = np.asarray(load, np.float64), np.asarray(capacity, np.float64)
    if total <= 0:
        return np.zeros_like(load)
    lo, hi = 0.0, float(np.max(load / capacity) + total / capacity.sum() + 1.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(0.0, mid * capacity - load).sum() < total:
            lo = mid
        else:
            hi = mid
    return np.maximum(0.0, 0.5 * (lo + hi) * capacity - load)


def _slsqp(load, capacity, total) -> np.ndarray:
    """Brute-force minimiser of the potential over {x >= 0, sum x = W} (SLSQP, float64),
    solved for y = x / W with the potential normalised by its value at the start."""
    load, capacity = np.asarray(load, np.float64), np.asarray(capacity, np.float64)
    m = load.size
    if total <= 0:
        return np.zeros(m)
    y0 = np.full(m, 1.0 / m)
    f0 = np.sum((load + total * y0) ** 2 / capacity)
    res = minimize(
        lambda y: np.sum((load + total * y) ** 2 / capacity) / f0,
        y0,
        jac=lambda y: 2 * total * (load + total * y) / capacity / f0,
        bounds=[(0.0, None)] * m,
        constraints=[{"type": "eq", "fun": lambda y: y.sum() - 1.0, "jac": lambda y: np.ones(m)}],
        method="SLSQP",
        options={"ftol": 1e-13, "maxiter": 2000},
    )
    assert res.success, res.message
    return total * np.maximum(res.x, 0.0)


def _instance(rng: np.random.Generator):
    m = int(rng.integers(1, 16))
    capacity = rng.uniform(1.0, 64.0, m)
    load = rng.uniform(0.0, 1.5, m) * capacity
    load[rng.random(m) < 0.2] = 0.0  # some idle servers
    load[rng.random(m) < 0.2] *= 5.0  # some servers far above the level: they get nothing
    total = float(rng.uniform(0.0, 0.5) * capacity.sum())
    return load.astype(np.float32), capacity.astype(np.float32), np.float32(total)


@pytest.mark.parametrize("seed", range(40))
def test_waterfill_matches_constrained_optimiser(seed):
    load, capacity, total = _instance(np.random.default_rng(seed))
    x = _wf(load, capacity, total)
    ref = _slsqp(load, capacity, float(total))
    exact = _bisection(load, capacity, float(total))
    scale = max(float(total), float(load.max()), 1.0)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(x, exact, rtol=0, atol=1e-4 * scale)
    phi_x, phi_ref = _phi(load, capacity, x), _phi(load, capacity, ref)
    assert abs(phi_x - phi_ref) <= 1e-5 * phi_ref
    np.testing.assert_allclose(float(potential(load, capacity, x)), phi_x, rtol=1e-5)
    np.testing.assert_allclose(x.sum(), total, rtol=1e-5, atol=1e-6 * scale)
    assert np.all(x >= 0)


def test_waterfill_beats_random_feasible_allocations():
    rng = np.random.default_rng(7)
    for _ in range(10):
        load, capacity, total = _instance(rng)
        x = _wf(load, capacity, total)
        best = _phi(load, capacity, x)
        for y in rng.dirichlet(np.ones(load.size), 50) * float(total):
            assert _phi(load, capacity, y) >= best * (1 - 1e-6)


def test_waterfill_zero_total():
    load = np.array([3.0, 0.0, 7.0])
    np.testing.assert_array_equal(_wf(load, [1.0, 2.0, 3.0], 0.0), np.zeros(3))
    np.testing.assert_array_equal(_wf(np.zeros(4), np.ones(4), 0.0), np.zeros(4))


def test_waterfill_single_server():
    np.testing.assert_allclose(_wf([5.0], [2.0], 3.5), [3.5], rtol=1e-6)
    np.testing.assert_allclose(_wf([0.0], [1.0], 1e-3), [1e-3], rtol=1e-6)
    np.testing.assert_array_equal(_wf([5.0], [2.0], 0.0), [0.0])


def test_waterfill_ties():
    # equal levels everywhere: allocation proportional to capacity
    capacity = np.array([1.0, 2.0, 4.0, 1.0])
    np.testing.assert_allclose(_wf(0.5 * capacity, capacity, 16.0), 2.0 * capacity, rtol=1e-6)
    np.testing.assert_allclose(_wf(np.zeros(4), capacity, 8.0), capacity, rtol=1e-6)
    # identical servers share equally
    np.testing.assert_allclose(_wf([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], 3.0), [1.0] * 3, rtol=1e-6)
    # the level lands exactly on the next server's level: that server gets nothing
    np.testing.assert_allclose(_wf([0.0, 5.0], [1.0, 1.0], 5.0), [5.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(_wf([0.0, 5.0, 5.0], [1.0, 1.0, 1.0], 11.0), [7, 2, 2], rtol=1e-6)


def test_waterfill_servers_above_level_get_nothing():
    x = _wf([0.0, 0.0, 100.0], [1.0, 1.0, 1.0], 10.0)
    np.testing.assert_allclose(x, [5.0, 5.0, 0.0], atol=1e-6)
    x = _wf([10.0, 1.0, 50.0, 0.0], [10.0, 1.0, 10.0, 2.0], 4.0)
    # levels 1, 1, 5, 0: server 3 first to level 1 (2 units), then 0, 1, 3 share the rest
    lam = (4.0 + 10.0 + 1.0 + 0.0) / (10.0 + 1.0 + 2.0)
    np.testing.assert_allclose(x, [lam * 10 - 10, lam - 1, 0.0, 2 * lam], rtol=1e-5)
    np.testing.assert_allclose(float(_LEVEL(jnp.asarray([10.0, 1.0, 50.0, 0.0]),
                                             jnp.asarray([10.0, 1.0, 10.0, 2.0]),
                                             jnp.float32(4.0))), lam, rtol=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    m=st.integers(1, 20),
    total=st.one_of(st.just(0.0), st.floats(_F32_MILLI, 1000.0, width=32)),
)
def test_waterfill_properties(data, m, total):
    load = np.asarray(
        data.draw(st.lists(st.floats(0.0, 100.0, width=32), min_size=m, max_size=m)), np.float32
    )
    capacity = np.asarray(
        data.draw(st.lists(st.floats(_F32_TENTH, 100.0, width=32), min_size=m, max_size=m)),
        np.float32,
    )
    x = _wf(load, capacity, total)
    assert x.shape == (m,)
    assert np.all(np.isfinite(x)) and np.all(x >= 0)
    if total == 0:
        assert np.all(x == 0)
        return
    # float32 arithmetic: the sum is exact up to rounding at the scale of the loads involved
    assert abs(x.sum() - total) <= 1e-4 * total + 1e-6 * float(load.sum())
    util = (load.astype(np.float64) + x) / capacity
    filled = x > 0
    assert filled.any()
    lam = util[filled].max()
    tol = 1e-4 * lam + 1e-6
    assert np.all(np.abs(util[filled] - lam) <= tol)  # equal utilisation where water goes
    assert np.all(load[~filled] / capacity[~filled] >= lam - tol)  # the rest is above it
    exact = _bisection(load, capacity, total)
    np.testing.assert_allclose(x, exact, atol=1e-4 * total + 1e-5 * float(load.max()))


# --------------------------------------------------------------------------- guidance


_STATES: dict[int, object] = {}


def _setup(n):
    """Reset state (seed 3), model, reference and jitted loss functions for N agents."""
    if n not in _STATES:
        cfg = EnvConfig(n_agents=n)
        state = jax.jit(cloud.reset, static_argnums=1)(jax.random.key(3), cfg)
        model = WaterFillingModel(cfg)
        ref = jax.jit(model.reference)(state)
        _STATES[n] = (cfg, state, model, ref, _loss_fns(model))
    return _STATES[n]


def _loss_fns(model):
    """Jitted loss, its gradient in probs, and its gradient in softmax logits."""
    loss = jax.jit(model.guidance_loss)
    grad = jax.jit(jax.grad(model.guidance_loss))
    logit_grad = jax.jit(
        jax.grad(lambda z, ref: model.guidance_loss(jax.nn.softmax(z, axis=-1), ref))
    )
    return loss, grad, logit_grad


@pytest.mark.parametrize("n", [5, 20])
def test_guidance_stationary_at_reference(n):
    _, _, _, ref, (loss, grad, logit_grad) = _setup(n)
    p = np.asarray(ref.probs)
    mask = np.asarray(ref.mask)
    g = np.asarray(grad(ref.probs, ref), np.float64) * mask.sum()  # per-job gradient
    multi = 0
    for i, j in zip(*np.nonzero(mask), strict=True):
        support = p[i, j] > 0
        gs = g[i, j][support]
        # projected onto the simplex tangent, the gradient vanishes on the support
        assert np.max(np.abs(gs - gs.mean())) <= 1e-4 * np.max(np.abs(gs)), (i, j, gs)
        # KKT: moving mass off the support cannot decrease the loss
        assert np.all(g[i, j][~support] >= gs.mean() - 1e-4 * np.abs(gs).max()), (i, j)
        multi += int(support.sum() >= 2)
    assert multi >= 1  # the stationarity check is not vacuous
    # absent job slots get no gradient
    assert np.all(g[~mask] == 0)

    # in softmax logits, at log p*, the gradient vanishes
    z = jnp.log(jnp.clip(ref.probs, 1e-12, 1.0))
    gz = np.asarray(logit_grad(z, ref)) * mask.sum()
    scale = np.abs(g[mask]).max()
    assert np.abs(gz).max() <= 1e-5 * scale
    # ... and does not elsewhere (the check has power)
    z_rand = jax.random.normal(jax.random.key(0), ref.probs.shape)
    gz_rand = np.asarray(logit_grad(z_rand, ref)) * mask.sum()
    assert np.abs(gz_rand[mask]).max() > 1e-2 * scale

    # the loss is zero at the reference and, p* being its minimiser on the simplex, not below
    # zero at any other policy
    assert abs(float(loss(ref.probs, ref))) <= 1e-5
    for seed in range(5):
        z = 3.0 * jax.random.normal(jax.random.key(seed), ref.probs.shape)
        assert float(loss(jax.nn.softmax(z, axis=-1), ref)) >= -1e-5


@pytest.mark.parametrize("n", [5, 20])
def test_guidance_gradient_matches_finite_differences(n):
    _, _, _, ref, (loss, grad, _) = _setup(n)
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(n), ref.probs.shape), axis=-1)
    g = np.asarray(grad(probs, ref))
    mask = np.asarray(ref.mask)
    rng = np.random.default_rng(n)
    present = np.argwhere(mask)
    picks = [(*present[rng.integers(len(present))], rng.integers(probs.shape[-1]))
             for _ in range(25)]
    absent = np.argwhere(~mask)
    if len(absent):
        picks.append((*absent[0], 0))
    for i, j, k in picks:
        eps = 1e-2 * max(float(probs[i, j, k]), 0.1)
        up = float(loss(probs.at[i, j, k].add(eps), ref))
        down = float(loss(probs.at[i, j, k].add(-eps), ref))
        fd = (up - down) / (2 * eps)
        assert abs(fd - g[i, j, k]) <= 1e-2 * abs(g[i, j, k]) + 1e-3 * np.abs(g).max(), (
            i, j, k, fd, g[i, j, k],
        )


@pytest.mark.parametrize("n", [5, 200])
def test_guidance_gradient_order_one_at_uniform(n):
    cfg, _, _, ref, (_, grad, _) = _setup(n)
    mask = np.asarray(ref.mask)
    uniform = jnp.full(ref.probs.shape, 1.0 / cfg.n_candidates)
    g = np.asarray(grad(uniform, ref))
    assert 1e-3 <= np.abs(g[mask]).max() <= 100.0
    # each job's own gradient (of its term, not the mean) is O(1) whatever N and its demand
    per_job = np.abs(g * mask.sum()).max(axis=-1)[mask]
    assert np.all(per_job >= 1e-3) and np.all(per_job <= 100.0)


@pytest.mark.parametrize("n", [5, 20, 200])
def test_reference_probs_are_distributions(n):
    cfg, _, _, ref, _ = _setup(n)
    p = np.asarray(ref.probs)
    mask = np.asarray(ref.mask)
    assert p.shape == (n, cfg.jobs_per_step, cfg.n_candidates)
    assert np.all(p[mask] >= 0)
    np.testing.assert_allclose(p[mask].sum(-1), 1.0, atol=1e-5)
    assert mask.sum() >= 1


@pytest.mark.parametrize("n", [5, 20, 200])
def test_reference_is_waterfill_share(n):
    """p*_i proportional to x*_k / c_k over i's candidates, x* the float64 water-filling of the
    step's total demand per resource; the least-utilised candidate when all shares are zero."""
    _, state, _, ref, _ = _setup(n)
    st_ = jax.tree.map(np.asarray, state)
    sc, jobs = st_.scenario, st_.jobs
    is_mem = jobs.type == MEM_JOB
    resources = {
        False: (st_.servers.cores.sum(1), sc.capacity, jobs.cores),
        True: (st_.servers.memory_gb.sum(1), sc.memory_gb, jobs.memory_gb),
    }
    p = np.asarray(ref.probs)
    for mem_job, (load, cap, demand) in resources.items():
        total = float(np.sum(demand[jobs.mask & (is_mem == mem_job)], dtype=np.float64))
        x = _bisection(load, cap, total)
        for i, j in np.argwhere(jobs.mask & (is_mem == mem_job)):
            cand = sc.candidates[i]
            share = x[cand] / np.maximum(sc.coverage[cand], 1.0)
            if share.sum() > 1e-6 * max(total, 1.0):
                expected = share / share.sum()
            else:
                expected = np.eye(cand.size)[np.argmin(load[cand] / cap[cand])]
            np.testing.assert_allclose(p[i, j], expected, atol=2e-4, err_msg=f"{i},{j}")
