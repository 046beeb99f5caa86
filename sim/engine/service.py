"""One service in the simulation: its pods, its data plane, its scraped series, its KEDA and HPA.

SimPy lives here and in the rest of `sim.engine` only; the controllers it calls
are pure (`sim.controllers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import simpy

from sim import rng as rng_mod
from sim.controllers import keda
from sim.controllers.hpa import (
    ExternalValues,
    HPADecision,
    HPAState,
    MetricInput,
    MetricUnavailable,
    PodSamples,
    reconcile,
)
from sim.controllers.replica_calc import MetricSample, PodCounts, PodView
from sim.controllers.scalers import ScalerError, ScalerResult, scaler_value
from sim.dataplane import distributions
from sim.dataplane.fluid import FluidPlane
from sim.dataplane.plane import DataPlane
from sim.engine.cluster import ClusterSim
from sim.latency import BUCKETS_S
from sim.metrics.promql import Query, QueryError
from sim.metrics.tsdb import SeriesHandle, SeriesStore
from sim.result import ServiceTrace
from sim.scenario import LoadedScenario, LoadedService
from sim.workload.traffic import arrival_counts, rate_series

# How much scrape history exists before t=0 (longer than any sensible rate() window).
WARM_HISTORY_S = 600.0

# Memory metrics are bytes in milli-units, as the HPA computes them.
MIB_MILLI = 1024 * 1024 * 1000


@dataclass
class Pod:
    """A pod of the service; `bound` once a node holds it (always at once when nodes are unlimited)."""

    id: int
    created_s: float
    ready_s: float | None = None
    bound: bool = False


@dataclass
class _Recorder:
    """Change points of the per-step control series, expanded to arrays at the end."""

    n_steps: int
    points: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    metric_points: list[tuple[int, float]] = field(default_factory=list)

    def replicas(self, step: int, desired: int, ready: int, starting: int, pending: int) -> None:
        point = (step, desired, ready, starting, pending)
        if self.points and self.points[-1][0] == step:
            self.points[-1] = point
        else:
            self.points.append(point)

    def metric(self, step: int, value: float) -> None:
        self.metric_points.append((step, value))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Desired, ready, starting (bound, not ready), pending (unbound) per step, and the metric."""
        counts = np.zeros((4, self.n_steps), dtype=np.int64)
        for i, (step, *values) in enumerate(self.points):
            end = self.points[i + 1][0] if i + 1 < len(self.points) else self.n_steps
            counts[:, step:end] = np.array(values)[:, None]
        metric = np.full(self.n_steps, np.nan)
        for i, (step, v) in enumerate(self.metric_points):
            end = self.metric_points[i + 1][0] if i + 1 < len(self.metric_points) else self.n_steps
            metric[step:end] = v
        return counts[0], counts[1], counts[2], counts[3], metric


class ServiceSim:
    """One service: its pods, its data plane, its series, its KEDA and HPA."""

    def __init__(
        self,
        env: simpy.Environment,
        scn: LoadedScenario,
        svc: LoadedService,
        store: SeriesStore,
        events: list[tuple[Any, ...]],
        cluster: ClusterSim | None = None,
    ) -> None:
        self.env = env
        self.cluster = cluster
        self.scn = scn
        self.svc = svc
        self.name = svc.name
        self.step_s = scn.step_s
        self.n_steps = math.ceil(scn.horizon_s / scn.step_s)
        self.events = events
        self.model = svc.model

        arrivals_rng = rng_mod.stream(scn.seed, svc.name, "arrivals")
        rates = rate_series(svc.traffic, scn.horizon_s, scn.step_s, arrivals_rng, scn.base_dir)
        self.arrivals = arrival_counts(rates, scn.step_s, svc.traffic.arrivals, arrivals_rng)
        self.plane: DataPlane = self._make_plane(rates)
        self.start_rng = rng_mod.stream(scn.seed, svc.name, "pod_starts")

        self.keda_cfg = keda.compile_scaled_object(svc.scaled_object)
        self.hpa_spec = self.keda_cfg.hpa
        self.keda_state = keda.KedaState(creation_time_s=-math.inf)
        self.hpa_state = HPAState()
        self.queries = {f"s{i}-prometheus": q for i, q in svc.queries.items()}
        self._prometheus = {t.metric_name: t.prometheus for t in self.keda_cfg.external if t.prometheus}
        self._poll_cannot_act = _poll_cannot_act(self.keda_cfg)
        self.cpu_request_milli = (
            round(svc.model.cpu_request_millicores) if svc.model.cpu_request_millicores else None
        )
        self.needs_pod_views = any(m.source != "External" for m in self.hpa_spec.metrics)

        self.pods: list[Pod] = []
        self.n_ready = 0  # kept by _sync_plane, which runs whenever a pod turns ready or goes
        self.next_pod_id = 0
        self.spec_replicas = 0
        self.recorder = _Recorder(self.n_steps)
        self.series = self._make_series(store)
        self.store = store
        self._watched: list[tuple[int, SeriesHandle]] = []
        self._offsets = np.zeros(len(self.series))
        self._last_logged: dict[str, tuple[Any, ...]] = {}

        self.template = (
            scn.cluster.pods[svc.name] if cluster is not None and scn.cluster is not None else None
        )
        if cluster is not None and self.template is not None:
            cluster.register(self.name, self, self.template.images)
        initial = svc.initial_replicas
        self.spec_replicas = initial
        for _ in range(initial):
            # Pods that exist when the run starts are already ready: the cluster was running.
            # With nodes modelled they still need a node: `ClusterSim.bootstrap` gives them one at t=0.
            pod = Pod(
                self._new_id(), -math.inf, -math.inf if cluster is None else None, bound=cluster is None
            )
            self.pods.append(pod)
            self._submit(pod)
        self._sync_plane()

    # ----------------------------------------------------------------- set-up

    def _make_plane(self, rates: np.ndarray) -> DataPlane:
        if self.scn.fidelity == "requests":
            from sim.dataplane.requests import RequestsPlane

            return RequestsPlane(
                self.model,
                self.arrivals,
                self.step_s,
                service_rng=rng_mod.stream(self.scn.seed, self.name, "service_times"),
                routing_rng=rng_mod.stream(self.scn.seed, self.name, "routing"),
            )
        # The fluid plane takes the Poisson means too, so it does not count the arrival noise twice.
        return FluidPlane(self.model, self.arrivals, self.step_s, rates_per_s=rates)

    def _make_series(self, store: SeriesStore) -> list[SeriesHandle]:
        """The series a real cluster would have for this service, in the order `_scrape_values` fills.

        Request counters and the latency histogram carry the scenario's labels
        (what the app's exporter and the ServiceMonitor produce); CPU and replica
        series carry the labels cAdvisor and kube-state-metrics use.
        """
        names = self.svc.metrics
        labels = dict(names.labels)
        workload = {"namespace": labels.get("namespace", "default"), "deployment": self.svc.workload.name}
        bounds = [_le(b) for b in BUCKETS_S] + ["+Inf"]
        return [
            store.add_series(names.requests_total, {**labels, "code": "200"}),
            store.add_series(names.requests_total, {**labels, "code": "503"}),
            *(store.add_series(f"{names.duration}_bucket", {**labels, "le": le}) for le in bounds),
            store.add_series(f"{names.duration}_sum", labels),
            store.add_series(f"{names.duration}_count", labels),
            store.add_series(
                "container_cpu_usage_seconds_total",
                {
                    "namespace": workload["namespace"],
                    "container": self.svc.workload.name,
                    "service": self.name,
                },
            ),
            store.add_series("kube_deployment_spec_replicas", workload),
            store.add_series("kube_deployment_status_replicas_ready", workload),
        ]

    @staticmethod
    def _scrape_values(
        served: float,
        failed: float,
        buckets: np.ndarray,
        latency_sum: float,
        cpu: float,
        replicas: int,
        ready: int,
    ) -> np.ndarray:
        return np.concatenate(([served, failed], buckets, [latency_sum, served, cpu, replicas, ready]))

    def watch(self, queries: list[Query]) -> None:
        """Scrape only the series some query reads, and give them history from before t=0.

        Appending the 31 series of every service at every scrape would cost more
        than the rest of the engine; series no query selects change no decision.
        """
        selected = {id(h) for q in queries for sel in q.selectors for h in self.store.select(sel.matchers)}
        self._watched = [(i, h) for i, h in enumerate(self.series) if id(h) in selected]
        self._warm_history(self.scn.controllers.prometheus_scrape_interval_s)

    def _warm_history(self, interval_s: float) -> None:
        """Scrapes from before t=0, as if the service had run at its opening traffic for a while.

        Without them the first `rate()` windows see no data, KEDA reads 0 and the
        HPA starts by wanting to scale in: a cold Prometheus, which is not what a
        config change meets in a running cluster. The counters then continue from
        where this history leaves them.
        """
        opening = self.arrivals[: max(1, round(60.0 / self.step_s))]
        rps = float(opening.mean()) / self.step_s if len(opening) else 0.0
        pods = self.spec_replicas
        cpu_rate = pods * self.model.idle_cpu_millicores / 1000.0 + rps * self.model.cpu_per_request_s
        share = np.append(distributions.cdf(self.model.service_time, BUCKETS_S), 1.0)
        mean_s = self.model.service_time.mean_s
        n = max(1, math.ceil(WARM_HISTORY_S / interval_s))
        for k in range(n, -1, -1):
            done = rps * (n - k) * interval_s
            values = self._scrape_values(
                done, 0.0, done * share, done * mean_s, cpu_rate * (n - k) * interval_s, pods, pods
            )
            if k == 0:
                self._offsets = values
                self._offsets[-2:] = 0.0  # gauges: the run's own values, not offsets
            else:
                for i, h in self._watched:
                    h.append(-k * interval_s, float(values[i]))

    def _new_id(self) -> int:
        self.next_pod_id += 1
        return self.next_pod_id - 1

    # ----------------------------------------------------------------- pods

    def _step_now(self) -> int:
        return min(round(self.env.now / self.step_s), self.n_steps)

    def _ready_pods(self) -> list[Pod]:
        return [p for p in self.pods if p.ready_s is not None and p.ready_s <= self.env.now]

    def _sync_plane(self) -> None:
        """Bring the data plane to now and give it the current ready set."""
        step = self._step_now()
        self.plane.advance_to(step)
        ready = self._ready_pods()
        self.n_ready = len(ready)
        self.plane.set_pods(step, [p.id for p in ready])
        pending = sum(1 for p in self.pods if not p.bound)
        self.recorder.replicas(
            step, self.spec_replicas, len(ready), len(self.pods) - len(ready) - pending, pending
        )

    def scale_to(self, replicas: int) -> None:
        """Set the Deployment's replicas and make the pod set follow, as the ReplicaSet controller does."""
        self.spec_replicas = replicas
        if replicas > len(self.pods):
            for _ in range(replicas - len(self.pods)):
                pod = Pod(self._new_id(), self.env.now)
                self.pods.append(pod)
                self._submit(pod)
        elif replicas < len(self.pods):
            # The ReplicaSet deletes unscheduled and not-ready pods first, then the newest.
            victims = sorted(
                self.pods,
                key=lambda p: (
                    p.bound,
                    p.ready_s is not None and p.ready_s <= self.env.now,
                    -p.created_s,
                    -p.id,
                ),
            )[: len(self.pods) - replicas]
            gone = {p.id for p in victims}
            self.pods = [p for p in self.pods if p.id not in gone]
            if self.cluster is not None:
                for p in victims:
                    self.cluster.remove(self._pod_key(p.id))
        self._sync_plane()

    def _pod_key(self, pod_id: int) -> str:
        return f"{self.name}-{pod_id}"

    def _submit(self, pod: Pod) -> None:
        """Hand a new pod to the scheduler: the cluster when nodes are modelled, else it starts at once."""
        if self.cluster is None or self.template is None:
            pod.bound = True
            if pod.ready_s is None:
                self.env.process(self._start(pod, 0.0))
            return
        spec = replace(self.template.spec, id=self._pod_key(pod.id), owner=self.name, created_s=self.env.now)
        self.cluster.submit(spec)

    def _find(self, pod_key: str) -> Pod | None:
        prefix = f"{self.name}-"
        if not pod_key.startswith(prefix):
            return None
        pod_id = int(pod_key[len(prefix) :])
        return next((p for p in self.pods if p.id == pod_id), None)

    def pod_bound(self, pod_id: str, node: Any, extra_start_s: float) -> None:
        """kube-scheduler bound the pod: it starts now (a pod that predates the run is ready at once)."""
        pod = self._find(pod_id)
        if pod is None:
            return
        pod.bound = True
        if math.isinf(pod.created_s):
            pod.ready_s = self.env.now
            self._sync_plane()
        else:
            self.env.process(self._start(pod, extra_start_s))

    def pod_evicted(self, pod_id: str) -> None:
        """A node drained under the pod: the ReplicaSet replaces it, and the new pod starts from scratch."""
        pod = self._find(pod_id)
        if pod is None:
            return
        self.pods.remove(pod)
        self.scale_to(self.spec_replicas)

    def _start(self, pod: Pod, extra_s: float) -> Any:
        """Starting (image pull, init, readiness probe) from when the pod is bound until it is ready."""
        delay = float(distributions.sample(self.model.startup, self.start_rng, 1)[0]) + extra_s
        delay = math.ceil(delay / self.step_s - 1e-9) * self.step_s
        yield self.env.timeout(delay)
        if pod in self.pods:
            pod.ready_s = self.env.now
            self._sync_plane()

    # ----------------------------------------------------------------- metrics pipeline

    def scrape(self) -> None:
        now = self.env.now
        self.plane.advance_to(self._step_now())
        c = self.plane.counters()
        values = self._offsets + self._scrape_values(
            c.served_total,
            c.failed_total,
            c.latency_bucket,
            c.latency_sum_s,
            c.cpu_seconds_total,
            self.spec_replicas,
            self.n_ready,
        )
        for i, h in self._watched:
            h.append(now, float(values[i]))

    def _query_trigger(self, metric_name: str) -> ScalerResult:
        """What KEDA's Prometheus scaler gets back right now: the query over the scraped series."""
        query, meta = self.queries[metric_name], self._prometheus[metric_name]
        try:
            samples = [v for _, v in query.evaluate(self.store, self.env.now)]
        except QueryError as err:
            return ScalerError(str(err))
        return scaler_value(samples, meta.ignore_null_values, meta.query)

    def _cpu_usage_per_pod_milli(self) -> int:
        """metrics-server's view: mean CPU per ready pod over its last resolution window."""
        res = self.scn.controllers.metrics_server_resolution_s
        end = math.floor(self.env.now / res) * res
        s1 = min(round(end / self.step_s), self.n_steps)
        s0 = max(s1 - max(1, round(res / self.step_s)), 0)
        if s1 <= s0:
            return round(self.model.idle_cpu_millicores)
        used = self.plane.usage(s0, s1)
        cores = used.cpu_core_s / ((s1 - s0) * self.step_s)
        return round(1000.0 * cores / max(used.ready_pods_mean, 1.0))

    def _pod_views(self) -> list[PodView]:
        now = self.env.now
        usage = self._cpu_usage_per_pod_milli()
        idle = round(self.model.idle_cpu_millicores)
        res = self.scn.controllers.metrics_server_resolution_s
        sample_t = math.floor(now / res) * res
        views = []
        for p in self.pods:
            ready = p.ready_s is not None and p.ready_s <= now
            views.append(
                PodView(
                    name=f"{self.name}-{p.id}",
                    phase="Running",
                    ready=ready,
                    start_s=p.created_s,
                    ready_transition_s=p.ready_s if ready else p.created_s,
                    cpu_request_milli=self.cpu_request_milli,
                    cpu_sample=MetricSample(usage if ready else idle, sample_t, res),
                )
            )
        return views

    # ----------------------------------------------------------------- controllers

    def hpa_sync(self) -> None:
        if self.keda_cfg.paused:
            return  # KEDA removes the HPA of a paused ScaledObject
        now = self.env.now
        if self.needs_pod_views:
            self.plane.advance_to(self._step_now())  # metrics-server reads the data plane
        ready = self.n_ready
        inputs: list[MetricInput] = []
        first_value: float | None = None
        for m in self.hpa_spec.metrics:
            if m.source == "External":
                served = keda.serve_metric(
                    self.keda_cfg,
                    self.keda_state,
                    metric_name=m.name,
                    current_replicas=self.spec_replicas,
                    query=self._query_trigger,
                    ready_replicas=ready,
                )
                if isinstance(served, ScalerError):
                    inputs.append(MetricUnavailable(served.message, "FailedGetExternalMetric"))
                else:
                    inputs.append(ExternalValues((round(served * 1000),)))
                    first_value = served if first_value is None else first_value
            elif m.source == "Resource" and m.name == "cpu":
                inputs.append(None)
            else:
                inputs.append(self._memory_samples())
        pods: list[PodView] | PodCounts
        pods = self._pod_views() if self.needs_pod_views else PodCounts(len(self.pods), ready)
        decision = reconcile(
            self.hpa_spec,
            self.scn.controllers.hpa,
            self.hpa_state,
            now_s=now,
            spec_replicas=self.spec_replicas,
            status_replicas=len(self.pods),
            metrics=inputs,
            pods=pods,
        )
        if first_value is not None:
            self.recorder.metric(self._step_now(), first_value)
        if decision.rescale:
            before = self.spec_replicas
            self.scale_to(decision.desired_replicas)
            self._log_hpa(decision, before)
        elif decision.limited_by and decision.proposal != decision.current_replicas:
            # Held away from where the metrics point: the answer to "why didn't it scale?".
            self._log_hpa(decision, self.spec_replicas)

    def _memory_samples(self) -> PodSamples:
        step = max(self._step_now() - 1, 0)
        used = self.plane.usage(step, step + 1)
        busy = used.busy_workers_mean / max(used.ready_pods_mean, 1.0)
        mib = self.model.idle_memory_mib + self.model.memory_per_inflight_mib * busy
        request = (
            round(self.model.memory_request_mib * 1024 * 1024 * 1000)
            if self.model.memory_request_mib
            else None
        )
        samples = {
            f"{self.name}-{p.id}": MetricSample(round(mib * MIB_MILLI), self.env.now, 15.0) for p in self.pods
        }
        return PodSamples(samples, {k: request for k in samples})

    def _log_hpa(self, d: HPADecision, before: int) -> None:
        action = (
            "scale_up"
            if d.desired_replicas > before
            else "scale_down"
            if d.desired_replicas < before
            else "hold"
        )
        first = d.metrics[0] if d.metrics else None
        key = (action, d.limited_by)
        if action == "hold" and self._last_logged.get("hpa") == key:
            return
        self._last_logged["hpa"] = key
        self.events.append(
            (
                self.env.now,
                self.name,
                "hpa",
                action,
                before,
                d.desired_replicas,
                first.name if first else None,
                (first.value_milli / 1000.0) if first and first.value_milli is not None else None,
                d.proposal,
                ",".join(d.limited_by) or None,
                d.explain(),
            )
        )

    def keda_poll(self) -> None:
        if self._poll_cannot_act and self.spec_replicas >= (self.keda_cfg.spec.min_replica_count or 0):
            return
        now = self.env.now
        decision = keda.poll(
            self.keda_cfg,
            self.keda_state,
            now_s=now,
            current_replicas=self.spec_replicas,
            query=self._query_trigger,
            ready_replicas=self.n_ready,
        )
        before = self.spec_replicas
        if decision.replicas is not None and decision.replicas != before:
            self.scale_to(decision.replicas)
            action = "activate" if decision.replicas > before else "deactivate"
        elif decision.active_reason == "ScalerCooldown" or decision.is_error:
            action = "hold"
        else:
            return
        key = (action, decision.active_reason, decision.is_error)
        if action == "hold" and self._last_logged.get("keda") == key:
            return
        self._last_logged["keda"] = key
        value = next(iter(decision.values.values()), None)
        self.events.append(
            (
                now,
                self.name,
                "keda",
                action,
                before,
                self.spec_replicas,
                next(iter(decision.values), None),
                value,
                decision.replicas,
                decision.active_reason if action == "hold" else None,
                decision.reason,
            )
        )

    # ----------------------------------------------------------------- results

    def trace(self) -> ServiceTrace:
        self.plane.advance_to(self.n_steps)
        out = self.plane.outputs()
        desired, ready, starting, pending, metric = self.recorder.arrays()
        first = self.keda_cfg.external[0] if self.keda_cfg.external else None
        return ServiceTrace(
            name=self.name,
            offered=out.offered,
            served=out.served,
            failed=out.failed,
            backlog=out.backlog,
            hist=out.latency_counts,
            latency_sum_s=out.latency_sum_s,
            cpu_core_s=out.cpu_core_s,
            replicas_desired=desired,
            replicas_ready=ready,
            replicas_starting=starting,
            replicas_pending=pending,
            metric_value=metric,
            metric_threshold=first.target if first else float("nan"),
            cpu_request_cores=(self.model.cpu_request_millicores or 0) / 1000.0 or None,
        )


def _poll_cannot_act(cfg: keda.KedaConfig) -> bool:
    """True when KEDA's polling loop can never change the replica count or the HPA's inputs.

    With a floor of at least one pod, no idle count, no fallback, no cached
    metrics and not paused, a poll only refreshes lastActiveTime (which matters
    for scaling to zero, impossible here) and conditions: skipping it changes
    no decision and saves a query evaluation every pollingInterval.
    """
    so = cfg.spec
    return (
        (so.min_replica_count or 0) >= 1
        and so.idle_replica_count is None
        and not cfg.fallback_enabled
        and not any(t.use_cached_metrics for t in cfg.triggers)
        and not cfg.paused
    )


def _direction(before: int, after: int) -> str:
    return "scale_up" if after > before else "scale_down" if after < before else "hold"


def _le(bound: float) -> str:
    """Bucket bounds rendered as prometheus_client renders them (0.1, 1.0, 2.5)."""
    return repr(float(bound))
