"""A KEDA ScaledObject as the KEDA model sees it (keda.sh/v1alpha1).

Defaults are applied by the KEDA model, not here: None means "unset", which
upstream distinguishes from zero for several fields (idleReplicaCount,
minReplicaCount, fallback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sim.controllers.autoscaling import Behavior

FallbackBehavior = Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]


@dataclass(frozen=True)
class Trigger:
    """One entry of `spec.triggers`.

    `type` is the scaler (`prometheus`, `cpu`, `memory`); `metadata` keeps the
    scaler's string parameters as written (query, threshold, activationThreshold,
    ignoreNullValues, ...). `metric_type` is None when unset (AverageValue).
    """

    type: str
    metadata: dict[str, str]
    name: str | None = None
    metric_type: Literal["AverageValue", "Value", "Utilization"] | None = None
    use_cached_metrics: bool = False


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    replicas: int
    behavior: FallbackBehavior | Literal["scalingModifiers"] | None = None


@dataclass(frozen=True)
class ScalingModifiers:
    formula: str
    target: str | None = None
    activation_target: str | None = None
    metric_type: Literal["AverageValue", "Value"] | None = None


@dataclass(frozen=True)
class Annotations:
    paused: bool = False
    paused_replicas: int | None = None
    paused_scale_in: bool = False
    paused_scale_out: bool = False
    force_activation: bool = False


@dataclass(frozen=True)
class ScaledObjectSpec:
    name: str
    triggers: tuple[Trigger, ...]
    min_replica_count: int | None = None
    max_replica_count: int | None = None
    idle_replica_count: int | None = None
    polling_interval_s: int | None = None
    cooldown_period_s: int | None = None
    initial_cooldown_period_s: int | None = None
    fallback: Fallback | None = None
    behavior: Behavior | None = None
    scaling_modifiers: ScalingModifiers | None = None
    annotations: Annotations = field(default_factory=Annotations)
