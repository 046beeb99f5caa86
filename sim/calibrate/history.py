"""Turning raw series on the grid into per-interval signals, and saying what was wrong with them.

Real histories have holes. A scrape is missed, an exporter restarts and its
counters start again from zero, kube-state-metrics stops for an hour, a
gauge reads NaN. Each is detected, handled the way Prometheus' own `rate()`
would where that is right, and recorded as an `Issue` that ends up in the
model file; nothing is silently averaged over:

- **Counter resets** (a value lower than the one before): the increase is the
  new value, as `rate()` counts it. Reported with time and series.
- **Missed scrapes**: `timestamp()` tells whether a grid point read a new
  sample or repeated the previous one. One missed scrape (or scrape jitter)
  is spread over the intervals it spans; a longer hole is a **gap**: those
  intervals are unknown (NaN), excluded from every fit, and reported.
- **NaN samples** are missing samples, reported by count.
- **Stale series**: a signal whose last fresh sample is well before the end
  of the window (or whose first is well after its start) is unknown there,
  not zero.

Several series of one signal (one per pod or exporter instance) are handled
one by one and then summed: a pod that goes away is not a counter reset, and
an interval where any live series has a gap is unknown for the sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sim.calibrate.source import GridSeries
from sim.calibrate.window import Grid, iso

IssueKind = Literal["gap", "counter_reset", "nan", "stale", "missing", "too_short", "censored"]
# A hole longer than this many scrape intervals is a gap rather than a missed scrape to spread over.
GAP_SCRAPES = 2.5


@dataclass
class Issue:
    """Something wrong with the history, and what calibration did about it."""

    kind: IssueKind
    signal: str
    detail: str
    action: str
    start_s: float | None = None
    end_s: float | None = None
    count: int = 1

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "signal": self.signal, "detail": self.detail}
        if self.start_s is not None:
            out["start"] = iso(self.start_s)
        if self.end_s is not None:
            out["end"] = iso(self.end_s)
        if self.count != 1:
            out["count"] = self.count
        out["action"] = self.action
        return out


@dataclass
class CounterSignal:
    """Per-interval increases of a counter, per target label value (e.g. per `le` or status code).

    `valid[i]` is False where interval i is unknown (gap, stale, before the
    data starts); increases there are NaN.
    """

    increases: dict[str, np.ndarray]
    valid: np.ndarray
    issues: list[Issue] = field(default_factory=list)

    def total(self) -> np.ndarray:
        if not self.increases:
            return np.full(len(self.valid), np.nan)
        out = np.sum(list(self.increases.values()), axis=0)
        return np.where(self.valid, out, np.nan)


@dataclass
class GaugeSignal:
    """A gauge at the grid points (NaN where missing or stale) and per interval (mean of its two ends)."""

    points: np.ndarray
    issues: list[Issue] = field(default_factory=list)

    @property
    def intervals(self) -> np.ndarray:
        a, b = self.points[:-1], self.points[1:]
        both = np.isfinite(a) & np.isfinite(b)
        return np.where(both, 0.5 * (a + b), np.where(np.isfinite(a), a, b))


def _key(labels: dict[str, str], drop: str | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def _describe(signal: str, process: tuple[tuple[str, str], ...]) -> str:
    if not process:
        return signal
    return signal + "{" + ",".join(f'{k}="{v}"' for k, v in process) + "}"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where mask is True."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def fresh_points(stamps: GridSeries) -> np.ndarray:
    """Grid points that read a sample no earlier point read (the rest repeat an old sample)."""
    ts = stamps.values
    new = stamps.present.copy()
    new[1:] &= ~(stamps.present[:-1] & (ts[1:] == ts[:-1]))
    return new


def counter_signal(
    values: Iterable[GridSeries],
    stamps: Iterable[GridSeries],
    grid: Grid,
    signal: str,
    target: str | None,
    scrape_s: float,
) -> CounterSignal:
    """Increases per interval of a counter read as `sum by (target, process labels)` plus its timestamps."""
    n = grid.n_intervals
    gap_limit = max(GAP_SCRAPES * scrape_s, 1.5 * grid.step_s)
    fresh_by_process = {_key(s.labels, None): fresh_points(s) for s in stamps}
    increases: dict[str, np.ndarray] = {}
    covered = np.zeros(n, dtype=bool)
    unknown = np.zeros(n, dtype=bool)
    issues: list[Issue] = []
    gaps_seen: set[tuple[tuple[tuple[str, str], ...], int]] = set()
    resets_seen: dict[tuple[tuple[str, str], ...], list[int]] = {}
    nan_count = 0
    for s in values:
        process = _key(s.labels, target)
        fresh = fresh_by_process.get(process)
        if fresh is None:
            fresh = s.present
        finite = np.isfinite(s.values)
        nan_count += int(np.sum(fresh & s.present & ~finite))
        points = np.flatnonzero(fresh & s.present & finite)
        inc = np.zeros(n)
        if len(points) >= 2:
            v = s.values[points]
            dv = np.diff(v)
            reset = dv < 0
            dv = np.where(reset, v[1:], dv)
            spans = np.diff(points)
            long_hole = spans * grid.step_s > gap_limit
            per_interval = np.repeat(np.where(long_hole, np.nan, dv / spans), spans)
            inc[points[0] : points[-1]] = per_interval
            covered[points[0] : points[-1]] = True
            hole = np.isnan(inc)
            unknown |= hole
            for a, b in _runs(hole):
                if (process, a) not in gaps_seen:
                    gaps_seen.add((process, a))
                    issues.append(
                        Issue(
                            "gap",
                            _describe(signal, process),
                            f"no fresh samples for {(b - a) * grid.step_s:g} s",
                            "intervals left unknown: excluded from fits, not interpolated",
                            float(grid.times[a]),
                            float(grid.times[b]),
                        )
                    )
            for i in np.flatnonzero(reset).tolist():
                resets_seen.setdefault(process, []).append(int(points[i + 1]))
        key = s.labels.get(target, "") if target else ""
        increases[key] = increases.get(key, np.zeros(n)) + np.nan_to_num(inc)
    for process, at in resets_seen.items():
        unique = sorted(set(at))
        issues.append(
            Issue(
                "counter_reset",
                _describe(signal, process),
                f"{len(unique)} counter reset(s) (first at {iso(float(grid.times[unique[0]]))})",
                "increase after a reset counted from zero, as rate() does",
                float(grid.times[unique[0]]),
                float(grid.times[unique[-1]]),
                len(unique),
            )
        )
    if nan_count:
        issues.append(
            Issue("nan", signal, f"{nan_count} NaN sample(s)", "treated as missing samples", count=nan_count)
        )
    valid = covered & ~unknown
    issues.extend(_edges(covered, grid, signal, scrape_s))
    return CounterSignal({k: np.where(valid, v, np.nan) for k, v in increases.items()}, valid, issues)


def _edges(covered: np.ndarray, grid: Grid, signal: str, scrape_s: float) -> list[Issue]:
    """Stale tail and late start of a whole signal (holes inside are reported per series as gaps)."""
    n = len(covered)
    if not covered.any():
        return [Issue("missing", signal, "no usable samples in the window", "signal not used")]
    slack = max(2, int(np.ceil(GAP_SCRAPES * scrape_s / grid.step_s)))
    first, last = int(np.argmax(covered)), int(n - np.argmax(covered[::-1]))
    out = []
    if first >= slack:
        out.append(
            Issue(
                "missing",
                signal,
                f"no data before {iso(float(grid.times[first]))}",
                "earlier intervals unknown",
                grid.start_s,
                float(grid.times[first]),
            )
        )
    if n - last >= slack:
        out.append(
            Issue(
                "stale",
                signal,
                f"stopped updating at {iso(float(grid.times[last]))}",
                "later intervals unknown, not zero",
                float(grid.times[last]),
                grid.end_s,
            )
        )
    return out


def gauge_signal(
    values: GridSeries | None, stamps: GridSeries | None, grid: Grid, signal: str, scrape_s: float
) -> GaugeSignal:
    """A gauge on the grid with points that only repeat an old sample (past the gap limit) blanked."""
    if values is None:
        return GaugeSignal(
            np.full(grid.n_points, np.nan),
            [Issue("missing", signal, "no series in the window", "signal not used")],
        )
    points = np.where(values.present, values.values, np.nan)
    issues: list[Issue] = []
    nan_count = int(np.sum(values.present & np.isnan(values.values)))
    if nan_count:
        issues.append(
            Issue("nan", signal, f"{nan_count} NaN sample(s)", "treated as missing", count=nan_count)
        )
    if stamps is not None:
        age = grid.times - np.where(stamps.present, stamps.values, -np.inf)
        stale = values.present & (age > max(GAP_SCRAPES * scrape_s, 1.5 * grid.step_s))
        points = np.where(stale, np.nan, points)
        for a, b in _runs(stale):
            if a == 0 or b == grid.n_points:
                continue  # a stale start or end is reported once below, for the whole signal
            issues.append(
                Issue(
                    "stale",
                    signal,
                    f"repeats a sample older than {GAP_SCRAPES:g} scrape intervals "
                    f"for {(b - a) * grid.step_s:g} s",
                    "points left unknown",
                    float(grid.times[a]),
                    float(grid.times[b]),
                )
            )
    covered = np.isfinite(points[1:]) | np.isfinite(points[:-1])
    if covered.any():
        issues.extend(_edges(covered, grid, signal, scrape_s))
    else:
        issues.append(Issue("missing", signal, "no usable samples in the window", "signal not used"))
    return GaugeSignal(points, issues)
