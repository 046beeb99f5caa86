"""Karpenter operator options and the simulator's explicit choices for cloud-side behaviour.

Upstream defaults come from core pkg/operator/options and the AWS provider;
the launch settings are the decisions spec §12 says a simulator must take,
each with the default we chose and why (see `LaunchConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """BATCH_IDLE_DURATION / BATCH_MAX_DURATION; pods still pending re-trigger every `requeue_s`."""

    idle_s: float = 1.0
    max_s: float = 10.0
    requeue_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ProvisioningConfig:
    """Scheduler options.

    `exact_node_limit` is a deliberate deviation: upstream only checks
    `limits.nodes` against nodes that already exist, so one batch can open
    more NodeClaims than the limit allows (spec §3.7). We count the claims
    opened in the batch too, so a node limit is never exceeded; False restores
    the upstream behaviour.
    """

    preference_policy: Literal["Respect", "Ignore"] = "Respect"
    min_values_policy: Literal["Strict", "BestEffort"] = "Strict"
    max_instance_types: int = 600
    exact_node_limit: bool = True
    nomination_window_s: float = 20.0


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """How a NodeClaim becomes one instance (spec §4.2 and §12).

    - `spot_allocation`: EC2's price-capacity-optimized strategy depends on
      capacity data nobody outside AWS has. "lowest-price" (default) takes the
      cheapest spot offering: optimistic on price, reproducible.
      "price-capacity-optimized" picks at random among the `pco_candidates`
      cheapest (type, zone) spot offerings, weighted by 1/price: an assumption,
      not a model of AWS, for studying how much a non-cheapest choice costs.
      On-demand always takes the cheapest (EC2 `lowest-price`).
    - `zone_tie_break`: on-demand prices are regional, so zones tie. "random"
      (default; needs the launch RNG stream) spreads nodes over zones as EC2
      tends to; "first" takes the zone with the lowest name, for tests.
    - `max_launch_types`: the AWS provider sends at most 60 types to CreateFleet
      (None: no cut, as the fake provider of the core tests).
    - `exotic_filter`, `spot_price_cap_filter`: the AWS provider drops metal
      and GPU/accelerator types unless nothing else is left, and spot offerings
      dearer than the cheapest on-demand one, when no requirement has minValues.
    - `ice_ttl_s`: how long an offering that failed with insufficient capacity
      stays blocked (UnavailableOfferingsTTL).
    """

    spot_allocation: Literal["lowest-price", "price-capacity-optimized"] = "lowest-price"
    pco_candidates: int = 3
    zone_tie_break: Literal["random", "first"] = "random"
    max_launch_types: int | None = 60
    exotic_filter: bool = True
    spot_price_cap_filter: bool = True
    ice_ttl_s: float = 180.0


@dataclass(frozen=True, slots=True)
class DisruptionConfig:
    """Disruption controller options (spec §7-§9).

    `start_utc` anchors simulated second 0 to a wall-clock instant, because
    budget schedules are cron expressions in UTC.
    """

    spot_to_spot: bool = False
    poll_s: float = 10.0
    validation_delay_s: float = 15.0
    consolidated_memo_s: float = 300.0
    multi_node_max_candidates: int = 100
    spot_to_spot_min_types: int = 15
    balanced_k: float = 2.0
    interruption_notice_s: float = 120.0
    precheck: bool = True
    """Skip consolidation simulations a cheap capacity/price bound proves futile (same outcome, faster).
    Off only to verify that equivalence."""
    start_utc: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class KarpenterConfig:
    batch: BatchConfig = field(default_factory=BatchConfig)
    provisioning: ProvisioningConfig = field(default_factory=ProvisioningConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    disruption: DisruptionConfig = field(default_factory=DisruptionConfig)
