"""Training runs (`dgpg train`): determinism, resume, several seeds, refusing to overwrite a run,
checkpoints and their corruption, convergence counting, and the CLI's handling of bad input.

For speed, the module trains with 2 update epochs of 2 minibatches (RunConfig.train_config is
monkeypatched; the network keeps its default width so the CLI can load a checkpoint in a
subprocess) and tests on the first 10 test scenarios. Every run has the same shapes (N = 2,
2 seeds): later runs in this process reuse the first run's compiled programs (`train` keeps one
per configuration), and the CLI subprocess loads them from the session's persistent compilation
cache.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_harness import run_cli
from jax.experimental.compilation_cache import compilation_cache

from dgpg import checkpoint, training
from dgpg.checkpoint import CheckpointError
from dgpg.config import DEFAULTS, upgrade_run_dict
from dgpg.evaluation import TEST_SEEDS, VALIDATION_SEEDS
from dgpg.learners.ppo import TrainConfig
from dgpg.training import (
    CONVERGENCE_WINDOW,
    DEFAULT_RUN,
    RunConfig,
    RunError,
    episodes_to_converge,
    episodes_to_settle,
    load_actor,
    make_validator,
    metric_columns,
    train,
)

METRIC_COLUMNS = metric_columns(RunConfig(**DEFAULT_RUN).env_config())

EPISODES = 4
RUN = RunConfig(algo="dgpg", n_agents=2, episodes=EPISODES, seed=0, seeds=2, alpha=0.5)
N_TEST = 10
CLI_TIMEOUT = 300


def _small_train(self: RunConfig) -> TrainConfig:
    model = {"model": self.model} if self.algo == "dgpg" else {}
    return TrainConfig(algo=self.algo, alpha=self.alpha, update_epochs=2, num_minibatches=2,
                       **model)


@pytest.fixture(scope="module", autouse=True)
def jax_cache(shared_jax_cache):
    """Small configurations and a persistent compilation cache (shared with
    tests/test_reliability.py, whose runs have the same configuration); yields the cache
    folder."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    saved = {name: getattr(jax.config, name) for name in names}
    cache = shared_jax_cache
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunConfig, "train_config", _small_train)
        mp.setattr(training, "TEST_SEEDS", TEST_SEEDS[:N_TEST])
        yield cache
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory):
    """An uninterrupted run of RUN: (folder, summary)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    summary = train(out, RUN)
    return out, summary


def _rows(path: Path) -> list[dict[str, str]]:
    with (path / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _without_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgpg.cli", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT, cwd=cwd)


def _assert_one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dgpg: error:"), proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- runs


def test_run_writes_one_row_per_episode_and_seed(ref_run):
    out, summary = ref_run
    with (out / "metrics.csv").open(newline="") as f:
        assert next(csv.reader(f)) == list(METRIC_COLUMNS)
    rows = _rows(out)
    assert [(int(r["episode"]), int(r["seed"])) for r in rows] == [
        (e, s) for e in range(1, EPISODES + 1) for s in (0, 1)
    ]
    for r in rows:
        for k in METRIC_COLUMNS:
            assert np.isfinite(float(r[k])), (k, r)
    # the two seeds are different runs
    assert [r["return"] for r in rows[0::2]] != [r["return"] for r in rows[1::2]]
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.csv", "checkpoints",
                                               "summary.json"}
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"last.ckpt", "best.ckpt"}

    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2 and summary["episodes"] == EPISODES
    assert summary["algo"] == "dgpg" and summary["alpha"] == 0.5
    assert [s["seed"] for s in summary["per_seed"]] == [0, 1]
    for s in summary["per_seed"]:
        assert np.isfinite(s["test_return"])
        best = max(float(r["val_return"]) for r in rows if int(r["seed"]) == s["seed"])
        assert s["best_val_return"] == pytest.approx(best, rel=1e-9)
    assert summary["test_return"] == pytest.approx(
        np.mean([s["test_return"] for s in summary["per_seed"]]), rel=1e-6)
    saved = json.loads((out / "config.json").read_text())
    assert saved["run"] == {"algo": "dgpg", "n_agents": 2, "episodes": EPISODES, "seed": 0,
                            "seeds": 2, "alpha": 0.5, "model": "calibrated", "domain": "cloud",
                            "overrides": "", "defaults": DEFAULTS}
    assert saved["train"]["update_epochs"] == 2 and saved["env"]["n_agents"] == 2


def test_same_config_gives_identical_run_and_compiles_nothing_after_episode_1(ref_run,
                                                                               tmp_path):
    """Training RUN again gives the same rows, summary and best checkpoint; episodes after the
    first trace and compile nothing (the compile count is flat), and a further run of the same
    configuration in this process traces and compiles nothing at all."""
    from dgpg.bench import CompileLog

    out, summary = ref_run
    marks = []
    training._training_programs.cache_clear()  # as in a new process: episode 1 traces
    with CompileLog() as log:
        again = train(tmp_path / "again", RUN,
                      on_episode=lambda e, s: marks.append(log.count + log.traces))
    assert len(marks) == EPISODES
    assert marks[0] > 0  # the first episode traced its functions: the log sees them
    assert marks[1:] == [marks[0]] * (EPISODES - 1), marks
    with CompileLog() as log:
        third = train(tmp_path / "third", RUN)
    assert (log.count, log.traces) == (0, 0)
    assert third["test_return"] == summary["test_return"]
    assert _without_wall(_rows(tmp_path / "again")) == _without_wall(_rows(out))
    drop = {"wall_seconds"}
    assert {k: v for k, v in again.items() if k not in drop} == {
        k: v for k, v in summary.items() if k not in drop}
    # the best checkpoint holds no wall time: byte for byte the same
    assert ((tmp_path / "again" / "checkpoints" / "best.ckpt").read_bytes()
            == (out / "checkpoints" / "best.ckpt").read_bytes())


def test_resume_equals_uninterrupted_run(ref_run, tmp_path):
    out, summary = ref_run
    run_dir = tmp_path / "resumed"
    assert train(run_dir, RUN, stop_after=2) is None
    rows = _rows(run_dir)
    assert [(int(r["episode"]), int(r["seed"])) for r in rows] == [(1, 0), (1, 1), (2, 0),
                                                                   (2, 1)]
    assert not (run_dir / "summary.json").exists()
    # a crash after writing episode 3's metrics but before its checkpoint: the row is dropped
    with (run_dir / "metrics.csv").open("a", newline="") as f:
        f.write("3,0," + ",".join(["-1.0"] * (len(METRIC_COLUMNS) - 2)) + "\n")

    resumed = train(run_dir, RUN, resume=True)
    assert _without_wall(_rows(run_dir)) == _without_wall(_rows(out))
    assert resumed["test_return"] == summary["test_return"]
    assert resumed["per_seed"] == summary["per_seed"]
    assert resumed["episodes_to_converge"] == summary["episodes_to_converge"]
    # resuming a finished run changes nothing and returns its summary
    before = _snapshot(run_dir)
    assert train(run_dir, RUN, resume=True) == resumed
    assert _snapshot(run_dir) == before


def test_refuses_to_overwrite_a_run(ref_run, tmp_path):
    out, _ = ref_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = _snapshot(copy)
    with pytest.raises(RunError, match="already holds a run"):
        train(copy, RUN)
    assert _snapshot(copy) == before
    for other in (RunConfig("dgpg", 2, EPISODES, seeds=2, alpha=0.3),
                  RunConfig("dgpg", 2, EPISODES, seeds=2, model="fluid"),
                  RunConfig("mappo", 2, EPISODES, seeds=2),
                  RunConfig("dgpg", 2, EPISODES, seeds=1),
                  RunConfig("dgpg", 3, EPISODES, seeds=2)):
        with pytest.raises(RunError, match="another configuration"):
            train(copy, other, resume=True)
        assert _snapshot(copy) == before
    with pytest.raises(RunError, match="nothing to resume"):
        train(tmp_path / "empty", RUN, resume=True)
    # a folder holding only metrics.csv is also a run
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "metrics.csv").write_bytes(b"episode,seed\n1,0\n")
    with pytest.raises(RunError):
        train(partial, RUN)
    assert _snapshot(partial) == {"metrics.csv": b"episode,seed\n1,0\n"}


def test_checkpoints_record_the_model(ref_run):
    out, summary = ref_run
    assert RUN.model == "calibrated" and summary["model"] == "calibrated"
    for name in ("best.ckpt", "last.ckpt"):
        meta, _ = checkpoint.read(out / "checkpoints" / name)
        assert meta["config"]["run"]["model"] == "calibrated"
        assert meta["config"]["train"]["model"] == "calibrated"
    tcfg, _, _ = load_actor(out)
    assert tcfg.model == "calibrated"


def test_runs_without_a_model_are_fluid_runs():
    """Configurations written before the model was an option trained DG-PG with the fluid
    model; MAPPO and IPPO record none whatever is asked."""
    old = {"algo": "dgpg", "n_agents": 2, "episodes": 3, "seed": 0, "seeds": 1, "alpha": 0.5}
    assert RunConfig(**upgrade_run_dict(old)).model == "fluid"
    assert upgrade_run_dict({**old, "algo": "mappo"})["model"] == "none"
    assert RunConfig("mappo", 2, 3, model="fluid").model == "none"
    assert RunConfig("dgpg", 2, 3).model == "calibrated"
    with pytest.raises(ValueError, match="unknown model"):
        RunConfig("dgpg", 2, 3, model="waterfill")


# --------------------------------------------------------------------------- checkpoints


def test_load_actor_restores_the_best_actor(ref_run):
    out, summary = ref_run
    tcfg, actor, meta = load_actor(out)
    assert tcfg == RUN.train_config()
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(actor))
    assert meta["config"]["run"]["algo"] == "dgpg"
    # the restored actors have exactly the validation returns recorded for them
    validate = make_validator(tcfg, RUN.env_config(), VALIDATION_SEEDS)
    val = np.asarray(validate(actor), np.float64).mean(axis=1)
    np.testing.assert_allclose(val, meta["best_val"], rtol=1e-6)
    np.testing.assert_allclose(val, [s["best_val_return"] for s in summary["per_seed"]],
                               rtol=1e-6)
    assert meta["actors"] == "best"
    # last.ckpt (the resume state) holds the same best actor
    _, from_last, last_meta = load_actor(out / "checkpoints" / "last.ckpt", final=False)
    assert last_meta["actors"] == "best"
    for a, b in zip(jax.tree.leaves(actor), jax.tree.leaves(from_last), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_load_actor_gives_the_final_actor_of_last_ckpt(ref_run):
    """A last.ckpt (or a run folder with final=True) gives the actors after the last episode,
    whose validation returns are the last episode's in metrics.csv; a best.ckpt has none."""
    out, summary = ref_run
    last = out / "checkpoints" / "last.ckpt"
    _, final, meta = load_actor(last)
    _, from_folder, folder_meta = load_actor(out, final=True)
    assert meta["actors"] == folder_meta["actors"] == "final"
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(from_folder), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    validate = make_validator(RUN.train_config(), RUN.env_config(), VALIDATION_SEEDS)
    val = np.asarray(validate(final), np.float64).mean(axis=1)
    last_rows = [float(r["val_return"]) for r in _rows(out) if int(r["episode"]) == EPISODES]
    np.testing.assert_allclose(val, last_rows, rtol=1e-6)
    np.testing.assert_allclose(val, [s["last_val_return"] for s in summary["per_seed"]],
                               rtol=1e-6)
    # in this run no seed's best validation return is its last episode's: different actors
    assert not any(s["final_is_best"] for s in summary["per_seed"])
    assert not training.same_actor_per_seed(final, load_actor(out)[1]).any()
    with pytest.raises(CheckpointError, match="only the best-on-validation actors"):
        load_actor(out / "checkpoints" / "best.ckpt", final=True)


def _corrupt(kind: str, good: bytes, path: Path) -> Path:
    header_end = good.index(b"\n", len(checkpoint.MAGIC)) + 1
    if kind == "missing":
        return path.parent / "does-not-exist.ckpt"
    if kind == "truncated":
        path.write_bytes(good[: header_end + (len(good) - header_end) // 2])
    elif kind == "truncated_header":
        path.write_bytes(good[: header_end - 10])
    elif kind == "flipped":
        data = bytearray(good)
        i = header_end + (len(good) - header_end) // 3
        data[i] ^= 0x01
        path.write_bytes(bytes(data))
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [("truncated", "checksum"), ("truncated_header", "corrupt"), ("flipped", "checksum"),
     ("random", "not a dgpg checkpoint"), ("empty", "not a dgpg checkpoint"),
     ("missing", "not found")],
)
def test_corrupt_checkpoint_raises(ref_run, tmp_path, kind, message):
    out, _ = ref_run
    good = (out / "checkpoints" / "best.ckpt").read_bytes()
    bad = _corrupt(kind, good, tmp_path / "bad.ckpt")
    for load in (checkpoint.read, load_actor):
        with pytest.raises(CheckpointError, match=message) as info:
            load(bad)
        assert str(bad) in str(info.value)


def test_checkpoint_of_another_model_raises(tmp_path):
    meta = {"config": RUN.to_json()}
    wrong_tree = tmp_path / "wrong_tree.ckpt"
    checkpoint.save(wrong_tree, {"actor": {"params": {"w": np.zeros(3, np.float32)}}}, meta)
    with pytest.raises(CheckpointError, match="does not match"):
        load_actor(wrong_tree)
    no_config = tmp_path / "no_config.ckpt"
    checkpoint.save(no_config, {"actor": {"w": np.zeros(3, np.float32)}}, {"episode": 1})
    with pytest.raises(CheckpointError, match="no valid run configuration"):
        load_actor(no_config)
    with pytest.raises(CheckpointError, match="not found"):
        load_actor(tmp_path)  # a folder without checkpoints/best.ckpt


def test_cli_evaluate_bad_checkpoint(ref_run, tmp_path):
    out, _ = ref_run
    bad = _corrupt("flipped", (out / "checkpoints" / "best.ckpt").read_bytes(),
                   tmp_path / "bad.ckpt")
    line = _assert_one_error_line(_cli("evaluate", "--agents", "3", "--checkpoint", str(bad)))
    assert "checksum" in line and str(bad) in line


def test_cli_evaluate_checkpoint(ref_run):
    """`dgpg evaluate --checkpoint RUN_DIR` evaluates at the run's own N (from the checkpoint)
    and reproduces the summary's per-seed test returns (another N: tests/test_transfer.py)."""
    out, summary = ref_run
    code, stdout, stderr = run_cli(["evaluate", "--scenarios", str(N_TEST), "--checkpoint",
                                    str(out), "--json"])
    assert code == 0, stderr
    records = json.loads(stdout)
    assert [r["policy"] for r in records] == ["dgpg (seed 0)", "dgpg (seed 1)"]
    for r, s in zip(records, summary["per_seed"], strict=True):
        assert r["n_agents"] == RUN.n_agents and r["scenarios"] == N_TEST
        assert r["return"]["mean"] == pytest.approx(s["test_return"], rel=1e-6)


def test_cli_evaluate_last_checkpoint_evaluates_the_final_policies(ref_run, tmp_path):
    """`dgpg evaluate --checkpoint RUN/checkpoints/last.ckpt` (or `RUN --final`) evaluates each
    seed's final policy, named so, and reproduces the summary's final test returns, which differ
    from the best checkpoint's in this run; a best.ckpt with --final is one error line."""
    out, summary = ref_run
    found = {}
    for args in (["--checkpoint", str(out / "checkpoints" / "last.ckpt")],
                 ["--checkpoint", str(out), "--final"]):
        code, stdout, stderr = run_cli(["evaluate", "--scenarios", str(N_TEST), *args,
                                        "--json"])
        assert code == 0, stderr
        records = json.loads(stdout)
        assert [r["policy"] for r in records] == ["dgpg (seed 0, final)", "dgpg (seed 1, final)"]
        found[args[-1]] = [r["return"]["mean"] for r in records]
    assert found["--final"] == found[str(out / "checkpoints" / "last.ckpt")]
    for value, s in zip(found["--final"], summary["per_seed"], strict=True):
        assert value == pytest.approx(s["final_test_return"], rel=1e-6)
        assert abs(value - s["test_return"]) > 1e-3 * abs(s["test_return"])  # not the best's
    code, _, stderr = run_cli(["evaluate", "--checkpoint", str(out / "checkpoints" / "best.ckpt"),
                               "--final"])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "only the best-on-validation actors" in stderr
    # an unfinished run's last.ckpt: the latest actors, named by their episode
    partial = tmp_path / "partial"
    assert train(partial, RUN, stop_after=2) is None
    code, stdout, stderr = run_cli(["evaluate", "--scenarios", str(N_TEST), "--checkpoint",
                                    str(partial / "checkpoints" / "last.ckpt"), "--json"])
    assert code == 0, stderr
    assert [r["policy"] for r in json.loads(stdout)] == [
        f"dgpg (seed {s}, episode 2 of {EPISODES})" for s in (0, 1)]


def test_summary_reports_the_final_policy_and_settling(ref_run):
    """summary.json: the final policies' test returns beside the best checkpoints', greedy and
    sampled, with CIs, the seeds' means of per-seed values; episodes to settle from the mean
    validation curve, and per seed."""
    out, summary = ref_run
    rows = _rows(out)
    for key in ("final_test_return", "final_test_return_ci", "final_test_return_sampled",
                "final_test_return_sampled_ci", "last_val_return"):
        assert np.isfinite(summary[key]), key
    assert summary["test_scenarios"] == N_TEST
    per_seed = summary["per_seed"]
    for key in ("final_test_return", "final_test_return_sampled"):
        assert summary[key] == pytest.approx(np.mean([s[key] for s in per_seed]), rel=1e-6)
    # the final policies were tested, not copied: in this run they are not the best ones
    assert summary["final_test_return"] != summary["test_return"]
    assert summary["final_test_return_sampled"] != summary["test_return_sampled"]
    curves = np.array([[float(r["val_return"]) for r in rows if int(r["episode"]) == e]
                       for e in range(1, EPISODES + 1)])
    ref = summary["reference_val_return"]
    assert summary["episodes_to_settle"] == episodes_to_settle(curves.mean(axis=1), ref)
    assert [s["episodes_to_settle"] for s in per_seed] == [
        episodes_to_settle(curves[:, i], ref) for i in range(2)]
    assert summary["last_val_return"] == pytest.approx(curves[-1].mean(), rel=1e-9)
    # this short run is within 10 % of the reference from its first episode: settled in 1, where
    # the 5-episode window of episodes_to_converge cannot say anything in 4 episodes
    assert summary["episodes_to_settle"] == 1 and summary["episodes_to_converge"] is None


def test_a_final_actor_equal_to_the_best_reuses_its_test(ref_run, tmp_path, monkeypatch):
    """A run whose last episode is every seed's best (here: one episode) tests its actors once
    and reports the same numbers for the final policy; the ref run's differing actors are tested
    twice (counted by wrapping the test evaluation)."""
    calls = []
    original = training._test_matrices

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(training, "_test_matrices", counted)
    one = RunConfig(algo="dgpg", n_agents=2, episodes=1, seed=0, seeds=2, alpha=0.5)
    summary = train(tmp_path / "one", one)
    assert len(calls) == 1
    assert all(s["final_is_best"] for s in summary["per_seed"])
    for key in ("test_return", "test_return_ci", "test_return_sampled",
                "test_return_sampled_ci"):
        assert summary[f"final_{key}"] == summary[key], key
    for s in summary["per_seed"]:
        assert s["final_test_return"] == s["test_return"]
        assert s["last_val_return"] == s["best_val_return"]
    # the same evaluated through the CLI: last.ckpt's final policies equal best.ckpt's
    returns = []
    for name in ("best.ckpt", "last.ckpt"):
        code, stdout, stderr = run_cli(["evaluate", "--scenarios", str(N_TEST), "--checkpoint",
                                        str(tmp_path / "one" / "checkpoints" / name), "--json"])
        assert code == 0, stderr
        returns.append([r["return"]["mean"] for r in json.loads(stdout)])
    assert returns[0] == returns[1]
    calls.clear()
    partial = tmp_path / "two"
    assert train(partial, RUN, stop_after=EPISODES - 1) is None
    train(partial, RUN, resume=True)  # the final actors come from the resumed learner states
    assert len(calls) == 2
    assert json.loads((partial / "summary.json").read_text())["final_test_return"] == \
        ref_run[1]["final_test_return"]


def test_train_table_shows_both_policies_and_reads_old_summaries(ref_run, tmp_path):
    """`dgpg train`'s table: greedy and sampled returns side by side for the best and the final
    policies, episodes to settle; a summary written before these keys shows "-" for the missing
    returns and computes settling and the final validation return from metrics.csv."""
    import io

    from rich.console import Console

    from dgpg.cli.train import summary_table

    out, summary = ref_run

    def text(s: dict, metrics: Path | None) -> str:
        console = Console(width=200, file=io.StringIO())
        console.print(summary_table(s, "run", metrics))
        return console.file.getvalue()

    new = text(summary, out / "metrics.csv")
    best = next(line for line in new.splitlines() if "best on validation" in line)
    assert f"{summary['test_return']:.2f} ± {summary['test_return_ci']:.2f}" in best
    assert f"{summary['test_return_sampled']:.2f} ± " in best
    final = next(line for line in new.splitlines() if "final policy" in line)
    assert f"{summary['final_test_return']:.2f}" in final
    assert f"{summary['final_test_return_sampled']:.2f}" in final
    settle = next(line for line in new.splitlines() if "episodes to settle" in line)
    assert " 1 " in settle
    old = {k: v for k, v in summary.items() if k in (
        "algo", "n_agents", "episodes", "alpha", "seeds", "best_val_return", "test_return",
        "test_return_ci", "episodes_to_converge", "wall_seconds", "per_seed")}
    old["bestfit_central_val_return"] = summary["reference_val_return"]
    old["bestfit_central_test_return"] = summary["reference_test_return"]
    shown = text(old, out / "metrics.csv")
    final = next(line for line in shown.splitlines() if "final policy" in line and "test" in line)
    assert final.count(" - ") == 2
    assert " 1 " in next(line for line in shown.splitlines() if "episodes to settle" in line)
    assert f"{summary['last_val_return']:.2f}" in shown
    assert "-" in next(line for line in text(old, None).splitlines() if "settle" in line)


def _tensorboard_scalars(folder: Path) -> dict[tuple[int, str], float]:
    """(step, tag) -> value of the scalars in a folder's event files (TFRecord framing: length,
    its CRC, the record, its CRC)."""
    import struct

    from tensorboardX.proto import event_pb2

    found = {}
    for path in sorted(folder.iterdir()):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (size,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + size])
            i += 12 + size + 4
            for value in event.summary.value:
                found[(event.step, value.tag)] = value.simple_value
    return found


def _episode_lines(stderr: str) -> list[str]:
    return [line.split(": episode ")[1].split()[0] for line in stderr.splitlines()
            if ": episode " in line]


def test_cli_resume_reads_the_run_and_extends_it(ref_run, tmp_path):
    """`dgpg train --resume --episodes E` on a finished shorter run: the run's own configuration,
    extended; the result equals the uninterrupted run of E episodes. Other differences are
    refused, naming each field with both values. Off a terminal, one line per episode."""
    ref, summary = ref_run
    short = tmp_path / "short"
    code, stdout, stderr = run_cli(["train", "--agents", "2", "--seeds", "2", "--episodes", "2",
                                    "--out", str(short), "--tensorboard"])
    assert code == 0, stderr
    assert _episode_lines(stderr) == ["1/2", "2/2"]  # stderr is not a terminal here
    assert "dgpg N=2: compiling (first episode)" in stderr
    assert f"dgpg N=2: testing on {N_TEST} scenarios" in stderr
    assert "test return" in stdout and f"wrote {short}/summary.json" in stdout

    before = _snapshot(short)
    code, _, stderr = run_cli(["train", "--out", str(short), "--resume", "--alpha", "0.2",
                               "--set", "env.arrival_rate=0.9"])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "run.alpha is 0.5 in the run, 0.2 given" in stderr
    assert "env.arrival_rate is 1.0 in the run, 0.9 given" in stderr
    code, _, stderr = run_cli(["train", "--out", str(short), "--resume", "--episodes", "1"])
    assert code == 2 and "extend it, not shorten it" in stderr
    assert _snapshot(short) == before

    code, stdout, stderr = run_cli(["train", "--out", str(short), "--resume",
                                    "--episodes", str(EPISODES), "--json"])
    assert code == 0, stderr
    assert _episode_lines(stderr) == [f"{e}/{EPISODES}" for e in range(3, EPISODES + 1)]
    extended = json.loads(stdout)
    assert json.loads((short / "config.json").read_text()) == RUN.to_json()
    assert _without_wall(_rows(short)) == _without_wall(_rows(ref))
    for key in ("test_return", "test_return_sampled", "per_seed", "episodes_to_converge"):
        assert extended[key] == summary[key], key
    # TensorBoard: every metrics.csv column of the first two episodes, the seeds' mean
    scalars = _tensorboard_scalars(short / "tensorboard")
    rows = _rows(ref)
    for episode in (1, 2):
        for column in METRIC_COLUMNS[2:]:
            mean = np.mean([float(r[column]) for r in rows if int(r["episode"]) == episode])
            if column != "wall_seconds":
                assert scalars[(episode, column)] == pytest.approx(mean, rel=1e-5), column
    assert {step for step, _ in scalars} == {1, 2}
    for name in ("last.ckpt", "best.ckpt"):
        a = checkpoint.read(short / "checkpoints" / name)[1]
        b = checkpoint.read(ref / "checkpoints" / name)[1]
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


# --------------------------------------------------------------------------- convergence


def test_episodes_to_converge():
    ref = -10.0  # within 10 %: rolling mean >= -11
    W = CONVERGENCE_WINDOW
    assert W == 5
    assert episodes_to_converge(np.full(30, -20.0), ref) is None  # never
    assert episodes_to_converge(np.full(W - 1, -1.0), ref) is None  # too short
    assert episodes_to_converge(np.array([]), ref) is None
    assert episodes_to_converge(np.full(W, -10.5), ref) == W  # good from the first window
    assert episodes_to_converge(np.full(W, -5.0), ref) == W  # better than the reference
    # bad for 7 episodes, then at the reference: the first all-good window is episodes 8..12
    curve = np.array([-30.0] * 7 + [-10.0] * 10)
    assert episodes_to_converge(curve, ref) == 12
    # a later dip restarts the count: the last bad window decides
    dip = np.array([-10.0] * 10 + [-40.0] + [-10.0] * 10)
    assert episodes_to_converge(dip, ref) == 16
    # ends bad: not converged, even though it was good before
    assert episodes_to_converge(np.array([-10.0] * 10 + [-40.0] * 3), ref) is None
    # good only in the very last window
    assert episodes_to_converge(np.array([-30.0] * 6 + [-10.0] * 5), ref) == 11
    # positive reference: within 10 % below it
    assert episodes_to_converge(np.full(8, 9.05), 10.0) == W
    assert episodes_to_converge(np.full(8, 8.95), 10.0) is None


def test_episodes_to_settle():
    """The first episode from which every value stays within 10 % of the reference: 1 for a
    curve good from the start (the rolling window of episodes_to_converge says 5 at least)."""
    ref = -10.0  # within 10 %: >= -11
    assert episodes_to_settle(np.full(3, -10.5), ref) == 1
    assert episodes_to_settle(np.array([-5.0]), ref) == 1  # one episode, better than the line
    assert episodes_to_converge(np.full(CONVERGENCE_WINDOW, -10.5), ref) == CONVERGENCE_WINDOW
    assert episodes_to_settle(np.array([]), ref) is None
    assert episodes_to_settle(np.full(30, -20.0), ref) is None  # never
    assert episodes_to_settle(np.array([-30.0] * 7 + [-10.0] * 10), ref) == 8
    # a later dip restarts the count; it ends bad: None, even though it was good before
    assert episodes_to_settle(np.array([-10.0] * 10 + [-40.0] + [-10.0] * 3), ref) == 12
    assert episodes_to_settle(np.array([-10.0] * 10 + [-40.0]), ref) is None
    assert episodes_to_settle(np.array([-30.0, -11.0]), ref) == 2  # the boundary is within
    assert episodes_to_settle(np.array([-30.0, -11.01]), ref) is None
    # positive reference: within 10 % below it
    assert episodes_to_settle(np.full(3, 9.05), 10.0) == 1
    assert episodes_to_settle(np.full(3, 8.95), 10.0) is None


# --------------------------------------------------------------------------- CLI bad input


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--algo", "nope"],
        ["train", "--alpha", "1.5"],
        ["train", "--alpha", "nan"],
        ["train", "--alpha", "-0.1"],
        ["train", "--agents", "0"],
        ["train", "--episodes", "-1"],
        ["train", "--seeds", "0"],
        ["train", "--model", "nope"],
        ["train", "--model", "FLUID"],
    ],
    ids=lambda a: " ".join(a[1:]),
)
def test_cli_train_bad_input(tmp_path, args):
    out = tmp_path / "out"
    out.mkdir()
    known = b"episode,seed\n1,0\n"
    (out / "metrics.csv").write_bytes(known)
    _assert_one_error_line(_cli(*args, "--out", str(out), cwd=tmp_path))
    assert _snapshot(out) == {"metrics.csv": known}
    assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing written elsewhere (runs/default)


def test_cli_evaluate_missing_checkpoint(tmp_path):
    missing = tmp_path / "nonexistent"
    line = _assert_one_error_line(_cli("evaluate", "--agents", "3", "--checkpoint",
                                       str(missing)))
    assert "not found" in line and str(missing) in line
    line = _assert_one_error_line(_cli("evaluate", "--agents", "3", "--checkpoint",
                                       "/nonexistent"))
    assert "/nonexistent" in line


def test_cli_train_into_existing_run_is_one_line(tmp_path):
    """Valid options but an occupied --out: refused before any training, with one line."""
    out = tmp_path / "out"
    out.mkdir()
    known = b"episode,seed\n1,0\n"
    (out / "metrics.csv").write_bytes(known)
    line = _assert_one_error_line(_cli("train", "--agents", "2", "--episodes", "1", "--out",
                                       str(out)))
    assert "already holds a run" in line
    assert _snapshot(out) == {"metrics.csv": known}


def test_plot_writes_next_to_the_run_with_episodes_or_steps(ref_run, tmp_path):
    ref, _ = ref_run
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    code, stdout, stderr = run_cli(["plot", str(run)])
    assert code == 0, stderr
    assert (run / "curves.png").exists() and (run / "curves.csv").exists()
    by_episode = (run / "curves.csv").read_text()
    code, _, stderr = run_cli(["plot", str(run), "--steps", "--out", str(tmp_path / "s.png")])
    assert code == 0, stderr
    assert (tmp_path / "s.csv").read_text() == by_episode  # the numbers; only the axis differs
