"""Node lifecycle rules outside the disruption loop: consolidateAfter, expiry, drift, spot interruption.

These are the forceful or time-driven paths: expiry (core
nodeclaim/expiration) deletes a NodeClaim at creation + expireAfter with no
budget, no replacement pre-spin and no validation; drift (core
nodeclaim/disruption/drift.go) is detected here and acted on by the
disruption loop; a spot interruption (aws controllers/interruption) deletes
the NodeClaim at the 2-minute notice, blocks the (type, zone, spot) offering
for the ICE TTL, and the instance disappears when the notice runs out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sim.controllers.karpenter.requirements import Requirements
from sim.controllers.karpenter.types import LABEL_HOSTNAME, Node, NodePoolSpec

DEFAULT_SPOT_INTERRUPTIONS_PER_HOUR = 0.05 / (30 * 24)
"""5 % per month: the lowest band of the AWS Spot Instance Advisor ("<5%"), a deliberately mild default.

The interruption rate is external to Karpenter; scenarios set it per
instance type. The engine samples arrivals (Poisson per node) from its own
random stream; this module only says what an interruption does.
"""


def last_pod_event_s(node: Node) -> float | None:
    """When the node's pod set last changed; the initialization time when it never has."""
    return node.last_pod_event_s if node.last_pod_event_s is not None else node.ready_s


def consolidatable(node: Node, pool: NodePoolSpec, now_s: float) -> bool:
    """The Consolidatable condition: initialized, consolidateAfter elapsed since the last pod event."""
    if pool.consolidate_after_s is None or not node.is_ready(now_s):
        return False
    since = last_pod_event_s(node)
    return since is not None and now_s - since >= pool.consolidate_after_s


def under_consolidate_after(node: Node, pool: NodePoolSpec, now_s: float) -> bool:
    """Protected as a consolidation destination (v1.14): inside the window; `Never` protects nothing."""
    if pool.consolidate_after_s is None:
        return False
    since = last_pod_event_s(node)
    return since is not None and now_s - since < pool.consolidate_after_s


def expired(nodes: Iterable[Node], pools: Mapping[str, NodePoolSpec], now_s: float) -> list[Node]:
    """Managed nodes past creation + expireAfter; the engine deletes them at once (no budget, no checks)."""
    out = []
    for node in nodes:
        pool = pools.get(node.nodepool or "")
        if pool is None or pool.expire_after_s is None or node.marked_for_deletion:
            continue
        if now_s >= node.created_s + pool.expire_after_s:
            out.append(node)
    return out


def drift_reason(node: Node, pool: NodePoolSpec | None) -> str | None:
    """Why a node has drifted from its NodePool (gone, or labels no longer meet the requirements), or None.

    Changes to weight, limits and disruption settings never drift a node. A
    changed template hash (taints, startup spec) also drifts upstream; the
    engine marks that itself when a scenario edits a NodePool mid-run.
    """
    if node.nodepool is None:
        return None
    if pool is None:
        return f"NodePool {node.nodepool!r} no longer exists"
    labels = {**node.labels, LABEL_HOSTNAME: node.name}
    err = Requirements.from_labels(labels).compatible(
        Requirements.of(pool.requirements).intersect(Requirements.from_labels(pool.labels)),
        allow_undefined_well_known=False,
    )
    if err is not None:
        return f"no longer satisfies NodePool {pool.name!r}: {err}"
    return None


@dataclass(frozen=True, slots=True)
class Interruption:
    """What a spot interruption notice sets in motion for one node."""

    node: str
    notice_s: float
    terminate_s: float
    blocked_offering: tuple[str, str, str]
    explanation: str


def interruption(node: Node, notice_s: float, notice_window_s: float = 120.0) -> Interruption:
    """At the notice: delete the NodeClaim (drain now, replacement provisioned now); instance gone at the end.

    Interruptions are not rate-limited by budgets and do not wait for the
    replacement; rebalance recommendations do nothing.
    """
    return Interruption(
        node=node.name,
        notice_s=notice_s,
        terminate_s=notice_s + notice_window_s,
        blocked_offering=(node.instance_type, node.zone, node.capacity_type),
        explanation=(
            f"spot interruption notice for {node.name} ({node.instance_type} in {node.zone}): draining now, "
            f"instance reclaimed at t={notice_s + notice_window_s:g}s; offering blocked for new launches"
        ),
    )
