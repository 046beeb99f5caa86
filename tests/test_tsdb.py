"""The simulated TSDB: series identity, ordered appends, matchers, lookback and staleness."""

from __future__ import annotations

import pytest

from sim.metrics.tsdb import LabelMatcher, SeriesStore, latest_at


def test_series_identity_is_name_plus_labels_and_add_is_idempotent() -> None:
    store = SeriesStore()
    a = store.add_series("requests_total", {"service": "front", "pod": "p1"})
    version = store.version
    again = store.add_series("requests_total", {"pod": "p1", "service": "front"})
    other = store.add_series("requests_total", {"service": "front", "pod": "p2"})
    assert again is a
    assert other is not a
    assert store.version == version + 1
    assert len(store) == 2
    assert a.labels == (("__name__", "requests_total"), ("pod", "p1"), ("service", "front"))
    assert str(a) == 'requests_total{pod="p1",service="front"}'


def test_empty_label_value_means_absent() -> None:
    store = SeriesStore()
    a = store.add_series("up", {"zone": ""})
    assert a is store.add_series("up")
    assert a.labels == (("__name__", "up"),)


@pytest.mark.parametrize(
    ("name", "labels"),
    [("1bad", {}), ("ok", {"__name__": "x"}), ("ok", {"bad-label": "x"})],
)
def test_invalid_names_are_rejected(name: str, labels: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        SeriesStore().add_series(name, labels)


def test_appends_must_move_forward_in_time() -> None:
    series = SeriesStore().add_series("x")
    series.append(10.0, 1.0)
    with pytest.raises(ValueError, match="out-of-order"):
        series.append(10.0, 2.0)
    with pytest.raises(ValueError, match="out-of-order"):
        series.append(5.0, 2.0)
    series.append(10.001, 2.0)
    assert series.times_ms == [10_000, 10_001]


def test_reset_correction_accumulates_value_before_each_decrease() -> None:
    series = SeriesStore().add_series("c_total")
    for t, v in enumerate([5.0, 7.0, 2.0, 3.0, 1.0, 1.0]):
        series.append(float(t), v)
    assert series.resets == [0.0, 0.0, 7.0, 7.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("=", "front", ["front"]),
        ("!=", "front", ["back", "frontend", ""]),
        ("=~", "front", ["front"]),  # anchored: does not match "frontend"
        ("=~", "front.*", ["front", "frontend"]),
        ("!~", "front|back", ["frontend", ""]),
        ("=", "", [""]),  # a missing label matches the empty string
        ("=~", ".*", ["front", "back", "frontend", ""]),
        ("!=", "", ["front", "back", "frontend"]),
    ],
)
def test_label_matchers(op: str, value: str, expected: list[str]) -> None:
    store = SeriesStore()
    for svc in ("front", "back", "frontend", ""):
        store.add_series("req_total", {"service": svc})
    matcher = LabelMatcher.create("service", op, value)
    name = LabelMatcher.create("__name__", "=", "req_total")
    got = [s.labels_dict.get("service", "") for s in store.select([name, matcher])]
    assert got == expected


def test_lookback_is_left_open_five_minutes_and_respects_staleness_markers() -> None:
    series = SeriesStore().add_series("g")
    series.append(100.0, 1.0)
    lookback_ms = 300_000
    assert latest_at(series, 99_999, lookback_ms) is None
    assert latest_at(series, 100_000, lookback_ms) == 1.0
    assert latest_at(series, 399_999, lookback_ms) == 1.0
    assert latest_at(series, 400_000, lookback_ms) is None
    series.mark_stale(130.0)
    assert latest_at(series, 129_999, lookback_ms) == 1.0
    assert latest_at(series, 130_000, lookback_ms) is None
    series.append(160.0, 2.0)
    assert latest_at(series, 150_000, lookback_ms) is None
    assert latest_at(series, 160_000, lookback_ms) == 2.0
    with pytest.raises(ValueError, match="staleness marker"):
        series.mark_stale(160.0)
