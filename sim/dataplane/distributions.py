"""Positive random durations given by mean and CV: sampling, CDF and quantiles.

The service model states every duration (service time, pod startup) as a
family plus mean and coefficient of variation, because that is what can be
read off a histogram. This module turns that into numbers. CDFs and quantiles
go through `scipy.special` ufuncs rather than `scipy.stats` objects: the fluid
data plane evaluates them inside its per-interval loop, where the frozen
distribution machinery costs more than the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from sim.workload.service import Dist


def scv(dist: Dist) -> float:
    """Squared coefficient of variation, the only shape fact the queueing formulas use."""
    return _cv(dist) ** 2


def sample(dist: Dist, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` independent draws (seconds)."""
    cv = _cv(dist)
    if cv == 0.0:
        return np.full(size, dist.mean_s)
    if dist.kind == "exponential":
        return rng.exponential(dist.mean_s, size)
    if dist.kind == "lognormal":
        mu, sigma = _lognormal_params(dist.mean_s, cv)
        return rng.lognormal(mu, sigma, size)
    shape, scale = _gamma_params(dist.mean_s, cv)
    return rng.gamma(shape, scale, size)


def cdf(dist: Dist, x: np.ndarray) -> np.ndarray:
    """P(duration ≤ x), elementwise."""
    x = np.asarray(x, dtype=float)
    cv = _cv(dist)
    if cv == 0.0:
        return (x >= dist.mean_s).astype(float)
    pos = np.maximum(x, 0.0)
    if dist.kind == "exponential":
        return -np.expm1(-pos / dist.mean_s)
    if dist.kind == "lognormal":
        mu, sigma = _lognormal_params(dist.mean_s, cv)
        with np.errstate(divide="ignore"):
            return np.where(x > 0.0, special.ndtr((np.log(pos) - mu) / sigma), 0.0)
    shape, scale = _gamma_params(dist.mean_s, cv)
    return special.gammainc(shape, pos / scale)


def ppf(dist: Dist, q: np.ndarray) -> np.ndarray:
    """Quantile function: the duration below which a share `q` falls."""
    q = np.asarray(q, dtype=float)
    cv = _cv(dist)
    if cv == 0.0:
        return np.full(q.shape, dist.mean_s)
    if dist.kind == "exponential":
        return -dist.mean_s * np.log1p(-q)
    if dist.kind == "lognormal":
        mu, sigma = _lognormal_params(dist.mean_s, cv)
        return np.exp(mu + sigma * special.ndtri(q))
    shape, scale = _gamma_params(dist.mean_s, cv)
    return special.gammaincinv(shape, q) * scale


def _cv(dist: Dist) -> float:
    if dist.mean_s <= 0.0 or not math.isfinite(dist.mean_s):
        raise ValueError(f"{dist.kind} duration needs a positive finite mean, got mean_s={dist.mean_s}")
    if dist.cv < 0.0 or not math.isfinite(dist.cv):
        raise ValueError(f"{dist.kind} duration needs a finite CV >= 0, got cv={dist.cv}")
    if dist.kind == "deterministic":
        return 0.0
    if dist.kind == "exponential":
        if dist.cv != 1.0:
            raise ValueError(
                f"an exponential duration has CV 1, got cv={dist.cv}; use gamma or lognormal for another CV"
            )
        return 1.0
    return dist.cv


def _lognormal_params(mean_s: float, cv: float) -> tuple[float, float]:
    sigma2 = math.log1p(cv * cv)
    return math.log(mean_s) - sigma2 / 2.0, math.sqrt(sigma2)


def _gamma_params(mean_s: float, cv: float) -> tuple[float, float]:
    return 1.0 / (cv * cv), mean_s * cv * cv
