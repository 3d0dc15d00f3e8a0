"""`dgpg reproduce model-error` on a tiny grid: its runs, the rule with the wrong and the true
model, the gap-closed share, and what it writes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dgpg.config import DEFAULTS, overrides_json
from dgpg.experiments import model_error
from dgpg.experiments.model_error import Grid, Panel
from dgpg.experiments.sweep import RunSpec

TINY = Panel("cloud", 2, "HeteroCloud, N=2", env=(("episode_steps", 20),),
             train=(("update_epochs", 2), ("num_minibatches", 2), ("hidden", 16)))
GRID = Grid(panels=(TINY,), errors=(0.0, 0.5), learners=("dgpg", "mappo"), episodes=2,
            seeds=1, budget=1)
"""Two episodes, so that the best and the final policies can differ."""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("model-error")
    return out, model_error.run(out, grid=GRID, workers=1)


def test_the_runs_are_of_generation_2_with_the_model_error_of_their_row(result):
    """Generation 2, in which the grid was trained; `dgpg` sets fixed alpha, so that its runs
    are those of the current defaults (generation 3)."""
    out, res = result
    rows = {(r["learner"], r["error"]): r for r in res["rows"]}
    budget = "dgpg, 1 episodes"
    assert set(rows) == {(n, e) for n in GRID.learners for e in GRID.errors} | {(budget, 0.5)}
    assert rows[budget, 0.5]["episodes"] == 1 and rows["dgpg", 0.5]["episodes"] == 2
    specs, _ = model_error.tasks(GRID)
    runs = specs[TINY]
    keys = {k: s.key for k, s in runs.items()}
    assert GRID.defaults == 2 and all(key.endswith("_g2") for key in keys.values())
    # MAPPO uses no model: one run serves every E; DG-PG trains once per E
    assert keys["mappo", 0.0] == keys["mappo", 0.5]
    assert rows["mappo", 0.0]["test_return"] == rows["mappo", 0.5]["test_return"]
    config = json.loads((out / "runs" / keys["dgpg", 0.5] / "config.json").read_text())
    assert config["train"]["alpha_schedule"] == "fixed"
    assert config["env"]["model_error"] == 0.5 and config["run"]["defaults"] == 2
    current = RunSpec("dgpg", 2, 2, alpha=0.5, seeds=1, domain="cloud", defaults=DEFAULTS,
                      model="calibrated",
                      overrides=overrides_json(train=dict(TINY.train), env=GRID.env(TINY, 0.5)))
    assert DEFAULTS == 3 and current.key.endswith("_g3")
    assert current.run.train_config() == runs["dgpg", 0.5].run.train_config()
    # every learner of the full comparison is a run of its own at each E
    every = model_error.tasks(dataclasses.replace(GRID, learners=tuple(model_error.LEARNERS),
                                                  budget=None))
    model_runs = {k: s for k, s in every[0][TINY].items() if model_error.LEARNERS[k[0]].uses_model}
    assert len({s.key for s in model_runs.values()}) == len(model_runs)
    schedules = {k[0]: s.run.train_config().alpha_schedule for k, s in model_runs.items()}
    assert schedules == {"dgpg": "fixed", "dgpg-adaptive": "adaptive", "dgpg-aligned": "fixed",
                         "dgpg-linear": "linear", "dr": "adaptive"}
    models = {k[0]: s.run.model for k, s in model_runs.items()}
    assert models["dgpg"] == "calibrated" and models["dgpg-aligned"] == "aligned"


def test_the_gap_closed_is_measured_from_the_wrong_rule_to_the_true_one(result):
    _, res = result
    rules = {h["error"]: h for h in res["heuristics"]}
    assert rules[0.0]["rule_test_return"] == rules[0.0]["true_rule_test_return"]
    assert rules[0.5]["true_rule_test_return"] == rules[0.0]["rule_test_return"]
    for row in res["rows"]:
        if row["error"] == 0.0:
            assert row["final_gap_closed"] is None
            continue
        wrong, true = rules[row["error"]]["rule_test_return"], rules[0.0]["rule_test_return"]
        expected = (row["final_test_return"] - wrong) / (true - wrong)
        assert row["final_gap_closed"] == pytest.approx(expected)
        assert row["final_cost_over_reference"] == pytest.approx(
            row["final_test_return"] / rules[0.0]["reference_test_return"])
        random, ref = rules[0.0]["random_test_return"], rules[0.0]["reference_test_return"]
        assert row["final_random_gap_closed"] == pytest.approx(
            (row["final_test_return"] - random) / (ref - random))


def test_it_writes_its_figure_and_tables_and_reruns_without_training(result):
    out, _ = result
    for name in ("model-error.png", "model-error.csv", "model-error_table.csv",
                 "model-error_heuristics.csv", "model-error.md"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "model-error.md").read_text()
    assert "## HeteroCloud, N=2" in text and "gap closed" in text
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")}
    model_error.run(out, grid=GRID, workers=1)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")} == before


def test_a_grid_without_the_true_model_or_without_a_panel_is_refused(tmp_path):
    with pytest.raises(ValueError, match="include 0"):
        model_error.run(tmp_path, grid=Grid(panels=(TINY,), errors=(0.3,)))
    roads_only = Grid(panels=tuple(p for p in model_error.FULL.panels if p.needs_network))
    with pytest.raises(ValueError, match="needs --network"):
        model_error.run(tmp_path, grid=roads_only)
