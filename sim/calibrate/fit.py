"""Fitting the service model to a history: service time, concurrency, CPU, start-up and launch delays.

Every estimator returns its value with an uncertainty, because a capacity
plan built on a number nobody can qualify is a guess:

- **Service time** from a histogram: the mean is exact from `_sum/_count`; the
  shape (lognormal or gamma, whichever fits the bucket counts better) by
  maximum likelihood with the mean held; uncertainty by a block bootstrap over
  time, which also covers drift that a per-request standard error ignores.
- **Concurrency** (workers per pod) by fitting the queueing model the fluid
  data plane uses (`sim.dataplane.queueing`: per-pod M/G/k, Erlang C with the
  Allen–Cunneen correction) to latency against per-pod load, by multinomial
  likelihood of the response-time buckets. Only a latency that contains the
  wait for a worker can show k; at low load every k above the busy workers
  predicts the same latency. So k is reported only when one value beats its
  neighbours clearly **and** the data had the queueing to show it (a
  response-time histogram next to a handler-time one, or ≥ 30 minutes at
  utilisation ≥ 0.7 under the fitted k); otherwise "not identifiable" with
  the lower bound the busy workers give.
- **CPU** per request and idle CPU per pod by robust (soft-L1) regression of
  cores used on requests per second and ready pods: one slow GC pause does
  not move the fit.
- **Durations** (pod start-up, node launch) by maximum likelihood from
  per-object samples, or from a histogram like the service time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from sim.dataplane import distributions
from sim.dataplane.queueing import erlang_c, wait_tail_rate
from sim.workload.service import Dist

FAMILIES = ("lognormal", "gamma")
CV_BOUNDS = (0.05, 5.0)
BOOTSTRAP = 40
JOINT_BOOTSTRAP = 16
# Log-likelihood lead the best k needs over every other k to count as pinned down.
K_MARGIN = 10.0
K_MAX = 64
UTILISATION_EVIDENCE = 0.7
EVIDENCE_S = 1800.0
LOAD_BINS = 48
# CPU per request is reported only when its standard error is within this share of it.
CPU_SEPARABLE = 0.1
# Utilisation the model is evaluated at, at most: the stationary wait diverges at 1, and a
# bin beyond capacity is the fit telling k is too small, which a large finite wait says as well.
RHO_CAP = 0.995
_WAIT_EDGES = np.linspace(0.0, 1.0, 33)


@dataclass(frozen=True)
class DistEstimate:
    """A fitted duration distribution: family, mean and CV with standard errors, and the evidence size."""

    kind: str
    mean_s: float
    cv: float
    mean_se_s: float
    cv_se: float
    n: int
    median_s: float
    median_se_s: float
    log_likelihood: dict[str, float] = field(default_factory=dict)

    def dist(self) -> Dist:
        return Dist(self.kind, self.mean_s, self.cv)  # type: ignore[arg-type]


def _bucket_probs(cdf_at_bounds: np.ndarray) -> np.ndarray:
    cdf = np.maximum.accumulate(np.clip(cdf_at_bounds, 0.0, 1.0), axis=-1)
    lead = np.zeros((*cdf.shape[:-1], 1))
    tail = np.ones((*cdf.shape[:-1], 1))
    return np.maximum(np.diff(np.concatenate((lead, cdf, tail), axis=-1), axis=-1), 1e-12)


def _shape_fit(counts: np.ndarray, bounds_s: np.ndarray, mean_s: float, kind: str) -> tuple[float, float]:
    """Best CV for one family with the mean held, and its log-likelihood."""

    def nll(log_cv: float) -> float:
        p = _bucket_probs(distributions.cdf(Dist(kind, mean_s, math.exp(log_cv)), bounds_s))  # type: ignore[arg-type]
        return -float(np.dot(counts, np.log(p)))

    res = optimize.minimize_scalar(
        nll,
        bounds=(math.log(CV_BOUNDS[0]), math.log(CV_BOUNDS[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return math.exp(float(res.x)), -float(res.fun)


def _blocks(n: int, count: int = 30) -> list[np.ndarray]:
    size = max(1, n // count)
    return [np.arange(i, min(i + size, n)) for i in range(0, n, size)]


def _median(dist: Dist) -> float:
    return float(distributions.ppf(dist, np.array([0.5]))[0])


def fit_histogram(
    counts: np.ndarray, sums_s: np.ndarray, bounds_s: np.ndarray, rng: np.random.Generator
) -> DistEstimate:
    """A duration distribution from per-interval histogram counts (rows: intervals, last column +Inf).

    `bounds_s` are the finite bucket bounds in seconds; `sums_s` the per-interval `_sum`.
    """
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=0)
    n = float(total.sum())
    if n <= 0:
        raise ValueError("the histogram holds no observations")
    mean_s = float(np.sum(sums_s)) / n
    fits = {kind: _shape_fit(total, bounds_s, mean_s, kind) for kind in FAMILIES}
    kind = max(fits, key=lambda k: fits[k][1])
    cv = fits[kind][0]
    blocks = _blocks(len(counts))
    means, cvs = [], []
    for _ in range(BOOTSTRAP):
        pick = np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
        c = counts[pick].sum(axis=0)
        if c.sum() <= 0:
            continue
        m = float(np.sum(sums_s[pick])) / float(c.sum())
        means.append(m)
        cvs.append(_shape_fit(c, bounds_s, m, kind)[0])
    dist = Dist(kind, mean_s, cv)  # type: ignore[arg-type]
    median = _median(dist)
    med_se = median * float(np.std(means, ddof=1)) / mean_s if len(means) > 1 else math.nan
    return DistEstimate(
        kind,
        mean_s,
        cv,
        float(np.std(means, ddof=1)) if len(means) > 1 else math.nan,
        float(np.std(cvs, ddof=1)) if len(cvs) > 1 else math.nan,
        int(n),
        median,
        med_se,
        {k: v[1] for k, v in fits.items()},
    )


def _censored_fit(kind: str, x: np.ndarray, c: np.ndarray) -> tuple[float, float, float]:
    """Mean, CV and log-likelihood of one family from complete durations `x` and lower bounds `c`.

    A pod deleted (or still starting) before it became ready says only that
    its start-up was longer than it was watched: dropping it would bias the
    fit toward fast starts, so it enters the likelihood through the survival
    function.
    """
    if kind == "lognormal":
        logs = np.log(x)
        start = np.array([float(logs.mean()), math.log(max(float(logs.std()), 1e-3))])

        def nll(p: np.ndarray) -> float:
            mu, sigma = p[0], math.exp(p[1])
            ll = np.sum(stats.norm.logpdf(logs, mu, sigma) - logs)
            return -float(ll + np.sum(stats.norm.logsf(np.log(c), mu, sigma)))
    else:
        shape0, _, scale0 = stats.gamma.fit(x, floc=0.0)
        start = np.array([math.log(shape0), math.log(scale0)])

        def nll(p: np.ndarray) -> float:
            shape, scale = math.exp(p[0]), math.exp(p[1])
            ll = np.sum(stats.gamma.logpdf(x, shape, scale=scale))
            return -float(ll + np.sum(stats.gamma.logsf(c, shape, scale=scale)))

    if len(c):
        res = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-6})
        p, ll = res.x, -float(res.fun)
    else:
        p, ll = start, -nll(start)
    if kind == "lognormal":
        sigma = math.exp(p[1])
        return math.exp(p[0] + sigma**2 / 2), math.sqrt(math.expm1(sigma**2)), ll
    shape, scale = math.exp(p[0]), math.exp(p[1])
    return shape * scale, 1.0 / math.sqrt(shape), ll


def fit_samples(
    samples_s: np.ndarray, rng: np.random.Generator, censored_s: np.ndarray | None = None
) -> DistEstimate:
    """A duration distribution from individual observations (pod start-ups), by maximum likelihood.

    `censored_s` are lower bounds of durations not seen to finish (right-censored).
    """
    x = np.asarray(samples_s, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    c = np.asarray(censored_s if censored_s is not None else [], dtype=float)
    c = c[np.isfinite(c) & (c > 0)]
    if len(x) < 2:
        raise ValueError("need at least two positive observations")
    fits = {kind: _censored_fit(kind, x, c) for kind in FAMILIES}
    kind = max(fits, key=lambda k: fits[k][2])
    mean_s, cv, _ = fits[kind]
    boots = [
        _censored_fit(kind, rng.choice(x, len(x)), rng.choice(c, len(c)) if len(c) else c)
        for _ in range(BOOTSTRAP)
    ]
    medians = [_median(Dist(kind, m, v)) for m, v, _ in boots]  # type: ignore[arg-type]
    return DistEstimate(
        kind,
        mean_s,
        cv,
        float(np.std([b[0] for b in boots], ddof=1)),
        float(np.std([b[1] for b in boots], ddof=1)),
        len(x),
        _median(Dist(kind, mean_s, cv)),  # type: ignore[arg-type]
        float(np.std(medians, ddof=1)),
        {k: v[2] for k, v in fits.items()},
    )


# --- concurrency -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadBins:
    """Intervals grouped by per-pod arrival rate: the response histogram and `_sum` per load level."""

    rate_per_pod: np.ndarray  # mean λ per pod in each bin (requests/s)
    counts: np.ndarray  # (bins, buckets)
    sums_s: np.ndarray
    seconds: np.ndarray  # interval time in each bin


def bin_by_load(
    rate_per_pod: np.ndarray, counts: np.ndarray, sums_s: np.ndarray, step_s: float, bins: int = LOAD_BINS
) -> LoadBins:
    """Pool intervals of similar per-pod load, so each model evaluation costs a few dozen table rows."""
    ok = np.isfinite(rate_per_pod) & (counts.sum(axis=1) > 0) & np.isfinite(sums_s)
    lam, cnt, sm = rate_per_pod[ok], counts[ok], sums_s[ok]
    edges = np.unique(np.quantile(lam, np.linspace(0.0, 1.0, bins + 1)))
    which = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, max(len(edges) - 2, 0))
    out_lam, out_cnt, out_sum, out_sec = [], [], [], []
    for b in np.unique(which):
        sel = which == b
        weight = cnt[sel].sum(axis=1)
        out_lam.append(float(np.average(lam[sel], weights=weight)))
        out_cnt.append(cnt[sel].sum(axis=0))
        out_sum.append(float(sm[sel].sum()))
        out_sec.append(float(sel.sum()) * step_s)
    return LoadBins(np.array(out_lam), np.array(out_cnt), np.array(out_sum), np.array(out_sec))


def _response_probs(
    service: Dist, k: int, rho: np.ndarray, bounds_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket probabilities at the recorded bounds and the mean response, per load row, for k workers.

    The per-pod M/G/k of the fluid plane: a request waits with probability
    Erlang C, the wait of those who wait is exponential at the Allen–Cunneen
    tail rate (Poisson arrivals, ca² = 1), and the response adds an
    independent service time. The convolution is integrated over the wait,
    each cell weighted by its exact exponential mass.
    """
    rho = np.minimum(np.asarray(rho, dtype=float), RHO_CAP)
    c = erlang_c(float(k), rho * k)[:, None, None]
    theta = wait_tail_rate(float(k), rho, service.mean_s, 1.0, service.cv**2)[:, None, None]
    x = np.asarray(bounds_s, dtype=float)[None, :, None]
    edges = x * _WAIT_EDGES[None, None, :]
    mass = -np.diff(np.exp(-theta * edges), axis=2)
    mids = 0.5 * (edges[:, :, 1:] + edges[:, :, :-1])
    delayed = (distributions.cdf(service, x - mids) * mass).sum(axis=2)
    cdf = (1.0 - c[:, :, 0]) * distributions.cdf(service, x[:, :, 0]) + c[:, :, 0] * delayed
    return _bucket_probs(cdf), service.mean_s + c[:, 0, 0] / theta[:, 0, 0]


def _loglik(data: LoadBins, service: Dist, k: int, bounds_s: np.ndarray) -> float:
    """Multinomial log-likelihood of the buckets plus the normal log-likelihood of each bin's `_sum`."""
    rho = data.rate_per_pod * service.mean_s / k
    probs, mean_s = _response_probs(service, k, rho, bounds_s)
    ll = float(np.sum(data.counts * np.log(probs)))
    n = data.counts.sum(axis=1)
    var = np.maximum(n * mean_s**2 * (1.0 + service.cv**2), 1e-12)
    return ll - 0.5 * float(np.sum((data.sums_s - n * mean_s) ** 2 / var))


@dataclass(frozen=True)
class ConcurrencyEstimate:
    """Workers per pod when the history pins them down; otherwise why not and a lower bound."""

    workers: int | None
    lower_bound: int
    reason: str
    profile: dict[int, float]  # log-likelihood per candidate k, relative to the best
    high_utilisation_s: float
    service: DistEstimate | None  # the service time fitted jointly, when no handler histogram gave it
    queueing_visible: bool  # one k explains the load-dependence clearly (whether or not it is reported)


def _fit_joint(data: LoadBins, k: int, start: Dist, bounds_s: np.ndarray) -> tuple[float, Dist]:
    """Service-time mean and CV (family of `start`) that best explain the response buckets with k workers."""

    def nll(x: np.ndarray) -> float:
        cv = float(np.clip(math.exp(x[1]), *CV_BOUNDS))
        return -_loglik(data, Dist(start.kind, math.exp(x[0]), cv), k, bounds_s)

    x0 = np.array([math.log(start.mean_s), math.log(start.cv)])
    res = optimize.minimize(
        nll, x0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 0.05, "maxfev": 400}
    )
    cv = float(np.clip(math.exp(res.x[1]), *CV_BOUNDS))
    return -float(res.fun), Dist(start.kind, math.exp(res.x[0]), cv)


def fit_concurrency(
    rate_per_pod: np.ndarray,
    counts: np.ndarray,
    sums_s: np.ndarray,
    bounds_s: np.ndarray,
    step_s: float,
    service: DistEstimate | None,
    paired: bool,
    guess: DistEstimate | None,
    rng: np.random.Generator,
) -> ConcurrencyEstimate:
    """Profile likelihood over k of a response-time histogram against per-pod load (per interval).

    `service` is the service time from a handler histogram (then only k is
    fitted); without it the service-time mean and CV are fitted jointly for
    every k, starting from (and in the family of) `guess`, with a block
    bootstrap for their uncertainty. `paired` says the response histogram
    sits next to a handler one (an ingress in front of the app), which is
    evidence of queueing by itself; a single histogram needs the
    high-utilisation time instead.
    """
    ok = np.isfinite(rate_per_pod) & np.isfinite(sums_s) & (np.nan_to_num(counts).sum(axis=1) > 0)
    data = bin_by_load(rate_per_pod[ok], counts[ok], sums_s[ok], step_s)
    known = service or guess
    first = known.dist() if known else Dist("lognormal", _low_load_mean(data), 1.0)
    ll: dict[int, float] = {}
    joint: dict[int, Dist] = {}
    current = first
    plateau = 0
    for k in range(1, K_MAX + 1):
        if service is not None:
            ll[k] = _loglik(data, service.dist(), k, bounds_s)
        else:
            ll[k], current = _fit_joint(data, k, current, bounds_s)
            joint[k] = current
        busy = float(np.max(data.rate_per_pod)) * (service or current).mean_s
        if k > busy + 2 and abs(ll[k] - ll[k - 1]) < 0.5:
            plateau += 1
            if plateau >= 3:
                break
        else:
            plateau = 0
    k_best = max(ll, key=lambda k: ll[k])
    top = ll[k_best]
    profile = {k: round(v - top, 3) for k, v in ll.items()}
    others = [v for k, v in ll.items() if k != k_best]
    margin = top - max(others) if others else 0.0
    fitted = service.dist() if service else joint[k_best]
    lower = max(1, math.ceil(float(np.max(data.rate_per_pod)) * fitted.mean_s))
    rho = rate_per_pod * fitted.mean_s / k_best
    high_s = float(np.sum(np.isfinite(rho) & (rho >= UTILISATION_EVIDENCE))) * step_s
    at_edge = k_best >= max(ll) - 2
    joint_est = None
    if service is None:
        joint_est = _joint_uncertainty(
            rate_per_pod[ok], counts[ok], sums_s[ok], bounds_s, step_s, k_best, fitted, rng
        )
    if at_edge or margin < K_MARGIN:
        reason = (
            "latency does not change with load the way any single k predicts: "
            f"every k ≥ {lower} fits about as well (the latency holds no visible queueing)"
        )
        return ConcurrencyEstimate(None, lower, reason, profile, high_s, joint_est, False)
    if not paired and high_s < EVIDENCE_S:
        reason = (
            f"only {high_s / 60:.0f} min at utilisation ≥ {UTILISATION_EVIDENCE} under the best fit "
            f"(k={k_best}); ≥ {EVIDENCE_S / 60:.0f} min, or an ingress histogram next to the app's, "
            "is needed to trust k"
        )
        return ConcurrencyEstimate(None, lower, reason, profile, high_s, joint_est, True)
    reason = f"k={k_best} leads every other k by ≥ {margin:.0f} log-likelihood units"
    return ConcurrencyEstimate(k_best, lower, reason, profile, high_s, joint_est, True)


def _joint_uncertainty(
    rate_per_pod: np.ndarray,
    counts: np.ndarray,
    sums_s: np.ndarray,
    bounds_s: np.ndarray,
    step_s: float,
    k: int,
    fitted: Dist,
    rng: np.random.Generator,
) -> DistEstimate:
    """The jointly fitted service time with block-bootstrap standard errors (k held at its estimate)."""
    blocks = _blocks(len(rate_per_pod))
    means, cvs = [], []
    for _ in range(JOINT_BOOTSTRAP):
        pick = np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
        data = bin_by_load(rate_per_pod[pick], counts[pick], sums_s[pick], step_s)
        _, d = _fit_joint(data, k, fitted, bounds_s)
        means.append(d.mean_s)
        cvs.append(d.cv)
    median = _median(fitted)
    mean_se = float(np.std(means, ddof=1))
    return DistEstimate(
        fitted.kind,
        fitted.mean_s,
        fitted.cv,
        mean_se,
        float(np.std(cvs, ddof=1)),
        int(counts.sum()),
        median,
        median * mean_se / fitted.mean_s,
    )


def _low_load_mean(data: LoadBins) -> float:
    """Mean latency of the least-loaded bins: a starting point for the service-time mean."""
    n = data.counts.sum(axis=1)
    order = np.argsort(data.rate_per_pod)[: max(1, len(n) // 4)]
    return float(data.sums_s[order].sum() / max(n[order].sum(), 1.0))


# --- CPU -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuEstimate:
    cpu_per_request_s: float
    idle_cores_per_pod: float
    cpu_per_request_se_s: float
    idle_se_cores: float
    n: int
    r2: float
    separable: bool
    mean_cores_per_pod: float
    mean_rps_per_pod: float


def fit_cpu(cores: np.ndarray, rps: np.ndarray, pods: np.ndarray) -> CpuEstimate:
    """cores ≈ idle·pods + cpu_per_request·rps, by soft-L1 robust least squares, both terms ≥ 0.

    Standard errors are the least-squares ones at the robust residual scale.
    When requests per pod hardly vary, the two terms cannot be told apart and
    the per-request error is large: `separable` is False then.
    """
    ok = np.isfinite(cores) & np.isfinite(rps) & np.isfinite(pods) & (pods > 0)
    y, x1, x2 = cores[ok], pods[ok], rps[ok]
    if len(y) < 10:
        raise ValueError(f"only {len(y)} intervals with CPU, traffic and pods")
    design = np.column_stack([x1, x2])
    ols, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ ols
    scale = max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))), 1e-9)
    start = np.clip(ols, 1e-9, None)
    res = optimize.least_squares(
        lambda b: design @ b - y, start, bounds=(0.0, np.inf), loss="soft_l1", f_scale=scale
    )
    b = res.x
    resid = y - design @ b
    dof = max(len(y) - 2, 1)
    sigma2 = (1.4826 * float(np.median(np.abs(resid - np.median(resid))))) ** 2 or float(resid @ resid) / dof
    cov = np.linalg.pinv(design.T @ design) * sigma2
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    se = math.sqrt(max(cov[1, 1], 0.0))
    return CpuEstimate(
        float(b[1]),
        float(b[0]),
        se,
        math.sqrt(max(cov[0, 0], 0.0)),
        len(y),
        1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else math.nan,
        bool(b[1] > 0 and se <= CPU_SEPARABLE * b[1]),
        float(np.mean(y / x1)),
        float(np.mean(x2 / x1)),
    )
