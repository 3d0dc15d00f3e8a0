"""The PPO-family learner: GAE, the clipped surrogate, value normalisation, the guidance term,
DG-PG at alpha = 0 against MAPPO, configuration checks and a learning smoke test."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import EnvConfig
from dgpg.domains.cloud.fluid import WaterFillingModel
from dgpg.domains.cloud.heuristics import analytical
from dgpg.evaluation import VALIDATION_SEEDS, evaluate
from dgpg.learners import ppo
from dgpg.learners.ppo import (
    TrainConfig,
    ValueNorm,
    clipped_surrogate,
    gae,
    init_runner,
    make_train_episode,
)
from dgpg.training import make_validator

# One small configuration shared by the alpha = 0 test and the cheap learning test, so that the
# DG-PG episode function is compiled once per session.
SMALL_ENV = EnvConfig(n_agents=3, episode_steps=20)
SMALL = {"hidden": 16, "update_epochs": 2, "num_minibatches": 2}


@functools.cache
def _train_fn(config: TrainConfig, env_config: EnvConfig):
    return jax.jit(make_train_episode(config, env_config))


def _plain(x) -> np.ndarray:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _leaves_equal(a, b) -> bool:
    """Same tree structure and every leaf exactly equal (PRNG keys by their key data)."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        np.array_equal(_plain(x), _plain(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# --------------------------------------------------------------------------- GAE


def test_gae_hand_computed():
    rewards = jnp.array([1.0, 0.0, 2.0])
    values = jnp.array([0.5, 0.2, 0.1])
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, jnp.asarray(0.3), gamma, lam)
    # delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V(s_3) = last_value = 0.3
    d2 = 2.0 + 0.9 * 0.3 - 0.1  # 2.17
    d1 = 0.0 + 0.9 * 0.1 - 0.2  # -0.11
    d0 = 1.0 + 0.9 * 0.2 - 0.5  # 0.68
    a2 = d2  # 2.17
    a1 = d1 + 0.9 * 0.8 * a2  # 1.4524
    a0 = d0 + 0.9 * 0.8 * a1  # 1.725728
    np.testing.assert_allclose(np.asarray(adv), [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(adv), [1.725728, 1.4524, 2.17], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ret), [a0 + 0.5, a1 + 0.2, a2 + 0.1], rtol=1e-6)


def _gae_loop(rewards, values, last_value, gamma, lam):
    """Plain Python GAE in float64; values (T,) or (T, N), rewards (T,)."""
    rewards = np.asarray(rewards, np.float64)
    values = np.asarray(values, np.float64)
    T = len(rewards)
    adv = np.zeros_like(values)
    next_adv = np.zeros_like(values[0])
    next_value = np.asarray(last_value, np.float64)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * next_value - values[t]
        next_adv = delta + gamma * lam * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


@pytest.mark.parametrize("local", [False, True], ids=["central", "local"])
def test_gae_matches_python_loop(local):
    rng = np.random.default_rng(7)
    T, N = 11, 4
    rewards = rng.normal(size=T).astype(np.float32)
    shape = (T, N) if local else (T,)
    values = rng.normal(size=shape).astype(np.float32)
    last_value = rng.normal(size=shape[1:]).astype(np.float32)
    gamma, lam = 0.97, 0.9
    adv, ret = gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(last_value), gamma,
                   lam)
    want_adv, want_ret = _gae_loop(rewards, values, last_value, gamma, lam)
    assert adv.shape == shape and ret.shape == shape
    np.testing.assert_allclose(np.asarray(adv), want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), want_ret, rtol=1e-5, atol=1e-5)
    if local:
        # the team reward is shared: column n equals GAE on (rewards, values[:, n])
        for n in range(N):
            col, _ = gae(jnp.asarray(rewards), jnp.asarray(values[:, n]),
                         jnp.asarray(last_value[n]), gamma, lam)
            np.testing.assert_allclose(np.asarray(adv[:, n]), np.asarray(col), rtol=1e-6,
                                       atol=1e-6)


# --------------------------------------------------------------------------- surrogate


def test_clipped_surrogate_hand_computed():
    clip = 0.2
    ratios = np.array([1.1, 1.5, 0.5, 1.5, 0.5, 3.0])
    adv = np.array([2.0, 1.0, 1.0, -1.0, -2.0, 100.0])
    mask = np.array([True, True, True, True, True, False])
    old = np.array([-1.0, -0.3, -2.0, -0.7, -1.2, -0.5])
    new = old + np.log(ratios)
    # per entry min(r A, clip(r, 0.8, 1.2) A):
    expected_terms = [
        1.1 * 2.0,  # inside the clip range: r A = 2.2
        1.2 * 1.0,  # r > 1 + eps, A > 0: clipped, 1.2
        0.5 * 1.0,  # r < 1 - eps, A > 0: unclipped (smaller), 0.5
        1.5 * -1.0,  # r > 1 + eps, A < 0: unclipped (smaller), -1.5
        0.8 * -2.0,  # r < 1 - eps, A < 0: clipped, -1.6
    ]  # the sixth entry (r = 3, A = 100) is masked out
    expected = -sum(expected_terms) / 5  # -0.16
    got = clipped_surrogate(jnp.asarray(new, jnp.float32), jnp.asarray(old, jnp.float32),
                            jnp.asarray(adv, jnp.float32), clip, jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(got), -0.16, rtol=1e-5)
    # with the mask lifted, the sixth entry counts: min(300, 120) = 120
    got_all = clipped_surrogate(jnp.asarray(new, jnp.float32), jnp.asarray(old, jnp.float32),
                                jnp.asarray(adv, jnp.float32), clip, jnp.ones(6, bool))
    np.testing.assert_allclose(float(got_all), -(sum(expected_terms) + 120.0) / 6, rtol=1e-5)
    # nothing present: zero, not NaN
    none = clipped_surrogate(jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv), clip,
                             jnp.zeros(6, bool))
    assert float(none) == 0.0


# --------------------------------------------------------------------------- value norm


def test_value_norm_running_statistics():
    rng = np.random.default_rng(3)
    x1 = rng.normal(5.0, 2.0, size=40).astype(np.float32)
    x2 = rng.normal(-3.0, 0.5, size=(6, 5)).astype(np.float32)
    vn = ValueNorm.create().update(jnp.asarray(x1)).update(jnp.asarray(x2))
    both = np.concatenate([x1, x2.ravel()]).astype(np.float64)
    np.testing.assert_allclose(float(vn.mean), both.mean(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(vn.var), both.var(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(vn.count), both.size + 1e-4, rtol=1e-6)
    # normalising the data with its statistics standardises it; denormalize inverts normalize
    z = np.asarray(vn.normalize(jnp.asarray(both, jnp.float32)), np.float64)
    assert abs(z.mean()) < 1e-3 and abs(z.std() - 1.0) < 1e-3
    y = jnp.asarray(rng.normal(size=17), jnp.float32)
    np.testing.assert_allclose(np.asarray(vn.denormalize(vn.normalize(y))), np.asarray(y),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(vn.normalize(vn.denormalize(y))), np.asarray(y),
                               rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- guidance


@pytest.fixture(scope="module")
def guidance_setup():
    cfg = EnvConfig(n_agents=4, episode_steps=10)
    reset, model = jax.jit(cloud.reset, static_argnums=1), WaterFillingModel(cfg)
    reference = jax.jit(model.reference)
    for seed in range(50):  # the first scenario whose opening step holds 3 or more jobs
        ref = reference(reset(jax.random.key(seed), cfg))
        if int(np.sum(np.asarray(ref.mask))) >= 3:
            break
    assert int(np.sum(np.asarray(ref.mask))) >= 3
    return cfg, model, ref, jax.jit(model.guidance_loss), jax.jit(jax.grad(model.guidance_loss))


def test_guidance_gradient_matches_finite_differences(guidance_setup):
    _, _, ref, loss, grad = guidance_setup
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), ref.probs.shape), axis=-1)
    g = np.asarray(grad(probs, ref), np.float64)
    mask = np.asarray(ref.mask)
    assert np.all(g[~mask] == 0.0)  # absent job slots get no gradient
    scale = np.abs(g).max()
    assert scale > 0
    eps = 1e-2
    checked = 0
    for idx in np.ndindex(*g.shape):
        if abs(g[idx]) < 0.05 * scale:
            continue
        up = float(loss(probs.at[idx].add(eps), ref))
        down = float(loss(probs.at[idx].add(-eps), ref))
        fd = (up - down) / (2 * eps)
        np.testing.assert_allclose(fd, g[idx], rtol=2e-2, err_msg=str(idx))
        checked += 1
    assert checked >= 10


def test_guidance_zero_at_reference_positive_at_uniform(guidance_setup):
    cfg, _, ref, loss, _ = guidance_setup
    assert float(loss(ref.probs, ref)) == 0.0
    uniform = jnp.full(ref.probs.shape, 1.0 / cfg.n_candidates)
    assert float(loss(uniform, ref)) > 1e-4


# --------------------------------------------------------------------------- DG-PG vs MAPPO


def test_alpha_zero_is_mappo_bit_for_bit():
    """With the aligned model; with another the compiled program may round differently (the
    calibrated model: within 1e-5, `test_alpha_zero_is_mappo_to_rounding`)."""
    dg0 = TrainConfig(algo="dgpg", alpha=0.0, model="aligned", **SMALL)
    mappo = TrainConfig(algo="mappo", **SMALL)
    key = jax.random.key(0)
    runners = {c: init_runner(key, c, SMALL_ENV) for c in (dg0, mappo)}
    assert _leaves_equal(runners[dg0], runners[mappo])
    out = {c: _train_fn(c, SMALL_ENV)(runners[c]) for c in (dg0, mappo)}

    (r0, m0), (rm, mm) = out[dg0], out[mappo]
    for name in ("actor", "critic"):
        assert _leaves_equal(r0.params[name], rm.params[name]), name
    assert _leaves_equal(r0.opt_state, rm.opt_state)
    assert _leaves_equal(r0.value_norm, rm.value_norm)
    for k in ("return", "policy_loss", "value_loss", "entropy", "grad_norm"):
        assert np.array_equal(np.asarray(m0[k]), np.asarray(mm[k])), k
    # the guidance is computed at alpha = 0 (just weighted 0), and absent for MAPPO
    assert float(m0["guidance_loss"]) > 0.0
    assert float(mm["guidance_loss"]) == 0.0
    # the parameters moved
    assert not _leaves_equal(r0.params["actor"], runners[dg0].params["actor"])


def test_alpha_zero_is_mappo_to_rounding():
    dg0 = TrainConfig(algo="dgpg", alpha=0.0, **SMALL)  # the default model
    mappo = TrainConfig(algo="mappo", **SMALL)
    key = jax.random.key(0)
    (r0, _), (rm, _) = (_train_fn(c, SMALL_ENV)(init_runner(key, c, SMALL_ENV))
                        for c in (dg0, mappo))
    for a, b in zip(jax.tree.leaves(r0.params), jax.tree.leaves(rm.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.slow  # a third compilation of the training episode; the guidance's gradient is
# checked against finite differences in the default suite
def test_alpha_half_moves_the_actor_elsewhere_from_the_same_roll_out():
    dg0 = TrainConfig(algo="dgpg", alpha=0.0, **SMALL)
    dg_half = TrainConfig(algo="dgpg", alpha=0.5, **SMALL)
    key = jax.random.key(0)
    runners = {c: init_runner(key, c, SMALL_ENV) for c in (dg0, dg_half)}
    assert _leaves_equal(runners[dg0], runners[dg_half])
    (r0, m0), (rh, mh) = (_train_fn(c, SMALL_ENV)(runners[c]) for c in (dg0, dg_half))
    assert not _leaves_equal(rh.params["actor"], r0.params["actor"])
    # same roll-out (same key, same initial policy), different update
    assert np.array_equal(np.asarray(mh["return"]), np.asarray(m0["return"]))


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs",
    [{"algo": "nope"}, {"algo": "MAPPO"}, {"alpha": -0.1}, {"alpha": 1.5},
     {"alpha": float("nan")}, {"alpha": float("inf")}, {"alpha": "0.5"}],
)
def test_train_config_rejects(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_guidance_weight():
    assert TrainConfig(algo="dgpg", alpha=0.7).guidance_weight == 0.7
    assert TrainConfig(algo="dgpg", alpha=0.0).guidance_weight == 0.0
    assert TrainConfig(algo="dgpg", alpha=1.0).guidance_weight == 1.0
    assert TrainConfig(algo="mappo", alpha=0.7).guidance_weight == 0.0
    assert TrainConfig(algo="ippo", alpha=0.7).guidance_weight == 0.0
    assert TrainConfig(algo="ippo").central_critic is False
    assert TrainConfig(algo="mappo").central_critic is True


# --------------------------------------------------------------------------- learning


def _train(config, env_config, episodes, seed=0):
    train_episode = _train_fn(config, env_config)
    runner = init_runner(jax.random.key(seed), config, env_config)
    initial = runner.params["actor"]
    for _ in range(episodes):
        runner, metrics = train_episode(runner)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(runner.episode) == episodes
    return initial, runner.params["actor"]


def _analytical_return(env_config, seeds) -> float:
    return float(evaluate(analytical, env_config, seeds)["return"].mean())


@pytest.mark.slow  # the aligned model's N = 5 test below is the default learning test
def test_dgpg_learns_small():
    """Cheap smoke test of the learner (N = 3, 20-step episodes, small network, 10 episodes,
    the fluid model): the greedy policy beats the initial one and comes within 10 % of
    `analytical`, the fluid model's own policy. The aligned model's learning test is below."""
    config = TrainConfig(algo="dgpg", alpha=0.5, model="fluid", **SMALL)
    initial, final = _train(config, SMALL_ENV, episodes=10)
    validate = make_validator(config, SMALL_ENV, VALIDATION_SEEDS)  # one compile, both actors
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), initial, final)
    init_ret, final_ret = np.asarray(validate(stacked), np.float64).mean(axis=1)
    ref = _analytical_return(SMALL_ENV, VALIDATION_SEEDS)
    assert final_ret > init_ret, (final_ret, init_ret)
    assert final_ret >= ref - 0.1 * abs(ref), (final_ret, ref)


@pytest.mark.parametrize("episodes,first", [
    (8, 5),
    pytest.param(20, 10, marks=pytest.mark.slow),  # about a minute on 2 CPU cores
])
def test_dgpg_aligned_stays_near_best_fit_central_n5(tmp_path, episodes, first):
    """DG-PG with the aligned model at N = 5 (the defaults of `dgpg train`, seed 0): the greedy
    validation return of every episode from `first` to `episodes` is within 15 % of
    best-fit-central's on the same scenarios (measured: -8.4 to -10.8 from episode 5 to 12 and
    -7.3 to -9.9 from episode 9 to 20, against -9.9; episodes 3 and 4 dip to -15 and -17.5)."""
    import csv

    from dgpg.domains.cloud.heuristics import best_fit_central
    from dgpg.training import RunConfig, train

    # one episode more asked than trained: the run stops before its test evaluation
    run = RunConfig(algo="dgpg", n_agents=5, episodes=episodes + 1, seed=0, seeds=1)
    assert run.model == "calibrated"
    train(tmp_path / "run", run, stop_after=episodes)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        val = {int(r["episode"]): float(r["val_return"]) for r in csv.DictReader(f)}
    ref = float(evaluate(best_fit_central, run.env_config(), VALIDATION_SEEDS)["return"].mean())
    late = [val[e] for e in range(first, episodes + 1)]
    assert min(late) >= ref - 0.15 * abs(ref), (late, ref)


def test_the_linear_schedule_moves_alpha_to_its_final_weight():
    config = TrainConfig(algo="dgpg", alpha=0.9, alpha_schedule="linear", alpha_final=0.2,
                         alpha_decay_episodes=10)
    weights = [config.guidance_weight_at(e) for e in range(15)]
    assert weights[0] == 0.9 and weights[5] == pytest.approx(0.55) and weights[10:] == [0.2] * 5
    assert all(a >= b for a, b in zip(weights, weights[1:], strict=False))
    traced = [float(ppo.guidance_weight(config, jnp.asarray(e))) for e in range(15)]
    np.testing.assert_allclose(traced, weights, rtol=1e-6)
    assert TrainConfig(algo="dgpg", alpha=0.7).guidance_weight_at(50) == 0.7  # fixed
    assert TrainConfig(algo="mappo", alpha_schedule="linear").guidance_weight_at(0) == 0.0
    for bad in ({"alpha_schedule": "cosine"}, {"alpha_final": 1.5}, {"guidance_scale": "z"},
                {"alpha_decay_episodes": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_slot_scaled_guidance_is_scale_free_and_points_where_the_model_does():
    """A linear model whose costs are multiplied by 1000 gives the same slot-scaled loss and
    gradient; the loss is 0 at the model's greedy choice and its gradient ranks the candidates
    as the model's costs do."""
    key = jax.random.key(0)
    costs = jax.random.uniform(key, (2, 3, 4, 5))  # (B, N, J, K)
    mask = jnp.ones((2, 3, 4), bool).at[0, 0, 0].set(False)

    class Linear:
        def __init__(self, scale):
            self.scale = scale

        def guidance_loss(self, probs, reference):
            return jnp.sum(probs * reference * self.scale)

    probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), costs.shape), axis=-1)
    small, large = (ppo.slot_scaled_guidance(Linear(s), probs, costs, mask) for s in (1, 1e3))
    np.testing.assert_allclose(small, large, rtol=1e-5)
    grad = jax.grad(lambda p: ppo.slot_scaled_guidance(Linear(1e3), p, costs, mask))(probs)
    order = np.argsort(np.asarray(grad[1, 2, 3]))
    np.testing.assert_array_equal(order, np.argsort(np.asarray(costs[1, 2, 3])))
    greedy = jax.nn.one_hot(jnp.argmin(costs, axis=-1), 5)
    assert float(ppo.slot_scaled_guidance(Linear(7.0), greedy, costs, mask)) == 0.0
    assert 0.0 < float(small) < 1.0


def test_after_its_decay_the_schedule_trains_as_the_final_weight_does():
    """Episode 1 of a linear schedule 0.9 -> 0 over one episode is the update of alpha = 0 (to
    float32 rounding: the weight is a traced number there, a constant in the fixed update); its
    first episode is not (the weight is 0.9 there)."""
    fixed0 = TrainConfig(algo="dgpg", alpha=0.0, model="aligned", **SMALL)
    linear = TrainConfig(algo="dgpg", alpha=0.9, alpha_schedule="linear", alpha_final=0.0,
                         alpha_decay_episodes=1, model="aligned", **SMALL)
    first = init_runner(jax.random.key(0), fixed0, SMALL_ENV)
    later = first.replace(episode=jnp.asarray(1, first.episode.dtype))
    def gap(x, y):
        return max(float(jnp.max(jnp.abs(u - v)))
                   for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True))

    (a, _), (b, _) = (_train_fn(c, SMALL_ENV)(later) for c in (fixed0, linear))
    (c, _), (d, _) = (_train_fn(c, SMALL_ENV)(first) for c in (fixed0, linear))
    assert gap(a.params["actor"], b.params["actor"]) < 1e-6
    assert gap(c.params["actor"], d.params["actor"]) > 1e-4


def test_slot_scaled_guidance_trains():
    config = TrainConfig(algo="dgpg", guidance_scale="slot", **SMALL)
    runner, metrics = _train_fn(config, SMALL_ENV)(init_runner(jax.random.key(0), config,
                                                                SMALL_ENV))
    assert 0.0 < float(metrics["guidance_loss"]) < 1.0
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_the_modelled_difference_reward_credits_the_model_s_choice():
    """For a linear model the credit of an agent is, per slot, the policy's expected cost minus
    the cost of its action: positive for the cheapest candidate, negative for the dearest, zero
    in expectation over the policy; slots with no decision count nothing."""
    costs = jax.random.uniform(jax.random.key(2), (3, 2, 4))  # (N, J, K)
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(3), costs.shape), axis=-1)
    mask = jnp.array([[True, True], [True, False], [False, False]])

    class Linear:
        def guidance_loss(self, p, reference):
            return jnp.sum(p * reference)

    best, worst = jnp.argmin(costs, axis=-1), jnp.argmax(costs, axis=-1)
    credit = {name: np.asarray(ppo.difference_reward(Linear(), probs, costs, a, mask))
              for name, a in (("best", best), ("worst", worst))}
    assert np.all(credit["best"][:2] > 0) and np.all(credit["worst"][:2] < 0)
    assert credit["best"][2] == credit["worst"][2] == 0.0
    one = probs[:, :1]  # one slot per agent: the credit's expectation under the policy is 0
    mean = sum(np.asarray(one[:, 0, k]) * np.asarray(ppo.difference_reward(
        Linear(), one, costs[:, :1], jnp.full((3, 1), k), jnp.ones((3, 1), bool)))
        for k in range(4))
    np.testing.assert_allclose(mean, 0.0, atol=1e-6)


def test_dr_trains_with_the_model_and_no_guidance_term():
    config = TrainConfig(algo="dr", model="aligned", **SMALL)
    runner, metrics = _train_fn(config, SMALL_ENV)(init_runner(jax.random.key(0), config,
                                                                SMALL_ENV))
    assert float(metrics["guidance_loss"]) == 0.0
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert config.uses_model and not TrainConfig(algo="mappo").uses_model


def test_the_adaptive_weight_trusts_the_model_while_its_rule_is_ahead():
    """alpha while the model's rule does at least as well as the policy; 0 once the policy
    leads it by the margin; linear in between, per seed, for negative returns (costs) too."""
    rule = -20.0
    policy = np.array([-30.0, -20.0, -19.0, -18.0, -10.0])  # leads: -0.5, 0, 0.05, 0.1, 0.5
    np.testing.assert_allclose(ppo.trust_weight(0.5, policy, rule, margin=0.1),
                               [0.5, 0.5, 0.25, 0.0, 0.0], atol=1e-12)
    assert ppo.trust_weight(0.5, np.array([12.0]), 10.0, 0.1)[0] == pytest.approx(0.0)  # rewards
    assert ppo.trust_weight(0.5, np.array([10.5]), 10.0, 0.1)[0] == pytest.approx(0.25)
    assert ppo.trust_weight(0.5, np.array([-15.0]), rule)[0] == pytest.approx(0.25)  # 0.5


def test_the_adaptive_weight_is_the_runner_s_and_the_update_uses_it():
    """An adaptive runner carries its weight; with the weight set to 0 the update is MAPPO's
    (alpha = 0) and with it set to 0.9 it is fixed alpha = 0.9's, to float32 rounding."""
    adaptive = TrainConfig(algo="dgpg", alpha=0.9, alpha_schedule="adaptive", **SMALL)
    runner = init_runner(jax.random.key(0), adaptive, SMALL_ENV)
    assert float(runner.trust.alpha) == pytest.approx(0.9)
    assert init_runner(jax.random.key(0), TrainConfig(**SMALL), SMALL_ENV).trust is None

    def gap(x, y):
        return max(float(jnp.max(jnp.abs(u - v)))
                   for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True))

    trained = []
    for weight in (0.0, 0.9):
        fixed = TrainConfig(algo="dgpg", alpha=weight, **SMALL)
        plain = init_runner(jax.random.key(0), fixed, SMALL_ENV)
        trusting = plain.replace(trust=ppo.GuidanceTrust(jnp.float32(weight)))
        (a, _), (b, metrics) = (_train_fn(fixed, SMALL_ENV)(plain),
                                _train_fn(adaptive, SMALL_ENV)(trusting))
        assert gap(a.params["actor"], b.params["actor"]) < 1e-5
        assert float(metrics["alpha"]) == pytest.approx(weight)
        trained.append(b.params["actor"])
    assert gap(*trained) > 1e-4


def test_the_model_rule_is_the_domain_s_model_greedy_or_the_model_s_cheapest_candidate():
    from dgpg.domains.cloud.heuristics import model_greedy

    assert ppo.model_rule(TrainConfig(**SMALL), SMALL_ENV) is model_greedy
