"""What a run produces: a tidy time series, the decisions taken, and a summary.

The engine fills a `ServiceTrace` per service with per-step numpy arrays; this
module turns them into the pandas objects people (and notebooks, and the CI
gate) read, so the engine's hot loop never touches pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim import __version__
from sim.latency import quantile
from sim.slo import SLO, SLOResult, evaluate, with_failures

# Columns of Result.events, in order; `reason` is the human-readable why.
EVENT_COLUMNS = [
    "time_s",
    "service",
    "controller",
    "action",
    "replicas_from",
    "replicas_to",
    "metric",
    "metric_value",
    "proposal",
    "limited_by",
    "reason",
]


@dataclass
class ServiceTrace:
    """Per-step arrays for one service, as the engine recorded them."""

    name: str
    offered: np.ndarray
    served: np.ndarray
    failed: np.ndarray
    backlog: np.ndarray
    hist: np.ndarray
    cpu_core_s: np.ndarray
    replicas_desired: np.ndarray
    replicas_ready: np.ndarray
    replicas_starting: np.ndarray
    replicas_pending: np.ndarray
    latency_sum_s: np.ndarray
    metric_value: np.ndarray
    metric_threshold: float
    cpu_request_cores: float | None


@dataclass
class ClusterOutputs:
    """What the nodes did: counts per step and instance type (long form), cost rate, pending pods, summary."""

    nodes: pd.DataFrame
    cost_usd_per_h: np.ndarray
    pods_pending: np.ndarray
    summary: dict[str, Any]


@dataclass
class Result:
    """A finished run: `timeseries` (tidy, one row per service and step), `events`, `summary`."""

    scenario_name: str
    seed: int
    step_s: float
    horizon_s: float
    traces: dict[str, ServiceTrace]
    events: pd.DataFrame
    slo_results: list[SLOResult]
    cluster: ClusterOutputs | None = None
    timeseries: pd.DataFrame = field(init=False)
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.timeseries = build_timeseries(self.traces, self.step_s)
        self.summary = build_summary(self)
        if self.cluster is not None:
            self.summary.update(self.cluster.summary)

    @property
    def nodes(self) -> pd.DataFrame | None:
        """Nodes per step by NodePool, instance type and capacity type (None when nodes are unlimited)."""
        return self.cluster.nodes if self.cluster is not None else None

    def hist(self, service: str) -> np.ndarray:
        return self.traces[service].hist


def build_timeseries(traces: dict[str, ServiceTrace], step_s: float) -> pd.DataFrame:
    frames = []
    for tr in traces.values():
        n = len(tr.offered)
        ready = tr.replicas_ready.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            pcts = {q: _chunked_quantile_ms(q, tr.hist) for q in (0.5, 0.95, 0.99)}
            cpu_per_pod = np.where(ready > 0, tr.cpu_core_s / step_s / ready, np.nan)
            util = cpu_per_pod / tr.cpu_request_cores if tr.cpu_request_cores else cpu_per_pod
        frames.append(
            pd.DataFrame(
                {
                    "time_s": np.arange(n) * step_s,
                    "service": tr.name,
                    "offered_rps": tr.offered / step_s,
                    "served_rps": tr.served / step_s,
                    "failed_rps": tr.failed / step_s,
                    "backlog": tr.backlog,
                    "replicas_desired": tr.replicas_desired,
                    "replicas_ready": tr.replicas_ready,
                    "replicas_starting": tr.replicas_starting,
                    "pods_pending": tr.replicas_pending,
                    "latency_p50_ms": pcts[0.5],
                    "latency_p95_ms": pcts[0.95],
                    "latency_p99_ms": pcts[0.99],
                    "cpu_utilization": util,
                    "metric_value": tr.metric_value,
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _chunked_quantile_ms(q: float, hist: np.ndarray, rows: int = 65536) -> np.ndarray:
    """Per-step quantiles in ms, a block of steps at a time: a month of 5 s steps would otherwise
    build several step-by-bucket temporaries at once."""
    out = np.empty(hist.shape[0])
    for start in range(0, hist.shape[0], rows):
        out[start : start + rows] = quantile(q, hist[start : start + rows]) * 1000.0
    return out


def evaluate_slos(slos: list[SLO], traces: dict[str, ServiceTrace], step_s: float) -> list[SLOResult]:
    return [
        evaluate(
            s,
            step_s=step_s,
            hist=traces[s.service].hist,
            offered=traces[s.service].offered,
            failed=traces[s.service].failed,
        )
        for s in slos
    ]


def build_summary(result: Result) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for name, tr in result.traces.items():
        total_hist = with_failures(tr.hist, tr.failed).sum(axis=0)
        offered = float(tr.offered.sum())
        ev = result.events[result.events["service"] == name] if len(result.events) else result.events
        scale_events = int((ev["action"].isin(["scale_up", "scale_down"])).sum()) if len(ev) else 0
        services[name] = {
            "offered_requests": offered,
            "served_requests": float(tr.served.sum()),
            "failed_requests": float(tr.failed.sum()),
            "failed_ratio": float(tr.failed.sum() / offered) if offered else 0.0,
            "backlog_at_end": float(tr.backlog[-1]) if len(tr.backlog) else 0.0,
            # Failures count as slower than any bucket: a percentile never looks better by failing.
            "latency_p50_ms": _ms(quantile(0.5, total_hist)),
            "latency_p95_ms": _ms(quantile(0.95, total_hist)),
            "latency_p99_ms": _ms(quantile(0.99, total_hist)),
            "pod_seconds": float((tr.replicas_ready + tr.replicas_starting).sum() * result.step_s),
            "pending_pod_seconds": float(tr.replicas_pending.sum() * result.step_s),
            "replicas_max": int(tr.replicas_desired.max()) if len(tr.replicas_desired) else 0,
            "replicas_mean": float(tr.replicas_ready.mean()) if len(tr.replicas_ready) else 0.0,
            "scale_events": scale_events,
        }
    return {
        "capsim_version": __version__,
        "scenario": result.scenario_name,
        "seed": result.seed,
        "horizon_s": result.horizon_s,
        "step_s": result.step_s,
        "services": services,
        "slos": [
            {
                "name": r.name,
                "service": r.service,
                "kind": r.kind,
                "objective": r.objective,
                "attainment": r.attainment,
                "met": r.met,
            }
            for r in result.slo_results
        ],
        "slos_met": all(r.met for r in result.slo_results),
    }


def _ms(x: np.ndarray) -> float | None:
    v = float(x)
    return None if np.isnan(v) else v * 1000.0


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=False, default=float)
