"""Invariants of the Karpenter model over random clusters (hypothesis, small synthetic catalog).

- no node is ever over-committed, by Karpenter's packing or by kube-scheduler's binding;
- every pod that fits some allowed instance type gets placed;
- NodePool limits are never exceeded;
- a disruption budget of N nodes is never exceeded;
- the integer-programming optimum is a lower bound of the model's node cost;
- the consolidation pre-check never changes a decision.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.controllers.karpenter.binder import bind
from sim.controllers.karpenter.budgets import budget_value
from sim.controllers.karpenter.config import DisruptionConfig, LaunchConfig
from sim.controllers.karpenter.disruption import DisruptionController
from sim.controllers.karpenter.launch import Launch, launch, make_node
from sim.controllers.karpenter.optimum import optimal_cost
from sim.controllers.karpenter.provisioning import Provisioner
from sim.controllers.karpenter.types import (
    LABEL_INSTANCE_CATEGORY,
    LABEL_ZONE,
    Budget,
    InstanceType,
    Node,
    NodePoolSpec,
    Offering,
    Operator,
    PodSpec,
    Requirement,
    Resources,
)
from tests import karpenter_fixtures as fx

CATALOG = fx.catalog()
FIRST = LaunchConfig(zone_tie_break="first", max_launch_types=None)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pod_shapes = st.tuples(
    st.integers(10, 9000),
    st.integers(16, 40000),
    st.sampled_from([None, "c", "m", "r"]),
    st.sampled_from([None, *fx.ZONES]),
)


def _pods(shapes: list[tuple[int, int, str | None, str | None]], prefix: str = "p") -> list[PodSpec]:
    pods = []
    for i, (cpu, mem, category, zone) in enumerate(shapes):
        selector = {}
        if category:
            selector[LABEL_INSTANCE_CATEGORY] = category
        if zone:
            selector[LABEL_ZONE] = zone
        pods.append(
            PodSpec(f"{prefix}{i}", f"svc{i % 3}", Resources(float(cpu), float(mem)), node_selector=selector)
        )
    return pods


def _round(prov: Provisioner, pending: list[PodSpec], nodes: list[Node], now_s: float) -> list[PodSpec]:
    """One provisioning loop; pods go where Karpenter put them. Returns the pods still pending."""
    result = prov.solve(pending, nodes, now_s)
    by_name = {n.name: n for n in nodes}
    specs = {p.id: p for p in pending}
    for pid, node_name in result.nominations.items():
        by_name[node_name].pods[pid] = specs[pid]
    for plan in result.claims:
        launched = launch(prov, plan, FIRST)
        assert isinstance(launched, Launch), launched
        node = make_node(launched, f"n{len(nodes)}", now_s, now_s)
        for pid in plan.pod_ids:
            node.pods[pid] = specs[pid]
        nodes.append(node)
    return [p for p in pending if p.id in result.unschedulable]


def _assert_not_overcommitted(nodes: list[Node]) -> None:
    for node in nodes:
        used = node.requested()
        assert used.cpu_millicores <= node.allocatable.cpu_millicores + 1e-6, node.name
        assert used.memory_mib <= node.allocatable.memory_mib + 1e-6, node.name
        assert used.pods <= node.allocatable.pods + 1e-9, node.name


def _fits_somewhere(pod: PodSpec, types: list[InstanceType], daemon: Resources) -> bool:
    for it in types:
        category = pod.node_selector.get(LABEL_INSTANCE_CATEGORY)
        if category and it.labels[LABEL_INSTANCE_CATEGORY] != category:
            continue
        if (pod.requests + daemon).fits_in(it.allocatable):
            return True
    return False


@SETTINGS
@given(
    st.lists(pod_shapes, min_size=1, max_size=40),
    st.lists(pod_shapes, min_size=0, max_size=15),
    st.tuples(st.integers(0, 300), st.integers(0, 400)),
)
def test_packing_and_binding_never_overcommit_and_place_every_feasible_pod(
    first: list[tuple[int, int, str | None, str | None]],
    second: list[tuple[int, int, str | None, str | None]],
    daemon: tuple[int, int],
) -> None:
    ds = PodSpec("ds", "ds", Resources(float(daemon[0]), float(daemon[1])), owner_kind="DaemonSet")
    prov = Provisioner(CATALOG, [NodePoolSpec("default")], [ds])
    nodes: list[Node] = []
    pods = _pods(first)
    left = _round(prov, pods, nodes, 0.0)
    _assert_not_overcommitted(nodes)
    event(f"{len(nodes)} nodes" if len(nodes) < 3 else "3+ nodes")
    daemon_res = ds.requests
    feasible = {p.id for p in pods if _fits_somewhere(p, CATALOG, daemon_res)}
    assert feasible.isdisjoint(p.id for p in left), [p for p in left if p.id in feasible]
    more = _pods(second, prefix="q")
    bound = bind(more, nodes, 1.0)
    for pid, node_name in bound.bound.items():
        node = next(n for n in nodes if n.name == node_name)
        node.pods[pid] = next(p for p in more if p.id == pid)
    _assert_not_overcommitted(nodes)
    rest = [p for p in more if p.id not in bound.bound]
    left = _round(prov, rest, nodes, 2.0)
    _assert_not_overcommitted(nodes)
    feasible = {p.id for p in rest if _fits_somewhere(p, CATALOG, daemon_res)}
    assert feasible.isdisjoint(p.id for p in left)
    assert all(reason for reason in bound.unbound.values())


@SETTINGS
@given(
    st.lists(st.lists(pod_shapes, min_size=1, max_size=12), min_size=1, max_size=4),
    st.integers(2000, 40000),
    st.integers(4096, 200000),
    st.integers(1, 6),
)
def test_nodepool_limits_are_never_exceeded(
    batches: list[list[tuple[int, int, str | None, str | None]]], cpu: int, memory: int, count: int
) -> None:
    pool = NodePoolSpec("limited", limits={"cpu": float(cpu), "memory": float(memory), "nodes": float(count)})
    prov = Provisioner(CATALOG, [pool])
    nodes: list[Node] = []
    pending: list[PodSpec] = []
    for b, batch in enumerate(batches):
        pending = _round(prov, pending + _pods(batch, prefix=f"b{b}-"), nodes, float(b))
        assert sum(n.capacity.cpu_millicores for n in nodes) <= cpu + 1e-6
        assert sum(n.capacity.memory_mib for n in nodes) <= memory + 1e-6
        assert len(nodes) <= count
        _assert_not_overcommitted(nodes)
    event("pods left pending by limits" if pending else "all placed")


def _cluster(loads: list[int], cpu_each: int) -> list[Node]:
    it = next(t for t in CATALOG if t.name == "m9.xlarge")
    nodes = []
    for i, load in enumerate(loads):
        node = make_node(
            Launch(
                f"c{i}",
                "default",
                it.name,
                fx.ZONES[i % 3],
                "on-demand",
                0.192,
                it.capacity,
                it.allocatable,
                {**it.labels},
                (),
                Resources(),
                (),
                (),
                "",
            ),
            f"node-{i:02d}",
            -7200.0,
            -7000.0,
        )
        for k in range(load):
            node.pods[f"n{i}-p{k}"] = PodSpec(f"n{i}-p{k}", "svc", Resources(float(cpu_each), 256.0))
        nodes.append(node)
    return nodes


@SETTINGS
@given(
    st.lists(st.integers(0, 3), min_size=3, max_size=14),
    st.one_of(st.integers(0, 4), st.sampled_from(["10%", "25%", "50%", "100%"])),
    st.integers(100, 950),
)
def test_a_budget_of_n_nodes_is_never_exceeded(loads: list[int], budget: int | str, cpu_each: int) -> None:
    pool = NodePoolSpec("default", budgets=(Budget(nodes=budget),))
    prov = Provisioner(CATALOG, [pool])
    controller = DisruptionController(prov, DisruptionConfig())
    nodes = _cluster(loads, cpu_each)
    allowed = budget_value(Budget(nodes=budget), len(nodes))
    for step in range(6):
        result = controller.reconcile(nodes, [], float(step * 10))
        if result.command is None:
            continue
        event(f"{result.command.method} {result.command.decision}")
        for plan in result.command.replacements:
            launched = launch(prov, plan, FIRST)
            assert isinstance(launched, Launch)
            nodes.append(make_node(launched, f"r{step}-{plan.name}", float(step * 10), math.inf))
        for node in nodes:
            if node.name in result.command.candidates:
                node.marked_for_deletion = True
        assert sum(n.marked_for_deletion for n in nodes) <= allowed


@settings(max_examples=12, deadline=None)
@given(
    st.lists(st.tuples(st.integers(100, 3500), st.integers(128, 12000)), min_size=2, max_size=7),
    st.lists(st.sampled_from(range(len(CATALOG))), min_size=2, max_size=4, unique=True),
)
def test_milp_optimum_bounds_the_model_cost_from_below(
    shapes: list[tuple[int, int]], picks: list[int]
) -> None:
    types = [
        InstanceType(
            t.name,
            t.capacity,
            t.allocatable,
            t.labels,
            (Offering("zone-a", "on-demand", t.offerings[0].price_usd_per_h),),
        )
        for t in (CATALOG[i] for i in picks)
    ]
    biggest = max(types, key=lambda t: t.allocatable.cpu_millicores + t.allocatable.memory_mib)
    pods = [
        PodSpec(
            f"p{i}",
            "svc",
            Resources(
                float(min(c, biggest.allocatable.cpu_millicores)),
                float(min(m, biggest.allocatable.memory_mib)),
            ),
        )
        for i, (c, m) in enumerate(shapes)
    ]
    pods = [p for p in pods if any(p.requests.fits_in(t.allocatable) for t in types)]
    if not pods:
        return
    prov = Provisioner(types, [NodePoolSpec("default")])
    result = prov.solve(pods, [], 0.0)
    assert not result.unschedulable
    ours = 0.0
    for plan in result.claims:
        launched = launch(prov, plan, FIRST)
        assert isinstance(launched, Launch)
        ours += launched.price_usd_per_h
    requests = np.array([[p.requests.cpu_millicores, p.requests.memory_mib, 1.0] for p in pods])
    alloc = np.array(
        [[t.allocatable.cpu_millicores, t.allocatable.memory_mib, t.allocatable.pods] for t in types]
    )
    best = optimal_cost(requests, alloc, [t.offerings[0].price_usd_per_h for t in types])
    assert best <= ours + 1e-9


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(1, 4), min_size=2, max_size=10),
    st.integers(100, 950),
    st.sampled_from(["on-demand", "spot"]),
    st.booleans(),
)
def test_consolidation_precheck_never_changes_the_decision(
    loads: list[int], cpu_each: int, capacity_type: str, spot_to_spot: bool
) -> None:
    nodes_on = _cluster(loads, cpu_each)
    nodes_off = _cluster(loads, cpu_each)
    for n in nodes_on + nodes_off:
        n.capacity_type = capacity_type  # type: ignore[assignment]
    pool = NodePoolSpec(
        "default",
        budgets=(Budget(nodes="100%"),),
        requirements=(Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c", "m")),),
    )
    on = DisruptionController(Provisioner(CATALOG, [pool]), DisruptionConfig(spot_to_spot=spot_to_spot))
    off = DisruptionController(
        Provisioner(CATALOG, [pool]), DisruptionConfig(spot_to_spot=spot_to_spot, precheck=False)
    )
    a = on.reconcile(nodes_on, [], 0.0).command
    b = off.reconcile(nodes_off, [], 0.0).command
    event("no command" if b is None else f"{b.method} {b.decision}")
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert (a.method, a.candidates) == (b.method, b.candidates)
        assert [p.instance_types for p in a.replacements] == [p.instance_types for p in b.replacements]
