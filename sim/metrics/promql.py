"""PromQL over simulated series: the subset KEDA Prometheus triggers use, with Prometheus 3.x semantics.

A query is parsed once by `promql-parser` and compiled into a tree of small
evaluator objects; the engine then evaluates it at every HPA sync (tens of
thousands of instants per run), so per-instant work avoids re-walking the AST,
re-matching selectors or rebuilding label sets. Matching series are resolved
again only when the store gains a series.

Semantics follow upstream Prometheus 3.x: range windows and the 5-minute
instant lookback are left-open (`(t - range, t]`); rate/increase/delta
extrapolate to the window edges by at most 1.1x the average sample spacing
(else half a spacing) and, for counters, never below zero; arithmetic,
functions and `bool` comparisons drop `__name__`; histogram_quantile
interpolates linearly inside classic `le` buckets.

Anything outside the subset is rejected at compile time with an InputError
that names the construct, because a scenario that silently evaluated a
different query than the user's cluster would give a confidently wrong answer.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser as pp

from sim.errors import InputError
from sim.metrics.tsdb import (
    METRIC_NAME,
    LabelMatcher,
    Labels,
    SeriesHandle,
    SeriesStore,
    latest_at,
    without_name,
)

Sample = tuple[Labels, float]

RANGE_FUNCTIONS = (
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "count_over_time",
    "last_over_time",
)
OTHER_FUNCTIONS = ("histogram_quantile", "clamp", "clamp_min", "clamp_max", "scalar", "vector", "time")
AGGREGATIONS = ("sum", "avg", "min", "max", "count")


class QueryError(Exception):
    """Prometheus would answer this query with an error at this instant (e.g. ambiguous vector matching).

    KEDA treats that as a failed scaler query, so the engine counts it towards fallback.
    """


@dataclass(frozen=True)
class Selector:
    """One vector selector of a query; `matchers` include the `__name__` matcher when a name is given."""

    metric: str | None
    matchers: tuple[LabelMatcher, ...]
    text: str


# --- float semantics of Go, which Prometheus inherits ---------------------------------------------


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _mod(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        odd = b.is_integer() and b % 2 == 1
        return math.copysign(math.inf, a) if odd else math.inf
    except ValueError:
        if a == 0:  # 0 ** negative
            odd = b.is_integer() and b % 2 == 1
            return math.copysign(math.inf, a) if odd else math.inf
        return math.nan  # negative base, fractional exponent


def _ln(x: float) -> float:
    if x > 0:
        return math.log(x)
    return -math.inf if x == 0 else math.nan


def _log2(x: float) -> float:
    return _ln(x) / math.log(2) if x <= 0 else math.log2(x)


def _log10(x: float) -> float:
    return _ln(x) / math.log(10) if x <= 0 else math.log10(x)


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else math.nan


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


def _floor(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


MATH_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _ceil,
    "floor": _floor,
    "sqrt": _sqrt,
    "exp": _exp,
    "ln": _ln,
    "log2": _log2,
    "log10": _log10,
}

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _div,
    "%": _mod,
    "^": _pow,
    "atan2": math.atan2,
}
_COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_SET_OPERATORS = ("and", "or", "unless")


def _sum(values: Sequence[float]) -> float:
    """Compensated sum, like Prometheus' Kahan summation; falls back on Inf/NaN mixes fsum rejects."""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(values)


def _max(values: Sequence[float]) -> float:
    """NaN only if every value is NaN, as Prometheus' max.

    Python's max already skips a NaN after the first element (every comparison
    with it is false), so only a leading NaN needs a second look.
    """
    best = max(values)
    if math.isnan(best):
        numbers = [v for v in values if not math.isnan(v)]
        return max(numbers) if numbers else best
    return best


def _min(values: Sequence[float]) -> float:
    worst = min(values)
    if math.isnan(worst):
        numbers = [v for v in values if not math.isnan(v)]
        return min(numbers) if numbers else worst
    return worst


def _avg(values: Sequence[float]) -> float:
    return _sum(values) / len(values)


def _count(values: Sequence[float]) -> float:
    return float(len(values))


_REDUCERS: dict[str, Callable[[Sequence[float]], float]] = {
    "sum": _sum,
    "avg": _avg,
    "min": _min,
    "max": _max,
    "count": _count,
}


def _almost_equal(a: float, b: float, tolerance: float) -> bool:
    if a == b:
        return True
    diff = abs(a - b)
    if a == 0 or b == 0:
        return diff < tolerance * 2.2250738585072014e-308
    return diff / min(abs(a) + abs(b), 1.7976931348623157e308) < tolerance


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """φ-quantile of classic cumulative buckets `(upper_bound, count)`, as PromQL's histogram_quantile.

    Linear interpolation inside the bucket holding the rank, a lower bound of 0
    for the first bucket when its bound is positive, the second-highest bound
    when the rank falls in +Inf; NaN without a +Inf bucket, with < 2 buckets or
    no observations. Counts differing by float noise are merged and decreases
    are flattened first, as upstream does.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets, key=operator.itemgetter(0))
    if not ordered or ordered[-1][0] != math.inf:
        return math.nan
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in ordered:
        if bounds and bound == bounds[-1]:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    prev = counts[0]
    for i in range(1, len(counts)):
        curr = counts[i]
        if curr == prev:
            continue
        if curr > prev > 0 and curr - prev >= 1e-12 * (curr + prev):  # clearly increasing: the usual case
            prev = curr
            continue
        if _almost_equal(prev, curr, 1e-12) or curr < prev:
            counts[i] = prev
            continue
        prev = curr
    if len(counts) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    last = len(counts) - 1
    b = next((i for i in range(last) if counts[i] >= rank), last)
    if b == last:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0
    count = counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (bounds[b] - start) * _div(rank, count)  # 0/0 (q=0, empty first bucket) is NaN


# --- compiled evaluator nodes ------------------------------------------------------------------


class _Scalar(ABC):
    @abstractmethod
    def value(self, t_ms: int) -> float: ...


class _Vector(ABC):
    @abstractmethod
    def samples(self, t_ms: int) -> list[Sample]: ...


_Node = _Scalar | _Vector


class _Number(_Scalar):
    def __init__(self, number: float) -> None:
        self.number = number

    def value(self, t_ms: int) -> float:
        return self.number


class _Time(_Scalar):
    def value(self, t_ms: int) -> float:
        return t_ms / 1000.0


class _ScalarOf(_Scalar):
    """scalar(v): the single element's value, NaN unless exactly one element."""

    def __init__(self, child: _Vector) -> None:
        self.child = child

    def value(self, t_ms: int) -> float:
        result = self.child.samples(t_ms)
        return result[0][1] if len(result) == 1 else math.nan


class _ScalarNegate(_Scalar):
    def __init__(self, child: _Scalar) -> None:
        self.child = child

    def value(self, t_ms: int) -> float:
        return -self.child.value(t_ms)


class _ScalarBinary(_Scalar):
    def __init__(self, op: str, lhs: _Scalar, rhs: _Scalar) -> None:
        self.arith = _ARITHMETIC.get(op)
        self.compare = _COMPARISON.get(op)
        self.lhs = lhs
        self.rhs = rhs

    def value(self, t_ms: int) -> float:
        a = self.lhs.value(t_ms)
        b = self.rhs.value(t_ms)
        if self.arith is not None:
            return self.arith(a, b)
        assert self.compare is not None
        return 1.0 if self.compare(a, b) else 0.0


class _SelectorBound(_Vector):
    """A node reading series directly; `series` is refreshed by Query when the store changes."""

    def __init__(self, selector: Selector, offset_ms: int) -> None:
        self.selector = selector
        self.offset_ms = offset_ms
        self.series: list[SeriesHandle] = []


class _InstantSelector(_SelectorBound):
    def samples(self, t_ms: int) -> list[Sample]:
        ref = t_ms - self.offset_ms
        out: list[Sample] = []
        for s in self.series:
            value = latest_at(s, ref)
            if value is not None:
                out.append((s.labels, value))
        return out


class _RangeFunction(_SelectorBound):
    def __init__(self, selector: Selector, offset_ms: int, range_ms: int) -> None:
        super().__init__(selector, offset_ms)
        self.range_ms = range_ms
        self.range_s = range_ms / 1000.0


class _ExtrapolatedRate(_RangeFunction):
    """rate / increase / delta, following upstream's extrapolatedRate.

    The result covers the window only as far as samples suggest the series
    existed: extrapolate to an edge only if the nearest sample is within 1.1x the
    average spacing, otherwise by half a spacing; a counter is never
    extrapolated below zero.
    """

    def __init__(
        self, selector: Selector, offset_ms: int, range_ms: int, *, is_counter: bool, is_rate: bool
    ) -> None:
        super().__init__(selector, offset_ms, range_ms)
        self.is_counter = is_counter
        self.is_rate = is_rate

    def samples(self, t_ms: int) -> list[Sample]:
        end = t_ms - self.offset_ms
        start = end - self.range_ms
        is_counter = self.is_counter
        is_rate = self.is_rate
        range_s = self.range_s
        out: list[Sample] = []
        for s in self.series:
            times = s.times_ms
            hi = bisect_right(times, end) - 1
            lo = bisect_right(times, start, 0, hi + 1)
            n_minus_one = hi - lo
            if n_minus_one < 1:
                continue
            values = s.values
            first = values[lo]
            result = values[hi] - first
            t_first = times[lo]
            sampled_s = (times[hi] - t_first) / 1000.0
            to_start_s = (t_first - start) / 1000.0
            to_end_s = (end - times[hi]) / 1000.0
            average_s = sampled_s / n_minus_one
            threshold_s = average_s * 1.1
            if to_start_s >= threshold_s:
                to_start_s = average_s / 2
            if is_counter:
                resets = s.resets
                result += resets[hi] - resets[lo]
                if result > 0 and first >= 0:
                    to_start_s = min(to_start_s, sampled_s * (first / result))
            if to_end_s >= threshold_s:
                to_end_s = average_s / 2
            factor = (sampled_s + to_start_s + to_end_s) / sampled_s
            if is_rate:
                factor /= range_s
            out.append((s.labels_without_name, result * factor))
        return out


class _InstantRate(_RangeFunction):
    """irate / idelta: the last two samples in the window; irate treats a decrease as a reset."""

    def __init__(self, selector: Selector, offset_ms: int, range_ms: int, *, is_rate: bool) -> None:
        super().__init__(selector, offset_ms, range_ms)
        self.is_rate = is_rate

    def samples(self, t_ms: int) -> list[Sample]:
        end = t_ms - self.offset_ms
        start = end - self.range_ms
        out: list[Sample] = []
        for s in self.series:
            times = s.times_ms
            hi = bisect_right(times, end) - 1
            if hi < 1 or times[hi - 1] <= start:
                continue
            last = s.values[hi]
            prev = s.values[hi - 1]
            if not self.is_rate:
                out.append((s.labels_without_name, last - prev))
                continue
            result = last if last < prev else last - prev
            out.append((s.labels_without_name, result / ((times[hi] - times[hi - 1]) / 1000.0)))
        return out


def _last(values: Sequence[float]) -> float:
    return values[-1]


_OVER_TIME: dict[str, Callable[[Sequence[float]], float]] = {
    "avg_over_time": _avg,
    "sum_over_time": _sum,
    "min_over_time": _min,
    "max_over_time": _max,
    "count_over_time": _count,
    "last_over_time": _last,
}


class _OverTime(_RangeFunction):
    def __init__(self, selector: Selector, offset_ms: int, range_ms: int, *, function: str) -> None:
        super().__init__(selector, offset_ms, range_ms)
        self.reduce = _OVER_TIME[function]
        self.keep_name = function == "last_over_time"  # upstream keeps the name for last/first_over_time

    def samples(self, t_ms: int) -> list[Sample]:
        end = t_ms - self.offset_ms
        start = end - self.range_ms
        out: list[Sample] = []
        for s in self.series:
            times = s.times_ms
            hi = bisect_right(times, end)
            lo = bisect_right(times, start, 0, hi)
            if hi == lo:
                continue
            labels = s.labels if self.keep_name else s.labels_without_name
            out.append((labels, self.reduce(s.values[lo:hi])))
        return out


class _LabelMap:
    """Memoised label transformation: the same few label sets recur at every instant."""

    def __init__(self, transform: Callable[[Labels], Labels]) -> None:
        self.transform = transform
        self.cache: dict[Labels, Labels] = {}

    def __call__(self, labels: Labels) -> Labels:
        out = self.cache.get(labels)
        if out is None:
            out = self.cache[labels] = self.transform(labels)
        return out


def _keep_only(names: frozenset[str]) -> Callable[[Labels], Labels]:
    return lambda labels: tuple(p for p in labels if p[0] in names)


def _drop(names: frozenset[str]) -> Callable[[Labels], Labels]:
    return lambda labels: tuple(p for p in labels if p[0] not in names)


class _Aggregate(_Vector):
    def __init__(self, op: str, child: _Vector, group_key: _LabelMap | None) -> None:
        self.reduce = _REDUCERS[op]
        self.child = child
        self.group_key = group_key

    def samples(self, t_ms: int) -> list[Sample]:
        inputs = self.child.samples(t_ms)
        if not inputs:
            return []
        if self.group_key is None:
            return [((), self.reduce([v for _, v in inputs]))]
        groups: dict[Labels, list[float]] = {}
        keys = self.group_key.cache
        for labels, v in inputs:
            k = keys.get(labels)
            if k is None:
                k = self.group_key(labels)
            bucket = groups.get(k)
            if bucket is None:
                groups[k] = [v]
            else:
                bucket.append(v)
        return [(k, self.reduce(vs)) for k, vs in groups.items()]


class _VectorOf(_Vector):
    def __init__(self, child: _Scalar) -> None:
        self.child = child

    def samples(self, t_ms: int) -> list[Sample]:
        return [((), self.child.value(t_ms))]


class _MathFunction(_Vector):
    def __init__(self, function: Callable[[float], float], child: _Vector) -> None:
        self.function = function
        self.child = child
        self.drop_name = _LabelMap(without_name)

    def samples(self, t_ms: int) -> list[Sample]:
        f = self.function
        drop = self.drop_name
        return [(drop(labels), f(v)) for labels, v in self.child.samples(t_ms)]


class _Round(_Vector):
    """round(v, to_nearest): ties round up, as upstream."""

    def __init__(self, child: _Vector, to_nearest: _Scalar) -> None:
        self.child = child
        self.to_nearest = to_nearest
        self.drop_name = _LabelMap(without_name)

    def samples(self, t_ms: int) -> list[Sample]:
        inverse = _div(1.0, self.to_nearest.value(t_ms))
        drop = self.drop_name
        return [
            (drop(labels), _div(_floor(v * inverse + 0.5), inverse)) for labels, v in self.child.samples(t_ms)
        ]


class _Clamp(_Vector):
    def __init__(self, child: _Vector, low: _Scalar | None, high: _Scalar | None) -> None:
        self.child = child
        self.low = low
        self.high = high
        self.drop_name = _LabelMap(without_name)

    def samples(self, t_ms: int) -> list[Sample]:
        low = -math.inf if self.low is None else self.low.value(t_ms)
        high = math.inf if self.high is None else self.high.value(t_ms)
        if high < low:
            return []
        drop = self.drop_name
        return [(drop(labels), max(low, min(high, v))) for labels, v in self.child.samples(t_ms)]


class _Negate(_Vector):
    def __init__(self, child: _Vector) -> None:
        self.child = child
        self.drop_name = _LabelMap(without_name)

    def samples(self, t_ms: int) -> list[Sample]:
        drop = self.drop_name
        return [(drop(labels), -v) for labels, v in self.child.samples(t_ms)]


class _HistogramQuantile(_Vector):
    """Groups `le` buckets by their other labels; a series without a parseable `le` is ignored."""

    def __init__(self, phi: _Scalar, child: _Vector) -> None:
        self.phi = phi
        self.child = child
        self.split: dict[Labels, tuple[Labels, float] | None] = {}

    @staticmethod
    def _split(labels: Labels) -> tuple[Labels, float] | None:
        le = dict(labels).get("le")
        if le is None:
            return None
        try:
            bound = float(le)
        except ValueError:
            return None
        return tuple(p for p in labels if p[0] not in ("le", METRIC_NAME)), bound

    def samples(self, t_ms: int) -> list[Sample]:
        q = self.phi.value(t_ms)
        groups: dict[Labels, list[tuple[float, float]]] = {}
        split = self.split
        for labels, v in self.child.samples(t_ms):
            if labels in split:
                parts = split[labels]
            else:
                parts = split[labels] = self._split(labels)
            if parts is None:
                continue
            key, bound = parts
            bucket = groups.get(key)
            if bucket is None:
                groups[key] = [(bound, v)]
            else:
                bucket.append((bound, v))
        return [(k, bucket_quantile(q, b)) for k, b in groups.items()]


class _VectorScalarBinary(_Vector):
    def __init__(
        self, op: str, vector: _Vector, scalar: _Scalar, *, vector_left: bool, return_bool: bool
    ) -> None:
        self.arith = _ARITHMETIC.get(op)
        self.compare = _COMPARISON.get(op)
        self.vector = vector
        self.scalar = scalar
        self.vector_left = vector_left
        self.return_bool = return_bool
        self.drop_name = _LabelMap(without_name)

    def samples(self, t_ms: int) -> list[Sample]:
        inputs = self.vector.samples(t_ms)
        if not inputs:
            return []
        s = self.scalar.value(t_ms)
        drop = self.drop_name
        arith = self.arith
        if arith is not None:
            if self.vector_left:
                return [(drop(labels), arith(v, s)) for labels, v in inputs]
            return [(drop(labels), arith(s, v)) for labels, v in inputs]
        compare = self.compare
        assert compare is not None
        out: list[Sample] = []
        for labels, v in inputs:
            keep = compare(v, s) if self.vector_left else compare(s, v)
            if self.return_bool:
                out.append((drop(labels), 1.0 if keep else 0.0))
            elif keep:  # the vector's value survives even when the scalar is on the left
                out.append((labels, v))
        return out


class _VectorBinary(_Vector):
    """One-to-one vector matching on all labels but `__name__`, or on(...)/ignoring(...)."""

    def __init__(
        self,
        op: str,
        lhs: _Vector,
        rhs: _Vector,
        *,
        signature: _LabelMap,
        result_labels: _LabelMap,
        return_bool: bool,
    ) -> None:
        self.arith = _ARITHMETIC.get(op)
        self.compare = _COMPARISON.get(op)
        self.lhs = lhs
        self.rhs = rhs
        self.signature = signature
        self.result_labels = result_labels
        self.return_bool = return_bool

    def samples(self, t_ms: int) -> list[Sample]:
        left = self.lhs.samples(t_ms)
        if not left:
            return []
        right_samples = self.rhs.samples(t_ms)
        if not right_samples:
            return []
        sig = self.signature
        right: dict[Labels, float] = {}
        for labels, v in right_samples:
            k = sig(labels)
            if k in right:
                raise QueryError(
                    f"found duplicate series for the match group {_format(k)} on the right hand-side "
                    "of the operation; many-to-many matching not allowed"
                )
            right[k] = v
        matched: set[Labels] = set()
        out: list[Sample] = []
        for labels, lv in left:
            k = sig(labels)
            rv = right.get(k)
            if rv is None:
                continue
            if k in matched:
                raise QueryError(
                    "multiple matches for labels: many-to-one matching must be explicit "
                    "(group_left/group_right)"
                )
            matched.add(k)
            if self.arith is not None:
                out.append((self.result_labels(labels), self.arith(lv, rv)))
                continue
            assert self.compare is not None
            keep = self.compare(lv, rv)
            if self.return_bool:
                out.append((self.result_labels(labels), 1.0 if keep else 0.0))
            elif keep:
                out.append((self.result_labels(labels), lv))
        return out


class _SetOperation(_Vector):
    def __init__(self, op: str, lhs: _Vector, rhs: _Vector, signature: _LabelMap) -> None:
        self.op = op
        self.lhs = lhs
        self.rhs = rhs
        self.signature = signature

    def samples(self, t_ms: int) -> list[Sample]:
        left = self.lhs.samples(t_ms)
        sig = self.signature
        if self.op == "and":
            if not left:
                return []
            right_keys = {sig(labels) for labels, _ in self.rhs.samples(t_ms)}
            return [e for e in left if sig(e[0]) in right_keys]
        right = self.rhs.samples(t_ms)
        if self.op == "unless":
            if not right or not left:
                return left
            right_keys = {sig(labels) for labels, _ in right}
            return [e for e in left if sig(e[0]) not in right_keys]
        if not right:
            return left
        if not left:
            return right
        left_keys = {sig(labels) for labels, _ in left}
        return left + [e for e in right if sig(e[0]) not in left_keys]


def _format(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


# --- compiler -----------------------------------------------------------------------------------


def _supported_functions() -> str:
    return ", ".join([*RANGE_FUNCTIONS, *OTHER_FUNCTIONS, *MATH_FUNCTIONS, "round"])


def _show(expr: Any) -> str:
    """The expression as PromQL on one line, for messages."""
    return " ".join(expr.prettify().split())


def _ms(delta: Any) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000.0)


class _Compiler:
    def __init__(self, text: str, file: Path | str | None, field: str | None) -> None:
        self.text = text
        self.file = file
        self.field = field
        self.selector_nodes: list[_SelectorBound] = []

    def error(self, message: str, valid: str | None = None) -> InputError:
        return InputError(message, file=self.file, field=self.field, valid=valid)

    def unsupported(self, what: str, valid: str | None = None) -> InputError:
        return self.error(f"{what} is not supported by capsim's PromQL evaluator (query: {self.text})", valid)

    def compile(self, expr: Any) -> _Node:
        if isinstance(expr, pp.ParenExpr):
            return self.compile(expr.expr)
        if isinstance(expr, pp.NumberLiteral):
            return _Number(float(expr.val))
        if isinstance(expr, pp.UnaryExpr):
            child = self.compile(expr.expr)
            return _ScalarNegate(child) if isinstance(child, _Scalar) else _Negate(child)
        if isinstance(expr, pp.VectorSelector):
            selector, offset_ms = self.selector(expr)
            node = _InstantSelector(selector, offset_ms)
            self.selector_nodes.append(node)
            return node
        if isinstance(expr, pp.Call):
            return self.call(expr)
        if isinstance(expr, pp.AggregateExpr):
            return self.aggregate(expr)
        if isinstance(expr, pp.BinaryExpr):
            return self.binary(expr)
        if isinstance(expr, pp.SubqueryExpr):
            raise self.unsupported(f"subquery `{_show(expr)}`")
        if isinstance(expr, pp.MatrixSelector):
            raise self.unsupported(
                f"range vector `{_show(expr)}` outside a range function",
                valid="wrap it in one of " + ", ".join(RANGE_FUNCTIONS),
            )
        if isinstance(expr, pp.StringLiteral):
            raise self.unsupported(f"string literal `{_show(expr)}`")
        raise self.unsupported(f"expression `{_show(expr)}` ({type(expr).__name__})")

    def vector(self, expr: Any, where: str) -> _Vector:
        node = self.compile(expr)
        if not isinstance(node, _Vector):
            raise self.error(f"{where} needs an instant vector, got a scalar `{_show(expr)}`")
        return node

    def scalar(self, expr: Any, where: str) -> _Scalar:
        node = self.compile(expr)
        if not isinstance(node, _Scalar):
            raise self.error(f"{where} needs a scalar, got `{_show(expr)}`", valid="a number or scalar(...)")
        return node

    def selector(self, vs: Any) -> tuple[Selector, int]:
        if vs.at is not None:
            raise self.unsupported(f"the @ modifier in `{_show(vs)}`")
        if vs.matchers.or_matchers:
            raise self.unsupported(f"`or` inside the label matchers of `{_show(vs)}`")
        # MatchOp values are not hashable, so look them up by equality.
        ops = [
            (pp.MatchOp.Equal, "="),
            (pp.MatchOp.NotEqual, "!="),
            (pp.MatchOp.Re, "=~"),
            (pp.MatchOp.NotRe, "!~"),
        ]
        matchers: list[LabelMatcher] = []
        if vs.name is not None:
            matchers.append(LabelMatcher.create(METRIC_NAME, "=", vs.name))
        for m in vs.matchers.matchers:
            try:
                op = next(text for match_op, text in ops if m.op == match_op)
                matchers.append(LabelMatcher.create(m.name, op, m.value))
            except Exception as exc:  # a regex RE2 accepts but Python's re does not
                raise self.error(
                    f"cannot use regex {m.value!r} of matcher `{m}` in `{_show(vs)}`: {exc}"
                ) from exc
        return Selector(vs.name, tuple(matchers), _show(vs)), _ms(vs.offset)

    def call(self, call: Any) -> _Node:
        name = call.func.name
        args = call.args
        if name in RANGE_FUNCTIONS:
            matrix = args[0]
            if isinstance(matrix, pp.SubqueryExpr):
                raise self.unsupported(f"subquery `{_show(matrix)}`")
            if not isinstance(matrix, pp.MatrixSelector):
                raise self.unsupported(
                    f"`{_show(matrix)}` as the argument of {name}() (only a range selector)"
                )
            selector, offset_ms = self.selector(matrix.vector_selector)
            range_ms = _ms(matrix.range)
            node: _RangeFunction
            if name in ("rate", "increase", "delta"):
                node = _ExtrapolatedRate(
                    selector, offset_ms, range_ms, is_counter=name != "delta", is_rate=name == "rate"
                )
            elif name in ("irate", "idelta"):
                node = _InstantRate(selector, offset_ms, range_ms, is_rate=name == "irate")
            else:
                node = _OverTime(selector, offset_ms, range_ms, function=name)
            self.selector_nodes.append(node)
            return node
        if name in MATH_FUNCTIONS:
            return _MathFunction(MATH_FUNCTIONS[name], self.vector(args[0], f"{name}()"))
        if name == "round":
            to_nearest = self.scalar(args[1], "round()") if len(args) > 1 else _Number(1.0)
            return _Round(self.vector(args[0], "round()"), to_nearest)
        if name == "histogram_quantile":
            return _HistogramQuantile(
                self.scalar(args[0], "histogram_quantile()"), self.vector(args[1], "histogram_quantile()")
            )
        if name in ("clamp", "clamp_min", "clamp_max"):
            child = self.vector(args[0], f"{name}()")
            bounds = [self.scalar(a, f"{name}()") for a in args[1:]]
            if name == "clamp":
                return _Clamp(child, bounds[0], bounds[1])
            return _Clamp(child, bounds[0], None) if name == "clamp_min" else _Clamp(child, None, bounds[0])
        if name == "scalar":
            return _ScalarOf(self.vector(args[0], "scalar()"))
        if name == "vector":
            return _VectorOf(self.scalar(args[0], "vector()"))
        if name == "time":
            return _Time()
        raise self.unsupported(f"function {name}", valid=_supported_functions())

    def aggregate(self, agg: Any) -> _Vector:
        op = str(agg.op).strip().lower()
        if op not in AGGREGATIONS:
            raise self.unsupported(f"aggregation {op}", valid=", ".join(AGGREGATIONS))
        child = self.vector(agg.expr, f"{op}()")
        modifier = agg.modifier
        if modifier is None or (modifier.type == pp.AggModifierType.By and not modifier.labels):
            return _Aggregate(op, child, None)
        names = frozenset(modifier.labels)
        if modifier.type == pp.AggModifierType.By:
            return _Aggregate(op, child, _LabelMap(_keep_only(names)))
        return _Aggregate(op, child, _LabelMap(_drop(names | {METRIC_NAME})))

    def binary(self, expr: Any) -> _Node:
        op = str(expr.op).strip().lower()
        modifier = expr.modifier
        return_bool = bool(modifier is not None and modifier.return_bool)
        if modifier is not None:
            if modifier.card in (pp.VectorMatchCardinality.ManyToOne, pp.VectorMatchCardinality.OneToMany):
                raise self.unsupported(f"group_left/group_right in `{_show(expr)}`")
            fill = modifier.fill_values
            if fill is not None and (fill.lhs is not None or fill.rhs is not None):
                raise self.unsupported(f"fill modifiers in `{_show(expr)}`")
        if op not in _ARITHMETIC and op not in _COMPARISON and op not in _SET_OPERATORS:
            raise self.unsupported(f"binary operator {op}")
        lhs = self.compile(expr.lhs)
        rhs = self.compile(expr.rhs)
        if isinstance(lhs, _Scalar) and isinstance(rhs, _Scalar):
            return _ScalarBinary(op, lhs, rhs)
        if isinstance(lhs, _Vector) and isinstance(rhs, _Scalar):
            return _VectorScalarBinary(op, lhs, rhs, vector_left=True, return_bool=return_bool)
        if isinstance(lhs, _Scalar) and isinstance(rhs, _Vector):
            return _VectorScalarBinary(op, rhs, lhs, vector_left=False, return_bool=return_bool)
        assert isinstance(lhs, _Vector) and isinstance(rhs, _Vector)
        matching = modifier.matching if modifier is not None else None
        on = matching is not None and matching.type == pp.LabelModifierType.Include
        names = frozenset(matching.labels) if matching is not None else frozenset()
        signature = _LabelMap(_keep_only(names) if on else _drop(names | {METRIC_NAME}))
        if op in _SET_OPERATORS:
            return _SetOperation(op, lhs, rhs, signature)
        drop_name = op in _ARITHMETIC or return_bool

        def result(labels: Labels) -> Labels:
            if drop_name:
                labels = without_name(labels)
            if on:
                return tuple(p for p in labels if p[0] in names)
            return tuple(p for p in labels if p[0] not in names)

        return _VectorBinary(
            op, lhs, rhs, signature=signature, result_labels=_LabelMap(result), return_bool=return_bool
        )


class Query:
    """A compiled query; evaluate it at any instant against a SeriesStore."""

    def __init__(self, text: str, root: _Node, selector_nodes: list[_SelectorBound]) -> None:
        self.text = text
        self._root = root
        self._selector_nodes = selector_nodes
        self.selectors: tuple[Selector, ...] = tuple(dict.fromkeys(n.selector for n in selector_nodes))
        self.returns_scalar = isinstance(root, _Scalar)
        self._store: SeriesStore | None = None  # the store and version the selectors were resolved against
        self._version = -1

    def _bind(self, store: SeriesStore) -> None:
        matches: dict[Selector, list[SeriesHandle]] = {}
        for node in self._selector_nodes:
            if node.selector not in matches:
                matches[node.selector] = store.select(node.selector.matchers)
            node.series = matches[node.selector]
        self._store = store
        self._version = store.version

    def evaluate(self, store: SeriesStore, t_s: float) -> list[Sample]:
        """The instant vector at t (seconds); a scalar result is one element with empty labels."""
        if store is not self._store or store.version != self._version:
            self._bind(store)
        t_ms = round(t_s * 1000.0)
        root = self._root
        if isinstance(root, _Scalar):
            return [((), root.value(t_ms))]
        return root.samples(t_ms)

    def unmatched_selectors(self, store: SeriesStore) -> list[str]:
        """Selectors that match no series in the store: in a simulation that is always a mistake."""
        return [s.text for s in self.selectors if not store.select(s.matchers)]

    def __repr__(self) -> str:
        return f"Query({self.text!r})"


def compile_query(query: str, *, file: Path | str | None = None, field: str | None = None) -> Query:
    """Parse and compile; InputError (naming file/field and the construct) if it cannot be evaluated."""
    try:
        expr = pp.parse(query)
    except ValueError as exc:
        raise InputError(f"cannot parse PromQL query {query!r}: {exc}", file=file, field=field) from exc
    compiler = _Compiler(query, file, field)
    root = compiler.compile(expr)
    return Query(query, root, compiler.selector_nodes)
