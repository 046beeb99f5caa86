"""The window a calibration reads: its times, its step, and how range queries are cut to fit the server.

Every signal is read on one grid `start + i·step` (i = 0..n), the grid a
Prometheus range query evaluates on, so signals line up sample for sample
and "interval i" always means (t[i-1], t[i]]. The step comes from the window:
as fine as the scrape interval allows for short windows, coarser for long
ones so a history stays a bounded amount of data; each range query is then
cut into chunks the server accepts (Prometheus refuses more than 11,000
points per series in one query).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from sim.errors import InputError
from sim.workload.durations import parse_duration_s

# Prometheus' hard limit on points per series in one range query (`exceeded maximum resolution`).
SERVER_MAX_POINTS = 11_000
# Points per series a whole calibration reads before the step grows: about a week at 30 s.
TARGET_POINTS = 21_000
# Steps people read on dashboards; the chosen step is the smallest of these that is fine enough.
NICE_STEPS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)

_RELATIVE = re.compile(r"^now\s*(?:-\s*(.+))?$")


def parse_time(text: str, now_s: float | None = None, what: str = "time") -> float:
    """Unix seconds from RFC 3339 (`2024-03-04T13:00:00Z`), a date, unix seconds, `now` or `now-3d`."""
    raw = text.strip()
    now_s = time.time() if now_s is None else now_s
    rel = _RELATIVE.match(raw)
    if rel:
        if rel.group(1) is None:
            return now_s
        try:
            return now_s - parse_duration_s(rel.group(1))
        except ValueError as exc:
            raise InputError(str(exc), field=what, valid="now, now-6h, now-3d") from exc
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"cannot read {text!r} as a time",
            field=what,
            valid="RFC 3339 (2024-03-04T13:00:00Z), a date (2024-03-04), unix seconds, now, now-3d",
        ) from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_step(window_s: float, scrape_interval_s: float, target_points: int = TARGET_POINTS) -> float:
    """The smallest dashboard step at least one scrape interval long that keeps the window under target.

    A step shorter than the scrape interval would sample the same scrape twice
    (and read as missed scrapes); a step far longer than needed throws away
    the resolution the latency-vs-load fit lives on.
    """
    floor = max(scrape_interval_s, window_s / target_points)
    for step in NICE_STEPS_S:
        if step >= floor - 1e-9:
            return float(step)
    return float(math.ceil(floor / 3600.0) * 3600)


@dataclass(frozen=True)
class Grid:
    """Evaluation times start, start+step, ..., the last one at or before end."""

    start_s: float
    step_s: float
    n_points: int

    @classmethod
    def over(cls, start_s: float, end_s: float, step_s: float) -> Grid:
        if end_s <= start_s:
            raise InputError(
                f"the window is empty: end {iso(end_s)} is not after start {iso(start_s)}",
                field="--end",
                valid="an end time after the start time",
            )
        if step_s <= 0:
            raise InputError(f"step must be positive, got {step_s:g} s", field="--step")
        return cls(start_s, step_s, math.floor((end_s - start_s) / step_s + 1e-9) + 1)

    @property
    def times(self) -> np.ndarray:
        return self.start_s + self.step_s * np.arange(self.n_points)

    @property
    def end_s(self) -> float:
        return self.start_s + self.step_s * (self.n_points - 1)

    @property
    def n_intervals(self) -> int:
        return self.n_points - 1

    def chunks(self, max_points: int = SERVER_MAX_POINTS) -> list[tuple[float, float]]:
        """(start, end) of consecutive range queries, each at most `max_points` grid points, no overlap."""
        if max_points < 2:
            raise InputError(
                f"max points per query must be at least 2, got {max_points}", field="--max-points"
            )
        out = []
        i = 0
        while i < self.n_points:
            j = min(i + max_points, self.n_points) - 1
            out.append((self.start_s + i * self.step_s, self.start_s + j * self.step_s))
            i = j + 1
        return out

    def index_of(self, t_s: np.ndarray) -> np.ndarray:
        """Grid indices of times that fall on the grid (within a millisecond); -1 for the others."""
        pos = (np.asarray(t_s, dtype=float) - self.start_s) / self.step_s
        idx = np.rint(pos).astype(np.int64)
        ok = (np.abs(pos - idx) * self.step_s < 1e-3) & (idx >= 0) & (idx < self.n_points)
        return np.where(ok, idx, -1)
