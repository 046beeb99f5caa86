"""The fluid data plane: per-pod queues advanced a whole control interval at a time.

Each step every ready pod receives its share of the step's arrivals. Two
things describe a pod's queue:

- its stationary-equivalent state, which gives the stochastic part of the
  latency: the M/G/k response time (a table look-up, see `queueing`) at the
  utilisation the pod's queue has reached. The state follows the load with
  the queue's own relaxation time (pointwise-stationary fluid flow), so a
  pod just below capacity does not jump to its long-run stationary wait, and
  one just above it does not look better than one just below;
- a deterministic backlog, the count of requests beyond what the pod could
  serve (a Lindley recursion on the counts): requests behind it wait its
  drain time on top, and what would overflow the queue limit or wait past
  the timeout fails.

The stationary state is driven by the traffic rate when the engine passes it
(`rates_per_s`), counts drive served/failed/backlog: the M/G/k formulas
already model Poisson fluctuation, so feeding them the noisy per-step count
would count that noise twice and bias latency upwards at high utilisation.

Pods under random or round-robin balancing are identical except for their
state, so pods with the same CPU and state are kept as one group and computed
once; least-request balancing pools all pods into one queue. Fluid counts are
expectations, so they are floats; conservation (offered = served + failed +
backlog) holds in the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.dataplane import distributions
from sim.dataplane.plane import (
    BACKLOG,
    BUSY_S,
    DEFAULT_GRACE_PERIOD_S,
    FAILED,
    LATENCY_SUM,
    PER_REQUEST_COLUMNS,
    SERVED,
    Counters,
    StepLedger,
    StepOutputs,
    Usage,
    cpu_worker_limit,
    pod_set,
)
from sim.dataplane.queueing import QueueShape, ResponseTable, response_table
from sim.latency import N_BUCKETS
from sim.workload.service import ServiceModel

# Quadrature points over a step's backlog phase: the wait behind a backlog
# changes linearly in time, and this many midpoints resolve it against bucket widths.
BACKLOG_POINTS = 8
_MIDPOINTS = (np.arange(BACKLOG_POINTS) + 0.5) / BACKLOG_POINTS


@dataclass
class _Group:
    """Pods with identical capacity and state (under least-request: the whole pool)."""

    ids: list[int]
    cores: float | None
    table: ResponseTable
    capacity_per_s: float  # per pod
    backlog_cap: float  # per pod: the queue limit, or the backlog that waits the timeout
    backlog: float = 0.0  # per pod, beyond the stationary queue
    in_system: float = 0.0  # per pod, the stationary-equivalent state

    def same_state(self, other: _Group) -> bool:
        return (
            self.cores == other.cores
            and self.backlog == other.backlog
            and abs(self.in_system - other.in_system) <= 1e-9 * (1.0 + self.in_system)
        )


@dataclass
class _Draining:
    """Terminated pods still working off their backlog until the grace period ends."""

    size: int
    table: ResponseTable
    capacity_per_s: float
    backlog: float
    deadline_s: float


class FluidPlane:
    """Deterministic expected-value data plane; see the module docstring for the model."""

    def __init__(
        self,
        model: ServiceModel,
        arrivals: np.ndarray,
        step_s: float,
        grace_period_s: float = DEFAULT_GRACE_PERIOD_S,
        rates_per_s: np.ndarray | None = None,
    ) -> None:
        distributions.scv(model.service_time)  # reject an invalid service time up front
        if model.workers < 1:
            raise ValueError(f"workers must be at least 1, got {model.workers}")
        self.model = model
        self.grace_period_s = grace_period_s
        self._led = StepLedger(arrivals, step_s, model.cpu_per_request_s, model.idle_cpu_millicores / 1000.0)
        if rates_per_s is None:
            self._load = self._led.offered
        else:
            self._load = np.asarray(rates_per_s, dtype=float) * step_s
            if self._load.shape != self._led.offered.shape or not (self._load >= 0.0).all():
                raise ValueError("rates_per_s must be non-negative and align with arrivals")
        self._step = 0
        self._groups: list[_Group] = []
        self._n_ready = 0
        self._draining: list[_Draining] = []
        self._gone: set[int] = set()
        self._ready: tuple[list[int], list[float | None]] = ([], [])

    def set_pods(
        self, step_index: int, pods: Sequence[int], cores: Sequence[float | None] | None = None
    ) -> None:
        wanted_set = pod_set(step_index, self._step, pods, cores, self._gone, self.model.cpu_available_cores)
        self.advance_to(step_index)
        if wanted_set == self._ready:
            return
        self._ready = wanted_set
        pod_cores = wanted_set[1]
        wanted = set(pods)
        old = {pid: g for g in self._groups for pid in g.ids}
        deadline_s = step_index * self._led.step_s + self.grace_period_s
        for g in self._groups:
            leaving = [pid for pid in g.ids if pid not in wanted]
            self._gone.update(leaving)
            if leaving and g.backlog > 0.0:
                self._draining.append(
                    _Draining(len(leaving), g.table, g.capacity_per_s, g.backlog, deadline_s)
                )
        self._n_ready = len(pods)
        self._led.ready_pods[step_index:] = len(pods)
        if not pods:
            self._groups = []
        elif self.model.load_balancing == "least_request":
            self._groups = [self._pool(list(pods), pod_cores, old)]
        else:
            keyed: dict[tuple[float | None, float, float], list[int]] = {}
            for pid, c in zip(pods, pod_cores, strict=True):
                state = (old[pid].backlog, old[pid].in_system) if pid in old else (0.0, 0.0)
                keyed.setdefault((c, *state), []).append(pid)
            self._groups = [self._group(ids, c, b, q) for (c, b, q), ids in keyed.items()]

    def advance_to(self, step_index: int) -> None:
        led = self._led
        if step_index > led.n_steps:
            raise ValueError(f"step {step_index} is past the horizon ({led.n_steps} steps)")
        s0, s1 = self._step, step_index
        if s1 <= s0:
            return
        window = slice(s0, s1)
        n = self._n_ready
        if n == 0:
            led.block[window, FAILED] += led.offered[window]
        else:
            per_pod = led.offered[window] / n
            load_per_pod = self._load[window] / n
            for g in self._groups:
                self._advance_group(g, per_pod, load_per_pod, s0, s1)
            if len(self._groups) > 1:
                self._merge_groups()
        if self._draining:
            self._drain(s0, s1)
        self._step = s1

    def counters(self) -> Counters:
        led = self._led
        last = self._step - 1
        in_flight = 0.0
        if last >= 0:
            in_flight = float(led.block[last, BACKLOG] + led.block[last, BUSY_S] / led.step_s)
        return led.counters(self._step, in_flight)

    def outputs(self) -> StepOutputs:
        return self._led.outputs()

    def usage(self, s0: int, s1: int) -> Usage:
        return self._led.usage(s0, s1)

    def _group(self, ids: list[int], cores: float | None, backlog: float, in_system: float) -> _Group:
        m = self.model
        servers, scale = _servers_and_scale(m, cores)
        ca2 = 1.0 / self._n_ready if m.load_balancing == "round_robin" else 1.0
        shape = QueueShape(
            m.service_time, servers, float(m.workers), scale, ca2, 1, m.queue_limit, m.timeout_s
        )
        capacity = servers / (m.service_time.mean_s * scale)
        return _Group(
            ids, cores, response_table(shape), capacity, self._backlog_cap(capacity), backlog, in_system
        )

    def _pool(self, ids: list[int], cores: list[float | None], old: dict[int, _Group]) -> _Group:
        """Least-request balancing keeps every pod's queue about equally short: one pooled queue.

        Staying pods bring their share of the pool's backlog and queue; new pods bring none.
        """
        m = self.model
        n = len(ids)
        per_pod = [_servers_and_scale(m, c) for c in cores]
        servers = sum(s for s, _ in per_pod)
        scale = sum(sc for _, sc in per_pod) / n
        capacity = sum(s / (m.service_time.mean_s * sc) for s, sc in per_pod) / n
        shape = QueueShape(
            m.service_time, servers, float(m.workers * n), scale, 1.0, n, m.queue_limit * n, m.timeout_s
        )
        staying = [old[pid] for pid in ids if pid in old]
        backlog = sum(g.backlog for g in staying) / n
        in_system = sum(g.in_system for g in staying) / n
        group_cores = cores[0] if len(set(cores)) == 1 else None
        return _Group(
            ids, group_cores, response_table(shape), capacity, self._backlog_cap(capacity), backlog, in_system
        )

    def _backlog_cap(self, capacity_per_s: float) -> float:
        return min(float(self.model.queue_limit), capacity_per_s * self.model.timeout_s)

    def _advance_group(
        self, g: _Group, per_pod: np.ndarray, load_per_pod: np.ndarray, s0: int, s1: int
    ) -> None:
        table = g.table
        g.in_system, rows = table.relax(g.in_system, load_per_pod.tolist(), self._led.step_s)
        capacity_step = g.capacity_per_s * self._led.step_s
        if g.backlog == 0.0 and per_pod.max() <= capacity_step:
            # The pods keep up: every arrival is served, latency straight from the table.
            served = per_pod * len(g.ids)
            self._led.block[s0:s1, :PER_REQUEST_COLUMNS] += table.per_request[rows] * served[:, None]
            return
        for t in range(s0, s1):
            self._backlog_step(g, float(per_pod[t - s0]), rows[t - s0], t, capacity_step)

    def _backlog_step(self, g: _Group, arrived: float, row: int, t: int, capacity_step: float) -> None:
        """One step of a pod that has a backlog or gets more arrivals than it can serve."""
        table = g.table
        size = len(g.ids)
        b0 = g.backlog
        excess = b0 + arrived - capacity_step
        b1 = min(max(excess, 0.0), g.backlog_cap)
        failed = max(excess - g.backlog_cap, 0.0)
        served = b0 + arrived - b1 - failed
        # Share of the step during which a backlog stands and every worker is busy.
        phase = 1.0 if excess >= 0.0 else b0 / (capacity_step - arrived)
        behind = min(capacity_step * phase, served)
        rest = served - behind
        queued = np.clip(b0 + (arrived - capacity_step) * phase * _MIDPOINTS, 0.0, g.backlog_cap)
        waits = queued / g.capacity_per_s
        hist = rest * table.probs[row]
        latency_sum = rest * table.mean_s[row]
        if behind > 0.0:
            hist = hist + behind * table.overload_probs(row, waits)
            latency_sum += behind * table.overload_mean_s(row, waits)
        workers = table.shape.workers / table.shape.pods
        busy = phase * workers + (1.0 - phase) * table.busy_per_pod[row]
        g.backlog = b1
        out = self._led.block[t]
        out[:N_BUCKETS] += hist * size
        out[SERVED] += served * size
        out[LATENCY_SUM] += latency_sum * size
        out[BUSY_S] += busy * size * self._led.step_s
        out[FAILED] += failed * size
        out[BACKLOG] += b1 * size

    def _merge_groups(self) -> None:
        merged: list[_Group] = []
        for g in self._groups:
            twin = next((m for m in merged if m.same_state(g)), None)
            if twin is None:
                merged.append(g)
            else:
                twin.ids.extend(g.ids)
        self._groups = merged

    def _drain(self, s0: int, s1: int) -> None:
        """Terminating pods serve their backlog at full capacity; what is left at the deadline fails."""
        step_s = self._led.step_s
        for t in range(s0, s1):
            out = self._led.block[t]
            start_s = t * step_s
            for d in self._draining:
                served = min(d.backlog, d.capacity_per_s * min(step_s, d.deadline_s - start_s))
                if served > 0.0:
                    waits = (d.backlog - served * _MIDPOINTS) / d.capacity_per_s
                    total = served * d.size
                    out[:N_BUCKETS] += total * d.table.drain_probs(waits)
                    out[SERVED] += total
                    out[LATENCY_SUM] += total * (float(waits.mean()) + d.table.service_mean_s)
                    workers = d.table.shape.workers / d.table.shape.pods
                    out[BUSY_S] += d.size * workers * served / d.capacity_per_s
                    d.backlog -= served
                if d.deadline_s <= start_s + step_s and d.backlog > 0.0:
                    out[FAILED] += d.backlog * d.size
                    d.backlog = 0.0
                out[BACKLOG] += d.backlog * d.size
            self._draining = [d for d in self._draining if d.backlog > 0.0]
            if not self._draining:
                return


def _servers_and_scale(model: ServiceModel, cores: float | None) -> tuple[float, float]:
    """Effective workers and service-time stretch of one pod under its CPU.

    The pod behaves like a queue with min(workers, CPU limit) servers: while
    more requests are in service than the CPU runs at full speed they share it,
    and the number-in-system process is that of the smaller queue. Below one
    effective worker even a lone request runs slower, which is a stretched
    service time.
    """
    limit = cpu_worker_limit(model, cores)
    if limit >= model.workers:
        return float(model.workers), 1.0
    if limit >= 1.0:
        return limit, 1.0
    return 1.0, 1.0 / limit
