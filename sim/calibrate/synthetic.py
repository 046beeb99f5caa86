"""Recorded-looking histories made by the simulator, with known ground truth.

Calibration and backtest are tested (and demonstrated) on histories whose
true parameters are known. The simulator makes them: the engine decides
replicas (fluid mode for days of traffic, per-request mode where request-level
latency matters), and this module turns the per-step results into the series
real exporters would have produced, scraped every `scrape_s`:

- the app's request counter and, where asked, its latency histogram in one of
  the conventions `querysets` knows (handler time: the service time of each
  served request, drawn per request; or response time, wait included);
- ingress-nginx's counter and response-time histogram;
- cAdvisor's CPU counter, kube-state-metrics' replica gauges and the HPA's
  desired replicas;
- per-pod `kube_pod_created` / `kube_pod_status_ready_time`, with start-up
  delays drawn from the service model (the engine rounds start-ups to its
  step, which would blur the ground truth).

Response-time histograms and their `_sum` come from re-running the
per-request data plane over the run's arrivals with the run's ready-pod
timeline, because a run's summary keeps latency buckets but not their sums.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from sim.calibrate.openmetrics import Family, RawSeries
from sim.dataplane import distributions
from sim.dataplane.plane import StepOutputs
from sim.dataplane.requests import RequestsPlane
from sim.latency import BUCKETS_S
from sim.workload.service import ServiceModel

AppConvention = Literal["prometheus_client", "otel_http", "otel_http_legacy_ms"]

# Bucket bounds (seconds) each exporter uses by default; all are among BUCKETS_S.
PROMETHEUS_CLIENT_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
OTEL_BOUNDS = PROMETHEUS_CLIENT_BOUNDS
OTEL_LEGACY_BOUNDS = (0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
NGINX_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Segment:
    """Per-step results of one stretch of simulated time (its length a multiple of the scrape interval).

    Histograms are optional: `response_counts` (steps × the simulator's
    buckets, +Inf last) with `response_sum_s`, and whether to derive a
    handler-time histogram from the served counts.
    """

    step_s: float
    offered: np.ndarray
    served: np.ndarray
    failed: np.ndarray
    cpu_core_s: np.ndarray
    replicas_desired: np.ndarray
    replicas_ready: np.ndarray
    response_counts: np.ndarray | None = None
    response_sum_s: np.ndarray | None = None
    handler: bool = False


def replay_plane(
    model: ServiceModel,
    arrivals: np.ndarray,
    ready: np.ndarray,
    step_s: float,
    rng: np.random.Generator,
) -> StepOutputs:
    """The per-request plane over given arrivals with the ready-pod count following `ready` per step.

    Pods join as new ids and leave newest first, as a ReplicaSet scales down.
    """
    plane = RequestsPlane(
        model,
        np.asarray(arrivals, dtype=np.int64),
        step_s,
        service_rng=np.random.default_rng(rng.integers(2**63)),
        routing_rng=np.random.default_rng(rng.integers(2**63)),
    )
    pods: list[int] = []
    next_id = 0
    current = -1
    for step, count in enumerate(np.asarray(ready, dtype=np.int64).tolist()):
        if count == current:
            continue
        while len(pods) < count:
            pods.append(next_id)
            next_id += 1
        del pods[count:]
        plane.set_pods(step, list(pods))
        current = count
    plane.advance_to(len(arrivals))
    return plane.outputs()


@dataclass
class _Pod:
    name: str
    created_s: float
    ready_s: float | None
    deleted_s: float | None = None


@dataclass
class Recording:
    """Series of one service accumulated segment by segment; `families()` gives what to write.

    `epoch_s` is the wall-clock time of the first segment's start. Counters
    continue across segments; pods created in one segment live on in the next.
    """

    service: str
    namespace: str
    epoch_s: float
    model: ServiceModel
    rng: np.random.Generator
    app: AppConvention = "prometheus_client"
    app_histogram: Literal["handler", "response"] | None = "handler"
    ingress: bool = False
    deployment: str | None = None
    hpa: str | None = None
    scrape_s: float = 30.0
    pod_scrape_s: float = 60.0
    cpu_noise_cv: float = 0.05
    _t: float = 0.0
    _times: list[np.ndarray] = field(default_factory=list)
    _inc: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _gauges: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _hist: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    _pods: list[_Pod] = field(default_factory=list)

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.service

    def append(self, seg: Segment) -> None:
        per = round(self.scrape_s / seg.step_s)
        if per < 1 or abs(per * seg.step_s - self.scrape_s) > 1e-9 or len(seg.offered) % per:
            raise ValueError(
                "a segment must be a whole number of scrape intervals, each a whole number of steps"
            )
        n = len(seg.offered) // per
        t0 = self.epoch_s + self._t
        times = t0 + self.scrape_s * np.arange(1, n + 1)

        def scrape_sum(x: np.ndarray) -> np.ndarray:
            return np.asarray(x, dtype=float).reshape(n, per, *np.shape(x)[1:]).sum(axis=1)

        def at_scrape(x: np.ndarray) -> np.ndarray:
            """A gauge as scraped at the end of each interval: the state from that instant on."""
            return np.asarray(x, dtype=float)[np.minimum(np.arange(1, n + 1) * per, len(x) - 1)]

        self._times.append(times)
        cpu = scrape_sum(seg.cpu_core_s)
        if self.cpu_noise_cv > 0:
            sigma2 = np.log1p(self.cpu_noise_cv**2)
            cpu = cpu * self.rng.lognormal(-sigma2 / 2, np.sqrt(sigma2), n)
        for key, inc in (
            ("served", scrape_sum(seg.served)),
            ("failed", scrape_sum(seg.failed)),
            ("cpu", cpu),
        ):
            self._inc.setdefault(key, []).append(inc)
        for key, g in (
            ("desired", at_scrape(seg.replicas_desired)),
            ("ready", at_scrape(seg.replicas_ready)),
        ):
            self._gauges.setdefault(key, []).append(g)
        if seg.response_counts is not None:
            assert seg.response_sum_s is not None
            self._hist.setdefault("response", []).append(
                (times, scrape_sum(seg.response_counts), scrape_sum(seg.response_sum_s))
            )
        if seg.handler:
            self._hist.setdefault("handler", []).append((times, *self._handler(scrape_sum(seg.served))))
        self._pod_events(seg, t0)
        self._t += n * self.scrape_s

    def _handler(self, served: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Handler time of each served request is its service time: draw them, bucket them per interval."""
        counts = np.rint(served).astype(np.int64)
        draws = distributions.sample(self.model.service_time, self.rng, int(counts.sum()))
        interval = np.repeat(np.arange(len(counts)), counts)
        bucket = np.searchsorted(BUCKETS_S, draws, side="left")
        hist = np.bincount(
            interval * (len(BUCKETS_S) + 1) + bucket, minlength=len(counts) * (len(BUCKETS_S) + 1)
        )
        sums = np.bincount(interval, weights=draws, minlength=len(counts))
        return hist.reshape(len(counts), len(BUCKETS_S) + 1).astype(float), sums

    def _pod_events(self, seg: Segment, t0: float) -> None:
        desired = np.asarray(seg.replicas_desired, dtype=np.int64)
        live = [p for p in self._pods if p.deleted_s is None]
        if not self._pods:
            for _ in range(int(desired[0])):
                self._pods.append(self._new_pod(t0 - 3600.0))
            live = list(self._pods)
        for step in range(len(desired)):
            now = t0 + step * seg.step_s
            want = int(desired[step])
            while len(live) < want:
                pod = self._new_pod(now)
                self._pods.append(pod)
                live.append(pod)
            if len(live) > want:
                # The ReplicaSet deletes pods that are not ready first, then the newest.
                live.sort(key=lambda p: (p.ready_s is not None and p.ready_s <= now, p.created_s))
                for pod in live[: len(live) - want]:
                    pod.deleted_s = now
                    if pod.ready_s is not None and pod.ready_s > now:
                        pod.ready_s = None
                live = live[len(live) - want :]

    def _new_pod(self, created_s: float) -> _Pod:
        alphabet = np.array(list(string.ascii_lowercase + string.digits))
        suffix = "".join(self.rng.choice(alphabet, 5))
        delay = float(distributions.sample(self.model.startup, self.rng, 1)[0])
        created = float(np.floor(created_s))
        return _Pod(f"{self.deployment_name}-5d8f7c9b4-{suffix}", created, float(np.floor(created + delay)))

    # ------------------------------------------------------------------ output

    def families(self) -> list[Family]:
        times = np.concatenate([[self.epoch_s], *self._times])
        ns, svc, dep = self.namespace, self.service, self.deployment_name
        fams: list[Family] = []

        def counter(key: str) -> np.ndarray:
            return np.concatenate([[0.0], np.cumsum(np.concatenate(self._inc[key]))])

        # Fluid runs count fractional requests; an exporter's counter holds whole ones.
        served, failed = np.rint(counter("served")), np.rint(counter("failed"))
        app_labels = {"namespace": ns, "service": svc, "job": svc}
        if self.app == "prometheus_client":
            fams.append(
                Family(
                    "http_requests",
                    "counter",
                    [
                        RawSeries("http_requests_total", {**app_labels, "code": "200"}, times, served),
                        RawSeries("http_requests_total", {**app_labels, "code": "503"}, times, failed),
                    ],
                )
            )
        if self.app_histogram is not None and self.app_histogram in self._hist:
            fams.append(self._app_histogram(self._hist[self.app_histogram]))
        if self.ingress and "response" in self._hist:
            nginx = {"exported_namespace": ns, "service": svc, "ingress": svc, "namespace": "ingress-nginx"}
            fams.append(
                Family(
                    "nginx_ingress_controller_requests",
                    "unknown",
                    [
                        RawSeries(
                            "nginx_ingress_controller_requests", {**nginx, "status": "200"}, times, served
                        ),
                        RawSeries(
                            "nginx_ingress_controller_requests", {**nginx, "status": "503"}, times, failed
                        ),
                    ],
                )
            )
            fams.append(
                _histogram(
                    "nginx_ingress_controller_request_duration_seconds",
                    nginx,
                    self._hist["response"],
                    NGINX_BOUNDS,
                    1.0,
                    _le_text,
                    self.scrape_s,
                )
            )
        fams.append(
            Family(
                "container_cpu_usage_seconds",
                "counter",
                [
                    RawSeries(
                        "container_cpu_usage_seconds_total",
                        {"namespace": ns, "container": dep},
                        times,
                        counter("cpu"),
                    )
                ],
            )
        )
        workload = {"namespace": ns, "deployment": dep}
        desired = np.concatenate([[self._gauges["desired"][0][0]], *self._gauges["desired"]])
        ready = np.concatenate([[self._gauges["ready"][0][0]], *self._gauges["ready"]])
        fams.append(
            Family(
                "kube_deployment_spec_replicas",
                "gauge",
                [RawSeries("kube_deployment_spec_replicas", workload, times, desired)],
            )
        )
        fams.append(
            Family(
                "kube_deployment_status_replicas_ready",
                "gauge",
                [RawSeries("kube_deployment_status_replicas_ready", workload, times, ready)],
            )
        )
        hpa = {"namespace": ns, "horizontalpodautoscaler": self.hpa or f"keda-hpa-{svc}"}
        fams.append(
            Family(
                "kube_horizontalpodautoscaler_status_desired_replicas",
                "gauge",
                [RawSeries("kube_horizontalpodautoscaler_status_desired_replicas", hpa, times, desired)],
            )
        )
        fams.extend(self._pod_families(float(times[-1])))
        return fams

    def _app_histogram(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Family:
        if self.app == "prometheus_client":
            labels = {"namespace": self.namespace, "service": self.service, "job": self.service}
            return _histogram(
                "http_request_duration_seconds",
                labels,
                parts,
                PROMETHEUS_CLIENT_BOUNDS,
                1.0,
                _le_text,
                self.scrape_s,
            )
        otel = {
            "job": f"{self.namespace}/{self.service}",
            "http_route": "/",
            "http_request_method": "GET",
        }
        if self.app == "otel_http":
            return _histogram(
                "http_server_request_duration_seconds",
                {**otel, "http_response_status_code": "200"},
                parts,
                OTEL_BOUNDS,
                1.0,
                _le_text,
                self.scrape_s,
            )
        return _histogram(
            "http_server_duration_milliseconds",
            {**otel, "http_status_code": "200"},
            parts,
            OTEL_LEGACY_BOUNDS,
            1000.0,
            lambda b: f"{b * 1000:g}",
            self.scrape_s,
        )

    def _pod_families(self, end_s: float) -> list[Family]:
        created, ready = [], []
        for pod in self._pods:
            stop = pod.deleted_s if pod.deleted_s is not None else end_s
            labels = {"namespace": self.namespace, "pod": pod.name, "uid": pod.name[-5:]}
            first = max(pod.created_s, self.epoch_s)
            t = np.arange(first, stop + 1e-9, self.pod_scrape_s)
            if len(t):
                created.append(RawSeries("kube_pod_created", labels, t, np.full(len(t), pod.created_s)))
            if pod.ready_s is not None and pod.ready_s < stop:
                tr = np.arange(max(pod.ready_s, self.epoch_s), stop + 1e-9, self.pod_scrape_s)
                if len(tr):
                    ready.append(
                        RawSeries("kube_pod_status_ready_time", labels, tr, np.full(len(tr), pod.ready_s))
                    )
        return [
            Family("kube_pod_created", "gauge", created),
            Family("kube_pod_status_ready_time", "gauge", ready),
        ]


def _le_text(bound: float) -> str:
    """prometheus_client's rendering of bucket bounds (0.005, 1.0, 10.0)."""
    return repr(float(bound))


def _histogram(
    name: str,
    labels: dict[str, str],
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    bounds_s: tuple[float, ...],
    unit: float,
    le_text: Callable[[float], str],
    scrape_s: float,
) -> Family:
    """Cumulative bucket/sum/count series over the intervals where the histogram was recorded.

    The simulator's buckets are summed onto the exporter's bounds (each of
    which is one of the simulator's), so counts are exact, not interpolated.
    """
    cols = [int(np.flatnonzero(np.isclose(BUCKETS_S, b))[0]) if b > 0 else -1 for b in bounds_s]
    series: list[RawSeries] = []
    t_all = np.concatenate([[parts[0][0][0] - scrape_s]] + [p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    sums = np.concatenate([p[2] for p in parts])
    cum_sim = np.cumsum(counts, axis=1)
    total = np.concatenate([[0.0], np.cumsum(counts.sum(axis=1))])
    for bound, col in zip(bounds_s, cols, strict=True):
        per_interval = cum_sim[:, col] if col >= 0 else np.zeros(len(counts))
        values = np.concatenate([[0.0], np.cumsum(per_interval)])
        series.append(RawSeries(f"{name}_bucket", {**labels, "le": le_text(bound)}, t_all, values))
    series.append(RawSeries(f"{name}_bucket", {**labels, "le": "+Inf"}, t_all, total))
    series.append(RawSeries(f"{name}_sum", labels, t_all, np.concatenate([[0.0], np.cumsum(sums)]) * unit))
    series.append(RawSeries(f"{name}_count", labels, t_all, total))
    return Family(name, "histogram", series)


def node_families(
    nodes: pd.DataFrame, epoch_s: float, scrape_s: float, node_scrape_s: float, end_s: float
) -> list[Family]:
    """Karpenter's `karpenter_cluster_state_node_count` and kube-state-metrics' `kube_node_labels`.

    A run reports node counts per step by NodePool, instance type and
    capacity type. The count gauge is their sum at each scrape; each change
    of a count starts or stops a node of that kind (the newest goes first)
    for the per-node labels, which say which instance types ran.
    """
    frame = nodes
    totals = frame.groupby("time_s")["nodes"].sum()
    step_times = totals.index.to_numpy(dtype=float)
    scrape_times = np.arange(0.0, end_s - epoch_s + 1e-9, scrape_s)
    at = np.clip(np.searchsorted(step_times, scrape_times, side="right") - 1, 0, len(step_times) - 1)
    count = RawSeries(
        "karpenter_cluster_state_node_count", {}, epoch_s + scrape_times, totals.to_numpy(dtype=float)[at]
    )
    labels: list[RawSeries] = []
    serial = 0
    for (pool, itype, cap), group in frame.groupby(["nodepool", "instance_type", "capacity_type"], sort=True):
        live: list[tuple[str, float]] = []
        spans: list[tuple[str, float, float]] = []
        for t, c in zip(group["time_s"].tolist(), group["nodes"].tolist(), strict=True):
            while len(live) < c:
                serial += 1
                live.append((f"ip-10-0-{serial // 250}-{serial % 250}.ec2.internal", float(t)))
            while len(live) > c:
                name, born = live.pop()
                spans.append((name, born, float(t)))
        spans.extend((name, born, end_s - epoch_s) for name, born in live)
        for name, born, died in spans:
            t = epoch_s + np.arange(math.ceil(born / node_scrape_s) * node_scrape_s, died, node_scrape_s)
            if len(t):
                node = {
                    "node": name,
                    "label_node_kubernetes_io_instance_type": str(itype),
                    "label_karpenter_sh_capacity_type": str(cap),
                    "label_karpenter_sh_nodepool": str(pool),
                }
                labels.append(RawSeries("kube_node_labels", node, t, np.ones(len(t))))
    return [
        Family("karpenter_cluster_state_node_count", "gauge", [count]),
        Family("kube_node_labels", "gauge", labels),
    ]
