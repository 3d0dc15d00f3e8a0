"""The cost of a run's test evaluation as a ratio to one training episode (HeteroCloud, DG-PG).

    python benchmarks/test_evaluation.py                  # N = 200, 1500 and 10000
    python benchmarks/test_evaluation.py --agents 200     # one N

Each N runs `dgpg.bench.test_evaluation_cost` in a fresh process: one training episode (roll-out,
update and the 10 validation roll-outs), the greedy policy on the 40 test scenarios, the
sampled policy on 10 of them and on all 40 (the earlier protocol), and the reference heuristic
on the 50 validation and test scenarios, once computed and once read from the reference cache
(`DGPG_REFERENCE_CACHE`). Writes test_evaluation.md and
test_evaluation.json next to this file, after every N; rows of other N already there are kept,
each with the date and machine it was measured on, so the slow N = 10,000 can be measured on its
own.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import jax
from rich.progress import Progress

from dgpg import atomic
from dgpg.bench import in_fresh_process

HERE = Path(__file__).resolve().parent


def table(records: list[dict]) -> list[str]:
    lines = ["| N | measured on | training episode (s) | greedy, 40 test (s) | "
             "sampled, 40 test (s) | sampled, 10 test (s) | reference, computed (s) | "
             "reference, cached (s) | "
             "test / episode: before | with the reference cached | and the sampled policy "
             "on 10 (now) | "
             "peak RSS (MB) | load average |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(
            f"| {r['n_agents']} | {r.get('date', '')}, {r.get('machine', '')} | "
            f"{r['episode_seconds']:.2f} | "
            f"{r['greedy_test_seconds']:.2f} | "
            f"{r['sampled_all_test_seconds']:.2f} | {r['sampled_test_seconds']:.2f} | "
            f"{r['reference_cold_seconds']:.2f} | {r['reference_cached_seconds']:.3f} | "
            f"{r['ratio_before']:.1f} | {r['ratio_cached']:.1f} | **{r['ratio_after']:.1f}** | "
            f"{r['peak_rss_mb']:.0f} | {r['load_average']:.1f} |")
    return lines


def earlier_records(path: Path, replaced: list[int]) -> list[dict]:
    """The rows of `path` (test_evaluation.json) for N not in `replaced`; none if it is missing
    or unreadable."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict) and r.get("n_agents") not in replaced]


def machine() -> str:
    """This machine as a row of the table names it: device, CPU cores, Python and JAX."""
    device = jax.devices()[0]
    return (f"{device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, JAX {jax.__version__}")


def header() -> list[str]:
    """The Markdown file's title and the paragraph that says how its rows were measured."""
    return [
        "# Test evaluation against a training episode",
        "",
        "Produced by `python benchmarks/test_evaluation.py --agents N ...`, one row per N, each "
        "measured on the date and machine given. DG-PG, one seed, HeteroCloud "
        "defaults. A training episode is the roll-out and update in one compiled call plus the "
        "10 validation roll-outs. The test evaluation is what `dgpg train` does after the last "
        "episode: the greedy policy on the 40 test scenarios (compiled batches of 10, the "
        "validation's program), the sampled policy on the first 10 of them, and the reference "
        "heuristic (best-fit-central) on the 50 validation and test scenarios, computed by the "
        "first run of a configuration and read from the reference cache by every later one. "
        "*Before* is the earlier protocol: the sampled policy on all 40 and the reference "
        "computed by every run. Best of one call after the compiling one; the computed "
        "reference includes its compilation.",
        "",
    ]


def write(records: list[dict]) -> None:
    """test_evaluation.md and test_evaluation.json from `records` (one per N)."""
    atomic.write_text(HERE / "test_evaluation.md", "\n".join(header() + table(records)) + "\n")
    atomic.write_json(HERE / "test_evaluation.json", records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[200, 1500, 10000],
                        help="N to measure (default: 200 1500 10000)")
    args = parser.parse_args()
    if any(n < 1 or n > 16383 for n in args.agents):
        parser.error("--agents must be between 1 and 16383")
    records = earlier_records(HERE / "test_evaluation.json", args.agents)
    with Progress() as progress:
        task = progress.add_task("test evaluation cost", total=len(args.agents))
        for n in args.agents:
            progress.update(task, description=f"N = {n}")
            record = in_fresh_process("test", n_agents=n)
            records = sorted([*records, {**record, "date": str(datetime.date.today()),
                                          "machine": machine()}],
                             key=lambda r: r["n_agents"])
            write(records)
            progress.advance(task)
    print((HERE / "test_evaluation.md").read_text())


if __name__ == "__main__":
    main()
