"""Benchmarks: environment throughput, training wall time, compilations and peak memory.

Environment: a batch of B environments is stepped `steps` times inside one compiled
`lax.scan` (random actions drawn inside the compiled function); the best of a few calls after
compilation is reported: agent_steps_per_s = B * N * steps / seconds. Training: `dgpg train`
of one seed, with XLA compile time measured from JAX's monitoring events.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dgpg.config import make_env_config
from dgpg.domains import DEFAULT_DOMAIN, domain_of


def default_batch(n_agents: int) -> int:
    """Environments per batch: about 4000 agents per step in total, at least one env."""
    return max(1, 4000 // n_agents)


def env_throughput(
    n_agents: int, batch: int | None = None, steps: int = 50, repeats: int = 3,
    domain: str = DEFAULT_DOMAIN, env: dict | None = None,
) -> dict[str, float]:
    """Measure the compiled environment of `domain` (`env`: its configuration's fields other
    than N); returns a record with agent_steps_per_s."""
    config = make_env_config(n_agents, env or {}, domain)
    model = domain_of(config)
    J, K = model.decision_shape(config)
    batch = default_batch(n_agents) if batch is None else batch

    def run(key):
        keys = jax.random.split(key, batch)
        state = jax.vmap(lambda k: model.reset(k, config))(keys)

        def one(state, k):
            k_a, k_s = jax.random.split(k)
            actions = jax.random.randint(k_a, (batch, n_agents, J), 0, K)
            step_keys = jax.random.split(k_s, batch)
            state, reward, _ = jax.vmap(lambda kk, s, a: model.step(kk, s, a, config))(
                step_keys, state, actions
            )
            return state, reward

        _, rewards = jax.lax.scan(one, state, jax.random.split(key, steps))
        return jnp.sum(rewards)

    fn = jax.jit(run)
    t0 = time.perf_counter()
    fn(jax.random.key(0)).block_until_ready()
    compile_s = time.perf_counter() - t0
    seconds = np.inf
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(jax.random.key(1 + i)).block_until_ready()
        seconds = min(seconds, time.perf_counter() - t0)
    return {
        "domain": domain,
        "n_agents": n_agents,
        "batch": batch,
        "steps": steps,
        "seconds": seconds,
        "compile_seconds": compile_s,
        "agent_steps_per_s": batch * n_agents * steps / seconds,
        "device": jax.devices()[0].platform,
    }


# --------------------------------------------------------------------------- compilation


# JAX monitoring events (jax._src.dispatch): one per traced function, one per XLA compilation
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileLog:
    """Counts traces and XLA compilations (and their seconds) while active:
    `with CompileLog() as log: ...`. Listens to JAX's monitoring events, so it sees every
    compilation in the process, including those inside library code. A compilation served
    from the persistent cache still counts as a trace.
    """

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.traces = 0

    def _listener(self, event: str, duration: float, **_: object) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1
            self.seconds += duration
        elif event == TRACE_EVENT:
            self.traces += 1

    def __enter__(self) -> CompileLog:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


# --------------------------------------------------------------------------- training


def train_timing(n_agents: int, episodes: int, algo: str = "dgpg",
                 measured_episodes: int | None = None,
                 compile_cache: str | None = None, domain: str = DEFAULT_DOMAIN,
                 env: dict | None = None) -> dict[str, float]:
    """Wall time of `dgpg train` (one seed, `episodes` episodes) in a temporary folder, with
    compilation separated; the run stops before its final test evaluation.

    `train_seconds` covers the training loop (rollouts, updates, validation, checkpoints) and
    its compilations; `compile_seconds` is the XLA compile time within it.
    `recompiles_after_first_episode` counts traces and compilations after episode 1 (0 when
    nothing is recompiled). With `measured_episodes` < `episodes` only that many episodes run
    and `train_seconds` is projected: the measured time plus the remaining episodes at the
    measured seconds per episode (`projected` is then True). With `compile_cache` (a folder),
    JAX's persistent compilation cache is used there: a second measurement with the same
    folder shows what a warm cache saves.
    """
    from dgpg.training import RunConfig, train

    if compile_cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    measured = episodes if measured_episodes is None else min(episodes, measured_episodes)
    # one episode more than measured: the run stops before its test evaluation, which is not
    # part of the timing
    run = RunConfig(algo=algo, n_agents=n_agents, episodes=episodes + 1, seed=0, domain=domain,
                    env=env or {})
    marks: list[tuple[float, int, float]] = []

    def mark(episode: int, stats: dict) -> None:
        marks.append((time.perf_counter(), log.count + log.traces, log.seconds))

    with tempfile.TemporaryDirectory() as tmp, CompileLog() as log:
        t0 = time.perf_counter()
        train(Path(tmp) / "run", run, on_episode=mark, stop_after=measured)
    t_loop, _, compile_s = marks[-1]
    per_episode = (t_loop - marks[0][0]) / max(1, measured - 1)
    return {
        "domain": domain,
        "n_agents": n_agents,
        "episodes": episodes,
        "measured_episodes": measured,
        "projected": measured < episodes,
        "algo": algo,
        "train_seconds": t_loop - t0 + (episodes - measured) * per_episode,
        "compile_seconds": compile_s,
        "first_episode_seconds": marks[0][0] - t0,
        "seconds_per_episode": per_episode,
        "recompiles_after_first_episode": marks[-1][1] - marks[0][1],
        "compile_cache": compile_cache is not None,
        "device": jax.devices()[0].platform,
    }


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, which compiles; best seconds of `repeats` later calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return first, best


def episode_split(n_agents: int, algo: str = "dgpg", repeats: int = 2,
                  dense: bool = False, domain: str = DEFAULT_DOMAIN,
                  env: dict | None = None) -> dict[str, float]:
    """Seconds of one training episode of one seed, split into its parts, each compiled alone:
    the training roll-out, the update, the validation roll-outs (greedy, on the validation
    scenarios), and the environment-only cost of the same roll-outs (1 + 10 episodes with
    uniformly random actions). `episode_seconds` is the fused episode (roll-out and update in
    one compiled call, as `dgpg train` runs it) plus validation; `ratio_to_env` divides it by
    the environment-only seconds. Best of `repeats` calls after the compiling one. `dense`
    scores every job slot, not only the occupied ones (for before/after ratios)."""
    from dgpg.evaluation import VALIDATION_SEEDS, rollout
    from dgpg.learners.ppo import init_runner, make_rollout, make_train_episode, make_update
    from dgpg.training import RunConfig, make_validator

    run = RunConfig(algo=algo, n_agents=n_agents, episodes=1, seed=0, domain=domain,
                    env=env or {})
    tcfg, ecfg = run.train_config(), run.env_config()
    seeds = jnp.stack([jax.random.key(0)])
    runners = jax.jit(jax.vmap(lambda k: init_runner(k, tcfg, ecfg)))(seeds)
    scenario = jnp.stack([jax.random.key(0)])
    keys = jnp.stack([jax.random.key(1)])

    roll = jax.jit(jax.vmap(make_rollout(tcfg, ecfg, dense)))
    c_roll, t_roll = _timed(roll, runners.params, runners.value_norm, keys, scenario,
                            repeats=repeats)
    traj, last_value, _ = roll(runners.params, runners.value_norm, keys, scenario)
    upd = jax.jit(jax.vmap(make_update(tcfg, ecfg, dense)))
    c_upd, t_upd = _timed(upd, runners, traj, last_value, keys, repeats=repeats)
    del traj
    validate = make_validator(tcfg, ecfg, VALIDATION_SEEDS, dense=dense)
    c_val, t_val = _timed(validate, runners.params["actor"], repeats=repeats)
    episode = jax.jit(jax.vmap(make_train_episode(tcfg, ecfg, dense)))
    c_ep, t_ep = _timed(episode, runners, repeats=repeats)

    J, K = domain_of(ecfg).decision_shape(ecfg)

    def random_policy(key, state, config):
        return jax.random.randint(key, (config.n_agents, J), 0, K)

    env_keys = jnp.stack([jax.random.key(int(s)) for s in (0, *VALIDATION_SEEDS)])
    env_only = jax.jit(jax.vmap(lambda k: jnp.sum(rollout(random_policy, k, ecfg)["reward"])))
    _, t_env = _timed(env_only, env_keys, repeats=repeats)
    return {
        "domain": domain,
        "n_agents": n_agents,
        "algo": algo,
        "dense": dense,
        "rollout_seconds": t_roll,
        "update_seconds": t_upd,
        "validation_seconds": t_val,
        "episode_seconds": t_ep + t_val,
        "env_only_seconds": t_env,
        "ratio_to_env": (t_ep + t_val) / t_env,
        "compile_seconds": (c_ep - t_ep) + (c_val - t_val),
        "device": jax.devices()[0].platform,
    }


def test_evaluation_cost(n_agents: int, algo: str = "dgpg", domain: str = DEFAULT_DOMAIN,
                         repeats: int = 1) -> dict[str, float]:
    """Seconds of a run's test evaluation against one training episode, one seed, as `dgpg train`
    does them: the episode (roll-out and update in one compiled call, then the 10 validation
    roll-outs); the test evaluation (the greedy policy on the 40 test scenarios in compiled
    batches of 10, reusing the validation program, the sampled policy on the first 10, and the
    reference heuristic on the 50 validation and test scenarios, computed or read from the
    reference cache). Best of `repeats` calls after the compiling one; the reference is timed
    once cold (its own compilation included, as a run without a cache entry pays it) and once
    from the cache."""
    import tempfile as _tempfile

    from dgpg.config import RunConfig
    from dgpg.evaluation import TEST_SEEDS, VALIDATION_SEEDS, evaluate
    from dgpg.learners.ppo import init_runner, make_train_episode
    from dgpg.reference_cache import reference_returns
    from dgpg.training import SAMPLED_TEST_SEEDS, make_validator

    run = RunConfig(algo=algo, n_agents=n_agents, episodes=1, seed=0, domain=domain)
    tcfg, ecfg = run.train_config(), run.env_config()
    runners = jax.jit(jax.vmap(lambda k: init_runner(k, tcfg, ecfg)))(
        jnp.stack([jax.random.key(0)]))
    episode = jax.jit(jax.vmap(make_train_episode(tcfg, ecfg)))
    _, t_ep = _timed(episode, runners, repeats=repeats)
    validate = make_validator(tcfg, ecfg, VALIDATION_SEEDS)
    _, t_val = _timed(validate, runners.params["actor"], repeats=repeats)
    greedy = make_validator(tcfg, ecfg, TEST_SEEDS)
    _, t_greedy = _timed(greedy, runners.params["actor"], repeats=repeats)
    sampled = make_validator(tcfg, ecfg, SAMPLED_TEST_SEEDS, greedy=False)
    c_sampled, t_sampled = _timed(sampled, runners.params["actor"], repeats=repeats)
    sampled_all = make_validator(tcfg, ecfg, TEST_SEEDS, greedy=False)  # before: all 40
    _, t_sampled_all = _timed(sampled_all, runners.params["actor"], repeats=repeats)

    domain_ = domain_of(ecfg)
    seeds = (*VALIDATION_SEEDS, *TEST_SEEDS)

    def reference():
        return evaluate(domain_.heuristics[domain_.reference], ecfg, seeds)["return"]

    saved = os.environ.get("DGPG_REFERENCE_CACHE")
    with _tempfile.TemporaryDirectory() as tmp:
        os.environ["DGPG_REFERENCE_CACHE"] = tmp
        try:
            t0 = time.perf_counter()
            reference_returns(ecfg, seeds, reference)
            t_ref_cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            reference_returns(ecfg, seeds, reference)
            t_ref_cached = time.perf_counter() - t0
        finally:
            if saved is None:
                os.environ.pop("DGPG_REFERENCE_CACHE", None)
            else:
                os.environ["DGPG_REFERENCE_CACHE"] = saved
    episode_s = t_ep + t_val
    return {
        "domain": domain, "n_agents": n_agents, "algo": algo,
        "episode_seconds": episode_s,
        "greedy_test_seconds": t_greedy, "sampled_test_seconds": t_sampled,
        "sampled_all_test_seconds": t_sampled_all,
        "sampled_first_call_seconds": c_sampled,
        "reference_cold_seconds": t_ref_cold, "reference_cached_seconds": t_ref_cached,
        # before: the sampled policy on all 40 test scenarios, the reference computed by the run
        "ratio_before": (t_greedy + t_sampled_all + t_ref_cold) / episode_s,
        "ratio_cached": (t_greedy + t_sampled_all + t_ref_cached) / episode_s,
        "ratio_after": (t_greedy + t_sampled + t_ref_cached) / episode_s,
        "device": jax.devices()[0].platform,
    }


# --------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(name: str, kwargs: dict) -> dict:
    record = {"env": env_throughput, "train": train_timing, "split": episode_split,
              "test": test_evaluation_cost}[name](**kwargs)
    record["peak_rss_mb"] = peak_rss_mb()
    record["load_average"] = os.getloadavg()[0]  # > CPU count: others shared the machine
    return record


def in_fresh_process(name: str, **kwargs: object) -> dict:
    """Run one measurement ("env", "train", "split" or "test") in a new process, so that its peak
    memory and compilations are its own; returns its record with `peak_rss_mb`."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_measure, name, kwargs).result()


def fit_exponent(n_agents, seconds) -> float:
    """Least-squares slope of log(seconds) against log(N)."""
    return float(np.polyfit(np.log(np.asarray(n_agents, float)),
                            np.log(np.asarray(seconds, float)), 1)[0])
