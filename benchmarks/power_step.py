"""PowerGrid's step with the DC-OPF clearing against the penalty market's.

    python benchmarks/power_step.py                 # every setting below
    python benchmarks/power_step.py --only case118  # the settings whose case starts so

Each setting runs the compiled environment (`dgpg.bench.env_throughput`: a scan of random
actions over one environment, best of 3 calls) in a fresh process and reports the seconds per
step and the ratio to the baseline measured in the same run: case118 at N = 100 with the
penalty market (economic dispatch and a line penalty, no OPF). The SimBench grids need the
`power` extra. Writes power_step.md and power_step.json next to this file.
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

HERE = Path(__file__).resolve().parent
STEPS = 10
SETTINGS = (  # (case, N, market); the first is the baseline
    ("case118", 100, "penalty"),
    ("case118", 100, "opf"),
    ("case300", 1000, "opf"),
    ("1-HV-mixed--0-sw", 200, "opf"),
    ("1-EHV-mixed--0-sw", 1000, "opf"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the settings whose case starts so "
                                                   "(the baseline always runs)")
    args = parser.parse_args(argv)
    chosen = [SETTINGS[0], *[s for s in SETTINGS[1:] if s[0].startswith(args.only)]]
    records = []
    with Progress() as progress:
        bar = progress.add_task("environment", total=len(chosen))
        for case, n, market in chosen:
            record = in_fresh_process("env", n_agents=n, batch=1, steps=STEPS, domain="power",
                                      env={"case": case, "market": market})
            records.append({"case": case, "market": market, **record,
                            "step_seconds": record["seconds"] / STEPS})
            progress.advance(bar)
    base = records[0]["step_seconds"]
    for r in records:
        r["ratio_to_baseline"] = r["step_seconds"] / base
    meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "backend": jax.default_backend(),
            "load_average": os.getloadavg()[0]}
    atomic.write_json(HERE / "power_step.json", {"meta": meta, "records": records})
    lines = ["# PowerGrid's step: DC-OPF clearing against the penalty market", "",
             f"`python benchmarks/power_step.py`, {meta['date']}, {meta['cpus']} CPU(s), "
             f"{meta['backend']}, load average {meta['load_average']:.1f} at the end. Seconds "
             f"per step of the compiled environment (one environment, random actions, {STEPS} "
             "steps, best of 3 calls; an opf step clears two OPFs: the placed load and the "
             "next period's posted prices); the ratio is to case118 at N = 100 with the "
             "penalty market, measured in the same run.", "",
             "| case | N | market | ms / step | ratio to the baseline | compile (s) |",
             "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['case']} | {r['n_agents']} | {r['market']} | "
                     f"{1e3 * r['step_seconds']:,.2f} | {r['ratio_to_baseline']:.1f} | "
                     f"{r['compile_seconds']:.1f} |")
    atomic.write_text(HERE / "power_step.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
