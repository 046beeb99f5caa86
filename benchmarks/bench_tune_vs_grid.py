"""The tuner against a naive grid (run on demand): `python benchmarks/bench_tune_vs_grid.py`.

Issue 5 promises that `capsim tune` on the demo spike scenario
(scenarios/flash-crowd.yaml) finds a config that meets the SLOs the shipped
settings break, and that it costs no more than the cheapest SLO-meeting point
of what a person would try by hand: a grid over the ScaledObject's threshold
and maxReplicaCount only, everything else as shipped. Both searches use the
same seeds and the same judge (the scenario's SLOs, safety margin and failure
ratio): the grid is a second `tune:` block in grid mode over just those two
dimensions, so one feasibility rule decides both.

Grid: threshold 10..60 step 5 (11 values) x maxReplicaCount 20..100 step 10
(9 values) = 99 points. tests/test_tune_vs_grid.py runs the same comparison on
a shortened copy of the scenario.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402
from sim.parallel import make_executor  # noqa: E402
from sim.scenario import LoadedScenario  # noqa: E402
from sim.search_space import NodePoolTune, RangeModel, ServiceTune, cluster_pools  # noqa: E402
from sim.tune import Evaluation, TuneRun, tune  # noqa: E402

SCENARIO = ROOT / "scenarios" / "flash-crowd.yaml"
THRESHOLDS = RangeModel(low=10, high=60, step=5)
MAX_REPLICAS = RangeModel(low=20, high=100, step=10)
_POOL_FIELDS = (
    "instance_categories",
    "instance_families",
    "instance_sizes",
    "capacity_types",
    "consolidation_policy",
    "consolidate_after",
    "budget_nodes",
)


def grid_scenario(
    scn: LoadedScenario, service: str, threshold: RangeModel, max_replicas: RangeModel
) -> LoadedScenario:
    """The scenario with a tune block that sweeps threshold x maxReplicaCount of one service, nothing else.

    Every other dimension (including the defaults the tuner would add) is
    pinned to its shipped value; seeds, margin, hard SLOs and pricing are the
    scenario's own, so the grid is judged exactly like the tuner.
    """
    pinned = {
        "min_replicas": False,
        "activation_threshold": False,
        "polling_interval": False,
        "cooldown_period": False,
        "scale_up": {"stabilization_window": False, "pods": False, "percent": False, "period": False},
        "scale_down": {"stabilization_window": False, "pods": False, "percent": False, "period": False},
        "requests": False,
    }
    services = {
        s.name: ServiceTune.model_validate(
            {**pinned, "threshold": threshold, "max_replicas": max_replicas}
            if s.name == service
            else {**pinned, "threshold": False, "max_replicas": False}
        )
        for s in scn.services
    }
    pools = {
        name: NodePoolTune.model_validate(dict.fromkeys(_POOL_FIELDS, False)) for name in cluster_pools(scn)
    }
    grid = scn.tune.model_copy(update={"services": services, "node_pools": pools, "mode": "grid"})
    return dataclasses.replace(scn, tune=grid)


@dataclass(frozen=True)
class Comparison:
    tuned: TuneRun
    grid: TuneRun

    @property
    def recommendation(self) -> Evaluation | None:
        return self.tuned.recommendation()

    @property
    def grid_best(self) -> Evaluation | None:
        """The grid's cheapest feasible point (its own baseline excluded: that is the shipped config)."""
        feasible = [e for e in self.grid.evaluations if e.feasible(self.grid.judge)]
        return min(feasible, key=lambda e: (e.cost_month_usd, e.number)) if feasible else None

    def grid_best_attainment(self) -> Evaluation:
        """The grid point closest to feasible, for when none is: highest SLO margin on the worst seed."""
        judge = self.grid.judge
        return max(
            (e for e in self.grid.evaluations if e.ok), key=lambda e: (e.margin(judge), -e.cost_month_usd)
        )


def compare(
    scn: LoadedScenario,
    service: str,
    *,
    workers: int,
    grid_threshold: RangeModel,
    grid_max_replicas: RangeModel,
) -> Comparison:
    """Run the scenario's own tune block and the naive grid on the same seeds."""
    seeds = scn.tune.seeds
    tuned = tune(scn, executor=make_executor("local", workers), seeds=seeds)
    grid = tune(
        grid_scenario(scn, service, grid_threshold, grid_max_replicas),
        executor=make_executor("local", workers),
        seeds=seeds,
        mode="grid",
    )
    assert tuned.seeds == grid.seeds and tuned.judge == grid.judge
    return Comparison(tuned, grid)


def describe(ev: Evaluation, run: TuneRun) -> str:
    worst = ", ".join(f"{name} {ev.worst_attainment(name):.4f}" for name in run.judge.hard_slos)
    return f"${ev.cost_month_usd:,.2f}/month; worst-seed attainment {worst}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--service", default="front")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scn = sim.load_scenario(args.scenario)
    started = time.perf_counter()
    cmp = compare(
        scn, args.service, workers=args.workers, grid_threshold=THRESHOLDS, grid_max_replicas=MAX_REPLICAS
    )
    wall = time.perf_counter() - started
    tuned, grid, judge = cmp.tuned, cmp.grid, cmp.tuned.judge
    required = ", ".join(f"{n} >= {judge.required[n]:.4f}" for n in judge.hard_slos)
    print(
        f"scenario {args.scenario.name}: seeds {list(tuned.seeds)}, "
        f"margin {judge.slo_margin:.0%} of the error budget ({required})"
    )
    print(f"shipped: {describe(tuned.baseline, tuned)}; meets SLOs: {tuned.baseline.feasible(judge)}")
    rec = cmp.recommendation
    print(f"tuner ({tuned.mode}, {len(tuned.evaluations)} candidates, {tuned.wall_time_s:.1f} s):")
    if rec is None:
        print("  no recommendation: no candidate meets the SLOs")
    else:
        print(f"  recommendation #{rec.number} {rec.params}")
        print(f"  {describe(rec, tuned)}")
    grid_dims = " x ".join(
        f"{d.name} {d.low:g}..{d.high:g} step {d.step:g}" for d in grid.space.dimensions if d.step is not None
    )
    print(f"grid ({grid_dims}: {len(grid.evaluations)} points, {grid.wall_time_s:.1f} s):")
    best = cmp.grid_best
    if best is None:
        closest = cmp.grid_best_attainment()
        print(f"  none meets the SLO; best attainment at {closest.params}: {describe(closest, grid)}")
    else:
        feasible = sum(e.feasible(judge) for e in grid.evaluations)
        print(f"  cheapest SLO-meeting point ({feasible} of {len(grid.evaluations)} meet) {best.params}")
        print(f"  {describe(best, grid)}")
        if rec is not None:
            print(f"  tuner / grid cost ratio: {rec.cost_month_usd / best.cost_month_usd:.3f}")
    print(f"wall time {wall:.1f} s on {args.workers} local workers")


if __name__ == "__main__":
    main()
