"""Stationary M/G/k formulas: Erlang C, the Allen–Cunneen wait, response-time buckets.

The fluid data plane needs, for every step and pod, the latency distribution
of a k-worker FIFO queue at the step's utilisation. Closed forms make that
cheap: the chance of waiting at all is Erlang C (extended to a fractional
number of servers, because a CPU-bound pod has a fractional number of
effective workers), the wait of those who do wait is exponential with the
M/M/k rate kμ−λ slowed by the Allen–Cunneen factor (ca²+cs²)/2, and the
response time adds an independent service time. Bucket probabilities are
then tabulated on a utilisation grid, lazily and once per queue shape, so the
per-step cost is a table look-up.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

import numpy as np
from scipy import special

from sim.dataplane import distributions
from sim.latency import BUCKETS_S, N_BUCKETS
from sim.workload.service import Dist

# The stationary formulas are tabulated up to this utilisation. Near 1 a
# queue's relaxation time is many minutes, the fluid plane's relaxing state
# approaches this row only as slowly, and load beyond capacity is carried as
# the plane's deterministic backlog rather than as a longer stationary queue.
RHO_MAX = 0.98
GRID_POINTS = 2048
# Cells of the wait integral that convolves the exponential wait with the service time.
WAIT_POINTS = 32
_WAIT_EDGES = np.linspace(0.0, 1.0, WAIT_POINTS + 1)


def erlang_c(servers: float | np.ndarray, offered_erlangs: float | np.ndarray) -> np.ndarray:
    """P(an arrival waits) in M/M/x, continuous in the number of servers x.

    Uses the incomplete-gamma form of Erlang B, which agrees with the textbook
    sum at integer x and stays finite for thousands of servers.
    """
    x = np.asarray(servers, dtype=float)
    a = np.asarray(offered_erlangs, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        log_num = x * np.log(a) - a - special.gammaln(x + 1.0)
        erlang_b = np.exp(log_num) / special.gammaincc(x + 1.0, a)
        rho = a / x
        c = erlang_b / (1.0 - rho * (1.0 - erlang_b))
    return np.where(a <= 0.0, 0.0, np.where(rho >= 1.0, 1.0, np.clip(c, 0.0, 1.0)))


def wait_tail_rate(
    servers: float, rho: np.ndarray, service_mean_s: float, ca2: float, cs2: float
) -> np.ndarray:
    """Rate θ of the exponential wait of delayed requests: (kμ−λ) / ((ca²+cs²)/2).

    With P(W>0) = Erlang C this makes the mean wait exactly the Allen–Cunneen
    approximation, and the exact M/M/k wait when ca² = cs² = 1.
    """
    return servers * (1.0 - np.asarray(rho, dtype=float)) / service_mean_s * 2.0 / (ca2 + cs2)


@dataclass(frozen=True)
class QueueShape:
    """Everything that fixes a queue's stationary latency apart from its load.

    `servers` is the effective number of workers (fewer than `workers` when the
    pod's CPU cannot keep all of them running); `scale` stretches the service
    time when even one worker cannot run at full speed; `pods` > 1 means the
    queue pools that many pods (least-request balancing) and the table reports
    per-pod figures. `queue_slots` and `timeout_s` bound the wait.
    """

    service: Dist
    servers: float
    workers: float
    scale: float
    ca2: float
    pods: int
    queue_slots: int
    timeout_s: float


@functools.lru_cache(maxsize=256)
def response_table(shape: QueueShape) -> ResponseTable:
    """One shared table per queue shape: runs and tuning candidates with equal shapes reuse it."""
    return ResponseTable(shape)


class ResponseTable:
    """Stationary response-time facts of one queue shape on a utilisation grid.

    The wait is capped at `wait_cap_s`, the wait of the last place in the
    queue (or the timeout): a stationary queue's rare overflow beyond it is
    counted as served at the cap rather than failed, so failures come only
    from sustained overload and latency stays continuous as load crosses
    capacity. Cheap columns (Erlang C, the wait's tail rate, the mean number
    in system) cover the whole grid; bucket probabilities are filled on first
    use, since a run visits a few hundred utilisations and computing them all
    up front would dominate short runs. Figures are per pod.
    """

    def __init__(self, shape: QueueShape) -> None:
        self.shape = shape
        self.service_mean_s = shape.service.mean_s * shape.scale
        self.cs2 = distributions.scv(shape.service)
        self.capacity_per_s = shape.servers / self.service_mean_s / shape.pods
        self.wait_cap_s = min(shape.queue_slots / shape.pods / self.capacity_per_s, shape.timeout_s)
        self.rho_grid = np.linspace(0.0, RHO_MAX, GRID_POINTS)
        self._c = erlang_c(shape.servers, self.rho_grid * shape.servers)
        self._theta_row = self._theta(self.rho_grid)
        mean_wait_s = self._c * -np.expm1(-self._theta_row * self.wait_cap_s) / self._theta_row
        # Mean requests in the pod (in service on effective servers, plus waiting), by Little's law.
        self.in_system = self.rho_grid * self.capacity_per_s * (self.service_mean_s + mean_wait_s)
        # Per grid row, what one served request contributes to a StepLedger row:
        # bucket probabilities, 1 served, mean response time, mean worker-holding time.
        self.per_request = np.zeros((GRID_POINTS, N_BUCKETS + 3))
        self.per_request[:, N_BUCKETS] = 1.0
        self.per_request[:, N_BUCKETS + 1] = self.service_mean_s + mean_wait_s
        self.probs = self.per_request[:, :N_BUCKETS]
        self.mean_s = self.per_request[:, N_BUCKETS + 1]
        self.busy_per_pod = np.zeros(GRID_POINTS)
        self._filled = [False] * GRID_POINTS
        self._relaxation: dict[float, tuple[list[float], list[float]]] = {}

    def relax(self, in_system: float, arrivals: list[float], step_s: float) -> tuple[float, list[int]]:
        """Advance the pod's stationary-equivalent queue over steps with these expected arrivals.

        Pointwise-stationary fluid flow: the pod holds `in_system` requests on
        average and serves at the rate the stationary queue holding that many
        would, so its queue (and latency) takes the queue's own relaxation
        time to follow a change of load; one backward-Euler step per step.
        Arrivals count at most RHO_MAX of capacity: what exceeds capacity is
        the plane's deterministic backlog, not stationary fluctuation.
        Returns the final state and each step's grid row (filled).
        """
        lookup = self._relaxation.get(step_s)
        if lookup is None:
            capacity = self.capacity_per_s * step_s
            lookup = ((self.in_system + capacity * self.rho_grid).tolist(), self.in_system.tolist())
            self._relaxation[step_s] = lookup
        balance, levels = lookup
        ceiling = RHO_MAX * self.capacity_per_s * step_s
        top = GRID_POINTS - 1
        rows = []
        for arrived in arrivals:
            target = in_system + min(arrived, ceiling)
            i = bisect.bisect_left(balance, target, 1, top)
            lo, hi = balance[i - 1], balance[i]
            frac = min(max((target - lo) / (hi - lo), 0.0), 1.0)
            in_system = levels[i - 1] + frac * (levels[i] - levels[i - 1])
            rows.append(i if frac >= 0.5 else i - 1)
        missing = [r for r in rows if not self._filled[r]]
        if missing:
            self._fill(np.unique(missing))
        return in_system, rows

    def overload_probs(self, row: int, waits_s: np.ndarray) -> np.ndarray:
        """Bucket probabilities of a request that waits one of `waits_s` (equally likely) behind a backlog.

        On top of that deterministic wait it sees the stochastic wait of the
        queue at the load of grid row `row`, all capped at `wait_cap_s`.
        """
        n = len(waits_s)
        cdf = self._response_cdf(np.full(n, self._c[row]), np.full(n, self._theta_row[row]), waits_s)
        return _bucket_probs(cdf.mean(axis=0))

    def overload_mean_s(self, row: int, waits_s: np.ndarray) -> float:
        """Mean response time of the requests `overload_probs` describes."""
        room = np.maximum(self.wait_cap_s - waits_s, 0.0)
        theta = self._theta_row[row]
        extra = self._c[row] * -np.expm1(-theta * room) / theta
        return self.service_mean_s + float((waits_s + extra).mean())

    def drain_probs(self, waits_s: np.ndarray) -> np.ndarray:
        """Bucket probabilities of a request that waits one of `waits_s` and then is served.

        For a terminating pod working off its queue: no new arrivals, so no
        stochastic wait on top.
        """
        shifted = (BUCKETS_S[None, :] - waits_s[:, None]) / self.shape.scale
        return _bucket_probs(distributions.cdf(self.shape.service, shifted).mean(axis=0))

    def _theta(self, rho: np.ndarray) -> np.ndarray:
        return wait_tail_rate(self.shape.servers, rho, self.service_mean_s, self.shape.ca2, self.cs2)

    def _fill(self, rows: np.ndarray) -> None:
        rho = self.rho_grid[rows]
        cdf = self._response_cdf(self._c[rows], self._theta_row[rows], np.zeros(len(rows)))
        self.probs[rows] = np.apply_along_axis(_bucket_probs, 1, cdf)
        busy = self._busy(rho) / self.shape.pods
        self.busy_per_pod[rows] = busy
        with np.errstate(invalid="ignore", divide="ignore"):
            hold = np.where(rho > 0.0, busy / (rho * self.capacity_per_s), self.service_mean_s)
        self.per_request[rows, N_BUCKETS + 2] = hold
        for r in rows.tolist():
            self._filled[r] = True

    def _response_cdf(self, c: np.ndarray, theta: np.ndarray, base_wait_s: np.ndarray) -> np.ndarray:
        """P(response ≤ bucket bound) per row: response = base + min(W, room) + service.

        W is 0 with probability 1−c and exponential(θ) otherwise; `room` is
        what is left of the wait cap after the base wait. The delayed part is
        integrated over the wait against the exact service CDF, which is
        smooth there (a deterministic service time, whose CDF is a step, gets
        the closed form instead).
        """
        s = self.shape
        shifted = BUCKETS_S[None, :] - base_wait_s[:, None]  # [rows, bounds]
        room = np.maximum(self.wait_cap_s - base_wait_s, 0.0)[:, None]
        theta = theta[:, None]
        if self.cs2 == 0.0:
            slack = shifted - self.service_mean_s
            delayed = np.where(slack >= room, 1.0, np.where(slack >= 0.0, -np.expm1(-theta * slack), 0.0))
            service_cdf = (shifted >= self.service_mean_s).astype(float)
        else:
            # Midpoint rule over [0, min(bound, room)] in the wait, each cell
            # weighted by its exact exponential mass; the cap's atom added on.
            upper = np.clip(np.minimum(shifted, room), 0.0, None)[:, :, None]
            edges = upper * _WAIT_EDGES
            mass = -np.diff(np.exp(-theta[:, :, None] * edges), axis=2)
            mids = 0.5 * (edges[:, :, 1:] + edges[:, :, :-1])
            inner = (distributions.cdf(s.service, (shifted[:, :, None] - mids) / s.scale) * mass).sum(axis=2)
            at_cap = np.exp(-theta * room) * distributions.cdf(s.service, (shifted - room) / s.scale)
            delayed = inner + np.where(room < shifted, at_cap, 0.0)
            service_cdf = distributions.cdf(s.service, shifted / s.scale)
        return np.clip((1.0 - c[:, None]) * service_cdf + c[:, None] * delayed, 0.0, 1.0)

    def _busy(self, rho: np.ndarray) -> np.ndarray:
        """Mean busy workers of the pool: workers hold requests even when the CPU is what limits them.

        Without a CPU bound that is the offered load ρ·k. With one, the pool's
        number in system moves like a birth–death chain whose departure rate is
        capped by the effective servers, truncated at the queue limit; a request
        holds a worker whenever it is among the first `workers` in the system.
        """
        s = self.shape
        if s.servers >= s.workers:
            return rho * s.servers
        n = np.arange(int(s.workers) + s.queue_slots + 1)
        log_rate = np.log(np.maximum(rho, 1e-300) * s.servers)[:, None]
        log_den = np.concatenate(([0.0], np.cumsum(np.log(np.minimum(n[1:], s.servers)))))
        log_p = n[None, :] * log_rate - log_den[None, :]
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        p /= p.sum(axis=1, keepdims=True)
        return (p * np.minimum(n, s.workers)[None, :]).sum(axis=1)


def _bucket_probs(cdf_at_bounds: np.ndarray) -> np.ndarray:
    """Per-bucket probabilities (+Inf last) from a CDF at the finite bounds, made monotone first."""
    cdf = np.maximum.accumulate(cdf_at_bounds)
    return np.diff(np.concatenate(([0.0], cdf, [1.0])))
