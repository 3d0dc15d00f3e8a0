"""Bad input to every command and option of the CLI, and to the public Python entry points.

Each CLI example keeps every option valid or omitted except one or two, which get a malformed
value: negative, zero, huge, NaN, infinite, text where a number belongs, an empty string, an
unknown name, an output path under a regular file or holding another run, an unreadable run
folder or checkpoint, an unknown option or a stray argument. The CLI runs in process; the
expensive work behind each command (training, evaluation, experiments, benchmarks, plotting)
is replaced by a stand-in that fails the test if reached, since bad input must be refused first.
Every example must exit with status 2, print exactly one line to stderr and change nothing
under the test's folder.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_harness import run_cli, snapshot
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import dgpg.bench
import dgpg.evaluation
import dgpg.experiments.curves
from dgpg import atomic, checkpoint, cli, experiments, training
from dgpg.domains import get_domain
from dgpg.domains.cloud.env import EnvConfig
from dgpg.domains.cloud.waterfill import waterfill
from dgpg.learners.ppo import ALGORITHMS
from dgpg.training import DEFAULT_RUN, RunConfig, metric_columns

METRIC_COLUMNS = metric_columns(RunConfig(**DEFAULT_RUN).env_config())

CLI_SETTINGS = settings(max_examples=75, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])
MAX_N = 16383  # the largest N whose environment fits its 32-bit indices


class ReachedWork(Exception):
    """Bad input got past validation into the command's work."""


def _refuse(*args, **kwargs):
    raise ReachedWork("the command started working on bad input")


@pytest.fixture(scope="module", autouse=True)
def no_work():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train", _refuse)
        mp.setattr(dgpg.evaluation, "evaluate", _refuse)
        mp.setattr(dgpg.evaluation, "evaluate_many", _refuse)
        mp.setattr(dgpg.bench, "env_throughput", _refuse)
        mp.setattr(dgpg.bench, "train_timing", _refuse)
        mp.setattr(dgpg.bench, "in_fresh_process", _refuse)
        mp.setattr(dgpg.experiments.curves, "plot_runs", _refuse)
        mp.setattr(cli.reproduce, "run_with_progress", _refuse)
        yield


def _metrics_csv(rows: int = 2) -> list[dict]:
    return [{k: (e if k == "episode" else 0 if k == "seed" else -1.0 - e)
             for k in METRIC_COLUMNS} for e in range(1, rows + 1)]


@dataclasses.dataclass
class Area:
    """A folder of things to point the CLI at; none of them may change."""

    root: Path
    fresh: Path  # does not exist: a valid place for a new output
    blocker: Path  # a regular file
    under_file: Path  # a path whose parent is a regular file
    other_run: Path  # a train run of another configuration (readable by `dgpg plot`)
    empty: Path  # an empty folder
    bad_runs: list[Path]  # folders that look like runs but are not readable ones
    bad_checkpoints: list[Path]
    read_only: list[Path]  # folders this user cannot write (none when running as root)


@pytest.fixture(scope="module")
def area(tmp_path_factory) -> Area:
    root = tmp_path_factory.mktemp("cli_inputs")
    blocker = root / "file.txt"
    blocker.write_text("a regular file\n")
    other = root / "other_run"
    (other / "checkpoints").mkdir(parents=True)
    atomic.write_json(other / "config.json",
                      RunConfig("ippo", 3, 7, seed=5, seeds=1, alpha=0.25).to_json())
    atomic.write_csv(other / "metrics.csv", _metrics_csv(), METRIC_COLUMNS)
    (other / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    empty = root / "empty"
    empty.mkdir()
    (root / "folder.png").mkdir()

    good_config = json.dumps(RunConfig("mappo", 4, 9).to_json())
    good_metrics = (other / "metrics.csv").read_text()
    bad = {  # name: {file: contents (None: a folder)}
        "list_config": {"config.json": "[]", "metrics.csv": good_metrics},
        "no_algo": {"config.json": '{"run": {}}', "metrics.csv": good_metrics},
        "dgpg_no_alpha": {"config.json": '{"run": {"algo": "dgpg", "n_agents": 2}}',
                          "metrics.csv": good_metrics},
        "text_values": {"config.json": good_config,
                        "metrics.csv": good_metrics.replace("-2.0", "abc").replace(
                            "\n1,0,", "\n1,zero,")},
        "text_episode": {"config.json": good_config,
                         "metrics.csv": good_metrics.replace("\n1,", "\none,")},
        "no_columns": {"config.json": good_config, "metrics.csv": "a,b\n1,2\n"},
        "empty_metrics": {"config.json": good_config, "metrics.csv": ""},
        "binary_metrics": {"config.json": good_config, "metrics.csv": b"\xff\xfe\x00\x81"},
        "bad_summary": {"config.json": good_config, "metrics.csv": good_metrics,
                        "summary.json": "{"},
        "summary_list": {"config.json": good_config, "metrics.csv": good_metrics,
                         "summary.json": "[]"},
        "summary_text": {"config.json": good_config, "metrics.csv": good_metrics,
                         "summary.json": '{"test_return": "high", "test_return_ci": 1}'},
        "summary_no_ci": {"config.json": good_config, "metrics.csv": good_metrics,
                          "summary.json": '{"test_return": 1.5}'},
        "config_folder": {"config.json": None, "metrics.csv": good_metrics},
        "no_config": {"metrics.csv": good_metrics},
    }
    bad_runs = []
    for name, files in bad.items():
        folder = root / "bad_runs" / name
        folder.mkdir(parents=True)
        for file, data in files.items():
            if data is None:
                (folder / file).mkdir()
            elif isinstance(data, bytes):
                (folder / file).write_bytes(data)
            else:
                (folder / file).write_text(data)
        bad_runs.append(folder)

    ckpts = root / "checkpoints"
    ckpts.mkdir()
    (ckpts / "empty.ckpt").write_bytes(b"")
    (ckpts / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(256))
    checkpoint.save(ckpts / "foreign.ckpt", {"w": np.zeros(3)},  # valid file, no run in it
                    {"config": {"run": {"algo": "dgpg", "n_agents": 0}}})
    checkpoint.save(ckpts / "no_meta.ckpt", {"w": np.zeros(3)}, {})
    bad_checkpoints = [ckpts / "empty.ckpt", ckpts / "random.ckpt", ckpts / "foreign.ckpt",
                       ckpts / "no_meta.ckpt", ckpts / "missing.ckpt", blocker,
                       blocker / "x.ckpt", other, empty]

    read_only = []
    locked = root / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").touch()
    except PermissionError:  # not root: the folder is really read-only
        read_only = [locked, locked / "sub"]
    else:
        (locked / "probe").unlink()
    return Area(root=root, fresh=root / "fresh" / "out", blocker=blocker,
                under_file=blocker / "sub", other_run=other, empty=empty, bad_runs=bad_runs,
                bad_checkpoints=bad_checkpoints, read_only=read_only)


def _check_refused(area: Area, argv: list[str]) -> str:
    """Run the CLI on bad input: exit 2, one line on stderr, nothing changed."""
    before = snapshot(area.root)
    code, stdout, stderr = run_cli(argv)
    assert code == 2, (argv, code, stdout, stderr)
    assert "Traceback" not in stdout + stderr, argv
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dgpg: error: ") and lines[0][13:].strip(), \
        (argv, stderr)
    assert snapshot(area.root) == before, argv
    return lines[0]


# --------------------------------------------------------------------------- values

_NO_DIGITS = st.text(max_size=12).filter(lambda s: not any(c.isdecimal() for c in s))
_NOT_INTEGERS = ["", " ", "1.5", "1e3", "0x10", "nan", "inf", "-inf", "1,2", "True", "٥", "３",
                 "2**4", "10 20"]


def _bad_int(lo: int, hi: int) -> st.SearchStrategy[str]:
    """Integers outside [lo, hi] and text that is not an integer."""
    return st.one_of(
        st.integers(max_value=lo - 1), st.integers(min_value=hi + 1),
        st.sampled_from([lo - 1, hi + 1, 10**30, -(10**30), 2**63]),
        st.sampled_from(_NOT_INTEGERS), _NO_DIGITS,
    ).map(str)


def _good_int(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi)).map(str)


def _bad_unit_float() -> st.SearchStrategy[str]:
    """Numbers outside [0, 1] (NaN and infinities included) and text that is not a number."""
    return st.one_of(
        st.floats().filter(lambda x: not 0.0 <= x <= 1.0).map(repr),
        st.sampled_from(["nan", "-nan", "inf", "-inf", "1e400", "-1e-300", "1.0000001", "0,5",
                         "", "half", "1/2"]),
        _NO_DIGITS,
    )


def _unknown(known) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "ALL", "Dgpg", "x" * 500]),
                     st.sampled_from(list(known)).map(lambda s: s + " ")
                     ).filter(lambda s: s not in known)


def _opt(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [flag, v])


def _flag(flag: str) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """A boolean flag: set or not; given a value is an error."""
    return st.sampled_from([[], [flag]]), st.sampled_from(
        [[f"{flag}=1"], [f"{flag}=false"], [f"{flag}="]])


_STRAY = st.sampled_from([["--no-such-option"], ["--no-such-option", "1"], ["-z"],
                          ["surplus"], ["--help=1"]])


def _argv(data, command: str, options: dict, required=(), positional=None) -> list[str]:
    """argv for `command`: each option of `options` ({name: (valid, invalid) strategies of
    token lists}) valid or omitted, except one or two (at least one) that are invalid."""
    options = {**options, "stray": (st.just([]), _STRAY)}
    names = sorted(options) + (["arg"] if positional is not None else [])
    bad = data.draw(st.sets(st.sampled_from(names), min_size=1, max_size=2), label="invalid")
    parts = []
    for name, (good, wrong) in options.items():
        if name in bad:
            parts.append(data.draw(wrong, label=name))
        elif name in required or data.draw(st.booleans()):
            parts.append(data.draw(good, label=name))
    parts = data.draw(st.permutations(parts))
    argv = [command, *(token for part in parts for token in part)]
    if positional is not None:
        good, wrong = positional
        values = data.draw(wrong if "arg" in bad else good, label="arg")
        if any(v.startswith("-") for v in values):
            argv.append("--")
        argv += values
    return argv


def _paths(paths) -> st.SearchStrategy[str]:
    return st.sampled_from([str(p) for p in paths])


_NUL = st.sampled_from(["a\0b", "\0"])
_BAD_SETS = st.one_of(
    st.sampled_from(["train.nope=1", "nope.hidden=1", "hidden=1", "train.hidden", "train.=1",
                     "=", "", "train.alpha=0.5", "env.n_agents=3", "run.overrides=x",
                     "train.hidden=1.5", "train.hidden=abc", "train.hidden=0",
                     "train.learning_rate=-1", "train.learning_rate=nan", "env.slots=0",
                     "env.arrival_rate=inf", "env.tide_amplitude=2", "run.seeds=0",
                     "run.algo=nope", "run.model=nope", "run.alpha=1.5", "env.jobs_per_step=1"]),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["train.update_epochs", "env.slots",
                                                         "run.episodes"]),
              st.sampled_from(_NOT_INTEGERS)),
)


# --------------------------------------------------------------------------- commands


@CLI_SETTINGS
@given(data=st.data())
def test_train_refuses_bad_input(area, data):
    other = json.loads((area.other_run / "config.json").read_text())["run"]
    outs = [area.under_file, area.blocker, area.other_run, *area.bad_runs, *area.read_only]
    bad_out = st.one_of(
        _paths(outs).map(lambda p: ["--out", p]),  # unusable, or holds a run
        _paths([o for o in outs if o != area.other_run] + [area.fresh, area.empty]).map(
            lambda p: ["--out", p, "--resume"]),
        # resuming the other run with an option that contradicts its configuration
        st.just(["--out", str(area.other_run), "--resume", "--agents", "2"]),
        _NUL.map(lambda p: ["--out", p]),
    )
    options = {
        "algo": (st.sampled_from(ALGORITHMS).map(lambda a: ["--algo", a]),
                 _opt("--algo", _unknown(ALGORITHMS))),
        # never the other run's N, so that `--resume` into it is refused
        "agents": (_opt("--agents", st.sampled_from(["1", "2", str(MAX_N)])),
                   st.one_of(_opt("--agents", _bad_int(1, 100_000)),
                             _opt("--agents", st.integers(MAX_N + 1, 100_000).map(str)))),
        "episodes": (_opt("--episodes", _good_int(1, 1_000_000)),
                     _opt("--episodes", _bad_int(1, 1_000_000))),
        "seed": (_opt("--seed", _good_int(0, 2**31 - 1)), _opt("--seed", _bad_int(0, 2**31 - 1))),
        "seeds": (_opt("--seeds", _good_int(1, 64)), _opt("--seeds", _bad_int(1, 64))),
        "alpha": (_opt("--alpha", st.sampled_from(["0", "0.5", "1", "1e-3"])),
                  _opt("--alpha", _bad_unit_float())),
        "out": (st.just(["--out", str(area.fresh)]), bad_out),
        "set": (st.sampled_from([["--set", "train.hidden=32"], ["--set", "env.arrival_rate=0.9"],
                                 ["--set", "run.seeds=2", "--set", "train.gamma=0.95"]]),
                st.one_of(_BAD_SETS.map(lambda v: ["--set", v]))),
        "config": (st.just([]), _paths([area.blocker, area.under_file, area.empty,
                                        area.root / "missing.toml"]).map(
                                            lambda p: ["--config", p])),
    }
    assert other["n_agents"] == 3
    _check_refused(area, _argv(data, "train", options, required=("out",)))


@CLI_SETTINGS
@given(data=st.data())
def test_evaluate_refuses_bad_input(area, data):
    policies = [*get_domain("cloud").heuristics, "all"]
    options = {
        "agents": (_opt("--agents", st.sampled_from(["1", "2", "50", str(MAX_N)])),
                   st.one_of(_opt("--agents", _bad_int(1, 100_000)),
                             _opt("--agents", st.integers(MAX_N + 1, 100_000).map(str)))),
        "policy": (st.lists(st.sampled_from(policies), min_size=1, max_size=3).map(
                       lambda names: [t for n in names for t in ("--policy", n)]),
                   st.tuples(st.lists(st.sampled_from(policies), max_size=2),
                             _unknown(policies)).map(
                       lambda p: [t for n in [*p[0], p[1]] for t in ("--policy", n)])),
        # no valid checkpoint: one is given only as the bad value
        "checkpoint": (st.just([]), st.one_of(_opt("--checkpoint", _paths(area.bad_checkpoints)),
                                              _opt("--checkpoint", _NUL))),
        "scenarios": (_opt("--scenarios", _good_int(1, 40)), _opt("--scenarios", _bad_int(1, 40))),
        "json": _flag("--json"),
        "final": _flag("--final"),
    }
    _check_refused(area, _argv(data, "evaluate", options))


def test_evaluate_final_needs_the_final_policies(area):
    """--final asks for a run's final policies: refused without a checkpoint, for a run folder
    without last.ckpt and for a best.ckpt, which holds the best-on-validation actors only."""
    line = _check_refused(area, ["evaluate", "--final", "--policy", "all"])
    assert "--final applies to a --checkpoint" in line
    line = _check_refused(area, ["evaluate", "--final", "--checkpoint", str(area.empty)])
    assert "checkpoint not found" in line and "last.ckpt" in line
    best = area.root / "best_only" / "checkpoints" / "best.ckpt"
    best.parent.mkdir(parents=True)
    checkpoint.save(best, {"actor": {"w": np.zeros(3, np.float32)}},
                    {"episode": 1, "config": RunConfig("dgpg", 2, 3).to_json()})
    for target in (best, best.parent.parent / "checkpoints" / "best.ckpt"):
        line = _check_refused(area, ["evaluate", "--final", "--checkpoint", str(target)])
        assert "holds only the best-on-validation actors" in line and str(best) in line
    line = _check_refused(area, ["evaluate", "--final", "--checkpoint",
                                 str(best.parent.parent)])  # a run folder without last.ckpt
    assert "checkpoint not found" in line


@CLI_SETTINGS
@given(data=st.data())
def test_reproduce_refuses_bad_input(area, data):
    names = [*experiments.registry(), "all"]
    backends = ["local"] + (["ray"] if importlib.util.find_spec("ray") else [])
    bad_backends = _unknown(backends) if backends == ["local", "ray"] else st.one_of(
        _unknown(backends + ["ray"]), st.just("ray"))  # ray given but not installed
    outs = [area.under_file, area.blocker, *area.read_only]
    options = {
        "out": (st.just(["--out", str(area.fresh)]),
                st.one_of(_opt("--out", _paths(outs)), _opt("--out", _NUL))),
        "quick": _flag("--quick"),
        "seeds": (_opt("--seeds", _good_int(1, 64)), _opt("--seeds", _bad_int(1, 64))),
        "backend": (st.just(["--backend", "local"]), _opt("--backend", bad_backends)),
        "address": (st.just([]), _opt("--address", st.text(max_size=20))),  # without ray
        "workers": (_opt("--workers", _good_int(1, 1024)), _opt("--workers", _bad_int(1, 1024))),
        "runs": (st.just([]), st.one_of(_opt("--runs", _paths(outs)), _opt("--runs", _NUL))),
        # no N below is in any experiment's grid (fig1, fig2 and all refuse --agents at all)
        "agents": (st.just([]), _opt("--agents", st.one_of(
            _bad_agent_list(), st.sampled_from(["7", "3", "2,1499", "3000", "16383"])))),
    }
    if "ray" in backends:  # --address is fine with --backend ray: only test it without
        options["backend"] = (st.just(["--backend", "local"]), options["backend"][1])
    positional = (st.sampled_from(names).map(lambda n: [n]),
                  st.one_of(st.just([]), _unknown(names).map(lambda n: [n])))
    _check_refused(area, _argv(data, "reproduce", options, required=("out", "backend"),
                               positional=positional))


@CLI_SETTINGS
@given(data=st.data())
def test_plot_refuses_bad_input(area, data):
    other = str(area.other_run)
    bad_folders = [area.under_file, area.blocker, area.empty, area.fresh, *area.bad_runs]
    png_folder = area.root / "folder.png"
    options = {
        "out": (st.just(["--out", str(area.fresh / "curves.png")]), _opt("--out", st.one_of(
            _paths([area.fresh / "curves.txt", area.fresh / "curves", area.fresh / ".png",
                    area.under_file / "curves.png", png_folder, area.blocker,
                    *(p / "c.png" for p in area.read_only)]),
            st.sampled_from(["a\0b.png", ""]),
            _NO_DIGITS.filter(lambda s: not s.lower().endswith(".png"))))),
        "column": (_opt("--column", st.sampled_from(METRIC_COLUMNS)),
                   _opt("--column", _unknown(METRIC_COLUMNS))),
    }
    positional = (st.lists(st.just(other), min_size=1, max_size=2),
                  st.one_of(st.just([]),  # no run folder at all
                            st.lists(st.one_of(st.just(other), _paths(bad_folders)),
                                     min_size=1, max_size=3).filter(
                                lambda runs: any(r != other for r in runs)),
                            _NUL.map(lambda p: [p])))
    _check_refused(area, _argv(data, "plot", options, required=("out",),
                               positional=positional))


def _bad_agent_list() -> st.SearchStrategy[str]:
    """Comma-separated N values with at least one that is not an integer in [1, MAX_N]."""
    token = st.one_of(st.integers(1, 100).map(str), st.just(" "), st.just(""))
    bad_token = st.one_of(
        st.integers(max_value=0).map(str), st.integers(MAX_N + 1, 10**30).map(str),
        st.sampled_from(["1.5", "1e3", "nan", "inf", "0x10", "ten", "-", "1 2"]),
        _NO_DIGITS.filter(lambda s: "," not in s and s.strip()),
    )
    mixed = st.tuples(st.lists(token, max_size=3), bad_token, st.lists(token, max_size=3)).map(
        lambda t: ",".join([*t[0], t[1], *t[2]]))
    return st.one_of(mixed, st.sampled_from(["", ",", " , ,", "\t"]))


@CLI_SETTINGS
@given(data=st.data())
def test_bench_refuses_bad_input(area, data):
    options = {
        "agents": (_opt("--agents", st.sampled_from(["1", "1,2", " 3 , 4", "1,,2"])),
                   _opt("--agents", _bad_agent_list())),
        "steps": (_opt("--steps", _good_int(1, 100_000)), _opt("--steps", _bad_int(1, 100_000))),
        "train": (_opt("--train", st.sampled_from(["", "2:1", "20:10,200:10"])),
                  _opt("--train", st.sampled_from(["5", "5:", ":3", "0:3", "3:0", "2:x",
                                                   "1:2:3", "99999:1", ",", "nan:1"]))),
        "split": (_opt("--split", st.sampled_from(["2", "20,200"])),
                  _opt("--split", _bad_agent_list())),
        "json": _flag("--json"),
    }
    _check_refused(area, _argv(data, "bench", options))


@pytest.mark.parametrize("argv", [
    ["fig1", "--agents", "5"], ["fig2", "--agents", "50"], ["all", "--agents", "5"],
    ["fig4", "--quick", "--agents", "50"],  # in the full grid, not the quick one
])
def test_reproduce_agents_outside_the_grid(area, argv):
    line = _check_refused(area, ["reproduce", *argv, "--out", str(area.fresh)])
    assert "--agents" in line


@pytest.mark.parametrize("argv", [
    ["nope"], ["--nope"], ["Train"], ["train", "--help=1"], ["evaluate", "--policy"],
    ["bench", "--steps"], ["", "--agents", "2"], ["plot", "--out"],
])
def test_unknown_commands_and_missing_values(area, argv):
    _check_refused(area, argv)


def test_train_into_a_folder_holding_another_run(area):
    """Named messages for the two ways of reusing a run folder."""
    line = _check_refused(area, ["train", "--agents", "2", "--out", str(area.other_run)])
    assert "already holds a run" in line
    line = _check_refused(area, ["train", "--agents", "2", "--out", str(area.other_run),
                                 "--resume"])
    assert "another configuration" in line


def test_valid_names_still_reach_the_work(area):
    """The stand-ins are reached for valid input, so the refusals above are not vacuous."""
    for argv in (["train", "--agents", "2", "--out", str(area.fresh)],
                 ["evaluate", "--agents", "2", "--policy", "all", "--policy", "random"],
                 ["bench", "--agents", "1,2", "--steps", "3"],
                 ["plot", str(area.other_run), "--out", str(area.fresh / "c.png")],
                 ["reproduce", "fig2", "--out", str(area.fresh), "--quick"],
                 ["reproduce", "fig4", "--out", str(area.fresh), "--agents", "5,1500"]):
        try:
            with pytest.raises(ReachedWork):
                run_cli(argv)
        finally:
            for p in (area.fresh, area.fresh.parent):  # the output folder, made first
                if p.exists():
                    p.rmdir()


# --------------------------------------------------------------------------- Python API

_ANY = st.one_of(
    st.integers(-(2**40), 2**40), st.floats(), st.booleans(), st.none(), st.text(max_size=4),
    st.just(10**400), st.just(float("nan")), st.just([1]), st.just(1j),
    st.integers(-3, 2**40).map(np.int64), st.floats(-1, 2, width=32).map(np.float32),
    st.sampled_from([np.float32("inf"), np.float32("nan"), np.float16(0.5), np.int32(2)]),
)


def _one_line(e: Exception) -> None:
    assert str(e) and "\n" not in str(e) and len(str(e)) < 400, str(e)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(RunConfig)]),
                              _ANY, min_size=1, max_size=3))
def test_run_config_refuses_bad_arguments(fields):
    """A ValueError or TypeError with a one-line message, or a configuration that can be
    written to config.json and read back equal."""
    kwargs = {"algo": "dgpg", "n_agents": 2, "episodes": 3, **fields}
    try:
        run = RunConfig(**kwargs)
    except (ValueError, TypeError) as e:
        _one_line(e)
        return
    assert run.algo in ALGORITHMS and 0.0 <= run.alpha <= 1.0
    assert all(type(getattr(run, f)) is int for f in ("n_agents", "episodes", "seed", "seeds"))
    assert type(run.alpha) is float
    saved = json.loads(json.dumps(run.to_json()))
    assert RunConfig.from_dict(saved["run"]) == run
    run.train_config()


def test_run_config_messages():
    cases = {
        "unknown algorithm": {"algo": "ppo"},
        "n_agents must be an integer in": {"n_agents": 0},
        "episodes must be an integer in": {"episodes": 1.0},
        "seed must be an integer in": {"seed": -1},
        "seeds must be an integer in": {"seeds": True},
        "alpha must be a number in": {"alpha": float("nan")},
    }
    for message, field in cases.items():
        with pytest.raises(ValueError, match=message):
            RunConfig(**{"algo": "dgpg", "n_agents": 2, "episodes": 3, **field})
    with pytest.raises(TypeError):
        RunConfig("dgpg", 2)  # episodes missing
    with pytest.raises(TypeError):
        RunConfig("dgpg", 2, 3, agents=4)


@settings(max_examples=150, deadline=None)
@given(fields=st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(EnvConfig)]),
                              _ANY, min_size=1, max_size=3))
def test_env_config_refuses_bad_arguments(fields):
    """Wrong types, NumPy scalars, NaN and out-of-range values: a one-line ValueError, or a
    configuration of plain Python numbers (hashable, a `jit` static argument; JSON for
    config.json) within its array limits."""
    try:
        cfg = EnvConfig(**fields)
    except ValueError as e:
        _one_line(e)
        return
    hash(cfg)
    values = dataclasses.asdict(cfg)
    names = ("model_error_kind", "trace", "split")  # the fields that are names
    assert all(type(v) in (int, float) or (k in names and type(v) is str)
               for k, v in values.items())
    assert EnvConfig(**json.loads(json.dumps(values))) == cfg
    assert cfg.n_servers * cfg.slots < 2**31 and cfg.shed_fraction_at_peak() <= 0.01


def test_env_config_refuses_unknown_fields():
    with pytest.raises(TypeError, match="agents"):
        EnvConfig(agents=3)


def _bad_waterfill_args(draw) -> tuple:
    m = draw(st.integers(1, 6))
    load = draw(st.lists(st.floats(0, 100), min_size=m, max_size=m))
    capacity = draw(st.lists(st.floats(0.1, 100), min_size=m, max_size=m))
    total = draw(st.floats(0, 100))
    args = [load, capacity, total]
    kind = draw(st.sampled_from(["non-finite", "negative", "zero capacity", "shape", "type"]))
    which = draw(st.integers(0, 2))
    if kind == "non-finite":
        value = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e39]))
    elif kind == "negative":
        value = -draw(st.floats(1e-30, 1e30))
    elif kind == "zero capacity":
        which, value = 1, 0.0
    if kind in ("non-finite", "negative", "zero capacity"):
        if which == 2:
            args[2] = value
        else:
            args[which] = list(args[which])
            args[which][draw(st.integers(0, m - 1))] = value
    elif kind == "shape":
        args = draw(st.sampled_from([
            [load, capacity + [1.0], total], [[], [], total], [[load], [capacity], total],
            [load, capacity, [total, total]], [load, capacity[0], total],
            [np.float32(1.0), np.float32(1.0), total]]))
    else:
        args[which] = draw(st.sampled_from(["1", None, [1, [2]], 1j, {"a": 1}, object()]))
    return tuple(args)


@settings(max_examples=150, deadline=None)
@given(args=st.composite(_bad_waterfill_args)())
def test_waterfill_refuses_bad_arguments(args):
    """NaN, infinite, negative, zero-capacity, mis-shaped or non-numeric arguments raise instead
    of returning an allocation."""
    note(repr(args))
    with pytest.raises((ValueError, TypeError)) as info:
        waterfill(*args)
    _one_line(info.value)


def test_waterfill_checks_cost_nothing_under_jit():
    """Valid arguments give the same allocation eagerly and compiled; compiled calls are not
    checked (NaN in, NaN or zeros out, as before)."""
    load, capacity = np.array([1.0, 0.0, 5.0]), np.array([1.0, 2.0, 1.0])
    eager = np.asarray(waterfill(load, capacity, 3.0))
    np.testing.assert_allclose(eager, np.asarray(jax.jit(waterfill)(load, capacity, 3.0)))
    np.testing.assert_allclose(eager.sum(), 3.0, rtol=1e-6)
    jax.jit(waterfill)(load, capacity, np.float32(np.nan))  # no exception when traced


def test_read_only_folders_are_refused_when_not_root(area):
    if not area.read_only:
        pytest.skip("running as root: permissions do not stop writes")
    _check_refused(area, ["reproduce", "fig1", "--out", str(area.read_only[0])])
    assert os.access(area.root, os.W_OK)
