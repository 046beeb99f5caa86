"""KEDA scalers as the simulator needs them: trigger metadata and value rules.

Only the parts that change a replica count are modelled: which parameters a
trigger must have (so a manifest that KEDA would reject is rejected here, with
the field named), and how a Prometheus answer becomes the number KEDA serves
(pkg/scalers/prometheus_scaler.go). The simulator evaluates the PromQL itself
over simulated series; `scaler_value` is the post-processing both that path
and a real Prometheus response share.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sim.controllers.scaledobject import Trigger
from sim.k8s.quantity import VALID_FORMS, QuantityError, parse_quantity

ExternalTargetType = Literal["AverageValue", "Value"]
ResourceTargetType = Literal["Utilization", "AverageValue"]


class ScaledObjectError(ValueError):
    """A ScaledObject KEDA would reject; `field` is the path inside the object, `valid` what would be."""

    def __init__(self, message: str, field: str | None = None, valid: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field
        self.valid = valid


@dataclass(frozen=True)
class ScalerError:
    """A failed scaler query. A value, not an exception: errors are routine input to fallback."""

    message: str


ScalerResult = float | ScalerError


@dataclass(frozen=True)
class PrometheusMetadata:
    server_address: str
    query: str
    threshold: float
    activation_threshold: float = 0.0
    ignore_null_values: bool = True
    namespace: str | None = None


@dataclass(frozen=True)
class ResourceMetadata:
    """A cpu/memory trigger: `value` is a percentage for Utilization, cores or bytes for AverageValue."""

    resource: Literal["cpu", "memory"]
    target_type: ResourceTargetType
    value: float
    container: str | None = None


SUPPORTED_SCALERS = ("prometheus", "cpu", "memory")

# Go's encoding/json number grammar: what KEDA's typed config accepts for a float parameter.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def milli_quantity(value: float) -> float:
    """The value as KEDA emits it: `%.3f` rounded, and NaN, ±Inf or negative values as 0.

    The result is an exact multiple of 0.001 in decimal, so `round(v * 1000)`
    recovers the integer milli-units the HPA computes in.
    """
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0.0
    return round(value, 3)  # correctly rounded like Go's %.3f (both work on the exact binary value)


def _param(metadata: Mapping[str, str], name: str) -> str | None:
    """KEDA trims parameters and treats an empty one as absent."""
    raw = metadata.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    return raw or None


def _float_param(metadata: Mapping[str, str], name: str, field: str, default: float | None) -> float:
    raw = _param(metadata, name)
    if raw is None:
        if default is None:
            raise ScaledObjectError(f"missing required parameter {name!r}", f"{field}.{name}", "a number")
        return default
    if not _JSON_NUMBER.fullmatch(raw):
        raise ScaledObjectError(
            f"unable to set param {name!r} value {raw!r}: not a number",
            f"{field}.{name}",
            "a plain number such as 10, 0.5 or 1e3",
        )
    return float(raw)


def _bool_param(metadata: Mapping[str, str], name: str, field: str, default: bool) -> bool:
    raw = _param(metadata, name)
    if raw is None:
        return default
    if raw in _GO_TRUE:
        return True
    if raw in _GO_FALSE:
        return False
    raise ScaledObjectError(f"unable to parse boolean value {raw!r}", f"{field}.{name}", "true or false")


def _required_str(metadata: Mapping[str, str], name: str, field: str, valid: str) -> str:
    raw = _param(metadata, name)
    if raw is None:
        raise ScaledObjectError(f"missing required parameter {name!r}", f"{field}.{name}", valid)
    return raw


def parse_prometheus_metadata(metadata: Mapping[str, str], field: str) -> PrometheusMetadata:
    """`field` is the path of the metadata map, e.g. `spec.triggers[0].metadata`."""
    return PrometheusMetadata(
        server_address=_required_str(metadata, "serverAddress", field, "the Prometheus URL"),
        query=_required_str(metadata, "query", field, "a PromQL query returning one series"),
        threshold=_float_param(metadata, "threshold", field, None),
        activation_threshold=_float_param(metadata, "activationThreshold", field, 0.0),
        ignore_null_values=_bool_param(metadata, "ignoreNullValues", field, True),
        namespace=_param(metadata, "namespace"),
    )


def external_target_type(trigger: Trigger, field: str) -> ExternalTargetType:
    """GetMetricTargetType: AverageValue unless Value is asked; Utilization is for cpu/memory only."""
    if trigger.metric_type is None or trigger.metric_type == "AverageValue":
        return "AverageValue"
    if trigger.metric_type == "Value":
        return "Value"
    raise ScaledObjectError(
        f"'{trigger.metric_type}' metric type is unsupported for external metrics",
        f"{field}.metricType",
        "Value or AverageValue",
    )


def parse_resource_metadata(trigger: Trigger, field: str) -> ResourceMetadata:
    resource: Literal["cpu", "memory"] = "cpu" if trigger.type == "cpu" else "memory"
    if _param(trigger.metadata, "type") is not None:
        raise ScaledObjectError(
            "the 'type' setting was removed in KEDA 2.18",
            f"{field}.metadata.type",
            "metricType on the trigger",
        )
    if trigger.metric_type not in ("Utilization", "AverageValue"):
        raise ScaledObjectError(
            f"unknown metric type: {trigger.metric_type or '(unset)'}",
            f"{field}.metricType",
            "Utilization or AverageValue",
        )
    raw = _required_str(trigger.metadata, "value", f"{field}.metadata", "the target, e.g. 60 or 500m")
    if trigger.metric_type == "Utilization":
        if not re.fullmatch(r"[+-]?[0-9]+", raw) or not -(2**31) <= int(raw) < 2**31:
            raise ScaledObjectError(
                f"utilization {raw!r} is not an integer", f"{field}.metadata.value", "an integer percentage"
            )
        value = float(int(raw))
    else:
        try:
            value = float(parse_quantity(raw))
        except QuantityError as exc:
            raise ScaledObjectError(str(exc), f"{field}.metadata.value", VALID_FORMS) from None
    return ResourceMetadata(
        resource=resource,
        target_type=trigger.metric_type,
        value=value,
        container=_param(trigger.metadata, "containerName"),
    )


def scaler_value(samples: Sequence[float], ignore_null_values: bool, query: str = "") -> ScalerResult:
    """The raw value KEDA's Prometheus scaler takes from an instant-vector result.

    `samples` holds one value per returned series. Empty -> 0 (or an error
    without ignoreNullValues); more than one series -> error; NaN/±Inf -> 0
    (or an error). The value may still be negative: activation compares it
    raw, and `milli_quantity` zeroes it only when it is served.
    """
    if not samples:
        if ignore_null_values:
            return 0.0
        return ScalerError("prometheus metrics 'prometheus' target may be lost, the result is empty")
    if len(samples) > 1:
        return ScalerError(f"prometheus query {query} returned multiple elements")
    v = float(samples[0])
    if math.isnan(v) or math.isinf(v):
        if ignore_null_values:
            return 0.0
        return ScalerError(f"prometheus query returns {v}")
    return v


def _go_parse_float(text: str) -> float | None:
    if text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_prometheus_response(
    http_status: int, body: str, ignore_null_values: bool, query: str = ""
) -> ScalerResult:
    """ExecutePromQuery after the HTTP call: status and JSON body -> value or error."""
    if not 200 <= http_status <= 299:
        return ScalerError(f"prometheus query api returned error. status: {http_status}")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        return ScalerError(f"invalid JSON from prometheus: {exc}")
    data = doc.get("data") if isinstance(doc, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        result = []
    if len(result) > 1:
        return scaler_value([0.0] * len(result), ignore_null_values, query)
    if not result:
        return scaler_value([], ignore_null_values, query)
    pair = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(pair, list) or not pair:
        return scaler_value([], ignore_null_values, query)
    if len(pair) < 2:
        return ScalerError(f"prometheus query {query} didn't return enough values")
    raw = pair[1]
    if raw is None:
        value = -1.0  # upstream leaves its -1 sentinel in place for a null sample
    elif not isinstance(raw, str):
        return ScalerError(f"prometheus sample value {raw!r} is not a string")
    else:
        parsed = _go_parse_float(raw)
        if parsed is None:
            return ScalerError(f"error converting prometheus value {raw!r}")
        value = parsed
    return scaler_value([value], ignore_null_values, query)
