"""The counterfactual policy-gradient estimator: unbiased, and far less noisy than the plain one.

A small synthetic game with an exactly computable gradient: N agents, two actions, T steps; a
scalar state that every agent's action moves, policies that depend on the state (so that agent
0's choices change what the others do later), and reward noise. The exact gradient of the
expected return with respect to agent 0's logits comes from enumerating every joint action
sequence; both estimators must recover it within their confidence intervals.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgpg.learners.gradient_stats import make_split_rollout, score_gradients
from dgpg.learners.ppo import gae

N, K, T = 3, 2, 3
RHO, BETA, SIGMA = 0.6, 1.5, 1.0
STEP = jnp.array([0.5, -0.5])  # what each action adds to the state (divided by N)
DIRECTION = jnp.array([1.0, -1.0])  # how the state tilts every policy
OTHERS = jnp.array([[0.3, -0.2], [-0.4, 0.1]])  # fixed logits of agents 1 .. N-1
THETA = jnp.array([0.2, -0.1])  # agent 0's logits: the parameters


def logits_at(theta, x):
    """(N, K) logits of every agent at state x."""
    return jnp.concatenate([theta[None], OTHERS]) + BETA * x * DIRECTION


def transition(x, actions):
    x_next = RHO * x + jnp.mean(STEP[actions])
    return x_next, -((x_next - 0.2) ** 2)


def play(theta, world_key, own_key):
    """One episode: (agent 0's actions (T,), states (T,), rewards (T,) with noise)."""
    k_others, k_noise = jax.random.split(world_key)
    others_noise = jax.random.gumbel(k_others, (T, N, K))
    own_noise = jax.random.gumbel(own_key, (T, K))
    reward_noise = SIGMA * jax.random.normal(k_noise, (T,))

    def step(x, inputs):
        g_others, g_own, eps = inputs
        noise = g_others.at[0].set(g_own)
        actions = jnp.argmax(logits_at(theta, x) + noise, axis=-1)
        x_next, reward = transition(x, actions)
        return x_next, (actions[0], x, reward + eps)

    _, (own_actions, states, rewards) = jax.lax.scan(
        step, jnp.zeros(()), (others_noise, own_noise, reward_noise))
    return own_actions, states, rewards


def estimates(theta, key, twin_shares: str = "world"):
    """(plain, counterfactual) gradient samples of the expected return (ascent direction).
    The twin roll-out shares the world's random numbers and resamples agent 0's (the
    estimator); `twin_shares="own"` does the opposite, a baseline that depends on agent 0's
    own draws (biased: the negative control)."""
    k_world, k_own, k_alt = jax.random.split(key, 3)
    actions, states, rewards = play(theta, k_world, k_own)
    twin_keys = (k_world, k_alt) if twin_shares == "world" else (k_alt, k_own)
    _, _, rewards_cf = play(theta, *twin_keys)
    zeros = jnp.zeros(T)  # no critic: GAE with lambda = 1 is the reward-to-go
    adv, _ = gae(rewards, zeros, jnp.zeros(()), 1.0, 1.0)
    adv_cf, _ = gae(rewards_cf, zeros, jnp.zeros(()), 1.0, 1.0)

    def log_prob(th):
        logp = jax.vmap(lambda x: jax.nn.log_softmax(logits_at(th, x)[0]))(states)
        return logp[jnp.arange(T), actions]

    # score_gradients gives the gradient of the loss -(1/T) sum w log pi: ascent is -T times it
    return -T * score_gradients(log_prob, theta, jnp.stack([adv, adv - adv_cf]))


def exact_gradient(theta) -> np.ndarray:
    """d E[sum_t r_t] / d theta by enumerating every joint action sequence."""
    sequences = jnp.array(list(itertools.product(range(K), repeat=N * T))).reshape(-1, T, N)

    def expected_return(th):
        def one(seq):
            def step(carry, actions):
                x, logp = carry
                step_logp = jnp.sum(jax.nn.log_softmax(logits_at(th, x))[jnp.arange(N),
                                                                            actions])
                x_next, reward = transition(x, actions)
                return (x_next, logp + step_logp), reward

            (_, logp), rewards = jax.lax.scan(step, (jnp.zeros(()), jnp.zeros(())), seq)
            return jnp.exp(logp) * jnp.sum(rewards)

        return jnp.sum(jax.vmap(one)(sequences))

    return np.asarray(jax.grad(expected_return)(theta), np.float64)


def _samples(twin_shares: str) -> np.ndarray:
    """(n, 2, P) plain and counterfactual samples."""
    keys = jax.random.split(jax.random.key(0), 20_000)
    return np.asarray(jax.jit(jax.vmap(lambda k: estimates(THETA, k, twin_shares)))(keys),
                      np.float64)


def _z(x: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|mean - exact| in standard errors of the mean, per coordinate."""
    return np.abs(x.mean(axis=0) - exact) / (x.std(axis=0, ddof=1) / np.sqrt(x.shape[0]))


def test_counterfactual_estimator_is_unbiased_and_less_noisy():
    exact = exact_gradient(THETA)
    assert np.linalg.norm(exact) > 1e-3  # a gradient worth recovering
    samples = _samples("world")
    plain, counterfactual = samples[:, 0], samples[:, 1]
    for name, x in (("plain", plain), ("counterfactual", counterfactual)):
        assert np.all(_z(x, exact) < 4.0), (name, x.mean(axis=0), exact)  # 99.99 % each
    var_plain = plain.var(axis=0, ddof=1).sum()
    var_cf = counterfactual.var(axis=0, ddof=1).sum()
    assert var_cf < 0.5 * var_plain, (var_cf, var_plain)
    # the counterfactual samples resolve the gradient: it lies beyond 4 standard errors of 0
    se_cf = counterfactual.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(exact) > 4 * se_cf), (exact, se_cf)


def test_a_baseline_from_the_agents_own_draws_is_caught_as_biased():
    """The negative control: a twin that keeps agent 0's draws and changes the world gives a
    baseline correlated with agent 0's actions; the same check must reject it."""
    exact = exact_gradient(THETA)
    biased = _samples("own")[:, 1]
    assert np.any(_z(biased, exact) > 4.0), (biased.mean(axis=0), exact)


# --------------------------------------------------------------------------- the cloud roll-out


@pytest.fixture(scope="module")
def cloud_rollout():
    from dgpg.domains.cloud.env import EnvConfig
    from dgpg.learners.ppo import TrainConfig, init_runner

    config = TrainConfig(algo="dgpg", hidden=16, model="aligned")
    env = EnvConfig(n_agents=4, episode_steps=6)
    runner = init_runner(jax.random.key(0), config, env)
    rollout = jax.jit(make_split_rollout(config, env, agent=1, with_reference=False))
    return lambda world, own: rollout(runner.params, runner.value_norm, jax.random.key(world),
                                      jax.random.key(own), jax.random.key(7))


def test_split_rollout_shares_the_world_and_changes_only_the_agent(cloud_rollout):
    a, again = cloud_rollout(1, 2), cloud_rollout(1, 2)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(again),
                                                    strict=True))
    twin = cloud_rollout(1, 3)  # the same world, the agent's own draws resampled
    # the first step's observation is the scenario's (no action taken yet) ...
    first = jax.tree.map(lambda x: x[0], (a.obs, twin.obs))
    assert all(np.array_equal(x, y) for x, y in zip(*map(jax.tree.leaves, first), strict=True))
    # ... and over the episode the agent's own choices differ where it had a choice
    assert not np.array_equal(a.actions, twin.actions)
    other_world = cloud_rollout(4, 2)
    assert not np.array_equal(a.rewards, other_world.rewards)
    assert a.actions.shape == (6, 1, a.obs.slot_mask.shape[-1])
    assert a.rewards.shape == a.values.shape == (6,) and a.last_value.shape == ()
