"""Reliability: runs survive being killed, files are written atomically and verified on load,
training stops on numerical faults, and the environment refuses configurations its fixed-size
arrays cannot hold.

The kill tests run `dgpg train` through tests/train_driver.py (the configuration of
tests/test_training.py, N = 2, 2 seeds, sharing its persistent compilation cache), kill it with
SIGKILL at chosen points of its write path or after random delays, resume it, and compare the
result with an uninterrupted run. The numerical-fault tests replace the compiled training
episode by a cheap stand-in that produces a NaN or an infinity on cue.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from cli_harness import run_cli, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from dgpg import atomic, checkpoint, training
from dgpg.checkpoint import CheckpointError
from dgpg.domains.cloud.env import EnvConfig, shed_fraction
from dgpg.learners.ppo import Runner, ValueNorm
from dgpg.training import DEFAULT_RUN, RunConfig, RunError, metric_columns

METRIC_COLUMNS = metric_columns(RunConfig(**DEFAULT_RUN).env_config())

DRIVER = Path(__file__).with_name("train_driver.py")
SEEDS = (0, 1)
RUN_DICT = {"algo": "dgpg", "n_agents": 2, "seed": 0, "seeds": len(SEEDS), "alpha": 0.5,
            "model": "calibrated", "domain": "cloud", "overrides": "", "defaults": 2}
TIMEOUT = 900
RUN_FILES = {"config.json", "metrics.csv", "summary.json", "checkpoints",
             "checkpoints/last.ckpt", "checkpoints/best.ckpt"}


# --------------------------------------------------------------------------- helpers


def _train_args(episodes: int) -> list[str]:
    return ["train", "--algo", "dgpg", "--agents", "2", "--episodes", str(episodes),
            "--seed", "0", "--seeds", str(len(SEEDS)), "--alpha", "0.5"]


def _driver_env(cache: Path, kill: str | None = None) -> dict[str, str]:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    env.pop("DGPG_KILL_AT", None)
    if kill:
        env["DGPG_KILL_AT"] = kill
    return env


def _driver_cmd(out: Path, episodes: int) -> list[str]:
    cmd = [sys.executable, str(DRIVER), *_train_args(episodes), "--out", str(out)]
    if (out / "config.json").exists():  # a run was started: continue it
        cmd.append("--resume")
    return cmd


def _drive(out: Path, episodes: int, cache: Path, kill: str | None = None):
    return subprocess.run(_driver_cmd(out, episodes), capture_output=True, text=True,
                          timeout=TIMEOUT, env=_driver_env(cache, kill))


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _without_wall(x):
    if isinstance(x, list):
        return [_without_wall(r) for r in x]
    return {k: v for k, v in x.items() if k != "wall_seconds"}


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _check_consistent(out: Path, episodes: int) -> int:
    """What a killed run left must be whole: every file parses, metrics.csv holds whole episodes,
    and the checkpoint is not ahead of the metrics. Returns the checkpoint's episode (0 if
    none)."""
    for p in out.rglob("*"):
        rel = str(p.relative_to(out))
        assert rel in RUN_FILES or _is_temporary(p.name), rel
    if (out / "config.json").exists():
        assert json.loads((out / "config.json").read_text())["run"] == {
            **RUN_DICT, "episodes": episodes}
    done = 0
    if (out / "metrics.csv").exists():
        rows = _rows(out)
        done = len(rows) // len(SEEDS)
        assert [(int(r["episode"]), int(r["seed"])) for r in rows] == [
            (e, s) for e in range(1, done + 1) for s in SEEDS]
        for r in rows:
            assert set(r) == set(METRIC_COLUMNS) and all(np.isfinite(float(v))
                                                         for v in r.values())
    at = 0
    if (out / "checkpoints" / "last.ckpt").exists():
        meta, _ = checkpoint.read(out / "checkpoints" / "last.ckpt")
        at = meta["episode"]
        assert 1 <= at <= done
    if (out / "checkpoints" / "best.ckpt").exists():
        meta, _ = checkpoint.read(out / "checkpoints" / "best.ckpt")
        assert meta["episode"] <= done
    if (out / "summary.json").exists():
        assert at == episodes
        json.loads((out / "summary.json").read_text())
    return at


def _assert_same_result(out: Path, ref: Path) -> None:
    """A completed run equals the uninterrupted reference (wall times aside) and left no
    temporary files."""
    assert not [p for p in out.rglob("*") if _is_temporary(p.name)]
    assert (out / "config.json").read_bytes() == (ref / "config.json").read_bytes()
    assert _without_wall(_rows(out)) == _without_wall(_rows(ref))
    summary = json.loads((out / "summary.json").read_text())
    assert _without_wall(summary) == _without_wall(json.loads((ref / "summary.json").read_text()))
    assert ((out / "checkpoints" / "best.ckpt").read_bytes()
            == (ref / "checkpoints" / "best.ckpt").read_bytes())
    last, state = checkpoint.read(out / "checkpoints" / "last.ckpt")
    ref_last, ref_state = checkpoint.read(ref / "checkpoints" / "last.ckpt")
    assert _without_wall(last) == _without_wall(ref_last)
    assert jax.tree.structure(state) == jax.tree.structure(ref_state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_jax_cache):
    """Uninterrupted runs by episode count: {episodes: folder}, made on first use."""
    runs: dict[int, Path] = {}

    def get(episodes: int) -> Path:
        if episodes not in runs:
            out = tmp_path_factory.mktemp("reference") / "run"
            proc = _drive(out, episodes, shared_jax_cache)
            assert proc.returncode == 0, proc.stderr
            runs[episodes] = out
        return runs[episodes]

    return get


# --------------------------------------------------------------------------- 1. kill at any moment

# (kill point, what the run holds afterwards); write counts are per process
KILL_POINTS = [
    ("config.json:1:half", "nothing: config.json half written to its temporary file"),
    ("metrics.csv:1:half", "config.json; episode 1's metrics half written"),
    ("last.ckpt:1:half", "episode 1's metrics and best.ckpt; last.ckpt half written"),
    ("last.ckpt:1:renamed", "episode 1 committed, killed right after the rename"),
    ("last.ckpt:1:start", "episode 2's metrics row ahead of the episode-1 checkpoint"),
    ("summary.json:1:full", "every episode committed; summary written but not renamed"),
]


@pytest.mark.slow  # about 100 s; test_training's resume test runs by default
def test_killed_at_six_points_resumes_to_the_same_result(reference, shared_jax_cache,
                                                         tmp_path):
    """SIGKILL at six points of the write path, one per process, resuming after each: the files
    are whole after every kill, and the completed run equals an uninterrupted one."""
    episodes = 2
    ref = reference(episodes)
    out = tmp_path / "run"
    progress = []
    for kill, _ in KILL_POINTS:
        proc = _drive(out, episodes, shared_jax_cache, kill)
        assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, proc.stderr)
        progress.append(_check_consistent(out, episodes))
        if not kill.endswith("renamed"):  # the kill did leave a partial file behind
            assert [p for p in out.rglob("*") if _is_temporary(p.name)], kill
    assert progress == [0, 0, 0, 1, 1, 2]
    assert not (out / "summary.json").exists()
    proc = _drive(out, episodes, shared_jax_cache)
    assert proc.returncode == 0, proc.stderr
    _assert_same_result(out, ref)


@pytest.mark.slow
def test_killed_at_random_moments_resumes_to_the_same_result(reference, shared_jax_cache,
                                                             tmp_path):
    """Kills at random points of the write path and after random delays (anywhere: start-up,
    compiling, training, writing), resuming after each; the completed run equals an
    uninterrupted one."""
    episodes = 4
    ref = reference(episodes)
    rng = np.random.default_rng(1234)
    out = tmp_path / "run"
    t0 = time.perf_counter()
    proc = _drive(out, episodes, shared_jax_cache, kill="last.ckpt:2:half")
    reference_seconds = time.perf_counter() - t0  # a run up to episode 2, for the delays
    assert proc.returncode == -signal.SIGKILL
    kills = 1
    # random write-path kills first: files every resumed episode writes, so each one fires
    for _ in range(4):
        kill = (f"{rng.choice(['metrics.csv', 'last.ckpt'])}:1:"
                f"{rng.choice(['start', 'half', 'full', 'renamed'])}")
        proc = _drive(out, episodes, shared_jax_cache, kill)
        kills += proc.returncode == -signal.SIGKILL
        _check_consistent(out, episodes)
    for _ in range(8):  # then kills after random delays, while the run is not finished
        delay = rng.uniform(0.2, 1.0) * reference_seconds
        p = subprocess.Popen(_driver_cmd(out, episodes), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=_driver_env(shared_jax_cache))
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
        _check_consistent(out, episodes)
        if p.returncode == 0:
            break
    proc = _drive(out, episodes, shared_jax_cache)
    assert proc.returncode == 0, proc.stderr
    assert kills >= 5
    _assert_same_result(out, ref)


# --------------------------------------------------------------------------- 2. atomic, safe files


def test_atomic_write_order_and_failure(tmp_path, monkeypatch):
    """Temporary file in the same folder, fsync, rename, fsync of the folder; a failure before
    the rename leaves the old file and no temporary file."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        real_fsync(fd)

    def replace(src, dst):
        assert Path(src).parent == Path(dst).parent and Path(src).name.startswith(".")
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    target = tmp_path / "f.json"
    atomic.write_json(target, {"a": 1})
    assert events == [("fsync", "file"), ("replace", "f.json"), ("fsync", "dir")]
    assert json.loads(target.read_text()) == {"a": 1}

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken)
    for write in (lambda: atomic.write_json(target, {"a": 2}),
                  lambda: atomic.write_csv(target, [{"x": 1}], ["x"]),
                  lambda: checkpoint.save(target, {"w": np.zeros(3)}, {})):
        with pytest.raises(OSError):
            write()
        assert json.loads(target.read_text()) == {"a": 1}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_atomic_files_get_the_permissions_of_a_plain_file(tmp_path):
    """Not the 0o600 of a temporary file: results stay readable like any file written."""
    (tmp_path / "plain").write_text("x")
    atomic.write_text(tmp_path / "atomic", "x")
    checkpoint.save(tmp_path / "c.ckpt", {"w": np.zeros(1)}, {})
    mode = (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == mode
    assert (tmp_path / "c.ckpt").stat().st_mode & 0o777 == mode


def _small_checkpoint(path: Path) -> bytes:
    tree = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.int32(7),
            "key": jax.random.key(3)}
    checkpoint.save(path, tree, {"episode": 5, "best_val": [-1.5, -2.0], "note": "x"})
    return path.read_bytes()


def _template():
    return {"w": jnp.zeros((3, 4), jnp.float32), "n": jnp.zeros((), jnp.int32),
            "key": jax.random.key(0)}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    return path, _small_checkpoint(path)


def _load(path: Path):
    meta, state = checkpoint.read(path)
    return meta, checkpoint.restore(_template(), state, path)


def test_checkpoint_round_trip_and_header(good_checkpoint):
    path, data = good_checkpoint
    assert data.startswith(checkpoint.MAGIC)
    header = json.loads(data[len(checkpoint.MAGIC):].split(b"\n", 1)[0])
    assert header["format_version"] == checkpoint.FORMAT_VERSION == 2
    assert len(header["sha256"]) == 64
    meta, tree = _load(path)
    assert meta == {"episode": 5, "best_val": [-1.5, -2.0], "note": "x"}
    np.testing.assert_array_equal(tree["w"], np.arange(12).reshape(3, 4))
    assert int(tree["n"]) == 7
    np.testing.assert_array_equal(jax.random.key_data(tree["key"]),
                                  jax.random.key_data(jax.random.key(3)))


def _split(data: bytes) -> tuple[dict, bytes]:
    header_line, payload = data[len(checkpoint.MAGIC):].split(b"\n", 1)
    return json.loads(header_line), payload


def _join(header: dict, payload: bytes) -> bytes:
    return checkpoint.MAGIC + json.dumps(header).encode() + b"\n" + payload


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_or_edited_checkpoint_is_rejected(good_checkpoint, tmp_path, data):
    """Any truncation is rejected; any edit of bytes is rejected unless it leaves the contents
    the same (e.g. JSON whitespace): a checkpoint never loads something else."""
    path, good = good_checkpoint
    original = _load(path)
    kind = data.draw(st.sampled_from(["truncate", "bytes", "append"]))
    if kind == "truncate":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    elif kind == "append":
        bad = good + data.draw(st.binary(min_size=1, max_size=8))
    else:
        edits = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1),
                                             st.integers(0, 255)), min_size=1, max_size=4))
        buf = bytearray(good)
        for i, b in edits:
            buf[i] = b
        bad = bytes(buf)
    target = tmp_path / "edited.ckpt"
    target.write_bytes(bad)
    try:
        loaded = _load(target)
    except CheckpointError as e:
        assert str(target) in str(e) and "\n" not in str(e)
        return
    # accepted: only an edit that changes nothing (JSON whitespace, or a byte set to itself)
    assert kind == "bytes"
    assert loaded[0] == original[0]
    for a, b in zip(jax.tree.leaves(loaded[1]), jax.tree.leaves(original[1]), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_edited_metadata_and_versions_are_rejected(good_checkpoint, tmp_path):
    path, good = good_checkpoint
    header, payload = _split(good)
    bad = tmp_path / "bad.ckpt"
    cases = {  # an edit of the metadata alone (checksum left as it was)
        "checksum": [{**header, "meta": {**header["meta"], "episode": 6}},
                     {**header, "meta": {**header["meta"], "note": "y"}},
                     {**header, "meta": []},
                     {**header, "sha256": "0" * 64}],
        "format version": [{**header, "format_version": v} for v in (0, 3, 99, "2", None, True)],
        "corrupt checkpoint header": [{k: v for k, v in header.items() if k != "sha256"}],
    }
    for message, headers in cases.items():
        for h in headers:
            bad.write_bytes(_join(h, payload))
            with pytest.raises(CheckpointError, match=message):
                checkpoint.read(bad)
    # a format-1 file (checksum over the payload only) is still read
    import hashlib
    v1 = {**header, "format_version": 1, "sha256": hashlib.sha256(payload).hexdigest()}
    bad.write_bytes(_join(v1, payload))
    assert checkpoint.read(bad)[0] == header["meta"]


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def test_checkpoint_loading_never_executes_code(good_checkpoint, tmp_path):
    """Payloads that pickle would run, or arrays of Python objects, are refused, even with a
    matching checksum: loading is JSON and msgpack of plain arrays only."""
    _, good = good_checkpoint
    header, _ = _split(good)
    _Exploit.marker = tmp_path / "executed"
    object_array = msgpack.packb(
        {"w": msgpack.ExtType(1, msgpack.packb(((2,), "object", b"\0" * 16)))})
    payloads = [pickle.dumps({"w": _Exploit()}), pickle.dumps(_Exploit(), protocol=0),
                object_array, msgpack.packb([1, 2, 3]), msgpack.packb({"w": "text"})]
    bad = tmp_path / "bad.ckpt"
    for payload in payloads:
        digest = checkpoint._digest(2, header["meta"], payload)
        bad.write_bytes(_join({**header, "sha256": digest}, payload))
        with pytest.raises(CheckpointError):
            _load(bad)
        assert not _Exploit.marker.exists()
    # a checkpoint of another model (shape or dtype) is refused too
    checkpoint.save(bad, {"w": np.zeros((4, 3), np.float32), "n": np.int32(1),
                          "key": jax.random.key(1)}, {})
    with pytest.raises(CheckpointError, match="does not match"):
        _load(bad)
    checkpoint.save(bad, {"w": np.zeros((3, 4), np.float64), "n": np.int32(1),
                          "key": jax.random.key(1)}, {})
    with pytest.raises(CheckpointError, match="does not match"):
        _load(bad)


def _assert_one_error_line(code: int, stdout: str, stderr: str) -> str:
    """Exit 2 with one error line, the last on stderr; the lines before it, if any, are the
    progress lines `dgpg train` prints when stderr is not a terminal."""
    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("dgpg: error: "), stderr
    assert all(" N=" in line for line in lines[:-1]), stderr
    return lines[-1]


def test_cli_rejects_corrupt_checkpoints_with_exit_2(good_checkpoint, tmp_path):
    """`dgpg evaluate --checkpoint` and `dgpg train --resume` on a truncated, edited or foreign
    checkpoint: one line, exit 2, nothing changed."""
    _, good = good_checkpoint
    header, payload = _split(good)
    variants = {
        "truncated": good[: len(good) // 2],
        "flipped": good[:-5] + bytes([good[-5] ^ 1]) + good[-4:],
        "meta edited": _join({**header, "meta": {"episode": 1}}, payload),
        "random": np.random.default_rng(0).bytes(300),
        "empty": b"",
    }
    for name, data in variants.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.ckpt"
        bad.write_bytes(data)
        before = snapshot(tmp_path)
        line = _assert_one_error_line(*run_cli(["evaluate", "--agents", "2", "--checkpoint",
                                              str(bad)]))
        assert str(bad) in line, name
        assert snapshot(tmp_path) == before
    # resume: a run folder whose last.ckpt is corrupt
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = RunConfig("dgpg", 2, 3).to_json()
    atomic.write_json(run / "config.json", config)
    (run / "checkpoints" / "last.ckpt").write_bytes(variants["flipped"])
    before = snapshot(run)
    line = _assert_one_error_line(*run_cli(["train", "--agents", "2", "--episodes", "3",
                                          "--out", str(run), "--resume"]))
    assert "checksum" in line
    assert snapshot(run) == before


# --------------------------------------------------------------------------- 4. numerical faults


def _fake_init_runner(key, tcfg, ecfg) -> Runner:
    """A small runner, so that the numerical-fault tests compile next to nothing."""
    k_actor, k_run = jax.random.split(key)
    params = {"actor": {"w": jax.random.normal(k_actor, (4, 3))}, "critic": {"w": jnp.ones(2)}}
    return Runner(params=params, opt_state={"count": jnp.zeros((), jnp.int32)},
                  value_norm=ValueNorm.create(), key=k_run, episode=jnp.zeros((), jnp.int32))


@pytest.fixture
def fake_learner(monkeypatch):
    """`fake_learner(bad_episode, what)` installs the stand-ins for the training episode, the
    validator and the initial runner."""

    def install(bad_episode: int, what: str) -> None:
        training._training_programs.cache_clear()  # built from the stand-ins below
        monkeypatch.setattr(training, "init_runner", _fake_init_runner)
        monkeypatch.setattr(training, "make_train_episode", _fake_episode(bad_episode, what))
        monkeypatch.setattr(training, "make_validator", _fake_validator(bad_episode, what))

    yield install
    training._training_programs.cache_clear()  # no later run may get a stand-in's program


def _fake_episode(bad_episode: int, what: str):
    """A stand-in for the compiled training episode: finite metrics, except `what` at
    `bad_episode` (a metric name set to NaN or inf, or "params" for NaN parameters)."""

    def make(tcfg, ecfg):
        def train_episode(runner):
            episode = runner.episode + 1
            bad = episode == bad_episode
            metrics = {k: -0.1 * episode.astype(jnp.float32) for k in METRIC_COLUMNS
                       if k not in ("episode", "seed", "val_return", "wall_seconds")}
            if what in metrics:
                value = jnp.inf if what == "return" else jnp.nan
                metrics[what] = jnp.where(bad, value, metrics[what])
            params = runner.params
            if what == "params":
                params = jax.tree.map(lambda x: jnp.where(bad, jnp.nan, x), params)
            return runner.replace(params=params, episode=episode), metrics

        return train_episode

    return make


def _fake_validator(bad_episode: int, what: str):
    def make(tcfg, ecfg, seeds):
        count = [0]

        def validate(actor):
            count[0] += 1
            value = np.nan if (what == "val_return" and count[0] == bad_episode) else count[0]
            return np.full((len(SEEDS), 3), value, np.float64)  # improves every episode

        return validate

    return make


@pytest.mark.parametrize("what", ["return", "policy_loss", "val_return", "params"])
def test_non_finite_values_stop_training_and_keep_the_last_good_checkpoint(
        tmp_path, fake_learner, what):
    bad_episode = 3
    fake_learner(bad_episode, what)
    run = RunConfig("dgpg", 2, 5, seeds=len(SEEDS))
    out = tmp_path / "run"
    after: dict[int, dict] = {}
    with pytest.raises(RunError) as info:
        training.train(out, run, on_episode=lambda e, s: after.update({e: snapshot(out)}))
    message = str(info.value)
    assert f"episode {bad_episode}" in message and "episode 2) is kept" in message
    assert ("network parameters" if what == "params" else what) in message
    assert sorted(after) == [1, 2]
    assert snapshot(out) == after[2]  # nothing of episode 3 was written
    meta, _ = checkpoint.read(out / "checkpoints" / "last.ckpt")
    assert meta["episode"] == 2
    assert {int(r["episode"]) for r in _rows(out)} == {1, 2}


def test_non_finite_reward_through_the_cli_is_one_line(tmp_path, fake_learner):
    fake_learner(1, "return")
    out = tmp_path / "run"
    line = _assert_one_error_line(*run_cli(["train", "--agents", "2", "--episodes", "4",
                                          "--seeds", "2", "--out", str(out)]))
    assert "episode 1" in line and "non-finite return" in line
    assert "no checkpoint was written" in line
    assert not (out / "checkpoints" / "last.ckpt").exists()


# --------------------------------------------------------------------------- environment arrays


def test_env_config_rejects_configurations_that_overflow_its_arrays():
    cases = {
        "jobs_per_step=2 is too small": {"jobs_per_step": 2},
        "jobs_per_step=8 is too small for arrival_rate=5": {"arrival_rate": 5.0},
        "slots=20 is too small": {"slots": 20},
        "tide_noise must be <= 1": {"tide_noise": 3.0},
        "episode_steps must be < 2\\*\\*31": {"episode_steps": 2**31},
        "too large for the environment's": {"n_agents": 10**7},
        "tide_period must be in": {"tide_period": 1e-30},
        "overload_weight must be <=": {"overload_weight": 1e40},
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match=message):
            EnvConfig(**kwargs)
    default = EnvConfig()
    assert default.shed_fraction_at_peak() < 1e-3
    assert default.slots >= 1.5 * default.peak_running_per_server()
    EnvConfig(arrival_rate=2.0)  # twice the load still fits the default arrays
    EnvConfig(arrival_rate=0.0, slots=1, jobs_per_step=1)


@pytest.mark.parametrize(("lam", "jobs"), [(1.8, 8), (4.0, 8), (3.0, 4), (20.0, 32)])
def test_shed_fraction_matches_simulation(lam, jobs):
    n = stats.poisson(lam).rvs(size=400_000, random_state=np.random.default_rng(0))
    simulated = np.maximum(n - jobs, 0).sum() / n.sum()
    assert shed_fraction(lam, jobs) == pytest.approx(simulated, rel=0.05, abs=2e-5)


_number = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True,
                                                            allow_infinity=True),
                    st.booleans(), st.none(), st.text(max_size=3), st.just(10**400))


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(
    st.sampled_from([f.name for f in dataclasses.fields(EnvConfig)]),
    _number, min_size=1, max_size=4))
def test_env_config_accepts_only_what_its_arrays_hold(fields):
    """Random field values: either a ValueError with a one-line message, or a configuration
    whose arrays hold the load (shedding at most 1 % at the peak, slots to spare)."""
    try:
        cfg = EnvConfig(**fields)
    except ValueError as e:
        assert str(e) and "\n" not in str(e) and len(str(e)) < 400
        return
    assert cfg.shed_fraction_at_peak() <= 0.01
    assert cfg.slots >= 1.5 * cfg.peak_running_per_server()
    assert cfg.n_servers * cfg.slots < 2**31
