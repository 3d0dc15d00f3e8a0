"""The experiments of `dgpg reproduce` and the sweep runner behind them.

Sweeps: a sweep killed (SIGKILL) after its first run, or at a random moment, and started again
runs only what is missing and ends with exactly one result per grid point, equal to an
uninterrupted sweep; the same grid on a local Ray instance (skipped without Ray). Experiments:
every figure's code runs on a reduced grid and writes its PNG, CSV and Markdown files; `nash
--quick` runs through the command line. The variance experiment's slope estimator recovers known
slopes on synthetic data, and its test of whether a mean gradient is resolved is calibrated.

For speed every training run of this module is the same tiny configuration (N = 2, 3 episodes
of 20 steps, 2 update epochs of 2 minibatches, width 16) with seeds 0 and 1, and every process
(sweep workers included) shares one persistent compilation cache in a temporary folder: the
first run compiles, the others load. The figure tests reuse the uninterrupted sweep's runs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_harness import run_cli, snapshot

from dgpg.experiments import (
    ablation,
    actors,
    alignment,
    fig2,
    fig3,
    fig4,
    fig5,
    nash,
    sweep,
    transfer,
    variance,
)
from dgpg.experiments.sweep import RunSpec, SweepError, overrides_json, run_grid
from dgpg.learners.config import TUNED_AT_SCALE

OVERRIDES = overrides_json(train={"update_epochs": 2, "num_minibatches": 2, "hidden": 16},
                           env={"episode_steps": 20})
EPISODES = 3
GRID = [RunSpec("dgpg", 2, EPISODES, alpha=0.5, seed=s, overrides=OVERRIDES) for s in (0, 1)]
TIMEOUT = 300


@pytest.fixture(scope="module", autouse=True)
def jax_cache(tmp_path_factory):
    """One persistent compilation cache for this module's processes and their workers."""
    cache = tmp_path_factory.mktemp("jax_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGPG_JAX_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep of GRID: (output folder, report)."""
    out = tmp_path_factory.mktemp("reference")
    report = run_grid(GRID, out, workers=1)
    return out, report


def _results(out: Path) -> dict[str, dict]:
    """What a run produced, minus wall-clock times: summary, metrics rows, best checkpoint."""
    found = {}
    for folder in sorted((out / "runs").iterdir()):
        if folder.name.startswith("."):
            continue
        summary = json.loads((folder / "summary.json").read_text())
        summary.pop("wall_seconds")
        with (folder / "metrics.csv").open(newline="") as f:
            rows = [{k: v for k, v in r.items() if k != "wall_seconds"}
                    for r in csv.DictReader(f)]
        found[folder.name] = {"summary": summary, "metrics": rows,
                              "best": (folder / "checkpoints" / "best.ckpt").read_bytes()}
    return found


def _start_sweep(out: Path) -> subprocess.Popen:
    """GRID as a sweep in another process (its own process group, for cleaning up)."""
    code = ("from pathlib import Path\n"
            "from dgpg.experiments.sweep import RunSpec, run_grid\n"
            f"run_grid({GRID!r}, Path({str(out)!r}), workers=1)\n")
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the sweep process alone; its workers must die with it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return  # no process of the sweep is left
            time.sleep(0.1)
        pytest.fail("a worker of the killed sweep is still running")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- sweeps


def test_run_spec_keys_and_validation():
    a = RunSpec("mappo", 10, 5, alpha=0.7)
    assert a.alpha == 0.0 and a == RunSpec("mappo", 10, 5, alpha=0.2)  # MAPPO ignores alpha
    assert a.key == "mappo_n10_a0_e5_s0x1"
    # the fluid model's runs keep the keys they had before the model was an option
    assert RunSpec("dgpg", 10, 5, alpha=0.25, seeds=3, model="fluid").key == \
        "dgpg_n10_a0.25_e5_s0x3"
    assert RunSpec("dgpg", 10, 5, alpha=0.25, seeds=3).key == "dgpg_n10_a0.25_e5_s0x3_aligned"
    assert RunSpec("mappo", 10, 5, model="aligned") == a  # MAPPO uses no model
    assert GRID[0].key != RunSpec("dgpg", 2, EPISODES).key  # overrides are part of the key
    for bad in ({"algo": "nope"}, {"alpha": 1.5}, {"n_agents": 0}, {"seeds": 0}, {"model": "x"},
                {"overrides": '{"train": {"no_such_field": 1}}'}, {"overrides": "[]"}):
        with pytest.raises(ValueError):
            RunSpec(**({"algo": "dgpg", "n_agents": 2, "episodes": 1} | bad))
    with pytest.raises(SweepError, match="unknown backend"):
        run_grid(GRID, Path("unused"), backend="nope")


def test_uninterrupted_sweep(reference):
    out, report = reference
    keys = [s.key for s in GRID]
    assert report.ran == keys and report.skipped == []
    results = _results(out)
    assert list(results) == sorted(keys)
    for spec in GRID:
        summary = report.results[spec.key]
        assert summary["episodes"] == EPISODES and summary["n_agents"] == 2
        assert np.isfinite(summary["test_return"])
        assert len(results[spec.key]["metrics"]) == EPISODES
    # the two seeds are different runs
    assert results[keys[0]]["metrics"] != results[keys[1]]["metrics"]
    # a second sweep finds everything finished and does nothing
    before = snapshot(out / "runs", folders=False)
    again = run_grid(GRID, out, workers=1)
    assert again.ran == [] and again.skipped == keys
    assert snapshot(out / "runs", folders=False) == before


def test_killed_sweep_runs_only_missing(reference, tmp_path):
    """SIGKILL right after the first run finished: the restart keeps it and runs the rest."""
    out = tmp_path / "killed"
    proc = _start_sweep(out)
    first = None
    deadline = time.monotonic() + TIMEOUT
    while first is None:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the sweep did not finish a run in time"
        done = sorted((out / "runs").glob("*/summary.json")) if (out / "runs").exists() else []
        first = done[0].parent if done else None
        time.sleep(0.05)
    _kill(proc)
    finished = {p.parent.name for p in (out / "runs").glob("*/summary.json")}
    assert first.name in finished and len(finished) < len(GRID)
    kept = {name: snapshot(out / "runs" / name, folders=False) for name in finished}

    report = run_grid(GRID, out, workers=1)
    assert sorted(report.skipped) == sorted(finished)
    assert sorted(report.ran) == sorted({s.key for s in GRID} - finished)
    for name, files in kept.items():  # finished runs are not touched
        assert snapshot(out / "runs" / name, folders=False) == files
    assert _results(out) == _results(reference[0])


@pytest.mark.slow  # about 25 s; test_killed_sweep_runs_only_missing covers restarts by default
def test_sigkill_at_random_moment(reference, tmp_path):
    """SIGKILL at a random moment of the sweep; the restart completes it with exactly one
    result per grid point, equal to an uninterrupted sweep."""
    seed = int(os.environ.get("DGPG_TEST_KILL_SEED", random.randrange(2**31)))
    delay = random.Random(seed).uniform(0.0, 8.0 + reference[1].seconds)
    out = tmp_path / "random"
    proc = _start_sweep(out)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    _kill(proc)
    run_grid(GRID, out, workers=1)
    names = sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))
    assert names == sorted(s.key for s in GRID), f"kill seed {seed}, delay {delay:.1f} s"
    assert _results(out) == _results(reference[0]), f"kill seed {seed}, delay {delay:.1f} s"


_RAY_DRIVER = """
import dataclasses, json, sys
from pathlib import Path
from dgpg.experiments import sweep
grid = [sweep.RunSpec(**fields) for fields in json.loads(sys.argv[1])]
reports = [sweep.run_grid(grid, Path(sys.argv[2]), backend="ray", workers=2) for _ in range(2)]
print(json.dumps({"ran": [r.ran for r in reports], "skipped": [r.skipped for r in reports],
                  "jax_in_driver": "jax" in sys.modules}))
"""


@pytest.mark.slow  # about 45 s (Ray's start-up); the local backend's tests cover the sweep
def test_ray_backend(reference, tmp_path):
    """The same grid as Ray tasks on a local Ray instance gives the same results. The driver is
    a fresh process that never imports JAX (the tasks run in Ray's workers), so Ray's start-up
    forks no multithreaded JAX process."""
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    grid = json.dumps([s.arguments() for s in GRID])
    done = subprocess.run([sys.executable, "-c", _RAY_DRIVER, grid, str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "os.fork()" not in done.stderr, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["jax_in_driver"]
    assert sorted(report["ran"][0]) == sorted(s.key for s in GRID)
    assert _results(out) == _results(reference[0])
    assert report["ran"][1] == [] and len(report["skipped"][1]) == len(GRID)


def test_failed_task_is_reported(tmp_path):
    bad = sweep.RunSpec("dgpg", 2, EPISODES, overrides=OVERRIDES)
    folder = sweep.task_folder(tmp_path, bad)
    folder.mkdir(parents=True)
    other = sweep.RunSpec("mappo", 2, EPISODES, overrides=OVERRIDES).run_config()
    text = json.dumps(other.to_json())
    (folder / "config.json").write_text(text)  # another run's folder
    with pytest.raises(SweepError, match=f"1 of 1 runs failed.*{bad.key}.*another configuration"):
        run_grid([bad], tmp_path, workers=1)
    assert (folder / "config.json").read_text() == text


# --------------------------------------------------------------------------- figures


def _files(folder: Path, name: str) -> None:
    for suffix in (".png", ".csv", ".md"):
        path = folder / f"{name}{suffix}"
        assert path.exists() and path.stat().st_size > 0, path
    assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runs(reference, tmp_path):
    """A copy of the uninterrupted sweep's runs folder: the reduced figures need no training."""
    shutil.copytree(reference[0] / "runs", tmp_path / "shared" / "runs")
    return tmp_path / "shared"


def test_fig2_reduced(runs, tmp_path):
    grid = fig2.Grid(n_agents=2, alphas=(0.5,), episodes=EPISODES, seeds=1, overrides=OVERRIDES)
    result = fig2.run(tmp_path / "fig2", grid=grid, runs=runs, workers=1)
    _files(tmp_path / "fig2", "fig2")
    assert len(result["rows"]) == 1 and "| 0.5 |" in (tmp_path / "fig2" / "fig2.md").read_text()


@pytest.mark.slow  # about 35 s: trains a fluid run; test_fig2_reduced covers a figure by default
def test_fig3_and_fig5_reduced(runs, tmp_path):
    grid3 = fig3.Grid(n_agents=(2,), episodes=(("dgpg", EPISODES),), seeds=1,
                      overrides=OVERRIDES)
    fig3.run(tmp_path / "fig3", grid=grid3, runs=runs, workers=1)
    _files(tmp_path / "fig3", "fig3")
    grid5 = fig5.Grid(n_agents=(2,), episodes=EPISODES, seeds=1, overrides=OVERRIDES,
                      fluid_agents=(2,))
    result = fig5.run(tmp_path / "fig5", grid=grid5, runs=runs, workers=1)
    _files(tmp_path / "fig5", "fig5")
    assert [(r["n_agents"], r["model"], r["episodes"]) for r in result["rows"]] == [
        (2, "aligned", EPISODES), (2, "fluid", EPISODES)]
    with (tmp_path / "fig5" / "fig5.csv").open(newline="") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["aligned"] * EPISODES + [
            "fluid"] * EPISODES
    assert "| 2 | fluid |" in (tmp_path / "fig5" / "fig5.md").read_text()


def test_fig4_and_fig5_grids_share_runs_and_apply_the_tuning_from_its_n():
    tuned = overrides_json(train={"learning_rate": 2e-3, "ent_coef": 0.0})
    grid = fig4.Grid(n_agents=(5, 50), episodes=4, seeds=1, overrides=OVERRIDES,
                     tuned=(("mappo", tuned),), tuned_from=50)
    runs = {(s.algo, s.n_agents): s for s in fig4.learner_tasks(grid)}
    assert runs["mappo", 5].overrides == runs["dgpg", 5].overrides == OVERRIDES
    assert runs["dgpg", 50].overrides == OVERRIDES  # no tuned pair of its own
    mappo = runs["mappo", 50].run_config().train_config()
    assert (mappo.learning_rate, mappo.ent_coef, mappo.update_epochs) == (2e-3, 0.0, 2)
    # figure 5 trains exactly figure 4's DG-PG runs
    five = fig5.Grid(**{f.name: getattr(grid, f.name) for f in dataclasses.fields(fig4.Grid)
                        if f.name not in ("algos", "heuristics", "extra_heuristics")})
    assert fig5.tasks(five) == [s for s in fig4.learner_tasks(grid) if s.algo == "dgpg"]
    assert fig5.tasks(fig5.FULL) == [s for s in fig4.learner_tasks(fig4.FULL)
                                     if s.algo == "dgpg"]
    # the full grid uses the N = 50 sweep's winners, and the fluid runs keep their keys
    assert dict(fig4.FULL.tuned) == {a: overrides_json(train=p)
                                     for a, p in TUNED_AT_SCALE.items()}
    assert all(s.key.startswith("dgpg_") and s.key.endswith("_s0x3")
               for s in fig4.fluid_tasks(fig4.FULL))
    assert fig4.FULL.episodes_at(1500) == 50 and fig4.FULL.episodes_at(10000) == 10
    # the baselines' N = 10 pairs are drawn beside from N = 50 on: the first grid's runs
    first = fig4.first_pair_tasks(fig4.FULL)
    assert {(s.algo, s.n_agents) for s in first} == {
        (a, n) for a in ("mappo", "ippo") for n in (50, 100, 200, 500, 1500)}
    assert all(s.key.endswith("_s0x3") and s.overrides == "" for s in first)


@pytest.mark.slow  # about 85 s; figure 4's tasks run in the actors and transfer tests
def test_fig4_reduced(runs, tmp_path):
    tuned = overrides_json(train={"learning_rate": 2e-3})
    grid = fig4.Grid(n_agents=(2,), episodes=EPISODES, algos=("dgpg",), seeds=1,
                     heuristics=actors.LINES, extra_heuristics=("model-greedy",),
                     overrides=OVERRIDES, fluid_agents=(2,), tuned=(("dgpg", tuned),),
                     tuned_from=2, first_pair_agents=(2,), first_pair_algos=("dgpg",))
    result = fig4.run(tmp_path / "fig4", grid=grid, runs=runs, workers=1)
    _files(tmp_path / "fig4", "fig4")
    by_policy = {r["policy"]: r for r in result["rows"]}
    assert set(by_policy) == {"dgpg", "dgpg (fluid)", "dgpg (N = 10 pair)",
                              "best-fit-central", "least-loaded", "model-greedy"}
    # the first pair's row is the untuned run of the sweep, the tuned one a run of its own
    untuned = json.loads((runs / "runs" / GRID[0].key / "summary.json").read_text())
    assert by_policy["dgpg (N = 10 pair)"]["test_return"] == untuned["test_return"]
    assert by_policy["dgpg"]["test_return"] != untuned["test_return"]
    assert "(N = 10 pair)" in (tmp_path / "fig4" / "fig4.md").read_text()
    # the heuristic evaluation is the one training used for its reference line
    assert by_policy["best-fit-central"]["test_return"] == pytest.approx(
        untuned["reference_test_return"], rel=1e-9)
    # a second run finds every task finished
    before = snapshot(runs / "runs", folders=False)
    fig4.run(tmp_path / "fig4", grid=grid, runs=runs, workers=1)
    assert snapshot(runs / "runs", folders=False) == before


def test_actors_grid_keeps_figure_4_runs():
    """The full ablation is 3 learners x 3 actors x 3 N; its scorer runs are figure 4's own
    (same keys), and the other actors differ from them only by train.actor."""
    full, heuristics = actors.tasks(actors.FULL)
    assert len(full) == 27
    assert {actors.actor_of(s) for s in full} == set(actors.TRANSFERABLE_ACTORS)
    fig4_runs = set(fig4.learner_tasks(fig4.FULL))
    assert {s for s in full if actors.actor_of(s) == "scorer"} <= fig4_runs
    assert {h.key for h in heuristics} <= {h.key for h in fig4.tasks(fig4.FULL)[1]}
    for spec in full:
        twin = next(s for s in fig4_runs if (s.algo, s.n_agents) == (spec.algo, spec.n_agents))
        mine, theirs = spec.run_config().train_config(), twin.run_config().train_config()
        assert dataclasses.replace(mine, actor="scorer") == theirs


def _actors_reduced(runs, tmp_path, names):
    grid = actors.Grid(n_agents=(2,), actors=names, algos=("dgpg",), episodes=EPISODES,
                       seeds=1, overrides=OVERRIDES, heuristics=actors.LINES)
    specs, _ = actors.tasks(grid)
    result = actors.run(tmp_path / "actors", grid=grid, runs=runs, workers=1)
    _files(tmp_path / "actors", "actors")
    assert [(r["actor"], r["algo"]) for r in result["rows"]] == [(a, "dgpg") for a in names]
    text = (tmp_path / "actors" / "actors.md").read_text()
    assert "least-loaded" in text and all(f"| 2 | {a} | dgpg |" in text for a in names)
    return specs


@pytest.mark.slow  # about 20 s of heuristics; the grid's keys are checked by default above
def test_actors_reduced(runs, tmp_path):
    """`reproduce actors` on a reduced grid draws its figure and table from the sweep's run
    (the scorer run has figure 4's key, so nothing is trained)."""
    before = {p.name for p in (runs / "runs").iterdir()}
    specs = _actors_reduced(runs, tmp_path, ("scorer",))
    assert specs == [GRID[0]]
    trained = {p.name for p in (runs / "runs").iterdir()} - before
    assert all(name.startswith("heuristics_") for name in trained), trained


@pytest.mark.slow  # about 2 minutes: a run, two heuristics and two evaluations at a second N
def test_transfer_reduced(runs, tmp_path):
    """`reproduce transfer` on a reduced grid: the sweep's run trained at N = 2 is tested at
    N = 2, where it reproduces its own test return exactly (same checkpoint, same scenarios),
    and at N = 3, beside the run trained at N = 3."""
    reference = fig4.Grid(n_agents=(2, 3), episodes=EPISODES, algos=("dgpg",), seeds=1,
                          heuristics=actors.LINES, extra_heuristics=(), overrides=OVERRIDES)
    grid = transfer.Grid(train_n=(2,), test_n=(2, 3), algos=("dgpg",), episodes=EPISODES,
                         seeds=1, seed=0, reference=reference)
    assert grid.runs() == [GRID[0]]
    result = transfer.run(tmp_path / "transfer", grid=grid, runs=runs, workers=1)
    for name in ("transfer.png", "transfer.csv", "transfer.md"):
        assert (tmp_path / "transfer" / name).stat().st_size > 0
    rows = {(r["policy"], r["trained_at"], r["n_agents"]): r for r in result["rows"]}
    own = json.loads((runs / "runs" / GRID[0].key / "summary.json").read_text())
    assert rows["dgpg", "2", 2]["test_return"] == pytest.approx(own["test_return"], rel=1e-9)
    assert rows["dgpg", "each N", 2]["test_return"] == own["test_return"]
    assert np.isfinite(rows["dgpg", "2", 3]["test_return"])
    assert ("dgpg", "each N", 3) in rows and ("best-fit-central", "", 3) in rows
    assert "| dgpg | N = 2 |" in (tmp_path / "transfer" / "transfer.md").read_text()


@pytest.mark.slow  # about 35 s: trains the mlp actor
def test_actors_reduced_trains_the_mlp_actor(runs, tmp_path):
    specs = _actors_reduced(runs, tmp_path, ("scorer", "mlp"))
    config = json.loads((runs / "runs" / specs[1].key / "config.json").read_text())
    assert config["train"]["actor"] == "mlp"


@pytest.mark.slow  # about 50 s, mostly compiling three more learners
def test_alignment_and_ablation_reduced(runs, tmp_path):
    grid = alignment.CurvesGrid(n_agents=(2,), episodes=EPISODES, baseline_episodes=EPISODES,
                                seeds=1, overrides=OVERRIDES)
    result = alignment.run(tmp_path / "alignment", grid=grid, runs=runs, workers=1)
    _files(tmp_path / "alignment", "alignment")
    assert [r["learner"] for r in result["rows"]] == ["DG-PG (aligned)", "DG-PG (fluid)",
                                                      "MAPPO", "IPPO"]
    assert (runs / "runs" / GRID[0].key).is_dir()  # the sweep's aligned run was reused
    text = (tmp_path / "alignment" / "alignment.md").read_text()
    assert "model-greedy val" in text and "speed-up" in text
    abl = ablation.AblationGrid(n_agents=(2,), episodes=EPISODES, alphas=(0.5,), variants=(),
                                seeds=1, overrides=OVERRIDES)
    before = snapshot(runs / "runs", folders=False)
    rows = ablation.run(tmp_path / "ablation", grid=abl, runs=runs, workers=1)["rows"]
    assert snapshot(runs / "runs", folders=False) == before  # both runs were trained above
    assert [(r["model"], r["alpha"]) for r in rows] == [("fluid", 0.5), ("aligned", 0.5)]
    assert "| 2 | aligned | 0.5 |" in (tmp_path / "ablation" / "ablation.md").read_text()


def _table_rows(summary: dict, values: np.ndarray) -> dict:
    from dgpg.experiments import common

    spec = RunSpec("dgpg", 5, values.shape[0], alpha=0.5, seeds=values.shape[1])
    return common.run_row(spec, summary, values) | {
        "model": "aligned", "actor": "scorer", "learner": "DG-PG (aligned)",
        "val_return_at_10": None, "least_loaded_test_return": -20.0,
        **{f"{h}_val_return": -10.0 for h in ("best-fit-central", "least-loaded",
                                              "model-greedy")}}


def _tables(row: dict) -> dict[str, str]:
    """Every Markdown table built from `common.run_row`, of one row."""
    return {"fig2": fig2.markdown([row], fig2.QUICK), "fig3": fig3.markdown([row], fig3.QUICK),
            "fig5": fig5.markdown([row], fig5.QUICK),
            "ablation": ablation.ablation_markdown([row], ablation.QUICK),
            "actors": actors.markdown([row], actors.QUICK),
            "alignment": alignment.curves_markdown([row])}


def test_tables_read_old_summaries_and_show_settling_and_both_policies():
    """A committed run whose summary predates the sampled and the final policies' test returns
    and episodes_to_settle: the tables show "-" for those returns and compute settling from the
    run's metrics.csv. A summary that has them: greedy and sampled, best and final, side by
    side, and episodes to settle, which can be 1."""
    from dgpg.config import read_summary
    from dgpg.experiments import common, curves
    from dgpg.training import episodes_to_settle

    folder = Path(__file__).resolve().parents[1] / "results" / "train" / "dgpg_n5"
    old = read_summary(folder / "summary.json")
    assert "test_return_sampled" not in old and "episodes_to_settle" not in old
    values = common.val_curves(folder)
    row = _table_rows(old, values)
    ref = old["reference_val_return"]
    assert row["episodes_to_settle"] == episodes_to_settle(values.mean(axis=1), ref)
    assert json.loads(row["episodes_to_settle_per_seed"]) == [
        episodes_to_settle(values[:, s], ref) for s in range(values.shape[1])]
    assert row["test_return_sampled"] is None and row["final_test_return"] is None
    assert common.return_cells(row) == [common.pm(old["test_return"], old["test_return_ci"]),
                                        "-", "-", "-"]
    for name, text in _tables(row).items():
        assert "| settle |" in text or "| settle " in text, name
        assert "converge" not in text.split("\n\n")[1], name  # the table shows settling
        assert "| - | - | - |" in text, name
    label, shown, summary = curves.load_curve(folder)
    assert summary["episodes_to_settle"] == row["episodes_to_settle"]
    assert "| - | - | - |" in curves.summary_table([(label, 3, summary)])

    good = np.full((4, 2), -10.0)  # within 10 % of the reference from the first episode
    new = {**old, "reference_val_return": -10.0, "test_return_sampled": -12.5,
           "test_return_sampled_ci": 1.5, "final_test_return": -11.25,
           "final_test_return_ci": 0.75, "final_test_return_sampled": -13.5,
           "final_test_return_sampled_ci": 2.5, "episodes_to_settle": 1}
    row = _table_rows(new, good)
    assert row["episodes_to_settle"] == 1 and row["settled_seeds"] == 2
    assert common.return_cells(row) == [common.pm(old["test_return"], old["test_return_ci"]),
                                        "-12.50 ± 1.50", "-11.25 ± 0.75", "-13.50 ± 2.50"]
    for name, text in _tables(row).items():
        assert " | ".join(common.return_cells(row)) in text, name
    assert " | ".join(common.return_cells(row)) in curves.summary_table([("run", 2, new)])


@pytest.mark.slow  # about 35 s; the estimator's tests below stay in the default suite
def test_variance_reduced(tmp_path):
    grid = variance.Grid(n_agents=(2, 3), seeds=2, rollouts=6, horizon=5, chunk=6, hidden=8)
    result = variance.run(tmp_path / "variance", grid=grid, workers=1)
    _files(tmp_path / "variance", "variance")
    assert [f["alpha"] for f in result["fits"]] == [0.0, 0.5]
    for f in [*result["fits"], *result["squared_mean_fits"]]:
        assert f["points"] == 4 and 0 <= f["resolved_points"] <= 4
        assert np.isfinite(f["slope"]) == (f["resolved_points"] >= 3)
    # the plain variance needs no resolved mean: every point enters its fit
    assert [f["alpha"] for f in result["variance_fits"]] == [0.0, 0.5]
    for f in result["variance_fits"]:
        assert f["points"] == 4 and np.isfinite(f["slope"]) and np.isfinite(f["slope_ci"])
    with (tmp_path / "variance" / "variance_fit.csv").open(newline="") as f:
        kinds = [(r["quantity"], float(r["alpha"])) for r in csv.DictReader(f)]
    assert kinds == [(q, a) for q in variance.QUANTITIES for a in (0.0, 0.5)]
    for r in result["rows"]:
        assert r["variance"] > 0 and r["counterfactual_variance"] > 0
        assert r["lower_bound"] > 0 and r["mean_gap"] >= 0
        if r["resolved"]:
            assert r["ci_low"] <= r["ci_high"]
            assert r["relative_variance"] == pytest.approx(
                r["variance"] / r["squared_mean_unbiased"])
            assert r["lower_bound"] <= r["relative_variance"] * (1 + 1e-9)
    # alpha = 1 is the guidance gradient alone: both estimators are the same samples
    pure = [r for r in result["rows"] if r["alpha"] == 1.0]
    assert all(r["mean_gap"] == 0.0 and r["counterfactual_variance"] == pytest.approx(
        r["variance"]) for r in pure)


@pytest.mark.slow  # about 25 s; nash's reduced grid runs in process above
def test_nash_quick_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dgpg.cli", "reproduce", "nash", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    _files(tmp_path, "nash")
    assert "| symmetric | 2 |" in proc.stdout  # the numbers are printed
    with (tmp_path / "nash.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["case"], int(r["n_agents"])) for r in rows} == {
        (c, n) for c in nash.CASES for n in nash.QUICK.n_agents}
    for r in rows:
        # both ascents reach the optimum, and the augmented gradient vanishes at p*
        assert float(r["J_original"]) == pytest.approx(-1.0, abs=1e-8)
        assert float(r["J_augmented"]) == pytest.approx(-1.0, abs=1e-8)
        assert float(r["grad_F_at_reference"]) < 1e-10
        assert float(r["grad_J_at_augmented"]) < 1e-4
        if r["case"] == "symmetric":
            assert float(r["tv_original_augmented"]) < 1e-6


@pytest.mark.parametrize(
    "args",
    [["nope"], ["fig2", "--backend", "nope"], ["fig2", "--seeds", "0"],
     ["fig2", "--address", "127.0.0.1:6379"], ["fig2", "--workers", "0"]],
    ids=lambda a: " ".join(a),
)
def test_cli_reproduce_bad_input(tmp_path, args):
    proc = subprocess.run([sys.executable, "-m", "dgpg.cli", "reproduce", *args, "--out",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dgpg: error:"), proc.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- slope estimator


@pytest.mark.parametrize("slope", [1.0, 0.0, 0.5, -0.4])
def test_fit_slope_recovers_known_slopes(slope):
    n = np.repeat(variance.FULL.n_agents, 3).astype(float)
    exact = variance.fit_slope(n, 3.0 * n**slope)
    assert exact["slope"] == pytest.approx(slope, abs=1e-9)
    assert exact["intercept"] == pytest.approx(np.log(3.0), abs=1e-9)
    assert exact["slope_ci"] == pytest.approx(0.0, abs=1e-9)

    rng = np.random.default_rng(0)
    covered, trials = 0, 400
    for _ in range(trials):
        noisy = 3.0 * n**slope * np.exp(rng.normal(0.0, 0.3, n.size))
        fit = variance.fit_slope(n, noisy)
        assert abs(fit["slope"] - slope) < 0.15 and 0.0 < fit["slope_ci"] < 0.2
        covered += abs(fit["slope"] - slope) <= fit["slope_ci"]
    assert 0.91 <= covered / trials <= 0.99  # a 95 % interval covers the true slope


def test_signal_resolution_on_synthetic_samples():
    """|E g|^2 is called resolved when it is clearly above its noise, and the lower bound of an
    unresolved relative variance stays below the true one."""
    rng = np.random.default_rng(1)
    n, p = 64, 40
    scales = np.linspace(0.2, 3.0, p)
    trace = float(np.sum(scales**2))
    for factor, lo, hi in ((0.0, 0.0, 0.1), (20.0, 0.95, 1.0)):
        mean = np.full(p, np.sqrt(factor * trace / n / p))
        true = trace / max(float(mean @ mean), 1e-300)
        found = [variance.signal(mean + rng.normal(size=(n, p)) * scales) for _ in range(100)]
        assert lo <= np.mean([f["resolved"] for f in found]) <= hi
        assert np.mean([f["lower_bound"] <= true for f in found]) >= 0.9
        z = [(f["squared_mean_unbiased"] - mean @ mean) / f["squared_mean_se"] for f in found]
        assert abs(np.mean(z)) < 0.4 and 0.6 < np.std(z) < 1.4  # a calibrated standard error


def test_fit_slope_needs_two_values_of_n():
    with pytest.raises(ValueError):
        variance.fit_slope(np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        variance.fit_slope(np.array([2.0, 5.0]), np.array([1.0, 2.0]))


def test_reproduce_runs_folder(tmp_path, monkeypatch):
    """--runs names the folder of finished runs (so fig4 and fig5 can share theirs); without it
    each experiment keeps its own, and `all` shares --out."""
    from dgpg.cli import reproduce

    seen = []
    monkeypatch.setattr(reproduce, "run_with_progress",
                        lambda name, out, runs=None, **rest: seen.append((name, out, runs)) or 0.0)
    shared = tmp_path / "shared"
    assert run_cli(["reproduce", "fig4", "--out", str(tmp_path / "a"), "--runs",
                    str(shared)])[0] == 0
    assert run_cli(["reproduce", "fig5", "--out", str(tmp_path / "b")])[0] == 0
    assert run_cli(["reproduce", "all", "--out", str(tmp_path / "c")])[0] == 0
    assert seen[0] == ("fig4", tmp_path / "a", shared) and shared.is_dir()
    assert seen[1] == ("fig5", tmp_path / "b", None)
    assert {runs for _, _, runs in seen[2:]} == {tmp_path / "c"}


def test_reproduce_agents_picks_part_of_the_grid(tmp_path, monkeypatch):
    """--agents runs the experiment's own grid (full or quick) at those N only, in grid order."""
    seen = []

    def fake_run(out, grid=None, **kwargs):
        seen.append(grid)
        return {}

    monkeypatch.setattr(fig4, "run", fake_run)
    monkeypatch.setattr(fig3, "run", fake_run)
    monkeypatch.setattr(transfer, "run", fake_run)
    assert run_cli(["reproduce", "transfer", "--agents", "1500,5", "--out", str(tmp_path)])[0] == 0
    assert seen[-1].tested() == (5, 1500) and seen[-1].train_n == transfer.FULL.train_n
    assert run_cli(["reproduce", "fig4", "--agents", "1500,50,5", "--out", str(tmp_path)])[0] == 0
    assert seen[-1] == dataclasses.replace(fig4.FULL, n_agents=(5, 50, 1500))
    assert run_cli(["reproduce", "fig3", "--quick", "--agents", "5", "--seeds", "2",
                    "--out", str(tmp_path)])[0] == 0
    assert seen[-1] == dataclasses.replace(fig3.QUICK, n_agents=(5,))  # seeds: pick_grid's job
    assert run_cli(["reproduce", "fig4", "--out", str(tmp_path)])[0] == 0
    assert seen[-1] is None  # the whole grid
    timing = json.loads((tmp_path / "fig4_timing.json").read_text())["invocations"]
    assert [t["agents"] for t in timing] == [[5, 50, 1500], None]


def test_reproduce_logs_finished_runs_when_not_a_terminal(tmp_path, monkeypatch):
    """Written to a log file, reproduce has no live progress bar, so it prints one line each
    time runs finish and each time an episode finishes; repeated events print nothing."""
    def fake_run(out, progress=None, **kwargs):
        for done, finished, last in [(2, 0, None), (2, 0, None), (3, 0, None), (3, 0, None),
                                     (5, 1, "k1"), (5, 1, None)]:
            progress({"total": 2, "finished": finished, "units_done": done, "units_total": 10,
                      "last": last})
        return {}

    monkeypatch.setattr(fig2, "run", fake_run)
    code, _, stderr = run_cli(["reproduce", "fig2", "--out", str(tmp_path)])
    assert code == 0
    assert [line for line in stderr.splitlines() if line.strip()] == [
        "fig2: episodes 3/10; 0/2 runs finished",
        "fig2: 1/2 runs finished (latest: k1); episodes 5/10"]


def test_timing_history_accumulates(tmp_path):
    """A resumed experiment keeps the wall time of every finished invocation and their total;
    a corrupt timing file starts a new history instead of failing."""
    from dgpg.experiments import record_timing as _record_timing

    path = tmp_path / "fig2_timing.json"
    _record_timing(path, {"experiment": "fig2", "wall_seconds": 10.5})
    _record_timing(path, {"experiment": "fig2", "wall_seconds": 2.0})
    data = json.loads(path.read_text())
    assert [h["wall_seconds"] for h in data["invocations"]] == [10.5, 2.0]
    assert data["total_wall_seconds"] == 12.5
    path.write_text(json.dumps({"experiment": "fig2", "wall_seconds": 7.0}))  # older format
    _record_timing(path, {"experiment": "fig2", "wall_seconds": 1.0})
    assert json.loads(path.read_text())["total_wall_seconds"] == 8.0
    path.write_text("{not json")
    _record_timing(path, {"experiment": "fig2", "wall_seconds": 1.0})
    assert json.loads(path.read_text())["total_wall_seconds"] == 1.0


def test_fit_slope_with_seed_intercepts():
    """Seeds whose noise differs by a constant factor at every N (as the variance experiment's
    do) leave the slope's interval narrow when each seed has its own intercept; pooled, the
    same points give a much wider one."""
    rng = np.random.default_rng(2)
    n = np.tile(np.array(variance.FULL.n_agents, float), 3)
    seeds = np.repeat([0, 1, 2], len(variance.FULL.n_agents))
    offsets = np.array([1.0, 3.0, 100.0])[seeds]
    values = offsets * n**0.5 * np.exp(rng.normal(0.0, 0.1, n.size))
    grouped = variance.fit_slope(n, values, groups=seeds)
    pooled = variance.fit_slope(n, values)
    assert grouped["slope"] == pytest.approx(0.5, abs=0.05)
    assert abs(grouped["slope"] - 0.5) <= grouped["slope_ci"] < 0.1
    assert pooled["slope_ci"] > 5 * grouped["slope_ci"]
    with pytest.raises(ValueError):  # one point per seed: no within-seed slope
        variance.fit_slope(np.array([2.0, 5.0, 10.0]), np.ones(3), groups=np.array([0, 1, 2]))


def test_the_tuned_pairs_at_scale_are_the_committed_sweeps_winners():
    """TUNED_AT_SCALE (what figure 4 trains with from N = 50) is the best score of each learner
    in the committed N = 50 sweep (results/tuning/tuning.csv, `dgpg reproduce tuning`)."""
    table = Path(__file__).resolve().parents[1] / "results" / "tuning" / "tuning.csv"
    with table.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["n_agents"]) == 50]
    assert {r["algo"] for r in rows} == set(TUNED_AT_SCALE)
    for algo, pair in TUNED_AT_SCALE.items():
        mine = [r for r in rows if r["algo"] == algo]
        assert len(mine) == 9  # the full 3 x 3 grid
        winner = max(mine, key=lambda r: float(r["score"]))
        assert winner["best"] == "True"
        assert (float(winner["learning_rate"]), float(winner["ent_coef"])) == (
            pair["learning_rate"], pair["ent_coef"]), algo
