"""The engine with nodes under Karpenter: pods wait for nodes, nodes cost money, disruption shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sim
from tests import simple_scenario as ss

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "demo"
SPIKE = {
    "kind": "spike",
    "base_rps": 30,
    "multiplier": 6,
    "start": "10m",
    "rise": "30s",
    "hold": "10m",
    "decay": "2m",
}


def with_cluster(data: dict[str, Any], **cluster: Any) -> dict[str, Any]:
    data = dict(data)
    data["gitops_root"] = str(DEMO)
    data["cluster"] = {"nodepools": "k8s/karpenter", **cluster}
    return data


def run(tmp_path: Path, data: dict[str, Any], name: str = "s.yaml") -> sim.Result:
    return sim.simulate(sim.load_scenario(ss.write(tmp_path, data, name)))


def test_cost_adds_up_and_pods_wait_for_new_nodes(tmp_path: Path) -> None:
    data = with_cluster(
        ss.scenario(traffic=SPIKE, max_replicas=30, horizon="40m"),
        node_launch={"distribution": "lognormal", "mean": "60s", "cv": 0.2},
    )
    r = run(tmp_path, data)
    cost = r.summary["cost"]
    assert cost["total_usd"] > 0
    assert sum(cost["by_instance_type_usd"].values()) == pytest.approx(cost["total_usd"])
    assert sum(cost["by_nodepool_usd"].values()) == pytest.approx(cost["total_usd"])
    apportioned = sum(cost["by_service_usd"].values()) + cost["idle_usd"] + cost["daemonsets_usd"]
    assert apportioned == pytest.approx(cost["total_usd"], rel=1e-6)
    tr = r.traces["api"]
    # The spike needs more nodes than t=0 had: some pods wait for a launch before they can start.
    assert tr.replicas_pending.max() > 0
    assert r.summary["nodes"]["launched"] > 1
    launches = r.events[(r.events["controller"] == "karpenter") & (r.events["action"] == "launch")]
    assert launches["reason"].str.contains("cheapest").any()
    assert (tr.replicas_ready + tr.replicas_starting + tr.replicas_pending == tr.replicas_desired).all()
    nodes = r.nodes
    assert nodes is not None and set(nodes.columns) >= {"time_s", "instance_type", "nodes"}


def test_slow_node_launches_cost_latency(tmp_path: Path) -> None:
    fast = with_cluster(
        ss.scenario(traffic=SPIKE, max_replicas=30, horizon="40m"),
        node_launch={"distribution": "deterministic", "mean": "20s"},
    )
    slow = with_cluster(
        ss.scenario(traffic=SPIKE, max_replicas=30, horizon="40m"),
        node_launch={"distribution": "deterministic", "mean": "240s"},
    )
    a, b = run(tmp_path, fast, "fast.yaml"), run(tmp_path, slow, "slow.yaml")
    assert np.array_equal(a.traces["api"].offered, b.traces["api"].offered)
    assert b.traces["api"].replicas_pending.sum() > a.traces["api"].replicas_pending.sum()
    assert b.summary["slos"][0]["attainment"] <= a.summary["slos"][0]["attainment"]


def test_unschedulable_pod_is_reported_not_a_crash(tmp_path: Path) -> None:
    data = with_cluster(ss.scenario(horizon="10m"))
    deployment = data["services"][0]["inline"]["deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "4000"
    r = run(tmp_path, data)
    stuck = r.summary["unschedulable"]
    assert stuck and all(s["owner"] == "api" for s in stuck)
    assert r.traces["api"].replicas_ready.max() == 0
    pending = r.events[(r.events["controller"] == "karpenter") & (r.events["action"] == "pending")]
    assert len(pending) >= 1


def test_spot_interruptions_evict_and_recreate_pods(tmp_path: Path) -> None:
    data = with_cluster(
        ss.scenario(
            traffic={"kind": "constant", "rps": 60}, min_replicas=4, initial_replicas=4, horizon="1h"
        ),
        spot_interruption_rate=4.0,
    )
    r = run(tmp_path, data)
    interrupts = r.events[r.events["action"] == "interrupt"]
    assert len(interrupts) >= 1
    tr = r.traces["api"]
    assert (tr.replicas_desired >= 4).all()
    # Evicted pods start again: ready capacity dips below what the Deployment asks for.
    assert (tr.replicas_ready < tr.replicas_desired).any()


def test_consolidation_removes_nodes_after_the_spike(tmp_path: Path) -> None:
    data = with_cluster(ss.scenario(traffic=SPIKE, max_replicas=30, horizon="1h"))
    r = run(tmp_path, data)
    counts = r.nodes.groupby("time_s")["nodes"].sum()
    assert counts.max() > counts.iloc[-1]
    disrupted = r.events[r.events["action"].isin(["disrupt"])]
    assert len(disrupted) >= 1


def test_background_tenants_take_room_on_shared_nodes(tmp_path: Path) -> None:
    base = ss.scenario(traffic={"kind": "constant", "rps": 40}, horizon="20m")
    alone = run(tmp_path, with_cluster(base), "alone.yaml")
    tenants = [{"name": "batch", "nodepool": "spot", "cpu": "1500m", "memory": "2Gi", "replicas": 6}]
    shared = run(tmp_path, with_cluster(base, background=tenants), "shared.yaml")
    # The other tenant's pods need nodes too: the same service now shares a bigger, dearer cluster.
    assert shared.summary["cost"]["total_usd"] > alone.summary["cost"]["total_usd"]
    assert "batch" in shared.summary["cost"]["by_service_usd"]
    assert shared.summary["cost"]["by_service_usd"]["api"] == pytest.approx(
        alone.summary["cost"]["by_service_usd"]["api"], rel=0.5
    )
    assert np.array_equal(shared.traces["api"].offered, alone.traces["api"].offered)
