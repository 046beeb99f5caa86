"""HPA normalization: stabilization windows, rate limits and scale events.

Two paths, as in `horizontal.go`:

- legacy (`spec.behavior` is nil, KEDA's default): an inclusive downscale
  stabilization window and a per-sync scale-up cap of max(factor*current, minimum);
- behavior: defaulted scaling rules, exclusive up/down stabilization windows,
  and Pods/Percent policies whose periods are measured against the history of
  scale events.

Comparisons follow Go's `time.Before`/`After` on absolute seconds, so a
recommendation or event exactly one window old is outside an exclusive window.
The functions mutate the history lists they are given, as the controller
mutates its in-memory maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

from sim.controllers.autoscaling import ScalingPolicy, ScalingRules
from sim.controllers.replica_calc import MAX_INT32, MIN_INT32

DEFAULT_SCALE_UP_RULES = ScalingRules(
    stabilization_window_s=0,
    select_policy="Max",
    policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)),
)
DEFAULT_SCALE_DOWN_RULES = ScalingRules(
    stabilization_window_s=None,
    select_policy="Max",
    policies=(ScalingPolicy("Percent", 100, 15),),
)


class Recommendation(NamedTuple):
    replicas: int
    timestamp_s: float


@dataclass(slots=True)
class ScaleEvent:
    """One rescale in one direction; `outdated` marks it reusable, it is never deleted."""

    change: int
    timestamp_s: float
    outdated: bool = False


def _merge_rules(given: ScalingRules | None, default: ScalingRules) -> ScalingRules:
    if given is None:
        return default
    return ScalingRules(
        stabilization_window_s=(
            given.stabilization_window_s
            if given.stabilization_window_s is not None
            else default.stabilization_window_s
        ),
        select_policy=given.select_policy if given.select_policy is not None else default.select_policy,
        policies=given.policies if given.policies is not None else default.policies,
        tolerance=given.tolerance if given.tolerance is not None else default.tolerance,
    )


def generate_scale_up_rules(rules: ScalingRules | None) -> ScalingRules:
    """GenerateHPAScaleUpRules: fill unset fields of scaleUp (0 s, Max, 4 pods or 100 % per 15 s)."""
    return _merge_rules(rules, DEFAULT_SCALE_UP_RULES)


def generate_scale_down_rules(rules: ScalingRules | None) -> ScalingRules:
    """GenerateHPAScaleDownRules: fill unset fields of scaleDown (Max, 100 % per 15 s).

    The window stays None: the controller fills it with its
    --horizontal-pod-autoscaler-downscale-stabilization flag (see
    `with_downscale_window`).
    """
    return _merge_rules(rules, DEFAULT_SCALE_DOWN_RULES)


def with_downscale_window(rules: ScalingRules, downscale_stabilization_s: float) -> ScalingRules:
    """maybeInitScaleDownStabilizationWindow: an unset scale-down window takes the controller flag."""
    if rules.stabilization_window_s is not None:
        return rules
    return replace(rules, stabilization_window_s=int(downscale_stabilization_s))


# ---- legacy path -------------------------------------------------------------------------------


def stabilize_recommendation(
    recommendations: list[Recommendation], desired: int, now_s: float, window_s: float
) -> int:
    """Highest recommendation within the (inclusive) window, then store `desired`.

    The new entry overwrites the last one older than the window, so the list
    stays about window / sync-period long.
    """
    cutoff = now_s - window_s
    best = desired
    old_index = -1
    for i, (replicas, timestamp_s) in enumerate(recommendations):
        if timestamp_s < cutoff:
            old_index = i
        elif replicas > best:
            best = replicas
    entry = Recommendation(desired, now_s)
    if old_index >= 0:
        recommendations[old_index] = entry
    else:
        recommendations.append(entry)
    return best


def convert_desired_replicas_with_rules(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    *,
    scale_up_limit_factor: float,
    scale_up_limit_minimum: float,
) -> tuple[int, str]:
    """Clamp to [min, min(max, scale-up cap)]; returns (replicas, ScalingLimited reason)."""
    scale_up_limit = int(max(scale_up_limit_factor * current, scale_up_limit_minimum))
    if max_replicas > scale_up_limit:
        maximum, limiting = scale_up_limit, "ScaleUpLimit"
    else:
        maximum, limiting = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > maximum:
        return maximum, limiting
    return desired, "DesiredWithinRange"


# ---- behavior path -----------------------------------------------------------------------------


def stabilize_recommendation_with_behaviors(
    recommendations: list[Recommendation],
    current: int,
    desired: int,
    *,
    now_s: float,
    up_window_s: float,
    down_window_s: float,
) -> int:
    """Keep `current` unless every recommendation in the window agrees on a move, then store `desired`.

    Up: the lowest recommendation younger than the up window; down: the highest
    younger than the down window. The new entry overwrites the last one older
    than both windows.
    """
    up_cutoff = now_s - up_window_s
    down_cutoff = now_s - down_window_s
    up = desired
    down = desired
    old_index = -1
    for i, (replicas, timestamp_s) in enumerate(recommendations):
        if timestamp_s > up_cutoff and replicas < up:
            up = replicas
        if timestamp_s > down_cutoff and replicas > down:
            down = replicas
        if timestamp_s < up_cutoff and timestamp_s < down_cutoff:
            old_index = i
    stabilized = min(max(current, up), down)
    entry = Recommendation(desired, now_s)
    if old_index >= 0:
        recommendations[old_index] = entry
    else:
        recommendations.append(entry)
    return stabilized


def replicas_change_per_period(period_s: float, events: list[ScaleEvent], now_s: float) -> int:
    """Sum of changes strictly younger than the period (the `outdated` flag plays no part)."""
    cutoff = now_s - period_s
    return sum(e.change for e in events if e.timestamp_s > cutoff)


def scale_up_limit(
    current: int,
    up_events: list[ScaleEvent],
    down_events: list[ScaleEvent],
    rules: ScalingRules,
    now_s: float,
) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now.

    Each policy measures from the replica count at the start of its period,
    undoing the net scale events inside that period.
    """
    select = rules.select_policy
    if select == "Disabled":
        return current
    use_min = select == "Min"
    result = MAX_INT32 if use_min else MIN_INT32
    for policy in rules.policies or ():
        added = replicas_change_per_period(policy.period_s, up_events, now_s)
        deleted = replicas_change_per_period(policy.period_s, down_events, now_s)
        start = current - added + deleted
        if policy.type == "Pods":
            proposed = start + policy.value
        else:
            proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
        result = min(result, proposed) if use_min else max(result, proposed)
    return result


def scale_down_limit(
    current: int,
    up_events: list[ScaleEvent],
    down_events: list[ScaleEvent],
    rules: ScalingRules,
    now_s: float,
) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now.

    "Max" selects the policy allowing the largest change, i.e. the lowest count.
    """
    select = rules.select_policy
    if select == "Disabled":
        return current
    use_max = select == "Min"
    result = MIN_INT32 if use_max else MAX_INT32
    for policy in rules.policies or ():
        added = replicas_change_per_period(policy.period_s, up_events, now_s)
        deleted = replicas_change_per_period(policy.period_s, down_events, now_s)
        start = current + deleted - added
        if policy.type == "Pods":
            proposed = start - policy.value
        else:
            proposed = int(float(start) * (1 - float(policy.value) / 100))
        result = max(result, proposed) if use_max else min(result, proposed)
    return result


def convert_desired_replicas_with_behavior_rate(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    *,
    up_rules: ScalingRules,
    down_rules: ScalingRules,
    up_events: list[ScaleEvent],
    down_events: list[ScaleEvent],
    now_s: float,
) -> tuple[int, str]:
    """Apply the rate limit and min/max; returns (replicas, ScalingLimited reason)."""
    if desired > current:
        limit = max(scale_up_limit(current, up_events, down_events, up_rules, now_s), current)
        if max_replicas > limit:
            maximum, reason = limit, "ScaleUpLimit"
        else:
            maximum, reason = max_replicas, "TooManyReplicas"
        if desired > maximum:
            return maximum, reason
    elif desired < current:
        limit = min(scale_down_limit(current, up_events, down_events, down_rules, now_s), current)
        if min_replicas < limit:
            minimum, reason = limit, "ScaleDownLimit"
        else:
            minimum, reason = min_replicas, "TooFewReplicas"
        if desired < minimum:
            return minimum, reason
    return desired, "DesiredWithinRange"


def store_scale_event(
    rules: ScalingRules, events: list[ScaleEvent], prev_replicas: int, new_replicas: int, now_s: float
) -> None:
    """Record a rescale in its direction's list, reusing the last entry older than the longest period."""
    longest_s = max((p.period_s for p in rules.policies or ()), default=0)
    cutoff = now_s - longest_s
    reuse = -1
    for i, event in enumerate(events):
        if event.timestamp_s < cutoff:
            event.outdated = True
        if event.outdated:
            reuse = i
    entry = ScaleEvent(abs(new_replicas - prev_replicas), now_s)
    if reuse >= 0:
        events[reuse] = entry
    else:
        events.append(entry)
