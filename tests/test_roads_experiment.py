"""`dgpg reproduce roads` on a reduced grid: Braess's network as the TNTP network, one learner."""

from __future__ import annotations

import csv

import pytest
from cli_harness import run_cli, snapshot
from test_roads_assignment import braess_tntp

from dgpg.experiments.roads import routing as roads

BRAESS = roads.Network("Braess", 1, kind=roads.TNTP)
GRID = roads.Grid(networks=(roads.Network("grid 2x2", 3, rows=2, cols=2), BRAESS),
                  n_agents=(1,), algos=("dgpg",), actors=("scorer-id",), episodes=2, seeds=1,
                  env=(("episode_steps", 4), ("so_iterations", 5)))


@pytest.mark.slow  # about 50 s: one training run and five heuristics compiled
def test_roads_reduced_trains_draws_and_resumes(tmp_path):
    braess_tntp(tmp_path)
    out, runs = tmp_path / "roads", tmp_path / "runs"
    result = roads.run(out, grid=GRID, runs=runs, workers=1, network=str(tmp_path / "Braess"))
    for name in ("roads.png", "roads.csv", "roads_table.csv", "roads_heuristics.csv",
                 "roads.md"):
        assert (out / name).stat().st_size > 0, name
    [row] = result["rows"]
    assert (row["network"], row["algo"], row["n_agents"]) == ("Braess", "dgpg", 1)
    assert row["cost_over_so"] == pytest.approx(row["test_return"] / row["so_test_return"])
    assert row["cost_over_so"] > 0.99  # nothing beats the system optimum (to its accuracy)
    with (out / "roads_heuristics.csv").open() as f:
        heuristics = {r["policy"]: r for r in csv.DictReader(f)}
    assert set(heuristics) == set(GRID.heuristics)
    cost = {name: float(r["cost_over_so"]) for name, r in heuristics.items()}
    assert 0.99 < cost["so-sample"] < 1.05  # 4 platoons sampled from the SO split
    # Braess's paradox: the selfish choice (fastest, free-flow) costs more than random
    assert cost["so-sample"] < cost["random"] < cost["fastest"] < cost["free-flow"]
    text = (out / "roads.md").read_text()
    assert "| Braess | 1 | dgpg |" in text and "so-sample" in text
    assert "grid 2x2" not in text  # --agents 1 left it out

    before = snapshot(runs, folders=False)
    again = roads.run(out, grid=GRID, runs=runs, workers=1, network=str(tmp_path / "Braess"))
    assert snapshot(runs, folders=False) == before  # finished: nothing trained again
    assert again["rows"] == result["rows"]


def test_roads_needs_a_network_to_run(tmp_path):
    with pytest.raises(ValueError, match="no network to run"):
        roads.run(tmp_path / "out", grid=GRID)  # the TNTP network is not given
    code, stdout, stderr = run_cli(["reproduce", "roads", "--agents", "7", "--out",
                                    str(tmp_path / "out")])
    assert (code, stdout) == (2, "")
    assert stderr.startswith("dgpg: error: --agents 7: not in roads's grid (N = ")
    code, _, stderr = run_cli(["reproduce", "fig2", "--network", str(tmp_path / "City")])
    assert (code, stderr) == (
        2, "dgpg: error: --network applies to roads, roads-actors, not fig2\n")
    code, _, stderr = run_cli(["reproduce", "roads", "--network", str(tmp_path / "City")])
    assert code == 2 and "no TNTP file" in stderr and stderr.count("\n") == 1
