"""What the engine sees of a data plane, whichever fidelity runs it.

The engine owns time: it hands a plane the arrival counts of the whole
horizon up front (so both fidelities see the same traffic), tells it which
pods are ready at each control event (`set_pods`), lets it run up to the next
one (`advance_to`) and reads cumulative counters as Prometheus would scrape
them. Steps are half-open, [i·step_s, (i+1)·step_s), and control events fall
on step boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sim.latency import N_BUCKETS
from sim.workload.service import ServiceModel

# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_PERIOD_S = 30.0


@dataclass(frozen=True)
class Counters:
    """Cumulative totals at `time_s`, shaped like the series a Prometheus scrape returns.

    `latency_bucket` is cumulative over `le` as `*_bucket` series are (its last
    entry, +Inf, equals `served_total`). Failed requests have no latency
    observation: they show in `failed_total` only, as a 5xx-coded counter would.
    """

    time_s: float
    served_total: float
    failed_total: float
    latency_bucket: np.ndarray
    latency_sum_s: float
    cpu_seconds_total: float
    in_flight: float


@dataclass(frozen=True)
class StepOutputs:
    """Per-step series over the horizon (steps not yet simulated are zero).

    `latency_counts` holds served requests per bucket, not cumulative, +Inf
    last; `backlog` is requests arrived and neither served nor failed at the
    end of the step; `busy_workers` is the step's mean number of busy workers
    over all pods; `ready_pods` is the count during the step.
    """

    step_s: float
    offered: np.ndarray
    served: np.ndarray
    failed: np.ndarray
    backlog: np.ndarray
    latency_counts: np.ndarray
    latency_sum_s: np.ndarray
    cpu_core_s: np.ndarray
    busy_workers: np.ndarray
    ready_pods: np.ndarray


@dataclass(frozen=True)
class Usage:
    """Totals over a few steps: what metrics-server and the memory metric read at a sync."""

    cpu_core_s: float
    busy_workers_mean: float
    ready_pods_mean: float


class DataPlane(Protocol):
    """The contract both fidelities keep (see the module docstring for the time model)."""

    def set_pods(
        self, step_index: int, pods: Sequence[int], cores: Sequence[float | None] | None = None
    ) -> None:
        """Make `pods` (stable ids) the ready set from the start of `step_index` on.

        `cores` gives the CPU each pod can burn (None: unbounded); by default the
        service model's `cpu_available_cores`. Pods that leave the set drain
        their queue for the grace period, then fail what is left.
        """
        ...

    def advance_to(self, step_index: int) -> None:
        """Simulate up to the start of `step_index` with the current pods."""
        ...

    def counters(self) -> Counters:
        """Cumulative totals at the current time."""
        ...

    def outputs(self) -> StepOutputs:
        """Per-step series over the whole horizon."""
        ...

    def usage(self, s0: int, s1: int) -> Usage:
        """CPU and concurrency over steps [s0, s1), without copying the per-step arrays."""
        ...


# Columns of a StepLedger's block: the latency buckets, then the per-step scalars.
SERVED = N_BUCKETS
LATENCY_SUM = N_BUCKETS + 1
BUSY_S = N_BUCKETS + 2  # worker-seconds
FAILED = N_BUCKETS + 3
BACKLOG = N_BUCKETS + 4
# What a served request adds, in column order: its bucket, 1 served, its latency, its worker time.
PER_REQUEST_COLUMNS = N_BUCKETS + 3


class StepLedger:
    """Per-step results both planes fill, and the running totals behind `counters()`.

    Everything lives in one [steps, columns] block so that a step's whole
    contribution is one row addition and a scrape one column sum; totals are
    brought up to date only when asked for, so a scrape costs the steps since
    the previous one. CPU is not stored: it is served × CPU per request plus
    idle usage of the ready pods, the same rule for both planes.
    """

    def __init__(
        self, arrivals: np.ndarray, step_s: float, cpu_per_request_s: float, idle_cores: float
    ) -> None:
        arrivals = np.asarray(arrivals)
        if arrivals.ndim != 1 or not np.isfinite(arrivals).all() or (arrivals < 0).any():
            raise ValueError("arrivals must be a 1-d array of non-negative counts per step")
        if step_s <= 0.0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        n = len(arrivals)
        self.step_s = step_s
        self.offered = arrivals.astype(float)
        self.block = np.zeros((n, BACKLOG + 1))
        self.ready_pods = np.zeros(n)
        self._cpu_per_request_s = cpu_per_request_s
        self._idle_core_s = idle_cores * step_s
        self._totals_step = 0
        self._totals = np.zeros(BACKLOG + 1)
        self._ready_total = 0.0

    @property
    def n_steps(self) -> int:
        return len(self.offered)

    def counters(self, step: int, in_flight: float) -> Counters:
        if step > self._totals_step:
            self._totals += self.block[self._totals_step : step].sum(axis=0)
            self._ready_total += float(self.ready_pods[self._totals_step : step].sum())
            self._totals_step = step
        t = self._totals
        served = float(t[SERVED])
        return Counters(
            time_s=step * self.step_s,
            served_total=served,
            failed_total=float(t[FAILED]),
            latency_bucket=np.cumsum(t[:N_BUCKETS]),
            latency_sum_s=float(t[LATENCY_SUM]),
            cpu_seconds_total=served * self._cpu_per_request_s + self._ready_total * self._idle_core_s,
            in_flight=in_flight,
        )

    def usage(self, s0: int, s1: int) -> Usage:
        if s1 <= s0:
            return Usage(0.0, 0.0, 0.0)
        served = float(self.block[s0:s1, SERVED].sum())
        pod_steps = float(self.ready_pods[s0:s1].sum())
        return Usage(
            cpu_core_s=served * self._cpu_per_request_s + pod_steps * self._idle_core_s,
            busy_workers_mean=float(self.block[s0:s1, BUSY_S].sum()) / self.step_s / (s1 - s0),
            ready_pods_mean=pod_steps / (s1 - s0),
        )

    def outputs(self) -> StepOutputs:
        b = self.block
        served = b[:, SERVED].copy()
        return StepOutputs(
            step_s=self.step_s,
            offered=self.offered.copy(),
            served=served,
            failed=b[:, FAILED].copy(),
            backlog=b[:, BACKLOG].copy(),
            latency_counts=b[:, :N_BUCKETS].copy(),
            latency_sum_s=b[:, LATENCY_SUM].copy(),
            cpu_core_s=served * self._cpu_per_request_s + self.ready_pods * self._idle_core_s,
            busy_workers=b[:, BUSY_S] / self.step_s,
            ready_pods=self.ready_pods.copy(),
        )


def pod_set(
    step_index: int,
    current_step: int,
    pods: Sequence[int],
    cores: Sequence[float | None] | None,
    gone: set[int],
    default_cores: float | None,
) -> tuple[list[int], list[float | None]]:
    """The ready set a plane is asked to switch to, with each pod's cores; rejects what it cannot take.

    Duplicate ids, misaligned or non-positive cores, a step behind the plane, or
    a terminated pod coming back are caller errors, the same for both planes.
    """
    if step_index < current_step:
        raise ValueError(f"set_pods at step {step_index} is behind the plane (step {current_step})")
    if len(set(pods)) != len(pods):
        raise ValueError(f"pod ids must be unique, got {list(pods)}")
    if cores is not None and len(cores) != len(pods):
        raise ValueError(f"cores must align with pods: {len(cores)} values for {len(pods)} pods")
    if cores is not None and any(c is not None and c <= 0.0 for c in cores):
        raise ValueError(f"pod cores must be positive or None, got {list(cores)}")
    reused = gone.intersection(pods)
    if reused:
        raise ValueError(f"pod ids {sorted(reused)} were terminated and cannot become ready again")
    return list(pods), list(cores) if cores is not None else [default_cores] * len(pods)


# CPU left for requests never drops below this, so a pod whose idle usage eats
# its whole limit crawls instead of dividing by zero.
MIN_REQUEST_CORES = 0.001


def cpu_worker_limit(model: ServiceModel, cores: float | None) -> float:
    """How many requests the pod's CPU keeps running at full speed (inf when CPU never binds).

    Each request burns `cpu_per_request_s` over its `mean_s` of service, so
    the cores left after idle usage sustain cores·mean/cpu such requests;
    beyond that the busy workers share the CPU and every one of them slows
    down. Both fidelities apply this one rule.
    """
    if cores is None or model.cpu_per_request_s <= 0.0:
        return math.inf
    request_cores = max(cores - model.idle_cpu_millicores / 1000.0, MIN_REQUEST_CORES)
    return request_cores * model.service_time.mean_s / model.cpu_per_request_s
