"""Request counts per step from an expected rate.

Each function draws a fixed pattern of random numbers that depends only on the
rates (and so only on the traffic spec and horizon), never on what the
autoscaler does, so two configurations compared on one seed see the same
requests.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.workload.shapes import FloatArray

IntArray = NDArray[np.int64]


def poisson_counts(rates: FloatArray, step_s: float, rng: np.random.Generator) -> IntArray:
    return rng.poisson(rates * step_s).astype(np.int64)


def deterministic_counts(rates: FloatArray, step_s: float) -> IntArray:
    """Rounded counts whose running total never drifts more than half a request from the expected one."""
    expected_total = np.cumsum(rates * step_s)
    rounded_total = np.floor(expected_total + 0.5)
    return np.diff(rounded_total, prepend=0.0).astype(np.int64)


def overdispersed_counts(
    rates: FloatArray, step_s: float, dispersion: float, window_s: float, rng: np.random.Generator
) -> IntArray:
    """Poisson counts around rate × a mean-1 gamma factor that is redrawn every `window_s`.

    Over one window the count is negative binomial with variance μ + dispersion·μ².
    A step spanning k windows averages k independent factors, which is again a
    gamma (shape k/dispersion); steps shorter than a window share its factor.
    """
    n = len(rates)
    if step_s >= window_s:
        windows_per_step = step_s / window_s
        shape = windows_per_step / dispersion
        factor = rng.gamma(shape, 1.0 / shape, size=n)
    else:
        midpoints_s = (np.arange(n) + 0.5) * step_s
        window_index = np.floor(midpoints_s / window_s).astype(np.int64)
        n_windows = int(window_index[-1]) + 1 if n else 0
        shape = 1.0 / dispersion
        factor = rng.gamma(shape, dispersion, size=n_windows)[window_index]
    return rng.poisson(rates * step_s * factor).astype(np.int64)
