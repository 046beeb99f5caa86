"""Issue 5's promise on a short copy of the demo spike: the tuner beats a naive threshold x max grid.

The full comparison (4 h scenario, the scenario's own budget) is
benchmarks/bench_tune_vs_grid.py. Here the flash crowd keeps its character
(the same service, nodes, SLOs and sixfold spike in 60 s from the shipped 6
pods) but the horizon is 1 h with the spike 20 minutes in, and the tuner gets
24 candidates; the grid is the benchmark's own (threshold 10..60 step 5 x
maxReplicaCount 20..100 step 10, 99 points, everything else as shipped).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

import sim
from benchmarks.bench_tune_vs_grid import MAX_REPLICAS, THRESHOLDS, Comparison, compare
from sim.tune import BASELINE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    yaml = YAML()
    data = yaml.load(ROOT / "scenarios" / "flash-crowd.yaml")
    data["horizon"] = "1h"
    data["gitops_root"] = str(ROOT / "scenarios" / "demo")  # the copy lives elsewhere; the manifests don't
    traffic = data["services"][0]["traffic"]
    traffic["start_hour"] = 9
    traffic["transforms"][0]["start"] = "20m"
    data["tune"]["trials"] = 24
    path = tmp_path_factory.mktemp("flash") / "flash-crowd-1h.yaml"
    yaml.dump(data, path)
    scn = sim.load_scenario(path)
    assert scn.tune.seeds == 2 and scn.tune.slo_margin > 0
    return compare(scn, "front", workers=2, grid_threshold=THRESHOLDS, grid_max_replicas=MAX_REPLICAS)


def test_both_searches_share_seeds_and_judge(comparison: Comparison) -> None:
    tuned, grid = comparison.tuned, comparison.grid
    assert tuned.seeds == grid.seeds == (7, 8)
    assert tuned.judge == grid.judge
    assert grid.mode == "grid" and [d.name for d in grid.space.dimensions] == [
        "front.threshold",
        "front.max_replicas",
    ]
    assert len(grid.evaluations) == 11 * 9
    # The grid's baseline is the tuner's: the same shipped config on the same seeds.
    assert grid.baseline.seeds == tuned.baseline.seeds


def test_shipped_settings_break_the_slo(comparison: Comparison) -> None:
    judge = comparison.tuned.judge
    assert comparison.tuned.baseline.violations(judge)
    assert any(comparison.tuned.baseline.worst_attainment(n) < judge.objectives[n] for n in judge.hard_slos)


def test_recommendation_meets_every_hard_slo_on_every_seed_with_the_margin(comparison: Comparison) -> None:
    judge = comparison.tuned.judge
    rec = comparison.recommendation
    assert rec is not None and rec.number != BASELINE
    assert tuple(s.seed for s in rec.seeds) == comparison.tuned.seeds
    for seed in rec.seeds:
        for name in judge.hard_slos:
            objective = judge.objectives[name]
            assert seed.attainment[name] >= objective + judge.slo_margin * (1 - objective)
        assert max(seed.failed_ratio.values()) <= judge.max_failure_ratio


def test_recommendation_costs_no_more_than_the_cheapest_slo_meeting_grid_point(
    comparison: Comparison,
) -> None:
    rec, best = comparison.recommendation, comparison.grid_best
    assert rec is not None
    # On this copy some grid points do meet the SLO (a low threshold with a higher max); were none
    # to, the claim reduces to the recommendation meeting it, which the test above checks.
    assert best is not None
    assert rec.cost_month_usd <= best.cost_month_usd
