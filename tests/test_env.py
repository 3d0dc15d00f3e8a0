"""HeteroCloud: per-step invariants, admission order, determinism, jit/vmap, scenario."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import EnvConfig, Jobs, Servers
from dgpg.domains.cloud.scenario import GENERATIONS, generation_counts
from dgpg.domains.cloud.workload import WORK_MIN

N = 8
CFG = EnvConfig(n_agents=N, episode_steps=150)
M, K, J, S = CFG.n_servers, CFG.n_candidates, CFG.jobs_per_step, CFG.slots
MEM_TOL = 1e-3


def _episode(key, always_zero):
    """One episode of a random policy (or, with always_zero, every job to candidate 0).

    Records the servers before and after every step, the offered jobs, actions and metrics.
    """
    state0 = cloud.reset(key, CFG)

    def body(state, k):
        k_act, k_env = jax.random.split(k)
        rnd = jax.random.randint(k_act, (N, J), 0, K, dtype=jnp.int32)
        actions = jnp.where(always_zero, jnp.zeros_like(rnd), rnd)
        new, reward, metrics = cloud.step(k_env, state, actions, CFG)
        rec = {
            "before": state.servers,
            "after": new.servers,
            "jobs": state.jobs,
            "t": state.t,
            "actions": actions,
            "reward": reward,
            "metrics": metrics,
        }
        return new, rec

    keys = jax.random.split(jax.random.fold_in(key, 7), CFG.episode_steps)
    final, recs = jax.lax.scan(body, state0, keys)
    return state0, final, recs


_EPISODE = jax.jit(_episode)
_JIT_STEP = jax.jit(cloud.step, static_argnums=3)


def _np(tree):
    return jax.tree.map(np.asarray, tree)


@pytest.fixture(scope="module")
def runs():
    return {
        "random": _np(_EPISODE(jax.random.key(0), False)),
        "candidate0": _np(_EPISODE(jax.random.key(0), True)),
    }


@pytest.fixture(scope="module")
def state0(runs):
    return jax.tree.map(jnp.asarray, runs["random"][0])


def _replay_admission(before, jobs, actions, scenario):
    """Reference admission in float64, sequentially in (agent, job) order.

    Returns per server the sorted list of admitted (cores, memory) pairs, and the counts.
    """
    mem_free = scenario.memory_gb.astype(np.float64) - before.memory_gb.sum(1, dtype=np.float64)
    slots_free = S - before.active.sum(1)
    placed = [[] for _ in range(M)]
    admitted = rejected = 0
    for i in range(N):
        for j in range(J):
            if not jobs.mask[i, j]:
                continue
            srv = scenario.candidates[i, actions[i, j]]
            m = float(jobs.memory_gb[i, j])
            if m <= mem_free[srv] + 1e-4 and slots_free[srv] > 0:
                mem_free[srv] -= m
                slots_free[srv] -= 1
                placed[srv].append((float(jobs.cores[i, j]), m))
                admitted += 1
            else:
                rejected += 1
    return [sorted(p) for p in placed], admitted, rejected


def _at(tree, t):
    return jax.tree.map(lambda a: a[t], tree)


# --------------------------------------------------------------------------- per-step invariants


@pytest.mark.parametrize("policy", ["random", "candidate0"])
def test_every_step_invariants(runs, policy):
    state0, _, rec = runs[policy]
    sc = state0.scenario
    m, jobs, before, after = rec["metrics"], rec["jobs"], rec["before"], rec["after"]
    T = CFG.episode_steps

    # premise of the slot bookkeeping below: a job admitted this step cannot finish this step
    assert jobs.work[jobs.mask].min() >= WORK_MIN * (1 - 1e-6) > sc.efficiency.max()

    # arrivals accounting
    np.testing.assert_array_equal(m["arrived"], m["admitted"] + m["rejected"] + m["shed"])
    np.testing.assert_array_equal(m["arrived"], jobs.mask.sum((1, 2)) + jobs.shed)
    np.testing.assert_array_equal(m["shed"], jobs.shed)
    assert np.all(m["rejected"] >= 0) and np.all(m["admitted"] >= 0)

    # job conservation
    run_before = before.active.sum((1, 2))
    run_after = after.active.sum((1, 2))
    np.testing.assert_array_equal(run_before + m["admitted"] - m["completed"], run_after)
    new = ~before.active & after.active  # slots filled this step
    finished = before.active & ~after.active
    np.testing.assert_array_equal(new.sum((1, 2)), m["admitted"])
    np.testing.assert_array_equal(finished.sum((1, 2)), m["completed"])
    # running jobs are never overwritten: their cores, memory and start survive the step
    kept = before.active & after.active
    np.testing.assert_array_equal(np.where(kept, before.cores, 0), np.where(kept, after.cores, 0))
    np.testing.assert_array_equal(
        np.where(kept, before.memory_gb, 0), np.where(kept, after.memory_gb, 0)
    )
    np.testing.assert_array_equal(np.where(kept, before.start, 0), np.where(kept, after.start, 0))
    np.testing.assert_array_equal(
        np.where(new, after.start, rec["t"][:, None, None]),
        np.broadcast_to(rec["t"][:, None, None], new.shape),
    )

    # memory and slots after admission (before completions) and after the step
    mem_adm = before.memory_gb.sum(2) + np.where(new, after.memory_gb, 0).sum(2)  # (T, M)
    assert np.all(mem_adm <= sc.memory_gb[None, :] + MEM_TOL)
    assert np.all(after.memory_gb.sum(2) <= sc.memory_gb[None, :] + MEM_TOL)
    assert np.all(before.memory_gb.sum(2) <= sc.memory_gb[None, :] + MEM_TOL)
    assert np.all((before.active | new).sum(2) <= S)
    assert np.all(after.active.sum(2) <= S)

    # remaining work: positive on active slots, zero on free ones, never negative
    for srv in (before, after):
        assert np.all(srv.remaining >= 0)
        assert np.all(srv.remaining[srv.active] > 0)
        assert np.all(srv.remaining[~srv.active] == 0)
        assert np.all(srv.memory_gb[~srv.active] == 0) and np.all(srv.cores[~srv.active] == 0)

    # processor sharing on the post-admission demand: speed_j = e_j min(1, C_j / D_j)
    demand = before.cores.sum(2, dtype=np.float64) + np.where(new, after.cores, 0).sum(
        2, dtype=np.float64
    )
    speed = sc.efficiency * np.minimum(1.0, sc.cores / np.maximum(demand, 1e-6))  # (T, M)
    progress = before.remaining - after.remaining
    expected = np.broadcast_to(speed[:, :, None], progress.shape)
    np.testing.assert_allclose(progress[kept], expected[kept], rtol=1e-4, atol=1e-4)

    # reward and its terms, recomputed in float64 from the post-admission CPU demand
    kappa = sc.capacity.astype(np.float64)
    u = demand / kappa
    u_bar = demand.sum(1, keepdims=True) / kappa.sum()
    imbalance = (kappa * (u - u_bar) ** 2).sum(1) / kappa.sum()
    overload = np.maximum(0.0, u - 1.0).mean(1)
    drop_rate = m["rejected"] / np.maximum(m["arrived"], 1)
    np.testing.assert_allclose(m["imbalance"], imbalance, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m["overload"], overload, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m["drop_rate"], drop_rate, rtol=1e-5, atol=1e-7)
    reward = -(
        m["imbalance"] + CFG.overload_weight * m["overload"] + CFG.drop_weight * m["drop_rate"]
    )
    np.testing.assert_allclose(rec["reward"], reward, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rec["reward"], m["reward"])

    # admission decisions match a sequential (agent, job)-order replay, job by job
    for t in range(T):
        placed, admitted, rejected = _replay_admission(
            _at(before, t), _at(jobs, t), rec["actions"][t], sc
        )
        assert (admitted, rejected) == (m["admitted"][t], m["rejected"][t]), t
        for srv in range(M):
            got = sorted(
                zip(
                    after.cores[t, srv][new[t, srv]].tolist(),
                    after.memory_gb[t, srv][new[t, srv]].tolist(),
                    strict=True,
                )
            )
            np.testing.assert_allclose(np.reshape(got, (-1, 2)), np.reshape(placed[srv], (-1, 2)))


def test_candidate0_policy_overloads_and_rejects(runs):
    """The always-candidate-0 run must really exercise rejections and overload."""
    m = runs["candidate0"][2]["metrics"]
    assert m["rejected"].sum() > 0
    assert m["overload"].max() > 0
    assert runs["random"][2]["metrics"]["admitted"].sum() > 0


def test_steps_advance_time(runs):
    _, final, rec = runs["random"]
    np.testing.assert_array_equal(rec["t"], np.arange(CFG.episode_steps))
    assert int(final.t) == CFG.episode_steps


# --------------------------------------------------------------------------- determinism, jit, vmap


def test_same_seed_same_trajectory(runs):
    again = _np(_EPISODE(jax.random.key(0), False))
    first = runs["random"]
    leaves_a = jax.tree.leaves(first)
    leaves_b = jax.tree.leaves(again)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _np(_EPISODE(jax.random.key(1), False))
    assert not np.array_equal(other[2]["metrics"]["arrived"], first[2]["metrics"]["arrived"])


def test_jit_step_equals_eager_step(runs, state0):
    _, _, rec = runs["candidate0"]
    t = int(np.argmax(rec["metrics"]["rejected"]))  # an overloaded step
    state = state0.replace(
        servers=jax.tree.map(jnp.asarray, _at(rec["before"], t)),
        jobs=jax.tree.map(jnp.asarray, _at(rec["jobs"], t)),
        t=jnp.asarray(t, jnp.int32),
    )
    actions = jnp.asarray(rec["actions"][t])
    key = jax.random.key(42)
    eager = _np(cloud.step(key, state, actions, CFG))
    jitted = _np(_JIT_STEP(key, state, actions, CFG))
    assert eager[2]["rejected"] > 0
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(a, b)


def test_vmap_equals_single_runs():
    keys = jnp.stack([jax.random.key(s) for s in (3, 4, 5)])
    batched = _np(jax.jit(jax.vmap(_episode, in_axes=(0, None)))(keys, False))
    for b in range(3):
        single = _np(_EPISODE(keys[b], False))
        for name, values in single[2]["metrics"].items():
            np.testing.assert_allclose(
                batched[2]["metrics"][name][b], values, rtol=1e-5, atol=1e-6, err_msg=name
            )
        np.testing.assert_array_equal(batched[1].servers.active[b], single[1].servers.active)


# --------------------------------------------------------------------------- admission order


def _hand_state(state0, *, free_mem, busy_slots, jobs):
    """Every agent has candidates 0..K-1; server 3 holds `busy_slots` jobs and has `free_mem`
    GB free; every other server is empty. `jobs` maps (agent, slot) -> (cores, memory)."""
    sc = state0.scenario
    cand = jnp.tile(jnp.arange(K, dtype=jnp.int32), (N, 1))
    sc = sc.replace(candidates=cand, coverage=jnp.zeros(M).at[cand.reshape(-1)].add(1.0))
    active = np.zeros((M, S), bool)
    active[3, :busy_slots] = True
    mem = np.zeros((M, S), np.float32)
    mem[3, 0] = float(sc.memory_gb[3]) - free_mem
    cores = np.where(active, 0.5, 0.0).astype(np.float32)
    servers = Servers(
        active=jnp.asarray(active),
        cores=jnp.asarray(cores),
        memory_gb=jnp.asarray(mem),
        remaining=jnp.asarray(np.where(active, 100.0, 0.0).astype(np.float32)),
        start=jnp.zeros((M, S), jnp.int32),
        ideal=jnp.asarray(np.where(active, 100.0, 0.0).astype(np.float32)),
    )
    mask = np.zeros((N, J), bool)
    jc = np.ones((N, J), np.float32)
    jm = np.ones((N, J), np.float32)
    for (i, j), (c, m_) in jobs.items():
        mask[i, j], jc[i, j], jm[i, j] = True, c, m_
    jobs_ = Jobs(
        type=jnp.zeros((N, J), jnp.int32),
        cores=jnp.asarray(jc),
        memory_gb=jnp.asarray(jm),
        work=jnp.full((N, J), 50.0, jnp.float32),
        mask=jnp.asarray(mask),
        shed=jnp.asarray(3, jnp.int32),
    )
    return state0.replace(scenario=sc, servers=servers, jobs=jobs_, t=jnp.asarray(5, jnp.int32))


@pytest.mark.parametrize(
    ("case", "free_mem", "busy_slots", "jobs", "winner"),
    [
        # two agents, room (memory) for one job: the lower-index agent wins, whatever the slot
        ("agent-order", 10.0, 1, {(0, 5): (2.0, 8.0), (1, 0): (3.0, 8.0)}, 2.0),
        ("agent-order-reversed-ids", 10.0, 1, {(2, 6): (4.0, 8.0), (5, 0): (3.0, 8.0)}, 4.0),
        # the lower-index agent's job does not fit, the next one does
        ("skip-infeasible", 10.0, 1, {(0, 0): (2.0, 12.0), (1, 0): (3.0, 8.0)}, 3.0),
        # within an agent, job order
        ("job-order", 10.0, 1, {(4, 6): (2.0, 8.0), (4, 1): (3.0, 8.0)}, 3.0),
        # room (slots) for one job
        ("slot-limited", 100.0, S - 1, {(1, 7): (2.0, 1.0), (6, 0): (3.0, 1.0)}, 2.0),
    ],
)
def test_admission_order(state0, case, free_mem, busy_slots, jobs, winner):
    state = _hand_state(state0, free_mem=free_mem, busy_slots=busy_slots, jobs=jobs)
    actions = jnp.full((N, J), 3, jnp.int32)  # every job to server 3 (candidate index 3)
    new, reward, m = _JIT_STEP(jax.random.key(0), state, actions, CFG)
    new_slots = np.asarray(new.servers.active & ~state.servers.active)
    assert new_slots.sum() == 1 and new_slots[3].sum() == 1, case
    assert float(np.asarray(new.servers.cores)[new_slots][0]) == winner, case
    assert int(m["admitted"]) == 1 and int(m["rejected"]) == 1
    assert int(m["shed"]) == 3 and int(m["arrived"]) == 5
    np.testing.assert_allclose(float(m["drop_rate"]), 1 / 5, rtol=1e-6)
    np.testing.assert_allclose(
        float(reward),
        -(float(m["imbalance"]) + 2.0 * float(m["overload"]) + 10.0 / 5),
        rtol=1e-5,
    )


def test_admission_fills_free_slots_only(state0):
    """Jobs go to free slots; a server whose first slots are busy keeps those jobs."""
    jobs = {(0, 0): (2.0, 1.0), (0, 1): (3.0, 1.0), (1, 0): (4.0, 1.0)}
    state = _hand_state(state0, free_mem=100.0, busy_slots=5, jobs=jobs)
    actions = jnp.full((N, J), 3, jnp.int32)
    new, _, m = _JIT_STEP(jax.random.key(0), state, actions, CFG)
    assert int(m["admitted"]) == 3 and int(m["rejected"]) == 0
    active = np.asarray(new.servers.active[3])
    assert active[:8].all() and not active[8:].any()
    np.testing.assert_array_equal(np.asarray(new.servers.cores[3, 5:8]), [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(np.asarray(new.servers.start[3, 5:8]), [5, 5, 5])


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_agents": 0},
        {"n_agents": -3},
        {"jobs_per_step": 0},
        {"arrival_rate": -0.5},
        {"tide_noise": -0.1},
        {"overload_weight": -1.0},
        {"drop_weight": -1.0},
        {"arrival_rate": float("nan")},
    ],
)
def test_env_config_rejects_invalid(kwargs):
    with pytest.raises(ValueError):
        EnvConfig(**kwargs)


def test_env_config_accepts_valid():
    cfg = EnvConfig(n_agents=1, arrival_rate=0.0)
    assert (cfg.n_servers, cfg.n_candidates) == (2, 2)
    assert EnvConfig(n_agents=50).n_candidates == 8


# --------------------------------------------------------------------------- scenario


def test_generation_counts():
    assert generation_counts(100) == (30, 40, 30)
    for n_servers in range(2, 402, 2):
        counts = generation_counts(n_servers)
        assert sum(counts) == n_servers and min(counts) >= 0
        for c, share in zip(counts, (0.3, 0.4, 0.3), strict=True):
            assert abs(c - share * n_servers) < 1, (n_servers, counts)


@pytest.fixture(scope="module")
def scenarios(state0):
    """make_scenario for N in (1, 3, 50) and seeds 0-2; N = 8 from the episodes' reset state."""
    out = {(n, s): cloud.make_scenario(n, s) for n in (1, 3, 50) for s in (0, 1, 2)}
    for s in (0, 1, 2):
        out[(N, s)] = _np(state0.scenario) if s == 0 else cloud.make_scenario(N, s)
    return out


def test_scenario_generations_exact_for_100_servers(scenarios):
    for s in (0, 1, 2):
        sc = scenarios[(50, s)]
        assert sc.generation.shape == (100,)
        np.testing.assert_array_equal(np.bincount(sc.generation, minlength=4)[1:], [30, 40, 30])


@pytest.mark.parametrize("n", [1, 3, N, 50])
def test_scenario_hardware(scenarios, n):
    for s in (0, 1, 2):
        sc = scenarios[(n, s)]
        m_ = 2 * n
        assert sc.cores.shape == sc.memory_gb.shape == sc.efficiency.shape == (m_,)
        np.testing.assert_array_equal(
            np.bincount(sc.generation, minlength=4)[1:], generation_counts(m_)
        )
        assert np.all((sc.efficiency >= 0.70) & (sc.efficiency <= 1.08))
        for g, (_, cores, mem, lo, hi) in enumerate(GENERATIONS, start=1):
            sel = sc.generation == g
            assert np.all(sc.cores[sel] == cores) and np.all(sc.memory_gb[sel] == mem)
            assert np.all((sc.efficiency[sel] >= lo) & (sc.efficiency[sel] <= hi))
        np.testing.assert_allclose(sc.capacity, sc.cores * sc.efficiency, rtol=1e-6)
        assert np.all((sc.rate_multiplier >= 0.8) & (sc.rate_multiplier <= 1.2))
        assert 0 <= sc.phase < 1000.0


def test_generation_table():
    assert [(g[1], g[2]) for g in GENERATIONS] == [(16.0, 128.0), (32.0, 128.0), (64.0, 192.0)]
    assert [g[0] for g in GENERATIONS] == [0.30, 0.40, 0.30]


@pytest.mark.parametrize("n", [1, 3, N, 50])
def test_scenario_candidates_and_coverage(scenarios, n):
    m_, k = 2 * n, min(8, 2 * n)
    for s in (0, 1, 2):
        sc = scenarios[(n, s)]
        assert sc.candidates.shape == (n, k)
        assert np.all((sc.candidates >= 0) & (sc.candidates < m_))
        for row in sc.candidates:
            assert len(set(row.tolist())) == k  # distinct within each agent
        coverage = np.bincount(sc.candidates.reshape(-1), minlength=m_)
        np.testing.assert_array_equal(sc.coverage, coverage)
        assert coverage.max() - coverage.min() <= 1
        if m_ >= 8:
            assert np.all(coverage == k // 2)
        else:  # K = M: every agent sees every server
            everything = np.tile(np.arange(m_), (n, 1))
            np.testing.assert_array_equal(np.sort(sc.candidates, axis=1), everything)
            assert np.all(coverage == n)
    # neighbourhoods differ between agents and between seeds
    if n >= N:
        assert len({tuple(sorted(r)) for r in scenarios[(n, 0)].candidates.tolist()}) > 1
        assert not np.array_equal(scenarios[(n, 0)].candidates, scenarios[(n, 1)].candidates)


def test_cpu_share_recentred(scenarios):
    for s in (0, 1, 2):
        sc = scenarios[(50, s)]
        w = sc.rate_multiplier / sc.rate_multiplier.sum()
        np.testing.assert_allclose(np.sum(w * sc.cpu_share), 0.6, atol=1e-5)
        assert np.all((sc.cpu_share > 0.35) & (sc.cpu_share < 0.85))


def test_make_scenario_matches_reset(state0):
    made = cloud.make_scenario(N, 0)
    reset_scn = _np(state0.scenario)
    for name in ("generation", "candidates", "cores", "memory_gb"):
        np.testing.assert_array_equal(getattr(made, name), getattr(reset_scn, name), err_msg=name)
    for name in ("efficiency", "coverage", "rate_multiplier", "cpu_share", "phase"):
        np.testing.assert_allclose(
            getattr(made, name), getattr(reset_scn, name), rtol=1e-6, err_msg=name
        )
    other = cloud.make_scenario(N, 1)
    assert not np.array_equal(other.candidates, reset_scn.candidates)


def test_reset_state_shapes_and_warm_start(state0):
    st = _np(state0)
    assert st.servers.active.shape == (M, S)
    assert st.jobs.mask.shape == (N, J)
    assert int(st.t) == 0
    cpu, mem, running = (np.asarray(v) for v in cloud.server_loads(state0.servers))
    assert np.all(mem <= st.scenario.memory_gb + MEM_TOL)
    assert running.sum() > 0  # warm start
    # warm load stays below the targeted level times capacity
    level = CFG.warm_utilisation * (
        1 + CFG.tide_amplitude * np.sin(2 * np.pi * st.scenario.phase / CFG.tide_period)
    )
    assert np.all(cpu <= level * st.scenario.capacity * (1 + 1e-5))
    # job slots are filled as a prefix of each agent's row
    assert np.all(np.diff(st.jobs.mask.astype(int), axis=1) <= 0)
