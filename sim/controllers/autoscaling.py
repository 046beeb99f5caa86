"""The autoscaling/v2 HorizontalPodAutoscaler as the controllers see it.

Plain dataclasses shared by the HPA model, the KEDA model (which builds an HPA
from a ScaledObject) and the manifest loader. Times are seconds; quantities
are floats in natural units (cores, bytes, a metric's own unit), and the HPA
model converts to the integer milli-units upstream computes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
MetricSource = Literal["Resource", "ContainerResource", "Pods", "Object", "External"]
TargetType = Literal["Utilization", "AverageValue", "Value"]


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_s: int


@dataclass(frozen=True)
class ScalingRules:
    """One direction of `spec.behavior`; None fields are defaulted by the HPA model."""

    stabilization_window_s: int | None = None
    select_policy: SelectPolicy | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One entry of `spec.metrics`.

    `name` is the external/pods metric name (KEDA: `s0-prometheus`), or the
    resource name (`cpu`, `memory`) for Resource metrics. `target` is the
    percentage for Utilization, else the value in the metric's unit.
    """

    source: MetricSource
    target_type: TargetType
    target: float
    name: str
    container: str | None = None


@dataclass(frozen=True)
class HPASpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None = None


@dataclass(frozen=True)
class HPAControllerConfig:
    """kube-controller-manager flags that shape every HPA (production defaults)."""

    sync_period_s: float = 15.0
    tolerance: float = 0.1
    downscale_stabilization_s: float = 300.0
    cpu_initialization_period_s: float = 300.0
    initial_readiness_delay_s: float = 30.0
    scale_up_limit_factor: float = 2.0
    scale_up_limit_minimum: float = 4.0
