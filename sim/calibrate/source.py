"""Where a history comes from: a Prometheus server or a recorded file, read the same way.

Calibration and backtest ask a `Source` for a handful of range queries of one
shape, `agg by (labels) (selector)` or `agg by (labels) (timestamp(selector))`,
evaluated on one grid. The Prometheus source sends them as PromQL
(`sim.calibrate.client`); the file source evaluates them here over the parsed
samples with Prometheus' own rules (the latest sample within the 5-minute
lookback, NaN kept as a value, absent when nothing is fresh), so a history
gives the same numbers whether it sits in a file or was backfilled into a
server. Raw series rather than `rate()` come back on purpose: gaps, counter
resets and stale series must be seen to be reported (`sim.calibrate.history`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from sim.calibrate.openmetrics import History, RawSeries, read_openmetrics
from sim.calibrate.window import Grid, iso
from sim.errors import ExternalError
from sim.metrics.tsdb import LOOKBACK_MS, LabelMatcher

LOOKBACK_S = LOOKBACK_MS / 1000.0
Aggregation = Literal["sum", "max", "count"]


@dataclass(frozen=True)
class Selector:
    """`metric{label op "value", ...}`."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...] = ()

    def promql(self) -> str:
        inner = ",".join(str(LabelMatcher(k, op, v)) for k, op, v in self.matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric

    def label_matchers(self) -> list[LabelMatcher]:
        return [LabelMatcher.create("__name__", "=", self.metric)] + [
            LabelMatcher.create(k, op, v) for k, op, v in self.matchers
        ]

    def with_metric(self, metric: str) -> Selector:
        return Selector(metric, self.matchers)


@dataclass(frozen=True)
class RangeQuery:
    """`agg by (by) (selector)`, or of `timestamp(selector)` when `timestamps` is set.

    `timestamp()` gives the time of the sample each grid point actually reads,
    which is how repeated (stale) samples and missed scrapes are told apart
    from real values.
    """

    selector: Selector
    agg: Aggregation = "sum"
    by: tuple[str, ...] = ()
    timestamps: bool = False

    def promql(self) -> str:
        inner = self.selector.promql()
        if self.timestamps:
            inner = f"timestamp({inner})"
        grouping = f" by ({', '.join(self.by)})" if self.by else ""
        return f"{self.agg}{grouping} ({inner})"


@dataclass
class GridSeries:
    """One output series of a range query: its group labels and a value per grid point (NaN: absent).

    `present` separates "no sample" from a sample whose value is NaN.
    """

    labels: dict[str, str]
    values: np.ndarray
    present: np.ndarray


class Source(Protocol):
    """What calibration and backtest need from a history."""

    @property
    def description(self) -> str:
        """Where the data comes from, safe to print (no credentials)."""
        ...

    def series(self, selectors: Sequence[Selector], start_s: float, end_s: float) -> list[dict[str, str]]:
        """Label sets (with `__name__`) of the series matching any selector in the window."""
        ...

    def scrape_interval_s(self, selector: Selector, start_s: float, end_s: float) -> float | None:
        """The median spacing of the selector's raw samples in the window; None without two samples."""
        ...

    def range(self, query: RangeQuery, grid: Grid) -> list[GridSeries]:
        """The query evaluated at every grid time."""
        ...

    def extent(self) -> tuple[float, float] | None:
        """First and last sample time when the source knows it cheaply (files), else None."""
        ...


class FileSource:
    """A recorded history file evaluated locally with Prometheus' instant-vector rules."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.history: History = read_openmetrics(self.path)
        self._by_name: dict[str, list[RawSeries]] = {}
        for s in self.history.series:
            self._by_name.setdefault(s.name, []).append(s)

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def extent(self) -> tuple[float, float] | None:
        return self.history.extent()

    def _select(self, selector: Selector) -> list[RawSeries]:
        matchers = selector.label_matchers()[1:]
        return [
            s for s in self._by_name.get(selector.metric, []) if all(m.matches(s.labels) for m in matchers)
        ]

    def series(self, selectors: Sequence[Selector], start_s: float, end_s: float) -> list[dict[str, str]]:
        out = []
        for sel in selectors:
            for s in self._select(sel):
                if len(s.t_s) and s.t_s[0] <= end_s and s.t_s[-1] >= start_s - LOOKBACK_S:
                    out.append({"__name__": s.name, **s.labels})
        return out

    def scrape_interval_s(self, selector: Selector, start_s: float, end_s: float) -> float | None:
        gaps = []
        for s in self._select(selector):
            inside = s.t_s[(s.t_s >= start_s) & (s.t_s <= end_s)]
            if len(inside) > 1:
                gaps.append(np.diff(inside))
        if not gaps:
            return None
        return float(np.median(np.concatenate(gaps)))

    def range(self, query: RangeQuery, grid: Grid) -> list[GridSeries]:
        times = grid.times
        groups: dict[tuple[str, ...], list[tuple[np.ndarray, np.ndarray]]] = {}
        for s in self._select(query.selector):
            idx = np.searchsorted(s.t_s, times, side="right") - 1
            safe = np.maximum(idx, 0)
            fresh = (idx >= 0) & (times - s.t_s[safe] < LOOKBACK_S)
            if not fresh.any():
                continue
            values = s.t_s[safe] if query.timestamps else s.values[safe]
            key = tuple(s.labels.get(label, "") for label in query.by)
            groups.setdefault(key, []).append((np.where(fresh, values, 0.0), fresh))
        out = []
        for key, members in groups.items():
            stacked = np.stack([v for v, _ in members])
            fresh = np.stack([f for _, f in members])
            present: np.ndarray = np.asarray(fresh.any(axis=0))
            if query.agg == "sum":
                agg = stacked.sum(axis=0)
            elif query.agg == "max":
                agg = np.where(fresh, stacked, -np.inf).max(axis=0)
            else:
                agg = fresh.sum(axis=0).astype(float)
            labels = {k: v for k, v in zip(query.by, key, strict=True) if v != ""}
            out.append(GridSeries(labels, np.where(present, agg, np.nan), present))
        return out


def require_data(
    found: Sequence[object], what: str, query: str, source: Source, start_s: float, end_s: float
) -> None:
    """Turn an empty answer into the clear external failure the user needs (exit 3)."""
    if not found:
        raise ExternalError(
            f"{source.description}: no data for {what} between {iso(start_s)} and {iso(end_s)} "
            f"(query: {query}); check the window, the service and namespace names, or give a query file"
        )
