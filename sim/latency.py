"""Latency histograms on fixed Prometheus-style buckets.

Per-step latency is kept as counts per bucket, never as percentiles, so run
percentiles come from summed histograms (averaging per-step percentiles is
wrong) and exports line up with real `*_bucket` series.
"""

from __future__ import annotations

import numpy as np

# Upper bounds in seconds (the implicit last bucket is +Inf). Denser than the
# prometheus_client defaults around typical web SLO thresholds (100 ms - 1 s).
BUCKETS_S: np.ndarray = np.array(
    [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
        0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
    ]
)  # fmt: skip
N_BUCKETS = len(BUCKETS_S) + 1  # the +Inf bucket included


def quantile(q: float, counts: np.ndarray) -> np.ndarray:
    """Quantile(s) from bucket counts, interpolated within a bucket like PromQL's histogram_quantile.

    `counts` has the buckets on its last axis (non-cumulative, +Inf last); any
    leading axes are kept. Empty histograms give NaN; a quantile that falls in
    the +Inf bucket gives the largest finite bound, as Prometheus does.
    """
    counts = np.asarray(counts, dtype=float)
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1]
    rank = q * total
    idx = np.sum(cum < rank[..., None], axis=-1)
    idx = np.minimum(idx, N_BUCKETS - 1)
    upper = np.append(BUCKETS_S, BUCKETS_S[-1])
    lower = np.concatenate([[0.0], BUCKETS_S])
    prev_cum = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0.0)
    in_bucket = np.take_along_axis(counts, idx[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(in_bucket > 0, (rank - prev_cum) / in_bucket, 0.0)
    value = lower[idx] + (upper[idx] - lower[idx]) * np.clip(frac, 0.0, 1.0)
    value = np.where(idx == N_BUCKETS - 1, BUCKETS_S[-1], value)
    return np.where(total > 0, value, np.nan)


def fraction_within(threshold_s: float, counts: np.ndarray) -> np.ndarray:
    """Share of observations at or under a threshold, interpolating linearly inside its bucket."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=-1)
    edges = np.concatenate([[0.0], BUCKETS_S])
    i = int(np.searchsorted(BUCKETS_S, threshold_s, side="left"))
    if i >= len(BUCKETS_S):
        within = counts[..., :-1].sum(axis=-1)
    else:
        below = counts[..., :i].sum(axis=-1)
        frac = (threshold_s - edges[i]) / (edges[i + 1] - edges[i])
        within = below + counts[..., i] * frac
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, within / total, np.nan)
