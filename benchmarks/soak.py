"""Soak benchmark: step the compiled HeteroCloud environment for a long time and watch memory.

    python benchmarks/soak.py [--steps 1000000] [--agents 100] [--chunk 10000]

One environment is stepped in chunks of `--chunk` steps, each chunk one call of a compiled
`lax.scan` with random actions; an episode ends every `episode_steps` steps and the next one
starts from a fresh `reset` inside the scan, so resets are soaked too. After every chunk the
process's resident memory (RSS, from /proc/self/statm; peak RSS from `resource` elsewhere) is
recorded, along with the chunk's job counts, which must balance
(arrived = admitted + rejected + shed) and stay finite. Writes benchmarks/soak.md (a table and
the slope of RSS over the second half of the run, where a leak would show), soak.csv (every
chunk) and soak.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dgpg import atomic
from dgpg.domains.cloud import env as cloud
from dgpg.domains.cloud.env import EnvConfig

HERE = Path(__file__).resolve().parent
COUNTS = ("arrived", "admitted", "rejected", "shed", "completed")
# Verdict: RSS is flat when its slope over the second half of the run is at most
# FLAT_MIB_PER_MILLION (about 5 bytes a step; a leak of one state array per chunk or per step is
# far above it), or when it rose by at most NOISE_MIB there (allocator noise, in short runs).
FLAT_MIB_PER_MILLION = 5.0
NOISE_MIB = 4.0


def rss_mib() -> float:
    """Current resident set size of this process, in MiB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # no /proc: fall back to the peak, which is all `resource` offers
        return peak_rss_mib()


def peak_rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def make_chunk(config: EnvConfig, chunk: int):
    """Compiled `(state, key) -> (state, totals)` running `chunk` steps with auto-reset."""

    def one(state, key):
        k_act, k_step, k_reset = jax.random.split(key, 3)
        actions = jax.random.randint(
            k_act, (config.n_agents, config.jobs_per_step), 0, config.n_candidates
        )
        state, reward, m = cloud.step(k_step, state, actions, config)
        state = jax.lax.cond(
            state.t >= config.episode_steps, lambda: cloud.reset(k_reset, config), lambda: state
        )
        out = {k: m[k].astype(jnp.int32) for k in COUNTS}
        out["nonfinite"] = (~jnp.isfinite(reward)).astype(jnp.int32)
        out["reward"] = reward
        return state, out

    def run(state, key):
        state, out = jax.lax.scan(one, state, jax.random.split(key, chunk))
        totals = {k: jnp.sum(v) for k, v in out.items() if k != "reward"}
        totals["mean_reward"] = jnp.mean(out["reward"])
        return state, totals

    return jax.jit(run, donate_argnums=0)


def slope_per_million(steps: np.ndarray, rss: np.ndarray) -> float:
    """Least-squares slope of RSS (MiB) against steps, per million steps."""
    if steps.size < 2:
        return float("nan")
    return float(np.polyfit(steps / 1e6, rss, 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for soak.md/csv/png")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.chunk < 1 or args.agents < 1:
        parser.error("--steps, --chunk and --agents must be >= 1")
    n_chunks = -(-args.steps // args.chunk)
    steps_done = n_chunks * args.chunk

    config = EnvConfig(n_agents=args.agents)
    run = make_chunk(config, args.chunk)
    key = jax.random.key(args.seed)
    key, k0 = jax.random.split(key)
    state = jax.jit(cloud.reset, static_argnums=1)(k0, config)

    rss0 = rss_mib()
    t_start = time.perf_counter()
    rows = []
    for i in range(n_chunks):
        key, k = jax.random.split(key)
        t0 = time.perf_counter()
        state, totals = run(state, k)
        totals = {name: v.item() for name, v in totals.items()}
        seconds = time.perf_counter() - t0
        rows.append({"steps": (i + 1) * args.chunk, "rss_mib": rss_mib(),
                     "peak_rss_mib": peak_rss_mib(), "seconds": seconds, **totals})
        balanced = totals["arrived"] == totals["admitted"] + totals["rejected"] + totals["shed"]
        if not balanced or totals["nonfinite"]:
            print(f"chunk {i + 1}: counts do not balance or reward not finite: {totals}",
                  file=sys.stderr)
        if (i + 1) % max(1, n_chunks // 20) == 0 or i + 1 == n_chunks:
            print(f"{(i + 1) * args.chunk:>10,} steps  rss {rows[-1]['rss_mib']:8.1f} MiB  "
                  f"{args.chunk / seconds:8.0f} steps/s", flush=True)
    wall = time.perf_counter() - t_start

    steps = np.array([r["steps"] for r in rows], dtype=np.float64)
    rss = np.array([r["rss_mib"] for r in rows])
    half = len(rows) // 2
    # the first chunk includes compilation; later chunks are steady-state throughput
    steady = [r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]]
    result = {
        "steps": steps_done,
        "agents": args.agents,
        "chunk": args.chunk,
        "wall_seconds": wall,
        "steps_per_s": args.chunk * len(steady) / sum(steady),
        "rss_start": rss0,
        "rss_after_first_chunk": rss[0],
        "rss_end": rss[-1],
        "rss_max": rss.max(),
        "slope_second_half": slope_per_million(steps[half:], rss[half:]),
        "rss_rise_second_half": rss[-1] - rss[half],
        "arrived": sum(r["arrived"] for r in rows),
        "unbalanced_chunks": sum(
            r["arrived"] != r["admitted"] + r["rejected"] + r["shed"] for r in rows),
        "nonfinite_rewards": sum(r["nonfinite"] for r in rows),
    }
    flat = (result["slope_second_half"] <= FLAT_MIB_PER_MILLION
            or result["rss_rise_second_half"] <= NOISE_MIB)
    result["verdict"] = "flat" if flat else "growing"
    write_outputs(args.out, rows, result)
    print(f"RSS slope over the second half: {result['slope_second_half']:+.3f} MiB per million "
          f"steps ({result['verdict']}); {result['steps_per_s']:,.0f} steps/s; wrote "
          f"{args.out}/soak.md")
    ok = result["unbalanced_chunks"] == 0 and result["nonfinite_rewards"] == 0
    return 0 if ok else 1


def write_outputs(out: Path, rows: list[dict], r: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    atomic.write_csv(out / "soak.csv", rows, columns)
    every = max(1, len(rows) // 10)
    shown = [row for i, row in enumerate(rows) if i % every == every - 1 or i == 0]
    if shown[-1] is not rows[-1]:
        shown.append(rows[-1])
    lines = [
        "# Soak: HeteroCloud for a long run",
        "",
        f"`python benchmarks/soak.py --steps {r['steps']} --agents {r['agents']} "
        f"--chunk {r['chunk']}`: one environment at N = {r['agents']} (M = {2 * r['agents']} "
        f"servers), random actions, a fresh episode every "
        f"{EnvConfig().episode_steps} steps, stepped in compiled chunks of {r['chunk']:,} "
        f"steps; {platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
        f"{jax.devices()[0].platform}.",
        "",
        "| steps | RSS (MiB) | peak RSS (MiB) | steps/s in the chunk |",
        "|---:|---:|---:|---:|",
    ]
    for row in shown:
        lines.append(f"| {row['steps']:,} | {row['rss_mib']:.1f} | {row['peak_rss_mib']:.1f} | "
                     f"{r['chunk'] / row['seconds']:,.0f} |")
    lines += [
        "",
        f"- RSS before the first chunk {r['rss_start']:.1f} MiB, after it (compiled) "
        f"{r['rss_after_first_chunk']:.1f} MiB, at the end {r['rss_end']:.1f} MiB, "
        f"highest {r['rss_max']:.1f} MiB.",
        f"- Slope of RSS over the second half of the run (least squares): "
        f"**{r['slope_second_half']:+.3f} MiB per million steps**; RSS rose "
        f"{r['rss_rise_second_half']:+.1f} MiB over the second half.",
        f"- Verdict: **{r['verdict']}** (flat: a slope of at most {FLAT_MIB_PER_MILLION:g} MiB "
        f"per million steps, about {FLAT_MIB_PER_MILLION * 2**20 / 1e6:.0f} bytes a step, or a "
        f"rise of at most {NOISE_MIB:g} MiB over the second half).",
        f"- Throughput after compilation: {r['steps_per_s']:,.0f} environment steps/s "
        f"({r['steps_per_s'] * r['agents']:,.0f} agent-steps/s); wall time "
        f"{r['wall_seconds']:,.0f} s.",
        f"- {r['arrived']:,} jobs arrived; chunks whose counts did not balance "
        f"(arrived = admitted + rejected + shed): {r['unbalanced_chunks']}; non-finite rewards: "
        f"{r['nonfinite_rewards']}.",
        "",
        "Every chunk is in `soak.csv`; `soak.png` plots RSS against steps.",
        "",
    ]
    atomic.write_text(out / "soak.md", "\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([row["steps"] / 1e6 for row in rows], [row["rss_mib"] for row in rows])
    ax.set_xlabel("environment steps (millions)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, 1.2 * max(row["rss_mib"] for row in rows))
    ax.set_title(f"HeteroCloud soak, N = {r['agents']}")
    atomic.save_figure(out / "soak.png", fig)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
