"""Export a run as Prometheus series, so Grafana shows simulated and real side by side.

The series carry the same metric names and labels as the real ones (the
app's request counter and latency histogram as its exporter and the
ServiceMonitor produce them; kube-state-metrics' Deployment and HPA gauges;
kube_node_labels for nodes), plus `source="capsim"` and `run="<id>"`, so a
dashboard selects them with one extra matcher and they never collide with
the real series. The output is OpenMetrics text, which
`promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks that a
Prometheus serves beside its own data.

Counters are cumulative from the run's start, as a real exporter's are, so
`rate()` and `histogram_quantile()` over them give the simulated rates and
percentiles. Timestamps are anchored at `start` (default: now minus the
horizon, so the run ends now and sits inside the default retention).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import InputError
from sim.latency import BUCKETS_S

SOURCE = "capsim"
_BUCKET_LABELS = [repr(float(b)) for b in BUCKETS_S] + ["+Inf"]
# A representative latency per bucket, for `_sum` when the run did not keep the exact sum:
# the bucket's midpoint, and for +Inf the largest finite bound.
_MIDPOINTS_S = np.append((np.concatenate([[0.0], BUCKETS_S[:-1]]) + BUCKETS_S) / 2.0, BUCKETS_S[-1])


@dataclass(frozen=True)
class ExportStats:
    path: Path
    series: int
    samples: int
    start: datetime
    run: str


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _num(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else repr(float(x))


class _Writer:
    """Writes metric families one after the other (OpenMetrics wants each family's samples together)."""

    def __init__(self, f: Any, common: dict[str, str]) -> None:
        self.f = f
        self.common = common
        self.series = 0
        self.samples = 0

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.f.write(f"# TYPE {name} {kind}\n# HELP {name} {_escape(help_text)}\n")

    def counter(
        self, name: str, labels: dict[str, str], t0: float, times_s: np.ndarray, values: np.ndarray
    ) -> None:
        """A counter starts at 0 when the run starts, so increase() over the first interval is right too."""
        self.series_values(name, labels, np.append(t0, times_s), np.append(0.0, values))

    def series_values(
        self, name: str, labels: dict[str, str], times_s: np.ndarray, values: np.ndarray
    ) -> None:
        text = name + _labels({**labels, **self.common})
        self.f.writelines(f"{text} {_num(v)} {t:.3f}\n" for t, v in zip(times_s, values, strict=True))
        self.series += 1
        self.samples += len(values)


def _read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    def need(name: str) -> Path:
        path = run_dir / name
        if not path.is_file():
            raise InputError(
                f"{name} is missing", file=run_dir, valid="a run directory written by `capsim run`"
            )
        return path

    identity = json.loads(need("metrics.json").read_text())
    ts = pd.read_parquet(need("timeseries.parquet"))
    hist = pd.read_parquet(need("latency_histogram.parquet"))
    nodes_path = run_dir / "nodes.parquet"
    nodes = pd.read_parquet(nodes_path) if nodes_path.is_file() else None
    return identity, ts, hist, nodes


def export_openmetrics(
    run_dir: Path,
    out: Path,
    *,
    start: datetime | None = None,
    run: str | None = None,
    interval_s: float | None = None,
) -> ExportStats:
    """Write the run in `run_dir` as OpenMetrics text to `out` (atomically).

    `interval_s` thins the samples to a scrape-like interval (a multiple of
    the run's step; default 30 s or the step when coarser); counters stay
    exact because they are cumulative.
    """
    identity, ts, hist, nodes = _read_run(run_dir)
    step_s = float(identity["step_s"])
    horizon_s = float(identity["horizon_s"])
    every = max(1, round((interval_s or max(30.0, step_s)) / step_s))
    if start is None:
        start = datetime.fromtimestamp(math.floor(datetime.now(UTC).timestamp() - horizon_s), UTC)
    t0 = start.timestamp()
    run_label = run or f"{identity['scenario']}/{run_dir.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as f:
            w = _Writer(f, {"source": SOURCE, "run": run_label})
            services = identity["services"]
            frames = {name: ts[ts["service"] == name].reset_index(drop=True) for name in services}
            hists = {name: hist[hist["service"] == name].reset_index(drop=True) for name in services}
            _requests(w, services, frames, hists, step_s, every, t0)
            _latency(w, services, hists, step_s, every, t0)
            _workload_gauges(w, services, frames, step_s, every, t0)
            if nodes is not None and len(nodes):
                _nodes(w, nodes, step_s, every, t0)
            f.write("# EOF\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportStats(out, w.series, w.samples, start, run_label)


def _thin(n: int, every: int) -> np.ndarray:
    """Indices of the kept steps: every `every`-th, and always the last."""
    idx = np.arange(every - 1, n, every)
    return idx if len(idx) and idx[-1] == n - 1 else np.append(idx, n - 1)


def _end_times(n: int, step_s: float, every: int, t0: float) -> tuple[np.ndarray, np.ndarray]:
    """Counters are read at the end of a step: what was counted during steps 0..i."""
    idx = _thin(n, every)
    return idx, t0 + (idx + 1) * step_s


def _requests(
    w: _Writer,
    services: dict[str, Any],
    frames: dict[str, pd.DataFrame],
    hists: dict[str, pd.DataFrame],
    step_s: float,
    every: int,
    t0: float,
) -> None:
    by_name: dict[str, list[str]] = {}
    for svc, ident in services.items():
        by_name.setdefault(ident["requests_total"], []).append(svc)
    for name, svcs in by_name.items():
        family, kind = (
            (name.removesuffix("_total"), "counter") if name.endswith("_total") else (name, "unknown")
        )
        w.family(family, kind, "requests handled, by status code (simulated by capsim)")
        for svc in svcs:
            frame = frames[svc]
            idx, times = _end_times(len(frame), step_s, every, t0)
            served = np.cumsum(hists[svc][_BUCKET_LABELS].to_numpy().sum(axis=1))
            failed = np.cumsum(frame["failed_rps"].to_numpy() * step_s)
            labels = dict(services[svc]["labels"])
            w.counter(name, {**labels, "code": "200"}, t0, times, served[idx])
            w.counter(name, {**labels, "code": "503"}, t0, times, failed[idx])


def _latency(
    w: _Writer, services: dict[str, Any], hists: dict[str, pd.DataFrame], step_s: float, every: int, t0: float
) -> None:
    by_name: dict[str, list[str]] = {}
    for svc, ident in services.items():
        by_name.setdefault(ident["duration"], []).append(svc)
    for name, svcs in by_name.items():
        w.family(name, "histogram", "request latency of served requests (simulated by capsim)")
        for svc in svcs:
            h = hists[svc]
            counts = h[_BUCKET_LABELS].to_numpy(dtype=float)
            idx, times = _end_times(len(h), step_s, every, t0)
            cum = np.cumsum(np.cumsum(counts, axis=1), axis=0)  # cumulative over buckets (le), then over time
            labels = dict(services[svc]["labels"])
            for j, le in enumerate(_BUCKET_LABELS):
                w.counter(f"{name}_bucket", {**labels, "le": le}, t0, times, cum[idx, j])
            if "latency_sum_s" in h.columns:
                per_step_sum = h["latency_sum_s"].to_numpy(dtype=float)
            else:
                per_step_sum = counts @ _MIDPOINTS_S
            w.counter(f"{name}_sum", labels, t0, times, np.cumsum(per_step_sum)[idx])
            w.counter(f"{name}_count", labels, t0, times, cum[idx, -1])


def _workload_gauges(
    w: _Writer,
    services: dict[str, Any],
    frames: dict[str, pd.DataFrame],
    step_s: float,
    every: int,
    t0: float,
) -> None:
    """kube-state-metrics' view: gauges sampled at the start of each kept step."""

    def gauge(name: str, help_text: str, label: str, column: str | tuple[str, ...]) -> None:
        w.family(name, "gauge", help_text)
        for svc, ident in services.items():
            frame = frames[svc]
            idx = _thin(len(frame), every)
            cols = (column,) if isinstance(column, str) else column
            values = sum(frame[c].to_numpy(dtype=float) for c in cols)
            labels = {"namespace": ident["namespace"], label: ident[label]}
            w.series_values(name, labels, t0 + idx * step_s, np.asarray(values)[idx])

    gauge(
        "kube_deployment_spec_replicas",
        "replicas the Deployment asks for (simulated by capsim)",
        "deployment",
        "replicas_desired",
    )
    gauge(
        "kube_deployment_status_replicas_ready",
        "ready replicas (simulated by capsim)",
        "deployment",
        "replicas_ready",
    )
    gauge(
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "replicas the HPA wants (simulated by capsim)",
        "horizontalpodautoscaler",
        "replicas_desired",
    )
    gauge(
        "kube_horizontalpodautoscaler_status_current_replicas",
        "replicas the HPA sees running, ready or not (simulated by capsim)",
        "horizontalpodautoscaler",
        ("replicas_ready", "replicas_starting"),
    )


def _node_slots(nodes: pd.DataFrame) -> Iterator[tuple[dict[str, str], np.ndarray]]:
    """A synthetic node per (pool, type, capacity type, slot), present while the count exceeds the slot."""
    keys = [c for c in ("nodepool", "instance_type", "capacity_type") if c in nodes.columns]
    for key, group in nodes.groupby(keys, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        desc = dict(zip(keys, map(str, values), strict=True))
        counts = group.set_index("time_s")["nodes"]
        for slot in range(int(counts.max())):
            present = (counts > slot).astype(float)
            labels = {
                "node": "capsim-" + "-".join(desc.values()) + f"-{slot}",
                "label_node_kubernetes_io_instance_type": desc.get("instance_type", ""),
                "label_karpenter_sh_nodepool": desc.get("nodepool", ""),
                "label_karpenter_sh_capacity_type": desc.get("capacity_type", ""),
            }
            yield labels, present.reindex(sorted(nodes["time_s"].unique()), fill_value=0.0).to_numpy()


def _nodes(w: _Writer, nodes: pd.DataFrame, step_s: float, every: int, t0: float) -> None:
    """Nodes as kube_node_labels, so `count by (label_node_kubernetes_io_instance_type)` works unchanged.

    A node that is gone has no sample (rather than 0): kube_node_labels only
    exists while the node does.
    """
    w.family("kube_node_labels", "gauge", "nodes by instance type and NodePool (simulated by capsim)")
    times = np.sort(nodes["time_s"].unique())
    idx = _thin(len(times), every)
    for labels, present in _node_slots(nodes):
        keep = idx[present[idx] > 0]
        if len(keep):
            w.series_values("kube_node_labels", labels, t0 + times[keep], np.ones(len(keep)))


def parse_start(text: str) -> datetime:
    """An ISO 8601 time (naive means UTC) or a Unix timestamp in seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(
            f"cannot read {text!r} as a time", field="--start", valid="ISO 8601 or Unix seconds"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
