"""Stationary points under guidance, on a static routing game (docs/design.md, sections 4 and 7).

The game: N agents route divisible demands w_i over K shared servers with effective capacities
kappa_k and background loads L_k. Agent i's policy is a softmax over the K servers (logits
theta_i) and sends w_i pi_i(k) to server k, so the load is x = sum_i w_i pi_i. The team objective
is the negative water-filling potential,

    J(theta) = -sum_k (L_k + x_k)^2 / kappa_k / S            (S = J's magnitude at the start),

maximised exactly by the water-filling allocation x* of W = sum_i w_i. Every server is a
candidate of every agent, so the design's reference p*_i(k) = x*_k / W (x* split equally
between the agents that share a server) reproduces x*: it is an optimum of J. Agent i's guidance
loss is the model's G_i (dgpg.domains.cloud.fluid): the potential with the other agents at the
reference and agent i at its policy, divided by w_i times the water level.

Exact-gradient ascent (jax.grad, float64, the same step size and start) is run on J and on the
augmented objective F = (1 - alpha) J - alpha mean_i G_i (as in the DG-PG loss). Reported: both
final objectives against the optimum J*, the distance between the two final policies and from
each to p*, the largest load error, and the norms of the gradients of F and J at p* and at each
other's final point. Two cases: `symmetric` (equal demands, every agent starts from the same
logits) and `asymmetric` (demands U[0.5, 1.5], independent random starts). In the asymmetric
case J's optimal policies form a continuum (any split of x* between agents), and plain ascent
stops at a point of it that depends on its start; the guidance selects p* among them.
Writes nash.png, nash.csv, nash_trace.csv and nash.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dgpg import atomic  # noqa: E402
from dgpg.experiments import common  # noqa: E402

CASES = ("symmetric", "asymmetric")


@dataclasses.dataclass(frozen=True)
class Grid:
    n_agents: tuple[int, ...] = (2, 10, 100, 1000)
    servers: int = 8
    seeds: int = 3
    alpha: float = 0.5
    steps: int = 20_000
    learning_rate: float = 1.0
    trace_every: int = 100


FULL = Grid()
QUICK = Grid(n_agents=(2, 10), seeds=1, steps=10_000)


@dataclasses.dataclass(frozen=True)
class Game:
    load: np.ndarray  # (K,) background load L
    capacity: np.ndarray  # (K,) kappa
    demand: np.ndarray  # (N,) w


def make_game(n_agents: int, servers: int, seed: int, case: str) -> tuple[Game, np.ndarray]:
    """A random game and the starting logits (N, K)."""
    rng = np.random.default_rng(seed)
    cores = rng.choice([16.0, 32.0, 64.0], size=servers, p=[0.3, 0.4, 0.3])
    efficiency = np.select([cores == 16, cores == 32], [rng.uniform(0.70, 0.80, servers),
                                                        rng.uniform(0.85, 0.95, servers)],
                           rng.uniform(0.98, 1.08, servers))
    capacity = cores * efficiency
    load = rng.uniform(0.0, 0.3, servers) * capacity
    if case == "symmetric":
        demand = np.ones(n_agents)
        start = np.broadcast_to(rng.normal(0.0, 1.0, servers), (n_agents, servers)).copy()
    else:
        demand = rng.uniform(0.5, 1.5, n_agents)
        start = rng.normal(0.0, 1.0, (n_agents, servers))
    # total demand: half the capacity, so the water level (>= 0.5) is above every background
    # utilisation (<= 0.3) and x* > 0 on every server: p* is interior
    demand = demand * 0.5 * capacity.sum() / demand.sum()
    return Game(load, capacity, demand), start


def water_level(game: Game) -> float:
    lam = (game.demand.sum() + game.load.sum()) / game.capacity.sum()
    assert np.all(lam * game.capacity >= game.load), "every server must be used"
    return float(lam)


def reference(game: Game) -> np.ndarray:
    """p*_i(k) = x*_k / W for every agent (N, K)."""
    x_star = water_level(game) * game.capacity - game.load
    return np.broadcast_to(x_star / game.demand.sum(), (game.demand.size, x_star.size))


def objectives(game: Game, scale: float):
    """(J, G) as functions of logits (N, K): team objective and summed guidance loss."""
    load, cap, w = (jnp.asarray(v) for v in (game.load, game.capacity, game.demand))
    p_star = jnp.asarray(reference(game))
    lam = water_level(game)
    x_star = lam * cap - load

    def team(theta):
        x = jnp.sum(w[:, None] * jax.nn.softmax(theta, axis=-1), axis=0)
        return -jnp.sum((load + x) ** 2 / cap) / scale

    def guidance(theta):
        pi = jax.nn.softmax(theta, axis=-1)
        base = load + x_star - w[:, None] * p_star  # (N, K): the others at the reference
        g = jnp.sum((base + w[:, None] * pi) ** 2 / cap, axis=-1) / (w * lam)
        g_ref = jnp.sum((base + w[:, None] * p_star) ** 2 / cap, axis=-1) / (w * lam)
        return jnp.sum(g - g_ref)

    return team, guidance


def ascend(fn, theta0: jax.Array, steps: int, lr: float, trace_every: int):
    """Plain gradient ascent on `fn`; returns the final logits and the logits every
    `trace_every` steps."""
    grad = jax.grad(fn)

    def block(theta, _):
        theta = jax.lax.fori_loop(0, trace_every, lambda _, t: t + lr * grad(t), theta)
        return theta, theta

    final, trace = jax.lax.scan(block, theta0, None, length=steps // trace_every)
    return final, trace


def solve(game: Game, start: np.ndarray, grid: Grid) -> tuple[dict[str, Any], dict]:
    """Both ascents from `start`; the reported numbers and the traces."""
    with jax.enable_x64(True):
        load, cap = game.load, game.capacity
        lam = water_level(game)
        x_star = lam * cap - load
        scale = float(np.sum((load + x_star) ** 2 / cap))  # |J*| before scaling
        team, guidance = objectives(game, scale)
        a = grid.alpha

        def augmented(theta):  # guidance averaged over agents, as in the DG-PG loss
            return (1.0 - a) * team(theta) - a * guidance(theta) / game.demand.size

        theta0 = jnp.asarray(start, jnp.float64)
        # the step is scaled by N so that every agent moves at the same rate whatever N
        lr = grid.learning_rate * game.demand.size
        orig, orig_trace = jax.jit(lambda t: ascend(team, t, grid.steps, lr,
                                                    grid.trace_every))(theta0)
        aug, aug_trace = jax.jit(lambda t: ascend(augmented, t, grid.steps, lr,
                                                  grid.trace_every))(theta0)
        p_star = reference(game)
        theta_star = jnp.log(jnp.asarray(p_star))
        g_team, g_aug = jax.jit(jax.grad(team)), jax.jit(jax.grad(augmented))

        def policy(theta):
            return np.asarray(jax.nn.softmax(theta, axis=-1))

        def tv(p, q):  # largest total-variation distance over agents
            return float(np.max(0.5 * np.abs(p - q).sum(axis=-1)))

        def load_error(p):
            return float(np.max(np.abs((game.demand[:, None] * p).sum(axis=0) - x_star)))

        def norm(g):
            return float(jnp.linalg.norm(g))

        pi_o, pi_a = policy(orig), policy(aug)
        numbers = {
            "J_star": -1.0, "J_start": float(team(theta0)),
            "J_original": float(team(orig)), "J_augmented": float(team(aug)),
            "tv_original_augmented": tv(pi_o, pi_a),
            "tv_original_reference": tv(pi_o, p_star),
            "tv_augmented_reference": tv(pi_a, p_star),
            "tv_start_reference": tv(policy(theta0), p_star),
            "load_error_original": load_error(pi_o), "load_error_augmented": load_error(pi_a),
            "grad_J_at_reference": norm(g_team(theta_star)),
            "grad_F_at_reference": norm(g_aug(theta_star)),
            "grad_J_at_original": norm(g_team(orig)),
            "grad_F_at_original": norm(g_aug(orig)),
            "grad_J_at_augmented": norm(g_team(aug)),
            "grad_F_at_augmented": norm(g_aug(aug)),
            "grad_F_at_start": norm(g_aug(theta0)),
        }
        trace = {
            "step": (np.arange(orig_trace.shape[0]) + 1) * grid.trace_every,
            "J_gap_original": -1.0 - np.asarray(jax.vmap(team)(orig_trace)),
            "J_gap_augmented": -1.0 - np.asarray(jax.vmap(team)(aug_trace)),
            "tv_reference_original": [tv(policy(t), p_star) for t in orig_trace],
            "tv_reference_augmented": [tv(policy(t), p_star) for t in aug_trace],
        }
    return numbers, trace


def run(out: Path, grid: Grid | None = None, **options: Any) -> dict[str, Any]:
    """Solve every (case, N, seed) in this process (seconds each) and write the results. The
    sweep's `options` (backend, workers, runs) are accepted for a uniform interface."""
    grid, opts = common.prepare(out, grid, QUICK, FULL, **options)
    rows, trace_rows, traces = [], [], {}
    total = len(CASES) * len(grid.n_agents) * grid.seeds
    for case in CASES:
        for n in grid.n_agents:
            for seed in range(grid.seeds):
                game, start = make_game(n, grid.servers, seed, case)
                numbers, trace = solve(game, start, grid)
                rows.append({"case": case, "n_agents": n, "seed": seed, "alpha": grid.alpha,
                             "steps": grid.steps, **numbers})
                for i, step in enumerate(trace["step"]):
                    trace_rows.append({"case": case, "n_agents": n, "seed": seed,
                                       "step": int(step),
                                       **{k: float(v[i]) for k, v in trace.items()
                                          if k != "step"}})
                traces[case, n, seed] = trace
                if opts.progress is not None:
                    opts.progress({"total": total, "finished": len(rows), "last": f"{case} N={n}"})
    _plot(traces, grid, opts.out / "nash.png")
    common.write_csv(opts.out / "nash.csv", rows)
    common.write_csv(opts.out / "nash_trace.csv", trace_rows)
    atomic.write_text(opts.out / "nash.md", markdown(rows, grid))
    return {"rows": rows}


def _plot(traces, grid: Grid, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    styles = {"symmetric": "-", "asymmetric": "--"}
    for i, n in enumerate(grid.n_agents):
        for case in CASES:
            t = traces[case, n, 0]
            for ax, key in ((axes[0], "J_gap"), (axes[1], "tv_reference")):
                for which, lw in (("original", 1.0), ("augmented", 2.2)):
                    y = np.maximum(np.asarray(t[f"{key}_{which}"]), 1e-16)
                    ax.plot(t["step"], y, color=f"C{i}", ls=styles[case], lw=lw,
                            alpha=0.6 if which == "original" else 1.0,
                            label=f"N={n}, {case}, {which}")
    axes[0].set(yscale="log", xlabel="gradient step", ylabel="J* - J (relative)",
                title="objective gap (thin: original J, thick: augmented F)")
    axes[1].set(yscale="log", xlabel="gradient step",
                ylabel="max_i TV(pi_i, p*_i)", title="distance to the reference policy p*")
    axes[1].legend(fontsize=6, ncol=2)
    common.save(fig, path)


def markdown(rows: list[dict[str, Any]], grid: Grid) -> str:
    head = (f"Exact-gradient ascent for {grid.steps} steps from the same start on the original "
            f"objective J and on the augmented F = (1 - alpha) J - alpha mean_i G_i "
            f"(alpha = {grid.alpha:g}), {grid.servers} servers, float64. J is scaled so that "
            "J* = -1. TV = largest total-variation distance over agents; p* = the water-filling "
            "reference. Gradient norms are Euclidean over all agents' logits.\n\n")
    table = common.md_table(
        ["case", "N", "seed", "J start", "J orig.", "J aug.", "TV(orig., aug.)",
         "TV(orig., p*)", "TV(aug., p*)", "|grad F| at p*", "|grad J| at p*",
         "|grad F| at orig. final", "|grad J| at aug. final"],
        [[r["case"], r["n_agents"], r["seed"], f"{r['J_start']:.4f}",
          f"{r['J_original']:.10f}", f"{r['J_augmented']:.10f}",
          f"{r['tv_original_augmented']:.2e}", f"{r['tv_original_reference']:.2e}",
          f"{r['tv_augmented_reference']:.2e}", f"{r['grad_F_at_reference']:.1e}",
          f"{r['grad_J_at_reference']:.1e}", f"{r['grad_F_at_original']:.1e}",
          f"{r['grad_J_at_augmented']:.1e}"] for r in rows])
    return head + table
