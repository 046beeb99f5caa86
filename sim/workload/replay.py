"""Recorded traffic series: reading CSV/Parquet files and integrating them over simulation steps.

A file becomes a piecewise-linear rate function of time (seconds since its
first sample); the simulation averages that function over its steps, so one
code path serves series coarser and finer than the step. Every problem with
the file is an InputError naming the file, the column and the line.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sim.errors import InputError
from sim.workload.shapes import FloatArray, pwl_integral

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
_VALID_FILES = "a CSV (.csv, .csv.gz, .tsv) or Parquet (.parquet, .pq) file"
_VALID_TIMESTAMPS = "ISO 8601 date-times (2024-05-01T12:00:00Z, 2024-05-01 12:00:00) or seconds as numbers"

Interpolation = Literal["linear", "previous"]
PastEnd = Literal["loop", "hold", "error"]
TimestampUnit = Literal["s", "ms", "us", "ns"]
_UNIT_S: dict[TimestampUnit, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_EPOCH_MS_THRESHOLD = 1e11
"""As seconds this is the year 5138: a numeric timestamp this large is in a finer unit."""


@dataclass(frozen=True)
class RateFunction:
    """A recorded rate as knots of a piecewise-linear function, t = 0 at the first sample.

    `period_s` is how long the recording covers (one lap when looping): for
    rates, one typical sample spacing past the last sample, since the last value
    stands for the interval after it; for counters, exactly up to the last
    sample. `loop_knot_v` differs from `knot_v` only in the closing knot: when
    looping, a linearly interpolated series leads back to its first value
    instead of holding its last, so the seam has no jump.
    """

    knot_t: FloatArray
    knot_v: FloatArray
    loop_knot_v: FloatArray
    period_s: float
    path: Path

    def integral(self, t: FloatArray, past_end: PastEnd) -> FloatArray:
        """∫ from 0 to t of the rate, extended outside the recording as `past_end` says."""
        if past_end == "loop":
            laps = np.floor(t / self.period_s)
            lap = pwl_integral(self.knot_t, self.loop_knot_v, np.array([self.period_s]))[0]
            return laps * lap + pwl_integral(self.knot_t, self.loop_knot_v, t - laps * self.period_s)
        if past_end == "error":
            lo, hi = float(t.min()), float(t.max())
            if lo < -1e-9 or hi > self.period_s + 1e-9:
                raise InputError(
                    f"the series covers 0 s to {self.period_s:g} s after its first sample, but the run "
                    f"needs {lo:g} s to {hi:g} s (offset and horizon, after time shifts)",
                    file=self.path,
                    field="past_end",
                    valid='a longer series, a smaller offset or horizon, or past_end "loop" or "hold"',
                )
        return pwl_integral(self.knot_t, self.knot_v, t)


@dataclass(frozen=True)
class SeriesFormat:
    """How to read a series file: which columns, what they hold, how to join samples."""

    timestamp_column: str = "timestamp"
    value_column: str = "rps"
    counter: bool = False
    interpolation: Interpolation = "linear"
    timestamp_unit: TimestampUnit = "s"


def load_rate_function(path: Path, fmt: SeriesFormat) -> RateFunction:
    """Read a series file into a rate function; InputError on anything unusable."""
    stat = _stat(path)
    return _load_cached(str(path.resolve()), (stat.st_mtime_ns, stat.st_size), fmt)


def _stat(path: Path) -> os.stat_result:
    if not path.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        raise InputError("unsupported traffic file type", file=path, field="path", valid=_VALID_FILES)
    try:
        return path.stat()
    except OSError as exc:
        raise InputError(f"cannot read the traffic file: {exc.strerror}", file=path, field="path") from exc


@functools.lru_cache(maxsize=16)
def _load_cached(path_text: str, version: tuple[int, int], fmt: SeriesFormat) -> RateFunction:
    """Tuning replays the same file for every candidate; `version` (mtime, size) invalidates the cache."""
    del version
    source = _Source(Path(path_text))
    t_s, values = source.samples(fmt)
    if fmt.counter:
        fn = _counter_function(source.path, t_s, values)
    else:
        fn = _rate_function(source.path, t_s, values, fmt.interpolation)
    for array in (fn.knot_t, fn.knot_v, fn.loop_knot_v):
        array.flags.writeable = False
    return fn


class _Source:
    """One file's table, and how to point at a row of it in a message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_csv = path.name.lower().endswith(CSV_SUFFIXES)
        try:
            if self.is_csv:
                separator = "\t" if path.name.lower().endswith(".tsv") else ","
                # Blank lines stay (as empty rows) so that row i is line i + 2 in messages.
                self.table = pd.read_csv(path, sep=separator, skip_blank_lines=False)
            else:
                self.table = pd.read_parquet(path)
        except pd.errors.EmptyDataError as exc:
            raise InputError(
                "the traffic file is empty", file=path, valid="a header row and samples"
            ) from exc
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
            raise InputError(f"cannot parse the traffic file: {exc}", file=path, valid=_VALID_FILES) from exc

    def error(
        self, message: str, column: str, row: int | None = None, valid: str | None = None
    ) -> InputError:
        """An InputError at a table row: CSV rows become line numbers (the header is line 1)."""
        line = None
        if row is not None:
            if self.is_csv:
                line = row + 2
            else:
                message += f" at row {row + 1}"
        return InputError(message, file=self.path, field=column, line=line, valid=valid)

    def samples(self, fmt: SeriesFormat) -> tuple[FloatArray, FloatArray]:
        """(seconds since the first sample, values), validated; rows with an empty value are dropped."""
        timestamp_column, value_column = fmt.timestamp_column, fmt.value_column
        columns = [str(c) for c in self.table.columns]
        for column in (timestamp_column, value_column):
            if column not in columns:
                raise InputError(
                    f"column {column!r} not found",
                    file=self.path,
                    field=column,
                    line=1 if self.is_csv else None,
                    valid="one of: " + ", ".join(repr(c) for c in columns),
                )
        table = self.table.dropna(how="all")
        if table.empty:
            raise self.error(
                "the traffic file has no data rows", value_column, valid="a header row and samples"
            )
        rows = table.index.to_numpy()
        t_s = self._timestamps_s(table[timestamp_column], rows, timestamp_column, fmt.timestamp_unit)
        values = self._numbers(table[value_column], rows, value_column)
        present = ~np.isnan(values)
        t_s, values, rows = t_s[present], values[present], rows[present]
        if len(t_s) < 2:
            raise self.error(
                f"the traffic file has {len(t_s)} usable sample(s)",
                value_column,
                valid="at least 2 rows with a timestamp and a value",
            )
        negative = np.flatnonzero(values < 0.0)
        if negative.size:
            kind = "counter value" if fmt.counter else "rate"
            first = negative[0]
            raise self.error(
                f"negative {kind} {values[first]:g}", value_column, int(rows[first]), "values >= 0"
            )
        not_after = np.flatnonzero(np.diff(t_s) <= 0.0)
        if not_after.size:
            raise self.error(
                "timestamp is not after the previous sample's",
                timestamp_column,
                int(rows[not_after[0] + 1]),
                "strictly increasing timestamps (sorted, no duplicates)",
            )
        return t_s - t_s[0], values

    def _timestamps_s(
        self, column: pd.Series, rows: np.ndarray, name: str, unit: TimestampUnit
    ) -> FloatArray:
        """Seconds from date-times (naive ones read as UTC) or from numbers in `unit`."""
        missing = np.flatnonzero(column.isna().to_numpy())
        if missing.size:
            raise self.error("missing timestamp", name, int(rows[missing[0]]), _VALID_TIMESTAMPS)
        if pd.api.types.is_datetime64_any_dtype(column):
            stamps = pd.to_datetime(column, utc=True)
        else:
            if pd.api.types.is_numeric_dtype(column):
                return self._numeric_s(column, column.to_numpy(dtype=np.float64), rows, name, unit)
            text = column.astype(str).str.strip()
            as_numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
            if not np.isnan(as_numbers[0]):
                return self._numeric_s(column, as_numbers, rows, name, unit)
            stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
            self._reject_timestamp(column, stamps.isna().to_numpy(), rows, name)
        seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        return np.asarray(seconds, dtype=np.float64)

    def _numeric_s(
        self, column: pd.Series, numbers: FloatArray, rows: np.ndarray, name: str, unit: TimestampUnit
    ) -> FloatArray:
        self._reject_timestamp(column, ~np.isfinite(numbers), rows, name)
        if unit == "s" and abs(numbers[0]) > _EPOCH_MS_THRESHOLD:
            raise self.error(
                f"timestamp {numbers[0]:.0f} is too large for seconds (it looks like epoch milliseconds)",
                name,
                int(rows[0]),
                'timestamp_unit: "ms" (or "us", "ns") for numeric timestamps in other units',
            )
        return numbers * _UNIT_S[unit]

    def _reject_timestamp(self, column: pd.Series, bad: np.ndarray, rows: np.ndarray, name: str) -> None:
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise self.error(
                f"cannot read timestamp {column.iloc[first]!r}", name, int(rows[first]), _VALID_TIMESTAMPS
            )

    def _numbers(self, column: pd.Series, rows: np.ndarray, name: str) -> FloatArray:
        """Values as floats, NaN where empty; text that is not a number is an error."""
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        bad = (np.isnan(values) & column.notna().to_numpy()) | np.isinf(values)
        if not pd.api.types.is_numeric_dtype(column):
            bad &= ~column.astype(str).str.strip().str.lower().isin(["nan", ""]).to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise self.error(
                f"cannot read {column.iloc[first]!r} as a number", name, int(rows[first]), "a finite number"
            )
        return values


def _rate_function(
    path: Path, t_s: FloatArray, rates: FloatArray, interpolation: Interpolation
) -> RateFunction:
    period_s = float(t_s[-1] + np.median(np.diff(t_s)))
    if interpolation == "previous":
        knot_t = np.repeat(np.append(t_s, period_s), 2)[1:-1]
        knot_v = np.repeat(rates, 2)
        return RateFunction(knot_t, knot_v, knot_v, period_s, path)
    knot_t = np.append(t_s, period_s)
    return RateFunction(knot_t, np.append(rates, rates[-1]), np.append(rates, rates[0]), period_s, path)


def _counter_function(path: Path, t_s: FloatArray, totals: FloatArray) -> RateFunction:
    """Average rate between samples; a decrease is a reset, after which the total counts from zero."""
    increase = np.diff(totals)
    reset = increase < 0.0
    increase[reset] = totals[1:][reset]
    rates = increase / np.diff(t_s)
    knot_t = np.repeat(t_s, 2)[1:-1]
    knot_v = np.repeat(rates, 2)
    return RateFunction(knot_t, knot_v, knot_v, float(t_s[-1]), path)
