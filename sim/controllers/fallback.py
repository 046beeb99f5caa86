"""KEDA fallback (pkg/fallback/fallback.go): what the HPA gets when a scaler fails.

Every metric query of a trigger goes through `metric_with_fallback`, in the
polling loop and in each HPA query the adapter answers live, so failures
accumulate at the combined rate of both (spec §4.6). Past `failureThreshold`
(strict >) the error is replaced by a value that makes the HPA land on the
fallback replica count.
"""

from __future__ import annotations

import math
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Literal

from sim.controllers.scaledobject import Fallback
from sim.controllers.scalers import ScalerError, ScalerResult

HealthStatus = Literal["Happy", "Failing"]


@dataclass(slots=True)
class MetricHealth:
    """`status.health[metricName]` of the ScaledObject."""

    failures: int = 0
    status: HealthStatus = "Happy"


def fallback_valid(fallback: Fallback, modifiers_target: str | None) -> bool:
    """HasValidFallback. With scalingModifiers the target must parse as a positive *integer*."""
    if modifiers_target is not None and not (
        re.fullmatch(r"[+-]?[0-9]+", modifiers_target) and int(modifiers_target) > 0
    ):
        return False
    return fallback.failure_threshold >= 0 and fallback.replicas >= 0


def fallback_replicas(fallback: Fallback, current_replicas: int) -> int:
    behavior = fallback.behavior or "static"
    if behavior == "currentReplicas":
        return current_replicas
    if behavior == "currentReplicasIfHigher":
        return max(current_replicas, fallback.replicas)
    if behavior == "currentReplicasIfLower":
        return min(current_replicas, fallback.replicas)
    return fallback.replicas


def fallback_condition(health: MutableMapping[str, MetricHealth], failure_threshold: int) -> bool:
    """The ScaledObject's Fallback condition: some metric failing beyond the threshold."""
    return any(h.status == "Failing" and h.failures > failure_threshold for h in health.values())


@dataclass(frozen=True, slots=True)
class FallbackOutcome:
    """What one query of one metric yields.

    `value` is the served value (an exact milli multiple) or None when `error`
    is set. With `behavior: scalingModifiers` a failing metric past the
    threshold yields the placeholder -1, which the formula reads as nil.
    `replicas` is the fallback count the value encodes, for explanations.
    """

    value: float | None
    error: str | None
    fallback_active: bool
    replicas: int | None = None


# Placeholder KEDA serves for a metric the formula must see as nil.
NIL_PLACEHOLDER = -1.0


def metric_with_fallback(
    result: ScalerResult,
    health: MutableMapping[str, MetricHealth],
    *,
    metric_name: str,
    fallback: Fallback | None,
    enabled: bool,
    target_type: Literal["AverageValue", "Value"],
    target_value: float,
    current_replicas: int | None,
    ready_replicas: int | None,
) -> FallbackOutcome:
    """GetMetricsWithFallback for one metric; updates `health` in place.

    `result` is the served (already milli-rounded) value or the scaler error.
    `enabled` is "fallback set and valid" (see fallback_valid); health is only
    tracked then. `target_type`/`target_value` are the HPA target of this
    metric, or of the composite metric when scalingModifiers are used.
    `current_replicas`/`ready_replicas` may be None when unknown; a behavior
    that needs them then fails like upstream does when it cannot read them.
    """
    if not isinstance(result, ScalerError):
        if enabled:
            h = health.get(metric_name)
            if h is None:
                health[metric_name] = MetricHealth(0, "Happy")
            else:
                h.failures, h.status = 0, "Happy"
        return FallbackOutcome(result, None, False)
    if fallback is None or not enabled:
        return FallbackOutcome(None, result.message, False)

    h = health.setdefault(metric_name, MetricHealth())
    h.failures += 1
    h.status = "Failing"
    if h.failures <= fallback.failure_threshold:
        return FallbackOutcome(None, result.message, False)

    behavior = fallback.behavior or "static"
    if behavior == "scalingModifiers":
        return FallbackOutcome(NIL_PLACEHOLDER, None, False)
    if behavior != "static" and current_replicas is None:
        return FallbackOutcome(None, result.message, False)
    replicas = fallback_replicas(fallback, current_replicas or 0)
    per_pod: float = replicas
    if target_type == "Value":
        if not ready_replicas:
            # Upstream logs "readyReplicas is zero" and answers with this error.
            return FallbackOutcome(None, "error performing fallback", False)
        per_pod = replicas / ready_replicas
    milli = target_value * 1000 * per_pod
    if math.isnan(milli) or math.isinf(milli):
        return FallbackOutcome(None, "error performing fallback", False)
    return FallbackOutcome(int(milli) / 1000, None, True, replicas)
