"""In-memory series as Prometheus holds them after scraping, shaped for fast windowed reads.

Timestamps are kept as integer milliseconds, as Prometheus stores them, so
window edges (`(t - range, t]`) compare exactly even when scrape and query
clocks line up on the same instants, which they do in a simulation.

Samples live in plain lists rather than numpy arrays: the engine interleaves
appends with queries, and the per-query work is a couple of `bisect` calls and
O(1) arithmetic, which is cheaper on lists than converting or slicing arrays.
Each series also carries a running counter-reset correction so that `rate()`
needs no loop over the window.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]
"""A label set, sorted by name; includes `__name__`. Empty values are absent, as in Prometheus."""

METRIC_NAME = "__name__"
LOOKBACK_MS = 300_000  # Prometheus' default --query.lookback-delta (5 min)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def to_ms(t_s: float) -> int:
    return round(t_s * 1000.0)


def make_labels(name: str | None, labels: Mapping[str, str]) -> Labels:
    pairs = {k: v for k, v in labels.items() if v != ""}
    if name is not None:
        pairs[METRIC_NAME] = name
    return tuple(sorted(pairs.items()))


def without_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != METRIC_NAME)


@dataclass(frozen=True)
class LabelMatcher:
    """One `name op "value"` matcher; regexes are anchored at both ends, as Prometheus anchors them."""

    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False)

    @classmethod
    def create(cls, name: str, op: str, value: str) -> LabelMatcher:
        if op in ("=~", "!~"):
            return cls(name, op, value, re.compile(value))
        if op in ("=", "!="):
            return cls(name, op, value)
        raise ValueError(f"unknown matcher operator {op!r}")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A missing label reads as the empty string, so `x=""` matches series without `x`."""
        value = labels.get(self.name, "")
        if self.regex is not None:
            hit = self.regex.fullmatch(value) is not None
            return hit if self.op == "=~" else not hit
        return (value == self.value) == (self.op == "=")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


class SeriesHandle:
    """One series; the engine keeps the handle and appends to it every scrape.

    `resets[i]` is the sum of the values just before each counter decrease up to
    sample i, so the reset-corrected increase between samples a and b is
    `values[b] - values[a] + resets[b] - resets[a]`, with no loop. It is kept
    for every series because the store does not know which ones are counters.
    """

    __slots__ = ("labels", "labels_dict", "labels_without_name", "resets", "stale_ms", "times_ms", "values")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.labels_dict = dict(labels)
        self.labels_without_name = without_name(labels)
        self.times_ms: list[int] = []
        self.values: list[float] = []
        self.resets: list[float] = []
        self.stale_ms: list[int] = []

    @property
    def name(self) -> str:
        return self.labels_dict[METRIC_NAME]

    def append(self, t_s: float, value: float) -> None:
        """Add a sample; counters are appended as cumulative totals (a decrease is a reset)."""
        t_ms = round(t_s * 1000.0)
        times = self.times_ms
        if times:
            if t_ms <= times[-1]:
                raise ValueError(
                    f"out-of-order sample for {self}: t={t_ms} ms is not after the last one at {times[-1]} ms"
                )
            prev = self.values[-1]
            self.resets.append(self.resets[-1] + prev if value < prev else self.resets[-1])
        else:
            self.resets.append(0.0)
        times.append(t_ms)
        self.values.append(float(value))

    def mark_stale(self, t_s: float) -> None:
        """Record a staleness marker, as Prometheus writes when a target or series disappears.

        An instant lookup after the marker sees no value (instead of the last one
        for up to 5 minutes); range functions ignore markers, as upstream does.
        """
        t_ms = to_ms(t_s)
        if (self.times_ms and t_ms <= self.times_ms[-1]) or (self.stale_ms and t_ms <= self.stale_ms[-1]):
            raise ValueError(f"staleness marker for {self} at {t_ms} ms is not after its last sample")
        self.stale_ms.append(t_ms)

    def __len__(self) -> int:
        return len(self.times_ms)

    def __repr__(self) -> str:
        return f"SeriesHandle({self})"

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels if k != METRIC_NAME)
        return f"{self.labels_dict.get(METRIC_NAME, '')}{{{inner}}}"


class SeriesStore:
    """All simulated series; `version` changes whenever a series is added so compiled queries re-select."""

    def __init__(self) -> None:
        self._series: dict[Labels, SeriesHandle] = {}
        self.version = 0

    def add_series(self, name: str, labels: Mapping[str, str] | None = None) -> SeriesHandle:
        """Create a series, or return the existing one with the same identity."""
        labels = labels or {}
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for key in labels:
            if key == METRIC_NAME or not _LABEL_NAME.fullmatch(key):
                raise ValueError(f"invalid label name {key!r} for metric {name}")
        identity = make_labels(name, labels)
        series = self._series.get(identity)
        if series is None:
            series = SeriesHandle(identity)
            self._series[identity] = series
            self.version += 1
        return series

    def select(self, matchers: tuple[LabelMatcher, ...] | list[LabelMatcher]) -> list[SeriesHandle]:
        """Series matching every matcher (the metric name is a `__name__` matcher), in insertion order."""
        return [s for s in self._series.values() if all(m.matches(s.labels_dict) for m in matchers)]

    def __iter__(self) -> Iterator[SeriesHandle]:
        return iter(self._series.values())

    def __len__(self) -> int:
        return len(self._series)


def latest_at(series: SeriesHandle, t_ms: int, lookback_ms: int = LOOKBACK_MS) -> float | None:
    """The value an instant selector sees at t: latest sample in (t - lookback, t], unless marked stale."""
    i = bisect_right(series.times_ms, t_ms) - 1
    if i < 0:
        return None
    t_sample = series.times_ms[i]
    if t_sample <= t_ms - lookback_ms:
        return None
    stale = series.stale_ms
    if stale:
        j = bisect_right(stale, t_ms) - 1
        if j >= 0 and stale[j] > t_sample:
            return None
    return series.values[i]
