"""Rate shapes averaged exactly over simulation steps.

Every deterministic shape is integrated rather than sampled: the expected
number of requests in a step is the integral of the rate over it, so a step
level or a spike edge that falls inside a step contributes in proportion to
the time it covers, whatever the step. Functions take the step edges (n + 1
increasing times, seconds) and return n step-average rates.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
DAY_BLEND_S = 3600.0
"""Weekday factors blend linearly over this long either side of midnight."""


def step_count(horizon_s: float, step_s: float) -> int:
    """Steps covering the horizon; a last partial step is simulated whole."""
    if not (0.0 < step_s < math.inf and 0.0 < horizon_s < math.inf):
        raise ValueError(f"horizon_s and step_s must be positive and finite, got {horizon_s}, {step_s}")
    return math.ceil(horizon_s / step_s - 1e-9)


def edges(origin_s: float, n: int, step_s: float) -> FloatArray:
    """Step boundaries origin, origin + step, ..., origin + n·step."""
    return origin_s + step_s * np.arange(n + 1, dtype=np.float64)


def pwl_integral(knot_t: FloatArray, knot_v: FloatArray, t: FloatArray) -> FloatArray:
    """∫ from knot_t[0] to t of the piecewise-linear function through the knots.

    The function is constant before the first knot and after the last. Two
    knots at the same time make a jump (the later one wins from then on), which
    is how piecewise-constant series are written.
    """
    widths = np.diff(knot_t)
    cumulative = np.concatenate(([0.0], np.cumsum(0.5 * (knot_v[1:] + knot_v[:-1]) * widths)))
    last = len(knot_t) - 1
    j = np.searchsorted(knot_t, t, side="right") - 1
    jc = np.clip(j, 0, last)
    nxt = np.minimum(jc + 1, last)
    width = knot_t[nxt] - knot_t[jc]
    safe_width = np.where(width > 0.0, width, 1.0)
    slope = np.where(width > 0.0, (knot_v[nxt] - knot_v[jc]) / safe_width, 0.0)
    dt = t - knot_t[jc]
    inside = cumulative[jc] + dt * (knot_v[jc] + 0.5 * slope * dt)
    before = (t - knot_t[0]) * knot_v[0]
    return np.where(j < 0, before, inside)


def pwl_average(knot_t: FloatArray, knot_v: FloatArray, step_edges: FloatArray) -> FloatArray:
    return np.diff(pwl_integral(knot_t, knot_v, step_edges)) / np.diff(step_edges)


def spike_profile(
    step_edges: FloatArray, start_s: float, rise_s: float, hold_s: float, decay_s: float
) -> FloatArray:
    """Step averages of a unit spike: 0 → 1 linearly over the rise, 1 for the hold, then e^(−t/decay)."""
    top_s = start_s + rise_s
    end_s = top_s + hold_s
    knot_t = np.array([start_s, top_s, end_s, end_s])
    knot_v = np.array([0.0, 1.0, 1.0, 0.0])
    integral = pwl_integral(knot_t, knot_v, step_edges)
    if decay_s > 0.0:
        integral = integral + decay_s * -np.expm1(-np.maximum(step_edges - end_s, 0.0) / decay_s)
    return np.diff(integral) / np.diff(step_edges)


def daily_cosine(step_edges: FloatArray, clock_s: float, peak_hour: float) -> FloatArray:
    """Step averages of (1 + cos)/2 over a day: 1 at `peak_hour`, 0 twelve hours later.

    `clock_s` is the time of day (seconds after midnight) at time 0.
    """
    omega = 2.0 * math.pi / DAY_S
    phase = omega * (step_edges + clock_s - peak_hour * 3600.0)
    mean_cos = np.diff(np.sin(phase)) / (omega * np.diff(step_edges))
    return 0.5 * (1.0 + mean_cos)


def weekly_factor(step_edges: FloatArray, week_clock_s: float, day_factors: tuple[float, ...]) -> FloatArray:
    """Per-weekday factor at each step's midpoint; `week_clock_s` is seconds after Monday 00:00 at time 0."""
    knot_t = np.array([t for d in range(7) for t in (d * DAY_S + DAY_BLEND_S, (d + 1) * DAY_S - DAY_BLEND_S)])
    knot_v = np.repeat(np.asarray(day_factors, dtype=np.float64), 2)
    mid = 0.5 * (step_edges[1:] + step_edges[:-1]) + week_clock_s
    return np.interp(mid, knot_t, knot_v, period=WEEK_S)


def correlated_noise(
    n: int, step_s: float, cv: float, correlation_time_s: float, rng: np.random.Generator
) -> FloatArray:
    """A mean-1 lognormal multiplier whose log is an Ornstein–Uhlenbeck process sampled every step.

    The exact OU discretisation keeps the stationary spread and correlation
    time the same for any step; the first value starts in the stationary
    distribution so the run has no warm-up. Draws exactly n normals.
    """
    if cv == 0.0:
        return np.ones(n)
    sigma = math.sqrt(math.log1p(cv * cv))
    phi = math.exp(-step_s / correlation_time_s)
    shocks = rng.standard_normal(n)
    first = sigma * shocks[0]
    gain = sigma * math.sqrt(-math.expm1(-2.0 * step_s / correlation_time_s))
    # A plain loop: ~0.1 µs a step, where scipy.signal.lfilter would cost ~1 s of import.
    log_multiplier = np.empty(n)
    x = first
    log_multiplier[0] = x
    for i, e in enumerate((gain * shocks[1:]).tolist(), start=1):
        x = phi * x + e
        log_multiplier[i] = x
    return np.exp(log_multiplier - 0.5 * sigma * sigma)
