"""Run dgpg's benchmark suite and write benchmarks/results.md.

    python benchmarks/run.py                      # everything (tens of minutes on 2 CPU cores)
    python benchmarks/run.py --quick              # small sizes only, a few minutes
    python benchmarks/run.py --baseline-rev REV   # also measure the environment at commit REV

Every measurement runs in a fresh process (dgpg.bench.in_fresh_process), so that its peak
resident memory and its compilations are its own. The environment is measured with
`dgpg.bench.env_throughput` (a compiled scan over a batch of environments, best of a few
calls); training with `dgpg.bench.train_timing` (`dgpg train` of one seed, compile time taken
from JAX's monitoring events). With --baseline-rev the same environment benchmark runs on a
checkout of REV (a temporary git worktree) in the same run, so that the reported ratios
compare like with like. Results are written atomically as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
from rich.progress import Progress

from dgpg import atomic
from dgpg.bench import fit_exponent, in_fresh_process

HERE = Path(__file__).resolve().parent
ENV_AGENTS = (10, 100, 1000, 10000)
# (N, episodes of the budget, episodes measured)
TRAIN_RUNS = ((20, 10, 10), (200, 10, 10), (1500, 20, 20))
SPLIT_AGENTS = (20, 200, 1500)
QUICK_ENV_AGENTS = (10, 100, 1000)
QUICK_TRAIN_RUNS = ((20, 3, 3),)
QUICK_SPLIT_AGENTS = (20,)

BASELINE_SNIPPET = (
    "import json, sys; from dgpg.bench import env_throughput; "
    "print(json.dumps(env_throughput(int(sys.argv[1]))))"
)


def baseline_env(rev: str, agents: tuple[int, ...]) -> dict[int, dict]:
    """Environment throughput of the code at git revision `rev`, one fresh process per N."""
    repo = HERE.parent
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-f", str(tree),
                        rev], check=True, capture_output=True)
        try:
            env = dict(os.environ, PYTHONPATH=str(tree))
            for n in agents:
                done = subprocess.run([sys.executable, "-c", BASELINE_SNIPPET, str(n)],
                                      env=env, cwd=tmp, check=True, capture_output=True,
                                      text=True)
                records[n] = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    return records


def env_table(records: list[dict], baseline: dict[int, dict], rev: str | None) -> list[str]:
    head = ("| N | batch | agent-steps/s | step time per env (ms) | compile (s) | peak RSS (MB) |"
            " load average |")
    rule = "|---:|---:|---:|---:|---:|---:|---:|"
    if baseline:
        head += f" agent-steps/s at {rev} | speed-up |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in records:
        per_env_ms = 1000 * r["seconds"] / (r["steps"] * r["batch"])
        line = (f"| {r['n_agents']} | {r['batch']} | {r['agent_steps_per_s']:,.0f} | "
                f"{per_env_ms:.3f} | {r['compile_seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
                f"{r['load_average']:.1f} |")
        if baseline:
            b = baseline.get(r["n_agents"])
            line += (f" {b['agent_steps_per_s']:,.0f} | "
                     f"{r['agent_steps_per_s'] / b['agent_steps_per_s']:.1f}x |"
                     if b else " - | - |")
        lines.append(line)
    return lines


def train_table(records: list[dict]) -> list[str]:
    lines = ["| N | episodes | wall time (s) | of which compile (s) | first episode (s) | "
             "s per later episode | recompiles after episode 1 | peak RSS (MB) | "
             "load average |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        wall = f"{r['train_seconds']:.1f}"
        if r.get("compile_cache"):
            wall += " (warm compilation cache)"
        if r["projected"]:
            wall += f" (projected from {r['measured_episodes']} episodes)"
        lines.append(
            f"| {r['n_agents']} | {r['episodes']} | {wall} | "
            f"{r['compile_seconds']:.1f} | {r['first_episode_seconds']:.1f} | "
            f"{r['seconds_per_episode']:.2f} | {r['recompiles_after_first_episode']} | "
            f"{r['peak_rss_mb']:.0f} | {r['load_average']:.1f} |")
    return lines


def split_table(records: list[dict]) -> list[str]:
    lines = ["| N | roll-out (s) | update (s) | validation (s) | episode (s) | "
             "environment only (s) | episode / environment | compile (s) | peak RSS (MB) | "
             "episode, every slot (s) | speed-up | episode / environment, every slot | "
             "load average |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        d = r.get("dense")
        dense = (f" {d['episode_seconds']:.2f} | {d['episode_seconds'] / r['episode_seconds']:.1f}x"
                 f" | {d['ratio_to_env']:.1f} |" if d else " - | - | - |")
        lines.append(
            f"| {r['n_agents']} | {r['rollout_seconds']:.2f} | {r['update_seconds']:.2f} | "
            f"{r['validation_seconds']:.2f} | {r['episode_seconds']:.2f} | "
            f"{r['env_only_seconds']:.2f} | **{r['ratio_to_env']:.1f}** | "
            f"{r['compile_seconds']:.1f} | {r['peak_rss_mb']:.0f} |{dense} "
            f"{r['load_average']:.1f} |")
    return lines


def write_results(args, env_records: list[dict], baseline: dict,
                  train_records: list[dict], split_records: list[dict]) -> str:
    """Write results.md and results.json from what is measured so far; returns the text."""
    big = [r for r in env_records if r["n_agents"] >= 100]
    exponent = (fit_exponent([r["n_agents"] for r in big],
                             [r["seconds"] / (r["steps"] * r["batch"]) for r in big])
                if len(big) >= 2 else float("nan"))
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "") + (
        f" --baseline-rev {args.baseline_rev}" if args.baseline_rev else "") + (
        " --skip-train" if args.skip_train else "") + (
        " --skip-env" if args.skip_env else "") + (
        f" --train {args.train}" if args.train else "")
    device = jax.devices()[0]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` on {datetime.date.today().isoformat()}: "
        f"{device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, JAX {jax.__version__}. The load average (1 "
        "minute, at the end of each measurement) shows whether other work shared the CPUs: "
        f"above {os.cpu_count()}, timings are pessimistic.",
        "",
    ]
    if env_records:
        lines += [
            "## Environment throughput",
            "",
            "A compiled `lax.scan` over a batch of environments with random actions; "
            "agent-steps/s = batch x N x steps / seconds (best of 3 calls after compilation).",
            "",
            *env_table(env_records, baseline, args.baseline_rev),
            "",
            f"Exponent of the step time per environment against N, N = "
            f"{', '.join(str(r['n_agents']) for r in big)}: **{exponent:.2f}**.",
            "",
        ]
    if split_records:
        lines += ["## A training episode, part by part (DG-PG, one seed)", "",
                  "`dgpg.bench.episode_split`: each part compiled alone, best of 2 calls after "
                  "the compiling one. Episode = the training roll-out and update in one compiled "
                  "call (as `dgpg train` runs them) plus the 10 validation roll-outs; environment "
                  "only = the same 11 roll-outs with random actions. The target is an episode "
                  "at most 6 times the environment-only cost. Compile = the episode's and the "
                  "validator's compilation. \"every slot\" is the same episode with the actor "
                  "on all J job slots, as before compaction.", "",
                  *split_table(split_records), ""]
    if train_records:
        lines += ["## Training (DG-PG, one seed)", "",
                  "Wall time of `dgpg train` up to the last checkpoint, including compilation; "
                  "the final test evaluation is not included. A projected time is the measured "
                  "episodes plus the remaining ones at the measured time per later episode.", "",
                  *train_table(train_records), ""]
    atomic.write_text(args.out, "\n".join(lines))
    atomic.write_json(args.out.with_suffix(".json"), {
        "command": command, "env": env_records, "baseline": baseline,
        "train": train_records, "split": split_records, "env_exponent": exponent})
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--baseline-rev", help="git revision to compare the environment with")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--skip-train", action="store_true", help="environment only")
    parser.add_argument("--skip-env", action="store_true", help="training only")
    parser.add_argument("--train", help="training runs instead of the default ones: "
                        "comma-separated N:EPISODES (e.g. 10000:10); no episode split")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.exit(2, f"run.py: error: folder {args.out.parent} does not exist\n")
    custom = []
    for spec in (args.train or "").split(","):
        if spec.strip():
            try:
                n, episodes = (int(x) for x in spec.split(":"))
            except ValueError:
                parser.exit(2, f"run.py: error: --train takes N:EPISODES, got {spec!r}\n")
            if not (1 <= n <= 16383 and 1 <= episodes <= 10_000):
                parser.exit(2, f"run.py: error: --train {spec!r}: N in [1, 16383], "
                            "episodes in [1, 10000]\n")
            custom.append((n, episodes, episodes))

    env_agents = () if args.skip_env else (QUICK_ENV_AGENTS if args.quick else ENV_AGENTS)
    train_runs = () if args.skip_train else (QUICK_TRAIN_RUNS if args.quick else TRAIN_RUNS)
    split_agents = () if args.skip_train else (QUICK_SPLIT_AGENTS if args.quick
                                               else SPLIT_AGENTS)
    if custom:
        train_runs, split_agents = tuple(custom), ()
    env_records, train_records, split_records, baseline = [], [], [], {}
    records = (env_records, baseline, train_records, split_records)
    with Progress() as progress:
        task = progress.add_task("benchmarks", total=len(env_agents) + len(train_runs)
                                 + 2 * len(split_agents)
                                 + (0 if custom or args.skip_train else 1)
                                 + (len(env_agents) if args.baseline_rev else 0))
        for n in env_agents:
            progress.update(task, description=f"environment N={n}")
            env_records.append(in_fresh_process("env", n_agents=n))
            progress.advance(task)
            write_results(args, *records)  # partial, in case
        if args.baseline_rev:
            progress.update(task, description=f"environment at {args.baseline_rev}")
            baseline.update(baseline_env(args.baseline_rev, env_agents))
            progress.advance(task, len(env_agents))
        for n, episodes, measured in train_runs:
            progress.update(task, description=f"train N={n}, {measured} episodes")
            train_records.append(in_fresh_process("train", n_agents=n, episodes=episodes,
                                                  measured_episodes=measured))
            progress.advance(task)
            write_results(args, *records)  # partial, in case
        if not custom and not args.skip_train:
            # a warm persistent compilation cache: one run fills it, the next one is measured
            n, episodes, measured = train_runs[min(1, len(train_runs) - 1)]
            progress.update(task, description=f"train N={n} with a warm compilation cache")
            with tempfile.TemporaryDirectory() as cache:
                in_fresh_process("train", n_agents=n, episodes=episodes,
                                 measured_episodes=measured, compile_cache=cache)
                train_records.append(in_fresh_process(
                    "train", n_agents=n, episodes=episodes, measured_episodes=measured,
                    compile_cache=cache))
            progress.advance(task)
            write_results(args, *records)  # partial, in case
        for n in split_agents:
            progress.update(task, description=f"episode split N={n}")
            record = in_fresh_process("split", n_agents=n)
            progress.advance(task)
            progress.update(task, description=f"episode split N={n}, every slot")
            record["dense"] = in_fresh_process("split", n_agents=n, dense=True)
            split_records.append(record)
            progress.advance(task)
            write_results(args, *records)  # partial, in case

    print(write_results(args, *records))


if __name__ == "__main__":
    main()
