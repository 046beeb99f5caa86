"""KEDA scalingModifiers (pkg/scaling/modifiers/formula.go): one composite metric.

The formula combines the triggers' served values, keyed by trigger name,
into the single `composite-metric` the generated HPA scales on. With
`fallback.behavior: scalingModifiers`, a trigger failing beyond the threshold
enters as nil so that `??` can choose a substitute; a nil result falls back
to `fallback.replicas * target`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sim.controllers.fallback import MetricHealth
from sim.controllers.formula import Formula, FormulaError
from sim.controllers.scaledobject import Fallback
from sim.controllers.scalers import ScalerError, ScalerResult

COMPOSITE_METRIC_NAME = "composite-metric"


def trigger_value(
    value: float, metric_name: str, fallback: Fallback | None, health: Mapping[str, MetricHealth]
) -> float | None:
    """scalingModifierTriggerValue: nil once the metric has failed more than failureThreshold times."""
    if fallback is None or fallback.behavior != "scalingModifiers":
        return value
    h = health.get(metric_name)
    if h is None or h.failures <= fallback.failure_threshold:
        return value
    return None


def composite_value(
    formula: Formula,
    values: Mapping[str, float],
    *,
    metric_to_trigger: Mapping[str, str],
    fallback: Fallback | None,
    health: Mapping[str, MetricHealth],
    target: str | None,
) -> ScalerResult:
    """The composite metric's served value (exact milli multiple), or why there is none.

    `values` maps metric names (s0-prometheus) to served values; metrics that
    failed are simply absent and read as nil, as in expr over a Go map.
    """
    env = {
        metric_to_trigger[name]: trigger_value(v, name, fallback, health)
        for name, v in values.items()
        if name in metric_to_trigger
    }
    try:
        out = formula.evaluate(env)
    except FormulaError as exc:
        return ScalerError(f"error trying to run custom formula {formula.source!r}: {exc}")
    if out is None:
        # KEDA wraps a formula without `??` in float(...), which rejects nil.
        if "??" not in formula.source:
            return ScalerError(f"formula {formula.source!r} returned nil")
        if fallback is None:
            return ScalerError("scalingModifiers formula evaluated to nil but no fallback is configured")
        try:
            out = fallback.replicas * float(target or "")
        except ValueError:
            return ScalerError(
                f"scalingModifiers formula evaluated to nil and target {target!r} is not a number"
            )
    if isinstance(out, bool):
        return ScalerError(f"formula {formula.source!r} returned non-float result bool ({out})")
    result = float(out)
    if math.isnan(result) or math.isinf(result):
        return ScalerError(f"formula {formula.source!r} returned {result}")
    return int(result * 1000) / 1000
