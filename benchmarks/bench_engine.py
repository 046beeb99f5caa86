"""Engine benchmark (run on demand, never in the test suite): `python benchmarks/bench_engine.py`.

Prints wall time and peak memory for one service over 7 simulated days in
fluid mode with the faithful controllers, the floor (a bare SimPy loop over
the same control periods), and the requests/s the per-request mode simulates.
Targets (DESIGN.md): 7-day fluid run <= 2 s on one core here.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim
from tests import simple_scenario as ss

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "demo"
WEEK_TRAFFIC = {
    "kind": "diurnal",
    "base_rps": 40,
    "peak_rps": 400,
    "noise": {"cv": 0.1, "correlation_time": "10m"},
}


def bare_simpy_floor(horizon_s: float) -> float:
    """The same periods as the engine (scrape 15 s, KEDA 30 s, HPA 15 s) doing nothing."""
    env = simpy.Environment()

    def every(period: float, phase: float):  # type: ignore[no-untyped-def]
        yield env.timeout(phase)
        while True:
            yield env.timeout(period)

    for period, phase in ((15.0, 0.0), (30.0, 5.0), (15.0, 10.0)):
        env.process(every(period, phase))
    t = time.perf_counter()
    env.run(until=horizon_s)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())

    week = ss.scenario(
        traffic=WEEK_TRAFFIC,
        max_replicas=30,
        threshold=40,
        horizon="7d",
        initial_replicas=3,
        scrape_interval="30s",
    )
    scn = sim.load_scenario(ss.write(tmp, week, "week.yaml"))
    sim.simulate(sim.load_scenario(ss.write(tmp, ss.scenario(horizon="10m"), "warm.yaml")))  # imports, caches
    profiler = cProfile.Profile() if args.profile else None
    t = time.perf_counter()
    if profiler:
        profiler.enable()
    result = sim.simulate(scn)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - t
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    events = len(result.events)
    print(
        f"fluid, 1 service, 7 days, step {scn.step_s:g} s: {wall:.2f} s wall, peak RSS {peak_mib:.0f} MiB, "
        f"{events} logged decisions, {result.summary['services']['api']['offered_requests']:.3g} requests"
    )
    print(f"bare SimPy loop over the same periods (floor): {bare_simpy_floor(7 * 86400.0):.2f} s")

    week["gitops_root"] = str(DEMO)
    week["cluster"] = {"nodepools": "k8s/karpenter"}
    scn_k = sim.load_scenario(ss.write(tmp, week, "week-karpenter.yaml"))
    t = time.perf_counter()
    result_k = sim.simulate(scn_k)
    wall_k = time.perf_counter() - t
    nodes = result_k.summary["nodes"]
    print(
        f"fluid + Karpenter, 1 service, 7 days: {wall_k:.2f} s wall, {nodes['launched']} nodes launched, "
        f"cost ${result_k.summary['cost']['total_usd']:.2f}"
    )

    hour = ss.scenario(
        traffic={"kind": "constant", "rps": 200}, horizon="1h", fidelity="requests", initial_replicas=8
    )
    scn_r = sim.load_scenario(ss.write(tmp, hour, "req.yaml"))
    t = time.perf_counter()
    r = sim.simulate(scn_r)
    wall_r = time.perf_counter() - t
    n = r.summary["services"]["api"]["offered_requests"]
    print(
        f"requests mode, 1 h at 200 rps: {n:.0f} requests in {wall_r:.2f} s"
        f" = {n / wall_r:,.0f} requests/s simulated"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
