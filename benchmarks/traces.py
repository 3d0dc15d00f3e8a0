"""The cost of trace-driven HeteroCloud scenarios against the synthetic tide.

    python benchmarks/traces.py                    # N = 50, 200 and 1000
    python benchmarks/traces.py --agents 200       # one N

For each N the compiled environment (`dgpg.bench.env_throughput`: a scan of random actions over
a batch of environments, best of a few calls) runs with the synthetic tide and with each trace
(`env.trace`), each in a fresh process; the table gives agent-steps per second and the trace's
ratio to the tide measured in the same run. Writes traces.md and traces.json next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import jax
from rich.progress import Progress

from dgpg import atomic
from dgpg.bench import in_fresh_process
from dgpg.domains.cloud.trace import TRACES

HERE = Path(__file__).resolve().parent
AGENTS = (50, 200, 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, action="append",
                        help="N (repeatable; default 50, 200 and 1000)")
    args = parser.parse_args(argv)
    agents = tuple(args.agents or AGENTS)
    workloads = ("none", *TRACES)
    records = []
    with Progress() as progress:
        bar = progress.add_task("environment", total=len(agents) * len(workloads))
        for n in agents:
            for trace in workloads:
                env = {} if trace == "none" else {"trace": trace}
                record = in_fresh_process("env", n_agents=n, env=env)
                records.append({"n_agents": n, "trace": trace, **record})
                progress.advance(bar)
    base = {r["n_agents"]: r["agent_steps_per_s"] for r in records if r["trace"] == "none"}
    for r in records:
        r["ratio_to_tide"] = r["agent_steps_per_s"] / base[r["n_agents"]]
    meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "backend": jax.default_backend(),
            "load_average": os.getloadavg()[0]}
    atomic.write_json(HERE / "traces.json", {"meta": meta, "records": records})
    lines = ["# Trace-driven scenarios against the synthetic tide", "",
             f"`python benchmarks/traces.py`, {meta['date']}, {meta['cpus']} CPU(s), "
             f"{meta['backend']}, load average {meta['load_average']:.1f} at the end. "
             "Agent-steps per second of the compiled environment (random actions, a batch of "
             "environments, best of 3 calls); the ratio is to the tide at the same N, "
             "measured in the same run (above 1: faster).", "",
             "| N | workload | agent-steps / s | ratio to the tide | compile (s) |",
             "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['n_agents']} | {r['trace']} | {r['agent_steps_per_s']:,.0f} | "
                     f"{r['ratio_to_tide']:.3f} | {r['compile_seconds']:.1f} |")
    atomic.write_text(HERE / "traces.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
