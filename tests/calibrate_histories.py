"""Histories with known ground truth for the calibration and backtest tests, made by the simulator.

Each `Case` is one service with the parameters that generated it. Long
traffic histories come from fluid-mode runs of the engine (days in about a
second); request-level latency comes from the per-request data plane, for
at most an hour per service, at utilisations chosen so that concurrency is
(or is not) identifiable. Everything goes into one OpenMetrics file, so one
backfill serves the whole session.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML

import sim
from sim.calibrate.openmetrics import Family, RawSeries, write_openmetrics
from sim.calibrate.synthetic import AppConvention, Recording, Segment, replay_plane
from sim.dataplane import distributions
from sim.workload.service import Dist, ServiceModel

EPOCH = 1_709_510_400.0  # Monday 2024-03-04 00:00 UTC
SCRAPE_S = 30.0
POD_SCRAPE_S = 300.0  # per-pod gauges only need their last value: sparse samples keep the file small
NAMESPACE = "shop"


@dataclass(frozen=True)
class Case:
    name: str
    convention: AppConvention
    model: ServiceModel
    workers_identifiable: bool
    start_s: float
    end_s: float
    daily_shape: Callable[[np.ndarray], np.ndarray] | None = None  # true traffic shape by time of day


def _so(name: str, threshold: float, min_r: int, max_r: int) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"name": name},
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "minReplicaCount": min_r,
            "maxReplicaCount": max_r,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus:9090",
                        "query": f'sum(rate(http_requests_total{{namespace="{NAMESPACE}",'
                        f'service="{name}"}}[1m]))',
                        "threshold": str(threshold),
                    },
                }
            ],
        },
    }


def _deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": name, "image": f"{name}:1", "resources": {"requests": {"cpu": "1"}}}
                    ]
                },
            },
        },
    }


def scenario(
    name: str,
    model: dict[str, Any],
    traffic: dict[str, Any],
    *,
    threshold: float,
    min_replicas: int,
    max_replicas: int,
    horizon: str,
    step: str,
    fidelity: str = "fluid",
    seed: int = 7,
    initial: int | None = None,
) -> dict[str, Any]:
    service: dict[str, Any] = {
        "name": name,
        "inline": {
            "scaled_object": _so(name, threshold, min_replicas, max_replicas),
            "deployment": _deployment(name),
        },
        "traffic": traffic,
        "model": model,
        "metrics": {"labels": {"namespace": NAMESPACE, "service": name}},
    }
    if initial is not None:
        service["initial_replicas"] = initial
    return {
        "name": f"{name}-history",
        "horizon": horizon,
        "step": step,
        "seed": seed,
        "fidelity": fidelity,
        "services": [service],
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        YAML().dump(data, f)
    return path


def _trace_segment(result: sim.Result, name: str, step_s: float) -> Segment:
    tr = result.traces[name]
    return Segment(
        step_s, tr.offered, tr.served, tr.failed, tr.cpu_core_s, tr.replicas_desired, tr.replicas_ready
    )


def latency_segment(
    model: ServiceModel, pods: int, rho: list[tuple[float, float]], rng: np.random.Generator, handler: bool
) -> Segment:
    """A per-request stretch with a fixed pod count; `rho` lists (seconds, utilisation) pieces."""
    capacity = pods * model.workers / model.service_time.mean_s
    rate = np.concatenate([np.full(int(sec), r * capacity) for sec, r in rho])
    arrivals = rng.poisson(rate)
    out = replay_plane(model, arrivals, np.full(len(arrivals), pods), 1.0, rng)
    fixed = np.full(len(arrivals), pods)
    return Segment(
        1.0,
        out.offered,
        out.served,
        out.failed,
        out.cpu_core_s,
        fixed,
        fixed,
        out.latency_counts,
        out.latency_sum_s,
        handler,
    )


def handler_segment(
    model: ServiceModel, pods: int, rho: float, seconds: int, rng: np.random.Generator
) -> Segment:
    """A stretch whose only latency is handler time: served counts are the arrivals, no queueing recorded."""
    capacity = pods * model.workers / model.service_time.mean_s
    served = rng.poisson(np.full(seconds, rho * capacity)).astype(float)
    cpu = served * model.cpu_per_request_s + pods * model.idle_cpu_millicores / 1000.0
    fixed = np.full(seconds, pods)
    return Segment(1.0, served, served, np.zeros(seconds), cpu, fixed, fixed, handler=True)


FRONT = ServiceModel(
    workers=4,
    service_time=Dist("lognormal", 0.060, 1.0),
    cpu_per_request_s=0.010,
    idle_cpu_millicores=20.0,
    startup=Dist("lognormal", 25.0, 0.3),
)
ORDERS = ServiceModel(workers=3, service_time=Dist("lognormal", 0.120, 0.8), cpu_per_request_s=0.05)
SEARCH = ServiceModel(workers=2, service_time=Dist("gamma", 0.080, 0.5), cpu_per_request_s=0.02)
BILLING = ServiceModel(workers=2, service_time=Dist("exponential", 0.050, 1.0), cpu_per_request_s=0.004)
FRONT_DAYS = 4
FRONT_TRAFFIC = {
    "kind": "diurnal",
    "base_rps": 80,
    "peak_rps": 700,
    "peak_hour": 15,
    "start_day": "mon",
    "noise": {"cv": 0.1, "correlation_time": "10m"},
}


def front_shape(t_s: np.ndarray) -> np.ndarray:
    """The true daily shape of front's traffic (the diurnal cosine), by time of day."""
    hours = np.mod(t_s, 86_400.0) / 3600.0
    return 80.0 + 620.0 * 0.5 * (1.0 + np.cos(2.0 * math.pi * (hours - 15.0) / 24.0))


def _model_block(m: ServiceModel) -> dict[str, Any]:
    st = m.service_time
    return {
        "workers": m.workers,
        "service_time": {
            "distribution": st.kind,
            "mean": st.mean_s,
            **({"cv": st.cv} if st.kind not in ("exponential",) else {}),
        },
        "cpu_per_request": m.cpu_per_request_s,
        "idle_cpu": m.idle_cpu_millicores / 1000.0,
        "startup": {"distribution": m.startup.kind, "mean": m.startup.mean_s, "cv": m.startup.cv},
    }


DAY_S = 86_400.0
LATENCY_START = EPOCH + DAY_S  # the short per-request histories sit on day 2
CASES: dict[str, Case] = {
    "front": Case(
        "front", "prometheus_client", FRONT, True, EPOCH, EPOCH + FRONT_DAYS * DAY_S + 1800.0, front_shape
    ),
    "orders": Case("orders", "otel_http", ORDERS, True, LATENCY_START, LATENCY_START + 2700.0),
    "search": Case("search", "otel_http_legacy_ms", SEARCH, False, LATENCY_START, LATENCY_START + 1800.0),
    "billing": Case("billing", "prometheus_client", BILLING, False, LATENCY_START, LATENCY_START + 2400.0),
}
FAULTS_NAMESPACE = "shop-faults"
# Where the injected faults begin (unix s), in front's copy under FAULTS_NAMESPACE.
FAULTS = {
    "gap": EPOCH + 36_000.0,  # day 1, 10:00: 20 minutes of missing request-counter samples
    "reset": EPOCH + DAY_S + 7200.0,  # day 2, 02:00: the request counter restarts from zero
    "nan": EPOCH + DAY_S + 21_600.0,  # day 2, 06:00: 5 minutes of NaN in the ready-replicas gauge
    "stale": EPOCH + DAY_S + 72_000.0,  # day 2, 20:00: the CPU series stops
}
FAULTS_END = EPOCH + 2 * DAY_S  # the faulted copy holds two days
GAP_S = 1200.0


def build_history(out: Path) -> Path:
    """Every case's history (and front's faulted copy) in one OpenMetrics file, `out/history.om`."""
    rng = np.random.default_rng(20240304)
    families: dict[str, Family] = {}

    def add(fams: list[Family]) -> None:
        for fam in fams:
            if fam.name in families:
                families[fam.name].series.extend(fam.series)
            else:
                families[fam.name] = fam

    # front: four days of diurnal traffic under its HPA (fluid), then half an hour of per-request
    # latency with three pods at moderate load; app handler histogram and ingress response histogram.
    long = scenario(
        "front",
        _model_block(FRONT),
        FRONT_TRAFFIC,
        threshold=15,
        min_replicas=2,
        max_replicas=60,
        horizon=f"{FRONT_DAYS}d",
        step="15s",
    )
    result = sim.simulate(sim.load_scenario(write_yaml(out / "front.yaml", long)))
    rec = Recording(
        "front",
        NAMESPACE,
        EPOCH,
        FRONT,
        rng,
        app_histogram="handler",
        ingress=True,
        pod_scrape_s=POD_SCRAPE_S,
    )
    rec.append(_trace_segment(result, "front", 15.0))
    rec.append(latency_segment(FRONT, 3, [(600, 0.3), (1200, 0.6)], rng, handler=True))
    front = rec.families()
    add(front)
    add(_with_faults(front))

    # orders: OpenTelemetry names, one histogram that includes queueing, 35 min at utilisation 0.78.
    rec = Recording(
        "orders", NAMESPACE, LATENCY_START, ORDERS, rng, app="otel_http", app_histogram="response"
    )
    rec.append(latency_segment(ORDERS, 3, [(600, 0.45), (2100, 0.78)], rng, handler=False))
    add(rec.families())

    # search: legacy OpenTelemetry names (milliseconds), queueing included but never above utilisation 0.4.
    rec = Recording(
        "search", NAMESPACE, LATENCY_START, SEARCH, rng, app="otel_http_legacy_ms", app_histogram="response"
    )
    rec.append(latency_segment(SEARCH, 3, [(600, 0.1), (600, 0.25), (600, 0.4)], rng, handler=False))
    add(rec.families())

    # billing: classic names, handler time only, at high load: no queueing is ever visible.
    rec = Recording("billing", NAMESPACE, LATENCY_START, BILLING, rng, app_histogram="handler")
    rec.append(handler_segment(BILLING, 2, 0.8, 2400, rng))
    add(rec.families())

    add([node_launch_histogram(rng)])
    path = out / "history.om"
    write_openmetrics(path, families.values())
    return path


NODE_LAUNCH = Dist("lognormal", 48.0, 0.25)
LAUNCH_BOUNDS = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)


def node_launch_histogram(rng: np.random.Generator, launches: int = 300) -> Family:
    """Karpenter's NodeClaim Unknown→Initialized histogram: `launches` launches spread over the first days."""
    name = "operator_nodeclaim_status_condition_transition_seconds"
    labels = {"type": "Initialized", "status": "Unknown", "nodepool": "default"}
    times = EPOCH + SCRAPE_S * np.arange(1, 2881)
    at = np.sort(rng.integers(0, len(times), launches))
    delays = distributions.sample(NODE_LAUNCH, rng, launches)
    per = np.zeros((len(times), len(LAUNCH_BOUNDS) + 1))
    np.add.at(per, (at, np.searchsorted(LAUNCH_BOUNDS, delays)), 1.0)
    cum = np.cumsum(np.cumsum(per, axis=1), axis=0)
    series = [
        RawSeries(f"{name}_bucket", {**labels, "le": f"{b:g}"}, times, cum[:, i])
        for i, b in enumerate(LAUNCH_BOUNDS)
    ]
    series.append(RawSeries(f"{name}_bucket", {**labels, "le": "+Inf"}, times, cum[:, -1]))
    sums = np.cumsum(np.bincount(at, weights=delays, minlength=len(times)))
    series.append(RawSeries(f"{name}_sum", labels, times, sums))
    series.append(RawSeries(f"{name}_count", labels, times, cum[:, -1]))
    return Family(name, "histogram", series)


def _with_faults(front: list[Family]) -> list[Family]:
    """front's series under FAULTS_NAMESPACE, with a gap, a counter reset, NaN samples and a stale series."""
    out = []
    for fam in front:
        if fam.name.startswith("kube_pod_"):
            continue
        series = []
        for s in fam.series:
            labels = dict(s.labels)
            for key in ("namespace", "exported_namespace"):
                if labels.get(key) == NAMESPACE:
                    labels[key] = FAULTS_NAMESPACE
            keep = s.t_s <= FAULTS_END
            t, v = s.t_s[keep], s.values[keep]
            if s.name == "http_requests_total":
                keep = ~((t >= FAULTS["gap"]) & (t < FAULTS["gap"] + GAP_S))
                t, v = t[keep], v[keep]
                after = t >= FAULTS["reset"]
                v = np.where(after, v - v[np.argmax(after)] + 7.0, v)
            elif s.name == "kube_deployment_status_replicas_ready":
                v = np.where((t >= FAULTS["nan"]) & (t < FAULTS["nan"] + 300.0), np.nan, v)
            elif s.name == "container_cpu_usage_seconds_total":
                keep = t < FAULTS["stale"]
                t, v = t[keep], v[keep]
            series.append(RawSeries(s.name, labels, t, v))
        out.append(Family(fam.name, fam.type, series))
    return out


def build_backtest(out: Path) -> None:
    """`api`'s history under a known HPA config, run in the per-request mode, and the live scenario.

    Writes `out/api-history.om` and `out/api-live.yaml`. The recorded run
    steps at 1 s with controllers phased from its own start; the history is
    placed at a random sub-scrape offset, so the backtest's controllers (5 s
    steps, phased from the window start) run at other phases.
    """
    model = {
        "workers": 4,
        "service_time": {"distribution": "lognormal", "mean": "50ms", "cv": 1.0},
        "cpu_per_request": "5ms",
        "startup": {"distribution": "lognormal", "mean": "20s", "cv": 0.3},
    }
    traffic = {
        "kind": "spike",
        "base_rps": 40,
        "multiplier": 6,
        "start": "20m",
        "rise": "5m",
        "hold": "15m",
        "decay": "10m",
        "transforms": [{"kind": "noise", "cv": 0.15, "correlation_time": "3m"}],
    }
    common: dict[str, Any] = {
        "threshold": 20,
        "min_replicas": 2,
        "max_replicas": 30,
        "horizon": "75m",
        "initial": 2,
    }
    recorded = write_yaml(
        out / "api-recorded.yaml", scenario("api", model, traffic, step="1s", fidelity="requests", **common)
    )
    write_yaml(out / "api-live.yaml", scenario("api", model, traffic, step="5s", **common))
    scn = sim.load_scenario(recorded)
    result = sim.simulate(scn)
    rng = np.random.default_rng(99)
    offset = float(rng.uniform(1.0, SCRAPE_S - 1.0))
    rec = Recording(
        "api", NAMESPACE, EPOCH + 2 * DAY_S + offset, scn.service("api").model, rng, app_histogram=None
    )
    rec.append(_trace_segment(result, "api", 1.0))
    write_openmetrics(out / "api-history.om", rec.families())


def _version() -> str:
    """A digest of the code that makes the histories: a cached build is reused only while it matches."""
    import sim.calibrate.openmetrics
    import sim.calibrate.synthetic

    digest = hashlib.sha256()
    for module in (sys.modules[__name__], sim.calibrate.synthetic, sim.calibrate.openmetrics):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def cached(root: Path, name: str, make: Callable[[Path], object]) -> Path:
    """Build into `root` once across xdist workers and sessions (the first builds, the others wait)."""
    target = root / f"calibrate-{name}-{_version()}"
    with (root / f"calibrate-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "done").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            make(target)
            (target / "done").write_text("ok")
    return target
