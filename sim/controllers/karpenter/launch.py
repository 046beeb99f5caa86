"""Which instance a NodeClaim becomes: the AWS provider's Create pipeline plus EC2's allocation choice.

Upstream (aws pkg/providers/instance): keep the options that have an
available offering the claim allows; drop exotic types (metal, GPUs,
accelerators) and spot offerings dearer than the cheapest on-demand one
unless minValues is set; keep the 60 cheapest; launch reserved if possible,
else spot if allowed and offered, else on-demand; CreateFleet picks the
(type, zone). The last step is EC2's, and the choices we make for it are in
`LaunchConfig`. An offering that fails with insufficient capacity is
reported back so the engine can block it for `ice_ttl_s`; EC2 then tries
the next override, and if all fail the claim fails and its pods wait for
the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np

from sim.controllers.karpenter.config import LaunchConfig
from sim.controllers.karpenter.instance_index import OfferingKey
from sim.controllers.karpenter.provisioning import ClaimPlan, Provisioner
from sim.controllers.karpenter.types import (
    CAPACITY_TYPES,
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_GPU_COUNT,
    LABEL_INSTANCE_SIZE,
    LABEL_NODEPOOL,
    CapacityType,
    Node,
    Resources,
    Taint,
)

_ACCELERATOR_LABELS = (LABEL_INSTANCE_GPU_COUNT, "karpenter.k8s.aws/instance-accelerator-count")


@dataclass(frozen=True, slots=True)
class Launch:
    """The instance a claim launched as; `daemon_requests` is what its DaemonSets will take."""

    claim: str
    nodepool: str
    instance_type: str
    zone: str
    capacity_type: CapacityType
    price_usd_per_h: float
    capacity: Resources
    allocatable: Resources
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    daemon_requests: Resources
    pod_ids: tuple[str, ...]
    insufficient: tuple[OfferingKey, ...]
    explanation: str


@dataclass(frozen=True, slots=True)
class LaunchFailure:
    claim: str
    reason: str
    insufficient: tuple[OfferingKey, ...]


def launch(
    prov: Provisioner,
    plan: ClaimPlan,
    config: LaunchConfig | None = None,
    rng: np.random.Generator | None = None,
    unavailable: Collection[OfferingKey] = frozenset(),
    insufficient_capacity: Callable[[OfferingKey], bool] | None = None,
) -> Launch | LaunchFailure:
    """Choose the instance for `plan`; `insufficient_capacity` says whether EC2 refuses an offering now."""
    config = config or LaunchConfig()
    index = prov.index_for(plan.nodepool)
    blocked = frozenset(unavailable)
    available = index.availability(blocked)
    rows = np.array([index.position[n] for n in plan.instance_types], dtype=np.intp)
    prices = index.compatible_prices(plan.requirements, available)[rows]
    has_offer = np.isfinite(prices).any(axis=(1, 2))
    rows, prices = rows[has_offer], prices[has_offer]
    if rows.size == 0:
        return LaunchFailure(plan.name, "no option has an available offering any more", ())
    min_values = plan.requirements.has_min_values()
    if config.exotic_filter and not min_values:
        plain = np.array([not _exotic(index.types[i].labels) for i in rows], dtype=bool)
        if plain.any():
            rows, prices = rows[plain], prices[plain]
    spot, od = CAPACITY_TYPES.index("spot"), CAPACITY_TYPES.index("on-demand")
    if config.spot_price_cap_filter and not min_values:
        cheapest_od = prices[:, :, od].min()
        if np.isfinite(cheapest_od) and np.isfinite(prices[:, :, spot]).any():
            prices = prices.copy()
            prices[:, :, spot] = np.where(prices[:, :, spot] > cheapest_od, np.inf, prices[:, :, spot])
    if config.max_launch_types is not None and rows.size > config.max_launch_types:
        best = prices.min(axis=(1, 2))
        order = sorted(range(rows.size), key=lambda i: (best[i], index.names[rows[i]]))[
            : config.max_launch_types
        ]
        rows, prices = rows[order], prices[order]
    ct_index = next(c for c in range(len(CAPACITY_TYPES)) if np.isfinite(prices[:, :, c]).any())
    capacity_type = CAPACITY_TYPES[ct_index]
    overrides = _overrides(index.zones, rows, prices[:, :, ct_index])
    ordered = _preference(overrides, capacity_type, config, rng)
    refused: list[OfferingKey] = []
    for row, zone, price in ordered:
        key = (index.names[row], zone, capacity_type)
        if insufficient_capacity is not None and insufficient_capacity(key):
            refused.append(key)
            continue
        return _launched(prov, plan, row, zone, capacity_type, price, len(overrides), tuple(refused))
    return LaunchFailure(
        plan.name,
        f"insufficient capacity for all {len(overrides)} {capacity_type} offering(s) of "
        f"{rows.size} instance type(s); blocked for the ICE TTL",
        tuple(refused),
    )


def _exotic(labels: Mapping[str, str]) -> bool:
    if "metal" in labels.get(LABEL_INSTANCE_SIZE, ""):
        return True
    for key in _ACCELERATOR_LABELS:
        try:
            if int(labels.get(key, "0")) > 0:
                return True
        except ValueError:
            continue
    return False


def _overrides(zones: tuple[str, ...], rows: np.ndarray, prices: np.ndarray) -> list[tuple[int, str, float]]:
    """(row, zone, price) for every finite cell, like CreateFleet's (type x zone) override list."""
    out = []
    for i, row in enumerate(rows):
        for z, zone in enumerate(zones):
            price = float(prices[i, z])
            if np.isfinite(price):
                out.append((int(row), zone, price))
    return out


def _preference(
    overrides: list[tuple[int, str, float]],
    capacity_type: CapacityType,
    config: LaunchConfig,
    rng: np.random.Generator | None,
) -> list[tuple[int, str, float]]:
    """Overrides in the order EC2 would try them under our allocation-strategy assumptions."""
    ranked = sorted(overrides, key=lambda o: (o[2], o[0], o[1]))
    if rng is None:
        return ranked
    if capacity_type == "spot" and config.spot_allocation == "price-capacity-optimized":
        pool = ranked[: max(1, config.pco_candidates)]
        weights = np.array([1.0 / max(o[2], 1e-9) for o in pool])
        pick = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
        return [pick] + [o for o in ranked if o is not pick]
    if config.zone_tie_break == "random":
        cheapest = ranked[0][2]
        ties = [o for o in ranked if o[2] <= cheapest * (1 + 1e-12) and o[0] == ranked[0][0]]
        if len(ties) > 1:
            first = ties[int(rng.integers(len(ties)))]
            return [first] + [o for o in ranked if o is not first]
    return ranked


def _launched(
    prov: Provisioner,
    plan: ClaimPlan,
    row: int,
    zone: str,
    capacity_type: CapacityType,
    price: float,
    n_overrides: int,
    refused: tuple[OfferingKey, ...],
) -> Launch:
    index = prov.index_for(plan.nodepool)
    pool = prov.pools_by_name[plan.nodepool]
    templates, _ = prov.templates(frozenset())
    template = next((t for t in templates if t.pool.name == pool.name), None)
    daemon = index.resources(template.daemon[row]) if template is not None else Resources()
    labels = index.type_labels(row, zone, capacity_type)
    labels.update(pool.labels)
    labels[LABEL_NODEPOOL] = pool.name
    for key, vs in plan.requirements.sets.items():
        if key not in labels and key != LABEL_HOSTNAME and not vs.complement and len(vs.values) == 1:
            labels[key] = next(iter(vs.values))
    it = index.types[row]
    explanation = (
        f"NodeClaim {plan.name} (NodePool {pool.name!r}) launched {it.name} {capacity_type} in {zone} at "
        f"${price:.4f}/h: cheapest of {n_overrides} allowed {capacity_type} offering(s) over "
        f"{len(plan.instance_types)} candidate type(s)"
        + (f" after {len(refused)} refused for insufficient capacity" if refused else "")
    )
    return Launch(
        claim=plan.name,
        nodepool=pool.name,
        instance_type=it.name,
        zone=zone,
        capacity_type=capacity_type,
        price_usd_per_h=price,
        capacity=it.capacity,
        allocatable=it.allocatable,
        labels=labels,
        taints=pool.taints,
        daemon_requests=daemon,
        pod_ids=plan.pod_ids,
        insufficient=refused,
        explanation=explanation,
    )


def make_node(launched: Launch, name: str, created_s: float, ready_s: float) -> Node:
    """The engine's Node for a launch; it becomes schedulable (and a disruption candidate) at `ready_s`."""
    return Node(
        name=name,
        nodepool=launched.nodepool,
        instance_type=launched.instance_type,
        capacity_type=launched.capacity_type,
        zone=launched.zone,
        price_usd_per_h=launched.price_usd_per_h,
        capacity=launched.capacity,
        allocatable=launched.allocatable,
        labels={**launched.labels, LABEL_HOSTNAME: name, LABEL_CAPACITY_TYPE: launched.capacity_type},
        taints=launched.taints,
        created_s=created_s,
        launched_s=created_s,
        ready_s=ready_s,
        daemon_requests=launched.daemon_requests,
    )
