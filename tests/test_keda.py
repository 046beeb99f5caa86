"""KEDA model over sequences of polls and HPA queries, as the engine drives it.

The conformance file checks single upstream functions; these check what a
user sees over time: when activation happens, when scale-to-zero happens,
how fallback accumulates failures from both loops, and that the formula and
trigger parsing reject what KEDA would reject, with the field named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

import pytest

from sim.controllers.autoscaling import Behavior, ScalingPolicy, ScalingRules
from sim.controllers.formula import FormulaError, compile_formula
from sim.controllers.keda import (
    COMPOSITE_METRIC_NAME,
    KedaConfig,
    KedaState,
    ScaleDecision,
    ScaledObjectError,
    ScalerError,
    compile_scaled_object,
    hpa_spec,
    poll,
    serve_metric,
)
from sim.controllers.scaledobject import Annotations, Fallback, ScaledObjectSpec, ScalingModifiers, Trigger
from sim.controllers.scalers import ScalerResult, milli_quantity, parse_prometheus_metadata, scaler_value

M0 = "s0-prometheus"


def prom(
    threshold: str = "10",
    name: str | None = None,
    metric_type: Literal["AverageValue", "Value", "Utilization"] | None = None,
    cached: bool = False,
    **metadata: str,
) -> Trigger:
    meta = {
        "serverAddress": "http://prom:9090",
        "query": "sum(rate(http_requests_total[2m]))",
        "threshold": threshold,
    }
    meta.update(metadata)
    return Trigger("prometheus", meta, name=name, metric_type=metric_type, use_cached_metrics=cached)


def so(*triggers: Trigger, **fields: Any) -> ScaledObjectSpec:
    return ScaledObjectSpec(name="app", triggers=triggers or (prom(),), **fields)


def run_polls(
    cfg: KedaConfig,
    value_at: Callable[[float], ScalerResult],
    *,
    replicas: int,
    until_s: float,
    state: KedaState | None = None,
) -> tuple[list[tuple[float, int, ScaleDecision]], KedaState]:
    """Poll every pollingInterval from t=0 (KEDA checks immediately, then each interval)."""
    state = state or KedaState(creation_time_s=0.0)
    out = []
    t = 0.0
    while t <= until_s:

        def query(_name: str, t: float = t) -> ScalerResult:
            return value_at(t)

        d = poll(cfg, state, now_s=t, current_replicas=replicas, query=query)
        if d.replicas is not None:
            replicas = d.replicas
        out.append((t, replicas, d))
        t += cfg.polling_interval_s
    return out, state


# ----------------------------------------------------------------------------- activation and cooldown


def test_activates_on_first_poll_strictly_above_activation_threshold() -> None:
    cfg = compile_scaled_object(so(prom("10", activationThreshold="5")))
    values = {0.0: 3.0, 30.0: 5.0, 60.0: 5.1, 90.0: 8.0}
    trace, state = run_polls(cfg, lambda t: values[t], replicas=0, until_s=90)
    assert [r for _, r, _ in trace] == [0, 0, 1, 1]
    _, _, d = trace[2]
    assert d.replicas == 1 and d.active
    assert "s0-prometheus=5.1 > activation 5" in d.reason
    assert "from 0 to 1" in d.reason
    assert (
        trace[1][2].reason.startswith("inactive") and "s0-prometheus=5 <= activation 5" in trace[1][2].reason
    )
    assert state.last_active_time_s == 90.0  # refreshed on every active poll


def test_activation_compares_the_raw_value_even_when_negative() -> None:
    cfg = compile_scaled_object(so(prom("10", activationThreshold="-5")))
    state = KedaState()
    d = poll(cfg, state, now_s=0, current_replicas=0, query=lambda _n: -3.0)
    assert d.active and d.replicas == 1
    assert d.values[M0] == 0.0  # served to the HPA clamped at 0
    assert serve_metric(cfg, state, metric_name=M0, current_replicas=1, query=lambda _n: -3.0) == 0.0


@pytest.mark.parametrize(("cooldown_s", "zero_at_s"), [(300, 390.0), (290, 360.0), (None, 390.0)])
def test_scale_to_zero_at_first_poll_strictly_after_last_active_plus_cooldown(
    cooldown_s: int | None, zero_at_s: float
) -> None:
    cfg = compile_scaled_object(so(cooldown_period_s=cooldown_s))
    trace, _ = run_polls(cfg, lambda t: 50.0 if t <= 60 else 0.0, replicas=3, until_s=600)
    first_zero = next(t for t, r, _ in trace if r == 0)
    assert first_zero == zero_at_s  # last active poll at 60; strict `Before`, quantized to the 30 s polls
    cooling = [d for t, _, d in trace if 60 < t < zero_at_s]
    assert cooling and all(d.active_reason == "ScalerCooldown" for d in cooling)
    assert "inactive since lastActiveTime t=60s" in cooling[0].reason
    deactivation = next(d for t, _, d in trace if t == zero_at_s)
    assert "from 3 to 0" in deactivation.reason and deactivation.active_reason == "ScalerNotActive"


def test_never_active_object_waits_for_initial_cooldown_from_creation() -> None:
    cfg = compile_scaled_object(so(initial_cooldown_period_s=100))
    trace, _ = run_polls(cfg, lambda _t: 0.0, replicas=2, until_s=200, state=KedaState(creation_time_s=0.0))
    assert [(t, r) for t, r, _ in trace] == [(0, 2), (30, 2), (60, 2), (90, 2), (120, 0), (150, 0), (180, 0)]
    assert "creation + initialCooldownPeriod 100s" in trace[4][2].reason


def test_idle_replica_count_goes_to_idle_then_back_to_min() -> None:
    cfg = compile_scaled_object(so(min_replica_count=2, idle_replica_count=0, cooldown_period_s=60))
    assert cfg.hpa.min_replicas == 2
    trace, _ = run_polls(cfg, lambda t: 20.0 if t < 30 or t >= 180 else 0.0, replicas=4, until_s=240)
    replicas = {t: r for t, r, _ in trace}
    assert replicas[0] == 4 and replicas[60] == 4  # 0 + 60 is not before 60
    assert replicas[90] == 0  # idleReplicaCount after cooldown
    assert replicas[150] == 0
    assert replicas[180] == 2  # activation goes straight to minReplicaCount
    assert "(idleReplicaCount)" in next(d for t, _, d in trace if t == 90).reason


def test_inactive_below_min_without_idle_is_raised_to_min() -> None:
    cfg = compile_scaled_object(so(min_replica_count=2))
    d = poll(cfg, KedaState(), now_s=0, current_replicas=1, query=lambda _n: 0.0)
    assert d.replicas == 2 and "below minReplicaCount" in d.reason


def test_cpu_only_object_is_always_active_and_never_scales_to_zero() -> None:
    cpu = Trigger("cpu", {"value": "60"}, metric_type="Utilization")
    cfg = compile_scaled_object(so(cpu, min_replica_count=1))
    trace, _ = run_polls(cfg, lambda _t: pytest.fail("cpu triggers are not queried"), replicas=1, until_s=900)
    assert all(d.active and d.replicas is None for _, _, d in trace)
    assert "only cpu/memory triggers" in trace[-1][2].reason


def test_any_active_trigger_activates_and_reason_names_it() -> None:
    cfg = compile_scaled_object(so(prom("10"), prom("5", activationThreshold="1")))
    readings = {"s0-prometheus": 0.0, "s1-prometheus": 2.0}
    d = poll(cfg, KedaState(), now_s=0, current_replicas=0, query=readings.__getitem__)
    assert d.replicas == 1 and d.active_triggers == ("s1-prometheus",)
    assert "s1-prometheus=2 > activation 1" in d.reason and "s0-prometheus" not in d.reason


def test_paused_replicas_holds_the_target_and_skips_scaling() -> None:
    cfg = compile_scaled_object(so(annotations=Annotations(paused_replicas=3)))
    state = KedaState()
    d = poll(cfg, state, now_s=0, current_replicas=0, query=lambda _n: 100.0)
    assert d.replicas == 3 and d.paused
    d = poll(cfg, state, now_s=30, current_replicas=3, query=lambda _n: 0.0)
    assert d.replicas is None and d.paused and "paused" in d.reason
    assert state.last_active_time_s is None


# ----------------------------------------------------------------------------- fallback


def test_fallback_counts_failures_from_polls_and_hpa_queries() -> None:
    cfg = compile_scaled_object(so(fallback=Fallback(failure_threshold=3, replicas=6), cooldown_period_s=30))
    state = KedaState()
    fail: Callable[[str], ScalerResult] = lambda _n: ScalerError("connection refused")  # noqa: E731

    d = poll(cfg, state, now_s=0, current_replicas=2, query=fail)  # failure 1
    assert d.is_error and not d.fallback_active and d.replicas is None
    assert "never scales to zero" in d.reason
    served = [serve_metric(cfg, state, metric_name=M0, current_replicas=2, query=fail) for _ in range(2)]
    assert all(isinstance(v, ScalerError) for v in served)  # failures 2 and 3: 3 is not > 3
    assert state.health[M0].failures == 3 and not state.fallback_condition

    assert serve_metric(cfg, state, metric_name=M0, current_replicas=2, query=fail) == 60.0  # 4th: 6 x 10
    assert state.fallback_condition
    d = poll(cfg, state, now_s=30, current_replicas=2, query=fail)  # 5th
    assert d.fallback_active and d.active and not d.is_error and d.values[M0] == 60.0
    assert "5 failures > failureThreshold 3" in d.reason
    assert state.last_active_time_s == 30  # a trigger on fallback counts as active

    assert serve_metric(cfg, state, metric_name=M0, current_replicas=6, query=lambda _n: 12.5) == 12.5
    assert state.health[M0].failures == 0 and state.health[M0].status == "Happy"
    assert not state.fallback_condition


def test_error_without_fallback_neither_scales_nor_refreshes_activity() -> None:
    cfg = compile_scaled_object(so())
    state = KedaState(last_active_time_s=0.0)
    d = poll(cfg, state, now_s=1000, current_replicas=3, query=lambda _n: ScalerError("timeout"))
    assert (
        d.replicas is None and d.ready_reason == "TriggerError" and "s0-prometheus error: timeout" in d.reason
    )
    assert serve_metric(
        cfg, state, metric_name=M0, current_replicas=3, query=lambda _n: ScalerError("x")
    ) == (ScalerError("metric:s0-prometheus encountered error"))
    assert state.health == {}  # health is only tracked when a valid fallback exists


def test_fallback_value_target_divides_by_ready_pods() -> None:
    cfg = compile_scaled_object(
        so(prom("10", metric_type="Value"), fallback=Fallback(0, 4, "currentReplicasIfHigher"))
    )
    state = KedaState()
    fail: Callable[[str], ScalerResult] = lambda _n: ScalerError("down")  # noqa: E731
    # max(current 6, fallback 4) = 6 replicas; Value target: 10 * 6 / 3 ready pods = 20
    assert serve_metric(cfg, state, metric_name=M0, current_replicas=6, ready_replicas=3, query=fail) == 20.0
    assert isinstance(
        serve_metric(cfg, state, metric_name=M0, current_replicas=6, ready_replicas=0, query=fail),
        ScalerError,
    )


def test_cached_metrics_are_served_from_the_last_poll_without_querying() -> None:
    cfg = compile_scaled_object(so(prom("10", cached=True)))
    state = KedaState()
    poll(cfg, state, now_s=0, current_replicas=1, query=lambda _n: 42.123456)
    no_query: Callable[[str], ScalerResult] = lambda _n: pytest.fail("queried despite useCachedMetrics")  # noqa: E731
    assert serve_metric(cfg, state, metric_name=M0, current_replicas=1, query=no_query) == 42.123


def test_cached_error_counts_again_on_each_hpa_query() -> None:
    cfg = compile_scaled_object(so(prom("10", cached=True), fallback=Fallback(2, 5)))
    state = KedaState()
    poll(cfg, state, now_s=0, current_replicas=1, query=lambda _n: ScalerError("down"))
    assert state.health[M0].failures == 1
    unused: Callable[[str], ScalerResult] = lambda _n: pytest.fail("cached")  # noqa: E731
    assert isinstance(serve_metric(cfg, state, metric_name=M0, current_replicas=1, query=unused), ScalerError)
    assert serve_metric(cfg, state, metric_name=M0, current_replicas=1, query=unused) == 50.0
    assert state.health[M0].failures == 3


# ----------------------------------------------------------------------------- scalingModifiers


def modifiers_so(formula: str, **kw: object) -> ScaledObjectSpec:
    sm = ScalingModifiers(formula=formula, target="10", activation_target="3")
    return so(prom("1", name="a"), prom("1", name="b"), scaling_modifiers=sm, **kw)


def test_composite_metric_drives_activation_and_the_hpa() -> None:
    cfg = compile_scaled_object(modifiers_so("a + b"))
    assert [(m.name, m.target_type, m.target) for m in cfg.hpa.metrics] == [
        (COMPOSITE_METRIC_NAME, "AverageValue", 10.0)
    ]
    state = KedaState()
    low = {"s0-prometheus": 1.0, "s1-prometheus": 1.5}
    d = poll(cfg, state, now_s=0, current_replicas=0, query=low.__getitem__)
    assert not d.active and d.values[COMPOSITE_METRIC_NAME] == 2.5
    assert "composite-metric=2.5 <= activationTarget 3" in d.reason
    high = {"s0-prometheus": 20.0, "s1-prometheus": 22.0}
    d = poll(cfg, state, now_s=30, current_replicas=0, query=high.__getitem__)
    assert d.active and d.replicas == 1 and d.active_triggers == (COMPOSITE_METRIC_NAME,)
    served = serve_metric(
        cfg, state, metric_name=COMPOSITE_METRIC_NAME, current_replicas=1, query=high.__getitem__
    )
    assert served == 42.0


def test_scaling_modifiers_fallback_substitutes_a_failing_trigger() -> None:
    cfg = compile_scaled_object(modifiers_so("a ?? b", fallback=Fallback(1, 7, "scalingModifiers")))
    state = KedaState()
    readings: Mapping[str, ScalerResult] = {"s0-prometheus": ScalerError("down"), "s1-prometheus": 4.0}

    def ask() -> ScalerResult:
        return serve_metric(
            cfg, state, metric_name=COMPOSITE_METRIC_NAME, current_replicas=1, query=lambda n: readings[n]
        )

    assert isinstance(ask(), ScalerError)  # failure 1 <= threshold 1: the error reaches the HPA
    assert ask() == 4.0  # failure 2: a is nil, b takes over
    readings = {"s0-prometheus": ScalerError("down"), "s1-prometheus": ScalerError("down")}
    assert isinstance(ask(), ScalerError)  # b fails for the first time
    assert ask() == 70.0  # both nil -> fallback.replicas * target = 7 * 10


def test_fallback_with_non_integer_modifiers_target_is_disabled_with_a_warning() -> None:
    spec = so(
        prom("1", name="a"),
        scaling_modifiers=ScalingModifiers(formula="a", target="2.5"),
        fallback=Fallback(0, 3),
    )
    cfg = compile_scaled_object(spec)
    assert not cfg.fallback_enabled and "positive integer" in cfg.warnings[0]


# ----------------------------------------------------------------------------- generated HPA


def test_generated_hpa_metrics_targets_and_behavior() -> None:
    behavior = Behavior(scale_up=ScalingRules(policies=(ScalingPolicy("Pods", 2, 60),)))
    spec = so(
        prom("1.2345"),
        prom("-3", metric_type="Value"),
        Trigger("memory", {"value": "512Mi"}, metric_type="AverageValue"),
        Trigger("cpu", {"value": "70", "containerName": "app"}, metric_type="Utilization"),
        max_replica_count=20,
        behavior=behavior,
        annotations=Annotations(paused_scale_in=True),
    )
    hpa = hpa_spec(spec)
    assert (hpa.min_replicas, hpa.max_replicas) == (1, 20)
    assert [(m.source, m.name, m.target_type, m.target, m.container) for m in hpa.metrics] == [
        ("ContainerResource", "cpu", "Utilization", 70.0, "app"),
        ("External", "s0-prometheus", "AverageValue", 1.234, None),  # %.3f of 1.2345 (binary 1.23449...)
        ("External", "s1-prometheus", "Value", 0.0, None),  # negative threshold renders as 0
        ("Resource", "memory", "AverageValue", 512 * 2**20, None),
    ]
    assert hpa.behavior is not None and hpa.behavior.scale_up == behavior.scale_up
    assert hpa.behavior.scale_down == ScalingRules(select_policy="Disabled")


def test_default_hpa_has_no_behavior_so_the_legacy_path_applies() -> None:
    hpa = hpa_spec(so())
    assert hpa.behavior is None and (hpa.min_replicas, hpa.max_replicas) == (1, 100)
    out = hpa_spec(so(annotations=Annotations(paused_scale_out=True)))
    assert out.behavior == Behavior(scale_up=ScalingRules(select_policy="Disabled"))


def test_modifiers_keep_resource_metrics_next_to_the_composite() -> None:
    cpu = Trigger("cpu", {"value": "80"}, metric_type="Utilization")
    spec = so(
        prom("1", name="a"),
        cpu,
        scaling_modifiers=ScalingModifiers(formula="a * 2", target="5.5", metric_type="Value"),
    )
    assert [(m.name, m.target_type, m.target) for m in hpa_spec(spec).metrics] == [
        ("cpu", "Utilization", 80.0),
        (COMPOSITE_METRIC_NAME, "Value", 5.5),
    ]


# ----------------------------------------------------------------------------- validation


CPU50 = Trigger("cpu", {"value": "50"}, metric_type="Utilization")
T0 = "spec.triggers[0]"
SM = "spec.advanced.scalingModifiers"
REJECTED = [
    (so(Trigger("prometheus", {"serverAddress": "x", "query": "up"})), f"{T0}.metadata.threshold",
     "missing required parameter 'threshold'"),
    (so(prom(".5")), f"{T0}.metadata.threshold", "not a number"),
    (so(prom("1", ignoreNullValues="maybe")), f"{T0}.metadata.ignoreNullValues", "boolean"),
    (so(prom("1", metric_type="Utilization")), f"{T0}.metricType", "unsupported for external"),
    (so(Trigger("kafka", {})), f"{T0}.type", "not supported"),
    (so(prom(name="x"), prom(name="x")), "spec.triggers[1].name", "defined multiple times"),
    (so(CPU50), "spec.minReplicaCount", "only cpu/memory triggers"),
    (so(Trigger("cpu", {"value": "50"}), min_replica_count=1), f"{T0}.metricType", "unknown metric type"),
    (so(replace(CPU50, metadata={"value": "50", "type": "Utilization"}), min_replica_count=1),
     f"{T0}.metadata.type", "removed"),
    (so(Trigger("memory", {"value": "lots"}, metric_type="AverageValue"), min_replica_count=1),
     f"{T0}.metadata.value", "not a Kubernetes quantity"),
    (so(replace(CPU50, use_cached_metrics=True), min_replica_count=1), f"{T0}.useCachedMetrics",
     "not supported"),
    (so(min_replica_count=2, idle_replica_count=2), "spec.idleReplicaCount", "must be less than"),
    (so(polling_interval_s=0), "spec.pollingInterval", "must be positive"),
    (so(fallback=Fallback(-1, 2)), "spec.fallback", "must both be >= 0"),
    (so(fallback=Fallback(1, 2, "scalingModifiers")), "spec.fallback.behavior", "requires scalingModifiers"),
    (modifiers_so("a + c"), f"{SM}.formula", "uses c"),
    (modifiers_so("a[0]"), f"{SM}.formula", "'[' at position 1"),
    (modifiers_so("a && b"), f"{SM}.formula", "needs a bool"),
    (so(prom(name="a"), scaling_modifiers=ScalingModifiers(formula="a")), f"{SM}.target", "target is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "message"), REJECTED)
def test_rejected_scaled_objects_name_the_field(spec: ScaledObjectSpec, field: str, message: str) -> None:
    with pytest.raises(ScaledObjectError) as info:
        compile_scaled_object(spec)
    assert info.value.field == field
    assert message in info.value.message
    assert info.value.valid


def test_prometheus_metadata_defaults() -> None:
    meta = parse_prometheus_metadata({"serverAddress": "u", "query": "q", "threshold": " 5 "}, "m")
    assert (meta.threshold, meta.activation_threshold, meta.ignore_null_values) == (5.0, 0.0, True)
    meta = parse_prometheus_metadata(
        {"serverAddress": "u", "query": "q", "threshold": "5", "ignoreNullValues": "F"}, "m"
    )
    assert meta.ignore_null_values is False


def test_scaler_value_rules_shared_with_the_internal_evaluator() -> None:
    assert scaler_value([], True) == 0.0
    assert isinstance(scaler_value([], False), ScalerError)
    assert isinstance(scaler_value([1.0, 2.0], True, "q"), ScalerError)
    assert scaler_value([float("nan")], True) == 0.0
    assert isinstance(scaler_value([float("inf")], False), ScalerError)
    assert scaler_value([-2.5], True) == -2.5  # raw; zeroed only when served
    assert milli_quantity(-2.5) == 0.0 and milli_quantity(2.0004) == 2.0 and milli_quantity(7.0) == 7.0


# ----------------------------------------------------------------------------- formula


@pytest.mark.parametrize(
    ("formula", "env", "expected"),
    [
        ("a + b * c", {"a": 1.0, "b": 2.0, "c": 3.0}, 7.0),
        ("(a + b) * c", {"a": 1.0, "b": 2.0, "c": 3.0}, 9.0),
        ("-a ** 2", {"a": 3.0}, -9.0),
        ("2 ** 3 ** 2", {}, 512.0),
        ("7 / 2", {}, 3.5),
        ("7 % 3", {}, 1),
        ("-7 % 3", {}, -1),
        ("a / 0", {"a": 1.0}, float("inf")),
        ("a ?? b", {"a": None, "b": 4.0}, 4.0),
        ("a ?? b ?? 9", {"a": None, "b": None}, 9),
        ("a + b ?? 1", {"a": 1.0, "b": None}, 2.0),
        ("a > 5 ? a : b", {"a": 6.0, "b": 1.0}, 6.0),
        ("a > 5 ? 1 : a > 2 ? 2 : 3", {"a": 3.0}, 2),
        ("a ?: 5", {"a": None}, 5),
        ("1 < a < 3", {"a": 2.0}, True),
        ("!(a == b) && a != nil", {"a": 1.0, "b": 2.0}, True),
        ("not (a < 1) and a < 2 or false", {"a": 1.5}, True),
        ("max(a, b, 3) + min(a, b)", {"a": 1.0, "b": 2.0}, 4.0),
        ("abs(a) + ceil(1.2) + floor(1.8) + round(2.5) + round(-2.5)", {"a": -1.0}, 1 + 2 + 1 + 3 - 3),
        ("float(3) / int(2.9)", {}, 1.5),
        ("1_000 + 0x10 + 1e3", {}, 2016.0),
        ("missing ?? 2", {}, 2),
    ],
)
def test_formula_follows_expr_semantics(formula: str, env: dict[str, float | None], expected: object) -> None:
    assert compile_formula(formula).evaluate(env) == expected


@pytest.mark.parametrize(
    ("formula", "env", "message"),
    [
        ("a ?? b + c", {}, "cannot be mixed"),
        ("a % 2", {"a": 5.0}, "% needs integers"),
        ("a + b", {"a": 1.0, "b": None}, "float64 + nil"),
        ("a ? 1 : 2", {"a": 1.0}, "needs a bool"),
        ('a + "x"', {}, """unsupported syntax '"x"' at position 4"""),
        ("__import__('os')", {}, "unsupported function"),
        ("a.b", {}, "unsupported syntax '.' at position 1"),
        ("let x = 1; x", {}, "unsupported syntax 'let'"),
        ("a in b", {}, "unsupported syntax 'in'"),
        ("(a + b", {}, "expected ')'"),
        ("a +", {}, "end of formula"),
        ("", {}, "empty"),
        ("a b", {}, "unexpected token 'b' at position 2"),
        ("1 % 0", {}, "divide by zero"),
    ],
)
def test_formula_errors_name_the_problem(formula: str, env: dict[str, float | None], message: str) -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula(formula).evaluate(env)
    assert message in str(info.value)
