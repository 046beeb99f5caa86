"""Recorded histories as OpenMetrics text: the format `promtool tsdb create-blocks-from openmetrics` reads.

One file serves both ways a history is used: loaded straight into memory for
`--from-file` on a machine without Prometheus, and backfilled into a real
Prometheus (tests do this, and so can a user who wants the demo history in
Grafana). Every sample carries its timestamp, families are contiguous as the
format requires, and each series is written in time order, which is what the
backfiller needs to cut blocks. `.gz` paths are compressed transparently.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np

from sim.errors import InputError

MetricType = Literal["counter", "gauge", "histogram", "unknown"]
_TYPES = ("counter", "gauge", "histogram", "summary", "unknown", "info", "stateset", "gaugehistogram")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


@dataclass
class RawSeries:
    """One series as stored: its name, labels (without `__name__`) and samples in time order."""

    name: str
    labels: dict[str, str]
    t_s: np.ndarray
    values: np.ndarray

    def describe(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


@dataclass
class Family:
    """A metric family: the unit OpenMetrics groups samples by (`# TYPE` applies to all of them).

    For a counter the family name has no `_total`, its samples do; for a
    histogram the samples are `<name>_bucket`, `_sum` and `_count`. A counter
    whose name lacks `_total` (ingress-nginx's `nginx_ingress_controller_requests`)
    cannot be an OpenMetrics counter, so it is written as `unknown`; its values
    are the same.
    """

    name: str
    type: MetricType
    series: list[RawSeries] = field(default_factory=list)
    help: str = ""


def family_for(sample_name: str, kind: MetricType) -> tuple[str, MetricType]:
    """The family name and type a series of `kind` is written under."""
    if kind == "counter":
        if sample_name.endswith("_total"):
            return sample_name[: -len("_total")], "counter"
        return sample_name, "unknown"
    if kind == "histogram":
        for suffix in _HISTOGRAM_SUFFIXES:
            if sample_name.endswith(suffix):
                return sample_name[: -len(suffix)], "histogram"
        raise ValueError(f"{sample_name} is not a histogram sample name (_bucket, _sum or _count)")
    return sample_name, kind


def write_openmetrics(path: Path, families: Iterable[Family]) -> None:
    """Write families to `path` (gzip when it ends in .gz), atomically: a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        raw = cast(
            IO[bytes],
            gzip.GzipFile(tmp, "wb", compresslevel=6) if path.suffix == ".gz" else open(tmp, "wb"),  # noqa: SIM115
        )
        with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
            for chunk in _render(families):
                text.write(chunk)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render(families: Iterable[Family]) -> Iterator[str]:
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"family {fam.name} written twice; OpenMetrics needs each family contiguous")
        seen.add(fam.name)
        yield f"# TYPE {fam.name} {fam.type}\n"
        if fam.help:
            yield f"# HELP {fam.name} {_escape(fam.help, help_text=True)}\n"
        for s in fam.series:
            key = s.name + _label_text(s.labels)
            lines = [
                f"{key} {_number(v)} {t:.3f}\n"
                for t, v in zip(s.t_s.tolist(), s.values.tolist(), strict=True)
            ]
            yield "".join(lines)
    yield "# EOF\n"


def _label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str, help_text: bool = False) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value if help_text else value.replace('"', '\\"')


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


@dataclass
class History:
    """A file's series, with the type its families declared (by sample name)."""

    series: list[RawSeries]
    types: dict[str, str]
    source: Path

    def extent(self) -> tuple[float, float] | None:
        """First and last sample time over all series; None when the file holds no samples."""
        starts = [float(s.t_s[0]) for s in self.series if len(s.t_s)]
        ends = [float(s.t_s[-1]) for s in self.series if len(s.t_s)]
        return (min(starts), max(ends)) if starts else None


def read_openmetrics(path: Path) -> History:
    """Parse an OpenMetrics (or timestamped Prometheus text) file; InputError names the bad line.

    Every sample needs a timestamp: a history without times cannot be placed
    on a clock. Samples of one series may come in any order; they are sorted.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"history file {path} does not exist", file=path, valid="an OpenMetrics file (.om, .om.gz)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return _parse(handle, path)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read history: {exc}", file=path) from exc


def _parse(lines: Iterable[str], path: Path) -> History:
    keys: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    times: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    values: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    family_types: dict[str, str] = {}
    saw_eof = False
    lineno = 0
    for lineno, line in enumerate(lines, start=1):
        if saw_eof:
            if line.strip():
                raise InputError("content after # EOF", file=path, line=lineno)
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if parts[:2] == ["#", "EOF"]:
                saw_eof = True
            elif len(parts) >= 4 and parts[1] == "TYPE":
                kind = parts[3].strip()
                if kind not in _TYPES:
                    raise InputError(
                        f"unknown metric type {kind!r}", file=path, line=lineno, valid=", ".join(_TYPES)
                    )
                family_types[parts[2]] = kind
            continue
        text = line.split(" # ", 1)[0].strip()  # drop an exemplar
        if not text:
            continue
        close = text.rfind("}")
        if close >= 0:
            head, rest = text[: close + 1], text[close + 1 :]
        else:
            head, _, rest = text.partition(" ")
        key = keys.get(head)
        if key is None:
            key = _parse_head(head, path, lineno)
            keys[head] = key
        fields = rest.split()
        if len(fields) != 2:
            raise InputError(
                "a sample needs a value and a timestamp",
                file=path,
                line=lineno,
                valid='name{labels} value timestamp_seconds, e.g. up{job="a"} 1 1700000000',
            )
        try:
            v, t = float(fields[0]), float(fields[1])
        except ValueError as exc:
            raise InputError(f"cannot read value/timestamp {rest.strip()!r}", file=path, line=lineno) from exc
        bucket = times.get(key)
        if bucket is None:
            times[key] = [t]
            values[key] = [v]
        else:
            bucket.append(t)
            values[key].append(v)
    if not saw_eof:
        raise InputError(
            "the file ends without '# EOF': truncated?",
            file=path,
            line=lineno,
            valid="OpenMetrics text ending in # EOF",
        )
    series = []
    types: dict[str, str] = {}
    for key, ts in times.items():
        name, labels = key
        t_arr = np.asarray(ts, dtype=np.float64)
        v_arr = np.asarray(values[key], dtype=np.float64)
        if len(t_arr) > 1 and np.any(np.diff(t_arr) < 0):
            order = np.argsort(t_arr, kind="stable")
            t_arr, v_arr = t_arr[order], v_arr[order]
        series.append(RawSeries(name, dict(labels), t_arr, v_arr))
        types[name] = _type_of(name, family_types)
    return History(series, types, path)


def _parse_head(head: str, path: Path, lineno: int) -> tuple[str, tuple[tuple[str, str], ...]]:
    brace = head.find("{")
    name = head if brace < 0 else head[:brace]
    if not _NAME.fullmatch(name):
        raise InputError(f"invalid metric name {name!r}", file=path, line=lineno)
    if brace < 0:
        return name, ()
    inner = head[brace + 1 : -1]
    labels: list[tuple[str, str]] = []
    pos = 0
    while pos < len(inner):
        match = _LABEL.match(inner, pos)
        if match is None:
            raise InputError(f"cannot parse labels {head!r}", file=path, line=lineno)
        value = match.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        labels.append((match.group(1), value))
        pos = match.end()
    return name, tuple(sorted(labels))


def _type_of(sample_name: str, family_types: Mapping[str, str]) -> str:
    if sample_name in family_types:
        return family_types[sample_name]
    for suffix in ("_total", *_HISTOGRAM_SUFFIXES):
        if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in family_types:
            return family_types[sample_name[: -len(suffix)]]
    return "unknown"


def _umask() -> int:
    """The process umask (read by setting and restoring it): temp files are 0600, the result must not be."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
