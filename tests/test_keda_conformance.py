"""Every case of keda_cases.json (taken from KEDA's own tests and docs) against our KEDA model.

The file is read from $CAPSIM_KEDA_CASES when set, else tests/data/keda_cases.json.
Each checker consumes every `expected` key it knows and fails on any it does
not, so a new field in the case file cannot pass unchecked.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.controllers.fallback import (
    MetricHealth,
    fallback_condition,
    fallback_valid,
    metric_with_fallback,
)
from sim.controllers.formula import compile_formula
from sim.controllers.keda import (
    KedaState,
    ScaledObjectError,
    TriggerActivity,
    check_replica_bounds,
    compile_scaled_object,
    hpa_spec,
    idle_or_min_replica_count,
    poll,
    request_scale,
    scaled_object_activity,
    serve_metric,
)
from sim.controllers.modifiers import COMPOSITE_METRIC_NAME, composite_value, trigger_value
from sim.controllers.scaledobject import (
    Annotations,
    Fallback,
    ScaledObjectSpec,
    ScalingModifiers,
    Trigger,
)
from sim.controllers.scalers import ScalerError, milli_quantity, parse_prometheus_response

CASES_PATH = Path(os.environ.get("CAPSIM_KEDA_CASES") or Path(__file__).parent / "data" / "keda_cases.json")
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text())
NOW_S = 1_000_000.0

Expected = dict[str, Any]


def _time(age_s: float | str | None) -> float | None:
    """Ages to timestamps; Go's zero time is older than anything."""
    if age_s is None:
        return None
    if age_s == "zero":
        return -math.inf
    return NOW_S - float(age_s)


def _fallback(raw: dict[str, Any] | None) -> Fallback | None:
    if raw is None:
        return None
    return Fallback(raw["failure_threshold"], raw["replicas"], raw["behavior"] or None)


def _health(raw: dict[str, Any]) -> MetricHealth:
    return MetricHealth(raw["number_of_failures"], raw["status"])


def _prometheus_trigger(threshold: float = 10.0, **meta: str) -> Trigger:
    metadata = {
        "serverAddress": "http://prometheus:9090",
        "query": "sum(rate(x[1m]))",
        "threshold": str(threshold),
    }
    metadata.update(meta)
    return Trigger(type="prometheus", metadata=metadata)


class _Checked(dict[str, Any]):
    """The expected dict; records which keys a checker read."""

    def __init__(self, data: Expected) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def check_executor(inp: dict[str, Any], exp: _Checked) -> None:
    cur = inp["current_replicas"]
    so = ScaledObjectSpec(
        name="so",
        triggers=(),
        min_replica_count=inp["min_replica_count"],
        max_replica_count=inp["max_replica_count"],
        idle_replica_count=inp["idle_replica_count"],
        cooldown_period_s=inp["cooldown_period_s"],
        initial_cooldown_period_s=inp["initial_cooldown_period_s"],
        fallback=_fallback(inp["fallback"]),
        annotations=Annotations(**inp["annotations"]),
    )
    creation = _time(inp["creation_age_s"])
    assert creation is not None
    state = KedaState(creation_time_s=creation, last_active_time_s=_time(inp["last_active_age_s"]))
    d = request_scale(
        so, state, now_s=NOW_S, current_replicas=cur, is_active=inp["is_active"], is_error=inp["is_error"]
    )
    assert (cur if d.replicas is None else d.replicas) == exp["replicas"], d.reason
    assert (d.replicas is not None) == exp["scaled"], d.reason
    if "active_condition" in exp:
        assert d.active_condition is exp["active_condition"]
    if "active_condition_true" in exp:
        assert (d.active_condition is True) is exp["active_condition_true"]
    if "active_reason" in exp:
        assert d.active_reason == exp["active_reason"]
    if "ready_condition" in exp:
        assert d.ready_condition == exp["ready_condition"]
    if "ready_reason" in exp:
        assert d.ready_reason == exp["ready_reason"]
    if "paused_condition" in exp:
        assert d.paused is exp["paused_condition"]
    if "last_active_time_set" in exp:
        assert d.last_active_time_set is exp["last_active_time_set"]
        assert (state.last_active_time_s == NOW_S) is exp["last_active_time_set"]
    if "event" in exp:
        assert f"from {cur} to {exp['replicas']}" in exp["event"]
        assert f"from {cur} to {exp['replicas']}" in d.reason


def check_idle_or_min(inp: dict[str, Any], exp: _Checked) -> None:
    got = idle_or_min_replica_count(inp["idle_replica_count"], inp["min_replica_count"])
    assert got == (exp["is_idle"], exp["replicas"])


def check_hpa_builder(inp: dict[str, Any], exp: _Checked) -> None:
    so = ScaledObjectSpec(
        name="so",
        triggers=(_prometheus_trigger(),),
        min_replica_count=inp["min_replica_count"],
        max_replica_count=inp["max_replica_count"],
    )
    hpa = hpa_spec(so)
    assert (hpa.min_replicas, hpa.max_replicas) == (exp["hpa_min_replicas"], exp["hpa_max_replicas"])


def check_validation(inp: dict[str, Any], exp: _Checked) -> None:
    counts = (inp["min_replica_count"], inp["max_replica_count"], inp["idle_replica_count"])
    so = ScaledObjectSpec(
        name="so",
        triggers=(_prometheus_trigger(),),
        min_replica_count=counts[0],
        max_replica_count=counts[1],
        idle_replica_count=counts[2],
    )
    if exp["valid"]:
        check_replica_bounds(*counts)
        compile_scaled_object(so)
        assert exp["error_contains"] is None
        return
    with pytest.raises(ScaledObjectError, match=exp["error_contains"]):
        check_replica_bounds(*counts)
    with pytest.raises(ScaledObjectError, match=exp["error_contains"]):
        compile_scaled_object(so)


def check_fallback(inp: dict[str, Any], exp: _Checked) -> None:
    name = "s0-prometheus"
    fb = _fallback(inp["fallback"])
    health = {k: _health(v) for k, v in inp["other_metrics_health"].items()}
    if inp["health_before"] is not None:
        health[name] = _health(inp["health_before"])
    enabled = fb is not None and fallback_valid(fb, None)
    sr = inp["scaler_result"]
    result = ScalerError("scaler failed") if sr["error"] else milli_quantity(sr["value"])
    target = inp["metric_target"]
    out = metric_with_fallback(
        result,
        health,
        metric_name=name,
        fallback=fb,
        enabled=enabled,
        target_type=target["type"],
        target_value=target["value"],
        current_replicas=inp["current_replicas"],
        ready_replicas=inp["ready_replicas"],
    )
    assert (out.error is not None) is exp["error"]
    assert (out.value is None) is exp["error"]
    if "metric_value" in exp:
        assert out.value == exp["metric_value"]
    if "fallback_active" in exp:
        assert out.fallback_active is exp["fallback_active"]
    if "implied_hpa_replicas" in exp:
        assert out.value is not None
        per_pod = out.value if target["type"] == "AverageValue" else out.value * inp["ready_replicas"]
        assert math.ceil(per_pod / target["value"]) == exp["implied_hpa_replicas"]
        assert out.replicas == exp["implied_hpa_replicas"]
    if "health_after" in exp:
        assert health[name] == _health(exp["health_after"])
    if "fallback_condition_true" in exp:
        condition = enabled and fb is not None and fallback_condition(health, fb.failure_threshold)
        assert condition is exp["fallback_condition_true"]


def check_scaling_modifiers(inp: dict[str, Any], exp: _Checked) -> None:
    fb = _fallback(inp["fallback"])
    health = {k: _health(v) for k, v in inp["health"].items()}
    if inp.get("function") == "scalingModifierTriggerValue":
        got = trigger_value(inp["metric_value"], inp["metric_name"], fb, health)
        assert got == exp["trigger_value"]
        return
    formula = compile_formula(inp["formula"])
    value = composite_value(
        formula,
        inp["metrics"],
        metric_to_trigger=inp["metric_to_trigger"],
        fallback=fb,
        health=health,
        target=inp["target"],
    )
    assert not isinstance(value, ScalerError), value
    if "composite_value_milli" in exp:
        assert round(value * 1000) == exp["composite_value_milli"]
    if "composite_value" in exp:
        assert value == exp["composite_value"]
    if "implied_hpa_replicas" in exp:
        assert math.ceil(value / float(inp["target"])) == exp["implied_hpa_replicas"]
    assert exp["composite_metric_name"] == COMPOSITE_METRIC_NAME
    if inp["target"] is not None:
        # The generated HPA scales on exactly that one metric.
        triggers = tuple(
            Trigger("prometheus", _prometheus_trigger().metadata, name=n)
            for n in inp["metric_to_trigger"].values()
        )
        so = ScaledObjectSpec(
            name="so",
            triggers=triggers,
            fallback=fb,
            scaling_modifiers=ScalingModifiers(formula=inp["formula"], target=inp["target"]),
        )
        assert [m.name for m in hpa_spec(so).metrics] == [exp["composite_metric_name"]]


def check_prometheus(inp: dict[str, Any], exp: _Checked) -> None:
    got = parse_prometheus_response(inp["http_status"], inp["body"], inp["ignore_null_values"])
    assert isinstance(got, ScalerError) is exp["error"], got
    if not exp["error"]:
        assert got == exp["value"]
    else:
        assert exp["value"] == -1.0  # upstream's sentinel alongside the error; nothing to serve


def check_state(inp: dict[str, Any], exp: _Checked) -> None:
    assert not inp["uses_modifiers"], "the composite-metric path is covered by tests/test_keda.py"
    triggers = [TriggerActivity(t["metric_name"], t["is_active"], t["error"]) for t in inp["triggers"]]
    n_cpu = inp["cpu_memory_trigger_count"]
    got = scaled_object_activity(triggers, len(triggers) + n_cpu, n_cpu)
    assert got == (exp["is_active"], exp["is_error"], exp["active_triggers"])


def check_activation(inp: dict[str, Any], exp: _Checked) -> None:
    so = ScaledObjectSpec(
        name="so",
        triggers=(
            Trigger(
                "prometheus",
                _prometheus_trigger(
                    inp["threshold"], activationThreshold=str(inp["activation_threshold"])
                ).metadata,
                metric_type=inp["metric_type"],
            ),
        ),
        min_replica_count=inp["min_replica_count"],
    )
    cfg = compile_scaled_object(so)
    state = KedaState(creation_time_s=NOW_S - 3600)
    cur = inp["current_replicas"]
    d = poll(cfg, state, now_s=NOW_S, current_replicas=cur, query=lambda _name: inp["metric_value"])
    assert d.active is exp["is_active"], d.reason
    assert (cur if d.replicas is None else d.replicas) == exp["replicas"], d.reason
    if "hpa_would_want_if_running" in exp:
        served = serve_metric(
            cfg, state, metric_name="s0-prometheus", current_replicas=1, query=lambda _n: 40.0
        )
        assert isinstance(served, float)
        (metric,) = cfg.hpa.metrics
        assert metric.target_type == "AverageValue"
        assert math.ceil(served / metric.target) == exp["hpa_would_want_if_running"]


CHECKERS: dict[str, Callable[[dict[str, Any], _Checked], None]] = {
    "keda_executor": check_executor,
    "keda_idle_or_min": check_idle_or_min,
    "keda_hpa_builder": check_hpa_builder,
    "keda_validation": check_validation,
    "keda_fallback": check_fallback,
    "keda_scaling_modifiers": check_scaling_modifiers,
    "keda_prometheus": check_prometheus,
    "keda_state": check_state,
    "keda_activation": check_activation,
}


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['kind']}:{case['source'].rsplit('::', 1)[-1]}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_keda_case(case: dict[str, Any]) -> None:
    checker = CHECKERS[case["kind"]]
    expected = _Checked(case["expected"])
    checker(case["inputs"], expected)
    unchecked = set(case["expected"]) - expected.read
    assert not unchecked, f"expected fields not checked: {sorted(unchecked)}"


def test_case_file_is_complete() -> None:
    assert len(CASES) >= 57
    assert {c["kind"] for c in CASES} <= CHECKERS.keys()
