"""Sweep runner: an experiment is a grid of tasks, each stored in its own folder as it finishes.

A task is a frozen dataclass with a stable `key` (its folder name under `OUT/runs/`) and an
`execute(folder)` that writes its result file last, atomically. The training task, `RunSpec`,
is one (algorithm, N, alpha) point of a grid with `seeds` seeds trained at once in one process
(`vmap`): on 2 cores that is far cheaper than one process per seed, and seeds stay together in
the figures. Other experiments define their own tasks (gradient samples, heuristic evaluations).

Restart semantics: a task whose result file is present and valid is finished and skipped; any
other folder is resumed (a training run continues from its last checkpoint, see
`dgpg.training`) or, when it holds nothing resumable, started again. Killing a sweep at any
moment therefore loses at most the unfinished work of the runs in flight, and running it again
does only what is missing; the results equal those of an uninterrupted sweep.

Backends:
    local  a process pool (spawn: JAX is not fork-safe); each worker dies with the sweep.
    ray    the same tasks as Ray tasks on an existing cluster (`ray.init(address=...)`), or on a
           local Ray instance when no address is given. A task's folder is shipped to the
           worker and the finished folder shipped back, so no shared file system is needed;
           the unfinished work of a task in flight is lost if the sweep is killed.

Every process that runs tasks uses JAX's persistent compilation cache (`DGPG_JAX_CACHE`, by
default ~/.cache/dgpg/jax; `off` turns it off): runs of the same shapes then compile once, not
once per process.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from dgpg import atomic
from dgpg.config import overrides_json, parse_overrides  # noqa: F401 (re-exported)
from dgpg.domains import DEFAULT_DOMAIN, registered_specs

BACKENDS = ("local", "ray")
RUNS = "runs"


class SweepError(Exception):
    """A sweep cannot run, or some of its tasks failed (finished ones are kept)."""


class Task(Protocol):
    """One grid point. Frozen dataclass of plain fields (picklable, hashable)."""

    @property
    def key(self) -> str:
        """Stable folder name, unique within a grid."""
        ...

    def execute(self, folder: Path) -> dict[str, Any]:
        """Do the work in `folder` (resuming what is there); write the result file last."""
        ...

    def result(self, folder: Path) -> dict[str, Any] | None:
        """The stored result if the task is finished (result file present and valid)."""
        ...

    def progress(self, folder: Path) -> tuple[int, int]:
        """(units done, units in all), for progress display."""
        ...


# --------------------------------------------------------------------------- compilation cache


def default_cache_dir() -> Path:
    """`DGPG_JAX_CACHE`, else $XDG_CACHE_HOME/dgpg/jax, else ~/.cache/dgpg/jax."""
    if folder := os.environ.get("DGPG_JAX_CACHE"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgpg" / "jax"


# Closed-over arrays (a trained actor in an evaluation) become arguments of the compiled
# function instead of constants embedded in it, so evaluating another actor of the same shapes
# hits the cache. JAX reads this flag when it is imported: it only takes effect in processes
# that set it first (the sweep's workers do).
JAX_ENV = {"JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS": "1"}


def enable_compilation_cache(path: str | os.PathLike | None = None,
                             arrays_as_arguments: bool = True) -> None:
    """Turn on JAX's persistent compilation cache for this process (unless one is set already;
    `default_cache_dir()` by default). `DGPG_JAX_CACHE=off` turns it off. `arrays_as_arguments`
    sets `JAX_ENV` (before JAX is imported), which pays off when many actors of the same shapes
    are evaluated (sweeps) and costs a single run some compile time."""
    if path is None and os.environ.get("DGPG_JAX_CACHE") == "off":
        return
    if arrays_as_arguments and "jax" not in sys.modules:
        for name, value in JAX_ENV.items():
            os.environ.setdefault(name, value)
    import jax

    if not jax.config.jax_compilation_cache_dir:
        folder = Path(path) if path is not None else default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


# --------------------------------------------------------------------------- training task


def env_config(n_agents: int, overrides: str = "", domain: str = DEFAULT_DOMAIN):
    """The environment configuration a run with these overrides trains and is evaluated on."""
    from dgpg.config import make_env_config

    return make_env_config(n_agents, parse_overrides(overrides)["env"], domain)


def canonical_overrides(overrides: str, domain: str = DEFAULT_DOMAIN) -> str:
    """The overrides as task keys see them: the env overrides as the domain's `sweep_key` names
    them (RoadNet: a TNTP network as its file name and digest, not its path, so that the same
    run has the same key wherever the files lie); the others unchanged."""
    from dgpg.domains import get_spec, load_object

    spec = get_spec(domain)
    data = parse_overrides(overrides)
    if spec.sweep_key is None or not data["env"]:
        return overrides
    data["env"] = load_object(spec.sweep_key, f"the sweep key of domain {domain}")(data["env"])
    return overrides_json(**data)


def overrides_digest(overrides: str, domain: str = DEFAULT_DOMAIN) -> str:
    """8 hex digits that name a run's overrides in its key (`canonical_overrides`)."""
    return hashlib.sha256(canonical_overrides(overrides, domain).encode()).hexdigest()[:8]


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class RunSpec:
    """A training run as a sweep task: a `RunConfig` (`run`), whose `seeds` seeds (seed,
    seed + 1, ...) `dgpg.training.train` trains together into the task's folder, named by its
    `key`. Built from the run's fields (`RunSpec("dgpg", 50, 100, overrides=...)`, the train and
    env fields that differ from the defaults as `overrides_json` text) or from a RunConfig
    (`RunSpec.of(run)`); the run's fields read through (`spec.algo`, `spec.overrides`). MAPPO
    and IPPO ignore alpha; it is stored as 0 for them so that equal runs have equal keys.
    Built from fields, a run is of defaults generation `defaults`, 1 unless given: the
    experiments whose committed runs were trained before generation 2 stay comparable with
    them (`dgpg.config.DEFAULTS`)."""

    run: Any
    """The `dgpg.config.RunConfig` of the run."""

    def __init__(self, algo: str, n_agents: int, episodes: int, alpha: float = 0.5,
                 seed: int = 0, seeds: int = 1, overrides: str = "", model: str | None = "aligned",
                 domain: str = DEFAULT_DOMAIN, defaults: int = 1) -> None:
        from dgpg.config import ConfigError, RunConfig

        try:
            extra = parse_overrides(overrides)
            run = RunConfig(algo=algo, n_agents=n_agents, episodes=episodes, seed=seed,
                            seeds=seeds, alpha=0.0 if algo != "dgpg" else alpha, model=model,
                            domain=domain, train=extra["train"], env=extra["env"],
                            defaults=defaults)
        except ConfigError as e:
            raise ValueError(f"bad run configuration: {e}") from None
        object.__setattr__(self, "run", run)

    @classmethod
    def of(cls, run: Any) -> RunSpec:
        """The task of a RunConfig (its alpha set to 0 for MAPPO and IPPO)."""
        spec = cls.__new__(cls)
        if run.algo != "dgpg" and run.alpha != 0.0:
            run = dataclasses.replace(run, alpha=0.0)
        object.__setattr__(spec, "run", run)
        return spec

    def arguments(self) -> dict[str, Any]:
        """The constructor's arguments that make this task (JSON-serialisable):
        `RunSpec(**spec.arguments()) == spec`."""
        run = self.run
        return {"algo": run.algo, "n_agents": run.n_agents, "episodes": run.episodes,
                "alpha": run.alpha, "seed": run.seed, "seeds": run.seeds,
                "overrides": run.overrides, "model": run.model, "domain": run.domain,
                "defaults": run.defaults}

    def __repr__(self) -> str:  # evaluable: the constructor's arguments
        return "RunSpec(" + ", ".join(f"{k}={v!r}" for k, v in self.arguments().items()) + ")"

    def __getattr__(self, name: str) -> Any:  # the run's fields and its overrides text
        if name == "run":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.run, name)

    @property
    def key(self) -> str:
        run = self.run
        key = (f"{run.algo}_n{run.n_agents}_a{run.alpha:g}_e{run.episodes}"
               f"_s{run.seed}x{run.seeds}")
        if overrides := run.overrides:
            key += "_" + overrides_digest(overrides, run.domain)
        if run.model not in ("fluid", "none"):  # runs of the fluid model predate the option
            key += f"_{run.model}"
        if run.domain != DEFAULT_DOMAIN:  # the default domain's runs predate the option
            key += f"_{run.domain}"
        if run.defaults > 1:  # generation 1's runs predate generations
            key += f"_g{run.defaults}"
        return key

    def run_config(self):
        """The run's `RunConfig`."""
        return self.run

    def result(self, folder: Path) -> dict[str, Any] | None:
        from dgpg.config import read_summary

        summary = read_summary(folder / "summary.json")
        expected = {"algo": self.algo, "n_agents": self.n_agents, "episodes": self.episodes,
                    "seeds": self.seeds}
        if self.domain != DEFAULT_DOMAIN:
            expected["domain"] = self.domain
        if not isinstance(summary, dict) or any(summary.get(k) != v for k, v in expected.items()):
            return None
        if not all(k in summary for k in ("test_return", "test_return_ci", "best_val_return")):
            return None
        return summary

    def execute(self, folder: Path) -> dict[str, Any]:
        from dgpg.training import train

        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "config.json").exists():
            _clear(folder)  # killed before the run wrote its configuration: nothing to keep
        elif (folder / "summary.json").exists() and self.result(folder) is None:
            (folder / "summary.json").unlink()  # unreadable: evaluate again from the checkpoints
        resume = (folder / "config.json").exists()
        return train(folder, self.run_config(), resume=resume)

    def progress(self, folder: Path) -> tuple[int, int]:
        try:
            with (folder / "metrics.csv").open() as f:
                rows = sum(1 for _ in f) - 1
        except OSError:
            rows = 0
        return min(max(rows, 0) // self.seeds, self.episodes), self.episodes


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# --------------------------------------------------------------------------- running one task


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on a task folder (a sibling lock file), so that two processes never work
    in the same folder at once (e.g. a restarted sweep and a straggler of the killed one)."""
    import fcntl

    locks = folder.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{folder.name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def execute(task: Task, folder: Path) -> dict[str, Any]:
    """Run `task` in `folder` unless it is finished there; returns its result."""
    enable_compilation_cache()
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder):
        done = task.result(folder)
        if done is not None:
            return done
        return task.execute(folder)


def _register(specs: Sequence[Any]) -> None:
    """Add the domains registered in the sweep's own process (`dgpg.domains.register`) to this
    worker; installed domains it finds through their entry points."""
    from dgpg.domains import register

    for spec in specs:
        register(spec, replace=True)


def _worker_init(specs: Sequence[Any] = ()) -> None:
    """Pool worker set-up: die with the sweep process; compilation cache; the sweep's
    registered domains."""
    _register(specs)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    enable_compilation_cache()


# --------------------------------------------------------------------------- the grid


@dataclasses.dataclass
class SweepReport:
    """What a sweep did: results by key, and which tasks were already finished before."""

    results: dict[str, dict[str, Any]]
    skipped: list[str]
    ran: list[str]
    seconds: float


def task_folder(out: Path, task: Task) -> Path:
    return Path(out) / RUNS / task.key


def load_results(tasks: Sequence[Task], out: Path) -> dict[str, dict[str, Any] | None]:
    """Stored result (or None) of every task, by key."""
    return {t.key: t.result(task_folder(out, t)) for t in tasks}


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


ProgressFn = Callable[[dict[str, Any]], None]


def run_grid(
    tasks: Sequence[Task],
    out: str | os.PathLike,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: ProgressFn | None = None,
) -> SweepReport:
    """Run every task of the grid that is not finished under `out/runs/`; returns the results.

    `progress(event)` receives dicts with `total`, `finished` (tasks) and, when known,
    `units_done` / `units_total` (e.g. training episodes) and `last` (key of a finished task).
    Tasks that fail do not stop the others; a SweepError lists them at the end.
    """
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    t0 = time.perf_counter()
    unique: dict[str, Task] = {}
    for t in tasks:
        if unique.setdefault(t.key, t) != t:
            raise SweepError(f"two different tasks share the key {t.key!r}")
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    results = {k: v for k, v in load_results(list(unique.values()), out).items() if v is not None}
    skipped = list(results)
    pending = [t for k, t in unique.items() if k not in results]
    state = _Progress(unique, out, progress)
    state.emit(results)
    failures: dict[str, str] = {}
    if pending:
        runner = _run_local if backend == "local" else _run_ray
        runner(pending, out, workers, address, results, failures, state)
    ran = [t.key for t in pending if t.key in results]
    if failures:
        detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
        raise SweepError(f"{len(failures)} of {len(unique)} runs failed (finished runs are kept "
                         f"under {out / RUNS}; run again to retry): {detail}")
    return SweepReport(results={k: results[k] for k in unique}, skipped=skipped, ran=ran,
                       seconds=time.perf_counter() - t0)


class _Progress:
    def __init__(self, tasks: dict[str, Task], out: Path, fn: ProgressFn | None):
        self.tasks, self.out, self.fn = tasks, out, fn

    def emit(self, results: dict[str, Any], last: str | None = None) -> None:
        if self.fn is None:
            return
        done = total = 0
        for key, task in self.tasks.items():
            d, n = task.progress(self.out / RUNS / key)
            done += n if key in results else d
            total += n
        self.fn({"total": len(self.tasks), "finished": len(results), "units_done": done,
                 "units_total": total, "last": last})


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def _run_local(pending, out, workers, address, results, failures, state) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = min(workers or default_workers(), len(pending))
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                initargs=(registered_specs(),)) as pool:
        futures = {pool.submit(execute, t, task_folder(out, t)): t for t in pending}
        try:
            remaining = set(futures)
            while remaining:
                done, remaining = cf.wait(remaining, timeout=2.0,
                                          return_when=cf.FIRST_COMPLETED)
                last = None
                for f in done:
                    task = futures[f]
                    try:
                        results[task.key] = f.result()
                        last = task.key
                    except cf.process.BrokenProcessPool:
                        failures[task.key] = "a worker process died (killed, or out of memory)"
                    except Exception as e:  # noqa: BLE001 - reported with the task's key
                        failures[task.key] = _one_line(e)
                state.emit(results, last)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


# --------------------------------------------------------------------------- Ray


def _read_folder(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _ray_execute(task: Task, files: dict[str, bytes], specs: Sequence[Any] = ()
                 ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Body of a Ray task: rebuild the task's folder locally, run it, ship the folder back."""
    _register(specs)
    with tempfile.TemporaryDirectory(prefix="dgpg-") as tmp:
        folder = Path(tmp) / task.key
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        result = execute(task, folder)
        return result, _read_folder(folder)


def _write_back(task: Task, folder: Path, files: dict[str, bytes]) -> None:
    """Store a finished task's folder; its result file (the last written by the task, and the
    one `task.result` checks) goes last so a kill mid-way leaves an unfinished folder."""
    order = sorted(files, key=lambda rel: rel in ("summary.json", "result.json"))
    for rel in order:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(folder / rel, files[rel])


def _run_ray(pending, out, workers, address, results, failures, state) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("the ray backend needs Ray: pip install -e '.[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            kwargs = ({"address": address} if address
                      else {"num_cpus": workers or default_workers()})
            ray.init(log_to_driver=False, include_dashboard=False,
                     runtime_env={"env_vars": dict(JAX_ENV)}, **kwargs)
        except Exception as e:  # noqa: BLE001 - connection problems are user errors
            raise SweepError(f"cannot connect to Ray at {address or 'a local instance'}: "
                             f"{_one_line(e)}") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)
        queue = list(pending)
        inflight: dict[Any, Task] = {}
        window = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        while queue or inflight:
            while queue and len(inflight) < window:
                task = queue.pop(0)
                inflight[remote.remote(task, _read_folder(task_folder(out, task)),
                                       registered_specs())] = task
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=2.0)
            last = None
            for ref in done:
                task = inflight.pop(ref)
                try:
                    result, files = ray.get(ref)
                    _write_back(task, task_folder(out, task), files)
                    results[task.key] = result
                    last = task.key
                except Exception as e:  # noqa: BLE001 - reported with the task's key
                    failures[task.key] = _one_line(getattr(e, "cause", None) or e)
            state.emit(results, last)
    finally:
        if started:
            ray.shutdown()
