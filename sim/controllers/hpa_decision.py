"""What one HPA reconcile decided, and why: the record the engine logs as an explanation.

A user asks "why didn't it scale up at 14:02?"; the answer is the metric values
the HPA saw, the proposal they gave, and the limits (tolerance, stabilization,
policies, min/max, errors) that kept the count from following them, in the
order the controller applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sim.controllers.replica_calc import Hold

Limit = Literal[
    "tolerance",
    "missing_or_unready_pods",
    "scale_up_stabilization",
    "scale_down_stabilization",
    "scale_up_policy",
    "scale_down_policy",
    "scale_up_disabled",
    "scale_down_disabled",
    "legacy_scale_up_limit",
    "max_replicas",
    "min_replicas",
    "scaling_disabled",
    "metric_error",
    "metric_error_blocks_scale_down",
]
"""What held the replica count away from where the metrics pointed."""


@dataclass(frozen=True, slots=True)
class MetricOutcome:
    """One metric as the HPA saw it; `value_milli` is what upstream writes to status.currentMetrics.

    That is the total for Value targets, the per-pod average for AverageValue
    targets, and the raw per-pod average for Utilization (whose percent is in
    `utilization_pct`); `total_milli` is the summed Object/External value the
    query returned. `ratio` is usage / target. `held` says why the proposal
    stayed at the current count; `error` is set (and `proposal` None) on failure.
    """

    name: str
    source: str
    target_type: str
    target: int
    proposal: int | None = None
    value_milli: int | None = None
    utilization_pct: int | None = None
    ratio: float | None = None
    total_milli: int | None = None
    pods_counted: int | None = None
    held: Hold | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HPADecision:
    """The outcome of one reconcile, for the scale subresource and for explanations.

    `desired_replicas` is what the controller writes when `rescale`, else the
    current count. `proposal` is the metrics' maximum before normalization and
    `stabilized` the value after the stabilization window (None when metrics
    were not used). `limited_by` lists, in order of application, what kept the
    count from following the metrics.
    """

    now_s: float
    current_replicas: int
    desired_replicas: int
    rescale: bool
    metrics: tuple[MetricOutcome, ...]
    proposal: int | None
    stabilized: int | None
    limited_by: tuple[Limit, ...]
    able_to_scale_reason: str
    scaling_active_reason: str | None
    scaling_limited_reason: str | None
    error: str | None = None

    def explain(self) -> str:
        """A sentence a user reads in events.csv: the values seen, the proposal, and what held it."""
        if self.rescale:
            head = f"scaled {self.current_replicas} -> {self.desired_replicas}"
        else:
            head = f"kept {self.current_replicas}"
        parts = [head]
        seen = "; ".join(_describe_metric(m) for m in self.metrics)
        if seen:
            parts.append(seen)
        if self.proposal is not None:
            parts.append(f"metrics propose {self.proposal}")
        if self.stabilized is not None and self.stabilized != self.proposal:
            parts.append(f"stabilized to {self.stabilized}")
        for limit in self.limited_by:
            parts.append(_LIMIT_TEXT[limit])
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


_LIMIT_TEXT: dict[str, str] = {
    "tolerance": "held: usage within the tolerance band around the target",
    "missing_or_unready_pods": "held: counting missing/unready pods conservatively reversed the direction",
    "scale_up_stabilization": "held by the scale-up stabilization window (lowest recent recommendation)",
    "scale_down_stabilization": "held by the scale-down stabilization window (highest recent recommendation)",
    "scale_up_policy": "capped by the scale-up policies (rate limit over their periods)",
    "scale_down_policy": "capped by the scale-down policies (rate limit over their periods)",
    "scale_up_disabled": "scale-up disabled (selectPolicy: Disabled)",
    "scale_down_disabled": "scale-down disabled (selectPolicy: Disabled)",
    "legacy_scale_up_limit": "capped by the per-sync scale-up limit max(factor x current, minimum)",
    "max_replicas": "bounded by maxReplicas",
    "min_replicas": "bounded by minReplicas",
    "scaling_disabled": "scaling disabled: the target is at 0 replicas (KEDA owns 0 <-> 1)",
    "metric_error": "no valid metric: replica count left unchanged",
    "metric_error_blocks_scale_down": "a metric is invalid: no scale-down until all metrics are valid",
}


def _describe_metric(m: MetricOutcome) -> str:
    if m.error is not None:
        return f"{m.source} metric {m.name}: {m.error}"
    target = f"{m.target}%" if m.target_type == "Utilization" else _milli(m.target)
    if m.utilization_pct is not None:
        value = f"{m.utilization_pct}%"
    elif m.target_type == "AverageValue" and m.total_milli is not None and m.value_milli is not None:
        value = f"{_milli(m.total_milli)} ({_milli(m.value_milli)} per pod)"
    elif m.value_milli is not None:
        value = _milli(m.value_milli)
    else:
        value = "?"
    ratio = f", ratio {m.ratio:.3f}" if m.ratio is not None and math.isfinite(m.ratio) else ""
    return f"{m.source} {m.name} = {value} ({m.target_type} target {target}{ratio}) -> {m.proposal}"


def _milli(value_milli: int) -> str:
    return f"{value_milli / 1000:g}"
