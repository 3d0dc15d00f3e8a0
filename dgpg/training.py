"""Training runs: the loop behind `dgpg train` (docs/design.md, sections 6 and 8).

A run trains K seeds at once (`vmap` over one compiled episode function) and writes into its
output folder

    config.json          the run's configuration
    metrics.csv          one row per episode and seed
    checkpoints/last.ckpt  everything needed to resume (written atomically every episode): the
                         learner states, whose actors are the current (at the end: final) ones,
                         and the best actors
    checkpoints/best.ckpt  per seed, the actor with the highest validation return so far
    summary.json         test evaluation of the best checkpoints and of the final policies,
                         convergence, wall time

Every file is written atomically (dgpg.atomic). Within an episode last.ckpt is written last: it
is the commit point. A run killed at any moment leaves the files of its last committed episode
(and perhaps metrics rows or a best.ckpt of the next one, which a resume recomputes
identically); `--resume` reloads last.ckpt, drops metric rows written after it and continues, and
the result equals an uninterrupted run. A non-finite loss, reward or parameter stops the run
before anything of that episode is written.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dgpg import atomic, checkpoint
from dgpg.config import (  # noqa: F401 (re-exported)
    DEFAULT_RUN,
    NO_MODEL,
    ConfigError,
    RunConfig,
    RunError,
    check_folder,
    differences,
    read_metric_rows,
    read_summary,
    saved_config,
)
from dgpg.domains import DEFAULT_DOMAIN, DomainError, EnvConfig, domain_of, get_spec
from dgpg.domains.fields import truth
from dgpg.evaluation import TEST_SEEDS, VALIDATION_SEEDS, evaluate, for_seeds, mean_ci, rollout
from dgpg.learners.config import TRANSFERABLE_ACTORS
from dgpg.learners.ppo import (
    GuidanceTrust,
    Runner,
    TrainConfig,
    adaptive,
    init_runner,
    make_policy,
    make_train_episode,
    model_rule,
    trust_weight,
)
from dgpg.reference_cache import reference_returns


def metric_columns(env_config: EnvConfig, config: TrainConfig | None = None
                   ) -> tuple[str, ...]:
    """metrics.csv's columns for a run in the domain of `env_config` (with the adaptive
    guidance weight, also the episode's weight)."""
    trust = ("alpha",) if config is not None and adaptive(config) else ()
    return ("episode", "seed", "return", *domain_of(env_config).train_metrics, "val_return",
            "policy_loss", "value_loss", "entropy", "guidance_loss", "grad_norm", *trust,
            "wall_seconds")

CONVERGENCE_WINDOW = 5
CONVERGENCE_TOLERANCE = 0.10


SCENARIO_BATCH = len(VALIDATION_SEEDS)
"""Scenarios per compiled call of a validator: the test scenarios run in batches of this size,
so they reuse the program the training loop compiled for validation (on 2 CPU cores one call of
all 40 test scenarios took longer than four calls of 10, and compiles a program of its own)."""
SAMPLED_TEST_SEEDS = TEST_SEEDS[:SCENARIO_BATCH]
"""The test scenarios of the sampled policy (`test_return_sampled`): the first 10 of the 40, one
compiled call, so that a run's test evaluation costs at most about five validations."""


@functools.lru_cache(maxsize=32)
def _returns_program(config: TrainConfig, env_config: EnvConfig, greedy: bool,
                     dense: bool) -> Callable:
    """Compiled `(actor_params (K seeds), keys (B,)) -> returns (K, B)`; one per configuration,
    so every validator of it shares the compiled program."""
    def one_seed(actor_params, keys):
        policy = make_policy(config, actor_params, greedy=greedy, dense=dense)
        return jax.vmap(lambda k: jnp.sum(rollout(policy, k, env_config)["reward"]))(keys)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None)))


@functools.lru_cache(maxsize=8)
def _training_programs(config: TrainConfig, env_config: EnvConfig) -> tuple[Callable, Callable]:
    """Compiled `init(keys (K,)) -> runners` and `train_episode(runners) -> (runners, metrics)`
    (K seeds); one pair per configuration, so that another run of it in this process (a resume,
    a sweep worker's next task) traces and compiles nothing."""
    init = jax.jit(jax.vmap(lambda k: init_runner(k, config, env_config)))
    return init, jax.jit(jax.vmap(make_train_episode(config, env_config)))


def make_validator(config: TrainConfig, env_config: EnvConfig, seeds,
                   greedy: bool = True, dense: bool = False) -> Callable:
    """`actor_params (stacked over K seeds) -> returns (K, len(seeds))` of the greedy policy (or
    of the sampled one), in compiled batches of `SCENARIO_BATCH` scenarios (the last batch padded
    by repeating its first seed)."""
    seeds = [int(s) for s in seeds]
    program = _returns_program(config, for_seeds(env_config, seeds), greedy, dense)
    batches = []
    for i in range(0, len(seeds), SCENARIO_BATCH):
        chunk = seeds[i:i + SCENARIO_BATCH]
        chunk += [chunk[0]] * (SCENARIO_BATCH - len(chunk))
        batches.append(jnp.stack([jax.random.key(s) for s in chunk]))

    def validate(actor_params) -> jax.Array:
        returns = [program(actor_params, keys) for keys in batches]
        return jnp.concatenate(returns, axis=1)[:, :len(seeds)]

    return validate


def episodes_to_converge(val_returns: np.ndarray, reference: float) -> int | None:
    """First episode (1-based count) after which the rolling mean of `val_returns` over
    CONVERGENCE_WINDOW episodes stays within 10 % of `reference` (or better); None if never."""
    if val_returns.size < CONVERGENCE_WINDOW:
        return None
    kernel = np.ones(CONVERGENCE_WINDOW) / CONVERGENCE_WINDOW
    rolling = np.convolve(val_returns, kernel, mode="valid")  # rolling[i] ends at i + W - 1
    ok = rolling >= reference - CONVERGENCE_TOLERANCE * abs(reference)
    bad = np.nonzero(~ok)[0]
    first_good = 0 if bad.size == 0 else bad[-1] + 1
    if first_good >= rolling.size:
        return None
    return int(first_good + CONVERGENCE_WINDOW)


def episodes_to_settle(val_returns: np.ndarray, reference: float) -> int | None:
    """First episode (1-based) from which every value of `val_returns` stays within
    CONVERGENCE_TOLERANCE of `reference` (or better) to the last one; None if the last is not
    (or there is none). Unlike `episodes_to_converge` there is no rolling window: a curve good
    from the start settles in episode 1."""
    val_returns = np.asarray(val_returns, dtype=np.float64).reshape(-1)
    if val_returns.size == 0:
        return None
    ok = val_returns >= reference - CONVERGENCE_TOLERANCE * abs(reference)
    bad = np.nonzero(~ok)[0]
    if bad.size == 0:
        return 1
    if bad[-1] == val_returns.size - 1:
        return None
    return int(bad[-1] + 2)


def _where_seed(pick: np.ndarray, new: Any, old: Any) -> Any:
    """Per seed (leading axis), `new` where `pick` else `old`."""
    return jax.tree.map(
        lambda n, o: jnp.where(pick.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old
    )


def _read_metrics(path: Path, upto_episode: int, seeds: list[int]) -> list[dict[str, str]]:
    """The rows of metrics.csv up to `upto_episode` (rows written after the checkpoint are
    dropped); RunError unless they are exactly one row per episode and seed."""
    rows = []
    if path.exists():
        rows = [r for r in read_metric_rows(path) if int(r["episode"]) <= upto_episode]
    found = [(int(r["episode"]), int(r["seed"])) for r in rows]
    if found != [(e, s) for e in range(1, upto_episode + 1) for s in seeds]:
        raise RunError(f"{path} does not hold every episode up to the checkpoint's "
                       f"{upto_episode}; the run cannot be resumed")
    return rows


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files left by atomic writes of a killed run (`.NAME.*.tmp`)."""
    names = ("config.json", "metrics.csv", "summary.json", "last.ckpt", "best.ckpt")
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _all_finite(tree: Any) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
               if jnp.issubdtype(x.dtype, jnp.floating))


def train(
    out: Path, run: RunConfig, resume: bool = False,
    on_episode: Callable[[int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) the run in `out`; returns the summary (None if stopped early).

    `on_episode(episode, stats)` is called after each episode with the seeds' mean of every
    metrics.csv column; `on_phase(name)` when a phase starts: "compile" (the first episode of
    this call, which compiles the programs), "train" (the episodes after it), "test" (the test
    evaluation). `stop_after` stops after that many episodes in total without a summary.
    """
    def phase(name: str) -> None:
        if on_phase is not None:
            on_phase(name)

    out = Path(out)
    if not isinstance(run, RunConfig):
        raise TypeError(f"run must be a RunConfig, got {type(run).__name__}")
    check_folder(out, run, resume)
    out.mkdir(parents=True, exist_ok=True)
    tcfg, ecfg = run.train_config(), run.env_config()
    columns = metric_columns(ecfg, tcfg)
    K = run.seeds
    seed_ids = [run.seed + i for i in range(K)]
    ckpt_dir = out / "checkpoints"
    if not resume:
        atomic.write_json(out / "config.json", run.to_json())  # first: marks the folder a run
    elif run.episodes > saved_config(out).episodes:  # extended: the old summary no longer holds
        (out / "summary.json").unlink(missing_ok=True)
        atomic.write_json(out / "config.json", run.to_json())
    ckpt_dir.mkdir(exist_ok=True)
    _remove_stale_temporaries(out)
    _remove_stale_temporaries(ckpt_dir)

    resuming = resume and (ckpt_dir / "last.ckpt").exists()
    if resuming:  # verify the checkpoint before any work
        meta, state = checkpoint.read(ckpt_dir / "last.ckpt")
        try:
            saved = RunConfig.from_dict(meta.get("config", {}).get("run"))
        except (AttributeError, ConfigError, TypeError):
            saved = None
        if saved is None or differences(saved, run, ignore=("run.episodes",)):
            raise RunError(f"{ckpt_dir / 'last.ckpt'} belongs to another run configuration")

    keys = jnp.stack([jax.random.key(s) for s in seed_ids])
    init, train_episode = _training_programs(tcfg, ecfg)
    runners = init(keys)
    best_val = np.full(K, -np.inf)
    best_actor = runners.params["actor"]
    wall_before = 0.0
    rows: list[dict[str, Any]] = []
    if resuming:
        template = {"runners": runners, "best_actor": best_actor}
        restored = checkpoint.restore(template, state, ckpt_dir / "last.ckpt")
        runners, best_actor = restored["runners"], restored["best_actor"]
        try:
            best_val = np.asarray(meta["best_val"], dtype=np.float64).reshape(K)
            wall_before = float(meta["wall_seconds"])
            rows = _read_metrics(out / "metrics.csv", int(meta["episode"]), seed_ids)
        except (KeyError, TypeError, ValueError):
            raise checkpoint.CheckpointError(
                f"checkpoint {ckpt_dir / 'last.ckpt'} has no valid training state") from None
    start = int(np.asarray(runners.episode)[0])
    if resuming and start != meta["episode"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {ckpt_dir / 'last.ckpt'} is inconsistent (episode {meta['episode']!r:.20}"
            f" in its header, {start} in its state)")

    validate = make_validator(tcfg, ecfg, VALIDATION_SEEDS)
    if adaptive(tcfg):  # the adaptive weight compares each seed's policy with the model's rule
        rule_val = float(np.mean(evaluate(model_rule(tcfg, ecfg), ecfg,
                                          VALIDATION_SEEDS)["return"]))
    t0 = time.perf_counter() - wall_before
    last = run.episodes if stop_after is None else min(run.episodes, stop_after)
    for episode in range(start + 1, last + 1):
        phase("compile" if episode == start + 1 else "train")
        runners, metrics = train_episode(runners)
        val = np.asarray(validate(runners.params["actor"]), dtype=np.float64).mean(axis=1)
        metrics = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
        bad = sorted(k for k, v in {**metrics, "val_return": val}.items()
                     if not np.all(np.isfinite(v)))
        if bad or not _all_finite(runners.params):
            what = ", ".join(bad) if bad else "network parameters"
            kept = (f"the last good checkpoint (episode {episode - 1}) is kept"
                    if episode > 1 else "no checkpoint was written")
            raise RunError(f"training diverged in episode {episode}: non-finite {what}; "
                           f"stopped, {kept}")
        if adaptive(tcfg):
            alpha = trust_weight(tcfg.alpha, val, rule_val, tcfg.trust_margin)
            alpha = alpha.astype(np.float32)
            runners = runners.replace(trust=GuidanceTrust(jnp.asarray(alpha)))
        improved = val > best_val
        best_val = np.where(improved, val, best_val)
        best_actor = _where_seed(improved, runners.params["actor"], best_actor)
        wall = time.perf_counter() - t0
        for i, s in enumerate(seed_ids):
            row = {"episode": episode, "seed": s, "val_return": val[i], "wall_seconds": wall}
            row.update({k: metrics[k][i] for k in columns if k in metrics})
            rows.append(row)
        # last.ckpt goes last: it commits the episode. A kill before it leaves the previous
        # episode's checkpoint, and the resumed run rewrites these files identically.
        atomic.write_csv(out / "metrics.csv", rows, columns)
        if improved.any():
            checkpoint.save(ckpt_dir / "best.ckpt", {"actor": best_actor},
                            {"episode": episode, "best_val": best_val.tolist(),
                             "config": run.to_json()})
        meta = {"episode": episode, "best_val": best_val.tolist(), "wall_seconds": wall,
                "config": run.to_json()}
        checkpoint.save(ckpt_dir / "last.ckpt", {"runners": runners, "best_actor": best_actor},
                        meta)
        if on_episode is not None:
            on_episode(episode, {k: float(np.mean([r[k] for r in rows[-K:]]))
                                 for k in columns
                                 if k in rows[-1] and k not in ("episode", "seed")})
    if last < run.episodes:
        return None
    if start >= run.episodes and (summary := read_summary(out / "summary.json")) is not None:
        return summary
    phase("test")
    return _summarise(out, run, tcfg, ecfg, best_actor, runners.params["actor"], best_val, rows,
                      t0)


def same_actor_per_seed(a: Any, b: Any) -> np.ndarray:
    """Per seed (leading axis), whether the actor parameters `a` and `b` are equal."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    same = np.ones(np.shape(leaves_a[0])[0], dtype=bool)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        same &= (x == y).reshape(x.shape[0], -1).all(axis=1)
    return same


def _test_matrices(tcfg, ecfg, actor) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, scenarios) test returns of the greedy policies on the test scenarios and of the
    sampled ones on SAMPLED_TEST_SEEDS (docs/design.md, section 6), all seeds at once."""
    greedy = np.asarray(make_validator(tcfg, ecfg, TEST_SEEDS)(actor), np.float64)
    sampled = np.asarray(make_validator(tcfg, ecfg, SAMPLED_TEST_SEEDS, greedy=False)(actor),
                         np.float64)
    return greedy, sampled


def _summarise(out, run, tcfg, ecfg, best_actor, final_actor, best_val, rows,
               t0) -> dict[str, Any]:
    """Test evaluation of the best checkpoints and of the final policies, and the run's
    summary.json. A seed whose final actor is its best one has the same test returns; when every
    seed's is, the final policies are not evaluated again."""
    test_matrix, sampled_matrix = _test_matrices(tcfg, ecfg, best_actor)
    final_is_best = same_actor_per_seed(final_actor, best_actor)
    if final_is_best.all():
        final_matrix, final_sampled_matrix = test_matrix, sampled_matrix
    else:  # all seeds in one call (the compiled program's shape), equal ones give equal returns
        final_matrix, final_sampled_matrix = _test_matrices(tcfg, ecfg, final_actor)
    val_curves = np.array([[float(r["val_return"]) for r in rows if int(r["episode"]) == e]
                           for e in range(1, run.episodes + 1)])  # (episodes, seeds)
    domain = domain_of(ecfg)  # its reference heuristic, the line every run is compared with,
    exact = truth(ecfg)  # on the truth: a misspecified model changes the guidance only
    seeds = (*VALIDATION_SEEDS, *TEST_SEEDS)
    reference = reference_returns(exact, seeds, lambda: evaluate(
        domain.heuristics[domain.reference], exact, seeds)["return"])
    reference_val = mean_ci(reference[:len(VALIDATION_SEEDS)])[0]
    reference_test = mean_ci(reference[len(VALIDATION_SEEDS):])[0]
    val_curve = val_curves.mean(axis=1)
    per_seed = [{"seed": run.seed + i, "best_val_return": float(best_val[i]),
                 "test_return": mean_ci(test_matrix[i])[0],
                 "test_return_sampled": mean_ci(sampled_matrix[i])[0],
                 "last_val_return": float(val_curves[-1, i]),
                 "final_is_best": bool(final_is_best[i]),
                 "final_test_return": mean_ci(final_matrix[i])[0],
                 "final_test_return_sampled": mean_ci(final_sampled_matrix[i])[0],
                 "episodes_to_settle": episodes_to_settle(val_curves[:, i], reference_val)}
                for i in range(run.seeds)]
    test_mean, test_ci = mean_ci(np.mean(test_matrix, axis=0))
    sampled_mean, sampled_ci = mean_ci(np.mean(sampled_matrix, axis=0))
    final_mean, final_ci = mean_ci(np.mean(final_matrix, axis=0))
    final_sampled_mean, final_sampled_ci = mean_ci(np.mean(final_sampled_matrix, axis=0))
    summary = {
        "algo": run.algo,
        "n_agents": run.n_agents,
        "episodes": run.episodes,
        "alpha": run.train_config().guidance_weight,
        "seeds": run.seeds,
        "best_val_return": float(np.mean(best_val)),
        "test_return": test_mean,
        "test_return_ci": test_ci,
        "test_scenarios": len(TEST_SEEDS),
        "test_return_sampled": sampled_mean,
        "test_return_sampled_ci": sampled_ci,
        "test_sampled_scenarios": len(SAMPLED_TEST_SEEDS),
        "last_val_return": float(val_curve[-1]),
        "final_test_return": final_mean,
        "final_test_return_ci": final_ci,
        "final_test_return_sampled": final_sampled_mean,
        "final_test_return_sampled_ci": final_sampled_ci,
        "model": run.model,
        "domain": run.domain,
        "reference": domain.reference,
        "episodes_to_converge": episodes_to_converge(val_curve, reference_val),
        "episodes_to_settle": episodes_to_settle(val_curve, reference_val),
        "reference_val_return": reference_val,
        "reference_test_return": reference_test,
        "wall_seconds": time.perf_counter() - t0,
        "per_seed": per_seed,
    }
    if not all(math.isfinite(v) for v in (test_mean, test_ci, final_mean, final_ci)):
        raise RunError("test evaluation produced a non-finite return")
    atomic.write_json(out / "summary.json", summary)
    return summary


def load_actor(path: Path, final: bool | None = None) -> tuple[TrainConfig, Any, dict[str, Any]]:
    """Actor parameters (stacked over seeds) and the TrainConfig of a checkpoint or run folder.

    Which actors: a best.ckpt holds each seed's best-on-validation actor; a last.ckpt holds the
    learner states, whose actors are the current ones (after the last episode: the final
    policies), and the best actors. By default (`final=None`) a file gives what it is for: the
    best actors of a best.ckpt, the current actors of a last.ckpt; a run folder gives its
    best.ckpt's. `final=True` asks for the current actors (a run folder: its last.ckpt; a
    best.ckpt is refused with CheckpointError), `final=False` for the best ones (a last.ckpt's
    best actors, a run folder's best.ckpt). The metadata returned is the checkpoint's, with
    "actors" added: "final" or "best", the actors returned."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / ("last.ckpt" if final else "best.ckpt")
    meta, state = checkpoint.read(path)
    stored = meta.get("config", {}).get("run") if isinstance(meta.get("config"), dict) else None
    domain = stored.get("domain", DEFAULT_DOMAIN) if isinstance(stored, dict) else None
    if isinstance(domain, str):
        try:
            get_spec(domain)
        except DomainError as e:  # the plug-in is missing or broken, not the checkpoint
            raise checkpoint.CheckpointError(f"checkpoint {path} was trained in the domain "
                                             f"{domain!r}, which cannot be loaded: {e}") from None
    try:
        run = RunConfig.from_dict(stored)
    except (TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"checkpoint {path} has no valid run configuration "
                                         f"({e})") from None
    if final and "actor" in state:
        raise checkpoint.CheckpointError(
            f"checkpoint {path} holds only the best-on-validation actors; the final policies "
            "are in the run's checkpoints/last.ckpt")
    tcfg = run.train_config()
    template_env = run.env_config()  # the mlp actor's input size depends on K (and so on N)
    keys = jnp.stack([jax.random.key(i) for i in range(run.seeds)])
    template = jax.vmap(lambda k: init_runner(k, tcfg, template_env))(keys).params["actor"]
    if "actor" in state:
        actor = checkpoint.restore({"actor": template}, state, path)["actor"]
        which = "best"
    else:
        runners: Runner = jax.vmap(lambda k: init_runner(k, tcfg, template_env))(keys)
        restored = checkpoint.restore({"runners": runners, "best_actor": template}, state, path)
        which = "best" if final is False else "final"
        actor = restored["best_actor"] if which == "best" else restored["runners"].params["actor"]
    return tcfg, actor, {**meta, "actors": which}


def checkpoint_policies(path: Path, n_agents: int | None = None, final: bool | None = None,
                        ) -> tuple[dict[str, Any], RunConfig, TrainConfig]:
    """The greedy policy of every seed stored in a checkpoint (or a run folder's best.ckpt),
    named "ALGO (seed S)", with the run's configuration and hyperparameters; CheckpointError or
    ConfigError if it cannot be read. Which actors: `load_actor`'s `final`; the final policies
    (a last.ckpt's current actors) are named "ALGO (seed S, final)", or "ALGO (seed S, episode
    E of T)" when the run stopped before its last episode. With `n_agents` other than
    the run's, the names add "trained at N = n" (see `transfer_problem` for when a policy can
    act at another N)."""
    tcfg, params, meta = load_actor(path, final)
    run = RunConfig.from_dict(meta["config"]["run"])
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    moved = n_agents is not None and n_agents != run.n_agents
    suffix = ""
    if meta["actors"] == "final":  # a last.ckpt of an unfinished run: its latest actors
        episode = meta.get("episode")
        suffix = (f", episode {episode} of {run.episodes}"
                  if isinstance(episode, int) and episode < run.episodes else ", final")
    suffix += f", trained at N = {run.n_agents}" if moved else ""
    policies = {f"{run.algo} (seed {run.seed + i}{suffix})": make_policy(
        tcfg, jax.tree.map(lambda x, i=i: x[i], params), greedy=True) for i in range(n_seeds)}
    return policies, run, tcfg


def transfer_problem(tcfg: TrainConfig, trained: EnvConfig, target: EnvConfig) -> str | None:
    """Why a policy trained on `trained` cannot act on `target` (another N or other environment
    fields), or None if it can: `scorer-id` holds offsets per agent, so it needs the same N; the
    other actors need the same observation features (and `mlp` the same candidates and slots
    per agent, which can depend on N)."""
    if tcfg.actor not in TRANSFERABLE_ACTORS and target.n_agents != trained.n_agents:
        return (f"a {tcfg.actor} actor has one offset per agent, so it acts only at the N it "
                f"was trained at ({trained.n_agents})")
    # per agent: all of each field's shape for mlp, its feature size for the scorers
    kept = slice(1, None) if tcfg.actor == "mlp" else slice(-1, None)
    shapes = [[leaf.shape[kept] for leaf in jax.tree.leaves(jax.eval_shape(
        lambda c=c: _observation(c)))] for c in (trained, target)]
    if shapes[0] != shapes[1]:
        return (f"the {tcfg.actor} actor's input at N = {target.n_agents} differs from the one "
                f"it was trained on at N = {trained.n_agents}"
                + ("" if target.n_agents != trained.n_agents else " (other environment fields)"))
    return None


def _observation(config: EnvConfig):
    domain = domain_of(config)
    return domain.observe(domain.reset(jax.random.key(0), config), config)
