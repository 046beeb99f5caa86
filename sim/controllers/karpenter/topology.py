"""Topology spread and pod anti-affinity inside one Karpenter scheduling simulation.

Karpenter counts, per topology group (key + label selector), how many
matching pods each domain (zone, hostname) holds, and turns a pod's
constraints into a requirement on the target: a zonal spread pins an
undecided NodeClaim to the least-loaded zone that keeps the skew, a
hostname anti-affinity admits a node only while no matching pod is on it.
Upstream: core pkg/controllers/provisioning/scheduling/topology*.go. What we
keep from it: the minimum count is taken over the domains the pod may use
(hostname's minimum is always 0, a new node can always be made); a pod on a
NodeClaim whose zone is still open is not counted for zones; `minDomains`
forces the minimum to 0 while fewer domains are eligible. What we drop:
namespaces (one namespace is assumed) and the nodeAffinityPolicy /
nodeTaintsPolicy filters (all matching pods count).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sim.controllers.karpenter.requirements import Requirements, ValueSet
from sim.controllers.karpenter.types import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    PodAffinityTerm,
    PodSpec,
    TopologySpreadConstraint,
)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _selector_key(selector: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(selector.items()))


@dataclass
class _SpreadGroup:
    key: str
    selector: Mapping[str, str]
    max_skew: int
    min_domains: int | None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _AntiGroup:
    key: str
    selector: Mapping[str, str]
    matching: dict[str, int] = field(default_factory=dict)
    """Pods the selector matches, per domain (what an owner of the term must avoid)."""
    owners: dict[str, int] = field(default_factory=dict)
    """Pods that carry this required term, per domain (what a matching pod must avoid)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a pod might go: an existing node (both domains known) or a NodeClaim (zone maybe open)."""

    hostname: str
    zone: str | None
    zone_options: ValueSet | None = None


class Topology:
    """Domain counts for every group the batch's pods take part in."""

    def __init__(
        self,
        zones: Iterable[str],
        hostnames: Iterable[str],
        batch: Iterable[PodSpec],
        bound: Iterable[tuple[PodSpec, str | None, str]],
    ) -> None:
        self.zones = sorted(set(zones))
        self._spread: dict[tuple[object, ...], _SpreadGroup] = {}
        self._anti: dict[tuple[str, tuple[tuple[str, str], ...]], _AntiGroup] = {}
        bound = list(bound)
        for pod in batch:
            self._register(pod)
        for pod, _, _ in bound:
            for term in pod.anti_affinity:
                if term.weight is None:
                    self._anti_group(term)
        for group in self._spread.values():
            domains = (
                self.zones if group.key == LABEL_ZONE else hostnames if group.key == LABEL_HOSTNAME else []
            )
            for d in domains:
                group.counts.setdefault(d, 0)
        for pod, zone, hostname in bound:
            self.record(pod, zone, hostname)

    def _register(self, pod: PodSpec) -> None:
        for c in pod.topology_spread:
            key = (c.topology_key, _selector_key(c.label_selector), c.max_skew, c.min_domains)
            if key not in self._spread:
                self._spread[key] = _SpreadGroup(c.topology_key, c.label_selector, c.max_skew, c.min_domains)
        for term in pod.anti_affinity:
            self._anti_group(term)

    def _anti_group(self, term: PodAffinityTerm) -> _AntiGroup:
        key = (term.topology_key, _selector_key(term.label_selector))
        group = self._anti.get(key)
        if group is None:
            group = self._anti[key] = _AntiGroup(term.topology_key, term.label_selector)
        return group

    def involves(self, pod: PodSpec) -> bool:
        """Whether the pod's placement depends on, or changes, any domain count."""
        if pod.topology_spread or pod.anti_affinity:
            return True
        return any(selects(g.selector, pod.labels) for g in self._spread.values()) or any(
            selects(g.selector, pod.labels) for g in self._anti.values()
        )

    def record(self, pod: PodSpec, zone: str | None, hostname: str) -> None:
        domains = {LABEL_ZONE: zone, LABEL_HOSTNAME: hostname}
        for group in self._spread.values():
            d = domains.get(group.key)
            if d is not None and selects(group.selector, pod.labels):
                group.counts[d] = group.counts.get(d, 0) + 1
        for agroup in self._anti.values():
            d = domains.get(agroup.key)
            if d is None:
                continue
            if selects(agroup.selector, pod.labels):
                agroup.matching[d] = agroup.matching.get(d, 0) + 1
        for term in pod.anti_affinity:
            if term.weight is not None:
                continue
            agroup = self._anti_group(term)
            d = domains.get(agroup.key)
            if d is not None:
                agroup.owners[d] = agroup.owners.get(d, 0) + 1

    def requirements(
        self,
        pod: PodSpec,
        spread: Iterable[TopologySpreadConstraint],
        anti: Iterable[PodAffinityTerm],
        pod_zones: ValueSet | None,
        target: Target,
    ) -> Requirements | str:
        """The zone/hostname requirement the pod's constraints put on `target`, or why it cannot go there."""
        zone_choice: ValueSet | None = target.zone_options
        if target.zone is not None:
            zone_choice = ValueSet(False, frozenset((target.zone,)))
        out: dict[str, ValueSet] = {}
        for c in spread:
            group = self._spread[(c.topology_key, _selector_key(c.label_selector), c.max_skew, c.min_domains)]
            self_count = 1 if selects(group.selector, pod.labels) else 0
            if group.key == LABEL_HOSTNAME:
                if group.counts.get(target.hostname, 0) + self_count > group.max_skew:
                    return (
                        f"topology spread on hostname (maxSkew {group.max_skew}) is full on {target.hostname}"
                    )
                continue
            if group.key != LABEL_ZONE:
                continue
            allowed = self._zone_options(zone_choice, out.get(LABEL_ZONE))
            best = self._spread_domain(group, pod_zones, allowed, self_count)
            if best is None:
                return f"topology spread on zone (maxSkew {group.max_skew}) leaves no zone for this node"
            out[LABEL_ZONE] = ValueSet(False, frozenset((best,)))
        for term in anti:
            agroup = self._anti_group(term)
            if agroup.key == LABEL_HOSTNAME:
                if agroup.matching.get(target.hostname, 0) > 0:
                    return f"pod anti-affinity on hostname: {target.hostname} already runs a matching pod"
                continue
            if agroup.key != LABEL_ZONE:
                continue
            allowed = self._zone_options(zone_choice, out.get(LABEL_ZONE))
            empty = [
                z
                for z in allowed
                if agroup.matching.get(z, 0) == 0 and (pod_zones is None or pod_zones.has(z))
            ]
            if not empty:
                return "pod anti-affinity on zone: every allowed zone already runs a matching pod"
            out[LABEL_ZONE] = ValueSet(False, frozenset(empty))
        for agroup in self._anti.values():
            if not agroup.owners or not selects(agroup.selector, pod.labels):
                continue
            if agroup.key == LABEL_HOSTNAME:
                if agroup.owners.get(target.hostname, 0) > 0:
                    return f"a pod on {target.hostname} has anti-affinity against this pod"
                continue
            if agroup.key != LABEL_ZONE:
                continue
            allowed = self._zone_options(zone_choice, out.get(LABEL_ZONE))
            free = [z for z in allowed if agroup.owners.get(z, 0) == 0]
            if not free:
                return "pods in every allowed zone have anti-affinity against this pod"
            out[LABEL_ZONE] = ValueSet(False, frozenset(free))
        return Requirements(out)

    def _spread_domain(
        self, group: _SpreadGroup, pod_zones: ValueSet | None, allowed: list[str], self_count: int
    ) -> str | None:
        eligible = [d for d in group.counts if pod_zones is None or pod_zones.has(d)]
        minimum = min((group.counts[d] for d in eligible), default=0)
        if group.min_domains is not None and len(eligible) < group.min_domains:
            minimum = 0
        best: str | None = None
        best_count = 0
        for d in allowed:
            if d not in group.counts:
                continue
            count = group.counts[d] + self_count
            if count - minimum <= group.max_skew and (best is None or count < best_count):
                best, best_count = d, count
        return best

    def _zone_options(self, choice: ValueSet | None, narrowed: ValueSet | None) -> list[str]:
        """Zones still open for a target, in name order (our tie-break where upstream iterates a map)."""
        if narrowed is not None:
            return sorted(narrowed.values)
        return [z for z in self.zones if choice is None or choice.has(z)]

    def zone_counts(self, pod: PodSpec) -> dict[str, int]:
        """Matching-pod counts per zone for the pod's first zonal spread constraint (for explanations)."""
        for c in pod.topology_spread:
            if c.topology_key == LABEL_ZONE:
                key = (c.topology_key, _selector_key(c.label_selector), c.max_skew, c.min_domains)
                return dict(self._spread[key].counts)
        return {}
