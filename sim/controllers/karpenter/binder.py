"""kube-scheduler binding pending pods onto ready nodes: filter, score, pick the best.

Karpenter only nominates; kube-scheduler binds, and where it binds decides
how fast consolidation can empty nodes. First-fit would pack pods onto the
oldest nodes and empty the others unrealistically fast, so this follows the
default scheduler profile instead:

- Filter: node ready and not being deleted; NoSchedule/NoExecute taints
  tolerated; nodeSelector and one of the required node-affinity terms met;
  requests (with the pod slot) within allocatable minus what is bound;
  host ports free; required pod anti-affinity (both directions) and
  DoNotSchedule topology spread (skew over the domains of nodes that pass
  the pod's node affinity) respected.
- Score (plugin weights of the default profile): NodeResourcesFit with
  LeastAllocated over CPU and memory (1), NodeResourcesBalancedAllocation
  (1), PodTopologySpread (2) with the pod's ScheduleAnyway constraints or,
  when it has none, the system defaults (hostname maxSkew 3, zone maxSkew 5,
  over pods of the same owner), NodeAffinity preferred terms (2),
  TaintToleration over PreferNoSchedule taints (3), InterPodAffinity
  preferred anti-affinity (2).
- Ties go to the node whose name sorts first (kube-scheduler picks one at
  random; determinism matters more here).

Pods are taken in priority order, then by creation time: each bind is
visible to the next pod, as in the real scheduling queue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sim.controllers.karpenter.requirements import ValueSet, untolerated
from sim.controllers.karpenter.topology import selects
from sim.controllers.karpenter.types import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    Node,
    PodSpec,
    Requirement,
    Resources,
)

_BASE = ("cpu", "memory", "pods", "ephemeral-storage")
_DEFAULT_SPREAD = ((LABEL_HOSTNAME, 3), (LABEL_ZONE, 5))


@dataclass(frozen=True, slots=True)
class BinderConfig:
    default_spread: bool = True
    least_allocated_weight: float = 1.0
    balanced_weight: float = 1.0
    spread_weight: float = 2.0
    node_affinity_weight: float = 2.0
    taint_weight: float = 3.0
    inter_pod_weight: float = 2.0


@dataclass(frozen=True, slots=True)
class BindResult:
    bound: dict[str, str]
    """Pod id -> node name."""
    unbound: dict[str, str] = field(default_factory=dict)
    """Pod id -> why no node took it (the filter that removed the most nodes)."""


def _matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    vs = ValueSet.from_requirement(req)
    value = labels.get(req.key)
    return vs.is_negative() if value is None else vs.has(value)


def node_affinity_ok(pod: PodSpec, labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    if not pod.required_affinity:
        return True
    return any(all(_matches(r, labels) for r in term) for term in pod.required_affinity)


class _State:
    def __init__(self, nodes: Sequence[Node], pods: Sequence[PodSpec], now_s: float) -> None:
        self.nodes = [
            n for n in sorted(nodes, key=lambda n: n.name) if n.is_ready(now_s) and not n.marked_for_deletion
        ]
        ext = sorted(
            {k for n in self.nodes for k in n.allocatable.extended}
            | {k for p in pods for k in p.requests.extended}
        )
        self.names = _BASE + tuple(ext)
        self.alloc = np.array([self.vec(n.allocatable) for n in self.nodes]).reshape(
            len(self.nodes), len(self.names)
        )
        self.used = np.array([self.requested(n) for n in self.nodes]).reshape(
            len(self.nodes), len(self.names)
        )
        self.labels = [{**n.labels, LABEL_HOSTNAME: n.name, LABEL_ZONE: n.zone} for n in self.nodes]
        zones = sorted({n.zone for n in self.nodes})
        self.zone_of = np.array([zones.index(n.zone) for n in self.nodes], dtype=np.intp)
        self.n_zones = len(zones)
        self.pods: list[list[PodSpec]] = [list(n.pods.values()) for n in self.nodes]
        self.ports = [{port for p in n.pods.values() for port in p.host_ports} for n in self.nodes]
        self._static: dict[tuple[object, ...], np.ndarray] = {}
        self._owner_counts: dict[str, np.ndarray] = {}

    def vec(self, res: Resources) -> list[float]:
        return [res.cpu_millicores, res.memory_mib, res.pods, res.ephemeral_storage_mib] + [
            res.extended.get(k, 0.0) for k in self.names[4:]
        ]

    def requested(self, node: Node) -> list[float]:
        row = self.vec(node.daemon_requests)
        pods = node.pods.values()
        row[0] += sum(p.requests.cpu_millicores for p in pods)
        row[1] += sum(p.requests.memory_mib for p in pods)
        row[2] += len(node.pods)
        row[3] += sum(p.requests.ephemeral_storage_mib for p in pods)
        for p in pods:
            for k, amount in p.requests.extended.items():
                if k in self.names:
                    row[self.names.index(k)] += amount
        return row

    def static_mask(self, pod: PodSpec) -> np.ndarray:
        key = (tuple(sorted(pod.node_selector.items())), pod.required_affinity, pod.tolerations)
        mask = self._static.get(key)
        if mask is None:
            mask = np.array(
                [
                    untolerated(
                        [t for t in n.taints if t.effect != "PreferNoSchedule"], pod.tolerations, False
                    )
                    is None
                    and node_affinity_ok(pod, lbl)
                    for n, lbl in zip(self.nodes, self.labels, strict=True)
                ],
                dtype=bool,
            )
            self._static[key] = mask
        return mask

    def owner_counts(self, owner: str) -> np.ndarray:
        counts = self._owner_counts.get(owner)
        if counts is None:
            counts = np.array([sum(1 for p in ps if p.owner == owner) for ps in self.pods], dtype=float)
            self._owner_counts[owner] = counts
        return counts

    def selector_counts(self, selector: Mapping[str, str]) -> np.ndarray:
        return np.array([sum(1 for p in ps if selects(selector, p.labels)) for ps in self.pods], dtype=float)

    def domain_counts(self, key: str, per_node: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Per node, the count in its domain (zone: summed over the zone's eligible nodes)."""
        if key == LABEL_HOSTNAME:
            return per_node
        sums = np.bincount(self.zone_of[eligible], weights=per_node[eligible], minlength=self.n_zones)
        return sums[self.zone_of]

    def bind(self, i: int, pod: PodSpec, request: np.ndarray) -> None:
        self.used[i] += request
        self.pods[i].append(pod)
        self.ports[i].update(pod.host_ports)
        counts = self._owner_counts.get(pod.owner)
        if counts is not None:
            counts[i] += 1


def bind(
    pods: Sequence[PodSpec], nodes: Sequence[Node], now_s: float, config: BinderConfig | None = None
) -> BindResult:
    """Bind as many of `pods` as fit; the engine calls it when pods are pending and a node turns ready."""
    config = config or BinderConfig()
    state = _State(nodes, pods, now_s)
    bound: dict[str, str] = {}
    unbound: dict[str, str] = {}
    for pod in sorted(pods, key=lambda p: (-p.priority, p.created_s, p.id)):
        if not state.nodes:
            unbound[pod.id] = "no ready node"
            continue
        request = np.array(state.vec(pod.requests))
        feasible, why = _filter(state, pod, request)
        if not feasible.any():
            unbound[pod.id] = why
            continue
        scores = _score(state, pod, request, feasible, config)
        best = int(np.flatnonzero(feasible)[np.argmax(scores[feasible])])
        state.bind(best, pod, request)
        bound[pod.id] = state.nodes[best].name
    return BindResult(bound, unbound)


def _filter(state: _State, pod: PodSpec, request: np.ndarray) -> tuple[np.ndarray, str]:
    affinity = state.static_mask(pod)
    if not affinity.any():
        return affinity, "no ready node matches its node selector/affinity and tolerations"
    fits = np.all(request <= state.alloc - state.used + 1e-6, axis=1)
    feasible = affinity & fits
    if not feasible.any():
        return feasible, "no ready node has room for its requests"
    if pod.host_ports:
        free = np.array([not (set(pod.host_ports) & ports) for ports in state.ports], dtype=bool)
        feasible &= free
    for term in pod.anti_affinity:
        if term.weight is None:
            counts = state.domain_counts(
                term.topology_key, state.selector_counts(term.label_selector), affinity
            )
            feasible &= counts == 0
    feasible &= ~_inverse_anti(state, pod, affinity)
    for c in pod.topology_spread:
        if c.when_unsatisfiable != "DoNotSchedule":
            continue
        per_node = state.selector_counts(c.label_selector)
        counts = state.domain_counts(c.topology_key, per_node, affinity)
        minimum = (
            counts[affinity].min()
            if c.topology_key == LABEL_HOSTNAME
            else _zone_min(state, per_node, affinity)
        )
        self_count = 1 if selects(c.label_selector, pod.labels) else 0
        feasible &= counts + self_count - minimum <= c.max_skew
    if not feasible.any():
        return feasible, "pod anti-affinity, topology spread or host ports rule out every node with room"
    return feasible, ""


def _zone_min(state: _State, per_node: np.ndarray, eligible: np.ndarray) -> float:
    zones = np.unique(state.zone_of[eligible])
    sums = np.bincount(state.zone_of[eligible], weights=per_node[eligible], minlength=state.n_zones)
    return float(sums[zones].min()) if zones.size else 0.0


def _inverse_anti(state: _State, pod: PodSpec, eligible: np.ndarray) -> np.ndarray:
    """Nodes whose domain holds a pod with required anti-affinity against this pod."""
    blocked = np.zeros(len(state.nodes), dtype=bool)
    for i, placed in enumerate(state.pods):
        for other in placed:
            for term in other.anti_affinity:
                if term.weight is not None or not selects(term.label_selector, pod.labels):
                    continue
                if term.topology_key == LABEL_HOSTNAME:
                    blocked[i] = True
                elif term.topology_key == LABEL_ZONE:
                    blocked |= state.zone_of == state.zone_of[i]
    return blocked


def _score(
    state: _State, pod: PodSpec, request: np.ndarray, feasible: np.ndarray, config: BinderConfig
) -> np.ndarray:
    alloc = state.alloc[:, :2]
    after = state.used[:, :2] + request[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(alloc > 0, after / alloc, 1.0)
    least = np.clip(1.0 - frac, 0.0, 1.0).mean(axis=1) * 100
    balanced = (1.0 - np.abs(frac[:, 0] - frac[:, 1]) / 2) * 100
    total = config.least_allocated_weight * least + config.balanced_weight * balanced
    total += config.spread_weight * _spread_score(state, pod, feasible, config)
    if pod.preferred_affinity:
        raw = np.array(
            [
                sum(w.weight for w in pod.preferred_affinity if all(_matches(r, lbl) for r in w.requirements))
                for lbl in state.labels
            ],
            dtype=float,
        )
        top = raw[feasible].max()
        total += config.node_affinity_weight * (raw / top * 100 if top > 0 else 0.0)
    prefer_no = np.array(
        [
            sum(
                1
                for t in n.taints
                if t.effect == "PreferNoSchedule" and untolerated([t], pod.tolerations, False)
            )
            for n in state.nodes
        ],
        dtype=float,
    )
    worst = prefer_no[feasible].max()
    total += config.taint_weight * ((1 - prefer_no / worst) * 100 if worst > 0 else 100.0)
    preferred_anti = [t for t in pod.anti_affinity if t.weight is not None]
    if preferred_anti:
        raw = np.zeros(len(state.nodes))
        for term in preferred_anti:
            counts = state.domain_counts(
                term.topology_key, state.selector_counts(term.label_selector), feasible
            )
            raw -= float(term.weight or 0) * (counts > 0)
        total += config.inter_pod_weight * _normalize_high(raw, feasible)
    return total


def _spread_score(state: _State, pod: PodSpec, feasible: np.ndarray, config: BinderConfig) -> np.ndarray:
    soft = [c for c in pod.topology_spread if c.when_unsatisfiable == "ScheduleAnyway"]
    if soft:
        constraints = [(c.topology_key, c.max_skew, state.selector_counts(c.label_selector)) for c in soft]
    elif not pod.topology_spread and config.default_spread:
        per_owner = state.owner_counts(pod.owner)
        constraints = [(key, skew, per_owner) for key, skew in _DEFAULT_SPREAD]
    else:
        return np.zeros(len(state.nodes))
    raw = np.zeros(len(state.nodes))
    for key, skew, per_node in constraints:
        domains = feasible.sum() if key == LABEL_HOSTNAME else np.unique(state.zone_of[feasible]).size
        raw += state.domain_counts(key, per_node, feasible) * math.log(domains + 2) + (skew - 1)
    return _normalize_high(-raw, feasible)


def _normalize_high(raw: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Scale so the best feasible node scores 100 and the worst 0 (all equal: 100)."""
    hi, lo = raw[feasible].max(), raw[feasible].min()
    if hi == lo:
        return np.full(raw.shape, 100.0)
    return (raw - lo) / (hi - lo) * 100
