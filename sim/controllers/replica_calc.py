"""The HPA's replica calculator: one metric in, one replica proposal out.

This mirrors kube-controller-manager's `replica_calculator.go` and
`metrics/utilization.go` (Kubernetes >= 1.35 semantics, see `sim.controllers.hpa`)
down to the integer milli arithmetic: utilization is an integer percent
(floored), averages are integer divisions, ratios are float64, and results are
`ceil` of a float64. Python integers are exact, which matches upstream's
big.Int fallback when int64 sums would overflow.

Times are absolute seconds. Go's zero `time.Time` is `ZERO_TIME_S`, a finite
instant far in the past rather than -inf, because upstream adds durations to
it (`zero + window` is later than `zero`) and the cases rely on that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

ZERO_TIME_S = -1.0e12
"""Go's zero time.Time: older than any simulated instant, equal to itself."""

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)
MAX_INT64 = 2**63 - 1

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
Hold = Literal["tolerance", "rebalance_flips_direction", "pod_count_flips_direction"]
"""Why a calculation returned the current count instead of its raw result."""


class MetricError(Exception):
    """A metric could not produce a proposal; `reason` is the upstream condition reason."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class Tolerances(NamedTuple):
    """Per-direction tolerance (KEP-4951); a ratio r is held iff 1-down <= r <= 1+up."""

    scale_down: float
    scale_up: float

    def is_within(self, ratio: float) -> bool:
        return 1.0 - self.scale_down <= ratio <= 1.0 + self.scale_up


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One per-pod sample as metrics-server / custom metrics report it."""

    value_milli: int
    timestamp_s: float
    window_s: float


@dataclass(frozen=True, slots=True)
class PodView:
    """What the HPA reads from a pod matching the target's selector.

    `ready` is the Ready condition (None: the pod has no Ready condition);
    `start_s` is status.startTime (None: unset). The cpu fields are what
    metrics-server reports and the pod requests (None: no sample / no request);
    other metrics are passed per metric (see `sim.controllers.hpa.PodSamples`).
    """

    name: str
    phase: PodPhase = "Running"
    ready: bool | None = True
    start_s: float | None = ZERO_TIME_S
    ready_transition_s: float | None = ZERO_TIME_S
    deleting: bool = False
    cpu_request_milli: int | None = None
    cpu_sample: MetricSample | None = None


@dataclass(frozen=True, slots=True)
class PodCounts:
    """All that Object/External metrics read from the pods: enough for the engine's fast path."""

    total: int
    running_ready: int


def running_ready_count(pods: Sequence[PodView] | PodCounts) -> int:
    """Pods in phase Running with Ready=True (deleting pods included, as upstream)."""
    if isinstance(pods, PodCounts):
        return pods.running_ready
    return sum(1 for p in pods if p.phase == "Running" and p.ready is True)


class PodGroups(NamedTuple):
    ready_count: int
    unready: list[str]
    missing: list[str]
    ignored: list[str]


class Proposal(NamedTuple):
    """A replica proposal and the usage upstream writes to status.currentMetrics.

    `total_milli` is the summed Object/External value (None for pod metrics).
    """

    replicas: int
    usage_milli: int
    utilization_pct: int | None
    ratio: float
    ready_pods: int | None
    held: Hold | None
    total_milli: int | None = None


def group_pods(
    pods: Iterable[PodView],
    samples: Mapping[str, MetricSample],
    resource: str,
    *,
    now_s: float,
    cpu_initialization_period_s: float,
    initial_readiness_delay_s: float,
) -> PodGroups:
    """Sort pods into ready / unready / missing / ignored before averaging.

    Readiness is consulted only for the cpu resource, because a warming-up pod's
    CPU burst would otherwise trigger a scale-up it does not need.
    """
    ready_count = 0
    unready: list[str] = []
    missing: list[str] = []
    ignored: list[str] = []
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.append(pod.name)
            continue
        if pod.phase == "Pending":
            unready.append(pod.name)
            continue
        sample = samples.get(pod.name)
        if sample is None:
            missing.append(pod.name)
            continue
        if resource == "cpu":
            start = pod.start_s
            transition = pod.ready_transition_s
            if pod.ready is None or start is None or transition is None:
                is_unready = True
            elif start + cpu_initialization_period_s > now_s:
                is_unready = pod.ready is False or sample.timestamp_s < transition + sample.window_s
            else:
                is_unready = pod.ready is False and start + initial_readiness_delay_s > transition
            if is_unready:
                unready.append(pod.name)
                continue
        ready_count += 1
    return PodGroups(ready_count, unready, missing, ignored)


def _fdiv(a: float, b: float) -> float:
    """float64(a) / float64(b): operands rounded first, IEEE results for a zero divisor."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.inf if a > 0 else -math.inf
    return float(a) / float(b)


def _quo(a: int, b: int) -> int:
    """Go's integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ceil_int32(x: float) -> int:
    """int32(math.Ceil(x)), saturating where Go's conversion is implementation-defined."""
    if math.isnan(x):
        return 0
    if x >= MAX_INT32:
        return MAX_INT32
    if x <= MIN_INT32:
        return MIN_INT32
    return math.ceil(x)


def _utilization_ratio(
    metrics: Mapping[str, int], requests: Mapping[str, int], target_pct: int
) -> tuple[float, int, int]:
    """(ratio, utilization %, raw average milli) over pods that have a request."""
    metrics_total = 0
    requests_total = 0
    entries = 0
    for name, value in metrics.items():
        request = requests.get(name)
        if request is None:
            continue
        metrics_total += value
        requests_total += request
        entries += 1
    if requests_total == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = _quo(metrics_total * 100, requests_total)
    if not MIN_INT32 <= utilization <= MAX_INT32:
        raise MetricError(f"resource utilization {utilization} is outside the int32 range")
    return _fdiv(utilization, target_pct), utilization, _quo(metrics_total, entries)


def _usage_ratio(metrics: Mapping[str, int], target_milli: int) -> tuple[float, int]:
    usage = _quo(sum(metrics.values()), len(metrics))
    return _fdiv(usage, target_milli), usage


def _pod_requests(
    pods: Sequence[PodView], requests: Mapping[str, int | None], resource: str
) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in pods:
        request = requests.get(pod.name)
        if request is None:
            raise MetricError(f"missing request for {resource} in Pod {pod.name}")
        out[pod.name] = request
    return out


def _counted_samples(
    pods: Sequence[PodView],
    samples: Mapping[str, MetricSample],
    resource: str,
    *,
    now_s: float,
    cpu_initialization_period_s: float,
    initial_readiness_delay_s: float,
) -> tuple[PodGroups, dict[str, int]]:
    """The pod groups and the samples that count: ignored and unready pods' samples are dropped."""
    groups = group_pods(
        pods,
        samples,
        resource,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    dropped = set(groups.ignored)
    dropped.update(groups.unready)
    metrics = {name: s.value_milli for name, s in samples.items() if name not in dropped}
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    return groups, metrics


def resource_utilization_replicas(
    current_replicas: int,
    target_pct: int,
    pods: Sequence[PodView],
    samples: Mapping[str, MetricSample],
    requests: Mapping[str, int | None],
    *,
    resource: str,
    tolerances: Tolerances,
    now_s: float,
    cpu_initialization_period_s: float,
    initial_readiness_delay_s: float,
) -> Proposal:
    """GetResourceReplicas: a Utilization target (percent of the pods' requests).

    `requests` maps pod name to its request in the metric's scope (pod total, or
    one container for ContainerResource); `samples` may hold pods that are not
    in `pods` (they are averaged nowhere but counted in a rebalanced length).
    """
    if not samples:
        raise MetricError(
            f"unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    groups, metrics = _counted_samples(
        pods,
        samples,
        resource,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    pod_requests = _pod_requests(pods, requests, resource)
    ratio, utilization, raw = _utilization_ratio(metrics, pod_requests, target_pct)

    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.is_within(ratio):
            return Proposal(current_replicas, raw, utilization, ratio, groups.ready_count, "tolerance")
        replicas = ceil_int32(ratio * groups.ready_count)
        return Proposal(replicas, raw, utilization, ratio, groups.ready_count, None)

    if groups.missing:
        if ratio < 1.0:
            # Missing pods are assumed at max(100 %, target) of their request, so a
            # target above 100 % does not turn the guess into an under-estimate.
            fallback_pct = max(100, target_pct)
            for name in groups.missing:
                metrics[name] = _quo(pod_requests[name] * fallback_pct, 100)
        elif ratio > 1.0:
            for name in groups.missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = 0

    new_ratio, _, _ = _utilization_ratio(metrics, pod_requests, target_pct)
    return _rebalanced(
        current_replicas,
        ratio,
        new_ratio,
        counted=len(metrics),
        tolerances=tolerances,
        usage_milli=raw,
        utilization_pct=utilization,
    )


def _rebalanced(
    current_replicas: int,
    ratio: float,
    new_ratio: float,
    *,
    counted: int,
    tolerances: Tolerances,
    usage_milli: int,
    utilization_pct: int | None,
) -> Proposal:
    if tolerances.is_within(new_ratio):
        return Proposal(current_replicas, usage_milli, utilization_pct, new_ratio, counted, "tolerance")
    if (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return Proposal(
            current_replicas, usage_milli, utilization_pct, new_ratio, counted, "rebalance_flips_direction"
        )
    replicas = ceil_int32(new_ratio * counted)
    if (new_ratio < 1.0 and replicas > current_replicas) or (new_ratio > 1.0 and replicas < current_replicas):
        return Proposal(
            current_replicas, usage_milli, utilization_pct, new_ratio, counted, "pod_count_flips_direction"
        )
    return Proposal(replicas, usage_milli, utilization_pct, new_ratio, counted, None)


def plain_metric_replicas(
    current_replicas: int,
    target_milli: int,
    pods: Sequence[PodView],
    samples: Mapping[str, MetricSample],
    *,
    resource: str,
    tolerances: Tolerances,
    now_s: float,
    cpu_initialization_period_s: float,
    initial_readiness_delay_s: float,
) -> Proposal:
    """calcPlainMetricReplicas: Pods metrics and Resource AverageValue targets.

    `resource` is the resource name for Resource metrics ("cpu" turns on the
    readiness rules) and "" for Pods metrics.
    """
    if not samples:
        if resource:
            raise MetricError(
                f"unable to get metrics for resource {resource}: "
                "no metrics returned from resource metrics API"
            )
        raise MetricError("unable to get metric: no metrics returned from custom metrics API")
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    groups, metrics = _counted_samples(
        pods,
        samples,
        resource,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    ratio, usage = _usage_ratio(metrics, target_milli)

    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.is_within(ratio):
            return Proposal(current_replicas, usage, None, ratio, groups.ready_count, "tolerance")
        return Proposal(ceil_int32(ratio * groups.ready_count), usage, None, ratio, groups.ready_count, None)

    if groups.missing:
        if ratio < 1.0:
            for name in groups.missing:
                metrics[name] = target_milli
        elif ratio > 1.0:
            for name in groups.missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = 0

    new_ratio, _ = _usage_ratio(metrics, target_milli)
    return _rebalanced(
        current_replicas,
        ratio,
        new_ratio,
        counted=len(metrics),
        tolerances=tolerances,
        usage_milli=usage,
        utilization_pct=None,
    )


def external_usage_milli(values_milli: Sequence[int]) -> int:
    """Sum of external samples, capped at MaxInt64 as GetExternalMetricReplicas does."""
    if not values_milli:
        raise MetricError("unable to get external metric: no metrics returned from external metrics API")
    usage = 0
    for value in values_milli:
        if value > 0 and usage > MAX_INT64 - value:
            return MAX_INT64
        usage += value
    return usage


def external_per_pod_usage_milli(values_milli: Sequence[int]) -> int:
    """Sum for AverageValue targets; upstream treats any negative running sum as an overflow."""
    if not values_milli:
        raise MetricError("unable to get external metric: no metrics returned from external metrics API")
    usage = 0
    for value in values_milli:
        usage += value
        if usage < 0 or usage > MAX_INT64:
            return MAX_INT64
    return usage


def value_metric_replicas(
    current_replicas: int,
    target_milli: int,
    usage_milli: int,
    pods: Sequence[PodView] | PodCounts,
    tolerances: Tolerances,
) -> Proposal:
    """Object/External with a Value target: ratio times the Running+Ready pods.

    With current == 0 (reachable only with minReplicas 0) tolerance and pods are
    skipped and the proposal is ceil(ratio).
    """
    ratio = _fdiv(usage_milli, target_milli)
    if current_replicas == 0:
        return Proposal(ceil_int32(ratio), usage_milli, None, ratio, None, None, usage_milli)
    if tolerances.is_within(ratio):
        return Proposal(current_replicas, usage_milli, None, ratio, None, "tolerance", usage_milli)
    total = pods.total if isinstance(pods, PodCounts) else len(pods)
    if total == 0:
        raise MetricError(
            "unable to calculate ready pods: no pods returned by selector while calculating replica count"
        )
    ready = running_ready_count(pods)
    return Proposal(ceil_int32(ratio * ready), usage_milli, None, ratio, ready, None, usage_milli)


def average_value_metric_replicas(
    status_replicas: int, target_milli: int, usage_milli: int, tolerances: Tolerances
) -> Proposal:
    """Object/External with an AverageValue target: ceil(usage / target) unless within tolerance.

    The tolerance test and the reported average use status.replicas (the pods
    that exist), so the proposal does not depend on readiness.
    """
    ratio = _fdiv(usage_milli, float(target_milli) * float(status_replicas))
    held: Hold | None = None
    if tolerances.is_within(ratio):
        replicas, held = status_replicas, "tolerance"
    else:
        replicas = ceil_int32(_fdiv(usage_milli, target_milli))
    average = (
        MAX_INT64
        if float(usage_milli) >= float(MAX_INT64)
        else _ceil_int64(_fdiv(usage_milli, status_replicas))
    )
    return Proposal(replicas, average, None, ratio, None, held, usage_milli)


def _ceil_int64(x: float) -> int:
    if math.isnan(x):
        return 0
    if x >= MAX_INT64:
        return MAX_INT64
    if x <= -MAX_INT64:
        return -MAX_INT64 - 1
    return math.ceil(x)
