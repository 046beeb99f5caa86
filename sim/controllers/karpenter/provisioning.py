"""Karpenter's scheduling simulation: which pending pods fit where, and which NodeClaims to create.

One `Provisioner.solve` is one provisioning loop after a batch window closes
(core pkg/controllers/provisioning/scheduling/scheduler.go `Solve`):

1. Pods are queued by CPU, then memory (both descending), creation time, id.
2. Each pod tries, in order: existing nodes (initialized first, then by name;
   in-flight nodes count with their launched type's allocatable) first-fit;
   then the NodeClaims opened earlier in this loop, fewest pods first; then a
   fresh NodeClaim from each NodePool in weight order (ties: name descending).
3. A NodeClaim is a set of candidate instance types that narrows as pods
   join: a type survives while its labels meet the merged requirements, it has
   an available offering those requirements allow, and the pods' summed
   requests plus the DaemonSet overhead for that type fit its allocatable.
4. A failing pod has its preferences relaxed one step at a time (required
   OR-terms after the first, preferred anti-affinity, preferred node
   affinity, ScheduleAnyway spreads, PreferNoSchedule taints); if it still
   fails it goes to the back of the queue; the loop ends when a full pass
   makes no progress.
5. NodePool limits filter the types a fresh NodeClaim may use (capacity of
   every limited resource within what remains) and each opened NodeClaim
   takes the largest capacity among its options off the remainder.

Karpenter never binds pods: placements on existing nodes are nominations,
and the engine's kube-scheduler model binds once nodes are ready.

Speed: identical pods (same requests, requirements, tolerations, no
topology) share memos of which nodes, claims and pools rejected them: those
rejections are permanent within a loop because nodes only fill up and limits
only shrink. Everything else is a few numpy operations over the surviving
candidate rows of `InstanceIndex`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sim.controllers.karpenter.config import ProvisioningConfig
from sim.controllers.karpenter.instance_index import FIT_SLACK, InstanceIndex, OfferingKey
from sim.controllers.karpenter.lifecycle import under_consolidate_after
from sim.controllers.karpenter.requirements import (
    Requirements,
    ValueSet,
    pod_requirements,
    untolerated,
)
from sim.controllers.karpenter.topology import Target, Topology
from sim.controllers.karpenter.types import (
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_NODEPOOL,
    LABEL_ZONE,
    RESOURCE_NODES,
    InstanceType,
    Node,
    NodePoolSpec,
    PodAffinityTerm,
    PodSpec,
    Requirement,
    Resources,
    TopologySpreadConstraint,
    WeightedRequirements,
)


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """A NodeClaim to create: its pods, the instance types it may launch as (cheapest first), why."""

    name: str
    nodepool: str
    pod_ids: tuple[str, ...]
    requirements: Requirements
    instance_types: tuple[str, ...]
    requests: Resources
    min_values_relaxed: bool
    explanation: str


@dataclass(frozen=True, slots=True)
class ProvisioningResult:
    """Nominations onto existing nodes, NodeClaims to create, and why the rest stay pending."""

    nominations: dict[str, str]
    claims: tuple[ClaimPlan, ...]
    unschedulable: dict[str, str]
    pool_errors: dict[str, str] = field(default_factory=dict)

    def explain(self) -> list[str]:
        lines = [c.explanation for c in self.claims]
        for node in sorted(set(self.nominations.values())):
            count = sum(1 for n in self.nominations.values() if n == node)
            lines.append(f"{count} pod(s) nominated to existing node {node}")
        lines.extend(f"pod {pid} stays pending: {why}" for pid, why in sorted(self.unschedulable.items()))
        return lines


def nominate(result: ProvisioningResult, nodes: Iterable[Node], now_s: float, window_s: float = 20.0) -> None:
    """Mark the existing nodes a loop counted on as nominated: they are no disruption candidates meanwhile.

    Karpenter nominates for max(2 x batch max duration, 10 s) = 20 s (state/statenode.go).
    """
    targets = set(result.nominations.values())
    for node in nodes:
        if node.name in targets:
            node.nominated_until_s = max(node.nominated_until_s, now_s + window_s)


def pool_order(pools: Iterable[NodePoolSpec]) -> list[NodePoolSpec]:
    """Weight descending; ties by name descending (core utils/nodepool OrderByWeight)."""
    return sorted(pools, key=lambda p: (p.weight, p.name), reverse=True)


def sort_pods(pods: Iterable[PodSpec]) -> list[PodSpec]:
    """CPU then memory request descending, then creation time and id ascending (core scheduling/queue.go)."""
    return sorted(pods, key=lambda p: (-p.requests.cpu_millicores, -p.requests.memory_mib, p.created_s, p.id))


@dataclass
class _Template:
    pool: NodePoolSpec
    order: int
    index: InstanceIndex
    available: np.ndarray
    requirements: Requirements
    candidates: np.ndarray
    daemon: np.ndarray
    daemon_ports: dict[int, np.ndarray]
    min_price: np.ndarray
    """Per type, its cheapest available offering the pool allows (+inf when none)."""
    frontier: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)
    """Per set of resources, types no cheaper type beats on all of them (disruption's pre-check)."""


class Provisioner:
    """Holds the catalog index and per-NodePool templates across loops; `solve` is pure per call."""

    def __init__(
        self,
        catalog: Mapping[str, Sequence[InstanceType]] | Sequence[InstanceType],
        pools: Sequence[NodePoolSpec],
        daemonsets: Sequence[PodSpec] = (),
        config: ProvisioningConfig | None = None,
    ) -> None:
        """`catalog` is one instance list for every pool, or one per EC2NodeClass name (a pool's
        `node_class`), since allocatable depends on the node class's kubelet settings."""
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ValueError(f"NodePool names must be unique, got {names}")
        self.pools = pool_order(pools)
        self.pools_by_name = {p.name: p for p in self.pools}
        self.daemonsets = tuple(daemonsets)
        self.config = config or ProvisioningConfig()
        by_class: Mapping[str, Sequence[InstanceType]] = (
            catalog if isinstance(catalog, Mapping) else {p.node_class: catalog for p in self.pools}
        )
        extended = {n for types in by_class.values() for it in types for n in it.allocatable.extended}
        extended |= {n for ds in self.daemonsets for n in ds.requests.extended}
        built: dict[int, InstanceIndex] = {}
        self.indexes: dict[str, InstanceIndex] = {}
        for node_class, types in by_class.items():
            if id(types) not in built:
                built[id(types)] = InstanceIndex(types, extended)
            self.indexes[node_class] = built[id(types)]
        self.index = next(iter(built.values()), None) or InstanceIndex((), extended)
        """Any of the indexes: they share one resource layout, used for pod and node vectors."""
        self._templates: dict[frozenset[OfferingKey], tuple[list[_Template], dict[str, str]]] = {}
        self.tolerate_prefer_no_schedule = any(
            t.effect == "PreferNoSchedule" for p in self.pools for t in p.taints
        )

    def snapshot(self, nodes: Sequence[Node], now_s: float) -> Snapshot:
        return Snapshot(self, nodes, now_s)

    def index_for(self, pool: str) -> InstanceIndex:
        """The instance types (with that node class's allocatable) a NodePool launches."""
        return self.indexes[self.pools_by_name[pool].node_class]

    def templates(self, unavailable: frozenset[OfferingKey]) -> tuple[list[_Template], dict[str, str]]:
        """Usable NodePools (with their candidate types and DaemonSet overhead) and why others are not."""
        cached = self._templates.get(unavailable)
        if cached is None:
            cached = self._templates[unavailable] = self._build_templates(unavailable)
        return cached

    def _build_templates(self, unavailable: frozenset[OfferingKey]) -> tuple[list[_Template], dict[str, str]]:
        templates: list[_Template] = []
        errors: dict[str, str] = {}
        for order, pool in enumerate(self.pools):
            index = self.indexes.get(pool.node_class)
            if index is None or not index.types:
                errors[pool.name] = (
                    f"NodePool {pool.name!r}: node class {pool.node_class!r} has no instance types"
                )
                continue
            available = index.availability(unavailable)
            reqs = (
                Requirements.of(pool.requirements)
                .intersect(Requirements.from_labels(pool.labels))
                .intersect(Requirements.from_labels({LABEL_NODEPOOL: pool.name}))
            )
            labels_ok = index.label_mask(reqs)
            offers_ok = np.isfinite(index.compatible_prices(reqs, available)).any(axis=(1, 2))
            candidates = np.flatnonzero(labels_ok & offers_ok)
            if candidates.size == 0:
                errors[pool.name] = (
                    f"NodePool {pool.name!r}: its requirements ({reqs.describe()}) leave no instance type "
                    f"with an available offering ({int(labels_ok.sum())} match the labels)"
                )
                continue
            short = _min_values_shortfall(index, reqs, candidates, available)
            if short and self.config.min_values_policy == "Strict":
                errors[pool.name] = f"NodePool {pool.name!r}: {short}"
                continue
            daemon, ports = self._daemon_overhead(index, pool, reqs)
            min_price = index.compatible_prices(reqs, available).min(axis=(1, 2))
            templates.append(
                _Template(pool, order, index, available, reqs, candidates, daemon, ports, min_price)
            )
        return templates, errors

    def _daemon_overhead(
        self, index: InstanceIndex, pool: NodePoolSpec, reqs: Requirements
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        daemon = np.zeros_like(index.allocatable)
        ports: dict[int, np.ndarray] = {}
        for ds in self.daemonsets:
            if untolerated(pool.taints, ds.tolerations, ignore_prefer_no_schedule=True) is not None:
                continue
            mask = np.zeros(len(index.types), dtype=bool)
            terms = ds.required_affinity or ((),)
            for i in range(len(terms)):
                ds_reqs = pod_requirements(ds, terms[i:] if ds.required_affinity else ())
                if reqs.compatible(ds_reqs) is not None:
                    continue
                offered = np.isfinite(index.compatible_prices(ds_reqs, index.offered)).any(axis=(1, 2))
                mask |= index.label_mask(ds_reqs) & offered
            daemon[mask] += index.vector(ds.requests)
            for port in ds.host_ports:
                ports[port] = ports.get(port, np.zeros(len(index.types), dtype=bool)) | mask
        return daemon, ports

    def solve(
        self,
        pods: Sequence[PodSpec],
        nodes: Sequence[Node],
        now_s: float,
        *,
        unavailable: Collection[OfferingKey] = frozenset(),
        exclude: Collection[str] = frozenset(),
        moving: Collection[str] = frozenset(),
        consolidation: bool = False,
        snapshot: Snapshot | None = None,
    ) -> ProvisioningResult:
        """One provisioning loop.

        `pods` are the pending pods (plus, for a disruption simulation, the
        candidates' pods, whose ids are in `moving`); pods on nodes marked for
        deletion are added automatically, as Karpenter pre-spins their
        replacements. `exclude` removes nodes from consideration (disruption
        candidates). `unavailable` are ICE-cached offerings. With
        `consolidation`, moving pods may not land on nodes still inside their
        pool's consolidateAfter window (v1.14). `snapshot` (from `snapshot()`
        over the same nodes and time) saves rebuilding per-node data when one
        pass simulates many times.
        """
        snap = snapshot if snapshot is not None else Snapshot(self, nodes, now_s)
        run = _Run(self, snap, frozenset(unavailable), frozenset(exclude), consolidation)
        return run.solve(pods, frozenset(moving))


def _min_values_shortfall(
    index: InstanceIndex, reqs: Requirements, candidates: np.ndarray, available: np.ndarray
) -> str | None:
    """Which minValues requirement the candidate set cannot meet, or None."""
    for key, vs in reqs.sets.items():
        if vs.min_values is None:
            continue
        distinct = _distinct_values(index, key, candidates, available)
        if distinct < vs.min_values:
            return f"minValues {vs.min_values} on {key} not met: only {distinct} distinct value(s) remain"
    return None


def _distinct_values(index: InstanceIndex, key: str, candidates: np.ndarray, available: np.ndarray) -> int:
    if key == LABEL_ZONE:
        return int(available[candidates].any(axis=(0, 2)).sum())
    if key == LABEL_CAPACITY_TYPE:
        return int(available[candidates].any(axis=(0, 1)).sum())
    codes = index.codes.get(key)
    if codes is None:
        return 1
    values = codes[candidates]
    return int(np.unique(values[values >= 0]).size)


class _Attempt:
    """A pod's constraints at one relaxation step (Karpenter relaxes a copy; the queue keeps the original)."""

    __slots__ = ("_reqs", "_strict", "anti", "pod", "preferred", "required", "spread", "tolerate_pns")

    def __init__(self, pod: PodSpec, respect_preferences: bool) -> None:
        self.pod = pod
        self.required: tuple[tuple[Requirement, ...], ...] = pod.required_affinity
        prefs = sorted(pod.preferred_affinity, key=lambda w: -w.weight) if respect_preferences else []
        self.preferred: list[WeightedRequirements] = prefs
        self.spread: list[TopologySpreadConstraint] = [
            c for c in pod.topology_spread if respect_preferences or c.when_unsatisfiable == "DoNotSchedule"
        ]
        anti = [t for t in pod.anti_affinity if respect_preferences or t.weight is None]
        self.anti: list[PodAffinityTerm] = sorted(anti, key=lambda t: -(t.weight or 0))
        self.tolerate_pns = False
        self._reqs: Requirements | None = None
        self._strict: Requirements | None = None

    @property
    def requirements(self) -> Requirements:
        if self._reqs is None:
            self._reqs = pod_requirements(
                self.pod, self.required, tuple(p.requirements for p in self.preferred[:1])
            )
        return self._reqs

    @property
    def strict(self) -> Requirements:
        if self._strict is None:
            self._strict = pod_requirements(self.pod, self.required)
        return self._strict

    def relax(self, tolerate_prefer_no_schedule: bool) -> bool:
        """One step of core preferences.go `Relax`; False when nothing is left to relax."""
        self._reqs = self._strict = None
        if len(self.required) > 1:
            self.required = self.required[1:]
            return True
        preferred_anti = [t for t in self.anti if t.weight is not None]
        if preferred_anti:
            self.anti.remove(preferred_anti[0])
            return True
        if self.preferred:
            self.preferred = self.preferred[1:]
            return True
        for c in self.spread:
            if c.when_unsatisfiable == "ScheduleAnyway":
                self.spread.remove(c)
                return True
        if tolerate_prefer_no_schedule and not self.tolerate_pns:
            self.tolerate_pns = True
            return True
        return False


@dataclass
class _Pod:
    spec: PodSpec
    request: np.ndarray
    unknown: list[str]
    moving: bool
    from_deleting: bool
    memo: tuple[object, ...] | None = None


class _NodeInfo:
    """What every simulation of one pass needs about an existing node, computed once."""

    __slots__ = ("_requirements", "initialized", "node", "ports")

    def __init__(self, node: Node, now_s: float) -> None:
        self.node = node
        self.initialized = node.is_ready(now_s)
        self.ports = frozenset(port for p in node.pods.values() for port in p.host_ports)
        self._requirements: Requirements | None = None

    @property
    def requirements(self) -> Requirements:
        if self._requirements is None:
            self._requirements = Requirements.from_labels(
                {**self.node.labels, LABEL_HOSTNAME: self.node.name}
            )
        return self._requirements


class Snapshot:
    """The cluster as one provisioning or disruption pass sees it; simulations of the pass share it.

    Nodes marked for deletion are not destinations, but their pods are
    scheduled again (Karpenter pre-provisions for them).
    """

    def __init__(self, prov: Provisioner, nodes: Sequence[Node], now_s: float) -> None:
        self.now_s = now_s
        self.nodes = tuple(nodes)
        index = prov.index
        active = sorted(
            (n for n in nodes if not n.marked_for_deletion), key=lambda n: (not n.is_ready(now_s), n.name)
        )
        self.infos = [_NodeInfo(n, now_s) for n in active]
        self.row = {info.node.name: i for i, info in enumerate(self.infos)}
        self.free = np.zeros((len(self.infos), len(index.resource_names)))
        for i, info in enumerate(self.infos):
            self.free[i] = index.vector(info.node.allocatable) - _requested(index, info.node)
        self.bound_anti = any(p.anti_affinity for n in active for p in n.pods.values())


def _requested(index: InstanceIndex, node: Node) -> np.ndarray:
    pods = node.pods.values()
    row = index.vector(node.daemon_requests)
    row[0] += sum(p.requests.cpu_millicores for p in pods)
    row[1] += sum(p.requests.memory_mib for p in pods)
    row[2] += len(node.pods)
    row[3] += sum(p.requests.ephemeral_storage_mib for p in pods)
    for p in pods:
        for name, amount in p.requests.extended.items():
            pos = index.resource_position.get(name)
            if pos is not None:
                row[pos] += amount
    return row


@dataclass
class _Fit:
    requirements: Requirements
    candidates: np.ndarray
    headroom: np.ndarray
    relaxed_min_values: bool


@dataclass
class _Claim:
    seq: int
    template: _Template
    hostname: str
    requirements: Requirements
    candidates: np.ndarray
    headroom: np.ndarray
    total: np.ndarray
    pods: list[_Pod] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)
    min_values_relaxed: bool = False


class _Run:
    def __init__(
        self,
        prov: Provisioner,
        snapshot: Snapshot,
        unavailable: frozenset[OfferingKey],
        exclude: frozenset[str],
        consolidation: bool,
    ) -> None:
        self.prov = prov
        self.index = prov.index
        self.config = prov.config
        self.now_s = snapshot.now_s
        self.snapshot = snapshot
        self.consolidation = consolidation
        self.templates, self.pool_errors = prov.templates(unavailable)
        rows = [i for i, info in enumerate(snapshot.infos) if info.node.name not in exclude]
        self.existing = [snapshot.infos[i] for i in rows]
        self.free = snapshot.free[rows].copy()
        self.added_ports: dict[int, set[int]] = {}
        self.under_consolidate_after = np.zeros(len(rows), dtype=bool)
        if consolidation:
            for k, info in enumerate(self.existing):
                pool = prov.pools_by_name.get(info.node.nodepool or "")
                if pool is not None:
                    self.under_consolidate_after[k] = under_consolidate_after(info.node, pool, self.now_s)
        self.deleting_pods = [
            p
            for n in snapshot.nodes
            if n.marked_for_deletion and n.name not in exclude
            for p in n.pods.values()
            if _reschedulable(p)
        ]
        self.remaining: dict[str, dict[str, float]] = {}
        for pool in prov.pools:
            if pool.limits is not None:
                self.remaining[pool.name] = dict(pool.limits)
        for info in self.existing:
            rem = self.remaining.get(info.node.nodepool or "")
            if rem is not None:
                for name in rem:
                    rem[name] -= 1.0 if name == RESOURCE_NODES else info.node.capacity.get(name)
        self.claims: list[_Claim] = []
        self.claim_room = np.zeros((8, len(self.index.resource_names)))
        """Per claim, the most of each resource any candidate type could still take (a quick reject)."""
        self._offer_cache: dict[tuple[int, ValueSet | None, ValueSet | None], np.ndarray] = {}
        self._merge_cache: dict[tuple[Requirements, Requirements], Requirements | str] = {}
        self.bad_existing: dict[tuple[object, ...], set[int]] = {}
        self.bad_claims: dict[tuple[object, ...], set[int]] = {}
        self.bad_templates: dict[tuple[object, ...], dict[int, str]] = {}
        self.nominations: dict[str, str] = {}

    def solve(self, pods: Sequence[PodSpec], moving: frozenset[str]) -> ProvisioningResult:
        deleting_ids = {p.id for p in self.deleting_pods}
        batch = [p for p in pods if p.id not in deleting_ids] + self.deleting_pods
        zones = {z for t in self.templates for z in t.index.zones} | {e.node.zone for e in self.existing}
        topological = self.snapshot.bound_anti or any(p.topology_spread or p.anti_affinity for p in batch)
        bound = (
            [(p, e.node.zone, e.node.name) for e in self.existing for p in e.node.pods.values()]
            if topological
            else []
        )
        self.topology = Topology(zones, [e.node.name for e in self.existing], batch, bound)
        queue: deque[_Pod] = deque(
            self._pod(p, p.id in moving, p.id in deleting_ids) for p in sort_pods(batch)
        )
        last_len: dict[str, int] = {}
        errors: dict[str, str] = {}
        while queue:
            pod = queue[0]
            if last_len.get(pod.spec.id) == len(queue):
                break
            queue.popleft()
            err = self._try(pod)
            if err is None:
                errors.pop(pod.spec.id, None)
                continue
            errors[pod.spec.id] = err
            queue.append(pod)
            last_len[pod.spec.id] = len(queue)
        plans = []
        for claim in self.claims:
            plan = self._finalize(claim)
            if isinstance(plan, str):
                for p in claim.pods:
                    errors[p.spec.id] = plan
            else:
                plans.append(plan)
        return ProvisioningResult(dict(self.nominations), tuple(plans), errors, dict(self.pool_errors))

    def _pod(self, spec: PodSpec, moving: bool, from_deleting: bool) -> _Pod:
        pod = _Pod(
            spec, self.index.vector(spec.requests), self.index.unknown(spec.requests), moving, from_deleting
        )
        simple = not (
            spec.preferred_affinity or spec.host_ports or len(spec.required_affinity) > 1
        ) and not self.topology.involves(spec)
        if simple:
            reqs = pod_requirements(spec, spec.required_affinity)
            pod.memo = (pod.request.tobytes(), reqs.key, spec.tolerations, moving, from_deleting)
        return pod

    def _try(self, pod: _Pod) -> str | None:
        attempt = _Attempt(pod.spec, self.config.preference_policy == "Respect")
        while True:
            err = self._add(pod, attempt)
            if err is None:
                return None
            if pod.unknown or not attempt.relax(self.prov.tolerate_prefer_no_schedule):
                return err

    def _add(self, pod: _Pod, attempt: _Attempt) -> str | None:
        if pod.unknown:
            return f"requests {', '.join(pod.unknown)}, which no instance type in the catalog offers"
        memo = pod.memo
        if self._add_existing(pod, attempt):
            return None
        bad_claims = self.bad_claims.setdefault(memo, set()) if memo is not None else None
        count = len(self.claims)
        room = np.flatnonzero(np.all(self.claim_room[:count] >= pod.request - FIT_SLACK, axis=1)).tolist()
        for claim in sorted((self.claims[i] for i in room), key=lambda c: (len(c.pods), c.seq)):
            if bad_claims is not None and claim.seq in bad_claims:
                continue
            fit = self._claim_fit(claim, pod, attempt)
            if isinstance(fit, _Fit):
                self._commit(claim, pod, fit)
                return None
            if bad_claims is not None:
                bad_claims.add(claim.seq)
        return self._add_new(pod, attempt)

    def _add_existing(self, pod: _Pod, attempt: _Attempt) -> bool:
        if not self.existing:
            return False
        memo = pod.memo
        bad = self.bad_existing.setdefault(memo, set()) if memo is not None else None
        room = np.all(self.free >= pod.request - FIT_SLACK, axis=1)
        if pod.moving and not pod.from_deleting:
            room &= ~self.under_consolidate_after
        for k in np.flatnonzero(room).tolist():
            if bad is not None and k in bad:
                continue
            if self._existing_fits(k, pod, attempt):
                info = self.existing[k]
                self.free[k] -= pod.request
                if pod.spec.host_ports:
                    self.added_ports.setdefault(k, set()).update(pod.spec.host_ports)
                self.topology.record(pod.spec, info.node.zone, info.node.name)
                self.nominations[pod.spec.id] = info.node.name
                return True
            if bad is not None:
                bad.add(k)
        return False

    def _existing_fits(self, k: int, pod: _Pod, attempt: _Attempt) -> bool:
        info = self.existing[k]
        if info.node.taints and untolerated(info.node.taints, pod.spec.tolerations, attempt.tolerate_pns):
            return False
        if attempt.requirements.sets and info.requirements.compatible(
            attempt.requirements, allow_undefined_well_known=False
        ):
            return False
        if pod.spec.host_ports:
            used = info.ports | self.added_ports.get(k, set())
            if any(port in used for port in pod.spec.host_ports):
                return False
        if attempt.spread or attempt.anti or self.topology.involves(pod.spec):
            topo = self.topology.requirements(
                pod.spec,
                attempt.spread,
                attempt.anti,
                attempt.strict.get(LABEL_ZONE),
                Target(info.node.name, info.node.zone),
            )
            if isinstance(topo, str):
                return False
        return True

    def _add_new(self, pod: _Pod, attempt: _Attempt) -> str | None:
        if not self.templates:
            return "no NodePool can launch nodes: " + (
                "; ".join(self.pool_errors.values()) or "there are no NodePools"
            )
        memo = pod.memo
        bad = self.bad_templates.setdefault(memo, {}) if memo is not None else None
        reasons: list[str] = []
        for t in self.templates:
            if bad is not None and t.order in bad:
                reasons.append(bad[t.order])
                continue
            why = self._open(t, pod, attempt)
            if why is None:
                return None
            reason = f"NodePool {t.pool.name!r}: {why}"
            reasons.append(reason)
            if bad is not None:
                bad[t.order] = reason
        existing = f"did not fit on any of {len(self.existing)} existing node(s)" if self.existing else ""
        return "; ".join(([existing] if existing else []) + reasons)

    def _open(self, t: _Template, pod: _Pod, attempt: _Attempt) -> str | None:
        candidates = t.candidates
        limited = False
        remaining = self.remaining.get(t.pool.name)
        if remaining is not None:
            if RESOURCE_NODES in remaining and remaining[RESOURCE_NODES] < 1 - FIT_SLACK:
                return f"node limit reached (limits.nodes {t.pool.limits[RESOURCE_NODES]:g})"  # type: ignore[index]
            for name, left in remaining.items():
                if name == RESOURCE_NODES:
                    continue
                pos = t.index.resource_position.get(name)
                if pos is not None:
                    candidates = candidates[t.index.capacity[candidates, pos] <= left + FIT_SLACK]
                elif left < -FIT_SLACK:
                    candidates = candidates[:0]
            if candidates.size == 0:
                return "all instance types exceed its limits (remaining " + _fmt_limits(remaining) + ")"
            limited = candidates.size < t.candidates.size
        seq = len(self.claims)
        claim = _Claim(
            seq=seq,
            template=t,
            hostname=f"{t.pool.name}-claim-{seq}",
            requirements=t.requirements.intersect(
                Requirements({LABEL_HOSTNAME: ValueSet(False, frozenset((f"{t.pool.name}-claim-{seq}",)))})
            ),
            candidates=candidates,
            headroom=t.index.allocatable[candidates] - t.daemon[candidates],
            total=np.zeros(len(self.index.resource_names)),
        )
        fit = self._claim_fit(claim, pod, attempt)
        if isinstance(fit, str):
            if remaining is not None and limited:
                fit += f"; its limits leave only types within {_fmt_limits(remaining)}"
            return fit
        self.claims.append(claim)
        if len(self.claims) > self.claim_room.shape[0]:
            self.claim_room = np.vstack([self.claim_room, np.zeros_like(self.claim_room)])
        self._commit(claim, pod, fit)
        if remaining is not None:
            largest = t.index.capacity[claim.candidates].max(axis=0)
            for name in remaining:
                if name == RESOURCE_NODES:
                    if self.config.exact_node_limit:
                        remaining[name] -= 1.0
                    continue
                pos = t.index.resource_position.get(name)
                if pos is not None:
                    remaining[name] -= float(largest[pos])
        return None

    def _merge(self, base: Requirements, extra: Requirements, well_known: bool = True) -> Requirements | str:
        key = (base, extra)
        cached = self._merge_cache.get(key)
        if cached is None:
            err = base.compatible(extra, allow_undefined_well_known=well_known)
            cached = err if err is not None else base.intersect(extra)
            self._merge_cache[key] = cached
        return cached

    def _offers(self, t: _Template, reqs: Requirements) -> np.ndarray:
        key = (t.order, reqs.get(LABEL_ZONE), reqs.get(LABEL_CAPACITY_TYPE))
        mask = self._offer_cache.get(key)
        if mask is None:
            mask = np.isfinite(t.index.compatible_prices(reqs, t.available)).any(axis=(1, 2))
            self._offer_cache[key] = mask
        return mask

    def _claim_fit(self, claim: _Claim, pod: _Pod, attempt: _Attempt) -> _Fit | str:
        taint = untolerated(claim.template.pool.taints, pod.spec.tolerations, attempt.tolerate_pns)
        if taint is not None:
            return f"does not tolerate taint {taint.key}={taint.value}:{taint.effect}"
        merged = self._merge(claim.requirements, attempt.requirements)
        if isinstance(merged, str):
            return f"incompatible requirements: {merged}"
        if attempt.spread or attempt.anti or self.topology.involves(pod.spec):
            topo = self.topology.requirements(
                pod.spec,
                attempt.spread,
                attempt.anti,
                attempt.strict.get(LABEL_ZONE),
                Target(claim.hostname, None, merged.get(LABEL_ZONE)),
            )
            if isinstance(topo, str):
                return topo
            merged2 = self._merge(merged, topo)
            if isinstance(merged2, str):
                return f"topology: {merged2}"
            merged = merged2
        candidates, headroom = claim.candidates, claim.headroom
        if merged is not claim.requirements:
            t = claim.template
            keep = (t.index.label_mask(merged) & self._offers(t, merged))[candidates]
            candidates, headroom = candidates[keep], headroom[keep]
            if candidates.size == 0:
                return f"no instance type meets the requirements ({merged.describe()})"
        if pod.spec.host_ports:
            if any(port in claim.ports for port in pod.spec.host_ports):
                return f"host port {sorted(pod.spec.host_ports)} already used on this node"
            clash = np.zeros(candidates.size, dtype=bool)
            for port in pod.spec.host_ports:
                mask = claim.template.daemon_ports.get(port)
                if mask is not None:
                    clash |= mask[candidates]
            candidates, headroom = candidates[~clash], headroom[~clash]
            if candidates.size == 0:
                ports = sorted(pod.spec.host_ports)
                return f"host port(s) {ports} clash with a DaemonSet on every instance type"
        ok = np.all(headroom >= pod.request - FIT_SLACK, axis=1)
        if not ok.any():
            return self._no_room(claim, pod)
        candidates, headroom = candidates[ok], headroom[ok] - pod.request
        relaxed = False
        if merged.has_min_values():
            short = _min_values_shortfall(claim.template.index, merged, candidates, claim.template.available)
            if short is not None:
                if self.config.min_values_policy == "Strict":
                    return short
                relaxed = True
        return _Fit(merged, candidates, headroom, relaxed)

    def _no_room(self, claim: _Claim, pod: _Pod) -> str:
        need = claim.total + pod.request
        names = self.index.resource_names
        wanted = ", ".join(
            f"{names[i]}={_fmt_amount(names[i], need[i])}" for i in range(len(names)) if need[i] > 0
        )
        if claim.pods:
            return f"the claim's remaining instance types cannot also hold it ({wanted})"
        return f"no allowed instance type has room for {wanted} plus DaemonSet overhead"

    def _commit(self, claim: _Claim, pod: _Pod, fit: _Fit) -> None:
        claim.pods.append(pod)
        claim.requirements = fit.requirements
        claim.candidates = fit.candidates
        claim.headroom = fit.headroom
        claim.total = claim.total + pod.request
        claim.ports.update(pod.spec.host_ports)
        claim.min_values_relaxed = claim.min_values_relaxed or fit.relaxed_min_values
        self.claim_room[claim.seq] = fit.headroom.max(axis=0)
        zone = fit.requirements.get(LABEL_ZONE)
        single = (
            next(iter(zone.values))
            if zone is not None and not zone.complement and len(zone.values) == 1
            else None
        )
        self.topology.record(pod.spec, single, claim.hostname)

    def _finalize(self, claim: _Claim) -> ClaimPlan | str:
        index = claim.template.index
        prices = index.compatible_prices(claim.requirements, claim.template.available)[claim.candidates].min(
            axis=(1, 2)
        )
        order = np.lexsort((index.name_rank[claim.candidates], prices))
        ranked = claim.candidates[order][: self.config.max_instance_types]
        short = _min_values_shortfall(index, claim.requirements, ranked, claim.template.available)
        if short is not None and self.config.min_values_policy == "Strict":
            return f"NodePool {claim.template.pool.name!r} cannot meet minValues after truncation: {short}"
        daemon = claim.template.daemon[ranked].min(axis=0)
        requests = index.resources(claim.total + daemon)
        reqs = Requirements({k: v for k, v in claim.requirements.sets.items() if k != LABEL_HOSTNAME})
        names = tuple(index.names[i] for i in ranked)
        cheapest = float(prices[order[0]])
        explanation = (
            f"NodePool {claim.template.pool.name!r}: new NodeClaim for {len(claim.pods)} pod(s) requesting "
            f"{_fmt_resources(requests)}; {len(names)} of {claim.template.candidates.size} instance types "
            f"left after narrowing (cheapest {names[0]} at ${cheapest:.4f}/h)"
        )
        return ClaimPlan(
            name=claim.hostname,
            nodepool=claim.template.pool.name,
            pod_ids=tuple(p.spec.id for p in claim.pods),
            requirements=reqs,
            instance_types=names,
            requests=requests,
            min_values_relaxed=claim.min_values_relaxed,
            explanation=explanation,
        )


def _reschedulable(pod: PodSpec) -> bool:
    return pod.owner_kind != "DaemonSet" and not (pod.terminating and pod.owner_kind != "StatefulSet")


def _fmt_amount(name: str, amount: float) -> str:
    if name == "cpu":
        return f"{amount:g}m"
    if name in ("memory", "ephemeral-storage"):
        return f"{amount:.0f}Mi"
    return f"{amount:g}"


def _fmt_resources(res: Resources) -> str:
    return ", ".join(f"{n}={_fmt_amount(n, a)}" for n, a in res.items()) or "nothing"


def _fmt_limits(remaining: dict[str, float]) -> str:
    return ", ".join(f"{n}={_fmt_amount(n, a)}" for n, a in sorted(remaining.items()))
