"""Per-request data plane: closed forms, shutdown, limits, and common random numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.dataplane.requests import RequestsPlane
from sim.latency import BUCKETS_S
from sim.rng import stream
from sim.workload.service import Dist, LoadBalancing, ServiceModel

STEP_S = 5.0
EXP = Dist("exponential", 0.1)


def _plane(
    model: ServiceModel, arrivals: np.ndarray, seed: int = 1, grace_period_s: float = 30.0
) -> RequestsPlane:
    return RequestsPlane(
        model,
        arrivals,
        STEP_S,
        stream(seed, "svc", "service_times"),
        stream(seed, "svc", "routing"),
        grace_period_s=grace_period_s,
    )


def _poisson(rate_per_s: float, steps: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).poisson(rate_per_s * STEP_S, steps)


def test_mm2_mean_wait_matches_erlang_c() -> None:
    lam, mu = 15.0, 10.0
    plane = _plane(ServiceModel(workers=2, service_time=EXP, queue_limit=10_000), _poisson(lam, 2000))
    plane.set_pods(0, [0])
    plane.advance_to(2000)
    out = plane.outputs()
    a = lam / mu
    c = a * a / 2.0 / (1.0 - a / 2.0) / (1.0 + a + a * a / 2.0 / (1.0 - a / 2.0))
    wait_s = out.latency_sum_s.sum() / out.served.sum() - 0.1
    assert wait_s == pytest.approx(c / (2 * mu - lam), rel=0.05)


def test_no_queue_loses_erlang_b_share() -> None:
    """With no queue, an M/M/2 pod turns away the Erlang B share of arrivals."""
    lam, mu = 15.0, 10.0
    plane = _plane(ServiceModel(workers=2, service_time=EXP, queue_limit=0), _poisson(lam, 1500))
    plane.set_pods(0, [0])
    plane.advance_to(1500)
    out = plane.outputs()
    a = lam / mu
    erlang_b = a * a / 2.0 / (1.0 + a + a * a / 2.0)
    assert out.failed.sum() / out.offered.sum() == pytest.approx(erlang_b, abs=0.01)


def test_same_seed_same_run() -> None:
    model = ServiceModel(workers=2, service_time=Dist("lognormal", 0.1, 1.5), load_balancing="least_request")
    arrivals = _poisson(30.0, 60)
    runs = []
    for _ in range(2):
        plane = _plane(model, arrivals, seed=9)
        plane.set_pods(0, [0, 1])
        plane.set_pods(20, [1, 2, 3])
        plane.advance_to(60)
        runs.append(plane.outputs())
    for name in ("served", "failed", "backlog", "latency_counts", "latency_sum_s", "busy_workers"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))


@pytest.mark.parametrize("balancing", ["random", "round_robin", "least_request"])
def test_random_streams_do_not_depend_on_pods(balancing: LoadBalancing) -> None:
    """Common random numbers: pods and balancing change nothing a stream hands out."""
    arrivals = _poisson(30.0, 40)
    states = []
    for pods in ([0], [0, 1, 2, 3], []):
        service_rng, routing_rng = stream(5, "svc", "service_times"), stream(5, "svc", "routing")
        model = ServiceModel(workers=2, service_time=EXP, load_balancing=balancing)
        plane = RequestsPlane(model, arrivals, STEP_S, service_rng, routing_rng)
        plane.set_pods(0, pods)
        plane.advance_to(40)
        states.append((service_rng.random(), routing_rng.random()))
    assert states[0] == states[1] == states[2]


def test_no_ready_pods_fails_every_arrival() -> None:
    arrivals = np.full(6, 10)
    plane = _plane(ServiceModel(workers=2, service_time=EXP), arrivals)
    plane.set_pods(0, [])
    plane.set_pods(3, [7])
    plane.advance_to(6)
    np.testing.assert_array_equal(plane.outputs().failed, [10, 10, 10, 0, 0, 0])


@pytest.mark.parametrize(("grace_s", "survives"), [(60.0, True), (2.0, False)])
def test_terminating_pod_drains_or_is_killed(grace_s: float, survives: bool) -> None:
    model = ServiceModel(workers=1, service_time=Dist("deterministic", 0.1, 0.0), queue_limit=1000)
    arrivals = np.array([300, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    plane = _plane(model, arrivals, grace_period_s=grace_s)
    plane.set_pods(0, [0])
    plane.set_pods(1, [1])
    in_flight = plane.counters().in_flight
    assert in_flight in (300 - 50, 300 - 49)  # one may be mid-service at the boundary
    plane.advance_to(len(arrivals))
    out = plane.outputs()
    assert out.backlog[-1] == 0
    if survives:
        assert out.failed.sum() == 0
        assert out.served.sum() == 300
    else:
        assert out.served.sum() == pytest.approx(300 - in_flight + 10 * grace_s, abs=1)
        assert out.failed.sum() == 300 - out.served.sum()


def test_queued_requests_fail_after_the_timeout() -> None:
    model = ServiceModel(
        workers=1, service_time=Dist("deterministic", 1.0, 0.0), queue_limit=1000, timeout_s=3.0
    )
    plane = _plane(model, np.array([20, 0, 0, 0]))
    plane.set_pods(0, [0])
    plane.advance_to(4)
    out = plane.outputs()
    # One request a second from arrivals spread over 5 s, none waiting over 3 s: at most 5 + 3 + 1 served.
    assert 5 <= out.served.sum() <= 9
    assert out.failed.sum() == 20 - out.served.sum()
    assert out.latency_counts[:, BUCKETS_S.searchsorted(5.0) + 1 :].sum() == 0  # nobody served after 4 s


def test_cpu_limit_caps_throughput() -> None:
    model = ServiceModel(
        workers=4, service_time=EXP, cpu_per_request_s=0.025, cpu_limit_millicores=500.0, queue_limit=100_000
    )
    steps = 60
    plane = _plane(model, _poisson(30.0, steps))
    plane.set_pods(0, [0])
    plane.advance_to(steps)
    out = plane.outputs()
    assert out.served[5:].mean() / STEP_S == pytest.approx(0.5 / 0.025, rel=0.05)
    assert out.cpu_core_s[5:].mean() / STEP_S == pytest.approx(0.5, rel=0.05)
    assert math.isclose(out.busy_workers[-1], 4.0, rel_tol=0.01)
