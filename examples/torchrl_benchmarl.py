"""HeteroCloud in TorchRL and BenchMARL, through the per-slot PettingZoo adapter.

Needs, besides this project: `pip install torchrl benchmarl` (they bring `torch` and
`tensordict`). Neither is a dependency of `dgpg`, and this script is not part of the test suite.

    python examples/torchrl_benchmarl.py              # TorchRL: wrap, check_env_specs, rollout
    python examples/torchrl_benchmarl.py --benchmarl  # then a two-iteration BenchMARL MAPPO run

What is tested and what is not: the adapter side (the per-slot agents, their `Discrete(K)`
actions, reset infos with the keys of the step infos, `parallel_api_test`) is covered by
`tests/test_pettingzoo.py`. This script itself has not been run in the project's environment
(no torch there): it follows the documented APIs of TorchRL's `PettingZooWrapper` and
`check_env_specs` (torchrl >= 0.6, which names its specs `Composite`) and of BenchMARL's
`TaskClass` and `Experiment` (benchmarl >= 1.3, where an `Experiment` takes a `TaskClass`
instance directly). Treat the BenchMARL part in particular as a starting point to check.

Why the per-slot form: `decisions="per-slot"` makes every (dispatcher i, job slot j) pair an
agent `dispatcher_{i}_slot_{j}` with a `Discrete(K)` action, which TorchRL turns into a
`Categorical` spec that BenchMARL's discrete-action algorithms accept; the default
per-dispatcher form has `MultiDiscrete([K] * J)` actions. With N dispatchers and J slots there
are N * J agents, each observing a float32 vector of K*9 + J*7 + 4 values (its dispatcher's
observation, then the one-hot of its slot).

Why the group map: TorchRL's default grouping cuts agent names at the last `_`, which would
make N groups `dispatcher_{i}_slot`; `env.group_map` (`{"agents": env.possible_agents}`) stacks
all N * J agents in one group, so one policy (shared parameters) serves them all.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Callable
from typing import Any

from benchmarl.algorithms import MappoConfig
from benchmarl.environments.common import TaskClass
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig
from tensordict import TensorDictBase
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.envs.utils import check_env_specs

from dgpg.domains.cloud.pettingzoo import TEAM_METRICS, parallel_env


def make_torchrl_env(
    n_agents: int = 4,
    episode_steps: int = 50,
    seed: int | None = 0,
    device: str = "cpu",
    **config_kwargs: Any,
) -> PettingZooWrapper:
    """HeteroCloud with per-slot agents as a TorchRL env with one agent group `"agents"`.

    Tensors per step (A = n_agents * J agents, D = K*9 + J*7 + 4): `("agents", "observation")`
    float32 (A, D); `("agents", "action")` int64 (A,), a candidate index in [0, K) (ignored for
    empty job slots); `("agents", "reward")` float32 (A, 1), the team reward for every agent;
    `("agents", "info", name)` float32 (A,) for each step metric; `"state"` float32
    (M*9 + 4,), the global state for a centralised critic. `seed` must be in [0, 2**32).
    """
    env = parallel_env(
        n_agents=n_agents,
        seed=seed,
        decisions="per-slot",
        episode_steps=episode_steps,
        **config_kwargs,
    )
    return PettingZooWrapper(
        env=env,
        group_map=env.group_map,  # one group; the default would split the agents by dispatcher
        return_state=True,
        categorical_actions=True,
        use_mask=False,  # every agent lives for the whole episode
        seed=seed,
        device=device,
    )


def torchrl_demo(n_agents: int, episode_steps: int) -> None:
    env = make_torchrl_env(n_agents=n_agents, episode_steps=episode_steps, seed=0)
    print("group map:", {group: len(agents) for group, agents in env.group_map.items()})
    print(env.full_observation_spec)
    print(env.full_action_spec)
    check_env_specs(env)  # a short random rollout checked against the specs
    rollout = env.rollout(max_steps=5)  # random actions
    print(
        "rollout:", rollout.batch_size, "reward", tuple(rollout["next", "agents", "reward"].shape)
    )
    print("team reward per step:", rollout["next", "agents", "reward"][:, 0, 0].tolist())
    env.close()


class HeteroCloudTask(TaskClass):
    """A BenchMARL task for the per-slot HeteroCloud env; `config` holds the keyword arguments
    of `make_torchrl_env` other than `seed` and `device` (`n_agents`, `episode_steps`, and any
    `EnvConfig` field). Discrete actions only; a global state for centralised critics."""

    def get_env_fun(
        self,
        num_envs: int,
        continuous_actions: bool,
        seed: int | None,
        device: str,
    ) -> Callable[[], EnvBase]:
        # The env is not vectorised: BenchMARL calls this function once per copy (in a SerialEnv
        # by default) and ignores `num_envs` here. Each copy gets its own seed, seed + 0, 1, ...,
        # so that the copies do not replay the same episodes. With
        # `ExperimentConfig.parallel_collection = True` the copies are built in worker processes,
        # where this counter restarts: untested, check the seeds there.
        config = dict(self.config)
        copies = itertools.count()

        def make_env() -> EnvBase:
            copy_seed = None if seed is None else (seed + next(copies)) % 2**32
            return make_torchrl_env(seed=copy_seed, device=device, **config)

        return make_env

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

    def _group_entries(self, env: EnvBase, keep: str) -> Composite:
        """The observation spec reduced to each group's `keep` entry (no global state)."""
        spec = env.observation_spec.clone()
        for group in self.group_map(env):
            for key in list(spec[group].keys()):
                if key != keep:
                    del spec[group][key]
        if "state" in spec.keys():
            del spec["state"]
        return spec

    def observation_spec(self, env: EnvBase) -> Composite:
        return self._group_entries(env, "observation")

    def info_spec(self, env: EnvBase) -> Composite | None:
        return self._group_entries(env, "info")

    def state_spec(self, env: EnvBase) -> Composite | None:
        return Composite({"state": env.observation_spec["state"].clone()})

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec

    def action_mask_spec(self, env: EnvBase) -> Composite | None:
        return None  # every candidate is always allowed

    @staticmethod
    def env_name() -> str:
        return "heterocloud"

    @staticmethod
    def log_info(batch: TensorDictBase) -> dict[str, float]:
        """Means over the collected batch of the team metrics (equal for all agents)."""
        logged = {}
        for name in TEAM_METRICS:
            values = batch.get(("next", "agents", "info", name), None)
            if values is not None:
                logged[f"collection/heterocloud/{name}"] = values.float().mean().item()
        return logged


def benchmarl_demo(n_agents: int, episode_steps: int) -> None:
    """Two MAPPO iterations on CPU, without loggers or evaluation (a smoke run, not training)."""
    task = HeteroCloudTask(
        name=f"heterocloud_n{n_agents}",
        config={"n_agents": n_agents, "episode_steps": episode_steps},
    )
    config = ExperimentConfig.get_from_yaml()
    config.sampling_device = config.train_device = config.buffer_device = "cpu"
    config.max_n_iters = 2  # the smaller of this and max_n_frames applies
    config.on_policy_n_envs_per_worker = 2
    config.on_policy_collected_frames_per_batch = 2 * episode_steps  # env steps per iteration
    config.on_policy_minibatch_size = episode_steps
    config.on_policy_n_minibatch_iters = 2
    config.evaluation = False
    config.render = False
    config.loggers = []
    config.create_json = False
    config.checkpoint_at_end = False
    config.save_folder = tempfile.mkdtemp(prefix="heterocloud_benchmarl_")

    experiment = Experiment(
        task=task,
        algorithm_config=MappoConfig.get_from_yaml(),
        model_config=MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=config,
    )
    experiment.run()
    print("BenchMARL run finished; its folder:", experiment.folder_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=4, help="dispatchers N (default 4)")
    parser.add_argument("--episode-steps", type=int, default=50, help="steps per episode")
    parser.add_argument("--benchmarl", action="store_true", help="also run BenchMARL MAPPO")
    args = parser.parse_args()
    torchrl_demo(args.n_agents, args.episode_steps)
    if args.benchmarl:
        benchmarl_demo(args.n_agents, args.episode_steps)


if __name__ == "__main__":
    main()
