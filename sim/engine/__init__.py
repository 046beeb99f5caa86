"""The SimPy environment: the control plane on its real clocks, the data plane between them.

Each controller is a process on its own period and phase (Prometheus scrape,
KEDA's polling loop, the HPA's 15 s sync, metrics-server's resolution), and
pods are processes from creation to ready. Between two control events the set
of ready pods is constant, so the data plane advances the whole interval at
once; a control event first brings the data plane up to its instant, then
reads what the real controller would read at that instant (the scraped series,
not the truth), which is where the lag of real autoscalers comes from.

Control events fall on step boundaries: periods and phases are multiples of
the step (the scenario loader checks the step divides them), and pod start
delays round up to the next boundary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import simpy

from sim.engine.cluster import BackgroundSim, ClusterSim
from sim.engine.service import ServiceSim
from sim.metrics.tsdb import SeriesStore
from sim.result import EVENT_COLUMNS, ClusterOutputs, Result, evaluate_slos
from sim.scenario import LoadedScenario

__all__ = ["ServiceSim", "simulate"]


def _periodic(env: simpy.Environment, period_s: float, phase_s: float, action: Callable[[], None]) -> Any:
    if phase_s:
        yield env.timeout(phase_s)
    while True:
        action()
        yield env.timeout(period_s)


def _start_cluster(env: simpy.Environment, scn: LoadedScenario, cluster: ClusterSim) -> None:
    """Background tenants, nodes for the pods of t=0, then Karpenter's loops."""
    assert scn.cluster is not None
    for bg in scn.cluster.background:
        tenant = BackgroundSim(env, cluster, bg.name, bg.pod, bg.replicas_at)
        cluster.register(bg.name, tenant, ())
        tenant.reconcile()
        if len(bg.times_s) > 1:
            env.process(_at_times(env, bg.times_s, tenant.reconcile))
    cluster.bootstrap()
    env.process(cluster.provisioning_loop())
    env.process(cluster.requeue_loop())
    env.process(cluster.disruption_loop())


def _at_times(env: simpy.Environment, times_s: tuple[float, ...], action: Callable[[], None]) -> Any:
    for t in times_s:
        if t > env.now:
            yield env.timeout(t - env.now)
            action()


def simulate(scn: LoadedScenario, progress: Callable[[float], None] | None = None) -> Result:
    """Run a loaded scenario and return its Result; deterministic for a given scenario and seed."""
    started = time.perf_counter()
    env = simpy.Environment()
    store = SeriesStore()
    events: list[tuple[Any, ...]] = []
    n_steps = math.ceil(scn.horizon_s / scn.step_s)
    horizon = n_steps * scn.step_s
    cluster = ClusterSim(env, scn.cluster, scn.seed, horizon, events) if scn.cluster is not None else None
    sims = [ServiceSim(env, scn, svc, store, events, cluster) for svc in scn.services]
    if cluster is not None:
        _start_cluster(env, scn, cluster)
    queries = [q for s in sims for q in s.queries.values()]
    for s in sims:
        s.watch(queries)
    step = scn.step_s
    # Phases: scrapes at 0 mod interval, KEDA's first poll at one step, HPA syncs at two steps,
    # so at any instant the series are scraped before a controller reads them.
    for s in sims:
        env.process(_periodic(env, scn.controllers.prometheus_scrape_interval_s, 0.0, s.scrape))
    for s in sims:
        env.process(_periodic(env, float(s.keda_cfg.polling_interval_s), step, s.keda_poll))
    for s in sims:
        env.process(_periodic(env, scn.controllers.hpa.sync_period_s, 2 * step, s.hpa_sync))
    if progress is None:
        env.run(until=horizon)
    else:
        chunk = max(horizon / 100.0, step)
        t = 0.0
        while t < horizon:
            t = min(t + chunk, horizon)
            env.run(until=t)
            progress(t / horizon)
    traces = {s.name: s.trace() for s in sims}
    cluster_out = None
    if cluster is not None:
        nodes, cost_rate, pending, summary = cluster.outputs(n_steps, step)
        cluster_out = ClusterOutputs(nodes, cost_rate, pending, summary)
    frame = pd.DataFrame(events, columns=EVENT_COLUMNS).sort_values(
        "time_s", kind="stable", ignore_index=True
    )
    result = Result(
        scenario_name=scn.name,
        seed=scn.seed,
        step_s=step,
        horizon_s=horizon,
        traces=traces,
        events=frame,
        slo_results=evaluate_slos(list(scn.slos), traces, step),
        cluster=cluster_out,
    )
    result.summary["wall_time_s"] = round(time.perf_counter() - started, 3)
    return result
