"""Turns the Karpenter conformance cases (karpenter_cases.md schema) into model inputs, and runs them.

The cases restate upstream Ginkgo tests as data: fixtures (instance types or
a generator for the fake "assorted" catalog), NodePools, batches of pending
pods or a set of running nodes. This module builds our types from them and
plays the scenario through the model the way the upstream test drives the
controllers (one provisioning loop per batch, with nodes from earlier
batches running; one disruption reconcile, or several, with commands
executed in between). What the test then asserts lives in the test file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sim.controllers.karpenter.batcher import Batcher
from sim.controllers.karpenter.config import BatchConfig, DisruptionConfig, LaunchConfig, ProvisioningConfig
from sim.controllers.karpenter.disruption import Command, DisruptionController
from sim.controllers.karpenter.launch import Launch, LaunchFailure, launch, make_node
from sim.controllers.karpenter.provisioning import ClaimPlan, Provisioner
from sim.controllers.karpenter.types import (
    LABEL_ARCH,
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_OS,
    LABEL_ZONE,
    Budget,
    InstanceType,
    Node,
    NodePoolSpec,
    Offering,
    PodAffinityTerm,
    PodSpec,
    Requirement,
    Resources,
    TopologySpreadConstraint,
)
from sim.k8s.quantity import parse_quantity

FAKE_LAUNCH = LaunchConfig(
    zone_tie_break="first", max_launch_types=None, exotic_filter=False, spot_price_cap_filter=False
)
"""The core tests' fake cloud provider: cheapest compatible offering among all options, no AWS filters."""


def duration_s(text: str | None) -> float | None:
    """A Go duration ("0s", "1m", "1h30m") or "Never" (None)."""
    if text is None or text == "Never":
        return None
    total, number = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
            continue
        total += float(number) * {"s": 1, "m": 60, "h": 3600}[ch]
        number = ""
    return total


def resources(spec: dict[str, Any] | None) -> Resources:
    spec = spec or {}
    extended = {}
    cpu = mem = pods = eph = 0.0
    for name, value in spec.items():
        amount = float(parse_quantity(value))
        if name == "cpu":
            cpu = amount * 1000
        elif name == "memory":
            mem = amount / 2**20
        elif name == "pods":
            pods = amount
        elif name == "ephemeral-storage":
            eph = amount / 2**20
        else:
            extended[name] = amount
    return Resources(cpu, mem, pods, eph, extended)


def limits(spec: dict[str, Any] | None) -> dict[str, float] | None:
    if spec is None:
        return None
    out = {}
    for name, value in spec.items():
        amount = float(parse_quantity(value))
        out[name] = amount * 1000 if name == "cpu" else amount / 2**20 if name == "memory" else amount
    return out


def _max(a: Resources, b: Resources) -> Resources:
    names = set(a.extended) | set(b.extended)
    return Resources(
        max(a.cpu_millicores, b.cpu_millicores),
        max(a.memory_mib, b.memory_mib),
        max(a.pods, b.pods),
        max(a.ephemeral_storage_mib, b.ephemeral_storage_mib),
        {n: max(a.extended.get(n, 0.0), b.extended.get(n, 0.0)) for n in names},
    )


def instance_types(spec: Any, zones: list[str] | None = None) -> list[InstanceType]:
    if isinstance(spec, dict):
        return _assorted(spec)
    out = []
    for d in spec:
        arch = d.get("arch", "amd64")
        os_ = d.get("os", ["linux"])
        labels = {LABEL_ARCH: arch, LABEL_OS: os_[0] if isinstance(os_, list) else os_}
        if "allocatable" in d:
            alloc = resources(d["allocatable"])
            cap = Resources(d["vcpu"] * 1000.0, float(d["memory_mib"]), alloc.pods)
            offers = tuple(Offering(z, "on-demand", d["ondemand_price"]) for z in zones or [])
        else:
            cap = resources(d["capacity"])
            alloc = cap - resources(d.get("overhead"))
            offers = tuple(
                Offering(o["zone"], o["capacity_type"], o["price"], o.get("available", True))
                for o in d["offerings"]
            )
        out.append(InstanceType(d["name"], cap, alloc, labels, offers))
    return out


def _assorted(spec: dict[str, Any]) -> list[InstanceType]:
    out = []
    for cpu in spec["cpu"]:
        for mem in spec["memory_gib"]:
            for zone in spec["zone"]:
                for ct in spec["capacity_type"]:
                    for os_ in spec["os"]:
                        for arch in spec["arch"]:
                            name = spec["name_format"].format(
                                cpu=cpu, memory_gib=mem, arch=arch, os=os_, zone=zone, capacity_type=ct
                            )
                            cap = Resources(cpu * 1000.0, mem * 1024.0, 5.0)
                            price = 0.1 * cpu + 0.1 * mem * 1.073741824
                            out.append(
                                InstanceType(
                                    name,
                                    cap,
                                    cap - Resources(100.0, 10.0),
                                    {LABEL_ARCH: arch, LABEL_OS: os_},
                                    (Offering(zone, ct, price),),
                                )
                            )
    return out


def nodepool(d: dict[str, Any]) -> NodePoolSpec:
    disruption = d.get("disruption", {})
    budgets = tuple(
        Budget(
            nodes=_budget_nodes(b["nodes"]),
            schedule=b.get("schedule"),
            duration_s=duration_s(b.get("duration")),
            reasons=tuple(b.get("reasons", ())),
        )
        for b in disruption.get("budgets", [{"nodes": "10%"}])
    )
    return NodePoolSpec(
        name=d["name"],
        weight=d.get("weight") or 0,
        requirements=tuple(
            Requirement(r["key"], r["operator"], tuple(r.get("values", ())), r.get("minValues"))
            for r in d.get("requirements", [])
        ),
        limits=limits(d.get("limits")),
        consolidation_policy=disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized"),
        consolidate_after_s=duration_s(disruption.get("consolidateAfter", "0s")),
        budgets=budgets,
    )


def _budget_nodes(value: str) -> int | str:
    return value if value.endswith("%") else int(value)


def pod(d: dict[str, Any], created_s: float = 0.0) -> PodSpec:
    requests = resources(d.get("limits"))
    requests = _merge_requests(requests, resources(d.get("requests")))
    requests = _max(requests, resources(d.get("init_container_requests")))
    requests = requests + resources(d.get("pod_overhead"))
    affinity: tuple[tuple[Requirement, ...], ...] = ()
    if "nodeAffinity" in d:
        na = d["nodeAffinity"]
        terms = na if isinstance(na, list) else [na]
        affinity = tuple((Requirement(t["key"], t.get("operator", "In"), tuple(t["values"])),) for t in terms)
    spread: tuple[TopologySpreadConstraint, ...] = ()
    if "topologySpread" in d:
        t = d["topologySpread"]
        spread = (
            TopologySpreadConstraint(
                t["topologyKey"], t["maxSkew"], t["whenUnsatisfiable"], t["matchLabels"]
            ),
        )
    anti: tuple[PodAffinityTerm, ...] = ()
    if "podAntiAffinity_required" in d:
        a = d["podAntiAffinity_required"]
        anti = (PodAffinityTerm(a["topologyKey"], a["matchLabels"]),)
    owner = d.get("owner", "ReplicaSet")
    return PodSpec(
        id=d["name"],
        owner="app",
        owner_kind=owner,
        requests=requests,
        labels=d.get("labels", {}),
        node_selector=d.get("nodeSelector", {}),
        required_affinity=affinity,
        topology_spread=spread,
        anti_affinity=anti,
        host_ports=tuple(d.get("hostPorts", ())),
        terminating=d.get("terminating", False),
        created_s=created_s,
    )


def _merge_requests(defaults: Resources, given: Resources) -> Resources:
    """Requests default to limits per resource (the API server's defaulting)."""
    extended = {**defaults.extended, **given.extended}
    return Resources(
        given.cpu_millicores or defaults.cpu_millicores,
        given.memory_mib or defaults.memory_mib,
        0.0,
        given.ephemeral_storage_mib or defaults.ephemeral_storage_mib,
        extended,
    )


@dataclass
class ProvisionOutcome:
    nodes: list[Node] = field(default_factory=list)
    pod_node: dict[str, str] = field(default_factory=dict)
    unschedulable: dict[str, str] = field(default_factory=dict)
    plans: list[list[ClaimPlan]] = field(default_factory=list)
    launches: list[list[Launch | LaunchFailure]] = field(default_factory=list)
    nodes_after_batch: list[int] = field(default_factory=list)
    batch_close_s: float | None = None
    batch_open_at: dict[float, bool] = field(default_factory=dict)
    batch_pods: frozenset[str] = frozenset()


def run_batcher(case: dict[str, Any]) -> ProvisionOutcome:
    opts = case["inputs"]["options"]
    batcher = Batcher(
        BatchConfig(duration_s(opts["batchIdleDuration"]) or 0, duration_s(opts["batchMaxDuration"]) or 0)
    )
    for trig in case["inputs"]["pending_pod_triggers"]:
        batcher.trigger(trig["pod"], float(trig["t_s"]))
    out = ProvisionOutcome()
    out.batch_close_s = batcher.close_s
    for t in case["expected"].get("batch_window_open_at_t_s", []):
        out.batch_open_at[t] = batcher.is_open(t)
    out.batch_pods = batcher.close()
    return out


def run_provision(case: dict[str, Any]) -> ProvisionOutcome:
    inp = case["inputs"]
    if "pending_pod_triggers" in inp:
        return run_batcher(case)
    types = instance_types(inp["instance_types"], inp.get("region_zones"))
    pools = [nodepool(p) for p in inp["nodepools"]]
    daemonsets = [
        PodSpec(
            f"ds-{i}",
            "ds",
            resources(d.get("requests")),
            host_ports=tuple(d.get("hostPorts", ())),
            owner_kind="DaemonSet",
        )
        for i, d in enumerate(inp.get("daemonsets", []))
    ]
    opts = inp.get("options", {})
    config = ProvisioningConfig(min_values_policy=opts.get("minValuesPolicy", "Strict"))
    prov = Provisioner(types, pools, daemonsets, config)
    out = ProvisionOutcome()
    for i, existing in enumerate(inp.get("existing_nodeclaims", [])):
        cap = resources(existing["capacity"])
        out.nodes.append(
            Node(
                f"existing-{i}",
                existing["nodepool"],
                "unknown",
                "on-demand",
                "test-zone-1",
                0.0,
                cap,
                cap,
                {LABEL_NODEPOOL: existing["nodepool"]},
                ready_s=0.0,
            )
        )
    ice = {
        (p["instance_type"], p["zone"], p["capacity_type"])
        for p in inp.get("insufficient_capacity_pools", [])
    }
    blocked: set[tuple[str, str, str]] = set()
    for b, batch in enumerate(inp["batches"]):
        now = float(b * 60)
        pods = [pod(d, created_s=now) for d in batch]
        result = prov.solve(pods, out.nodes, now, unavailable=frozenset(blocked))
        out.plans.append(list(result.claims))
        out.unschedulable = dict(result.unschedulable)
        by_name = {n.name: n for n in out.nodes}
        specs = {p.id: p for p in pods}
        for pid, node_name in result.nominations.items():
            by_name[node_name].pods[pid] = specs[pid]
            out.pod_node[pid] = node_name
        launched: list[Launch | LaunchFailure] = []
        for plan in result.claims:
            res = launch(prov, plan, FAKE_LAUNCH, None, frozenset(blocked), lambda key: key in ice)
            launched.append(res)
            blocked.update(res.insufficient)
            if isinstance(res, LaunchFailure):
                for pid in plan.pod_ids:
                    out.unschedulable[pid] = res.reason
                continue
            node = make_node(res, f"node-{len(out.nodes)}", now, now)
            for pid in plan.pod_ids:
                node.pods[pid] = specs[pid]
                out.pod_node[pid] = node.name
            out.nodes.append(node)
        out.launches.append(launched)
        out.nodes_after_batch.append(len([n for n in out.nodes if not n.name.startswith("existing-")]))
    return out


@dataclass
class DisruptionOutcome:
    commands: list[Command] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _node(d: dict[str, Any], now_s: float, pool: NodePoolSpec | None) -> Node:
    alloc = resources(d["allocatable"])
    labels = {
        LABEL_INSTANCE_TYPE: d.get("instance_type", "unmanaged"),
        LABEL_ZONE: d.get("zone", "test-zone-1"),
        LABEL_CAPACITY_TYPE: d.get("capacity_type", "on-demand"),
        **d.get("labels", {}),
    }
    if pool is not None:
        labels[LABEL_NODEPOOL] = pool.name
    ready = float(d.get("initialized_at_s", -86400.0))
    node = Node(
        name=d["name"],
        nodepool=pool.name if pool else None,
        instance_type=d.get("instance_type", "unmanaged"),
        capacity_type=d.get("capacity_type", "on-demand"),
        zone=d.get("zone", "test-zone-1"),
        price_usd_per_h=d.get("price", 0.0),
        capacity=alloc,
        allocatable=alloc,
        labels=labels,
        created_s=ready,
        launched_s=ready,
        ready_s=ready if d.get("initialized", True) else None,
    )
    after = pool.consolidate_after_s if pool else None
    if after is not None and not d.get("consolidatable", True):
        node.last_pod_event_s = now_s
    if d.get("drifted"):
        node.drifted_s = float(d.get("drifted_at_s", 0.0))
    for p in d.get("pods", []):
        spec = pod(p)
        if spec.owner_kind == "DaemonSet":
            node.daemon_requests = node.daemon_requests + spec.requests
        node.pods[spec.id] = spec
    return node


def run_disruption(case: dict[str, Any], now_s: float = 0.0) -> DisruptionOutcome:
    inp = case["inputs"]
    types = instance_types(inp["instance_types"])
    pools = {p["name"]: nodepool(p) for p in inp["nodepools"]}
    gates = inp.get("options", {}).get("feature_gates", {})
    prov = Provisioner(types, list(pools.values()), (), ProvisioningConfig())
    controller = DisruptionController(
        prov,
        DisruptionConfig(
            spot_to_spot=gates.get("SpotToSpotConsolidation", False), start_utc=datetime(2024, 1, 1)
        ),
    )
    nodes = [_node(d, now_s, pools[d["nodepool"]]) for d in inp["nodes"]]
    nodes += [_node(d, now_s, None) for d in inp.get("unmanaged_nodes", [])]
    out = DisruptionOutcome(nodes=nodes)
    for _ in range(inp.get("disruption_reconciles", 1)):
        result = controller.reconcile(nodes, [], now_s)
        out.notes.extend(result.explanations)
        if result.command is None:
            continue
        out.commands.append(result.command)
        _execute(prov, result.command, nodes, now_s)
    return out


def _execute(prov: Provisioner, command: Command, nodes: list[Node], now_s: float) -> None:
    """Launch replacements (ready at once), mark candidates deleted, move their pods as the simulation did."""
    by_name = {n.name: n for n in nodes}
    moving = {pid: by_name[name] for name in command.candidates for pid in by_name[name].pods}
    for i, plan in enumerate(command.replacements):
        res = launch(prov, plan, FAKE_LAUNCH)
        assert isinstance(res, Launch), res
        node = make_node(res, f"replacement-{len(nodes)}-{i}", now_s, now_s)
        for pid in plan.pod_ids:
            if pid in moving:
                node.pods[pid] = moving[pid].pods.pop(pid)
        nodes.append(node)
    for name in command.candidates:
        by_name[name].marked_for_deletion = True


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
