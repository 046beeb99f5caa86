"""Every HPA conformance case (taken from the upstream unit tests) against the HPA model.

The case file is read from $CAPSIM_HPA_CASES when set, else tests/data/hpa_cases.json;
its schema is in the shared spec (hpa_keda_spec.md, "cases.json schema"). Cases give
times as ages; they are evaluated at NOW_S so that timestamp = NOW_S - age.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sim.controllers.autoscaling import (
    Behavior,
    HPAControllerConfig,
    HPASpec,
    MetricSpec,
    ScalingPolicy,
    ScalingRules,
)
from sim.controllers.behavior import (
    Recommendation,
    ScaleEvent,
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    generate_scale_down_rules,
    generate_scale_up_rules,
    replicas_change_per_period,
    scale_up_limit,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
    store_scale_event,
)
from sim.controllers.hpa import (
    ExternalValues,
    HPAState,
    MetricInput,
    MetricUnavailable,
    PodSamples,
    reconcile,
)
from sim.controllers.replica_calc import (
    ZERO_TIME_S,
    MetricError,
    MetricSample,
    PodView,
    Proposal,
    Tolerances,
    average_value_metric_replicas,
    external_per_pod_usage_milli,
    external_usage_milli,
    group_pods,
    plain_metric_replicas,
    resource_utilization_replicas,
    value_metric_replicas,
)

NOW_S = 1_000_000.0
CASES_PATH = Path(os.environ.get("CAPSIM_HPA_CASES", Path(__file__).parent / "data" / "hpa_cases.json"))
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text())


def at(age: float | str | None) -> float | None:
    if age is None:
        return None
    if age == "zero":
        return ZERO_TIME_S
    return NOW_S - float(age)


def at_required(age: float | str) -> float:
    t = at(age)
    assert t is not None
    return t


def tolerances(d: dict[str, float]) -> Tolerances:
    return Tolerances(scale_down=d["scale_down"], scale_up=d["scale_up"])


def rules(d: dict[str, Any] | None) -> ScalingRules | None:
    if d is None:
        return None
    policies = d.get("policies")
    return ScalingRules(
        stabilization_window_s=d.get("stabilization_window_s"),
        select_policy=d.get("select_policy"),
        policies=None
        if policies is None
        else tuple(ScalingPolicy(p["type"], p["value"], p["period_s"]) for p in policies),
        tolerance=d.get("tolerance"),
    )


def rules_dict(r: ScalingRules) -> dict[str, Any]:
    return {
        "stabilization_window_s": r.stabilization_window_s,
        "select_policy": r.select_policy,
        "policies": [{"type": p.type, "value": p.value, "period_s": p.period_s} for p in r.policies or ()],
        "tolerance": r.tolerance,
    }


def required_rules(d: dict[str, Any]) -> ScalingRules:
    r = rules(d)
    assert r is not None
    return r


def events(items: list[dict[str, Any]]) -> list[ScaleEvent]:
    return [ScaleEvent(e["change"], at_required(e["age_s"]), e["outdated"]) for e in items]


def recommendations(items: list[dict[str, Any]]) -> list[Recommendation]:
    return [Recommendation(r["replicas"], at_required(r["age_s"])) for r in items]


def pod_view(p: dict[str, Any], **extra: Any) -> PodView:
    return PodView(
        name=p["name"],
        phase=p["phase"],
        ready=p["ready"],
        start_s=at(p.get("start_age_s")),
        ready_transition_s=at(p.get("ready_transition_age_s")),
        deleting=bool(p.get("deleting", False)),
        **extra,
    )


def sample(m: dict[str, Any]) -> MetricSample:
    return MetricSample(m["value_milli"], at_required(m["timestamp_age_s"]), float(m["window_s"]))


# ---- replica_calc ------------------------------------------------------------------------------


def run_replica_calc(inputs: dict[str, Any], expected: dict[str, Any]) -> None:
    fn = inputs["function"]
    pods_in = inputs["pods"]
    if fn == "groupPods":
        pods = [pod_view(p) for p in pods_in]
        samples = {p["name"]: sample(p["metric"]) for p in pods_in if p.get("metric")}
        groups = group_pods(
            pods,
            samples,
            inputs["resource"],
            now_s=NOW_S,
            cpu_initialization_period_s=inputs["cpu_initialization_period_s"],
            initial_readiness_delay_s=inputs["initial_readiness_delay_s"],
        )
        assert groups.ready_count == expected["ready_count"]
        assert sorted(groups.unready) == sorted(expected["unready"])
        assert sorted(groups.missing) == sorted(expected["missing"])
        assert sorted(groups.ignored) == sorted(expected["ignored"])
        return

    tol = tolerances(inputs["tolerance"])
    current = inputs["current_replicas"]
    target = inputs["target"]
    try:
        if fn in ("GetResourceReplicas", "GetMetricReplicas"):
            result = run_pod_based(fn, inputs, tol)
        else:
            values = inputs["metric_values_milli"]
            pods = [pod_view(p) for p in pods_in]
            if fn == "GetObjectMetricReplicas":
                result = value_metric_replicas(current, target, values[0], pods, tol)
            elif fn == "GetExternalMetricReplicas":
                result = value_metric_replicas(current, target, external_usage_milli(values), pods, tol)
            elif fn == "GetObjectPerPodMetricReplicas":
                result = average_value_metric_replicas(current, target, values[0], tol)
            else:
                assert fn == "GetExternalPerPodMetricReplicas", fn
                usage = external_per_pod_usage_milli(values)
                result = average_value_metric_replicas(current, target, usage, tol)
    except MetricError as err:
        assert "error" in expected, f"unexpected error: {err}"
        assert expected["error"] in str(err)
        return
    assert "error" not in expected, f"expected error {expected['error']!r}, got {result}"
    assert result.replicas == expected["replicas"]
    if fn == "GetResourceReplicas":
        assert result.utilization_pct == expected["utilization"]
        assert result.usage_milli == expected["raw_value_milli"]
    else:
        assert result.usage_milli == expected["usage_milli"]


def run_pod_based(fn: str, inputs: dict[str, Any], tol: Tolerances) -> Proposal:
    pods_in = inputs["pods"]
    pods = [pod_view(p) for p in pods_in]
    samples = {p["name"]: sample(p["metric"]) for p in pods_in if p.get("metric")}
    for i, value in enumerate(inputs.get("extra_pod_metrics_milli", [])):
        samples[f"unlisted-pod-{i}"] = MetricSample(value, NOW_S, 60.0)
    resource = inputs["resource"]
    cpu_init = inputs["cpu_initialization_period_s"]
    delay = inputs["initial_readiness_delay_s"]
    # The precomputed grouping in the case must agree with ours.
    timing = {"now_s": NOW_S, "cpu_initialization_period_s": cpu_init, "initial_readiness_delay_s": delay}
    groups = group_pods(pods, samples, resource, **timing)
    for p in pods_in:
        group = p["group"]
        name = p["name"]
        in_group = {
            "unready": name in groups.unready,
            "missing": name in groups.missing,
            "ignored": name in groups.ignored,
        }
        assert in_group.get(group, not any(in_group.values())), (name, group, groups)
    if fn == "GetResourceReplicas":
        requests = {p["name"]: p["request_milli"] for p in pods_in}
        return resource_utilization_replicas(
            inputs["current_replicas"],
            inputs["target"],
            pods,
            samples,
            requests,
            resource=resource,
            tolerances=tol,
            **timing,
        )
    return plain_metric_replicas(
        inputs["current_replicas"],
        inputs["target"],
        pods,
        samples,
        resource=resource,
        tolerances=tol,
        **timing,
    )


# ---- normalize / behavior ----------------------------------------------------------------------


def run_normalize(inputs: dict[str, Any], expected: dict[str, Any]) -> None:
    fn = inputs["function"]
    if fn == "stabilizeRecommendation":
        recs = recommendations(inputs["recommendations"])
        got = stabilize_recommendation(
            recs, inputs["desired_replicas"], NOW_S, inputs["downscale_stabilization_window_s"]
        )
        assert got == expected["replicas"]
        assert len(recs) == expected["recommendations_after_count"]
        assert recs.count(Recommendation(inputs["desired_replicas"], NOW_S)) == 1
        return
    assert fn == "convertDesiredReplicasWithRules", fn
    replicas, condition = convert_desired_replicas_with_rules(
        inputs["current_replicas"],
        inputs["desired_replicas"],
        inputs["min_replicas"],
        inputs["max_replicas"],
        scale_up_limit_factor=inputs["scale_up_limit_factor"],
        scale_up_limit_minimum=inputs["scale_up_limit_minimum"],
    )
    assert (replicas, condition) == (expected["replicas"], expected["condition"])


def run_behavior(inputs: dict[str, Any], expected: dict[str, Any]) -> None:
    fn = inputs["function"]
    if fn == "convertDesiredReplicasWithBehaviorRate":
        replicas_and_reason = convert_desired_replicas_with_behavior_rate(
            inputs["current_replicas"],
            inputs["desired_replicas"],
            inputs["min_replicas"],
            inputs["max_replicas"],
            up_rules=required_rules(inputs["scale_up_rules"]),
            down_rules=required_rules(inputs["scale_down_rules"]),
            up_events=events(inputs["scale_up_events"]),
            down_events=events(inputs["scale_down_events"]),
            now_s=NOW_S,
        )
        assert replicas_and_reason == (expected["replicas"], expected["condition"])
    elif fn == "stabilizeRecommendationWithBehaviors":
        recs = recommendations(inputs["recommendations"])
        got = stabilize_recommendation_with_behaviors(
            recs,
            inputs["current_replicas"],
            inputs["desired_replicas"],
            now_s=NOW_S,
            up_window_s=inputs["scale_up_rules"]["stabilization_window_s"],
            down_window_s=inputs["scale_down_rules"]["stabilization_window_s"],
        )
        assert got == expected["replicas"]
        if "recommendations_after" in expected:
            assert [r.replicas for r in recs] == expected["recommendations_after"]
    elif fn == "calculateScaleUpLimitWithScalingRules":
        got = scale_up_limit(
            inputs["current_replicas"],
            events(inputs["scale_up_events"]),
            events(inputs["scale_down_events"]),
            required_rules(inputs["scale_up_rules"]),
            NOW_S,
        )
        assert got == expected["limit"]
    elif fn == "storeScaleEvent":
        evs = events(inputs["events"])
        assert replicas_change_per_period(60, evs, NOW_S) == expected["replica_change_last_60s_before"]
        if inputs["behavior_present"]:
            store_scale_event(
                required_rules(inputs["rules"]), evs, inputs["prev_replicas"], inputs["new_replicas"], NOW_S
            )
        got_events = [{"change": e.change, "outdated": e.outdated} for e in evs]
        assert got_events == expected["events_after"]
    elif fn == "GenerateHPAScaleUpRules":
        assert rules_dict(generate_scale_up_rules(rules(inputs["rules_in"]))) == expected["rules"]
    else:
        assert fn == "GenerateHPAScaleDownRules", fn
        assert rules_dict(generate_scale_down_rules(rules(inputs["rules_in"]))) == expected["rules"]


# ---- hpa_sync ----------------------------------------------------------------------------------


def sync_metric(
    m: dict[str, Any], index: int, pods_in: list[dict[str, Any]], extra: list[int]
) -> tuple[MetricSpec, MetricInput]:
    if m.get("valid") is False:
        spec = MetricSpec("External", "Value", 1.0, f"invalid-{index}")
        return spec, MetricUnavailable(m["error"], "InvalidMetricSourceType")
    source = m["source"]
    target_type = m["target_type"]
    raw_target = m["target"] if m["target"] is not None else 1
    target = float(raw_target) if target_type == "Utilization" else raw_target / 1000
    if source in ("Object", "External"):
        return MetricSpec(source, target_type, target, f"{source.lower()}-metric"), ExternalValues(
            tuple(m["values_milli"])
        )
    if source == "Pods":
        samples = {
            p["name"]: MetricSample(p["pods_metric_milli"], NOW_S, 60.0)
            for p in pods_in
            if p["pods_metric_milli"] is not None
        }
        return MetricSpec("Pods", target_type, target, "qps"), PodSamples(samples)
    if source == "ContainerResource":
        container = m["container"]
        samples = {
            p["name"]: MetricSample(p["container_usage_milli"][container], NOW_S, 60.0)
            for p in pods_in
            if p.get("container_usage_milli") is not None
        }
        requests = {p["name"]: p["container_request_milli"][container] for p in pods_in}
        spec = MetricSpec("ContainerResource", target_type, target, "cpu", container)
        return spec, PodSamples(samples, requests)
    assert source == "Resource", source
    spec = MetricSpec("Resource", target_type, target, "cpu")
    if not extra:
        return spec, None  # read from PodView.cpu_sample / cpu_request_milli
    samples = {
        p["name"]: MetricSample(p["cpu_usage_milli"], NOW_S, 60.0)
        for p in pods_in
        if p["cpu_usage_milli"] is not None
    }
    for i, value in enumerate(extra):
        samples[f"unlisted-pod-{i}"] = MetricSample(value, NOW_S, 60.0)
    return spec, PodSamples(samples)


def run_hpa_sync(inputs: dict[str, Any], expected: dict[str, Any]) -> None:
    pods_in = inputs["pods"]
    specs_and_inputs = [
        sync_metric(m, i, pods_in, inputs["extra_pod_cpu_usage_milli"])
        for i, m in enumerate(inputs["metrics"])
    ]
    behavior_in = inputs["behavior"]
    behavior = (
        None
        if behavior_in is None
        else Behavior(scale_up=rules(behavior_in["scale_up"]), scale_down=rules(behavior_in["scale_down"]))
    )
    spec = HPASpec(
        min_replicas=inputs["min_replicas"],
        max_replicas=inputs["max_replicas"],
        metrics=tuple(s for s, _ in specs_and_inputs),
        behavior=behavior,
    )
    tol = inputs["tolerance"]
    assert tol["scale_up"] == tol["scale_down"], "cluster-wide tolerance is one value"
    config = HPAControllerConfig(
        tolerance=tol["scale_up"],
        downscale_stabilization_s=inputs["downscale_stabilization_window_s"],
        cpu_initialization_period_s=inputs["cpu_initialization_period_s"],
        initial_readiness_delay_s=inputs["initial_readiness_delay_s"],
        scale_up_limit_factor=inputs["scale_up_limit_factor"],
        scale_up_limit_minimum=inputs["scale_up_limit_minimum"],
    )
    recs = inputs["recommendations"]
    state = HPAState(
        recommendations=None if recs is None else recommendations(recs),
        scale_up_events=events(inputs["scale_up_events"]),
        scale_down_events=events(inputs["scale_down_events"]),
    )
    pods = [
        pod_view(
            p,
            cpu_request_milli=p["request_milli"],
            cpu_sample=None
            if p["cpu_usage_milli"] is None
            else MetricSample(p["cpu_usage_milli"], NOW_S, 60.0),
        )
        for p in pods_in
    ]
    decision = reconcile(
        spec,
        config,
        state,
        now_s=NOW_S,
        spec_replicas=inputs["spec_replicas"],
        status_replicas=inputs["status_replicas"],
        metrics=[given for _, given in specs_and_inputs],
        pods=pods,
    )
    why = decision.explain()
    assert decision.desired_replicas == expected["replicas"], why
    assert (decision.error is not None) == bool(expected.get("error", False)), why
    if "scaling_limited_reason" in expected:
        assert decision.scaling_limited_reason == expected["scaling_limited_reason"], why
    if "able_to_scale_reason" in expected:
        assert decision.able_to_scale_reason == expected["able_to_scale_reason"], why
    if "scaling_active_reason" in expected:
        assert decision.scaling_active_reason == expected["scaling_active_reason"], why
    assert state.recommendations is not None


RUNNERS = {
    "replica_calc": run_replica_calc,
    "normalize": run_normalize,
    "behavior": run_behavior,
    "hpa_sync": run_hpa_sync,
}


def test_case_file_is_complete() -> None:
    assert len(CASES) >= 188
    assert {c["kind"] for c in CASES} <= set(RUNNERS)


@pytest.mark.parametrize("case", CASES, ids=[c["source"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    RUNNERS[case["kind"]](case["inputs"], case["expected"])
