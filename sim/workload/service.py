"""The service model: how one pod turns requests into responses and CPU.

Plain dataclasses: the scenario layer (pydantic) builds them, the data plane
and the engine read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Distribution = Literal["exponential", "lognormal", "gamma", "deterministic"]
LoadBalancing = Literal["random", "round_robin", "least_request"]


@dataclass(frozen=True)
class Dist:
    """A positive random duration given by its mean and coefficient of variation.

    Mean and CV are what people can read off a latency histogram or a startup
    log, so every family is parametrised by them rather than by shape/scale.
    """

    kind: Distribution
    mean_s: float
    cv: float = 1.0


@dataclass(frozen=True)
class ServiceModel:
    """One pod's capacity and cost.

    `workers` requests are served in parallel (gunicorn workers, a thread
    pool); the rest wait in the pod's queue up to `queue_limit` and fail after
    `timeout_s`. CPU: each request needs `cpu_per_request_s` core-seconds; when
    the pod's CPU (its limit, or `cpu_request_millicores` × `burst_factor`
    when it has no limit) cannot supply that at the offered concurrency,
    service times stretch, which is what makes cutting requests or limits cost
    latency.
    """

    workers: int
    service_time: Dist
    cpu_per_request_s: float = 0.0
    idle_cpu_millicores: float = 0.0
    cpu_request_millicores: float | None = None
    cpu_limit_millicores: float | None = None
    memory_request_mib: float | None = None
    memory_limit_mib: float | None = None
    memory_per_inflight_mib: float = 0.0
    idle_memory_mib: float = 0.0
    queue_limit: int = 100
    timeout_s: float = 30.0
    startup: Dist = field(default_factory=lambda: Dist("lognormal", 20.0, 0.3))
    load_balancing: LoadBalancing = "random"
    burst_factor: float = 4.0

    @property
    def cpu_available_cores(self) -> float | None:
        """CPU the pod can burn: its limit, else burst above its request, else unbounded."""
        if self.cpu_limit_millicores is not None:
            return self.cpu_limit_millicores / 1000.0
        if self.cpu_request_millicores is not None:
            return self.cpu_request_millicores * self.burst_factor / 1000.0
        return None
