"""Time the command line as a user meets it, and write benchmarks/cli.md (and .json).

    python benchmarks/cli.py                     # a few minutes on 2 CPU cores
    python benchmarks/cli.py --baseline-rev REV  # also the same commands at git revision REV

Each command runs as a fresh `dgpg` process (wall time, start-up included), `--repeats` times:
with an empty JAX compilation cache ("cold": a first run on a fresh machine) and again with the
cache that run filled ("warm": the second run of the same shapes). With --baseline-rev the
commands also run on a checkout of REV (a temporary git worktree, cold cache), so the ratios
compare like with like on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dgpg import atomic

HERE = Path(__file__).resolve().parent
COMMANDS = {
    "default job (README)": ["evaluate", "--policy", "all", "--agents", "10", "--scenarios",
                             "10"],
    "train N=10, 3 episodes": ["train", "--agents", "10", "--episodes", "3", "--out", "{tmp}/run"],
    "bad option": ["train", "--algo", "nope"],
}


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """(wall seconds, exit status) of `python -m dgpg.cli ARGV` in a fresh process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dgpg.cli", *argv], capture_output=True,
                          env=env, cwd=cwd, timeout=1800)
    return time.perf_counter() - t0, done.returncode


def measure(name: str, argv: list[str], repeats: int, pythonpath: str | None,
            warm: bool) -> dict:
    cold_times, warm_times, codes = [], [], set()
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, DGPG_JAX_CACHE=str(Path(tmp) / "cache"))
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            args = [a.replace("{tmp}", tmp) for a in argv]
            seconds, code = timed(args, env, Path(tmp))
            cold_times.append(seconds)
            codes.add(code)
            if warm:  # the same command again, into a new run folder
                args = [a.replace("{tmp}", tmp).replace("/run", "/run2") for a in argv]
                seconds, code = timed(args, env, Path(tmp))
                warm_times.append(seconds)
                codes.add(code)
    return {"command": name, "argv": argv, "exit_codes": sorted(codes),
            "cold_seconds": cold_times, "warm_seconds": warm_times}


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}" if xs else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-rev", help="git revision to compare with (cold cache)")
    parser.add_argument("--out", type=Path, default=HERE / "cli.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    records = [measure(name, cmd, args.repeats, None, warm=name != "bad option")
               for name, cmd in COMMANDS.items()]
    if failed := [r["command"] for r in records if r["exit_codes"] != [2 if r["command"]
                                                                        == "bad option" else 0]]:
        sys.exit(f"unexpected exit status of: {', '.join(failed)}")
    baseline = {}
    if args.baseline_rev:
        repo = HERE.parent
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-f",
                            str(tree), args.baseline_rev], check=True, capture_output=True)
            try:
                for name, cmd in COMMANDS.items():
                    baseline[name] = measure(name, cmd, args.repeats, str(tree), warm=False)
            finally:
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force",
                                str(tree)], capture_output=True)
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, "
               f"Python {platform.python_version()}")
    command = "python benchmarks/cli.py" + (f" --baseline-rev {args.baseline_rev}"
                                            if args.baseline_rev else "")
    lines = [f"# Command-line timings ({datetime.date.today().isoformat()})", "",
             f"`{command}` on {machine}; wall time of a fresh `dgpg` process, median of "
             f"{args.repeats}.",
             "", "| command | cold cache (s) | warm cache (s) | cold / warm |"
             + (f" {args.baseline_rev} cold (s) | before / now (cold) |" if baseline else ""),
             "|---|---|---|---|" + ("---|---|" if baseline else "")]
    for r in records:
        cold, warm = r["cold_seconds"], r["warm_seconds"]
        ratio = f"{statistics.median(cold) / statistics.median(warm):.1f}" if warm else "-"
        row = f"| {r['command']} | {_median(cold)} | {_median(warm)} | {ratio} |"
        if baseline:
            before = baseline[r["command"]]["cold_seconds"]
            row += (f" {_median(before)} | "
                    f"{statistics.median(before) / statistics.median(cold):.1f} |")
        lines.append(row)
    atomic.write_text(args.out, "\n".join(lines) + "\n")
    atomic.write_json(args.out.with_suffix(".json"), {"machine": machine, "records": records,
                                                      "baseline": baseline,
                                                      "baseline_rev": args.baseline_rev})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
