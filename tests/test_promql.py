"""PromQL evaluator: Prometheus 3.x semantics on small hand-computed series, and the errors for the rest.

Expected values in RATE_CASES were worked out by hand from upstream's
extrapolatedRate/instantValue rules (window (t - range, t], extrapolation
limited to 1.1x the average spacing else half a spacing, counters not below
zero); each case names the rule it exercises.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from sim.errors import InputError
from sim.latency import BUCKETS_S, quantile
from sim.metrics.promql import QueryError, bucket_quantile, compile_query
from sim.metrics.tsdb import SeriesStore


def store_with(points: dict[str, list[tuple[float, float]]]) -> SeriesStore:
    """`points` maps a series written as `name{k="v",...}` to its (t_s, value) samples."""
    store = SeriesStore()
    for key, samples in points.items():
        name, _, rest = key.partition("{")
        labels = dict(
            (k, v.strip('"')) for k, _, v in (p.partition("=") for p in rest.rstrip("}").split(",") if p)
        )
        series = store.add_series(name, labels)
        for t, v in samples:
            series.append(t, v)
    return store


def scalar_result(query: str, store: SeriesStore, t_s: float) -> float | None:
    result = compile_query(query).evaluate(store, t_s)
    assert len(result) <= 1, result
    return result[0][1] if result else None


STEADY = [(10.0 * i, 100.0 + 10.0 * (i - 1)) for i in range(1, 7)]  # t=10..60, v=100..150
RESET = list(zip([10.0, 20.0, 30.0, 40.0, 50.0, 60.0], [100.0, 110.0, 120.0, 5.0, 15.0, 25.0], strict=True))
EDGE = [(0.0, 0.0), (10.0, 100.0), (20.0, 110.0), (30.0, 120.0)]

RATE_CASES: list[dict[str, Any]] = [
    # window (5, 65]: 6 samples, both edges 5 s away (< 1.1 x 10 s) -> extrapolate fully: 50 * 60/50
    {"why": "extrapolate to both edges", "samples": STEADY, "q": "increase(c[60s])", "t": 65, "want": 60.0},
    {"why": "rate = increase / range", "samples": STEADY, "q": "rate(c[1m])", "t": 65, "want": 1.0},
    # first sample 30 s after the window start (>= 11 s): extend by half a spacing (5 s) only; end 10 s: full
    {
        "why": "gap at start: half-spacing",
        "samples": [(30.0, 10.0), (40.0, 20.0), (50.0, 30.0)],
        "q": "increase(c[60s])",
        "t": 60,
        "want": 20.0 * 35.0 / 20.0,
    },
    # counter 1 -> 21 over 20 s: extrapolating 10 s back would go below zero; zero point is 1 s back
    {
        "why": "counter zero point caps start extrapolation",
        "samples": [(10.0, 1.0), (20.0, 11.0), (30.0, 21.0)],
        "q": "increase(c[30s])",
        "t": 30,
        "want": 21.0,
    },
    # delta() is not a counter: the zero point does not apply, 10 s extrapolation is kept
    {
        "why": "delta ignores zero point",
        "samples": [(10.0, 1.0), (20.0, 11.0), (30.0, 21.0)],
        "q": "delta(c[30s])",
        "t": 30,
        "want": 30.0,
    },
    # reset 120 -> 5: increase = 25 - 100 + 120 = 45, extrapolated by 60/50
    {"why": "counter reset", "samples": RESET, "q": "increase(c[60s])", "t": 60, "want": 54.0},
    {"why": "counter reset, rate", "samples": RESET, "q": "rate(c[60s])", "t": 60, "want": 0.9},
    {"why": "delta keeps the drop", "samples": RESET, "q": "delta(c[60s])", "t": 60, "want": -90.0},
    {"why": "irate last two", "samples": RESET, "q": "irate(c[60s])", "t": 60, "want": 1.0},
    {"why": "irate across reset = last value", "samples": RESET, "q": "irate(c[60s])", "t": 40, "want": 0.5},
    {"why": "idelta", "samples": RESET, "q": "idelta(c[60s])", "t": 40, "want": -115.0},
    # the sample exactly at t - range is outside the window (left-open): 100 -> 120 over 20 s, x 30/20
    {"why": "window is left-open", "samples": EDGE, "q": "increase(c[30s])", "t": 30, "want": 30.0},
    {"why": "left-open count", "samples": EDGE, "q": "count_over_time(c[30s])", "t": 30, "want": 3.0},
    {
        "why": "right edge inclusive",
        "samples": EDGE,
        "q": "count_over_time(c[30s])",
        "t": 29.999,
        "want": 3.0,
    },
    {"why": "one sample: no rate", "samples": EDGE, "q": "rate(c[10s])", "t": 30, "want": None},
    {"why": "one sample: no irate", "samples": EDGE, "q": "irate(c[10s])", "t": 30, "want": None},
    {"why": "one sample: no sum(rate)", "samples": EDGE, "q": "sum(rate(c[10s]))", "t": 30, "want": None},
    {"why": "no samples", "samples": EDGE, "q": "avg_over_time(c[1m])", "t": 500, "want": None},
    {"why": "avg_over_time", "samples": RESET, "q": "avg_over_time(c[30s])", "t": 60, "want": 15.0},
    {"why": "sum_over_time", "samples": RESET, "q": "sum_over_time(c[30s])", "t": 60, "want": 45.0},
    {"why": "min_over_time", "samples": RESET, "q": "min_over_time(c[1m])", "t": 60, "want": 5.0},
    {"why": "max_over_time", "samples": RESET, "q": "max_over_time(c[1m])", "t": 60, "want": 120.0},
    {"why": "last_over_time", "samples": RESET, "q": "last_over_time(c[1m])", "t": 55, "want": 15.0},
    {
        "why": "offset shifts the window",
        "samples": RESET,
        "q": "irate(c[60s] offset 20s)",
        "t": 60,
        "want": 0.5,
    },
    {"why": "offset on instant selector", "samples": RESET, "q": "c offset 15s", "t": 60, "want": 5.0},
    {"why": "instant selector: latest <= t", "samples": RESET, "q": "c", "t": 59.999, "want": 15.0},
    {"why": "lookback 5 min (inside)", "samples": RESET, "q": "c", "t": 359.999, "want": 25.0},
    {"why": "lookback 5 min (left-open)", "samples": RESET, "q": "c", "t": 360, "want": None},
]


@pytest.mark.parametrize("case", RATE_CASES, ids=[c["why"] for c in RATE_CASES])
def test_range_functions_follow_prometheus(case: dict[str, Any]) -> None:
    store = store_with({"c": case["samples"]})
    got = scalar_result(case["q"], store, case["t"])
    if case["want"] is None:
        assert got is None
    else:
        assert got == pytest.approx(case["want"], rel=1e-12)


def reference_increase(times: list[float], values: list[float], t: float, range_s: float) -> float | None:
    """Straight transcription of the rule with explicit loops, to check the prefix-sum fast path."""
    window = [(ts, v) for ts, v in zip(times, values, strict=True) if t - range_s < ts <= t]
    if len(window) < 2:
        return None
    result = window[-1][1] - window[0][1]
    for (_, prev), (_, cur) in itertools.pairwise(window):
        if cur < prev:
            result += prev
    sampled = window[-1][0] - window[0][0]
    average = sampled / (len(window) - 1)
    to_start = window[0][0] - (t - range_s)
    to_end = t - window[-1][0]
    if to_start >= 1.1 * average:
        to_start = average / 2
    if result > 0 and window[0][1] >= 0:
        to_start = min(to_start, sampled * window[0][1] / result)
    if to_end >= 1.1 * average:
        to_end = average / 2
    return result * (sampled + to_start + to_end) / sampled


def test_increase_matches_loop_reference_on_random_counters_with_resets_and_gaps() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        times = np.cumsum(rng.choice([5.0, 15.0, 15.0, 15.0, 45.0], size=200)).tolist()
        values: list[float] = []
        total = rng.uniform(0, 1000)
        for _ in times:
            total = rng.uniform(0, 50) if rng.random() < 0.05 else total + rng.uniform(0, 100)
            values.append(round(total, 3))
        store = store_with({"c": list(zip(times, values, strict=True))})
        range_s = float(rng.choice([30.0, 60.0, 120.0, 300.0]))
        query = compile_query(f"increase(c[{int(range_s)}s])")
        for t_random in rng.uniform(times[0], times[-1] + 60, size=50):
            t = round(float(t_random), 3)
            want = reference_increase(times, values, t, range_s)
            got = query.evaluate(store, t)
            if want is None:
                assert got == []
            else:
                assert got[0][1] == pytest.approx(want, rel=1e-9)


def test_rate_of_steady_counter_equals_its_slope_at_any_phase() -> None:
    store = store_with({'c{service="front"}': [(15.0 * i, 7.5 * i + 1e6) for i in range(200)]})
    query = compile_query('sum(rate(c{service="front"}[2m]))')
    for t in np.arange(600.0, 2000.0, 3.7):
        assert query.evaluate(store, float(t))[0][1] == pytest.approx(0.5, rel=1e-12)


def test_staleness_marker_hides_instant_value_but_not_range_samples() -> None:
    store = SeriesStore()
    gone = store.add_series("queue", {"pod": "a"})
    kept = store.add_series("queue", {"pod": "b"})
    for t in (0.0, 15.0, 30.0):
        gone.append(t, 4.0)
        kept.append(t, 1.0)
    gone.mark_stale(40.0)
    assert scalar_result("sum(queue)", store, 35.0) == 5.0
    assert scalar_result("sum(queue)", store, 45.0) == 1.0
    assert scalar_result("sum(max_over_time(queue[1m]))", store, 45.0) == 5.0


AGG_POINTS = {
    'req_total{service="front",pod="a"}': [(0.0, 1.0)],
    'req_total{service="front",pod="b"}': [(0.0, 3.0)],
    'req_total{service="back",pod="c"}': [(0.0, 10.0)],
    'other_total{service="front",pod="a"}': [(0.0, 100.0)],
}
AGG_CASES: list[tuple[str, dict[tuple[tuple[str, str], ...], float]]] = [
    ("sum(req_total)", {(): 14.0}),
    ("sum by (service) (req_total)", {(("service", "front"),): 4.0, (("service", "back"),): 10.0}),
    ("sum(req_total) by (service)", {(("service", "front"),): 4.0, (("service", "back"),): 10.0}),
    ("avg by (service) (req_total)", {(("service", "front"),): 2.0, (("service", "back"),): 10.0}),
    ("max without (pod) (req_total)", {(("service", "front"),): 3.0, (("service", "back"),): 10.0}),
    ("min by (service) (req_total)", {(("service", "front"),): 1.0, (("service", "back"),): 10.0}),
    ("count by (service) (req_total)", {(("service", "front"),): 2.0, (("service", "back"),): 1.0}),
    ("count(req_total)", {(): 3.0}),
    ("sum by (nope) (req_total)", {(): 14.0}),
    ('sum(req_total{service=~"fr.*"})', {(): 4.0}),
    ('sum(req_total{service!~"fr.*"})', {(): 10.0}),
    ('sum({__name__=~".*_total", pod="a"})', {(): 101.0}),
    ("sum(nothing_total)", {}),
    # arithmetic and vector matching
    (
        "req_total * 2",
        {
            (("pod", "a"), ("service", "front")): 2.0,
            (("pod", "b"), ("service", "front")): 6.0,
            (("pod", "c"), ("service", "back")): 20.0,
        },
    ),
    ("other_total / req_total", {(("pod", "a"), ("service", "front")): 100.0}),
    ("other_total - on(pod) req_total", {(("pod", "a"),): 99.0}),
    ("other_total - ignoring(pod) sum by (service) (req_total)", {(("service", "front"),): 96.0}),
    ("sum(req_total) / count(req_total)", {(): 14.0 / 3.0}),
    (
        "req_total > 2",
        {
            (("__name__", "req_total"), ("pod", "b"), ("service", "front")): 3.0,
            (("__name__", "req_total"), ("pod", "c"), ("service", "back")): 10.0,
        },
    ),
    ("5 < req_total", {(("__name__", "req_total"), ("pod", "c"), ("service", "back")): 10.0}),
    ('req_total{pod="a"} > bool 2', {(("pod", "a"), ("service", "front")): 0.0}),
    ("sum(req_total) > bool sum(other_total)", {(): 0.0}),
    ("sum(nothing_total) or vector(0)", {(): 0.0}),
    ("sum(req_total) or vector(0)", {(): 14.0}),
    (
        "req_total and on(pod) other_total",
        {(("__name__", "req_total"), ("pod", "a"), ("service", "front")): 1.0},
    ),
    ("sum by (service) (req_total) unless sum by (service) (other_total)", {(("service", "back"),): 10.0}),
    # scalars and functions
    ("1 + 2 * 3", {(): 7.0}),
    ("-(2 ^ 3) + 1", {(): -7.0}),
    ("2 > bool 1", {(): 1.0}),
    ("scalar(sum(req_total)) / 7", {(): 2.0}),
    ("scalar(req_total)", {(): math.nan}),
    ("vector(3) - 1", {(): 2.0}),
    ("time()", {(): 30.0}),
    ('sum(req_total{pod="a"}) / 0', {(): math.inf}),
    ('-req_total{pod="a"}', {(("pod", "a"), ("service", "front")): -1.0}),
    ('abs(-req_total{pod="a"})', {(("pod", "a"), ("service", "front")): 1.0}),
    ('ceil(req_total{pod="b"} / 2)', {(("pod", "b"), ("service", "front")): 2.0}),
    ('floor(req_total{pod="b"} / 2)', {(("pod", "b"), ("service", "front")): 1.0}),
    ('round(req_total{pod="c"} / 4)', {(("pod", "c"), ("service", "back")): 3.0}),
    ('round(req_total{pod="c"}, 4)', {(("pod", "c"), ("service", "back")): 12.0}),
    ("clamp_max(sum(req_total), 5)", {(): 5.0}),
    ("clamp_min(sum(req_total), 50)", {(): 50.0}),
    ("clamp(sum(req_total), 0, 20)", {(): 14.0}),
    ("clamp(sum(req_total), 20, 0)", {}),
]


@pytest.mark.parametrize(("query", "want"), AGG_CASES, ids=[c[0] for c in AGG_CASES])
def test_aggregation_binary_ops_and_functions(
    query: str, want: dict[tuple[tuple[str, str], ...], float]
) -> None:
    store = store_with(AGG_POINTS)
    got = dict(compile_query(query).evaluate(store, 30.0))
    assert got.keys() == want.keys()
    for labels, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[labels])
        else:
            assert got[labels] == pytest.approx(value)


def test_ambiguous_one_to_one_matching_is_a_query_error() -> None:
    store = store_with(AGG_POINTS)
    with pytest.raises(QueryError, match="many-to-one matching must be explicit"):
        compile_query("req_total / on(service) sum by (service) (other_total)").evaluate(store, 30.0)
    with pytest.raises(QueryError, match="duplicate series"):
        compile_query("sum by (service) (other_total) / on(service) req_total").evaluate(store, 30.0)


BUCKET_CASES: list[tuple[float, list[tuple[float, float]], float]] = [
    (0.5, [(0.1, 10), (0.5, 60), (1.0, 90), (math.inf, 100)], 0.1 + 0.4 * 40 / 50),
    (0.05, [(0.1, 10), (0.5, 60), (1.0, 90), (math.inf, 100)], 0.05),  # lowest bucket starts at 0
    (0.95, [(0.1, 10), (0.5, 60), (1.0, 90), (math.inf, 100)], 1.0),  # +Inf bucket -> highest finite bound
    (0.5, [(math.inf, 100), (1.0, 90), (0.1, 10), (0.5, 60)], 0.42),  # order does not matter
    (0.5, [(0.1, 10), (0.5, 5), (1.0, 90), (math.inf, 100)], 0.5 + 0.5 * 40 / 80),  # decrease flattened
    (0.5, [(0.1, 10), (0.5, 60), (1.0, 90)], math.nan),  # no +Inf bucket
    (0.5, [(0.1, 0), (math.inf, 0)], math.nan),  # no observations
    (0.5, [(math.inf, 10)], math.nan),  # fewer than two buckets
    (1.5, [(0.1, 10), (math.inf, 10)], math.inf),
    (-0.5, [(0.1, 10), (math.inf, 10)], -math.inf),
    (0.5, [(-1.0, 10), (math.inf, 10)], -1.0),  # first bound <= 0 is returned as is
]


@pytest.mark.parametrize(("q", "buckets", "want"), BUCKET_CASES)
def test_bucket_quantile(q: float, buckets: list[tuple[float, float]], want: float) -> None:
    got = bucket_quantile(q, buckets)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want)


def test_histogram_quantile_over_rate_of_buckets_agrees_with_latency_histograms() -> None:
    """The simulator's latency histograms, exported as cumulative `le` series, read back the same p95."""
    rng = np.random.default_rng(3)
    bounds = [*BUCKETS_S.tolist(), math.inf]
    store = SeriesStore()
    per_step = rng.integers(0, 50, size=(40, len(bounds))).astype(float)
    for service in ("front", "back"):
        handles = [
            store.add_series(
                "latency_seconds_bucket", {"service": service, "le": "+Inf" if b == math.inf else str(b)}
            )
            for b in bounds
        ]
        cumulative = np.zeros(len(bounds))
        for step, counts in enumerate(per_step):
            cumulative += np.cumsum(counts)
            for handle, value in zip(handles, cumulative, strict=True):
                handle.append(15.0 * step, float(value))
    query = compile_query(
        "histogram_quantile(0.95, sum by (le, service) "
        '(increase(latency_seconds_bucket{service=~".+"}[45s])))'
    )
    result = dict(query.evaluate(store, 15.0 * 30))
    # (405 s, 450 s] holds steps 28..30, so the increase covers the counts of steps 29 and 30; every
    # bucket is extrapolated by the same factor (the counters are far from zero), which cancels out
    want = float(quantile(0.95, per_step[29:31].sum(axis=0)))
    assert set(result) == {(("service", "front"),), (("service", "back"),)}
    for p95 in result.values():
        assert p95 == pytest.approx(want, rel=1e-9)


def test_query_re_selects_series_when_the_store_grows() -> None:
    store = store_with({'up{pod="a"}': [(0.0, 1.0)]})
    query = compile_query("count(up)")
    assert query.evaluate(store, 1.0) == [((), 1.0)]
    store.add_series("up", {"pod": "b"}).append(0.5, 1.0)
    assert query.evaluate(store, 1.0) == [((), 2.0)]


def test_unmatched_selectors_are_listed() -> None:
    store = store_with({'req_total{service="front"}': [(0.0, 1.0)]})
    query = compile_query(
        'sum(rate(req_total{service="front"}[2m])) / sum(rate(req_total{service="nope"}[2m]))'
    )
    assert [s.metric for s in query.selectors] == ["req_total", "req_total"]
    assert query.unmatched_selectors(store) == ['req_total{service="nope"}']


UNSUPPORTED: list[tuple[str, str]] = [
    ('label_replace(up, "a", "$1", "b", "(.*)")', "function label_replace"),
    ("absent(up)", "function absent"),
    ("topk(3, up)", "aggregation topk"),
    ("quantile(0.9, up)", "aggregation quantile"),
    ("max_over_time(rate(x[1m])[5m:1m])", "subquery"),
    ("up / on(pod) group_left(node) kube_pod_info", "group_left"),
    ("up @ 1700000000", "@ modifier"),
    ("rate(x[5m] @ end())", "@ modifier"),
    ("x[5m]", "range vector"),
    ('"text"', "string literal"),
]


@pytest.mark.parametrize(("query", "part"), UNSUPPORTED, ids=[c[1] for c in UNSUPPORTED])
def test_unsupported_parts_are_named_with_file_and_field(query: str, part: str) -> None:
    with pytest.raises(InputError) as info:
        compile_query(query, file="so.yaml", field="spec.triggers[0].metadata.query")
    error = info.value
    assert part in error.message
    assert "not supported" in error.message
    assert error.file == "so.yaml"
    assert error.field == "spec.triggers[0].metadata.query"


def test_unsupported_function_lists_the_supported_ones() -> None:
    with pytest.raises(InputError) as info:
        compile_query("predict_linear(x[5m], 60)")
    assert info.value.valid is not None
    assert "rate" in info.value.valid
    assert "histogram_quantile" in info.value.valid


@pytest.mark.parametrize("query", ["sum(rate(x[2m])", "rate(x)", "", "sum(x) by"])
def test_unparseable_query_reports_the_parser_message(query: str) -> None:
    with pytest.raises(InputError, match="cannot parse PromQL query") as info:
        compile_query(query, field="query")
    assert info.value.field == "query"
