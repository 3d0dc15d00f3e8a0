"""HeteroCloud in TorchRL and BenchMARL, through the native environment `dgpg.torchrl.DomainEnv`.

Needs, besides this project: torch, TorchRL and BenchMARL (docs/guides/torch.md says how to
install a CPU-only torch). Neither is a dependency of `dgpg`.

    python examples/torchrl_benchmarl.py              # TorchRL: specs, check, rollout, collector
    python examples/torchrl_benchmarl.py --benchmarl  # then a two-iteration BenchMARL MAPPO run

Tested with torch 2.13.0 (CPU), tensordict 0.11.0, torchrl 0.11.1 and benchmarl 1.5.2, the
versions that docs/guides/torch.md installs (its install lines keep a CPU-only torch);
`tests/test_torchrl_env.py` runs the BenchMARL part (`pytest -m slow tests/test_torchrl_env.py`).

The environment: every (dispatcher i, job slot j) pair is an agent with a `Categorical(K)`
action, all N * J agents in one group `"agents"` (one policy with shared parameters serves them
all); each observes its dispatcher's observation followed by the one-hot of its slot, and all get
the team reward. `DomainEnv(..., batch_size=[B])` steps B environments at once (one `jax.vmap`ed
step), which is how BenchMARL's vectorised collection uses it below.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.environments.common import TaskClass
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.envs.utils import check_env_specs

from dgpg.torchrl import GROUP, DomainEnv


def torchrl_demo(n_agents: int, episode_steps: int, batch: int = 4) -> None:
    """Specs' shapes, `check_env_specs`, a random rollout and one batch of `Collector`."""
    env = DomainEnv("cloud", n_agents=n_agents, episode_steps=episode_steps, seed=0,
                    batch_size=[batch])
    print(f"DomainEnv cloud: N={n_agents} dispatchers, {env.n_group} per-slot agents, "
          f"K={env.n_candidates} candidates, batch {list(env.batch_size)}")
    print("  observation", tuple(env.observation_spec[GROUP, "observation"].shape),
          "action", tuple(env.full_action_spec[GROUP, "action"].shape),
          "reward", tuple(env.full_reward_spec[GROUP, "reward"].shape),
          "state", tuple(env.observation_spec["state"].shape))
    check_env_specs(env)
    print("  check_env_specs: passed")
    rollout = env.rollout(episode_steps)  # random actions, one episode
    team = rollout["next", GROUP, "reward"][..., 0, 0]  # (B, T): the team reward
    print(f"  random rollout {tuple(rollout.batch_size)}: team return per env "
          f"{[round(x, 3) for x in team.sum(-1).tolist()]}")
    collector = Collector(env, policy=None, frames_per_batch=batch * episode_steps,
                          total_frames=batch * episode_steps)
    for data in collector:
        print(f"  Collector batch {tuple(data.batch_size)}: mean team reward "
              f"{data['next', GROUP, 'reward'].mean().item():.4f}")
    collector.shutdown()


class HeteroCloudTask(TaskClass):
    """A BenchMARL task on `DomainEnv("cloud")`; `config` holds its keyword arguments other than
    `batch_size`, `seed` and `device` (`n_agents`, `episode_steps` and any `EnvConfig` field).
    Discrete actions only; a global state for centralised critics."""

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: int | None, device: str,
    ) -> Callable[[], EnvBase]:
        config = dict(self.config)
        return lambda: DomainEnv("cloud", batch_size=[num_envs], seed=seed, device=device,
                                 **config)

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def has_render(self, env: EnvBase) -> bool:
        return False

    def max_steps(self, env: EnvBase) -> int:
        return int(self.config["episode_steps"])

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return env.group_map

    def observation_spec(self, env: EnvBase) -> Composite:
        spec = env.full_observation_spec_unbatched.clone()
        del spec["state"], spec["metrics"]
        return spec

    def info_spec(self, env: EnvBase) -> Composite | None:
        return None  # the team metrics are logged by `log_info`

    def state_spec(self, env: EnvBase) -> Composite | None:
        return Composite({"state": env.full_observation_spec_unbatched["state"].clone()})

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec_unbatched

    def action_mask_spec(self, env: EnvBase) -> Composite | None:
        return None  # every candidate is always allowed

    @staticmethod
    def env_name() -> str:
        return "heterocloud"

    @staticmethod
    def log_info(batch: TensorDictBase) -> dict[str, float]:
        """Means over the collected batch of the step metrics."""
        metrics = batch.get(("next", "metrics"), None)
        if metrics is None:
            return {}
        return {f"collection/heterocloud/{name}": value.float().mean().item()
                for name, value in metrics.items()}


def benchmarl_demo(n_agents: int, episode_steps: int, folder: str | None = None) -> Any:
    """Two MAPPO iterations on CPU, without loggers or evaluation (a smoke run, not training);
    returns the `Experiment`."""
    task = HeteroCloudTask(
        name=f"heterocloud_n{n_agents}",
        config={"n_agents": n_agents, "episode_steps": episode_steps},
    )
    config = ExperimentConfig.get_from_yaml()
    config.sampling_device = config.train_device = config.buffer_device = "cpu"
    config.max_n_iters = 2
    config.max_n_frames = None  # the iterations alone bound the run
    config.on_policy_n_envs_per_worker = 2  # the batch size of the DomainEnv
    config.on_policy_collected_frames_per_batch = 2 * episode_steps  # env steps per iteration
    config.on_policy_minibatch_size = episode_steps
    config.on_policy_n_minibatch_iters = 2
    config.evaluation = False
    config.evaluation_episodes = 1
    config.render = False
    config.loggers = []
    config.create_json = False
    config.checkpoint_at_end = False
    config.save_folder = folder or tempfile.mkdtemp(prefix="heterocloud_benchmarl_")

    experiment = Experiment(
        task=task,
        algorithm_config=MappoConfig.get_from_yaml(),
        model_config=MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=config,
    )
    experiment.run()
    print(f"BenchMARL MAPPO: {experiment.n_iters_performed} iterations, "
          f"{experiment.total_frames} frames; folder {experiment.folder_name}")
    return experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=4, help="dispatchers N (default 4)")
    parser.add_argument("--episode-steps", type=int, default=50, help="steps per episode")
    parser.add_argument("--benchmarl", action="store_true", help="also run BenchMARL MAPPO")
    args = parser.parse_args()
    torch.manual_seed(0)
    torchrl_demo(args.n_agents, args.episode_steps)
    if args.benchmarl:
        benchmarl_demo(args.n_agents, args.episode_steps)


if __name__ == "__main__":
    main()
