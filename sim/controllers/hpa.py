"""One reconcile of the Kubernetes HorizontalPodAutoscaler, as kube-controller-manager runs it.

`reconcile` is `reconcileAutoscaler` from `horizontal.go` without the API calls:
the engine passes what the controller would read (scale spec/status replicas,
the metric values the metrics APIs return, the pods matching the selector) and
gets back the replica count it would write, with everything needed to explain
it. The controller's in-memory history (recommendations, scale events) lives in
an `HPAState` the caller keeps per HPA; `reconcile` mutates it. The decision
record (`HPADecision`, `Limit`) is in `sim.controllers.hpa_decision`, the
arithmetic in `replica_calc` and `behavior`.

Decisions taken (spec §5):

- **Kubernetes version.** Current upstream semantics: on a scale-down, pods
  missing a resource sample count at max(100 %, target) of their request
  (upstream since v1.26, PR #112178), and per-HPA tolerances from
  `behavior.scaleUp/scaleDown.tolerance` (KEP-4951) are honoured. That feature
  gate, HPAConfigurableTolerance, is alpha (off) in 1.33-1.34 and beta (on) from
  1.35 per kube_features.go; we model it on. Behavior rules' rate limits
  measure from the period's start count undoing both up and down events (the
  current `calculateScale*Limit*`).
- **Constants.** `HPAControllerConfig()` holds the production flag defaults
  (sync 15 s, tolerance 0.1, downscale stabilization 300 s, cpu initialization
  300 s, readiness delay 30 s, legacy scale-up cap max(2x, 4)). Conformance cases
  pass their own (120 s, 10 s, factor 8) through the same config type.
- **Two paths.** `spec.behavior is None` takes the legacy path (inclusive
  300 s window, per-sync scale-up cap, no scale-down rate limit): KEDA's
  default. Any behavior, even partial, is defaulted field by field
  (`generate_scale_*_rules`) and takes the policy path.
- **Boundaries.** Legacy stabilization keeps recommendations with
  age <= window; behavior windows and policy periods count age < window; an
  event is outdated when age > longest period. Times are absolute float
  seconds compared exactly, as Go compares instants (no clock jitter between
  the reconcile's several time.Now() calls).
- **First reconcile / restart.** A state whose `recommendations` is None has
  never been reconciled: the current count is recorded first (also while
  ScalingDisabled), which blocks scale-down for one window. A fresh
  `HPAState()` models a new HPA or a kube-controller-manager restart.
- **Int32 overflow.** Conversions upstream leaves implementation-defined
  saturate at the int32 bounds instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sim.controllers.autoscaling import HPAControllerConfig, HPASpec, MetricSpec, ScalingRules
from sim.controllers.behavior import (
    Recommendation,
    ScaleEvent,
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    generate_scale_down_rules,
    generate_scale_up_rules,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
    store_scale_event,
    with_downscale_window,
)
from sim.controllers.hpa_decision import HPADecision, Limit, MetricOutcome
from sim.controllers.replica_calc import (
    MetricError,
    MetricSample,
    PodCounts,
    PodView,
    Proposal,
    Tolerances,
    average_value_metric_replicas,
    external_per_pod_usage_milli,
    external_usage_milli,
    plain_metric_replicas,
    resource_utilization_replicas,
    value_metric_replicas,
)

# ---- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalValues:
    """The samples an Object/External metric query returned, in milli-units (External sums them)."""

    values_milli: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PodSamples:
    """Per-pod samples for a Pods metric, a non-cpu or ContainerResource metric, or cpu with extras.

    Keys are pod names; samples for pods not in the pod list are allowed (the
    metrics API can return them). `requests_milli` (pod name -> request in the
    metric's scope, None = no request) is needed for Utilization targets; when
    omitted for cpu, each `PodView.cpu_request_milli` is used.
    """

    samples: dict[str, MetricSample]
    requests_milli: dict[str, int | None] | None = None


@dataclass(frozen=True, slots=True)
class MetricUnavailable:
    """The metric could not be fetched (adapter error, unknown metric, ...)."""

    message: str
    reason: str | None = None


MetricInput = ExternalValues | PodSamples | MetricUnavailable | None
"""Per metric spec, aligned with `HPASpec.metrics`. None: a Resource cpu metric read from `PodView`."""


# ---- state and outputs ---------------------------------------------------------------------------


@dataclass(slots=True)
class HPAState:
    """The controller's in-memory history for one HPA (lost on a controller restart).

    `recommendations` is None until the first reconcile.
    """

    recommendations: list[Recommendation] | None = None
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)


# ---- spec preparation (cached per spec/config object) --------------------------------------------


@dataclass(frozen=True, slots=True)
class _PreparedMetric:
    spec: MetricSpec
    target: int
    failed_reason: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    metrics: tuple[_PreparedMetric, ...]
    tolerances: Tolerances
    up_rules: ScalingRules | None
    down_rules: ScalingRules | None
    up_window_s: float
    down_window_s: float


_FAILED_REASON = {
    "Resource": "FailedGetResourceMetric",
    "ContainerResource": "FailedGetContainerResourceMetric",
    "Pods": "FailedGetPodsMetric",
    "Object": "FailedGetObjectMetric",
    "External": "FailedGetExternalMetric",
}

# reconcile runs every 15 s for every simulated HPA; defaulting the behavior and parsing
# quantities once per (spec, config) object keeps a call near 10 us. Entries hold their
# keys' objects, so an id is never reused while its entry lives.
_prepared_cache: dict[tuple[int, int], tuple[HPASpec, HPAControllerConfig, _Prepared]] = {}


def milli_value(quantity: float) -> int:
    """resource.Quantity.MilliValue(): milli-units rounded up, from the decimal as written."""
    return math.ceil(Decimal(repr(quantity)) * 1000)


def tolerances_for(spec: HPASpec, config: HPAControllerConfig) -> Tolerances:
    """tolerancesForHpa: the cluster tolerance unless a behavior rule sets its own (KEP-4951)."""
    down = up = config.tolerance
    behavior = spec.behavior
    if behavior is not None:
        if behavior.scale_down is not None and behavior.scale_down.tolerance is not None:
            down = behavior.scale_down.tolerance
        if behavior.scale_up is not None and behavior.scale_up.tolerance is not None:
            up = behavior.scale_up.tolerance
    return Tolerances(scale_down=down, scale_up=up)


def _prepare(spec: HPASpec, config: HPAControllerConfig) -> _Prepared:
    key = (id(spec), id(config))
    hit = _prepared_cache.get(key)
    if hit is not None and hit[0] is spec and hit[1] is config:
        return hit[2]
    metrics = []
    for m in spec.metrics:
        if m.target_type == "Utilization":
            if m.target != int(m.target):
                raise ValueError(f"metric {m.name}: averageUtilization must be an integer percent")
            target = int(m.target)
        else:
            target = milli_value(m.target)
        metrics.append(_PreparedMetric(m, target, _FAILED_REASON[m.source]))
    up_rules = down_rules = None
    up_window_s = down_window_s = 0.0
    if spec.behavior is not None:
        up_rules = generate_scale_up_rules(spec.behavior.scale_up)
        down_rules = with_downscale_window(
            generate_scale_down_rules(spec.behavior.scale_down), config.downscale_stabilization_s
        )
        up_window_s = float(up_rules.stabilization_window_s or 0)
        down_window_s = float(down_rules.stabilization_window_s or 0)
    prepared = _Prepared(
        tuple(metrics), tolerances_for(spec, config), up_rules, down_rules, up_window_s, down_window_s
    )
    if len(_prepared_cache) >= 4096:
        _prepared_cache.clear()
    _prepared_cache[key] = (spec, config, prepared)
    return prepared


# ---- per-metric proposals ------------------------------------------------------------------------


def _pod_list(pods: Sequence[PodView] | PodCounts, metric: MetricSpec) -> Sequence[PodView]:
    if isinstance(pods, PodCounts):
        raise ValueError(f"{metric.source} metric {metric.name} needs PodView objects, not PodCounts")
    return pods


def _cpu_from_pods(pods: Sequence[PodView]) -> PodSamples:
    return PodSamples(
        {p.name: p.cpu_sample for p in pods if p.cpu_sample is not None},
        {p.name: p.cpu_request_milli for p in pods},
    )


def _compute_metric(
    pm: _PreparedMetric,
    given: MetricInput,
    *,
    spec_replicas: int,
    status_replicas: int,
    pods: Sequence[PodView] | PodCounts,
    tolerances: Tolerances,
    now_s: float,
    config: HPAControllerConfig,
) -> Proposal:
    m = pm.spec
    if isinstance(given, MetricUnavailable):
        raise MetricError(given.message, given.reason or pm.failed_reason)
    source = m.source
    if source in ("External", "Object"):
        if not isinstance(given, ExternalValues):
            raise ValueError(f"{source} metric {m.name} needs ExternalValues, got {given!r}")
        values = given.values_milli
        if source == "Object":
            if not values:
                raise MetricError(f"unable to get metric {m.name}: no value returned", pm.failed_reason)
            values = values[:1]
        if m.target_type == "AverageValue":
            usage = external_per_pod_usage_milli(values)
            return average_value_metric_replicas(status_replicas, pm.target, usage, tolerances)
        return value_metric_replicas(spec_replicas, pm.target, external_usage_milli(values), pods, tolerances)

    pod_list = _pod_list(pods, m)
    resource = "" if source == "Pods" else m.name
    if given is None:
        if source != "Resource" or m.name != "cpu":
            raise ValueError(f"{source} metric {m.name} needs PodSamples")
        given = _cpu_from_pods(pod_list)
    if not isinstance(given, PodSamples):
        raise ValueError(f"{source} metric {m.name} needs PodSamples, got {given!r}")
    if m.target_type == "Utilization":
        requests = given.requests_milli
        if requests is None:
            if resource != "cpu":
                raise ValueError(f"{source} metric {m.name}: Utilization needs PodSamples.requests_milli")
            requests = {p.name: p.cpu_request_milli for p in pod_list}
        return resource_utilization_replicas(
            spec_replicas,
            pm.target,
            pod_list,
            given.samples,
            requests,
            resource=resource,
            tolerances=tolerances,
            now_s=now_s,
            cpu_initialization_period_s=config.cpu_initialization_period_s,
            initial_readiness_delay_s=config.initial_readiness_delay_s,
        )
    return plain_metric_replicas(
        spec_replicas,
        pm.target,
        pod_list,
        given.samples,
        resource=resource,
        tolerances=tolerances,
        now_s=now_s,
        cpu_initialization_period_s=config.cpu_initialization_period_s,
        initial_readiness_delay_s=config.initial_readiness_delay_s,
    )


# ---- reconcile -----------------------------------------------------------------------------------


def reconcile(
    spec: HPASpec,
    config: HPAControllerConfig,
    state: HPAState,
    *,
    now_s: float,
    spec_replicas: int,
    status_replicas: int,
    metrics: Sequence[MetricInput],
    pods: Sequence[PodView] | PodCounts,
) -> HPADecision:
    """One sync of one HPA at `now_s`; mutates `state` and returns the decision.

    `spec_replicas` is the scale subresource's spec (the "current" count),
    `status_replicas` its status (pods that exist; AverageValue targets divide
    by it). `metrics` is aligned with `spec.metrics`. `pods` are the pods
    matching the target's selector, or just their counts when every metric is
    Object/External.
    """
    current = spec_replicas
    if state.recommendations is None:
        state.recommendations = [Recommendation(current, now_s)]
    min_replicas = spec.min_replicas
    max_replicas = spec.max_replicas

    if current == 0 and min_replicas != 0:
        return HPADecision(
            now_s=now_s,
            current_replicas=0,
            desired_replicas=0,
            rescale=False,
            metrics=(),
            proposal=None,
            stabilized=None,
            limited_by=("scaling_disabled",),
            able_to_scale_reason="SucceededGetScale",
            scaling_active_reason="ScalingDisabled",
            scaling_limited_reason=None,
        )
    if current > max_replicas or current < min_replicas:
        above = current > max_replicas
        clamped = max_replicas if above else min_replicas
        _record_rescale(spec, config, state, current, clamped, now_s=now_s)
        return HPADecision(
            now_s=now_s,
            current_replicas=current,
            desired_replicas=clamped,
            rescale=True,
            metrics=(),
            proposal=None,
            stabilized=None,
            limited_by=("max_replicas" if above else "min_replicas",),
            able_to_scale_reason="SucceededRescale",
            scaling_active_reason=None,
            scaling_limited_reason=None,
        )

    prepared = _prepare(spec, config)
    if len(metrics) != len(prepared.metrics):
        raise ValueError(f"{len(metrics)} metric inputs for {len(prepared.metrics)} metric specs")
    proposal = 0
    chosen: MetricOutcome | None = None
    outcomes: list[MetricOutcome] = []
    first_error: MetricError | None = None
    invalid = 0
    for pm, given in zip(prepared.metrics, metrics, strict=True):
        m = pm.spec
        try:
            p = _compute_metric(
                pm,
                given,
                spec_replicas=spec_replicas,
                status_replicas=status_replicas,
                pods=pods,
                tolerances=prepared.tolerances,
                now_s=now_s,
                config=config,
            )
        except MetricError as err:
            if first_error is None:
                first_error = err if err.reason else MetricError(str(err), pm.failed_reason)
            invalid += 1
            outcomes.append(MetricOutcome(m.name, m.source, m.target_type, pm.target, error=str(err)))
            continue
        outcome = MetricOutcome(
            m.name,
            m.source,
            m.target_type,
            pm.target,
            proposal=p.replicas,
            value_milli=p.usage_milli,
            utilization_pct=p.utilization_pct,
            ratio=p.ratio,
            total_milli=p.total_milli,
            pods_counted=p.ready_pods,
            held=p.held,
        )
        outcomes.append(outcome)
        # Upstream keeps the first maximum, and lets any later valid proposal replace a 0.
        if chosen is None or proposal == 0 or p.replicas > proposal:
            proposal = p.replicas
            chosen = outcome

    seen = tuple(outcomes)
    error = None if first_error is None else _error_text(first_error, invalid, len(seen))
    if first_error is not None and (invalid >= len(seen) or proposal < spec_replicas):
        # All metrics failed, or some failed and the rest point down: upstream refuses to act.
        return HPADecision(
            now_s=now_s,
            current_replicas=current,
            desired_replicas=current,
            rescale=False,
            metrics=seen,
            proposal=None if chosen is None else proposal,
            stabilized=None,
            limited_by=("metric_error" if invalid >= len(seen) else "metric_error_blocks_scale_down",),
            able_to_scale_reason="SucceededGetScale",
            scaling_active_reason=first_error.reason,
            scaling_limited_reason=None,
            error=error,
        )

    limits: list[Limit] = []
    if chosen is not None and chosen.held is not None:
        limits.append("tolerance" if chosen.held == "tolerance" else "missing_or_unready_pods")
    # A negative proposal (negative external values) never drops below 0.
    desired = max(proposal, 0)
    recommendations = state.recommendations
    up_rules = prepared.up_rules
    down_rules = prepared.down_rules
    if up_rules is None or down_rules is None:
        stabilized = stabilize_recommendation(
            recommendations, desired, now_s, config.downscale_stabilization_s
        )
        if stabilized != desired:
            able_reason = "ScaleDownStabilized"
            limits.append("scale_down_stabilization")
        else:
            able_reason = "ReadyForNewScale"
        final, limited_reason = convert_desired_replicas_with_rules(
            current,
            stabilized,
            min_replicas,
            max_replicas,
            scale_up_limit_factor=config.scale_up_limit_factor,
            scale_up_limit_minimum=config.scale_up_limit_minimum,
        )
        if final != stabilized:
            limits.append(_LEGACY_LIMITS[limited_reason])
    else:
        stabilized = stabilize_recommendation_with_behaviors(
            recommendations,
            current,
            desired,
            now_s=now_s,
            up_window_s=prepared.up_window_s,
            down_window_s=prepared.down_window_s,
        )
        if stabilized != desired:
            up = desired >= current
            able_reason = "ScaleUpStabilized" if up else "ScaleDownStabilized"
            limits.append("scale_up_stabilization" if up else "scale_down_stabilization")
        else:
            able_reason = "ReadyForNewScale"
        final, limited_reason = convert_desired_replicas_with_behavior_rate(
            current,
            stabilized,
            min_replicas,
            max_replicas,
            up_rules=up_rules,
            down_rules=down_rules,
            up_events=state.scale_up_events,
            down_events=state.scale_down_events,
            now_s=now_s,
        )
        if final != stabilized:
            limits.append(_behavior_limit(limited_reason, up_rules, down_rules))

    rescale = final != current
    if rescale:
        able_reason = "SucceededRescale"
        _record_rescale(spec, config, state, current, final, now_s=now_s)
    return HPADecision(
        now_s=now_s,
        current_replicas=current,
        desired_replicas=final,
        rescale=rescale,
        metrics=seen,
        proposal=desired,
        stabilized=stabilized,
        limited_by=tuple(limits),
        able_to_scale_reason=able_reason,
        scaling_active_reason="ValidMetricFound",
        scaling_limited_reason=limited_reason,
        error=error,
    )


_LEGACY_LIMITS: dict[str, Limit] = {
    "ScaleUpLimit": "legacy_scale_up_limit",
    "TooManyReplicas": "max_replicas",
    "TooFewReplicas": "min_replicas",
}


def _behavior_limit(reason: str, up_rules: ScalingRules, down_rules: ScalingRules) -> Limit:
    if reason == "ScaleUpLimit":
        return "scale_up_disabled" if up_rules.select_policy == "Disabled" else "scale_up_policy"
    if reason == "ScaleDownLimit":
        return "scale_down_disabled" if down_rules.select_policy == "Disabled" else "scale_down_policy"
    return "max_replicas" if reason == "TooManyReplicas" else "min_replicas"


def _error_text(err: MetricError, invalid: int, total: int) -> str:
    return f"invalid metrics ({invalid} invalid out of {total}), first error is: {err}"


def _record_rescale(
    spec: HPASpec, config: HPAControllerConfig, state: HPAState, prev: int, new: int, *, now_s: float
) -> None:
    """storeScaleEvent: only HPAs with a behavior keep scale events (the legacy path never reads them)."""
    if spec.behavior is None:
        return
    prepared = _prepare(spec, config)
    if new > prev:
        assert prepared.up_rules is not None
        store_scale_event(prepared.up_rules, state.scale_up_events, prev, new, now_s)
    else:
        assert prepared.down_rules is not None
        store_scale_event(prepared.down_rules, state.scale_down_events, prev, new, now_s)
