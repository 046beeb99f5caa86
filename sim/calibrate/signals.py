"""Reading a service's signals from a source: request counts, latency histograms, gauges, pod times.

Each reader sends the few range queries a signal needs (its values and the
timestamps of the samples behind them), hands them to `history` for gaps,
resets and staleness, and returns per-interval arrays with the queries that
produced them, so every fitted number can name its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from sim.calibrate.history import CounterSignal, GaugeSignal, Issue, counter_signal, gauge_signal
from sim.calibrate.querysets import CounterSpec, GaugeSpec, HistogramSpec, selector
from sim.calibrate.source import RangeQuery, Selector, Source
from sim.calibrate.window import Grid

# Labels that tell one exporter process from another: each is reset-checked on its own before summing.
PROCESS_LABELS = ("pod", "instance")


@dataclass
class RequestCounts:
    """Requests per interval, served and failed (by the status label's error pattern)."""

    served: np.ndarray
    failed: np.ndarray
    valid: np.ndarray
    selector: Selector
    queries: list[str]
    issues: list[Issue] = field(default_factory=list)

    @property
    def offered(self) -> np.ndarray:
        return np.where(self.valid, self.served + self.failed, np.nan)


@dataclass
class Histogram:
    """A latency histogram per interval: non-cumulative bucket counts (+Inf last) and `_sum`, in seconds."""

    name: str
    spec: HistogramSpec
    bounds_s: np.ndarray
    counts: np.ndarray
    sums_s: np.ndarray
    valid: np.ndarray
    selector: Selector
    queries: list[str]
    issues: list[Issue] = field(default_factory=list)

    @property
    def observations(self) -> np.ndarray:
        return np.where(self.valid, self.counts.sum(axis=1), np.nan)


def _counter(
    source: Source,
    sel: Selector,
    stamp_sel: Selector,
    target: str | None,
    grid: Grid,
    signal: str,
    scrape_s: float,
) -> tuple[CounterSignal, list[str]]:
    by = ((target,) if target else ()) + PROCESS_LABELS
    values = RangeQuery(sel, "sum", by)
    stamps = RangeQuery(stamp_sel, "max", PROCESS_LABELS, timestamps=True)
    sig = counter_signal(
        source.range(values, grid), source.range(stamps, grid), grid, signal, target, scrape_s
    )
    return sig, [values.promql(), stamps.promql()]


def read_requests(
    source: Source,
    counter: CounterSpec | None,
    histogram: HistogramSpec | None,
    variables: dict[str, str],
    grid: Grid,
    scrape_s: float,
) -> RequestCounts | None:
    """Requests from a counter, or from a histogram's `_count` when the convention has no counter (OTel)."""
    if counter is not None:
        sel = selector(counter.metric, counter.matchers, variables)
        status, pattern = counter.status_label, counter.error_regex
    elif histogram is not None:
        sel = selector(histogram.metric + "_count", histogram.matchers, variables)
        status, pattern = histogram.status_label, histogram.error_regex
    else:
        return None
    sig, queries = _counter(source, sel, sel, status, grid, sel.metric, scrape_s)
    if not sig.increases:
        return None
    errors = re.compile(pattern)
    failed = np.zeros(grid.n_intervals)
    served = np.zeros(grid.n_intervals)
    for key, inc in sig.increases.items():
        if status and errors.fullmatch(key):
            failed += np.nan_to_num(inc)
        else:
            served += np.nan_to_num(inc)
    return RequestCounts(
        np.where(sig.valid, served, np.nan),
        np.where(sig.valid, failed, np.nan),
        sig.valid,
        sel,
        queries,
        sig.issues,
    )


def read_histogram(
    source: Source, spec: HistogramSpec, variables: dict[str, str], grid: Grid, scrape_s: float
) -> Histogram | None:
    base = selector(spec.metric, spec.matchers, variables)
    count_sel = base.with_metric(spec.metric + "_count")
    buckets, q_buckets = _counter(
        source,
        base.with_metric(spec.metric + "_bucket"),
        count_sel,
        "le",
        grid,
        spec.metric + "_bucket",
        scrape_s,
    )
    if not buckets.increases:
        return None
    sums, q_sums = _counter(
        source, base.with_metric(spec.metric + "_sum"), count_sel, None, grid, spec.metric + "_sum", scrape_s
    )
    les = {key: float(key) for key in buckets.increases}
    finite = sorted((v, k) for k, v in les.items() if np.isfinite(v))
    inf_key = next((k for k, v in les.items() if np.isinf(v)), None)
    if inf_key is None:
        return None
    cumulative = np.column_stack([buckets.increases[k] for _, k in finite] + [buckets.increases[inf_key]])
    counts = np.clip(
        np.diff(np.concatenate((np.zeros((grid.n_intervals, 1)), cumulative), axis=1), axis=1), 0.0, None
    )
    valid = buckets.valid & sums.valid
    sums_s = sums.total() * spec.unit_s
    return Histogram(
        spec.metric,
        spec,
        np.array([v for v, _ in finite]) * spec.unit_s,
        np.where(valid[:, None], counts, np.nan),
        np.where(valid, sums_s, np.nan),
        valid,
        base,
        q_buckets + q_sums,
        buckets.issues + [i for i in sums.issues if i.kind == "nan"],
    )


def read_gauge(
    source: Source, spec: GaugeSpec, variables: dict[str, str], grid: Grid, scrape_s: float, agg: str = "max"
) -> tuple[GaugeSignal, Selector, list[str]]:
    sel = selector(spec.metric, spec.matchers, variables)
    values = RangeQuery(sel, agg, ())  # type: ignore[arg-type]
    stamps = RangeQuery(sel, "max", (), timestamps=True)
    v = source.range(values, grid)
    s = source.range(stamps, grid)
    sig = gauge_signal(v[0] if v else None, s[0] if s else None, grid, spec.metric, scrape_s)
    return sig, sel, [values.promql(), stamps.promql()]


def read_cpu(
    source: Source, spec: CounterSpec, variables: dict[str, str], grid: Grid, scrape_s: float
) -> tuple[CounterSignal, Selector, list[str]]:
    sel = selector(spec.metric, spec.matchers, variables)
    sig, queries = _counter(source, sel, sel, None, grid, spec.metric, scrape_s)
    return sig, sel, queries


def read_last_per_pod(
    source: Source, spec: GaugeSpec, variables: dict[str, str], grid: Grid
) -> tuple[dict[str, tuple[float, float]], Selector, str]:
    """Per pod: the last value its series had in the window and when that sample was taken.

    For kube_pod_created and friends the value is a time itself; the sample
    time says how long the pod was still there (the series ends with the pod).
    """
    sel = selector(spec.metric, spec.matchers, variables)
    query = RangeQuery(sel, "max", ("pod",))
    stamps = {
        s.labels.get("pod"): s for s in source.range(RangeQuery(sel, "max", ("pod",), timestamps=True), grid)
    }
    out = {}
    for s in source.range(query, grid):
        idx = np.flatnonzero(s.present & np.isfinite(s.values))
        pod = s.labels.get("pod")
        if len(idx) and pod is not None:
            seen = stamps.get(pod)
            last_t = float(seen.values[idx[-1]]) if seen is not None else float(grid.times[idx[-1]])
            out[pod] = (float(s.values[idx[-1]]), last_t)
    return out, sel, query.promql()


INSTANCE_TYPE_LABEL = "label_node_kubernetes_io_instance_type"


def instance_types(source: Source, spec: GaugeSpec, variables: dict[str, str], grid: Grid) -> dict[str, int]:
    """Instance types the nodes ran on in the window, with the most nodes of each seen at once."""
    sel = selector(spec.metric, spec.matchers, variables)
    out = {}
    for s in source.range(RangeQuery(sel, "count", (INSTANCE_TYPE_LABEL,)), grid):
        kind = s.labels.get(INSTANCE_TYPE_LABEL)
        if kind and s.present.any():
            out[kind] = int(np.nanmax(np.where(s.present, s.values, np.nan)))
    return dict(sorted(out.items()))
