"""The engine-facing HPA API: sequences of reconciles on production defaults, and explanations."""

from __future__ import annotations

from sim.controllers.autoscaling import (
    Behavior,
    HPAControllerConfig,
    HPASpec,
    MetricSpec,
    ScalingPolicy,
    ScalingRules,
)
from sim.controllers.hpa import (
    ExternalValues,
    HPADecision,
    HPAState,
    MetricUnavailable,
    reconcile,
)
from sim.controllers.replica_calc import MetricSample, PodCounts, PodView

PROD = HPAControllerConfig()
SYNC_S = PROD.sync_period_s
KEDA_METRIC = MetricSpec("External", "AverageValue", 100.0, "s0-prometheus")


def keda_hpa(max_replicas: int = 50, behavior: Behavior | None = None) -> HPASpec:
    """What KEDA generates for one prometheus trigger with threshold 100 (legacy path unless behavior)."""
    return HPASpec(min_replicas=1, max_replicas=max_replicas, metrics=(KEDA_METRIC,), behavior=behavior)


def sync(spec: HPASpec, state: HPAState, now_s: float, replicas: int, metric: float) -> HPADecision:
    counts = PodCounts(total=replicas, running_ready=replicas)
    value = (ExternalValues((round(metric * 1000),)),)
    return reconcile(
        spec,
        PROD,
        state,
        now_s=now_s,
        spec_replicas=replicas,
        status_replicas=replicas,
        metrics=value,
        pods=counts,
    )


def run(
    spec: HPASpec, load: list[tuple[float, float]], start_replicas: int, until_s: float
) -> list[HPADecision]:
    """Reconcile every 15 s, applying each rescale at once; `load` is (from_s, metric) steps."""
    state = HPAState()
    replicas = start_replicas
    decisions = []
    t = 0.0
    while t <= until_s:
        metric = [m for start, m in load if start <= t][-1]
        d = sync(spec, state, t, replicas, metric)
        decisions.append(d)
        replicas = d.desired_replicas
        t += SYNC_S
    return decisions


def test_legacy_scale_up_is_capped_at_twice_current_per_sync() -> None:
    decisions = run(keda_hpa(), [(0.0, 2000.0)], start_replicas=3, until_s=45.0)
    assert [d.desired_replicas for d in decisions] == [6, 12, 20, 20]
    assert decisions[0].proposal == 20
    assert decisions[0].limited_by == ("legacy_scale_up_limit",)
    assert decisions[0].scaling_limited_reason == "ScaleUpLimit"
    assert "per-sync scale-up limit" in decisions[0].explain()
    assert decisions[2].limited_by == ()


def test_legacy_cap_minimum_of_four_pods_from_one() -> None:
    decisions = run(keda_hpa(), [(0.0, 5000.0)], start_replicas=1, until_s=0.0)
    assert decisions[0].desired_replicas == 4  # max(2 x 1, 4)


def test_behavior_default_scale_up_allows_four_pods_or_double_per_15s() -> None:
    spec = keda_hpa(behavior=Behavior())
    decisions = run(spec, [(0.0, 2000.0)], start_replicas=3, until_s=30.0)
    assert [d.desired_replicas for d in decisions] == [7, 14, 20]
    assert decisions[0].limited_by == ("scale_up_policy",)


def test_scale_down_waits_for_the_300s_window_inclusive_on_legacy_path() -> None:
    # Load needs 10 pods until t=600, then 2; the last high recommendation is at t=585.
    load = [(0.0, 1000.0), (600.0, 200.0)]
    decisions = run(keda_hpa(), load, start_replicas=10, until_s=1000.0)
    by_time = {d.now_s: d for d in decisions}
    first_down = min(d.now_s for d in decisions if d.desired_replicas < 10)
    assert first_down == 900.0  # 585 + 300 is still inside the inclusive window
    held = by_time[885.0]
    assert held.desired_replicas == 10 and held.proposal == 2
    assert held.limited_by == ("scale_down_stabilization",)
    assert held.able_to_scale_reason == "ScaleDownStabilized"
    assert by_time[900.0].desired_replicas == 2


def test_scale_down_window_is_exclusive_with_behavior() -> None:
    load = [(0.0, 1000.0), (600.0, 200.0)]
    decisions = run(keda_hpa(behavior=Behavior()), load, start_replicas=10, until_s=1000.0)
    first_down = min(d.now_s for d in decisions if d.desired_replicas < 10)
    assert first_down == 885.0


def test_new_hpa_cannot_scale_down_during_its_first_window() -> None:
    decisions = run(keda_hpa(), [(0.0, 100.0)], start_replicas=8, until_s=330.0)
    assert all(d.desired_replicas == 8 for d in decisions if d.now_s <= 300.0)
    assert decisions[-1].desired_replicas == 1


def test_tolerance_holds_small_deviations() -> None:
    state = HPAState()
    d = sync(keda_hpa(), state, 0.0, 10, 1090.0)  # ratio 1.09 <= 1.1
    assert d.desired_replicas == 10 and not d.rescale
    assert d.limited_by == ("tolerance",)
    assert d.metrics[0].value_milli == 109_000  # status averageValue: per pod
    assert d.metrics[0].total_milli == 1_090_000
    assert "tolerance" in d.explain()
    d = sync(keda_hpa(), state, SYNC_S, 10, 1110.0)
    assert d.desired_replicas == 12


def test_per_hpa_scale_up_tolerance_from_behavior() -> None:
    tight = Behavior(scale_up=ScalingRules(tolerance=0.02))
    d = sync(keda_hpa(behavior=tight), HPAState(), 0.0, 10, 1050.0)
    assert d.desired_replicas == 11
    d = sync(keda_hpa(), HPAState(), 0.0, 10, 1050.0)
    assert d.desired_replicas == 10


def test_rate_limit_policy_is_named_in_the_decision() -> None:
    slow = Behavior(scale_up=ScalingRules(policies=(ScalingPolicy("Pods", 1, 60),)))
    spec = keda_hpa(behavior=slow)
    decisions = run(spec, [(0.0, 1000.0)], start_replicas=2, until_s=75.0)
    assert [d.desired_replicas for d in decisions] == [3, 3, 3, 3, 4, 4]
    assert decisions[1].limited_by == ("scale_up_policy",)
    assert decisions[1].proposal == 10
    assert "scale-up policies" in decisions[1].explain()


def test_disabled_scale_down_never_scales_down() -> None:
    frozen = Behavior(scale_down=ScalingRules(select_policy="Disabled", stabilization_window_s=0))
    d = sync(keda_hpa(behavior=frozen), HPAState(recommendations=[]), 0.0, 10, 100.0)
    assert d.desired_replicas == 10
    assert d.limited_by == ("scale_down_disabled",)


def test_target_at_zero_is_left_to_keda() -> None:
    state = HPAState()
    d = sync(keda_hpa(), state, 0.0, 0, 5000.0)
    assert (d.desired_replicas, d.rescale, d.limited_by) == (0, False, ("scaling_disabled",))
    assert d.scaling_active_reason == "ScalingDisabled"
    assert state.recommendations is not None and state.recommendations[0].replicas == 0


def test_max_replicas_bound_and_outside_range_clamp() -> None:
    d = sync(keda_hpa(max_replicas=5), HPAState(), 0.0, 4, 2000.0)
    assert (d.desired_replicas, d.limited_by) == (5, ("max_replicas",))
    d = sync(keda_hpa(max_replicas=5), HPAState(), 0.0, 9, 2000.0)
    assert (d.desired_replicas, d.proposal, d.limited_by) == (5, None, ("max_replicas",))


def test_invalid_metric_blocks_scale_down_but_not_scale_up() -> None:
    spec = HPASpec(1, 20, (KEDA_METRIC, MetricSpec("External", "AverageValue", 1.0, "s1-broken")))
    broken = MetricUnavailable("scaler error: connection refused")
    counts = PodCounts(6, 6)
    down = reconcile(
        spec,
        PROD,
        HPAState([]),
        now_s=0.0,
        spec_replicas=6,
        status_replicas=6,
        metrics=(ExternalValues((100_000,)), broken),
        pods=counts,
    )
    assert down.desired_replicas == 6
    assert down.limited_by == ("metric_error_blocks_scale_down",)
    assert down.scaling_active_reason == "FailedGetExternalMetric"
    assert down.error is not None and "connection refused" in down.error
    up = reconcile(
        spec,
        PROD,
        HPAState([]),
        now_s=0.0,
        spec_replicas=6,
        status_replicas=6,
        metrics=(ExternalValues((900_000,)), broken),
        pods=counts,
    )
    assert up.desired_replicas == 9 and up.error is not None


def test_value_target_counts_only_running_ready_pods() -> None:
    spec = HPASpec(1, 20, (MetricSpec("External", "Value", 100.0, "s0-prometheus"),))
    pods = [
        PodView("a"),
        PodView("b"),
        PodView("c", ready=False),
        PodView("d", phase="Pending", ready=False),
    ]
    metric = (ExternalValues((300_000,)),)
    via_pods = reconcile(
        spec, PROD, HPAState(), now_s=0.0, spec_replicas=4, status_replicas=4, metrics=metric, pods=pods
    )
    via_counts = reconcile(
        spec,
        PROD,
        HPAState(),
        now_s=0.0,
        spec_replicas=4,
        status_replicas=4,
        metrics=metric,
        pods=PodCounts(4, 2),
    )
    assert via_pods.desired_replicas == via_counts.desired_replicas == 6  # ceil(3 x 2 ready)
    assert via_pods.metrics[0].pods_counted == 2


def test_cpu_utilization_from_pod_views_ignores_warming_pods_on_scale_up() -> None:
    spec = HPASpec(1, 20, (MetricSpec("Resource", "Utilization", 50.0, "cpu"),))
    now = 1000.0
    sample = MetricSample(900, now, 60.0)

    def pod(name: str, started_s: float, ready_s: float) -> PodView:
        return PodView(name, start_s=started_s, ready_transition_s=ready_s, cpu_request_milli=1000,
                       cpu_sample=sample)  # fmt: skip

    warm = [pod("a", 0.0, 10.0), pod("b", 0.0, 10.0)]
    d = reconcile(
        spec, PROD, HPAState(), now_s=now, spec_replicas=2, status_replicas=2, metrics=(None,), pods=warm
    )
    assert d.desired_replicas == 4  # 90 % / 50 % x 2 ready pods
    # Pod c is inside the 300 s cpu initialization period and turned ready less than one
    # sample window ago, so its sample is not trusted: on a scale-up it counts at 0 %.
    starting = pod("c", now - 40.0, now - 30.0)
    d = reconcile(
        spec,
        PROD,
        HPAState(),
        now_s=now,
        spec_replicas=3,
        status_replicas=3,
        metrics=(None,),
        pods=[*warm, starting],
    )
    assert d.metrics[0].utilization_pct == 90
    assert d.desired_replicas == 4  # ceil(60 % / 50 % x 3) = 4, not ceil(90 % / 50 % x 3) = 6
    # Once it has been ready for a full window its sample counts like the others.
    settled = pod("c", now - 100.0, now - 90.0)
    d = reconcile(
        spec,
        PROD,
        HPAState(),
        now_s=now,
        spec_replicas=3,
        status_replicas=3,
        metrics=(None,),
        pods=[*warm, settled],
    )
    assert d.desired_replicas == 6


def test_reconcile_is_deterministic_and_state_carries_history() -> None:
    spec = keda_hpa(behavior=Behavior())
    load = [(0.0, 900.0), (120.0, 300.0), (400.0, 2500.0)]
    first = run(spec, load, start_replicas=2, until_s=900.0)
    second = run(spec, load, start_replicas=2, until_s=900.0)
    assert first == second
