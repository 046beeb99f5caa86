"""KEDA ScaledObject manifests -> sim.controllers.scaledobject.ScaledObjectSpec.

The manifest is first checked as the cluster would check it: the CRD schema
(sim.k8s.crd), the CRD's CEL rule on min/max, KEDA's admission webhook rules
(idleReplicaCount < minReplicaCount, unique trigger names) and the
autoscaling/v2 validation the generated HPA must pass (policy values and
periods). Then every trigger is checked for what the simulator can evaluate:
a Prometheus query is compiled now, so an unsupported query fails at load
time with the file, the field and the line, not an hour into a tuning run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from sim.controllers.autoscaling import Behavior, ScalingPolicy, ScalingRules, SelectPolicy
from sim.controllers.scaledobject import (
    Annotations,
    Fallback,
    FallbackBehavior,
    ScaledObjectSpec,
    ScalingModifiers,
    Trigger,
)
from sim.errors import InputError
from sim.k8s.crd import validate_resource
from sim.k8s.kustomize import Resource
from sim.k8s.quantity import VALID_FORMS, QuantityError, parse_quantity
from sim.k8s.yamlsource import FieldPath, SourceLocation, YamlDocument
from sim.metrics.promql import Query, compile_query

API_VERSION = "keda.sh/v1alpha1"
KIND = "ScaledObject"
SUPPORTED_TRIGGERS = ("prometheus", "cpu", "memory")
DEFAULT_MAX_REPLICAS = 100  # KEDA's default, also what the CRD's CEL rule compares against

_ANNOTATION_PREFIX = "autoscaling.keda.sh/"
_BOOL_TEXT = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
_MAX_STABILIZATION_S = 3600  # autoscaling/v2 validation of the generated HPA
_MAX_POLICY_PERIOD_S = 1800

T = TypeVar("T")


@dataclass(frozen=True)
class ScaleTarget:
    kind: str
    name: str
    api_version: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass(frozen=True)
class ScaledObjectManifest:
    """A loaded ScaledObject: the controller's view plus where each part came from.

    `trigger_locations[i]` points at trigger i's query (prometheus) or value
    (cpu/memory), so the engine can name the file, field and line if the
    trigger misbehaves during a run. `queries[i]` is the compiled PromQL of
    each prometheus trigger.
    """

    spec: ScaledObjectSpec
    namespace: str | None
    target: ScaleTarget
    resource: Resource
    trigger_locations: dict[int, SourceLocation]
    queries: dict[int, Query]

    @property
    def file(self) -> Path:
        return self.resource.file


def scaled_object_from_resource(resource: Resource) -> ScaledObjectManifest:
    """Validate one ScaledObject and map it to the controller's types; InputError on any problem."""
    doc = resource.doc
    if resource.api_version != API_VERSION:
        raise doc.error(
            ("apiVersion",), f"unsupported ScaledObject apiVersion {resource.api_version!r}", API_VERSION
        )
    validate_resource(resource)
    spec = doc.sub(("spec",)).plain()
    min_count = spec.get("minReplicaCount")
    max_count = spec.get("maxReplicaCount")
    idle_count = spec.get("idleReplicaCount")
    if min_count is not None and min_count > (max_count if max_count is not None else DEFAULT_MAX_REPLICAS):
        raise doc.error(
            ("spec", "minReplicaCount"),
            f"minReplicaCount ({min_count}) must be less than or equal to maxReplicaCount "
            f"({max_count if max_count is not None else f'default {DEFAULT_MAX_REPLICAS}'})",
            valid="minReplicaCount <= maxReplicaCount",
        )
    if idle_count is not None and idle_count >= (min_count or 0):
        raise doc.error(
            ("spec", "idleReplicaCount"),
            f"idleReplicaCount ({idle_count}) must be lower than minReplicaCount ({min_count or 0})",
            valid="idleReplicaCount < minReplicaCount (KEDA's admission webhook)",
        )
    triggers, locations, queries = _triggers(doc)
    modifiers = _scaling_modifiers(doc, triggers)
    target_ref = spec["scaleTargetRef"]
    return ScaledObjectManifest(
        spec=ScaledObjectSpec(
            name=resource.name,
            triggers=triggers,
            min_replica_count=min_count,
            max_replica_count=max_count,
            idle_replica_count=idle_count,
            polling_interval_s=spec.get("pollingInterval"),
            cooldown_period_s=spec.get("cooldownPeriod"),
            initial_cooldown_period_s=spec.get("initialCooldownPeriod"),
            fallback=_fallback(doc),
            behavior=_behavior(doc),
            scaling_modifiers=modifiers,
            annotations=_annotations(doc),
        ),
        namespace=resource.namespace,
        target=ScaleTarget(
            kind=str(target_ref.get("kind") or "Deployment"),
            name=str(target_ref["name"]),
            api_version=str(target_ref.get("apiVersion") or "apps/v1"),
        ),
        resource=resource,
        trigger_locations=locations,
        queries=queries,
    )


# --- triggers ----------------------------------------------------------------------------------------


def _triggers(doc: YamlDocument) -> tuple[tuple[Trigger, ...], dict[int, SourceLocation], dict[int, Query]]:
    triggers: list[Trigger] = []
    locations: dict[int, SourceLocation] = {}
    queries: dict[int, Query] = {}
    names: dict[str, int] = {}
    for i, raw in enumerate(doc.sub(("spec", "triggers")).plain()):
        base: FieldPath = ("spec", "triggers", i)
        kind = raw["type"]
        if kind not in SUPPORTED_TRIGGERS:
            raise doc.error(
                (*base, "type"),
                f"trigger type {kind!r} is not simulated",
                valid=", ".join(SUPPORTED_TRIGGERS),
            )
        name = raw.get("name")
        if name is not None:
            if name in names:
                raise doc.error(
                    (*base, "name"), f"trigger name {name!r} is also used by spec.triggers[{names[name]}]"
                )
            names[name] = i
        metadata = {str(k): str(v) for k, v in raw["metadata"].items()}
        if kind == "prometheus":
            metric_type = _prometheus_metadata(doc, base, metadata)
            location = doc.locate((*base, "metadata", "query"))
            queries[i] = _compile(metadata["query"], location)
        else:
            metric_type = _resource_metadata(doc, base, raw, metadata)
            location = doc.locate((*base, "metadata", "value"))
        locations[i] = location
        triggers.append(
            Trigger(
                type=kind,
                metadata=metadata,
                name=name,
                metric_type=metric_type,
                use_cached_metrics=bool(raw.get("useCachedMetrics", False)),
            )
        )
    return tuple(triggers), locations, queries


MetricType = Literal["AverageValue", "Value", "Utilization"]


def _prometheus_metadata(doc: YamlDocument, base: FieldPath, metadata: dict[str, str]) -> MetricType | None:
    if not metadata.get("query", "").strip():
        raise doc.error((*base, "metadata", "query"), "a prometheus trigger needs a query")
    _number(doc, (*base, "metadata", "threshold"), metadata.get("threshold"), required=True, positive=True)
    _number(doc, (*base, "metadata", "activationThreshold"), metadata.get("activationThreshold"))
    ignore_nulls = metadata.get("ignoreNullValues")
    if ignore_nulls is not None and ignore_nulls.lower() not in _BOOL_TEXT:
        raise doc.error(
            (*base, "metadata", "ignoreNullValues"), f"{ignore_nulls!r} is not a boolean", "true, false"
        )
    metric_type = doc.get((*base, "metricType"))
    if metric_type is not None and metric_type not in ("AverageValue", "Value"):
        raise doc.error(
            (*base, "metricType"),
            f"metricType {metric_type!r} is not valid for a prometheus trigger",
            valid="AverageValue, Value",
        )
    return cast(MetricType | None, metric_type)


def _resource_metadata(
    doc: YamlDocument, base: FieldPath, raw: dict[str, Any], metadata: dict[str, str]
) -> MetricType:
    # `metadata.type` is the pre-2.10 spelling of the trigger's metricType; old manifests still carry it.
    metric_type = raw.get("metricType") or metadata.get("type")
    if metric_type not in ("Utilization", "AverageValue"):
        raise doc.error(
            (*base, "metricType"),
            f"a {raw['type']} trigger needs metricType Utilization or AverageValue, got {metric_type!r}",
            valid="Utilization, AverageValue",
        )
    value = metadata.get("value")
    path = (*base, "metadata", "value")
    if value is None:
        raise doc.error(path, f"a {raw['type']} trigger needs metadata.value")
    if metric_type == "Utilization":
        if not value.strip().isdigit() or int(value) <= 0:
            raise doc.error(
                path, f"{value!r} is not a utilisation percentage", valid="a whole number > 0, e.g. 70"
            )
    else:
        _quantity(doc, path, value)
    return cast(MetricType, metric_type)


def _number(
    doc: YamlDocument, path: FieldPath, text: str | None, *, required: bool = False, positive: bool = False
) -> float | None:
    if text is None:
        if required:
            raise doc.error(path, f"{path[-1]} is required", valid="a number as a string, e.g. '100'")
        return None
    try:
        value = float(text)
    except ValueError:
        raise doc.error(path, f"{text!r} is not a number", valid="a number as a string, e.g. '100'") from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise doc.error(
            path, f"{text!r} is out of range", valid="a finite number > 0" if positive else "a finite number"
        )
    return value


def _quantity(doc: YamlDocument, path: FieldPath, text: str) -> float:
    try:
        value = float(parse_quantity(text))
    except QuantityError as exc:
        raise doc.error(path, str(exc), valid=VALID_FORMS) from None
    if value <= 0:
        raise doc.error(path, f"{text!r} must be > 0", valid=VALID_FORMS)
    return value


def _compile(query: str, location: SourceLocation) -> Query:
    try:
        return compile_query(query, file=location.file, field=location.field)
    except InputError as exc:
        if exc.line is None:
            exc.line = location.line
        raise


# --- the rest of the spec ----------------------------------------------------------------------------


def _scaling_modifiers(doc: YamlDocument, triggers: tuple[Trigger, ...]) -> ScalingModifiers | None:
    path: FieldPath = ("spec", "advanced", "scalingModifiers")
    raw = doc.sub(path).plain()
    if not raw or not raw.get("formula"):
        return None
    for key in ("target", "activationTarget"):
        if raw.get(key) is not None:
            _number(doc, (*path, key), raw[key], positive=key == "target")
    unnamed = [i for i, t in enumerate(triggers) if t.name is None]
    if unnamed:
        raise doc.error(
            ("spec", "triggers", unnamed[0]),
            "scalingModifiers.formula refers to triggers by name, so every trigger needs a name",
        )
    return ScalingModifiers(
        formula=str(raw["formula"]),
        target=raw.get("target"),
        activation_target=raw.get("activationTarget"),
        metric_type=raw.get("metricType"),
    )


def _fallback(doc: YamlDocument) -> Fallback | None:
    raw = doc.sub(("spec", "fallback")).plain()
    if raw is None:
        return None
    return Fallback(
        failure_threshold=int(raw["failureThreshold"]),
        replicas=int(raw["replicas"]),
        behavior=cast(FallbackBehavior | Literal["scalingModifiers"] | None, raw.get("behavior")),
    )


def _behavior(doc: YamlDocument) -> Behavior | None:
    path: FieldPath = ("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior")
    raw = doc.get(path)
    if raw is None:
        return None
    return Behavior(
        scale_up=_rules(doc, (*path, "scaleUp")),
        scale_down=_rules(doc, (*path, "scaleDown")),
    )


def _rules(doc: YamlDocument, path: FieldPath) -> ScalingRules | None:
    raw = doc.sub(path).plain()
    if raw is None:
        return None
    window = raw.get("stabilizationWindowSeconds")
    if window is not None and not 0 <= window <= _MAX_STABILIZATION_S:
        raise doc.error(
            (*path, "stabilizationWindowSeconds"),
            f"{window} is out of range",
            valid=f"0 to {_MAX_STABILIZATION_S}",
        )
    select = raw.get("selectPolicy")
    if select is not None and select not in get_args(SelectPolicy):
        raise doc.error(
            (*path, "selectPolicy"), f"unknown selectPolicy {select!r}", valid="Max, Min, Disabled"
        )
    policies = None
    if raw.get("policies") is not None:
        policies = tuple(_policy(doc, (*path, "policies", i), p) for i, p in enumerate(raw["policies"]))
    tolerance = None
    if raw.get("tolerance") is not None:
        tolerance = _quantity_or_zero(doc, (*path, "tolerance"), raw["tolerance"])
    return ScalingRules(
        stabilization_window_s=window,
        select_policy=cast(SelectPolicy | None, select),
        policies=policies,
        tolerance=tolerance,
    )


def _policy(doc: YamlDocument, path: FieldPath, raw: dict[str, Any]) -> ScalingPolicy:
    if raw["type"] not in ("Pods", "Percent"):
        raise doc.error((*path, "type"), f"unknown policy type {raw['type']!r}", valid="Pods, Percent")
    if raw["value"] <= 0:
        raise doc.error((*path, "value"), f"policy value must be > 0, got {raw['value']}")
    if not 0 < raw["periodSeconds"] <= _MAX_POLICY_PERIOD_S:
        raise doc.error(
            (*path, "periodSeconds"),
            f"{raw['periodSeconds']} is out of range",
            valid=f"1 to {_MAX_POLICY_PERIOD_S}",
        )
    return ScalingPolicy(type=raw["type"], value=int(raw["value"]), period_s=int(raw["periodSeconds"]))


def _quantity_or_zero(doc: YamlDocument, path: FieldPath, value: object) -> float:
    try:
        amount = float(parse_quantity(value))
    except QuantityError as exc:
        raise doc.error(path, str(exc), valid=VALID_FORMS) from None
    if amount < 0:
        raise doc.error(path, f"{value!r} must be >= 0", valid="a quantity such as '0.05' or '50m'")
    return amount


# --- annotations -------------------------------------------------------------------------------------


def _annotations(doc: YamlDocument) -> Annotations:
    raw = doc.sub(("metadata", "annotations")).plain() or {}

    def flag(name: str) -> bool:
        return _parse_annotation(doc, name, raw, _parse_bool) or False

    paused_replicas = _parse_annotation(doc, "paused-replicas", raw, _parse_count)
    return Annotations(
        paused=flag("paused"),
        paused_replicas=paused_replicas,
        paused_scale_in=flag("paused-scale-in"),
        paused_scale_out=flag("paused-scale-out"),
        force_activation=flag("force-activation"),
    )


def _parse_annotation(
    doc: YamlDocument, name: str, raw: dict[str, Any], parse: Callable[[str], T]
) -> T | None:
    key = _ANNOTATION_PREFIX + name
    if key not in raw:
        return None
    try:
        return parse(str(raw[key]))
    except ValueError as exc:
        raise doc.error(("metadata", "annotations", key), str(exc)) from None


def _parse_bool(text: str) -> bool:
    try:
        return _BOOL_TEXT[text.strip().lower()]
    except KeyError:
        raise ValueError(f'{text!r} is not a boolean; use "true" or "false"') from None


def _parse_count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f'{text!r} is not a replica count; use a whole number such as "0"')
    return int(text)
