"""Tuning: search space, candidates, determinism across executors, the recommendation's guarantees."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.errors import InputError
from sim.parallel import InlineExecutor, LocalExecutor, make_executor
from sim.search_space import CandidateError, PricingModel, apply_params, search_space
from sim.tune import BASELINE, Evaluation, Judge, SeedOutcome, TuneRun, pareto_front, tune
from sim.tune_report import write_tune
from tests import simple_scenario as ss

# A ramp that four pods cannot carry: the shipped maxReplicaCount (4) breaks the SLO, eight holds it.
RAMP = {
    "kind": "ramp",
    "from_rps": 40,
    "to_rps": 300,
    "start": "2m",
    "duration": "8m",
    "transforms": [{"kind": "noise", "cv": 0.1, "correlation_time": "1m"}],
}
GRID = {
    "services": {
        "api": {
            "threshold": {"low": 15, "high": 30, "step": 5},
            "max_replicas": {"choices": [4, 8, 12]},
            "min_replicas": False,
            "scale_up": {"percent": False},
            "scale_down": {"stabilization_window": False},
        }
    },
    "seeds": 2,
}


def load(tmp_path: Path, tune_block: dict[str, Any] | None = None, **kw: Any) -> Any:
    data = ss.scenario(traffic=RAMP, horizon="15m", max_replicas=4, threshold=20, **kw)
    if tune_block is not None:
        data["tune"] = tune_block
    return sim.load_scenario(ss.write(tmp_path, data))


def outcome(run: TuneRun) -> list[tuple[Any, ...]]:
    """Everything a run decided, in trial order: equal lists mean equal runs."""
    rec = run.recommendation()
    return [
        *(
            (e.number, sorted(e.params.items()), e.cost_month_usd, [s.attainment for s in e.seeds])
            for e in run.all()
        ),
        ("recommendation", None if rec is None else rec.number),
        ("pareto", [e.number for e in run.pareto()]),
    ]


# --- the space -----------------------------------------------------------------------------------


def test_default_space_comes_from_the_shipped_config(tmp_path: Path) -> None:
    scn = load(tmp_path)
    space = search_space(scn, scn.tune)
    names = [d.name for d in space.dimensions]
    assert names == [
        "api.threshold",
        "api.min_replicas",
        "api.max_replicas",
        "api.scale_up.percent",
        "api.scale_down.stabilization_window",
    ]
    threshold = space.by_name("api.threshold")
    assert threshold.current == 20.0 and threshold.low <= 20.0 <= threshold.high
    assert space.by_name("api.max_replicas").current == 4
    # Scale-to-zero settings only matter when the minimum can reach zero.
    scn0 = load(tmp_path, min_replicas=0)
    assert "api.cooldown_period" in [d.name for d in search_space(scn0, scn0.tune).dimensions]


def test_tune_block_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load(tmp_path, {"services": {"nope": {}}})
    assert "tune.services.nope" in str(exc.value) and "api" in str(exc.value)
    with pytest.raises(InputError) as exc:
        load(tmp_path, {"hard_slos": ["missing"]})
    assert "tune.hard_slos[0]" in str(exc.value)
    with pytest.raises(InputError) as exc:
        load(tmp_path, {"services": {"api": {"threshold": {"low": 30, "high": 10}}}})
    assert "threshold" in str(exc.value)


def test_apply_changes_only_the_named_fields(tmp_path: Path) -> None:
    scn = load(tmp_path)
    params = {
        "api.threshold": 27.5,
        "api.max_replicas": 9,
        "api.scale_down.stabilization_window": 60,
        "api.scale_up.percent": 400,
    }
    out = apply_params(scn, params)
    before, after = scn.service("api"), out.service("api")
    assert after.scaled_object.triggers[0].metadata["threshold"] == "27.5"
    assert after.scaled_object.max_replica_count == 9
    assert after.scaled_object.behavior.scale_down.stabilization_window_s == 60
    up = {p.type: p.value for p in after.scaled_object.behavior.scale_up.policies}
    assert up == {"Pods": 4, "Percent": 400}
    assert after.traffic == before.traffic and after.model == before.model and out.slos == scn.slos
    assert before.scaled_object.max_replica_count == 4  # the original is untouched
    with pytest.raises(CandidateError):
        apply_params(scn, {"api.min_replicas": 5, "api.max_replicas": 4})


def test_requests_right_sizing_replaces_model_and_workload(tmp_path: Path) -> None:
    scn = load(tmp_path, tune_block={"services": {"api": {"requests": True}}})
    names = [d.name for d in search_space(scn, scn.tune).dimensions]
    assert "api.cpu_request" in names and "api.memory_request" in names
    out = apply_params(scn, {"api.cpu_request": 300}).service("api")
    assert out.model.cpu_request_millicores == 300 and out.workload.cpu_request_millicores == 300


def test_loaded_scenario_pickles(tmp_path: Path) -> None:
    import pickle

    scn = load(tmp_path, GRID)
    again = pickle.loads(pickle.dumps(scn))
    assert again.tune == scn.tune and again.services[0].scaled_object == scn.services[0].scaled_object


# --- the search ----------------------------------------------------------------------------------


def test_grid_mode_enumerates_the_space(tmp_path: Path) -> None:
    scn = load(tmp_path, GRID)
    run = tune(scn, trials=12)
    assert run.mode == "grid"
    tried = [tuple(e.params[k] for k in ("api.threshold", "api.max_replicas")) for e in run.evaluations[:12]]
    assert tried == list(itertools.product([15.0, 20.0, 25.0, 30.0], [4, 8, 12]))


def test_recommendation_meets_every_slo_on_every_seed_with_the_margin(tmp_path: Path) -> None:
    scn = load(tmp_path, GRID)
    run = tune(scn, trials=12)
    judge = run.judge
    assert not run.baseline.feasible(judge)  # the shipped config breaks the SLO
    rec = run.recommendation()
    assert rec is not None and rec.number != BASELINE
    assert len(rec.seeds) == 2
    for seed in rec.seeds:
        for name in judge.hard_slos:
            assert seed.attainment[name] >= judge.objectives[name] + 0.2 * (1 - judge.objectives[name])
        assert max(seed.failed_ratio.values()) <= judge.max_failure_ratio
    cheaper = [e for e in run.evaluations if e.feasible(judge) and e.cost_month_usd < rec.cost_month_usd]
    assert all(e.cost_month_usd >= rec.cost_month_usd / (1 + scn.tune.tie_tolerance) for e in cheaper)


def test_hopeless_candidates_stop_after_the_seed_that_breaks(tmp_path: Path) -> None:
    scn = load(tmp_path, GRID)
    run = tune(scn, trials=12)
    broken = [e for e in run.evaluations if e.params["api.max_replicas"] == 4]
    assert broken and all(len(e.seeds) == 1 for e in broken)
    assert len(run.baseline.seeds) == 2  # before/after figures always use every seed


def test_same_result_on_one_or_two_local_workers(tmp_path: Path) -> None:
    block = {**GRID, "mode": "optuna", "generation": 4, "sampler_seed": 3}
    scn = load(tmp_path, block)
    inline = tune(scn, trials=8, executor=InlineExecutor())
    pooled = tune(scn, trials=8, executor=LocalExecutor(2))
    assert inline.mode == "optuna"
    assert outcome(inline) == outcome(pooled)


def test_same_pareto_front_on_a_dask_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    scn = load(tmp_path, {**GRID, "mode": "optuna", "generation": 4})
    inline = tune(scn, trials=8, executor=InlineExecutor())
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        remote = tune(scn, trials=8, executor=make_executor("dask://" + c.scheduler_address.split("://")[1]))
    assert outcome(inline) == outcome(remote)


def test_unknown_executor_is_bad_input() -> None:
    with pytest.raises(InputError):
        make_executor("ray://x")


# --- Pareto front --------------------------------------------------------------------------------

JUDGE = Judge(("slo",), {"slo": 0.99}, {"slo": 0.992}, 0.2, 1.0, PricingModel())


def fake(number: int, cost: float, attainment: float) -> Evaluation:
    seed = SeedOutcome(0, cost, {"slo": attainment}, {}, {}, {"s": 0.0}, 0, 0.0, {}, "test")
    return Evaluation(number, {}, (seed,), 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(980, 1000)), min_size=1, max_size=25))
def test_pareto_front_has_no_dominated_point(points: list[tuple[int, int]]) -> None:
    evs = [fake(i, float(c), a / 1000) for i, (c, a) in enumerate(points)]
    front = pareto_front(evs, JUDGE)
    key = {e.number: (e.cost_month_usd, e.margin(JUDGE)) for e in evs}

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    front_ids = {e.number for e in front}
    for e in front:
        assert not any(dominates(key[o.number], key[e.number]) for o in evs)
    for e in evs:
        if e.number not in front_ids:  # left out: dominated, or a duplicate of a point on the front
            assert any(dominates(key[f], key[e.number]) or key[f] == key[e.number] for f in front_ids)
    assert len({key[n] for n in front_ids}) == len(front_ids)
    costs = [e.cost_month_usd for e in front]
    assert costs == sorted(costs)


# --- outputs -------------------------------------------------------------------------------------


def test_report_files_and_recommendation_json(tmp_path: Path) -> None:
    scn = load(tmp_path, GRID)
    run = tune(scn, trials=12)
    out = write_tune(run, tmp_path / "tune-x", "capsim tune s.yaml --trials 12 --seeds 2")
    for name in ("candidates.csv", "pareto.csv", "pareto.png", "sensitivity.csv", "recommendation.md"):
        assert (out / name).stat().st_size > 0
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["status"] == "recommended"
    assert rec["before"]["feasible"] is False and rec["after"]["feasible"] is True
    fields = {c["field"]: c for c in rec["changes"]}
    assert fields["spec.maxReplicaCount"]["before"] == 4
    assert fields["spec.maxReplicaCount"]["after"] == rec["params"]["api.max_replicas"]
    assert all(c["kind"] == "ScaledObject" for c in rec["changes"])
    md = (out / "recommendation.md").read_text()
    assert "| monthly cost" in md and "pareto.png" in md and rec["reproduce"] in md
    import pandas as pd

    pareto = pd.read_csv(out / "pareto.csv")
    assert pareto["pareto"].all() and len(pareto) == len(run.pareto())
    sens = pd.read_csv(out / "sensitivity.csv")
    # Raising maxReplicaCount buys pods: cost goes up with it.
    assert sens.set_index("parameter").loc["api.max_replicas", "spearman_cost"] > 0.5


def test_baseline_is_evaluated_unmodified(tmp_path: Path) -> None:
    scn = load(tmp_path, GRID)
    run = tune(scn, trials=12)
    direct = sim.simulate(dataclasses.replace(scn, seed=scn.seed))
    assert math.isclose(
        run.baseline.seeds[0].attainment["api-latency"], direct.summary["slos"][0]["attainment"]
    )
