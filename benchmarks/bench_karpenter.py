"""Karpenter model benchmark (on demand, never in the test suite): `python benchmarks/bench_karpenter.py`.

Prints:
- packing time for 1,000 pending pods over the whole bundled AWS catalog
  (target <= 1 s), for a realistic mix (5 workloads) and for 1,000 distinct pods;
- packing quality: on random small problems, the Karpenter model's node cost
  divided by the optimum from an integer program (scipy.optimize.milp);
- the Karpenter share of a 7-day single-service run: the provisioning, launch,
  binding and disruption calls a week of diurnal scaling makes, driven by a
  minimal loop (the engine adds its own data plane on top; target for the whole
  run <= 4 s).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.catalog.instancetypes import instance_types
from sim.catalog.overhead import NodeClassSettings
from sim.catalog.pricing import PricingSettings
from sim.catalog.table import load_bundled_catalog
from sim.controllers.karpenter.binder import bind
from sim.controllers.karpenter.config import DisruptionConfig, LaunchConfig
from sim.controllers.karpenter.disruption import DisruptionController
from sim.controllers.karpenter.launch import Launch, launch, make_node
from sim.controllers.karpenter.optimum import optimal_cost
from sim.controllers.karpenter.provisioning import Provisioner, ProvisioningResult
from sim.controllers.karpenter.types import (
    LABEL_INSTANCE_CATEGORY,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_GENERATION,
    InstanceType,
    Node,
    NodePoolSpec,
    Offering,
    Operator,
    PodSpec,
    Requirement,
    Resources,
)

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
HORIZON_S = 7 * 86400
T = TypeVar("T")


def catalog() -> tuple[InstanceType, ...]:
    return instance_types(load_bundled_catalog(), NodeClassSettings(), ZONES, PricingSettings(), "us-east-1")


def _timed(fn: Callable[[], T], repeat: int = 3) -> tuple[float, float, T]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def bench_packing(types: tuple[InstanceType, ...]) -> None:
    whole = NodePoolSpec("default")
    small = NodePoolSpec(
        "small-nodes",
        requirements=(
            Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c", "m", "r")),
            Requirement(LABEL_INSTANCE_GENERATION, Operator.GT, ("4",)),
            Requirement(LABEL_INSTANCE_CPU, Operator.LTE, ("8",)),
        ),
    )
    t0 = time.perf_counter()
    prov = Provisioner(types, [whole])
    prov.templates(frozenset())
    setup = time.perf_counter() - t0
    print(
        f"catalog: {len(types)} instance types; index + NodePool template build {setup * 1000:.0f} ms (once)"
    )
    _pack(types, whole, "whole catalog, no requirements")
    _pack(types, small, "c/m/r, generation > 4, <= 8 vCPU")


def _pack(types: tuple[InstanceType, ...], pool: NodePoolSpec, title: str) -> None:
    prov = Provisioner(types, [pool])
    prov.templates(frozenset())
    mix = [
        PodSpec(f"w{w}-{i}", f"w{w}", Resources(cpu, mem), created_s=0.0)
        for w, (cpu, mem) in enumerate([(250, 512), (500, 1024), (1000, 2048), (2000, 4096), (100, 256)])
        for i in range(200)
    ]
    rng = np.random.default_rng(7)
    distinct = [
        PodSpec(f"d{i}", f"d{i}", Resources(float(rng.integers(50, 4000)), float(rng.integers(64, 8192))))
        for i in range(1000)
    ]
    fake = LaunchConfig(zone_tie_break="first")
    print(f" NodePool {pool.name!r} ({title}):")
    for label, pods in (("5 workloads x 200 pods", mix), ("1000 distinct pods", distinct)):
        best, med, result = _timed(partial(prov.solve, pods, [], 0.0))
        assert not result.unschedulable, result.unschedulable
        best_l, _, _ = _timed(partial(_launch_all, prov, result, fake))
        print(
            f"  {label}: packed into {len(result.claims)} NodeClaims in {best * 1000:.0f} ms "
            f"(median {med * 1000:.0f} ms); launching them {best_l * 1000:.0f} ms"
        )


def _launch_all(prov: Provisioner, result: ProvisioningResult, config: LaunchConfig) -> list[object]:
    return [launch(prov, plan, config) for plan in result.claims]


def bench_quality(types: tuple[InstanceType, ...], problems: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = [
        t
        for t in types
        if t.labels.get(LABEL_INSTANCE_CATEGORY) in ("c", "m", "r")
        and int(t.labels.get(LABEL_INSTANCE_GENERATION, "0")) >= 5
        and t.capacity.cpu_millicores <= 16000
    ]
    ratios, elapsed = [], []
    for _ in range(problems):
        chosen = [pool[i] for i in rng.choice(len(pool), size=6, replace=False)]
        od = [
            InstanceType(
                t.name, t.capacity, t.allocatable, t.labels, (Offering(ZONES[0], "on-demand", _od(t)),)
            )
            for t in chosen
        ]
        big = max(od, key=lambda t: t.allocatable.cpu_millicores)
        shapes = [
            (
                float(rng.uniform(0.05, 0.6) * big.allocatable.cpu_millicores),
                float(rng.uniform(0.05, 0.6) * big.allocatable.memory_mib),
            )
            for _ in range(int(rng.integers(2, 4)))
        ]
        pods = [
            PodSpec(f"p{i}", "svc", Resources(*shapes[int(rng.integers(len(shapes)))]))
            for i in range(int(rng.integers(6, 13)))
        ]
        prov = Provisioner(od, [NodePoolSpec("default")])
        result = prov.solve(pods, [], 0.0)
        launched = [launch(prov, plan, LaunchConfig(zone_tie_break="first")) for plan in result.claims]
        ours = sum(r.price_usd_per_h for r in launched if isinstance(r, Launch))
        req = np.array([[p.requests.cpu_millicores, p.requests.memory_mib, 1.0] for p in pods])
        alloc = np.array(
            [[t.allocatable.cpu_millicores, t.allocatable.memory_mib, t.allocatable.pods] for t in od]
        )
        start = time.perf_counter()
        prices = [t.offerings[0].price_usd_per_h for t in od]
        best = optimal_cost(req, alloc, prices, max_nodes=int(ours / min(prices) + 1e-9))
        elapsed.append(time.perf_counter() - start)
        ratios.append(ours / best)
    r = np.array(ratios)
    print(
        f"packing quality over {problems} random problems (6 types, 6-12 pods, 2-3 shapes): "
        f"Karpenter cost / MILP optimum: min {r.min():.3f}, median {np.median(r):.3f}, "
        f"mean {r.mean():.3f}, p90 {np.quantile(r, 0.9):.3f}, max {r.max():.3f}; "
        f"optimal in {np.mean(np.isclose(r, 1.0)) * 100:.0f}% of problems "
        f"(MILP median {np.median(elapsed) * 1000:.0f} ms)"
    )


def _od(t: InstanceType) -> float:
    return max(o.price_usd_per_h for o in t.offerings if o.capacity_type == "on-demand")


def bench_week(types: tuple[InstanceType, ...], low: int = 10, high: int = 120) -> None:
    """A week of diurnal scaling for one service, through every Karpenter entry point the engine uses.

    The loop calls the model the way the engine is meant to: provisioning every
    10 s while pods are pending (the pod requeue), binding when a node turns
    ready or pods become pending, a disruption pass every 10 s with a cluster
    version it bumps on every change, replacements before deletions.
    """
    pool = NodePoolSpec(
        "default",
        requirements=(
            Requirement(LABEL_INSTANCE_CATEGORY, Operator.IN, ("c", "m", "r")),
            Requirement(LABEL_INSTANCE_GENERATION, Operator.GT, ("4",)),
        ),
        budgets=(),
        consolidate_after_s=60.0,
    )
    prov = Provisioner(types, [pool])
    disruption = DisruptionController(prov, DisruptionConfig())
    config = LaunchConfig()
    rng = np.random.default_rng(1)
    nodes: dict[str, Node] = {}
    pending: dict[str, PodSpec] = {}
    running: dict[str, str] = {}
    draining: dict[str, float] = {}
    calls = {"provision": 0, "bind": 0, "disrupt": 0, "commands": 0, "launches": 0}
    spent = {k: 0.0 for k in ("provision", "bind", "disrupt")}
    version = next_id = 0
    dirty = False
    t = 0.0
    while t < HORIZON_S:
        replicas = int(low + (high - low) * (0.5 - 0.5 * math.cos(2 * math.pi * t / 86400)))
        current = len(running) + len(pending)
        for _ in range(max(0, replicas - current)):
            pod = PodSpec(f"p{next_id}", "svc", Resources(500, 1024), created_s=t)
            pending[pod.id] = pod
            next_id += 1
            version += 1
            dirty = True
        for _ in range(max(0, current - replicas)):
            version += 1
            if pending:
                pending.popitem()
                continue
            pid = next(reversed(running))
            node = nodes[running.pop(pid)]
            del node.pods[pid]
            node.last_pod_event_s = t
        for name in [n for n, due in draining.items() if due <= t]:
            node = nodes.pop(name)
            pending.update(node.pods)
            for pid in node.pods:
                running.pop(pid, None)
            del draining[name]
            version += 1
            dirty = True
        if pending and int(t) % 10 == 0:
            start = time.perf_counter()
            result = prov.solve(list(pending.values()), list(nodes.values()), t)
            for plan in result.claims:
                launched = launch(prov, plan, config, rng)
                calls["launches"] += 1
                if isinstance(launched, Launch):
                    node = make_node(launched, f"n{calls['launches']}", t, t + 40.0)
                    nodes[node.name] = node
                    version += 1
            spent["provision"] += time.perf_counter() - start
            calls["provision"] += 1
        turned_ready = any(n.ready_s is not None and t - 5.0 < n.ready_s <= t for n in nodes.values())
        if pending and (dirty or turned_ready):
            start = time.perf_counter()
            bound = bind(list(pending.values()), list(nodes.values()), t)
            for pid, node_name in bound.bound.items():
                nodes[node_name].pods[pid] = pending.pop(pid)
                nodes[node_name].last_pod_event_s = t
                running[pid] = node_name
                version += 1
            spent["bind"] += time.perf_counter() - start
            calls["bind"] += 1
            dirty = False
        if int(t) % 10 == 0:
            start = time.perf_counter()
            passed = disruption.reconcile(
                list(nodes.values()), list(pending.values()), t, cluster_version=version
            )
            command = passed.command
            if command is not None:
                calls["commands"] += 1
                ready_at = t
                for plan in command.replacements:
                    launched = launch(prov, plan, config, rng)
                    calls["launches"] += 1
                    if isinstance(launched, Launch):
                        node = make_node(launched, f"n{calls['launches']}", t, t + 40.0)
                        nodes[node.name] = node
                        ready_at = t + 40.0
                for name in command.candidates:
                    nodes[name].marked_for_deletion = True
                    draining[name] = ready_at
                version += 1
            spent["disrupt"] += time.perf_counter() - start
            calls["disrupt"] += 1
        t += 5.0
    total = sum(spent.values())
    print(
        f"7-day single service (5 s steps, {low}-{high} pods of 500m/1Gi): Karpenter calls {calls}; "
        + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
        + f"; total {total:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    types = catalog()
    bench_packing(types)
    bench_quality(types, args.problems, args.seed)
    bench_week(types, 2, 20)
    bench_week(types, 10, 120)


if __name__ == "__main__":
    main()
