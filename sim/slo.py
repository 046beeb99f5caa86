"""Service level objectives, evaluated from per-step latency histograms.

Two named kinds, because they answer different questions:
- `latency` (request-based): the share of offered requests served within the
  threshold. Failed requests and requests still queued at the end are bad, so
  shedding load can never improve attainment.
- `latency_window` (window-based): the share of windows (say minutes) whose
  percentile latency is within the threshold. A window's percentile comes from
  the window's summed histogram, with its failures counted as slower than any
  bucket, never from averaging per-step percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sim.latency import N_BUCKETS, fraction_within, quantile


@dataclass(frozen=True)
class SLO:
    name: str
    service: str
    kind: Literal["latency", "latency_window"]
    threshold_s: float
    objective: float
    percentile: float | None = None
    window_s: float | None = None


@dataclass(frozen=True)
class SLOResult:
    name: str
    service: str
    kind: str
    objective: float
    attainment: float
    met: bool
    # Per window (latency_window) or per output step (latency): share good, for plots and breach tables.
    window_start_s: np.ndarray
    window_good: np.ndarray
    window_bad_requests: np.ndarray


def with_failures(hist: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """Histogram with failed requests added to the +Inf bucket: a failure is slower than any SLO."""
    out = np.array(hist, dtype=float, copy=True)
    out[..., N_BUCKETS - 1] += failed
    return out


def _windows(values: np.ndarray, steps_per_window: int) -> np.ndarray:
    """Sum consecutive steps into windows along axis 0 (a partial last window is kept)."""
    n = values.shape[0]
    edges = np.arange(0, n, steps_per_window)
    return np.add.reduceat(values, edges, axis=0) if n else values


def evaluate(
    slo: SLO,
    *,
    step_s: float,
    hist: np.ndarray,
    offered: np.ndarray,
    failed: np.ndarray,
) -> SLOResult:
    """Attainment of one SLO over a run.

    `hist` holds served requests per step and bucket; `offered` and `failed`
    are per-step counts. Requests offered but neither served nor failed by the
    end (backlog) count as bad for the request-based kind.
    """
    if slo.kind == "latency":
        good_per_step = np.nan_to_num(fraction_within(slo.threshold_s, hist)) * hist.sum(axis=-1)
        total_offered = float(offered.sum())
        attainment = float(good_per_step.sum() / total_offered) if total_offered > 0 else 1.0
        window = max(1, round(60.0 / step_s))
        good_w = _windows(good_per_step, window)
        offered_w = _windows(offered.astype(float), window)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(offered_w > 0, good_w / offered_w, 1.0)
        starts = np.arange(len(share)) * window * step_s
        return SLOResult(
            slo.name,
            slo.service,
            slo.kind,
            slo.objective,
            attainment,
            attainment >= slo.objective,
            starts,
            share,
            offered_w - good_w,
        )
    assert slo.window_s is not None and slo.percentile is not None
    window = max(1, round(slo.window_s / step_s))
    h = _windows(with_failures(hist, failed), window)
    p = quantile(slo.percentile / 100.0, h)
    counted = h.sum(axis=-1) > 0
    ok = np.where(counted, p <= slo.threshold_s, True)
    attainment = float(ok[counted].mean()) if counted.any() else 1.0
    bad = h.sum(axis=-1) * (1 - np.nan_to_num(fraction_within(slo.threshold_s, h), nan=1.0))
    starts = np.arange(len(ok)) * window * step_s
    return SLOResult(
        slo.name,
        slo.service,
        slo.kind,
        slo.objective,
        attainment,
        attainment >= slo.objective,
        starts,
        ok.astype(float),
        bad,
    )
