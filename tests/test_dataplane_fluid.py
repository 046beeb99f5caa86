"""Fluid data plane against closed forms, and its overload, shutdown and CPU rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.dataplane import distributions
from sim.dataplane.fluid import FluidPlane
from sim.dataplane.queueing import erlang_c
from sim.latency import BUCKETS_S, quantile
from sim.workload.service import Dist, LoadBalancing, ServiceModel

STEP_S = 5.0
EXP = Dist("exponential", 0.1)


def _mmc_wait_s(servers: int, arrival_rate: float, service_rate: float) -> float:
    """Textbook M/M/c mean wait in queue (Erlang C by the finite sum), independent of the code under test."""
    a = arrival_rate / service_rate
    rho = a / servers
    head = sum(a**n / math.factorial(n) for n in range(servers))
    tail = a**servers / (math.factorial(servers) * (1.0 - rho))
    return tail / (head + tail) / (servers * service_rate - arrival_rate)


def _run(model: ServiceModel, rate_per_s: float | np.ndarray, pods: int, steps: int = 40) -> FluidPlane:
    rates = np.broadcast_to(np.asarray(rate_per_s, dtype=float), (steps,)).copy()
    plane = FluidPlane(model, rates * STEP_S, STEP_S, rates_per_s=rates)
    plane.set_pods(0, list(range(pods)))
    plane.advance_to(steps)
    return plane


@pytest.mark.parametrize("servers", [1, 2, 3, 5, 8, 20])
@pytest.mark.parametrize("rho", [0.3, 0.6, 0.8, 0.95])
def test_erlang_c_matches_textbook_sum(servers: int, rho: float) -> None:
    a = rho * servers
    expected = _mmc_wait_s(servers, a, 1.0) * (servers - a)
    assert float(erlang_c(servers, a)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("workers", "pods", "balancing"),
    [(1, 1, "random"), (2, 1, "random"), (4, 1, "random"), (8, 1, "random"), (2, 3, "least_request")],
)
@pytest.mark.parametrize("rho", [0.2, 0.5, 0.7, 0.9])
def test_fluid_mean_wait_is_mmc_closed_form(
    workers: int, pods: int, balancing: LoadBalancing, rho: float
) -> None:
    model = ServiceModel(workers=workers, service_time=EXP, load_balancing=balancing)
    servers = workers * pods
    rate = rho * servers * 10.0
    out = _run(model, rate, pods, steps=80).outputs()
    settled = slice(40, None)  # fresh pods start empty; their queue takes its relaxation time to fill
    wait_s = out.latency_sum_s[settled].sum() / out.served[settled].sum() - 0.1
    assert wait_s == pytest.approx(_mmc_wait_s(servers, rate, 10.0), rel=0.01)
    assert out.failed.sum() == 0.0
    assert out.busy_workers[settled] == pytest.approx(rate * 0.1, rel=1e-6)


@pytest.mark.parametrize("rho", [0.3, 0.7, 0.9])
def test_fluid_mm1_response_histogram_matches_exponential_cdf(rho: float) -> None:
    """M/M/1 response time is exponential at rate μ−λ: checks the wait/service convolution per bucket."""
    rate = rho * 10.0
    out = _run(ServiceModel(workers=1, service_time=EXP), rate, 1, steps=80).outputs()
    counts = out.latency_counts[40:].sum(axis=0)
    measured = np.cumsum(counts)[:-1] / counts.sum()
    exact = 1.0 - np.exp(-(10.0 - rate) * BUCKETS_S)
    np.testing.assert_allclose(measured, exact, atol=0.005)


def _p95_s(out_counts: np.ndarray) -> float:
    return float(quantile(0.95, out_counts.sum(axis=0)))


def _mean_latency_s(plane: FluidPlane) -> float:
    out = plane.outputs()
    return float(out.latency_sum_s.sum() / out.served.sum())


def test_per_pod_queues_cost_latency_against_one_pooled_queue() -> None:
    """DESIGN: pooling all workers understates p95 2–5× under random balancing."""
    rate = 0.85 * 8 * 10.0
    p95 = {}
    balancings: tuple[LoadBalancing, ...] = ("random", "round_robin", "least_request")
    for lb in balancings:
        model = ServiceModel(workers=1, service_time=EXP, load_balancing=lb)
        p95[lb] = _p95_s(_run(model, rate, 8).outputs().latency_counts)
    assert p95["random"] >= 2.0 * p95["least_request"]
    assert p95["least_request"] < p95["round_robin"] < p95["random"]


def test_latency_is_monotone_in_load_across_capacity() -> None:
    """Crossing capacity must not make latency jump down (held stochastic wait behind a backlog)."""
    model = ServiceModel(workers=4, service_time=Dist("lognormal", 0.1, 1.5))
    loads = np.linspace(0.1, 1.6, 31)
    first_step = [
        float(quantile(0.95, _run(model, r * 40, 1, steps=1).outputs().latency_counts[0])) for r in loads
    ]
    whole_run = [float(quantile(0.95, _run(model, r * 40, 1).outputs().latency_counts.sum(0))) for r in loads]
    assert np.all(np.diff(first_step) >= -1e-9)
    assert np.all(np.diff(whole_run) >= -1e-9)


def test_sustained_overload_fills_the_queue_then_fails_the_excess() -> None:
    model = ServiceModel(workers=2, service_time=EXP, queue_limit=50)
    out = _run(model, 2.0 * 20.0 * 3, 3, steps=20).outputs()
    assert out.backlog[-1] == pytest.approx(3 * 50)
    assert out.served[5:] == pytest.approx(3 * 20.0 * STEP_S)
    assert out.failed[5:] == pytest.approx(3 * 20.0 * STEP_S)
    assert quantile(0.95, out.latency_counts[-1]) >= 50 / 20.0  # waits the whole queue


def test_timeout_bounds_the_backlog_like_a_queue_limit() -> None:
    model = ServiceModel(workers=2, service_time=EXP, queue_limit=1000, timeout_s=1.5)
    out = _run(model, 2.0 * 20.0, 1, steps=20).outputs()
    assert out.backlog.max() == pytest.approx(20.0 * 1.5)


def test_no_ready_pods_fails_every_arrival() -> None:
    plane = FluidPlane(ServiceModel(workers=2, service_time=EXP), np.full(6, 10.0), STEP_S)
    plane.set_pods(0, [1])
    plane.set_pods(2, [])
    plane.set_pods(4, [2])
    plane.advance_to(6)
    out = plane.outputs()
    np.testing.assert_array_equal(out.failed, [0, 0, 10, 10, 0, 0])
    np.testing.assert_array_equal(out.ready_pods, [1, 1, 0, 0, 1, 1])


@pytest.mark.parametrize(("grace_s", "fails"), [(30.0, False), (1.0, True)])
def test_terminating_pod_drains_within_its_grace_period(grace_s: float, fails: bool) -> None:
    """A removed pod serves its queue until the grace period ends; what is left then fails."""
    model = ServiceModel(workers=1, service_time=EXP, queue_limit=1000)
    arrivals = np.array([120.0, 120.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    plane = FluidPlane(model, arrivals, STEP_S, grace_period_s=grace_s)
    plane.set_pods(0, [1])
    plane.set_pods(2, [2])
    plane.advance_to(len(arrivals))
    out = plane.outputs()
    backlog_at_removal = 2 * (120.0 - 50.0)
    assert out.backlog[1] == pytest.approx(backlog_at_removal)
    assert out.backlog[-1] == 0.0
    if fails:
        assert out.failed.sum() == pytest.approx(backlog_at_removal - 10.0 * grace_s)
    else:
        assert out.failed.sum() == 0.0
        assert out.served[2:].sum() == pytest.approx(backlog_at_removal)


def test_cpu_bounds_throughput_and_counts_idle_usage() -> None:
    """0.5 core at 0.025 CPU-s per request sustains 20 requests/s, though 4 workers could do 40."""
    model = ServiceModel(
        workers=4,
        service_time=EXP,
        cpu_per_request_s=0.025,
        cpu_limit_millicores=600.0,
        idle_cpu_millicores=100.0,
        queue_limit=10_000,
    )
    out = _run(model, 60.0, 2, steps=10).outputs()
    assert out.served == pytest.approx(2 * 20.0 * STEP_S)
    assert out.cpu_core_s == pytest.approx(2 * 0.6 * STEP_S)
    assert out.busy_workers[-1] == pytest.approx(2 * 4)


def test_cpu_contention_slows_requests_below_saturation() -> None:
    plenty = ServiceModel(workers=4, service_time=EXP, cpu_per_request_s=0.05, cpu_limit_millicores=4000.0)
    scarce = ServiceModel(workers=4, service_time=EXP, cpu_per_request_s=0.05, cpu_limit_millicores=1000.0)
    assert _mean_latency_s(_run(scarce, 12.0, 1)) > 1.1 * _mean_latency_s(_run(plenty, 12.0, 1))


def test_counters_are_the_running_sums_of_the_outputs() -> None:
    model = ServiceModel(workers=2, service_time=EXP, cpu_per_request_s=0.01, idle_cpu_millicores=50.0)
    rates = np.r_[np.full(10, 30.0), np.full(10, 60.0)]
    plane = FluidPlane(model, rates * STEP_S, STEP_S, rates_per_s=rates)
    plane.set_pods(0, [1, 2])
    for step in (3, 7, 12, 20):
        plane.advance_to(step)
        c = plane.counters()
        out = plane.outputs()
        assert c.time_s == step * STEP_S
        assert c.served_total == pytest.approx(out.served[:step].sum())
        assert c.failed_total == pytest.approx(out.failed[:step].sum())
        np.testing.assert_allclose(c.latency_bucket, np.cumsum(out.latency_counts[:step].sum(axis=0)))
        assert c.latency_bucket[-1] == pytest.approx(c.served_total)
        assert c.latency_sum_s == pytest.approx(out.latency_sum_s[:step].sum())
        assert c.cpu_seconds_total == pytest.approx(out.cpu_core_s[:step].sum())
        assert c.in_flight == pytest.approx(out.backlog[step - 1] + out.busy_workers[step - 1])


def test_pod_ids_and_steps_are_checked() -> None:
    plane = FluidPlane(ServiceModel(workers=1, service_time=EXP), np.full(10, 5.0), STEP_S)
    plane.set_pods(0, [1, 2])
    plane.set_pods(3, [2])
    with pytest.raises(ValueError, match="terminated"):
        plane.set_pods(4, [1, 2])
    with pytest.raises(ValueError, match="behind"):
        plane.set_pods(2, [2])
    with pytest.raises(ValueError, match="unique"):
        plane.set_pods(5, [3, 3])
    with pytest.raises(ValueError, match="align"):
        plane.set_pods(5, [3, 4], cores=[1.0])
    with pytest.raises(ValueError, match="horizon"):
        plane.advance_to(11)


@pytest.mark.parametrize(
    "dist",
    [
        Dist("exponential", 0.2),
        Dist("lognormal", 0.2, 1.5),
        Dist("gamma", 0.2, 0.5),
        Dist("deterministic", 0.2, 0.0),
    ],
)
def test_distributions_have_the_stated_mean_and_cv(dist: Dist) -> None:
    draws = distributions.sample(dist, np.random.default_rng(7), 400_000)
    cv = math.sqrt(distributions.scv(dist))
    assert draws.mean() == pytest.approx(dist.mean_s, rel=0.01)
    assert draws.std() / draws.mean() == pytest.approx(cv, abs=0.03)
    q = np.array([0.1, 0.5, 0.9, 0.99])
    if cv > 0:
        np.testing.assert_allclose(distributions.cdf(dist, distributions.ppf(dist, q)), q, atol=1e-9)
        np.testing.assert_allclose(np.quantile(draws, q), distributions.ppf(dist, q), rtol=0.03)


def test_an_exponential_with_another_cv_is_rejected() -> None:
    with pytest.raises(ValueError, match="CV 1"):
        distributions.scv(Dist("exponential", 0.1, 2.0))
