"""KEDA's ScaledObject controller as the simulator runs it (spec §4).

KEDA owns two things the HPA cannot do: the 0↔1 step (activation, judged on
every `pollingInterval`) and scale-in to 0 or `idleReplicaCount` after
`cooldownPeriod`. Everything between 1 and N is the HPA's, on the HPA KEDA
generates (`KedaConfig.hpa`) and the metric values KEDA's adapter serves
(`serve_metric`). The engine drives three entry points:

- `compile_scaled_object(so)` once: validation as KEDA's webhook and scalers
  would reject the object, defaults, the generated HPA, the parsed formula;
- `poll(cfg, state, now_s, ...)` every pollingInterval (first at creation);
- `serve_metric(cfg, state, name, ...)` on every HPA reconcile, per metric.

Both mutate only the `KedaState` they are given (lastActiveTime, health,
metrics cache), so a run is deterministic and replayable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from sim.controllers.autoscaling import Behavior, HPASpec, MetricSpec, ScalingRules
from sim.controllers.fallback import (
    FallbackOutcome,
    MetricHealth,
    fallback_condition,
    fallback_valid,
    metric_with_fallback,
)
from sim.controllers.formula import Formula, FormulaError, compile_formula
from sim.controllers.modifiers import COMPOSITE_METRIC_NAME, composite_value
from sim.controllers.scaledobject import ScaledObjectSpec, Trigger
from sim.controllers.scalers import (
    SUPPORTED_SCALERS,
    PrometheusMetadata,
    ResourceMetadata,
    ScaledObjectError,
    ScalerError,
    ScalerResult,
    external_target_type,
    milli_quantity,
    parse_prometheus_metadata,
    parse_resource_metadata,
)

__all__ = [
    "COMPOSITE_METRIC_NAME",
    "CachedMetric",
    "CompiledTrigger",
    "KedaConfig",
    "KedaState",
    "Query",
    "ScaleDecision",
    "ScaledObjectError",
    "ScalerError",
    "TriggerActivity",
    "check_replica_bounds",
    "compile_scaled_object",
    "hpa_max_replicas",
    "hpa_min_replicas",
    "hpa_spec",
    "idle_or_min_replica_count",
    "poll",
    "request_scale",
    "scaled_object_activity",
    "serve_metric",
]

DEFAULT_POLLING_INTERVAL_S = 30
DEFAULT_COOLDOWN_PERIOD_S = 300
DEFAULT_INITIAL_COOLDOWN_PERIOD_S = 0
DEFAULT_HPA_MIN_REPLICAS = 1
DEFAULT_HPA_MAX_REPLICAS = 100
_FALLBACK_BEHAVIORS = (
    "static",
    "currentReplicas",
    "currentReplicasIfHigher",
    "currentReplicasIfLower",
    "scalingModifiers",
)

# Scaler query: metric name (s0-prometheus) -> raw value (may be negative) or error.
Query = Callable[[str], ScalerResult]


def _num(v: float) -> str:
    return f"{v:.6g}"


def _t(s: float) -> str:
    return f"t={s:.10g}s" if s != -math.inf else "the distant past"


# ---------------------------------------------------------------- defaults and validation


def hpa_min_replicas(min_replica_count: int | None) -> int:
    """GetHPAMinReplicas: the HPA never goes below 1; 0 is KEDA's business."""
    if min_replica_count is not None and min_replica_count > 0:
        return min_replica_count
    return DEFAULT_HPA_MIN_REPLICAS


def hpa_max_replicas(max_replica_count: int | None) -> int:
    return DEFAULT_HPA_MAX_REPLICAS if max_replica_count is None else max_replica_count


def idle_or_min_replica_count(
    idle_replica_count: int | None, min_replica_count: int | None
) -> tuple[bool, int]:
    """Where scale-in goes: (True, idle) when idleReplicaCount is set, else (False, min or 0)."""
    if idle_replica_count is not None:
        return True, idle_replica_count
    return False, min_replica_count or 0


def check_replica_bounds(
    min_replica_count: int | None, max_replica_count: int | None, idle_replica_count: int | None
) -> None:
    """CheckReplicaCountBoundsAreValid, with its quirk: an explicit min 0 compares as 1."""
    lo = 0 if min_replica_count is None else hpa_min_replicas(min_replica_count)
    hi = hpa_max_replicas(max_replica_count)
    if lo > hi:
        raise ScaledObjectError(
            f"MinReplicaCount={lo} must be less than MaxReplicaCount={hi}",
            "spec.minReplicaCount",
            f"at most maxReplicaCount ({hi})",
        )
    if idle_replica_count is not None and idle_replica_count >= lo:
        raise ScaledObjectError(
            f"IdleReplicaCount={idle_replica_count} must be less than MinReplicaCount={lo}",
            "spec.idleReplicaCount",
            f"below minReplicaCount ({lo}); in practice only 0 works",
        )


@dataclass(frozen=True)
class CompiledTrigger:
    """One trigger after parsing.

    External triggers have `metric_name` s<index>-<scaler> and their HPA target
    (`target`, already milli-rounded as KEDA renders it); cpu/memory triggers
    have `resource` and no activation.
    """

    index: int
    type: str
    name: str | None
    metric_name: str
    target_type: Literal["AverageValue", "Value", "Utilization"]
    target: float
    activation_threshold: float = 0.0
    use_cached_metrics: bool = False
    prometheus: PrometheusMetadata | None = None
    resource: ResourceMetadata | None = None

    @property
    def is_resource(self) -> bool:
        return self.resource is not None


@dataclass(frozen=True)
class KedaConfig:
    """A validated ScaledObject with its defaults applied and its HPA built."""

    spec: ScaledObjectSpec
    triggers: tuple[CompiledTrigger, ...]
    external: tuple[CompiledTrigger, ...]
    hpa: HPASpec
    polling_interval_s: int
    cooldown_period_s: int
    initial_cooldown_period_s: int
    fallback_enabled: bool
    formula: Formula | None = None
    metric_to_trigger: dict[str, str] = field(default_factory=dict)
    modifiers_target_type: Literal["AverageValue", "Value"] = "AverageValue"
    modifiers_target: float = 0.0
    activation_target: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def paused(self) -> bool:
        a = self.spec.annotations
        return a.paused or a.paused_replicas is not None


def _compile_trigger(t: Trigger, index: int) -> CompiledTrigger:
    f = f"spec.triggers[{index}]"
    if t.type not in SUPPORTED_SCALERS:
        raise ScaledObjectError(
            f"scaler type {t.type!r} is not supported by the simulator",
            f"{f}.type",
            ", ".join(SUPPORTED_SCALERS),
        )
    if t.type in ("cpu", "memory"):
        if t.use_cached_metrics:
            raise ScaledObjectError(
                f'property "useCachedMetrics" is not supported for {t.type!r} scaler',
                f"{f}.useCachedMetrics",
                "false for cpu/memory triggers",
            )
        rm = parse_resource_metadata(t, f)
        return CompiledTrigger(
            index=index,
            type=t.type,
            name=t.name,
            metric_name=rm.resource,
            target_type=rm.target_type,
            target=rm.value,
            resource=rm,
        )
    meta = parse_prometheus_metadata(t.metadata, f"{f}.metadata")
    return CompiledTrigger(
        index=index,
        type=t.type,
        name=t.name,
        metric_name=f"s{index}-{t.type}",
        target_type=external_target_type(t, f),
        target=milli_quantity(meta.threshold),
        activation_threshold=meta.activation_threshold,
        use_cached_metrics=t.use_cached_metrics,
        prometheus=meta,
    )


def _check_non_negative(value: int | None, fld: str) -> None:
    if value is not None and value < 0:
        raise ScaledObjectError(f"must not be negative, got {value}", fld, "an integer >= 0")


def _hpa_behavior(so: ScaledObjectSpec) -> Behavior | None:
    """Passed through verbatim; the paused-scale-in/out annotations disable one direction."""
    behavior = so.behavior
    a = so.annotations
    if a.paused_scale_in:
        behavior = behavior or Behavior()
        down = behavior.scale_down or ScalingRules()
        behavior = replace(behavior, scale_down=replace(down, select_policy="Disabled"))
    if a.paused_scale_out:
        behavior = behavior or Behavior()
        up = behavior.scale_up or ScalingRules()
        behavior = replace(behavior, scale_up=replace(up, select_policy="Disabled"))
    return behavior


def compile_scaled_object(so: ScaledObjectSpec) -> KedaConfig:
    """Validate `so` the way KEDA would and precompute what every poll needs.

    Raises ScaledObjectError (a ValueError carrying `field` and `valid`) for
    anything KEDA's webhook, its scalers or the generated HPA would reject.
    Beyond upstream, negative counts and a non-positive pollingInterval are
    rejected: KEDA would accept them and then misbehave.
    """
    if not so.triggers:
        raise ScaledObjectError(
            "no triggers defined in the ScaledObject", "spec.triggers", "at least one trigger"
        )
    seen: set[str] = set()
    for i, t in enumerate(so.triggers):
        if t.name is not None and t.name != "":
            if t.name in seen:
                raise ScaledObjectError(
                    f"triggerName {t.name!r} is defined multiple times in the ScaledObject, "
                    "but it must be unique",
                    f"spec.triggers[{i}].name",
                    "a unique name",
                )
            seen.add(t.name)
    triggers = tuple(_compile_trigger(t, i) for i, t in enumerate(so.triggers))
    external = tuple(t for t in triggers if not t.is_resource)
    warnings: list[str] = []

    for value, fld in (
        (so.min_replica_count, "spec.minReplicaCount"),
        (so.max_replica_count, "spec.maxReplicaCount"),
        (so.idle_replica_count, "spec.idleReplicaCount"),
        (so.cooldown_period_s, "spec.cooldownPeriod"),
        (so.initial_cooldown_period_s, "spec.initialCooldownPeriod"),
    ):
        _check_non_negative(value, fld)
    if so.polling_interval_s is not None and so.polling_interval_s <= 0:
        raise ScaledObjectError(
            f"must be positive, got {so.polling_interval_s}",
            "spec.pollingInterval",
            "seconds > 0 (default 30)",
        )
    check_replica_bounds(so.min_replica_count, so.max_replica_count, so.idle_replica_count)
    if hpa_max_replicas(so.max_replica_count) < 1:
        raise ScaledObjectError(
            "the generated HPA needs maxReplicas >= 1",
            "spec.maxReplicaCount",
            "an integer >= 1 (default 100)",
        )
    if not external and not so.min_replica_count:
        raise ScaledObjectError(
            "scaledobject has only cpu/memory triggers AND minReplica is 0 "
            "(scale to zero doesn't work in this case)",
            "spec.minReplicaCount",
            "at least 1, or add a non-cpu/memory trigger",
        )

    sm = so.scaling_modifiers
    using_modifiers = sm is not None
    formula: Formula | None = None
    metric_to_trigger: dict[str, str] = {}
    mod_type: Literal["AverageValue", "Value"] = "AverageValue"
    mod_target = 0.0
    activation_target = 0.0
    if sm is not None:
        fm = "spec.advanced.scalingModifiers"
        if not sm.formula:
            raise ScaledObjectError(
                "ScalingModifiers.Formula is mandatory", f"{fm}.formula", "an expr formula"
            )
        if not sm.target:
            raise ScaledObjectError("formula is given but target is empty", f"{fm}.target", "a number > 0")
        try:
            mod_target = float(sm.target)
        except ValueError:
            mod_target = -1.0
        if not mod_target > 0:
            raise ScaledObjectError(
                f"target {sm.target!r} is not a number > 0", f"{fm}.target", "a number > 0"
            )
        if sm.metric_type not in (None, "AverageValue", "Value"):
            raise ScaledObjectError(
                f"metric type {sm.metric_type} is not allowed for the composite metric",
                f"{fm}.metricType",
                "AverageValue or Value",
            )
        mod_type = sm.metric_type or "AverageValue"
        if sm.activation_target:
            try:
                activation_target = float(sm.activation_target)
            except ValueError:
                raise ScaledObjectError(
                    f"activationTarget {sm.activation_target!r} is not a number",
                    f"{fm}.activationTarget",
                    "a number",
                ) from None
        try:
            formula = compile_formula(sm.formula)
        except FormulaError as exc:
            raise ScaledObjectError(
                str(exc), f"{fm}.formula", "an expr-lang formula over named triggers"
            ) from None
        named = {t.name: t for t in external if t.name}
        unknown = sorted(formula.names - named.keys())
        if unknown:
            raise ScaledObjectError(
                f"formula uses {', '.join(unknown)}, which is not the name of a non-cpu/memory trigger",
                f"{fm}.formula",
                ", ".join(sorted(named)) or "name the triggers (spec.triggers[].name)",
            )
        try:
            formula.evaluate(dict.fromkeys(named, -1.0))
        except FormulaError as exc:
            raise ScaledObjectError(str(exc), f"{fm}.formula", "a formula that yields a number") from None
        metric_to_trigger = {t.metric_name: t.name for t in external if t.name}

    fb = so.fallback
    fallback_enabled = False
    if fb is not None:
        if fb.failure_threshold < 0 or fb.replicas < 0:
            raise ScaledObjectError(
                f"FailureThreshold={fb.failure_threshold} & Replicas={fb.replicas} must both be >= 0",
                "spec.fallback",
                "failureThreshold >= 0 and replicas >= 0",
            )
        if fb.behavior not in (None, "", *_FALLBACK_BEHAVIORS):
            raise ScaledObjectError(
                f"unknown fallback behavior {fb.behavior!r}",
                "spec.fallback.behavior",
                ", ".join(_FALLBACK_BEHAVIORS),
            )
        if not using_modifiers and not external:
            raise ScaledObjectError(
                "at least one trigger (that is not cpu or memory) has to have the `AverageValue` type "
                "for the fallback to be enabled",
                "spec.fallback",
                "a non-cpu/memory trigger",
            )
        if fb.behavior == "scalingModifiers" and formula is None:
            raise ScaledObjectError(
                "scalingModifiers fallback behavior requires scalingModifiers.formula to be defined",
                "spec.fallback.behavior",
                "static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower",
            )
        fallback_enabled = fallback_valid(fb, (sm.target or "") if sm is not None else None)
        if not fallback_enabled:
            warnings.append(
                "spec.fallback is ignored: with scalingModifiers KEDA only falls back when "
                f"scalingModifiers.target is a positive integer (got {sm.target if sm else None!r})"
            )

    resource_specs = [
        MetricSpec(
            source="ContainerResource" if t.resource.container else "Resource",
            target_type=t.resource.target_type,
            target=t.resource.value,
            name=t.resource.resource,
            container=t.resource.container,
        )
        for t in triggers
        if t.resource is not None
    ]
    if formula is not None:
        dropped = [m for m in resource_specs if m.source == "ContainerResource"]
        if dropped:
            warnings.append(
                "KEDA drops ContainerResource (containerName) triggers from the HPA "
                "when scalingModifiers are used"
            )
        metrics = [m for m in resource_specs if m.source == "Resource"]
        metrics.append(MetricSpec("External", mod_type, int(mod_target * 1000) / 1000, COMPOSITE_METRIC_NAME))
    else:
        metrics = resource_specs + [
            MetricSpec("External", t.target_type, t.target, t.metric_name) for t in external
        ]
        metrics.sort(key=lambda m: m.source)  # KEDA sorts by metric source type
    hpa = HPASpec(
        min_replicas=hpa_min_replicas(so.min_replica_count),
        max_replicas=hpa_max_replicas(so.max_replica_count),
        metrics=tuple(metrics),
        behavior=_hpa_behavior(so),
    )
    return KedaConfig(
        spec=so,
        triggers=triggers,
        external=external,
        hpa=hpa,
        polling_interval_s=so.polling_interval_s or DEFAULT_POLLING_INTERVAL_S,
        cooldown_period_s=(
            DEFAULT_COOLDOWN_PERIOD_S if so.cooldown_period_s is None else so.cooldown_period_s
        ),
        initial_cooldown_period_s=(
            DEFAULT_INITIAL_COOLDOWN_PERIOD_S
            if so.initial_cooldown_period_s is None
            else so.initial_cooldown_period_s
        ),
        fallback_enabled=fallback_enabled,
        formula=formula,
        metric_to_trigger=metric_to_trigger,
        modifiers_target_type=mod_type,
        modifiers_target=mod_target,
        activation_target=activation_target,
        warnings=tuple(warnings),
    )


def hpa_spec(so: ScaledObjectSpec) -> HPASpec:
    """The HorizontalPodAutoscaler KEDA generates for `so` (controllers/keda/hpa.go)."""
    return compile_scaled_object(so).hpa


# ---------------------------------------------------------------- state and decisions


@dataclass(slots=True)
class CachedMetric:
    """A polling-loop result kept for `useCachedMetrics` (after fallback, like upstream)."""

    active: bool
    value: float | None
    error: str | None


@dataclass
class KedaState:
    """What KEDA remembers about one ScaledObject between polls.

    `creation_time_s` may be -inf for an object created long before the run.
    """

    creation_time_s: float = 0.0
    last_active_time_s: float | None = None
    health: dict[str, MetricHealth] = field(default_factory=dict)
    metrics_cache: dict[str, CachedMetric] = field(default_factory=dict)
    fallback_condition: bool = False


@dataclass(slots=True)
class ScaleDecision:
    """One poll's outcome. `replicas` is the new scale target, None to leave it alone.

    Conditions mirror the ScaledObject status: `active_condition` None means
    not set this time (e.g. paused). `values` are the metric values KEDA saw
    this poll, as served (after milli rounding, fallback, formula).
    """

    replicas: int | None
    active: bool
    is_error: bool
    reason: str
    active_condition: bool | None = None
    active_reason: str | None = None
    ready_condition: Literal["True", "False", "Unknown"] = "True"
    ready_reason: str = "ScaledObjectReady"
    paused: bool = False
    last_active_time_set: bool = False
    fallback_active: bool = False
    values: dict[str, float] = field(default_factory=dict)
    active_triggers: tuple[str, ...] = ()


def request_scale(
    so: ScaledObjectSpec,
    state: KedaState,
    *,
    now_s: float,
    current_replicas: int,
    is_active: bool,
    is_error: bool,
    activity: str = "",
) -> ScaleDecision:
    """The executor (scale_scaledobjects.go RequestScale) for one poll.

    `activity` is the explanation of is_active/is_error woven into the reason.
    Updates `state.last_active_time_s` when KEDA would.
    """
    a = so.annotations
    if a.paused or a.paused_replicas is not None:
        which = "paused-replicas" if a.paused_replicas is not None else "paused"
        return ScaleDecision(
            None, is_active, is_error, f"paused by annotation autoscaling.keda.sh/{which}", paused=True
        )
    cur = current_replicas
    min_rc = so.min_replica_count or 0
    idle = so.idle_replica_count
    why = f" ({activity})" if activity else ""

    if is_active or a.force_activation:
        cause = (
            "forced by annotation autoscaling.keda.sh/force-activation" if a.force_activation else "active"
        )
        if (idle is not None and cur < min_rc) or cur == 0:
            if a.paused_scale_out:
                return ScaleDecision(
                    None,
                    is_active,
                    is_error,
                    f"{cause}{why}, but scale-out is paused by annotation: stays at {cur}",
                    active_condition=True,
                    active_reason="ScalerActive",
                )
            target = min_rc if min_rc > 0 else 1
            state.last_active_time_s = now_s
            return ScaleDecision(
                target,
                is_active,
                is_error,
                f"activated, {cause}{why}: scale from {cur} to {target}",
                active_condition=True,
                active_reason="ScalerActive",
                last_active_time_set=True,
            )
        if is_error:
            return ScaleDecision(
                None,
                is_active,
                is_error,
                f"{cause}{why} with a trigger in error: lastActiveTime not refreshed, 1..N left to the HPA",
                active_condition=True,
                active_reason="ScalerActive",
                ready_condition="Unknown",
                ready_reason="PartialTriggerError",
            )
        state.last_active_time_s = now_s
        return ScaleDecision(
            None,
            is_active,
            is_error,
            f"{cause}{why}: lastActiveTime refreshed, 1..N left to the HPA",
            active_condition=True,
            active_reason="ScalerActive",
            last_active_time_set=True,
        )

    fb = so.fallback
    if is_error and fb is not None and fb.replicas != 0:
        return ScaleDecision(
            None,
            False,
            True,
            f"inactive with a trigger in error{why}: fallback is set, so KEDA never scales to zero; "
            "the HPA receives fallback metrics",
            active_condition=False,
            active_reason="ScalerNotActive",
        )
    if is_error and fb is None:
        return ScaleDecision(
            None,
            False,
            True,
            f"trigger error{why}: no scaling (Ready=False TriggerError)",
            active_condition=False,
            active_reason="ScalerNotActive",
            ready_condition="False",
            ready_reason="TriggerError",
        )
    if (idle is not None and cur > idle) or (cur > 0 and min_rc == 0):
        return _scale_to_zero_or_idle(so, state, now_s=now_s, cur=cur, is_error=is_error, why=why)
    if idle is None and cur < min_rc:
        return ScaleDecision(
            min_rc,
            False,
            is_error,
            f"inactive{why} and below minReplicaCount: scale from {cur} to {min_rc}",
            active_condition=False,
            active_reason="ScalerNotActive",
        )
    return ScaleDecision(
        None,
        False,
        is_error,
        f"inactive{why}: nothing to do at {cur} replicas",
        active_condition=False,
        active_reason="ScalerNotActive",
    )


def _scale_to_zero_or_idle(
    so: ScaledObjectSpec, state: KedaState, *, now_s: float, cur: int, is_error: bool, why: str
) -> ScaleDecision:
    is_idle, target = idle_or_min_replica_count(so.idle_replica_count, so.min_replica_count)
    kind = "idleReplicaCount" if is_idle else "minReplicaCount"
    if so.annotations.paused_scale_in:
        return ScaleDecision(
            None,
            False,
            is_error,
            f"inactive{why}, but scale-in is paused by annotation: stays at {cur}",
            active_condition=False,
            active_reason="ScalerNotActive",
        )
    last = state.last_active_time_s
    if last is None:
        initial = so.initial_cooldown_period_s or DEFAULT_INITIAL_COOLDOWN_PERIOD_S
        deadline = state.creation_time_s + initial
        since = f"never active; creation + initialCooldownPeriod {initial}s = {_t(deadline)}"
    else:
        cooldown = DEFAULT_COOLDOWN_PERIOD_S if so.cooldown_period_s is None else so.cooldown_period_s
        deadline = last + cooldown
        since = f"inactive since lastActiveTime {_t(last)}, cooldownPeriod {cooldown}s"
    if deadline < now_s:
        return ScaleDecision(
            target,
            False,
            is_error,
            f"deactivated{why}: {since} has passed; scale from {cur} to {target} ({kind})",
            active_condition=False,
            active_reason="ScalerNotActive",
        )
    return ScaleDecision(
        None,
        False,
        is_error,
        f"cooldown{why}: {since}; scale to {target} at the first poll after {_t(deadline)}",
        active_condition=False,
        active_reason="ScalerCooldown",
    )


@dataclass(frozen=True, slots=True)
class TriggerActivity:
    """One external metric's state in a poll, as getScalerState reports it."""

    metric_name: str
    active: bool
    error: bool


def scaled_object_activity(
    triggers: Sequence[TriggerActivity], trigger_count: int, cpu_memory_count: int
) -> tuple[bool, bool, list[str]]:
    """(is_active, is_error, active metric names) without scalingModifiers.

    Any active trigger activates the object even if another errors; an object
    whose triggers are all cpu/memory is always active unless in error.
    """
    active = [t.metric_name for t in triggers if t.active and not t.error]
    is_error = any(t.error for t in triggers)
    is_active = bool(active) or (trigger_count <= cpu_memory_count and not is_error)
    return is_active, is_error, active


def _with_fallback(
    cfg: KedaConfig,
    state: KedaState,
    t: CompiledTrigger,
    served: ScalerResult,
    *,
    current_replicas: int,
    ready_replicas: int | None,
) -> FallbackOutcome:
    """Fallback normalises to the HPA target: the trigger's, or the composite metric's."""
    if cfg.formula is not None:
        target_type, target = cfg.modifiers_target_type, cfg.modifiers_target
    else:
        assert t.target_type != "Utilization"
        target_type, target = t.target_type, t.target
    return metric_with_fallback(
        served,
        state.health,
        metric_name=t.metric_name,
        fallback=cfg.spec.fallback,
        enabled=cfg.fallback_enabled,
        target_type=target_type,
        target_value=target,
        current_replicas=current_replicas,
        ready_replicas=ready_replicas,
    )


def _served(raw: ScalerResult) -> ScalerResult:
    return raw if isinstance(raw, ScalerError) else milli_quantity(raw)


def _refresh_fallback_condition(cfg: KedaConfig, state: KedaState) -> None:
    fb = cfg.spec.fallback
    if cfg.fallback_enabled and fb is not None:
        state.fallback_condition = fallback_condition(state.health, fb.failure_threshold)


def _composite(
    cfg: KedaConfig, state: KedaState, values: dict[str, float], fallback_values: list[float]
) -> ScalerResult:
    """HandleScalingModifiers: an active (non-scalingModifiers) fallback bypasses the formula."""
    if fallback_values:
        return fallback_values[0]
    assert cfg.formula is not None
    sm = cfg.spec.scaling_modifiers
    target = sm.target if sm is not None else None
    return composite_value(
        cfg.formula,
        values,
        metric_to_trigger=cfg.metric_to_trigger,
        fallback=cfg.spec.fallback,
        health=state.health,
        target=target,
    )


def poll(
    cfg: KedaConfig,
    state: KedaState,
    *,
    now_s: float,
    current_replicas: int,
    query: Query,
    ready_replicas: int | None = None,
) -> ScaleDecision:
    """One run of KEDA's scale loop (checkScalers): query every trigger, decide 0↔1 and scale-in.

    `query(metric_name)` returns the trigger's raw value (what the Prometheus
    scaler computed, possibly negative) or a ScalerError; it is called once
    per external trigger (KEDA's single retry after rebuilding a scaler is
    assumed to see the same answer). `current_replicas` is the target's
    spec.replicas; `ready_replicas` (Running and Ready pods) matters only for
    fallback with Value targets. While paused, the loop is stopped and the
    target is held at paused-replicas when that annotation is set.
    """
    so = cfg.spec
    if cfg.paused:
        held = so.annotations.paused_replicas
        if held is not None and held != current_replicas:
            return ScaleDecision(
                held,
                False,
                False,
                "paused by annotation autoscaling.keda.sh/paused-replicas: "
                f"scale from {current_replicas} to {held}",
                paused=True,
            )
        return request_scale(
            so, state, now_s=now_s, current_replicas=current_replicas, is_active=False, is_error=False
        )

    fb = so.fallback
    values: dict[str, float] = {}
    parts: list[tuple[str, str]] = []  # (metric name, explanation)
    activity: list[TriggerActivity] = []
    fallback_values: list[float] = []
    records: dict[str, CachedMetric] = {}
    for t in cfg.external:
        raw = query(t.metric_name)
        metric_active = not isinstance(raw, ScalerError) and raw > t.activation_threshold
        out = _with_fallback(
            cfg, state, t, _served(raw), current_replicas=current_replicas, ready_replicas=ready_replicas
        )
        active = out.fallback_active or metric_active
        if t.use_cached_metrics:
            records[t.metric_name] = CachedMetric(active, out.value, out.error)
        activity.append(TriggerActivity(t.metric_name, active, out.error is not None))
        if out.value is None:
            parts.append((t.metric_name, f"{t.metric_name} error: {out.error}"))
            continue
        values[t.metric_name] = out.value
        if out.fallback_active:
            assert fb is not None
            fallback_values.append(out.value)
            failures = state.health[t.metric_name].failures
            text = (
                f"{t.metric_name} failing ({failures} failures > failureThreshold {fb.failure_threshold}): "
                f"fallback value {_num(out.value)} for {out.replicas} replicas"
            )
        elif isinstance(raw, ScalerError):
            text = f"{t.metric_name} failing beyond failureThreshold: nil in the formula"
        else:
            cmp = ">" if metric_active else "<="
            text = f"{t.metric_name}={_num(raw)} {cmp} activation {_num(t.activation_threshold)}"
        parts.append((t.metric_name, text))
    if records:
        state.metrics_cache = records
    _refresh_fallback_condition(cfg, state)

    n_resource = len(cfg.triggers) - len(cfg.external)
    is_active, is_error, active_names = scaled_object_activity(activity, len(cfg.triggers), n_resource)
    if cfg.formula is not None:
        is_active, active_names = False, []
        if not is_error:
            comp = _composite(cfg, state, values, fallback_values)
            if isinstance(comp, ScalerError):
                text = f"{COMPOSITE_METRIC_NAME} error: {comp.message}"
            else:
                values[COMPOSITE_METRIC_NAME] = comp
                is_active = comp > cfg.activation_target
                cmp = ">" if is_active else "<="
                text = (
                    f"{COMPOSITE_METRIC_NAME}={_num(comp)} {cmp} "
                    f"activationTarget {_num(cfg.activation_target)}"
                )
                if is_active:
                    active_names = [COMPOSITE_METRIC_NAME]
            parts.append((COMPOSITE_METRIC_NAME, text))
    elif is_active and not cfg.external:
        parts.append(("", "only cpu/memory triggers: always active"))
    if active_names:
        # Explain an activation by what caused it, not by every trigger.
        parts = [p for p in parts if p[0] in active_names]
    explanation = "; ".join(text for _, text in parts)
    decision = request_scale(
        so,
        state,
        now_s=now_s,
        current_replicas=current_replicas,
        is_active=is_active,
        is_error=is_error,
        activity=explanation,
    )
    decision.fallback_active = bool(fallback_values)
    decision.values = values
    decision.active_triggers = tuple(active_names)
    return decision


def serve_metric(
    cfg: KedaConfig,
    state: KedaState,
    *,
    metric_name: str,
    current_replicas: int,
    query: Query,
    ready_replicas: int | None = None,
) -> ScalerResult:
    """What KEDA's metrics adapter answers when the HPA asks for `metric_name` (GetScaledObjectMetrics).

    A trigger with useCachedMetrics gets the last poll's record (and, as
    upstream, that record goes through fallback again, so a cached error
    counts as another failure); others query the scaler live, and failures
    count toward failureThreshold here too. With scalingModifiers every
    external trigger is evaluated and the composite value is returned. The
    value is an exact milli multiple; a ScalerError means the HPA sees this
    metric as invalid.
    """
    triggers = (
        cfg.external if cfg.formula is not None else [t for t in cfg.external if t.metric_name == metric_name]
    )
    if not triggers:
        return ScalerError(f"no matching metrics found for {metric_name}")
    values: dict[str, float] = {}
    fallback_values: list[float] = []
    any_error = False
    for t in triggers:
        rec = state.metrics_cache.get(t.metric_name) if t.use_cached_metrics else None
        served: ScalerResult
        if rec is not None:
            served = rec.value if rec.value is not None else ScalerError(rec.error or "cached error")
        else:
            served = _served(query(t.metric_name))
        out = _with_fallback(
            cfg, state, t, served, current_replicas=current_replicas, ready_replicas=ready_replicas
        )
        if out.value is None:
            any_error = True
            continue
        values[t.metric_name] = out.value
        if out.fallback_active:
            fallback_values.append(out.value)
    _refresh_fallback_condition(cfg, state)
    if any_error and not fallback_values:
        return ScalerError(f"metric:{metric_name} encountered error")
    if not values:
        return ScalerError(f"no matching metrics found for {metric_name}")
    if cfg.formula is not None:
        return _composite(cfg, state, values, fallback_values)
    return values[triggers[0].metric_name]
