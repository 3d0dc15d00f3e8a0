"""Time HeteroCloud as a TorchRL environment, and write benchmarks/torchrl_env.md.

    python benchmarks/torchrl_env.py          # about a minute on 2 CPU cores

Needs torch and TorchRL (docs/guides/torch.md). Compares, at N dispatchers (J = 8 slots, so
8 N per-slot agents), with random actions and `step_and_maybe_reset` (resets included):

- the PettingZoo per-slot adapter alone (no torch; the floor of the wrapped route);
- that adapter inside TorchRL's `PettingZooWrapper` (the route `examples/` used before);
- `dgpg.torchrl.DomainEnv`, unbatched and with a batch of B environments.

Steps/s counts environment steps (a batch step of B environments is B steps), measured after a
warm-up of one episode and more (compilation excluded).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchrl

from dgpg import atomic

HERE = Path(__file__).resolve().parent


def timed_loop(env, steps: int, warmup: int) -> float:
    """Seconds for `steps` random steps of a TorchRL env, after `warmup` steps."""
    td = env.reset()
    for _ in range(warmup):
        _, td = env.step_and_maybe_reset(env.rand_action(td))
    t0 = time.perf_counter()
    for _ in range(steps):
        _, td = env.step_and_maybe_reset(env.rand_action(td))
    return time.perf_counter() - t0


def pettingzoo_alone(n: int, episode_steps: int, steps: int, warmup: int) -> float:
    """Seconds for `steps` random steps of the per-slot PettingZoo adapter."""
    from dgpg.pettingzoo import parallel_env

    env = parallel_env("cloud", n_agents=n, seed=0, decisions="per-slot",
                       episode_steps=episode_steps)
    rng = np.random.default_rng(0)
    K = env.config.n_candidates

    def run(count: int) -> None:
        for _ in range(count):
            if not env.agents:
                env.reset()
            env.step({a: int(x) for a, x in
                      zip(env.agents, rng.integers(0, K, len(env.agents)), strict=True)})

    env.reset()
    run(warmup)
    t0 = time.perf_counter()
    run(steps)
    return time.perf_counter() - t0


def wrapped(n: int, episode_steps: int):
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper

    from dgpg.pettingzoo import parallel_env

    env = parallel_env("cloud", n_agents=n, seed=0, decisions="per-slot",
                       episode_steps=episode_steps)
    return PettingZooWrapper(env=env, group_map=env.group_map, return_state=True,
                             categorical_actions=True, use_mask=False, seed=0)


def native(n: int, episode_steps: int, batch: int | None):
    from dgpg.torchrl import DomainEnv

    return DomainEnv("cloud", n_agents=n, episode_steps=episode_steps, seed=0,
                     batch_size=() if batch is None else [batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50, help="dispatchers N (default 50)")
    parser.add_argument("--episode-steps", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300, help="timed steps, native routes")
    parser.add_argument("--wrapped-steps", type=int, default=8,
                        help="timed steps of the PettingZooWrapper route (slow)")
    parser.add_argument("--batch", type=int, default=8, help="B of the batched native env")
    parser.add_argument("--out", type=Path, default=HERE / "torchrl_env.md")
    args = parser.parse_args()
    n, T = args.agents, args.episode_steps
    torch.set_num_threads(1)

    # (route, B, timed batch steps, seconds)
    rows: list[tuple[str, int, int, float]] = []

    def add(route: str, b: int, steps: int, seconds: Callable[[], float]) -> None:
        s = seconds()
        rows.append((route, b, steps, s))
        print(f"{route:<48} B={b:<2} {steps * b / s:10.1f} steps/s", flush=True)

    add("PettingZoo per-slot adapter alone (no torch)", 1, args.steps,
        lambda: pettingzoo_alone(n, T, args.steps, T + 10))
    add("TorchRL `PettingZooWrapper` of that adapter", 1, args.wrapped_steps,
        lambda: timed_loop(wrapped(n, T), args.wrapped_steps, 2))
    add("`dgpg.torchrl.DomainEnv`", 1, args.steps,
        lambda: timed_loop(native(n, T, None), args.steps, T + 10))
    add("`dgpg.torchrl.DomainEnv`, batched", args.batch, args.steps // args.batch * 2,
        lambda: timed_loop(native(n, T, args.batch), args.steps // args.batch * 2, T + 10))

    base = rows[1][2] * rows[1][1] / rows[1][3]
    lines = [
        f"# HeteroCloud as a TorchRL environment ({datetime.date.today().isoformat()})",
        "",
        f"`python benchmarks/torchrl_env.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, "
        f"torchrl {torchrl.__version__}; N = {n} dispatchers, J = 8 slots, so {n * 8} per-slot "
        f"agents; episodes of {T} steps, random actions, `step_and_maybe_reset` (resets "
        "included), after a warm-up (compilation excluded). A batch step of B environments "
        "counts B steps.",
        "",
        "| route | B | timed steps | steps/s | vs `PettingZooWrapper` |",
        "|---|---|---|---|---|",
    ]
    for route, b, steps, s in rows:
        rate = steps * b / s
        lines.append(f"| {route} | {b} | {steps * b} | {rate:.1f} | {rate / base:.0f}x |")
    text = "\n".join(lines) + "\n"
    atomic.write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
