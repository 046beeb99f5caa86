"""Regenerate the bundled demo history: `python scripts/generate_demo_history.py`.

Writes scenarios/data/history/demo.om.gz (OpenMetrics, what `capsim
calibrate --from-file` and `capsim backtest --from-file` read, and what
`promtool tsdb create-blocks-from openmetrics` backfills) for the two demo
apps, front and flask-app-2, as scenarios/diurnal-day.yaml describes them
(manifests, service models, the dev cluster's Karpenter pools), recorded by
the simulator itself:

- Monday 2024-03-04 00:00 UTC to Sunday 14:00: a fluid-mode run of the
  scenario's diurnal traffic (weekends at 55 %), scraped every 30 s:
  request counters, cAdvisor CPU (with 5 % scrape-to-scrape noise),
  kube-state-metrics replicas and HPA desired replicas, per-pod created and
  ready times, Karpenter's node count and node labels;
- Sunday 14:00 to 15:00: the per-request mode, continuing from the fluid
  run's replicas, with latency histograms: each app's handler time (the
  service time of every served request) and, for front, ingress-nginx's
  response time (waiting for a worker included). Histograms exist only in
  this hour: request-level simulation of a week would take hours.

The true parameters are the scenario's; scenarios/data/history/demo.source.md
lists them next to what `capsim calibrate` recovers.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402
from sim.calibrate.openmetrics import Family, write_openmetrics  # noqa: E402
from sim.calibrate.synthetic import Recording, Segment, node_families, replay_plane  # noqa: E402
from sim.scenario import LoadedScenario  # noqa: E402
from sim.workload.traffic import DiurnalTraffic  # noqa: E402

SCENARIO = ROOT / "scenarios" / "diurnal-day.yaml"
OUT = ROOT / "scenarios" / "data" / "history" / "demo.om.gz"
EPOCH = datetime(2024, 3, 4, tzinfo=UTC).timestamp()  # a Monday
FLUID_S = 6 * 86_400.0 + 14 * 3600.0
LATENCY_S = 3600.0
WEEKEND = 0.55
SCRAPE_S = 30.0
POD_SCRAPE_S = 60.0
SEED = 20240304
# front sits behind ingress-nginx (the public API); flask-app-2 is internal.
INGRESS = {"front": True, "flask-app-2": False}


def with_clock(scn: LoadedScenario, day: str, hour: float, horizon_s: float, fidelity: str) -> LoadedScenario:
    """The scenario's services with their diurnal traffic starting at `day` `hour`, weekends lower."""
    services = []
    for svc in scn.services:
        traffic = svc.traffic
        if not isinstance(traffic, DiurnalTraffic):
            raise SystemExit(f"{svc.name}: expected diurnal traffic in {SCENARIO}")
        traffic = traffic.model_copy(update={"start_day": day, "start_hour": hour, "weekend_factor": WEEKEND})
        services.append(dataclasses.replace(svc, traffic=traffic))
    return dataclasses.replace(
        scn,
        services=tuple(services),
        horizon_s=horizon_s,
        fidelity=fidelity,
        slos=(),  # type: ignore[arg-type]
    )


def main() -> None:
    started = time.perf_counter()
    base = sim.load_scenario(SCENARIO)
    rng = np.random.default_rng(SEED)
    week = sim.simulate(with_clock(base, "mon", 0.0, FLUID_S, "fluid"))
    print(f"fluid run: {time.perf_counter() - started:.1f} s")
    hour_scn = with_clock(base, "sun", 14.0, LATENCY_S, "requests")
    hour_scn = dataclasses.replace(
        hour_scn,
        services=tuple(
            dataclasses.replace(s, initial_replicas=int(week.traces[s.name].replicas_desired[-1]))
            for s in hour_scn.services
        ),
    )
    hour = sim.simulate(hour_scn)
    print(f"per-request hour: {time.perf_counter() - started:.1f} s")
    families: dict[str, Family] = {}
    for svc in base.services:
        tr, th = week.traces[svc.name], hour.traces[svc.name]
        rec = Recording(
            svc.metrics.labels.get("service", svc.name),
            svc.metrics.labels.get("namespace", "default"),
            EPOCH,
            svc.model,
            rng,
            app_histogram="handler",
            ingress=INGRESS[svc.name],
            deployment=svc.workload.name,
            hpa=f"keda-hpa-{svc.scaled_object.name}",
            scrape_s=SCRAPE_S,
            pod_scrape_s=POD_SCRAPE_S,
        )
        rec.append(
            Segment(
                base.step_s,
                tr.offered,
                tr.served,
                tr.failed,
                tr.cpu_core_s,
                tr.replicas_desired,
                tr.replicas_ready,
            )
        )
        # The hour's latency: the per-request plane over the hour's arrivals and ready pods, which
        # gives every request's latency and their exact sum (a run keeps buckets, not sums).
        out = replay_plane(svc.model, th.offered, th.replicas_ready, base.step_s, rng)
        rec.append(
            Segment(
                base.step_s,
                out.offered,
                out.served,
                out.failed,
                out.cpu_core_s,
                th.replicas_desired,
                th.replicas_ready,
                out.latency_counts,
                out.latency_sum_s,
                handler=True,
            )
        )
        for fam in rec.families():
            families.setdefault(fam.name, Family(fam.name, fam.type)).series.extend(fam.series)
    if week.nodes is not None and hour.nodes is not None:
        later = hour.nodes.assign(time_s=hour.nodes["time_s"] + FLUID_S)
        nodes = pd.concat([week.nodes, later], ignore_index=True)
        for fam in node_families(nodes, EPOCH, SCRAPE_S, POD_SCRAPE_S, EPOCH + FLUID_S + LATENCY_S):
            families[fam.name] = fam
    write_openmetrics(OUT, families.values())
    size_mb = OUT.stat().st_size / 1e6
    print(f"wrote {OUT.relative_to(ROOT)} ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
