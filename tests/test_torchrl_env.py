"""`dgpg.torchrl.DomainEnv`, the native TorchRL environment (skipped without torchrl)."""

from __future__ import annotations

import pytest

pytest.importorskip("torchrl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from dgpg.domains import get_domain  # noqa: E402
from dgpg.torchrl import DomainEnv  # noqa: E402

N, T = 3, 4  # dispatchers, steps per episode


@pytest.fixture(scope="module")
def env() -> DomainEnv:
    return DomainEnv("cloud", n_agents=N, episode_steps=T, seed=0)


@pytest.fixture(scope="module")
def batched() -> DomainEnv:
    return DomainEnv("cloud", n_agents=N, episode_steps=T, seed=0, batch_size=[2])


def test_specs(env: DomainEnv, batched: DomainEnv) -> None:
    check_env_specs(env, seed=1)
    check_env_specs(batched, seed=1)
    J, K = env.n_slots, env.n_candidates
    assert env.n_group == N * J == len(env.group_map["agents"])
    assert env.full_action_spec["agents", "action"].shape == (N * J,)
    assert env.full_action_spec["agents", "action"].space.n == K
    assert batched.full_observation_spec["agents", "observation"].shape == (
        2, N * J, env.observation_size)
    assert batched.full_reward_spec["agents", "reward"].shape == (2, N * J, 1)


def _actions(env: DomainEnv, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, env.n_candidates, (*env.batch_size, env.n_group), generator=g)


def _trajectory(env: DomainEnv, seed: int, steps: int) -> list[torch.Tensor]:
    env.set_seed(seed)
    td = env.reset()
    out = [td["agents", "observation"].clone()]
    for t in range(steps):
        td["agents", "action"] = _actions(env, t)
        _, td = env.step_and_maybe_reset(td)
        out += [td["agents", "observation"].clone()]
    return out


def test_seeded_determinism(batched: DomainEnv) -> None:
    a = _trajectory(batched, 5, T + 2)  # crosses an episode boundary (partial-reset path)
    b = _trajectory(batched, 5, T + 2)
    c = _trajectory(batched, 6, 1)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0][0], a[0][1])  # the batch's environments differ


def test_reward_is_the_domains(env: DomainEnv) -> None:
    domain = get_domain("cloud")
    config = env.config
    env.set_seed(7)
    td = env.reset()
    key = jax.random.key(7)
    state = domain.reset(key, config)
    stream = jax.random.fold_in(key, 1)
    for t in range(T):
        actions = _actions(env, t)
        td["agents", "action"] = actions
        td = env.step(td)
        stream, sub = jax.random.split(stream)
        state, reward, metrics = domain.step(
            sub, state, jnp.asarray(actions.numpy().reshape(N, -1), jnp.int32), config)
        got = td["next", "agents", "reward"]
        assert got.shape == (env.n_group, 1)
        np.testing.assert_allclose(got.numpy(), float(reward), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(td["next", "metrics", "imbalance"].item(),
                                   float(metrics["imbalance"]), rtol=1e-6)
        assert bool(td["next", "done"].item()) is (t == T - 1)
        assert not td["next", "terminated"].item()
        td = td["next"]


def test_rollout(batched: DomainEnv) -> None:
    rollout = batched.rollout(T + 2, break_when_any_done=False)
    assert rollout.batch_size == (2, T + 2)
    done = rollout["next", "done"][..., 0]
    assert done[:, T - 1].all() and not done[:, :T - 1].any()
    assert rollout["next", "agents", "reward"].shape == (2, T + 2, batched.n_group, 1)
    assert torch.isfinite(rollout["next", "state"]).all()


@pytest.mark.slow
def test_benchmarl_two_iterations(tmp_path, monkeypatch) -> None:
    pytest.importorskip("benchmarl")
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "torchrl_benchmarl.py"
    spec = importlib.util.spec_from_file_location("torchrl_benchmarl", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "torchrl_benchmarl", module)  # BenchMARL pickles the task
    spec.loader.exec_module(module)
    experiment = module.benchmarl_demo(n_agents=2, episode_steps=4, folder=str(tmp_path))
    assert experiment.n_iters_performed == 2
