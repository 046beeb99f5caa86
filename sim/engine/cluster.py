"""Nodes under Karpenter: pending pods, provisioning batches, launches, binding, disruption, cost.

The controllers are pure (`sim.controllers.karpenter`); this module gives them
their clocks and carries their decisions out: the batch window, the node
launch latency, kube-scheduler binding when a node turns ready, the disruption
loop every 10 s with its validation delay, spot interruptions with their
2-minute notice, and the bill. Services own their pods (ReplicaSet semantics);
the cluster tells a service when one of its pods is bound or evicted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import simpy

from sim import rng as rng_mod
from sim.cluster import LoadedCluster
from sim.controllers.karpenter.batcher import Batcher
from sim.controllers.karpenter.binder import bind
from sim.controllers.karpenter.disruption import Command, DisruptionController
from sim.controllers.karpenter.instance_index import OfferingKey
from sim.controllers.karpenter.launch import Launch, launch, make_node
from sim.controllers.karpenter.lifecycle import expired, interruption, last_pod_event_s
from sim.controllers.karpenter.provisioning import ClaimPlan, Provisioner
from sim.controllers.karpenter.types import Node, PodSpec
from sim.dataplane import distributions

# Billing: per second with a 60 s minimum per instance (EC2 Linux on-demand and spot).
MIN_BILLED_S = 60.0


class PodOwner(Protocol):
    """What the cluster asks of whoever owns pods (a service, a background workload)."""

    def pod_bound(self, pod_id: str, node: Node, extra_start_s: float) -> None: ...

    def pod_evicted(self, pod_id: str) -> None: ...


@dataclass
class _NodeRecord:
    """One instance's life, for the bill and the node-count series."""

    name: str
    nodepool: str
    instance_type: str
    capacity_type: str
    price_usd_per_h: float
    start_s: float
    end_s: float | None = None

    def billed_usd(self, horizon_s: float) -> float:
        end = self.end_s if self.end_s is not None else horizon_s
        seconds = max(end - self.start_s, 0.0)
        if self.end_s is not None:
            seconds = max(seconds, MIN_BILLED_S)
        return self.price_usd_per_h * seconds / 3600.0


@dataclass
class _Meter:
    """Cost rates between changes, integrated: per service (by requested CPU share of each node) and idle."""

    last_s: float = 0.0
    by_owner_usd: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    requested_core_s: float = 0.0
    allocatable_core_s: float = 0.0
    requested_cores: float = 0.0
    allocatable_cores: float = 0.0

    def accrue(self, now_s: float) -> None:
        dt = now_s - self.last_s
        if dt > 0:
            for owner, rate in self.rates.items():
                self.by_owner_usd[owner] = self.by_owner_usd.get(owner, 0.0) + rate * dt / 3600.0
            self.requested_core_s += self.requested_cores * dt
            self.allocatable_core_s += self.allocatable_cores * dt
        self.last_s = max(self.last_s, now_s)


class ClusterSim:
    """All nodes of a run and the Karpenter processes that manage them."""

    def __init__(
        self,
        env: simpy.Environment,
        cluster: LoadedCluster,
        seed: int,
        horizon_s: float,
        events: list[tuple[Any, ...]],
    ) -> None:
        self.env = env
        self.cluster = cluster
        self.horizon_s = horizon_s
        self.events = events
        cfg = cluster.karpenter
        self.cfg = cfg
        self.prov = Provisioner(
            cluster.instance_types, cluster.node_pools, cluster.daemonsets, cfg.provisioning
        )
        self.disruption = DisruptionController(self.prov, cfg.disruption)
        self.batcher = Batcher(cfg.batch)
        self.launch_rng = rng_mod.stream(seed, "cluster", "node_launches")
        self.interrupt_rng = rng_mod.stream(seed, "cluster", "interruptions")
        self.nodes: dict[str, Node] = {}
        self.pending: dict[str, PodSpec] = {}
        self.owners: dict[str, PodOwner] = {}
        self.pod_owner: dict[str, str] = {}
        self.pod_node: dict[str, str] = {}
        self.images: dict[str, tuple[str, ...]] = {}
        self.pulled: dict[str, set[str]] = {}
        self.ice: dict[OfferingKey, float] = {}
        self.records: dict[str, _NodeRecord] = {}
        self.meter = _Meter()
        self.unschedulable: dict[str, str] = {}
        self._node_seq = 0
        self._wake = env.event()
        self._requeue_at: float | None = None
        self._change_points: list[tuple[float, dict[tuple[str, str, str], int], float, int]] = []
        self._last_notes: tuple[str, ...] = ()
        self._version = 0
        self._seen_version = -1
        self._next_due_s = 0.0

    # ----------------------------------------------------------------- owners and pods

    def register(self, owner_name: str, owner: PodOwner, images: tuple[str, ...]) -> None:
        self.owners[owner_name] = owner
        self.images[owner_name] = images

    def submit(self, pod: PodSpec) -> None:
        """A new pod: kube-scheduler tries the ready nodes; if none fits it is provisionable."""
        self.pod_owner[pod.id] = pod.owner
        self.pending[pod.id] = pod
        self._bind_pending([pod.id])
        if pod.id in self.pending:
            self._trigger(pod.id)
        self._changed()

    def remove(self, pod_id: str) -> None:
        """The owner deleted a pod (scale-in): free its node's requests."""
        self.pending.pop(pod_id, None)
        self.unschedulable.pop(pod_id, None)
        node_name = self.pod_node.pop(pod_id, None)
        self.pod_owner.pop(pod_id, None)
        if node_name is not None:
            node = self.nodes.get(node_name)
            if node is not None and node.pods.pop(pod_id, None) is not None:
                node.last_pod_event_s = self.env.now
        self._changed()

    def _bind_pending(self, pod_ids: list[str] | None = None) -> None:
        now = self.env.now
        candidates = [self.pending[i] for i in (pod_ids or list(self.pending)) if i in self.pending]
        if not candidates:
            return
        ready = [n for n in self.nodes.values() if n.is_ready(now) and not n.marked_for_deletion]
        if not ready:
            return
        result = bind(candidates, ready, now)
        for pod_id, node_name in result.bound.items():
            node = self.nodes[node_name]
            pod = replace(self.pending.pop(pod_id), started_s=now)
            node.pods[pod_id] = pod
            node.last_pod_event_s = now
            self.pod_node[pod_id] = node_name
            self.unschedulable.pop(pod_id, None)
            self.owners[pod.owner].pod_bound(pod_id, node, self._image_pull_s(pod.owner, node_name))

    def _image_pull_s(self, owner: str, node_name: str) -> float:
        """The first pod of an image on a node pulls it cold; later pods find it cached."""
        images = set(self.images.get(owner, ())) or {owner}
        pulled = self.pulled.setdefault(node_name, set())
        if images <= pulled:
            return 0.0
        pulled |= images
        return float(distributions.sample(self.cluster.cold_image_pull, self.launch_rng, 1)[0])

    # ----------------------------------------------------------------- provisioning

    def _trigger(self, pod_id: str) -> None:
        self.batcher.trigger(pod_id, self.env.now)
        if not self._wake.triggered:
            self._wake.succeed()

    def provisioning_loop(self) -> Any:
        """The batch window, then one provisioning loop over every pending pod."""
        while True:
            close = self.batcher.close_s
            if close is None:
                self._wake = self.env.event()
                yield self._wake
                continue
            if self.env.now < close:
                yield self.env.timeout(close - self.env.now)
                continue
            self.batcher.close()
            self.provision()

    def requeue_loop(self) -> Any:
        """Pods still pending are re-triggered every requeue period, as Karpenter's pod controller does."""
        period = self.cfg.batch.requeue_s
        while True:
            yield self.env.timeout(period)
            for pod_id in list(self.pending):
                self._trigger(pod_id)

    def _unavailable(self) -> frozenset[OfferingKey]:
        now = self.env.now
        self.ice = {k: until for k, until in self.ice.items() if until > now}
        return frozenset(self.ice)

    def provision(self, *, ready_now: bool = False) -> None:
        now = self.env.now
        if not self.pending and not any(n.marked_for_deletion and n.pods for n in self.nodes.values()):
            return
        nodes = [n for n in self.nodes.values() if not n.marked_for_deletion]
        result = self.prov.solve(list(self.pending.values()), nodes, now, unavailable=self._unavailable())
        window = self.cfg.provisioning.nomination_window_s
        for node_name in set(result.nominations.values()):
            if node_name in self.nodes:
                self.nodes[node_name].nominated_until_s = now + window
        for plan in result.claims:
            self._launch(plan, ready_now=ready_now)
        fresh = {p: why for p, why in result.unschedulable.items() if self.unschedulable.get(p) != why}
        self.unschedulable.update(result.unschedulable)
        if fresh:
            first_pod, why = sorted(fresh.items())[0]
            self._log(
                "pending",
                None,
                f"{len(fresh)} pod(s) stay pending, e.g. {first_pod}: {why}",
                service=self.pod_owner.get(first_pod),
            )

    def _launch(self, plan: ClaimPlan, *, ready_now: bool = False) -> Node | None:
        now = self.env.now
        rates = self.cluster.insufficient_capacity

        def refused(key: OfferingKey) -> bool:
            p = rates.get(key[0], 0.0)
            return p > 0 and bool(self.launch_rng.random() < p)

        launched = launch(
            self.prov, plan, self.cfg.launch, self.launch_rng, self._unavailable(), refused if rates else None
        )
        for key in launched.insufficient:
            self.ice[key] = now + self.cfg.launch.ice_ttl_s
        if not isinstance(launched, Launch):
            self._log("launch_failed", plan.nodepool, f"{plan.name}: {launched.reason}")
            return None
        self._node_seq += 1
        name = f"{launched.nodepool}-{self._node_seq:05d}"
        delay = (
            0.0 if ready_now else float(distributions.sample(self.cluster.node_launch, self.launch_rng, 1)[0])
        )
        node = make_node(launched, name, now, now + delay)
        self.nodes[name] = node
        self.records[name] = _NodeRecord(
            name,
            launched.nodepool,
            launched.instance_type,
            launched.capacity_type,
            launched.price_usd_per_h,
            now,
        )
        self._log("launch", launched.nodepool, f"{name}: {launched.explanation}")
        if not ready_now:
            self.env.process(self._becomes_ready(node, delay))
        if launched.capacity_type == "spot":
            self._schedule_interruption(node)
        self._changed()
        return node

    def _becomes_ready(self, node: Node, delay_s: float) -> Any:
        yield self.env.timeout(delay_s)
        if node.name in self.nodes:
            self._bind_pending()
            self._changed()

    def bootstrap(self) -> None:
        """Nodes for the pods that exist at t=0: launched and ready already, as in a running cluster."""
        self.provision(ready_now=True)
        self._bind_pending()
        self._changed()

    # ----------------------------------------------------------------- disruption

    def disruption_loop(self) -> Any:
        cfg = self.cfg.disruption
        pools = self.prov.pools_by_name
        while True:
            yield self.env.timeout(cfg.poll_s)
            now = self.env.now
            for node in expired(self.nodes.values(), pools, now):
                self._log("expire", node.nodepool, f"{node.name} reached expireAfter: draining and deleting")
                self._drain(node)
                self._delete(node)
            if self._version == self._seen_version and now < self._next_due_s:
                continue  # nothing changed and no window or schedule can have opened since the last pass
            self._seen_version = self._version
            pdbs = self.cluster.pdbs
            result = self.disruption.reconcile(
                list(self.nodes.values()),
                list(self.pending.values()),
                now,
                pdbs=pdbs,
                unavailable=self._unavailable(),
            )
            notes = tuple(result.explanations)
            self._next_due_s = self._next_due(now, budget_blocked=any("budget" in n for n in notes))
            if notes and notes != self._last_notes and result.command is None:
                # Logged when the reasons change, not every pass: "why was this node kept?"
                self._log("not_disrupted", None, "; ".join(notes)[:800])
                self._last_notes = notes
            if result.command is None:
                continue
            yield from self._execute(result.command)

    def _next_due(self, now_s: float, *, budget_blocked: bool) -> float:
        """The next instant a pass could decide differently on an unchanged cluster.

        A consolidateAfter window or a nomination running out, a node turning
        ready, a pod's do-not-disrupt duration ending, a blocked offering coming
        back, or, when a budget held a node back and some budget has a
        (minute-grained cron) schedule, the next minute: a window that opens can
        only matter to a node a budget held.
        """
        pools = self.prov.pools_by_name
        due = [*self.ice.values()]
        if budget_blocked and any(b.schedule for pool in pools.values() for b in pool.budgets):
            due.append(now_s + 60.0)
        for node in self.nodes.values():
            for pod in node.pods.values():
                if pod.do_not_disrupt_s is not None and pod.started_s is not None:
                    due.append(pod.started_s + pod.do_not_disrupt_s)
            pool = pools.get(node.nodepool or "")
            since = last_pod_event_s(node)
            if pool is not None and pool.consolidate_after_s is not None and since is not None:
                due.append(since + pool.consolidate_after_s)
            due.append(node.nominated_until_s)
            if node.ready_s is not None:
                due.append(node.ready_s)
        return min((t for t in due if t > now_s), default=math.inf)

    def _execute(self, command: Command) -> Any:
        """Validate after the delay, launch replacements, wait until they are ready, then drain and delete."""
        cfg = self.cfg.disruption
        if cfg.validation_delay_s:
            yield self.env.timeout(cfg.validation_delay_s)
            checked = self.disruption.validate(
                command,
                list(self.nodes.values()),
                list(self.pending.values()),
                self.env.now,
                pdbs=self.cluster.pdbs,
                unavailable=self._unavailable(),
            )
            if checked is None:
                self._log("disrupt_abandoned", None, f"abandoned after validation: {command.explanation}")
                return
            command = checked
        victims = [self.nodes[n] for n in command.candidates if n in self.nodes]
        for node in victims:
            node.marked_for_deletion = True
        self._log("disrupt", victims[0].nodepool if victims else None, command.explanation)
        replacements = [n for plan in command.replacements if (n := self._launch(plan)) is not None]
        if len(replacements) < len(command.replacements):
            for node in victims:
                node.marked_for_deletion = False
            self._log("disrupt_abandoned", None, f"replacement launch failed: {command.explanation}")
            return
        while any(not n.is_ready(self.env.now) for n in replacements if n.name in self.nodes):
            yield self.env.timeout(1.0)
        for node in victims:
            self._drain(node)
            self._delete(node)

    def _drain(self, node: Node) -> None:
        """Evict every pod on the node; their owners recreate them, and they start again elsewhere."""
        node.marked_for_deletion = True
        for pod_id in list(node.pods):
            node.pods.pop(pod_id)
            self.pod_node.pop(pod_id, None)
            owner = self.pod_owner.pop(pod_id, None)
            if owner is not None:
                self.owners[owner].pod_evicted(pod_id)
        self._changed()

    def _delete(self, node: Node) -> None:
        self.nodes.pop(node.name, None)
        self.pulled.pop(node.name, None)
        record = self.records[node.name]
        record.end_s = self.env.now
        self._changed()

    # ----------------------------------------------------------------- spot interruptions

    def _schedule_interruption(self, node: Node) -> None:
        rate_per_h = self.cluster.interruption_rate_per_h.get(node.instance_type, 0.0)
        if rate_per_h <= 0:
            return
        notice_in = float(self.interrupt_rng.exponential(3600.0 / rate_per_h))
        if self.env.now + notice_in < self.horizon_s:
            self.env.process(self._interrupt(node, notice_in))

    def _interrupt(self, node: Node, notice_in_s: float) -> Any:
        yield self.env.timeout(notice_in_s)
        if node.name not in self.nodes:
            return
        notice = interruption(node, self.env.now, self.cfg.disruption.interruption_notice_s)
        self.ice[notice.blocked_offering] = self.env.now + self.cfg.launch.ice_ttl_s
        self._log("interrupt", node.nodepool, notice.explanation)
        self._drain(node)
        yield self.env.timeout(notice.terminate_s - self.env.now)
        self._delete(node)

    # ----------------------------------------------------------------- bookkeeping

    def _changed(self) -> None:
        """Accrue cost at the old rates, then recompute rates and record the node counts."""
        self._version += 1
        now = self.env.now
        self.meter.accrue(now)
        rates: dict[str, float] = {}
        requested = allocatable = 0.0
        counts: dict[tuple[str, str, str], int] = {}
        total_rate = 0.0
        for node in self.nodes.values():
            price = node.price_usd_per_h
            total_rate += price
            alloc = max(node.allocatable.cpu_millicores, 1e-9)
            allocatable += alloc / 1000.0
            used = 0.0
            for pod in node.pods.values():
                share = pod.requests.cpu_millicores / alloc
                rates[pod.owner] = rates.get(pod.owner, 0.0) + price * share
                used += pod.requests.cpu_millicores
            requested += (used + node.daemon_requests.cpu_millicores) / 1000.0
            rates["(daemonsets)"] = (
                rates.get("(daemonsets)", 0.0) + price * node.daemon_requests.cpu_millicores / alloc
            )
            key = (node.nodepool or "", node.instance_type, node.capacity_type)
            counts[key] = counts.get(key, 0) + 1
        rates["(idle)"] = max(total_rate - sum(rates.values()), 0.0)
        self.meter.rates = rates
        self.meter.requested_cores = requested
        self.meter.allocatable_cores = allocatable
        point = (now, counts, total_rate, len(self.pending))
        if self._change_points and self._change_points[-1][0] == now:
            self._change_points[-1] = point
        else:
            self._change_points.append(point)

    def _log(self, action: str, nodepool: str | None, reason: str, service: str | None = None) -> None:
        self.events.append(
            (
                self.env.now,
                service or "(cluster)",
                "karpenter",
                action,
                None,
                len(self.nodes),
                None,
                None,
                None,
                nodepool,
                reason,
            )
        )

    # ----------------------------------------------------------------- results

    def outputs(
        self, n_steps: int, step_s: float
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, Any]]:
        """Nodes per step and type (long form), cost rate and pending pods per step, and the summary block."""
        self.meter.accrue(self.horizon_s)
        keys = sorted({k for _, counts, _, _ in self._change_points for k in counts})
        grid = np.zeros((n_steps, len(keys)), dtype=np.int64)
        cost_rate = np.zeros(n_steps)
        pending = np.zeros(n_steps, dtype=np.int64)
        for i, (t, counts, rate, n_pending) in enumerate(self._change_points):
            s0 = min(max(math.ceil(t / step_s - 1e-9), 0), n_steps)
            s1 = (
                min(max(math.ceil(self._change_points[i + 1][0] / step_s - 1e-9), 0), n_steps)
                if i + 1 < len(self._change_points)
                else n_steps
            )
            if s1 <= s0:
                continue
            grid[s0:s1] = [counts.get(k, 0) for k in keys]
            cost_rate[s0:s1] = rate
            pending[s0:s1] = n_pending
        times = np.arange(n_steps) * step_s
        nodes = pd.DataFrame(
            {
                "time_s": np.repeat(times, len(keys)),
                "nodepool": [k[0] for k in keys] * n_steps,
                "instance_type": [k[1] for k in keys] * n_steps,
                "capacity_type": [k[2] for k in keys] * n_steps,
                "nodes": grid.reshape(-1),
            }
        )
        return nodes, cost_rate, pending, self._summary(grid)

    def _summary(self, grid: np.ndarray) -> dict[str, Any]:
        records = list(self.records.values())
        total = sum(r.billed_usd(self.horizon_s) for r in records)
        by_pool: dict[str, float] = {}
        by_type: dict[str, float] = {}
        for r in records:
            cost = r.billed_usd(self.horizon_s)
            by_pool[r.nodepool] = by_pool.get(r.nodepool, 0.0) + cost
            by_type[r.instance_type] = by_type.get(r.instance_type, 0.0) + cost
        apportioned = dict(self.meter.by_owner_usd)
        minimum_topup = total - sum(apportioned.values())
        apportioned["(idle)"] = apportioned.get("(idle)", 0.0) + max(minimum_topup, 0.0)
        days = self.horizon_s / 86400.0
        counts = grid.sum(axis=1) if grid.size else np.zeros(1)
        m = self.meter
        utilisation = m.requested_core_s / m.allocatable_core_s if m.allocatable_core_s else None
        return {
            "cost": {
                "total_usd": total,
                "per_day_usd": total / days if days else None,
                "per_month_usd": total / days * 730.0 / 24.0 if days else None,
                "by_nodepool_usd": by_pool,
                "by_instance_type_usd": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
                "by_service_usd": {k: v for k, v in apportioned.items() if not k.startswith("(")},
                "idle_usd": apportioned.get("(idle)", 0.0),
                "daemonsets_usd": apportioned.get("(daemonsets)", 0.0),
            },
            "nodes": {
                "launched": len(records),
                "p50": float(np.percentile(counts, 50)),
                "p95": float(np.percentile(counts, 95)),
                "max": int(counts.max()),
                "cpu_utilisation": utilisation,
                "cpu_waste_ratio": (1.0 - utilisation) if utilisation is not None else None,
            },
            "unschedulable": [
                {"pod": pod, "owner": self.pod_owner.get(pod), "reason": why}
                for pod, why in sorted(self.unschedulable.items())
                if pod in self.pending
            ],
        }


@dataclass
class BackgroundSim:
    """Another tenant's pods on a shared NodePool: they take room, get no traffic, restart when evicted."""

    env: simpy.Environment
    cluster: ClusterSim
    name: str
    template: PodSpec
    replicas_at: Callable[[float], int]
    pods: list[str] = field(default_factory=list)
    seq: int = 0

    def pod_bound(self, pod_id: str, node: Node, extra_start_s: float) -> None:
        return None

    def pod_evicted(self, pod_id: str) -> None:
        if pod_id in self.pods:
            self.pods.remove(pod_id)
            self._add()

    def _add(self) -> None:
        self.seq += 1
        pod = replace(self.template, id=f"{self.name}-{self.seq}", owner=self.name, created_s=self.env.now)
        self.pods.append(pod.id)
        self.cluster.submit(pod)

    def reconcile(self) -> None:
        want = self.replicas_at(self.env.now)
        while len(self.pods) < want:
            self._add()
        while len(self.pods) > want:
            self.cluster.remove(self.pods.pop())
