"""Tuning benchmark (run on demand, never in the test suite): `python benchmarks/bench_tune.py`.

A 200-candidate optuna search over a 1-day scenario (the demo's front
service: a weekday with the flash-crowd spike, 15 s steps), 2 seeds per
candidate, on 2 local worker processes. Prints wall time, candidates/s and
simulations/s, and how many candidates stopped early. Target (DESIGN.md):
<= 3 min on 2 cores. `--executor dask://HOST:PORT` runs the same search on a
Dask cluster (the result is the same; only the time changes).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402
from sim.parallel import make_executor  # noqa: E402
from sim.tune import tune  # noqa: E402

SCENARIO = """\
name: bench-day
horizon: 24h
step: 15s
seed: 11
gitops_root: {root}
services:
  - name: front
    manifests: k8s/argocd/apps/dev/front
    traffic:
      kind: diurnal
      base_rps: 60
      peak_rps: 420
      peak_hour: 14
      start_day: thu
      noise: {{cv: 0.08, correlation_time: 10m}}
      transforms:
        - {{kind: add_spike, start: 10h, rise: 60s, hold: 15m, decay: 10m, multiplier: 3}}
    model:
      workers: 4
      service_time: {{distribution: lognormal, mean: 60ms, cv: 1.0}}
      cpu_per_request: 10ms
      idle_cpu: 20m
      queue_limit: 64
      startup: {{distribution: lognormal, mean: 25s, cv: 0.3}}
    initial_replicas: 4
slos:
  - {{name: front-latency, service: front, kind: latency, threshold: 500ms, objective: 0.99}}
tune:
  seeds: 2
  generation: 16
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-day.yaml"
        path.write_text(SCENARIO.format(root=ROOT / "scenarios" / "demo"))
        scn = sim.load_scenario(path)
        cpu = time.process_time()
        sim.simulate(scn)
        one_cpu_s = time.process_time() - cpu
        started, parent_cpu = time.perf_counter(), time.process_time()
        run = tune(scn, executor=make_executor(args.executor, args.workers), trials=args.trials)
        wall = time.perf_counter() - started
        parent_cpu_s = time.process_time() - parent_cpu
        # The pool has shut down, so its workers' CPU time is in RUSAGE_CHILDREN.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers_cpu_s = children.ru_utime + children.ru_stime
    stopped = sum(1 for e in run.evaluations if e.ok and not e.complete)
    rec = run.recommendation()
    print(f"one 1-day simulation: {one_cpu_s:.2f} s CPU")
    print(f"{args.trials} candidates x 2 seeds on {run.executor}: {wall:.1f} s wall (target <= 180 s)")
    if args.executor == "local":
        idle = workers_cpu_s / args.workers + parent_cpu_s
        print(
            f"  workers used {workers_cpu_s:.1f} s CPU, the sampler {parent_cpu_s:.1f} s: about {idle:.0f} s "
            f"wall on {args.workers} otherwise idle cores"
        )
    print(f"  {len(run.evaluations) / wall:.2f} candidates/s, {run.simulations / wall:.2f} simulations/s")
    print(f"  {run.simulations} simulations; {stopped} candidates stopped after a seed broke a hard SLO")
    print(
        f"  baseline ${run.baseline.cost_month_usd:,.2f}/month, feasible={run.baseline.feasible(run.judge)}"
    )
    if rec is not None:
        print(f"  recommended #{rec.number}: ${rec.cost_month_usd:,.2f}/month {rec.params}")


if __name__ == "__main__":
    main()
