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
# (N, episodes of the budget, episodes measured): N = 1500 is projected from 4 episodes
TRAIN_RUNS = ((20, 10, 10), (200, 10, 10), (1500, 20, 4))
QUICK_ENV_AGENTS = (10, 100, 1000)
QUICK_TRAIN_RUNS = ((20, 3, 3),)

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
        if r["projected"]:
            wall += f" (projected from {r['measured_episodes']} episodes)"
        lines.append(
            f"| {r['n_agents']} | {r['episodes']} | {wall} | "
            f"{r['compile_seconds']:.1f} | {r['first_episode_seconds']:.1f} | "
            f"{r['seconds_per_episode']:.2f} | {r['recompiles_after_first_episode']} | "
            f"{r['peak_rss_mb']:.0f} | {r['load_average']:.1f} |")
    return lines


def write_results(args, env_records: list[dict], baseline: dict,
                  train_records: list[dict]) -> str:
    """Write results.md and results.json from what is measured so far; returns the text."""
    big = [r for r in env_records if r["n_agents"] >= 100]
    exponent = (fit_exponent([r["n_agents"] for r in big],
                             [r["seconds"] / (r["steps"] * r["batch"]) for r in big])
                if len(big) >= 2 else float("nan"))
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "") + (
        f" --baseline-rev {args.baseline_rev}" if args.baseline_rev else "") + (
        " --skip-train" if args.skip_train else "")
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
    if train_records:
        lines += ["## Training (DG-PG, one seed)", "",
                  "Wall time of `dgpg train` up to the last checkpoint, including compilation; "
                  "the final test evaluation is not included. A projected time is the measured "
                  "episodes plus the remaining ones at the measured time per later episode.", "",
                  *train_table(train_records), ""]
    atomic.write_text(args.out, "\n".join(lines))
    atomic.write_json(args.out.with_suffix(".json"), {
        "command": command, "env": env_records, "baseline": baseline,
        "train": train_records, "env_exponent": exponent})
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--baseline-rev", help="git revision to compare the environment with")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--skip-train", action="store_true", help="environment only")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.exit(2, f"run.py: error: folder {args.out.parent} does not exist\n")

    env_agents = QUICK_ENV_AGENTS if args.quick else ENV_AGENTS
    train_runs = () if args.skip_train else (QUICK_TRAIN_RUNS if args.quick else TRAIN_RUNS)
    env_records, train_records, baseline = [], [], {}
    with Progress() as progress:
        task = progress.add_task("benchmarks", total=len(env_agents) + len(train_runs)
                                 + (len(env_agents) if args.baseline_rev else 0))
        for n in env_agents:
            progress.update(task, description=f"environment N={n}")
            env_records.append(in_fresh_process("env", n_agents=n))
            progress.advance(task)
            write_results(args, env_records, baseline, train_records)  # partial, in case
        if args.baseline_rev:
            progress.update(task, description=f"environment at {args.baseline_rev}")
            baseline = baseline_env(args.baseline_rev, env_agents)
            progress.advance(task, len(env_agents))
        for n, episodes, measured in train_runs:
            progress.update(task, description=f"train N={n}, {measured} episodes")
            train_records.append(in_fresh_process("train", n_agents=n, episodes=episodes,
                                                  measured_episodes=measured))
            progress.advance(task)
            write_results(args, env_records, baseline, train_records)  # partial, in case

    print(write_results(args, env_records, baseline, train_records))


if __name__ == "__main__":
    main()
