"""Shared NodePools: a NodePool change is proposed only when the scenario covers the pool's tenants."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sim.controllers.karpenter.types import Budget, NodePoolSpec, Operator, Requirement, Taint
from sim.search_space import Dimension, NodePoolTune, SearchSpace, TuneModel, apply_params
from sim.tenancy import Workload, can_land_on, coverage, pool_coverages, scan_tree
from sim.tune import Evaluation, Judge, SeedOutcome, TuneRun
from sim.tune_report import changes_for

GENERAL = NodePoolSpec(
    name="general",
    requirements=(Requirement("karpenter.sh/capacity-type", Operator.IN, ("on-demand",)),),
    labels={"team": "shop"},
)
GPU = NodePoolSpec(name="gpu", taints=(Taint("nvidia.com/gpu", "NoSchedule"),))

CHECKOUT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: shop}
spec:
  template:
    spec:
      containers: [{name: checkout, image: "checkout:1"}]
"""
TRAINER = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: trainer}
spec:
  template:
    spec:
      nodeSelector: {karpenter.sh/nodepool: gpu}
      tolerations: [{key: nvidia.com/gpu, operator: Exists}]
      containers: [{name: t, image: "t:1"}]
"""


@pytest.mark.parametrize(
    ("workload", "pool", "lands"),
    [
        pytest.param(Workload("a", None, "Deployment"), GENERAL, True, id="no-selector-any-untainted-pool"),
        pytest.param(Workload("a", None, "Deployment"), GPU, False, id="taint-not-tolerated"),
        pytest.param(
            Workload("a", None, "Deployment", tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},)),
            GPU,
            True,
            id="taint-tolerated",
        ),
        pytest.param(
            Workload("a", None, "Deployment", {"karpenter.sh/nodepool": "gpu"}),
            GENERAL,
            False,
            id="other-pool",
        ),
        pytest.param(Workload("a", None, "Deployment", {"team": "shop"}), GENERAL, True, id="pool-label"),
        pytest.param(Workload("a", None, "Deployment", {"team": "ads"}), GENERAL, False, id="label-differs"),
        pytest.param(
            Workload("a", None, "Deployment", {"karpenter.sh/capacity-type": "spot"}),
            GENERAL,
            False,
            id="requirement-excludes",
        ),
        pytest.param(Workload("a", None, "Deployment", {"disk": "ssd"}), GENERAL, False, id="unknown-label"),
        pytest.param(
            Workload("a", None, "Deployment", {"kubernetes.io/arch": "arm64"}), GENERAL, True, id="well-known"
        ),
    ],
)
def test_can_land_on(workload: Workload, pool: NodePoolSpec, lands: bool) -> None:
    assert can_land_on(workload, pool) is lands


def test_tree_scan_finds_tenants_and_skips_unparseable_files(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "checkout.yaml").write_text(CHECKOUT)
    (tmp_path / "apps" / "trainer.yml").write_text(TRAINER)
    (tmp_path / "apps" / "chart.yaml").write_text("replicas: {{ .Values.replicas }}\n: [\n")
    workloads, unreadable = scan_tree(tmp_path)
    found = {w.name: w for w in workloads}
    assert set(found) == {"checkout", "trainer"} and unreadable == ["apps/chart.yaml"]
    cov = coverage(GENERAL, found.values(), simulated={"front"}, background=())
    assert cov.tenants == ("checkout",) and not cov.covered
    assert "checkout" in cov.risk() and "disrupt" in cov.risk()
    assert coverage(GENERAL, found.values(), simulated={"front"}, background={"checkout"}).covered
    assert coverage(GPU, found.values(), simulated={"trainer"}, background=()).covered
    outside = coverage(GPU, found.values(), simulated={"trainer"}, background=(), other_tenants=("batch",))
    assert outside.uncovered == ("batch",)
    # A file nobody can read may hide tenants: the pool is not covered, and the risk names the file.
    hidden = coverage(GPU, found.values(), {"trainer"}, (), unreadable=unreadable)
    assert not hidden.covered and "apps/chart.yaml" in hidden.risk()


@dataclass(frozen=True)
class FakeCluster:
    node_pools: tuple[NodePoolSpec, ...]
    background: tuple[Any, ...] = ()
    pods: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class FakeScenario:
    """Just what the tuner's NodePool paths read: a tree, services, a cluster, a tune block."""

    gitops_root: Path
    cluster: FakeCluster
    file: Path
    services: tuple[Any, ...] = ()
    tune: TuneModel = dataclasses.field(default_factory=TuneModel)


def test_apply_params_sets_nodepool_fields() -> None:
    scn = FakeScenario(Path("."), FakeCluster((GENERAL,)), Path("s.yaml"))
    out = apply_params(
        scn,
        {
            "pool:general.capacity_types": "spot,on-demand",
            "pool:general.consolidate_after": 300,
            "pool:general.consolidation_policy": "WhenEmpty",
            "pool:general.budget_nodes": "20%",
        },
    )
    pool = out.cluster.node_pools[0]
    reqs = {r.key: r.values for r in pool.requirements}
    assert reqs["karpenter.sh/capacity-type"] == ("spot", "on-demand")
    assert pool.consolidate_after_s == 300.0 and pool.consolidation_policy == "WhenEmpty"
    assert pool.budgets == (Budget(nodes="20%"),)
    assert scn.cluster.node_pools[0] is GENERAL  # the input is untouched


def _run(tmp_path: Path, background: tuple[Any, ...]) -> TuneRun:
    (tmp_path / "checkout.yaml").write_text(CHECKOUT)
    scn = FakeScenario(
        tmp_path,
        FakeCluster((GENERAL,), background),
        tmp_path / "s.yaml",
        tune=TuneModel(node_pools={"general": NodePoolTune()}),
    )
    (tmp_path / "s.yaml").write_text("cluster: {nodepools: []}\n")
    dim = Dimension(
        name="pool:general.consolidate_after",
        owner="general",
        target="pool",
        field="consolidate_after",
        kind="int",
        choices=(),
        low=0,
        high=600,
        current=0,
    )
    seed = SeedOutcome(1, 10.0, {}, {}, {}, {}, 0, 1.0, {}, "test")
    ev = Evaluation(0, {dim.name: 300}, (seed,), 1)
    judge = Judge((), {}, {}, 0.2, 1.0, TuneModel().pricing)
    return TuneRun(scn, SearchSpace((dim,)), judge, (1,), "grid", ev, [ev], "inline")  # type: ignore[arg-type]


def test_uncovered_pool_change_is_advice_with_the_risk_named(tmp_path: Path) -> None:
    run = _run(tmp_path, background=())
    changes, advice = changes_for(run, run.evaluations[0])
    assert changes == []
    assert len(advice) == 1 and advice[0].change.field == "spec.disruption.consolidateAfter"
    assert advice[0].change.after == "300s" and "checkout" in advice[0].risk


def test_covered_pool_change_is_proposed(tmp_path: Path) -> None:
    background = (SimpleNamespace(name="checkout", nodepool="general"),)
    run = _run(tmp_path, background=background)
    assert pool_coverages(run.scenario)["general"].covered
    changes, advice = changes_for(run, run.evaluations[0])
    assert advice == [] and [c.field for c in changes] == ["spec.disruption.consolidateAfter"]
