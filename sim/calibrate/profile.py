"""A daily/weekly traffic profile with a noise model, fitted to a recorded request rate.

The recorded series is what a backtest replays; the profile is for synthetic
futures ("the same week, ×1.5"). The log rate is regressed on a few daily
harmonics plus an offset per weekday seen for at least half a day; the
weekday factors go into the scenario block only when all seven were seen. The
residual, minus the Poisson noise of counting requests, is the correlated
noise the scenario's `noise:` block models: its spread gives the CV, its
lag-one autocorrelation the correlation time. The first harmonic of the
fitted day, on the linear scale, gives the `diurnal` block (trough, peak,
peak hour) a scenario can use directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
HARMONICS = 4
MIN_DAYS = 3.0
MIN_DAY_S = 12 * 3600.0  # a weekday needs this much history to get its own level
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class TrafficProfile:
    """Hourly shape (mean 1, UTC hours), weekday factors (None where not fitted) and the noise model."""

    hourly: np.ndarray
    day_factors: tuple[float, ...] | None  # Monday first, when every weekday was observed
    weekday_factors: dict[str, float]  # the weekdays observed (≥ 12 h), mean 1 over them
    mean_rps: float
    base_rps: float
    peak_rps: float
    peak_hour: float
    noise_cv: float
    noise_correlation_s: float
    days: float
    r2: float
    coefficients: np.ndarray  # intercept, then cos/sin pairs per harmonic (log scale)

    def shape_at(self, t_s: np.ndarray) -> np.ndarray:
        """The fitted daily shape (mean 1 over a day) at the given times, without weekday factors."""
        return _harmonic_shape(self.coefficients, np.asarray(t_s, dtype=float))


def _harmonics(t_s: np.ndarray) -> np.ndarray:
    theta = 2.0 * math.pi * (np.mod(t_s, DAY_S) / DAY_S)
    cols = []
    for h in range(1, HARMONICS + 1):
        cols += [np.cos(h * theta), np.sin(h * theta)]
    return np.column_stack(cols)


def _harmonic_shape(coef: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    day = np.arange(0.0, DAY_S, 300.0)
    norm = float(np.mean(np.exp(_harmonics(day) @ coef[1:])))
    return np.exp(_harmonics(t_s) @ coef[1:]) / norm


def weekday(t_s: np.ndarray) -> np.ndarray:
    """Monday = 0, in UTC (1970-01-01 was a Thursday)."""
    return (np.floor(np.asarray(t_s) / DAY_S).astype(np.int64) + 3) % 7


def fit_profile(t_s: np.ndarray, rps: np.ndarray, step_s: float) -> TrafficProfile:
    """Fit the profile to a rate series at interval midpoints `t_s`; NaN intervals (gaps) are skipped.

    Raises ValueError for a history shorter than MIN_DAYS of usable intervals.
    """
    ok = np.isfinite(rps) & (rps > 0)
    days = float(ok.sum()) * step_s / DAY_S
    if days < MIN_DAYS:
        raise ValueError(f"{days:.1f} days of usable traffic; a daily profile needs at least {MIN_DAYS:g}")
    t, y = t_s[ok], np.log(rps[ok])
    wd = weekday(t)
    seen = np.bincount(wd, minlength=7) * step_s
    observed = [d for d in range(7) if seen[d] >= MIN_DAY_S]
    cols = [np.ones(len(t)), *_harmonics(t).T]
    # Offsets for the other well-observed weekdays, relative to the first; a weekday seen only
    # briefly shares the reference level (its few hours would otherwise be fitted exactly).
    cols += [(wd == d).astype(float) for d in observed[1:]]
    design = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ coef
    resid = y - fitted
    r2 = 1.0 - float(resid @ resid) / float(np.sum((y - y.mean()) ** 2))
    n_h = 1 + 2 * HARMONICS
    factors = np.exp(np.concatenate(([0.0], coef[n_h:])))
    factors /= factors.mean()
    weekday_factors = {WEEKDAYS[d]: float(f) for d, f in zip(observed, factors, strict=True)}
    day_factors = tuple(weekday_factors[d] for d in WEEKDAYS) if len(observed) == 7 else None
    hours = (np.arange(24) + 0.5) * 3600.0
    hourly = _harmonic_shape(coef[:n_h], hours)
    mean_rps = float(np.mean(rps[ok]))
    base, peak, peak_hour = _cosine(hourly * mean_rps)
    cv, tau = _noise(resid, t, rps[ok], step_s)
    return TrafficProfile(
        hourly,
        day_factors,
        weekday_factors,
        mean_rps,
        base,
        peak,
        peak_hour,
        cv,
        tau,
        days,
        r2,
        coef[:n_h].copy(),
    )


def _cosine(hourly_rps: np.ndarray) -> tuple[float, float, float]:
    """Trough, peak and peak hour of the first harmonic of an hourly profile."""
    theta = 2.0 * math.pi * (np.arange(24) + 0.5) / 24.0
    level = float(hourly_rps.mean())
    a = 2.0 * float(np.mean(hourly_rps * np.cos(theta)))
    b = 2.0 * float(np.mean(hourly_rps * np.sin(theta)))
    amplitude = math.hypot(a, b)
    peak_hour = (math.degrees(math.atan2(b, a)) / 15.0) % 24.0
    return max(level - amplitude, 0.0), level + amplitude, peak_hour


def _noise(resid: np.ndarray, t: np.ndarray, rps: np.ndarray, step_s: float) -> tuple[float, float]:
    """CV and correlation time of the multiplicative noise, after removing Poisson counting noise."""
    total = float(np.var(resid))
    poisson = float(np.mean(1.0 / (rps * step_s)))
    excess = total - poisson
    if excess <= 1e-6:
        return 0.0, step_s
    consecutive = np.isclose(np.diff(t), step_s)
    a, b = resid[:-1][consecutive], resid[1:][consecutive]
    acf1 = float(np.mean((a - resid.mean()) * (b - resid.mean()))) / total if len(a) > 2 else 0.0
    phi = min(max(acf1 * total / excess, 1e-6), 0.999999)
    return math.sqrt(math.expm1(excess)), -step_s / math.log(phi)
