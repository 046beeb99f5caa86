"""Unit tests of the Karpenter model: requirements, bad input, placement, launch, binding, disruption.

The upstream cases are in test_karpenter_conformance.py and the invariants in
test_karpenter_properties.py; these pin the behaviour between them, each on
the smallest input that shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sim.controllers.karpenter.batcher import Batcher
from sim.controllers.karpenter.binder import bind
from sim.controllers.karpenter.budgets import CronError, allowed_disruptions, is_active, parse_cron
from sim.controllers.karpenter.config import BatchConfig, DisruptionConfig, LaunchConfig
from sim.controllers.karpenter.disruption import DisruptionController
from sim.controllers.karpenter.launch import Launch, LaunchFailure, launch, make_node
from sim.controllers.karpenter.lifecycle import drift_reason, expired, interruption
from sim.controllers.karpenter.provisioning import ClaimPlan, Provisioner, ProvisioningResult, nominate
from sim.controllers.karpenter.requirements import Requirements, ValueSet
from sim.controllers.karpenter.types import (
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_CATEGORY,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_SIZE,
    LABEL_ZONE,
    PDB,
    Budget,
    InstanceType,
    Node,
    NodePoolSpec,
    Offering,
    Operator,
    PodAffinityTerm,
    PodSpec,
    Requirement,
    RequirementError,
    Resources,
    Taint,
    Toleration,
    TopologySpreadConstraint,
)
from tests import karpenter_fixtures as fx

CATALOG = fx.catalog()
FIRST = LaunchConfig(zone_tie_break="first", max_launch_types=None)


def pod(name: str, cpu: float = 500.0, mem: float = 512.0, **kw: object) -> PodSpec:
    return PodSpec(name, kw.pop("owner", "svc"), Resources(cpu, mem), **kw)  # type: ignore[arg-type]


def provision(
    pools: list[NodePoolSpec], pods: list[PodSpec], nodes: list[Node] | None = None
) -> tuple[Provisioner, ProvisioningResult]:
    prov = Provisioner(CATALOG, pools)
    return prov, prov.solve(pods, nodes or [], 0.0)


def launched_node(prov: Provisioner, plan: ClaimPlan, name: str, ready_s: float = 0.0) -> Node:
    result = launch(prov, plan, FIRST)
    assert isinstance(result, Launch), result
    return make_node(result, name, 0.0, ready_s)


# ----------------------------------------------------------------- bad input, clearly reported


@pytest.mark.parametrize(
    ("operator", "values", "message"),
    [
        (
            "Equals",
            ("a",),
            "unknown operator 'Equals' (valid: In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte, Lte)",
        ),
        ("Gt", ("4.5",), "Gt needs an integer value, got '4.5'"),
        ("Lte", ("1", "2"), "Lte takes exactly one integer value"),
        ("Exists", ("x",), "Exists takes no values"),
        ("In", (), "In needs at least one value"),
    ],
)
def test_invalid_requirements_are_rejected_with_the_reason(
    operator: str, values: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RequirementError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Requirement(LABEL_INSTANCE_CPU, operator, values)  # type: ignore[arg-type]


def test_min_values_out_of_range_is_rejected() -> None:
    with pytest.raises(RequirementError, match="minValues must be between 1 and 50"):
        Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c",), min_values=0)


def test_a_nodepool_no_instance_type_satisfies_is_explained_and_its_pods_stay_pending() -> None:
    impossible = NodePoolSpec("gpu", requirements=(Requirement(LABEL_INSTANCE_CPU, Operator.GT, ("512",)),))
    _, result = provision([impossible], [pod("a")])
    assert "NodePool 'gpu'" in result.pool_errors["gpu"]
    assert "leave no instance type" in result.pool_errors["gpu"]
    assert "no NodePool can launch nodes" in result.unschedulable["a"]
    assert not result.claims


def test_a_pod_no_pool_can_hold_is_reported_with_what_it_asked_for() -> None:
    _, result = provision([NodePoolSpec("default")], [pod("huge", cpu=500_000.0), pod("ok")])
    assert "no allowed instance type has room for cpu=500000m" in result.unschedulable["huge"]
    assert "ok" not in result.unschedulable


def test_a_pod_requesting_a_resource_no_type_offers_is_explained() -> None:
    gpu = PodSpec("g", "svc", Resources(100.0, 100.0, extended={"nvidia.com/gpu": 1.0}))
    _, result = provision([NodePoolSpec("default")], [gpu])
    assert "nvidia.com/gpu" in result.unschedulable["g"]


def test_custom_label_the_pool_does_not_define_blocks_and_says_so() -> None:
    _, result = provision([NodePoolSpec("default")], [pod("a", node_selector={"team": "payments"})])
    assert "label 'team' is not defined by the NodePool" in result.unschedulable["a"]
    labelled = NodePoolSpec("team", labels={"team": "payments"})
    _, result = provision([labelled], [pod("a", node_selector={"team": "payments"})])
    assert not result.unschedulable


def test_taints_need_tolerations() -> None:
    tainted = NodePoolSpec("gpu", taints=(Taint("dedicated", "NoSchedule", "gpu"),))
    _, result = provision([tainted], [pod("a")])
    assert "does not tolerate taint dedicated=gpu:NoSchedule" in result.unschedulable["a"]
    tolerant = pod("b", tolerations=(Toleration("dedicated", "Equal", "gpu", "NoSchedule"),))
    _, result = provision([tainted], [tolerant])
    assert not result.unschedulable


def test_bad_cron_schedule_is_rejected() -> None:
    with pytest.raises(CronError, match="needs 5 fields"):
        parse_cron("0 0 *")
    with pytest.raises(CronError, match="outside 0-23"):
        parse_cron("0 25 * * *")


# ----------------------------------------------------------------- requirement algebra


def test_integer_operators_gt_gte_lt_lte() -> None:
    def allows(op: Operator, bound: str, value: str) -> bool:
        return ValueSet.from_requirement(Requirement(LABEL_INSTANCE_CPU, op, (bound,))).has(value)

    assert not allows(Operator.GT, "4", "4") and allows(Operator.GT, "4", "8")
    assert allows(Operator.GTE, "4", "4") and not allows(Operator.GTE, "4", "2")
    assert not allows(Operator.LT, "4", "4") and allows(Operator.LTE, "4", "4")
    assert not allows(Operator.GT, "4", "large")


def test_negative_requirements_agree_with_an_absent_label() -> None:
    def reqs(op: Operator, *values: str) -> Requirements:
        return Requirements.of([Requirement("k", op, values)])

    assert reqs(Operator.NOT_IN, "a").intersects(reqs(Operator.DOES_NOT_EXIST)) is None
    assert reqs(Operator.EXISTS).intersects(reqs(Operator.DOES_NOT_EXIST)) is not None
    assert reqs(Operator.IN, "a", "b").intersect(reqs(Operator.NOT_IN, "a")) == reqs(Operator.IN, "b")
    bounded = reqs(Operator.GT, "2").intersect(reqs(Operator.IN, "1", "4", "x"))
    assert bounded == reqs(Operator.IN, "4")


def test_claims_narrow_candidate_types_as_pods_join() -> None:
    pool = NodePoolSpec(
        "default",
        requirements=(
            Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c", "m")),
            Requirement(LABEL_INSTANCE_CPU, Operator.LTE, ("4",)),
        ),
    )
    _, one = provision([pool], [pod("a", 500.0, 512.0)])
    _, two = provision([pool], [pod("a", 500.0, 512.0), pod("b", 2500.0, 512.0)])
    assert len(one.claims) == len(two.claims) == 1
    assert set(two.claims[0].instance_types) < set(one.claims[0].instance_types)
    assert all(name.split(".")[0] in ("c9", "m9") for name in one.claims[0].instance_types)
    assert "instance types left after narrowing" in two.claims[0].explanation


def test_heavier_pool_wins_and_equal_weights_go_by_name_descending() -> None:
    spot = NodePoolSpec(
        "spot", weight=50, requirements=(Requirement(LABEL_CAPACITY_TYPE, Operator.IN, ("spot",)),)
    )
    od = NodePoolSpec("od", weight=10)
    _, result = provision([od, spot], [pod("a")])
    assert result.claims[0].nodepool == "spot"
    _, result = provision([NodePoolSpec("alpha"), NodePoolSpec("beta")], [pod("a")])
    assert result.claims[0].nodepool == "beta"


def test_zonal_spread_pins_each_claim_to_a_different_zone() -> None:
    spread = TopologySpreadConstraint(LABEL_ZONE, 1, "DoNotSchedule", {"app": "web"})
    pods = [pod(f"w{i}", 3000.0, 512.0, labels={"app": "web"}, topology_spread=(spread,)) for i in range(3)]
    _, result = provision(
        [NodePoolSpec("default", requirements=(Requirement(LABEL_INSTANCE_CPU, Operator.LTE, ("4",)),))], pods
    )
    zones = sorted(str(c.requirements.get(LABEL_ZONE)) for c in result.claims)
    assert zones == [str(ValueSet(False, frozenset({z}))) for z in fx.ZONES]


def test_hostname_anti_affinity_puts_one_pod_per_node() -> None:
    term = PodAffinityTerm(LABEL_HOSTNAME, {"app": "db"})
    pods = [pod(f"d{i}", 100.0, 128.0, labels={"app": "db"}, anti_affinity=(term,)) for i in range(4)]
    _, result = provision([NodePoolSpec("default")], pods)
    assert sorted(len(c.pod_ids) for c in result.claims) == [1, 1, 1, 1]


def test_preferences_are_tried_first_then_relaxed() -> None:
    from sim.controllers.karpenter.types import WeightedRequirements

    prefers_r = pod(
        "a",
        preferred_affinity=(
            WeightedRequirements(10, (Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("r",)),)),
        ),
    )
    _, result = provision([NodePoolSpec("default")], [prefers_r])
    assert all(n.startswith("r9") for n in result.claims[0].instance_types)
    only_c = NodePoolSpec("c", requirements=(Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c",)),))
    _, result = provision([only_c], [prefers_r])
    assert not result.unschedulable and result.claims[0].instance_types[0].startswith("c9")


def test_pods_fill_existing_and_in_flight_nodes_before_new_claims() -> None:
    prov, first = provision([NodePoolSpec("default")], [pod("a", 1000.0, 1024.0)])
    in_flight = launched_node(prov, first.claims[0], "n1", ready_s=60.0)
    in_flight.pods["a"] = pod("a", 1000.0, 1024.0)
    again = prov.solve([pod("b", 100.0, 128.0)], [in_flight], 1.0)
    assert again.nominations == {"b": "n1"} and not again.claims
    nominate(again, [in_flight], 1.0)
    assert in_flight.nominated_until_s == 21.0


def test_daemonset_overhead_is_part_of_every_claim() -> None:
    ds = PodSpec("ds", "ds", Resources(400.0, 600.0), owner_kind="DaemonSet")
    prov = Provisioner(CATALOG, [NodePoolSpec("default")], [ds])
    result = prov.solve([pod("a", 600.0, 300.0)], [], 0.0)
    assert result.claims[0].requests.cpu_millicores == pytest.approx(1000.0)
    assert result.claims[0].requests.pods == 2
    node = launched_node(prov, result.claims[0], "n1")
    assert node.daemon_requests.cpu_millicores == pytest.approx(400.0)


def test_limits_stop_launches_and_say_which() -> None:
    pool = NodePoolSpec("default", limits={"cpu": 3000.0})
    _, result = provision([pool], [pod("a", 3500.0, 512.0)])
    assert "its limits leave only types within cpu=3000m" in result.unschedulable["a"]


def test_consolidate_after_protects_destinations_only_in_consolidation() -> None:
    pool = NodePoolSpec("default", consolidate_after_s=300.0)
    prov, first = provision([pool], [pod("a")])
    node = launched_node(prov, first.claims[0], "n1", ready_s=0.0)
    moving = pod("m")
    normal = prov.solve([moving], [node], 60.0)
    simulated = prov.solve([moving], [node], 60.0, moving={"m"}, consolidation=True)
    assert normal.nominations == {"m": "n1"}
    assert "m" not in simulated.nominations


# ----------------------------------------------------------------- launch


def test_launch_prefers_spot_when_allowed_and_takes_cheapest() -> None:
    prov, result = provision([NodePoolSpec("default")], [pod("a", 300.0, 256.0)])
    launched = launch(prov, result.claims[0], FIRST)
    assert isinstance(launched, Launch)
    assert launched.capacity_type == "spot" and launched.instance_type == "c9.medium"
    assert launched.price_usd_per_h == pytest.approx(0.0425 * 0.4)
    od = NodePoolSpec("od", requirements=(Requirement(LABEL_CAPACITY_TYPE, Operator.IN, ("on-demand",)),))
    prov, result = provision([od], [pod("a", 300.0, 256.0)])
    assert launch(prov, result.claims[0], FIRST).capacity_type == "on-demand"  # type: ignore[union-attr]


def test_exotic_types_and_overpriced_spot_are_filtered_like_the_aws_provider() -> None:
    base = fx.catalog(spot=False)
    metal = InstanceType(
        "m9.metal",
        Resources(1000.0, 4096.0, 10.0),
        Resources(900.0, 3500.0, 10.0),
        {**base[0].labels, LABEL_INSTANCE_SIZE: "metal"},
        (Offering("zone-a", "on-demand", 0.001),),
    )
    dear_spot = InstanceType(
        "x9.large",
        Resources(2000.0, 4096.0, 10.0),
        Resources(1900.0, 3500.0, 10.0),
        base[0].labels,
        (Offering("zone-a", "spot", 5.0), Offering("zone-a", "on-demand", 0.01)),
    )
    prov = Provisioner([*base, metal, dear_spot], [NodePoolSpec("default")])
    plan = prov.solve([pod("a", 300.0, 256.0)], [], 0.0).claims[0]
    launched = launch(prov, plan, LaunchConfig(zone_tie_break="first"))
    assert isinstance(launched, Launch)
    assert (launched.instance_type, launched.capacity_type) == ("x9.large", "on-demand")
    unfiltered = launch(prov, plan, LaunchConfig(zone_tie_break="first", exotic_filter=False))
    assert isinstance(unfiltered, Launch) and unfiltered.instance_type == "m9.metal"


def test_insufficient_capacity_falls_back_and_reports_blocked_offerings() -> None:
    prov, result = provision([NodePoolSpec("default")], [pod("a", 300.0, 256.0)])
    plan = result.claims[0]
    refused = {("c9.medium", "zone-a", "spot")}
    fallback = launch(prov, plan, FIRST, insufficient_capacity=lambda key: key in refused)
    assert isinstance(fallback, Launch)
    assert (fallback.instance_type, fallback.zone) == ("c9.medium", "zone-b")
    assert fallback.insufficient == (("c9.medium", "zone-a", "spot"),)
    failed = launch(prov, plan, FIRST, insufficient_capacity=lambda key: True)
    assert isinstance(failed, LaunchFailure) and "insufficient capacity" in failed.reason


def test_random_zone_choice_is_reproducible_and_spreads() -> None:
    prov, result = provision([NodePoolSpec("default")], [pod("a", 300.0, 256.0)])
    zones = [
        launch(prov, result.claims[0], LaunchConfig(), np.random.default_rng(seed)).zone  # type: ignore[union-attr]
        for seed in range(30)
    ]
    assert set(zones) == set(fx.ZONES)
    again = [launch(prov, result.claims[0], LaunchConfig(), np.random.default_rng(s)).zone for s in range(30)]  # type: ignore[union-attr]
    assert zones == again


# ----------------------------------------------------------------- kube-scheduler binding


def _ready_nodes(count: int, type_name: str = "m9.xlarge") -> list[Node]:
    it = next(t for t in CATALOG if t.name == type_name)
    price = next(o.price_usd_per_h for o in it.offerings if o.capacity_type == "on-demand")
    return [
        Node(
            f"node-{i}",
            "default",
            it.name,
            "on-demand",
            fx.ZONES[i % 3],
            price,
            it.capacity,
            it.allocatable,
            {**it.labels, LABEL_ZONE: fx.ZONES[i % 3]},
            ready_s=0.0,
        )
        for i in range(count)
    ]


def test_binding_spreads_a_service_instead_of_first_fit() -> None:
    nodes = _ready_nodes(3)
    result = bind([pod(f"p{i}", 200.0, 256.0) for i in range(6)], nodes, 1.0)
    per_node = sorted(list(result.bound.values()).count(n.name) for n in nodes)
    assert per_node == [2, 2, 2]


def test_binding_prefers_the_least_allocated_node() -> None:
    nodes = _ready_nodes(2)
    nodes[0].pods["busy"] = pod("busy", 3000.0, 8000.0, owner="other")
    assert bind([pod("new", owner="web")], nodes, 1.0).bound == {"new": "node-1"}


def test_binding_respects_taints_readiness_and_deletion() -> None:
    nodes = _ready_nodes(3)
    nodes[0].taints = (Taint("dedicated", "NoSchedule", "x"),)
    nodes[1].marked_for_deletion = True
    nodes[2].ready_s = 100.0
    result = bind([pod("a")], nodes, 1.0)
    assert not result.bound and result.unbound["a"]


# ----------------------------------------------------------------- disruption


def _node_with(pods: list[PodSpec], name: str = "n1", type_name: str = "m9.xlarge") -> Node:
    node = _ready_nodes(1, type_name)[0]
    node.name = name
    node.labels[LABEL_HOSTNAME] = name
    node.ready_s = -3600.0
    for p in pods:
        node.pods[p.id] = p
    return node


def test_empty_nodes_are_deleted_and_busy_ones_explained() -> None:
    controller = DisruptionController(
        Provisioner(CATALOG, [NodePoolSpec("default", budgets=(Budget("100%"),))])
    )
    result = controller.reconcile([_node_with([], "empty")], [], 0.0)
    assert result.command is not None and result.command.method == "emptiness"
    assert "empty" in result.command.explanation


def test_do_not_disrupt_and_pdbs_block_consolidation() -> None:
    prov = Provisioner(CATALOG, [NodePoolSpec("default", budgets=(Budget("100%"),))])
    pinned = _node_with([pod("a", do_not_disrupt_s=float("inf"))])
    result = DisruptionController(prov).reconcile([pinned], [], 0.0)
    assert result.command is None and any("do-not-disrupt" in n for n in result.explanations)
    guarded = _node_with([pod("b", labels={"app": "db"})])
    pdb = PDB("db", {"app": "db"}, max_unavailable=0)
    result = DisruptionController(prov).reconcile([guarded], [], 0.0, pdbs=[pdb])
    assert result.command is None and any("PDB db allows no disruption" in n for n in result.explanations)


def test_underused_node_is_replaced_by_a_cheaper_one() -> None:
    big = _node_with([pod("a", 300.0, 256.0)], "big", "r9.4xlarge")
    controller = DisruptionController(
        Provisioner(CATALOG, [NodePoolSpec("default", budgets=(Budget("100%"),))])
    )
    result = controller.reconcile([big], [], 0.0)
    command = result.command
    assert command is not None and command.decision == "replace" and command.method == "single-node"
    assert command.savings_usd_per_h > 0.9
    assert command.replacements[0].requirements.get(LABEL_CAPACITY_TYPE) == ValueSet(
        False, frozenset({"spot"})
    )
    assert controller.validate(command, [big], [], 15.0) is not None
    big.pods["late"] = pod("late", 100.0, 128.0)
    assert controller.validate(command, [big], [], 15.0) is None


def test_budget_schedules_follow_the_configured_clock() -> None:
    budget = Budget(0, schedule="0 9 * * MON-FRI", duration_s=8 * 3600.0)
    monday_noon = datetime(2024, 1, 1, 12, tzinfo=UTC)
    sunday_noon = datetime(2024, 1, 7, 12, tzinfo=UTC)
    assert is_active(budget, monday_noon) and not is_active(budget, sunday_noon)
    assert allowed_disruptions((budget, Budget("50%")), "Empty", 4, 0, monday_noon) == 0
    assert allowed_disruptions((budget, Budget("50%")), "Empty", 4, 1, sunday_noon) == 1
    pool = NodePoolSpec("default", budgets=(budget,))
    config = DisruptionConfig(start_utc=datetime(2024, 1, 1, 0, tzinfo=UTC))
    controller = DisruptionController(Provisioner(CATALOG, [pool]), config)
    office = controller.reconcile([_node_with([], "e")], [], 12 * 3600.0)
    night = controller.reconcile([_node_with([], "e")], [], 20 * 3600.0)
    assert office.command is None and night.command is not None


def test_memo_skips_unchanged_clusters_until_time_changes_them() -> None:
    pool = NodePoolSpec("default", consolidate_after_s=60.0)
    controller = DisruptionController(Provisioner(CATALOG, [pool]))
    node = _node_with([pod("a", 300.0, 256.0)], "n", "r9.4xlarge")
    node.last_pod_event_s = 0.0
    assert controller.reconcile([node], [], 10.0, cluster_version=1).command is None
    skipped = controller.reconcile([node], [], 20.0, cluster_version=1)
    assert skipped.explanations == ["nothing changed since the last pass found nothing to do"]
    assert controller.reconcile([node], [], 70.0, cluster_version=1).command is not None


# ----------------------------------------------------------------- lifecycle and batching


def test_expiry_drift_and_interruption() -> None:
    pool = NodePoolSpec(
        "default",
        expire_after_s=3600.0,
        requirements=(Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c",)),),
    )
    node = _node_with([], "n")
    node.created_s = 0.0
    assert expired([node], {"default": pool}, 3599.0) == []
    assert expired([node], {"default": pool}, 3600.0) == [node]
    assert "no longer satisfies NodePool 'default'" in (drift_reason(node, pool) or "")
    assert drift_reason(node, None) == "NodePool 'default' no longer exists"
    notice = interruption(node, 100.0)
    assert notice.terminate_s == 220.0 and notice.blocked_offering == ("m9.xlarge", "zone-a", "on-demand")


def test_batch_window_closes_at_idle_or_max() -> None:
    batcher = Batcher(BatchConfig(idle_s=1.0, max_s=10.0))
    for t in range(0, 12):
        batcher.trigger(f"p{t}", t * 0.9)
    assert batcher.close_s == 10.0
    assert len(batcher.close()) == 12 and batcher.close_s is None
