"""Invariants of both data planes under arbitrary traffic, service models and pod-set changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.dataplane.fluid import FluidPlane
from sim.dataplane.plane import DataPlane, StepOutputs
from sim.dataplane.requests import RequestsPlane
from sim.workload.service import Dist, ServiceModel

STEP_S = 5.0
SERVICES = [
    Dist("exponential", 0.1),
    Dist("lognormal", 0.3, 2.0),
    Dist("gamma", 0.5, 0.5),
    Dist("deterministic", 0.2, 0.0),
]


@dataclass(frozen=True)
class Case:
    model: ServiceModel
    arrivals: np.ndarray
    rates_per_s: np.ndarray | None
    grace_period_s: float
    # (step, how many new pods, how many of the oldest pods leave, cores of the new pods)
    changes: list[tuple[int, int, int, float | None]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    steps = draw(st.integers(1, 30))
    arrivals = np.array(draw(st.lists(st.integers(0, 80), min_size=steps, max_size=steps)))
    cpu_bound = draw(st.booleans())
    model = ServiceModel(
        workers=draw(st.integers(1, 4)),
        service_time=draw(st.sampled_from(SERVICES)),
        cpu_per_request_s=draw(st.floats(0.01, 0.3)) if cpu_bound else 0.0,
        cpu_limit_millicores=draw(st.floats(50.0, 2000.0)) if cpu_bound else None,
        idle_cpu_millicores=draw(st.floats(0.0, 100.0)),
        queue_limit=draw(st.integers(0, 40)),
        timeout_s=draw(st.floats(0.2, 30.0)),
        load_balancing=draw(st.sampled_from(["random", "round_robin", "least_request"])),
    )
    rates = draw(st.one_of(st.none(), st.lists(st.floats(0.0, 30.0), min_size=steps, max_size=steps)))
    change = st.tuples(
        st.integers(0, steps - 1),
        st.integers(0, 3),
        st.integers(0, 3),
        st.one_of(st.none(), st.floats(0.05, 2.0)),
    )
    return Case(
        model=model,
        arrivals=arrivals,
        rates_per_s=None if rates is None else np.array(rates),
        grace_period_s=draw(st.floats(0.0, 60.0)),
        changes=sorted(draw(st.lists(change, min_size=1, max_size=6)), key=lambda c: c[0]),
    )


def _drive(plane: DataPlane, case: Case) -> StepOutputs:
    """Drive `plane` as the engine would: pod-set changes at step boundaries, counters scraped in between."""
    ready: list[int] = []
    cores: list[float | None] = []
    next_id = 0
    for step, add, remove, new_cores in case.changes:
        plane.advance_to(step)
        scraped = plane.counters()
        assert scraped.time_s == step * STEP_S
        keep = slice(min(remove, len(ready)), None)
        ready, cores = ready[keep], cores[keep]
        ready += list(range(next_id, next_id + add))
        cores += [new_cores] * add
        next_id += add
        plane.set_pods(step, ready, cores)
    plane.advance_to(len(case.arrivals))
    out = plane.outputs()
    totals = plane.counters()
    assert np.isclose(totals.served_total, out.served.sum())
    assert np.isclose(totals.failed_total, out.failed.sum())
    assert np.allclose(totals.latency_bucket[-1], totals.served_total)
    return out


def _check_invariants(out: StepOutputs) -> None:
    scale = 1e-9 * max(1.0, out.offered.sum())
    settled = np.cumsum(out.served) + np.cumsum(out.failed) + out.backlog
    np.testing.assert_allclose(settled, np.cumsum(out.offered), rtol=0.0, atol=scale)
    for series in (out.served, out.failed, out.backlog, out.busy_workers, out.cpu_core_s):
        assert series.min() >= -scale
    assert out.latency_counts.min() >= -scale
    np.testing.assert_allclose(out.latency_counts.sum(axis=1), out.served, rtol=1e-9, atol=scale)
    assert np.all(out.latency_sum_s >= -scale)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_fluid_conserves_requests(case: Case) -> None:
    plane = FluidPlane(
        case.model, case.arrivals, STEP_S, grace_period_s=case.grace_period_s, rates_per_s=case.rates_per_s
    )
    _check_invariants(_drive(plane, case))


@settings(max_examples=100, deadline=None)
@given(cases(), st.integers(0, 2**32 - 1))
def test_requests_conserve_requests(case: Case, seed: int) -> None:
    rngs = np.random.default_rng(seed).spawn(2)
    plane = RequestsPlane(
        case.model, case.arrivals, STEP_S, rngs[0], rngs[1], grace_period_s=case.grace_period_s
    )
    out = _drive(plane, case)
    _check_invariants(out)
    # Whole requests: the per-request plane's counts are integers.
    for series in (out.served, out.failed, out.backlog):
        np.testing.assert_array_equal(series, np.round(series))
