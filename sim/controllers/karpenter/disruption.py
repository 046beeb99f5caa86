"""Karpenter's disruption loop: which node(s) to remove, with or without one replacement, and why not.

One `DisruptionController.reconcile` is one pass of core
pkg/controllers/disruption/controller.go. Methods run in this order and the
first that produces a command wins the pass:

1. Emptiness - empty nodes are the cheapest win and need no simulation.
2. Drift - nodes that no longer match their NodePool must go eventually,
   whatever the price; one node per command, any number of replacements.
3. Multi-node consolidation - the largest prefix of candidates (by price per
   unit of disruption) that can be deleted, or replaced by one cheaper node.
4. Single-node consolidation - the first candidate that can be deleted or
   replaced by a cheaper node.

Expiry and spot interruption are forceful and live in `lifecycle`.

The engine executes a command the way upstream orchestrates it: wait
`validation_delay_s` and call `validate` (consolidation re-simulates);
taint the candidates `karpenter.sh/disrupted:NoSchedule`; launch the
replacements; mark the candidates for deletion (their pods then count as
pending for provisioning); once every replacement is ready, drain the
candidates (evictions respect PDBs) and terminate them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Literal

import numpy as np

from sim.controllers.karpenter.budgets import allowed_disruptions
from sim.controllers.karpenter.config import DisruptionConfig
from sim.controllers.karpenter.instance_index import OfferingKey
from sim.controllers.karpenter.lifecycle import consolidatable, last_pod_event_s, under_consolidate_after
from sim.controllers.karpenter.provisioning import (
    ClaimPlan,
    Provisioner,
    ProvisioningResult,
    Snapshot,
    _Template,
)
from sim.controllers.karpenter.requirements import Requirements, ValueSet
from sim.controllers.karpenter.topology import selects
from sim.controllers.karpenter.types import (
    CAPACITY_TYPES,
    DISRUPTION_REASONS,
    LABEL_CAPACITY_TYPE,
    PDB,
    DisruptionReason,
    Node,
    NodePoolSpec,
    PodSpec,
)

Method = Literal["emptiness", "drift", "multi-node", "single-node"]
DISRUPTION_TAINT_KEY = "karpenter.sh/disrupted"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node the loop may disrupt, with what it costs to move its pods."""

    node: Node
    pool: NodePoolSpec
    reschedulable: tuple[PodSpec, ...]
    disruption_cost: float
    consolidatable: bool

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def price(self) -> float:
        return self.node.price_usd_per_h

    @property
    def empty(self) -> bool:
        return self.disruption_cost <= 1.0

    @property
    def savings_ratio(self) -> float:
        return self.price / self.disruption_cost


@dataclass(frozen=True, slots=True)
class Command:
    """Delete `candidates`; first launch `replacements` (each must be ready before the deletion)."""

    method: Method
    reason: DisruptionReason
    candidates: tuple[str, ...]
    replacements: tuple[ClaimPlan, ...]
    savings_usd_per_h: float
    explanation: str
    pod_sets: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def decision(self) -> Literal["delete", "replace"]:
        return "replace" if self.replacements else "delete"


@dataclass
class DisruptionResult:
    command: Command | None
    explanations: list[str] = field(default_factory=list)
    """Why nodes were not disrupted this pass (consolidateAfter, budget, do-not-disrupt, no cheaper node)."""


def eviction_cost(pod: PodSpec) -> float:
    """core utils/disruption EvictionCost: deletion cost and priority move a pod's weight in [-10, 10]."""
    return min(10.0, max(-10.0, 1.0 + pod.deletion_cost / 2**27 + pod.priority / 2**25))


def reschedulable(pod: PodSpec) -> bool:
    """Pods that need a new home when their node goes: not DaemonSet pods, not terminating ones
    (except StatefulSet pods, whose replacement waits for them)."""
    if pod.owner_kind == "DaemonSet":
        return False
    return not pod.terminating or pod.owner_kind == "StatefulSet"


def pdb_allowed(pdbs: Sequence[PDB], nodes: Iterable[Node], pending: Iterable[PodSpec]) -> dict[str, int]:
    """status.disruptionsAllowed per PDB: bound pods are healthy, pending ones are not."""
    bound = [p for n in nodes for p in n.pods.values() if not p.terminating]
    waiting = list(pending)
    out: dict[str, int] = {}
    for pdb in pdbs:
        healthy = sum(1 for p in bound if selects(pdb.selector, p.labels))
        expected = healthy + sum(1 for p in waiting if selects(pdb.selector, p.labels))
        if pdb.min_available is not None:
            desired = _scaled(pdb.min_available, expected)
        else:
            desired = expected - _scaled(
                pdb.max_unavailable if pdb.max_unavailable is not None else 1, expected
            )
        out[pdb.name] = max(0, healthy - desired)
    return out


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(float(value[:-1]) * total / 100 - 1e-9)
    return int(value)


def _fully_blocking(pdb: PDB) -> bool:
    if pdb.max_unavailable is not None:
        return str(pdb.max_unavailable) in ("0", "0%")
    return str(pdb.min_available) == "100%"


class DisruptionController:
    """The disruption loop; keeps the per-method "already consolidated" memo between passes."""

    def __init__(self, provisioner: Provisioner, config: DisruptionConfig | None = None) -> None:
        self.prov = provisioner
        self.config = config or DisruptionConfig()
        self._memo: dict[Method, tuple[object, float, float]] = {}
        """Per method: (cluster state, when it found nothing, until when that state cannot change by time)."""

    # ----------------------------------------------------------------- candidates

    def _candidates(
        self,
        nodes: Sequence[Node],
        now_s: float,
        pdbs: Sequence[PDB],
        allowed_by_pdb: Mapping[str, int],
        eventual: bool,
        notes: list[str],
    ) -> list[Candidate]:
        out = []
        for node in nodes:
            pool = self.prov.pools_by_name.get(node.nodepool or "")
            if pool is None or not node.is_ready(now_s) or node.marked_for_deletion:
                continue
            if node.nominated_until_s > now_s:
                notes.append(f"{node.name}: nominated for pending pods until t={node.nominated_until_s:g}s")
                continue
            if node.do_not_disrupt:
                notes.append(f"{node.name}: node has karpenter.sh/do-not-disrupt")
                continue
            pods = [p for p in node.pods.values() if reschedulable(p)]
            ignore_pod_blockers = eventual and pool.termination_grace_period_s is not None
            blocker = None if ignore_pod_blockers else _pod_blocker(pods, pdbs, allowed_by_pdb, now_s)
            if blocker is not None:
                notes.append(f"{node.name}: {blocker}")
                continue
            cost = 1.0 + sum(max(0.0, eviction_cost(p)) for p in pods)
            out.append(Candidate(node, pool, tuple(pods), cost, consolidatable(node, pool, now_s)))
        return out

    def _budgets(self, nodes: Sequence[Node], now_s: float) -> dict[DisruptionReason, dict[str, int]]:
        total: dict[str, int] = {}
        disrupting: dict[str, int] = {}
        for node in nodes:
            if node.nodepool is None or not node.is_ready(now_s):
                continue
            total[node.nodepool] = total.get(node.nodepool, 0) + 1
            if node.marked_for_deletion:
                disrupting[node.nodepool] = disrupting.get(node.nodepool, 0) + 1
        now_utc = self.config.start_utc + timedelta(seconds=now_s)
        return {
            reason: {
                pool.name: allowed_disruptions(
                    pool.budgets, reason, total.get(pool.name, 0), disrupting.get(pool.name, 0), now_utc
                )
                for pool in self.prov.pools
            }
            for reason in DISRUPTION_REASONS
        }

    # ----------------------------------------------------------------- the pass

    def _context(
        self,
        nodes: Sequence[Node],
        pending: Sequence[PodSpec],
        now_s: float,
        pdbs: Sequence[PDB],
        unavailable: Collection[OfferingKey],
    ) -> _Context:
        snap = self.prov.snapshot(nodes, now_s)
        pools = self.prov.pools_by_name
        destinations = np.array(
            [
                info.initialized and not _protected(info.node, pools.get(info.node.nodepool or ""), now_s)
                for info in snap.infos
            ],
            dtype=bool,
        )
        return _Context(nodes, pending, now_s, pdbs, frozenset(unavailable), snap, destinations, {})

    def _next_time_change(self, nodes: Sequence[Node], now_s: float) -> float:
        """The first future instant at which a node turns ready, stops being nominated or consolidatable."""
        pools = self.prov.pools_by_name
        times = [math.inf]
        for n in nodes:
            if n.ready_s is not None and n.ready_s > now_s:
                times.append(n.ready_s)
            if n.nominated_until_s > now_s:
                times.append(n.nominated_until_s)
            pool = pools.get(n.nodepool or "")
            since = last_pod_event_s(n)
            if pool is not None and pool.consolidate_after_s is not None and since is not None:
                due = since + pool.consolidate_after_s
                if due > now_s:
                    times.append(due)
        return min(times)

    def _fingerprint(self, nodes: Sequence[Node], pending: Sequence[PodSpec], now_s: float) -> int:
        pools = self.prov.pools_by_name
        return hash(
            (
                tuple(
                    (
                        n.name,
                        n.marked_for_deletion,
                        n.is_ready(now_s),
                        tuple(n.pods),
                        n.nominated_until_s > now_s,
                        n.nodepool in pools and consolidatable(n, pools[n.nodepool], now_s),
                    )
                    for n in nodes
                ),
                frozenset(p.id for p in pending),
            )
        )

    def reconcile(
        self,
        nodes: Sequence[Node],
        pending: Sequence[PodSpec],
        now_s: float,
        *,
        pdbs: Sequence[PDB] = (),
        unavailable: Collection[OfferingKey] = frozenset(),
        cluster_version: int | None = None,
    ) -> DisruptionResult:
        """One pass; the engine calls it every `poll_s` (immediately again after a command).

        The consolidation methods skip themselves while nothing they look at
        has changed since they last found nothing (upstream's "consolidated"
        state, refreshed at least every `consolidated_memo_s`). The engine
        should pass `cluster_version`, a counter it bumps on every change to
        nodes, bound pods or pending pods: then an unchanged cluster costs
        nothing to check, and the memo also lapses when time alone changes
        the picture (a node turning ready, a nomination or consolidateAfter
        window ending). Without it the state is fingerprinted from scratch.
        """
        state: object = (
            ("version", cluster_version)
            if cluster_version is not None
            else self._fingerprint(nodes, pending, now_s)
        )
        stale = {
            m
            for m in ("emptiness", "multi-node", "single-node")
            if (memo := self._memo.get(m)) is None
            or memo[0] != state
            or now_s >= memo[2]
            or now_s - memo[1] >= self.config.consolidated_memo_s
        }
        drifted = any(n.drifted_s is not None for n in nodes)
        if not stale and not drifted:
            return DisruptionResult(None, ["nothing changed since the last pass found nothing to do"])
        notes: list[str] = []
        allowed_by_pdb = pdb_allowed(pdbs, nodes, pending)
        budgets = self._budgets(nodes, now_s)
        graceful = self._candidates(nodes, now_s, pdbs, allowed_by_pdb, False, notes)
        ctx = self._context(nodes, pending, now_s, pdbs, unavailable)
        for method in ("emptiness", "drift", "multi-node", "single-node"):
            if method == "drift":
                if not drifted:
                    continue
                eventual = self._candidates(nodes, now_s, pdbs, allowed_by_pdb, True, [])
                command = self._drift(ctx, eventual, budgets["Drifted"], notes)
            else:
                if method not in stale:
                    continue
                run = {"emptiness": self._emptiness, "multi-node": self._multi, "single-node": self._single}[
                    method
                ]
                reason: DisruptionReason = "Empty" if method == "emptiness" else "Underutilized"
                command, constrained = run(ctx, graceful, dict(budgets[reason]), notes)
                if command is None and not constrained:
                    until = self._next_time_change(nodes, now_s) if cluster_version is not None else math.inf
                    self._memo[method] = (state, now_s, until)
            if command is not None:
                return DisruptionResult(command, notes)
        return DisruptionResult(None, notes)

    # ----------------------------------------------------------------- methods

    def _emptiness(
        self, ctx: _Context, candidates: list[Candidate], budget: dict[str, int], notes: list[str]
    ) -> tuple[Command | None, bool]:
        chosen: list[Candidate] = []
        constrained = False
        for c in _by_savings(candidates):
            if not c.empty or c.pool.consolidate_after_s is None:
                continue
            if not c.consolidatable:
                notes.append(f"{c.name}: empty but within consolidateAfter ({c.pool.consolidate_after_s:g}s)")
                continue
            if budget.get(c.pool.name, 0) <= 0:
                constrained = True
                notes.append(f"{c.name}: empty, but NodePool {c.pool.name!r} disruption budget is exhausted")
                continue
            budget[c.pool.name] -= 1
            chosen.append(c)
        if not chosen:
            return None, constrained
        savings = sum(c.price for c in chosen)
        names = tuple(c.name for c in chosen)
        text = f"emptiness: delete {len(chosen)} empty node(s) {', '.join(names)}, saving ${savings:.4f}/h"
        return Command("emptiness", "Empty", names, (), savings, text, _pod_sets(chosen)), constrained

    def _drift(
        self, ctx: _Context, candidates: list[Candidate], budget: dict[str, int], notes: list[str]
    ) -> Command | None:
        drifted = sorted(
            (c for c in candidates if c.node.drifted_s is not None),
            key=lambda c: (bool(c.reschedulable), c.node.drifted_s, c.name),
        )
        for c in drifted:
            if budget.get(c.pool.name, 0) <= 0:
                notes.append(f"{c.name}: drifted, but NodePool {c.pool.name!r} drift budget is exhausted")
                continue
            result, failure = self._simulate(ctx, [c], consolidation=False)
            if failure is not None:
                notes.append(f"{c.name}: drifted, but its pods cannot be rescheduled: {failure}")
                continue
            text = (
                f"drift: replace {c.name} (drifted at t={c.node.drifted_s:g}s) "
                f"with {len(result.claims)} new node(s)"
            )
            return Command("drift", "Drifted", (c.name,), result.claims, 0.0, text, _pod_sets([c]))
        return None

    def _consolidation_candidates(self, candidates: list[Candidate], notes: list[str]) -> list[Candidate]:
        out = []
        for c in candidates:
            if c.pool.consolidate_after_s is None or c.empty:
                continue
            if c.pool.consolidation_policy == "WhenEmpty":
                notes.append(f"{c.name}: NodePool {c.pool.name!r} is WhenEmpty and the node is not empty")
                continue
            if not c.consolidatable:
                notes.append(
                    f"{c.name}: pods changed less than consolidateAfter ({c.pool.consolidate_after_s:g}s) ago"
                )
                continue
            out.append(c)
        return out

    def _multi(
        self, ctx: _Context, candidates: list[Candidate], budget: dict[str, int], notes: list[str]
    ) -> tuple[Command | None, bool]:
        admitted: list[Candidate] = []
        constrained = False
        for c in _by_savings(self._consolidation_candidates(candidates, [])):
            if budget.get(c.pool.name, 0) <= 0:
                constrained = True
                continue
            budget[c.pool.name] -= 1
            admitted.append(c)
        admitted = admitted[: self.config.multi_node_max_candidates]
        if len(admitted) < 2:
            return None, constrained
        best: Command | None = None
        hopeless = self._prefix_hopeless(ctx, admitted) if self.config.precheck else [None] * len(admitted)
        low, high = 1, len(admitted) - 1
        while low <= high:
            mid = (low + high) // 2
            batch = admitted[: mid + 1]
            why = hopeless[mid]
            command = why if why is not None else self._consolidate(ctx, batch, "multi-node", checked=True)
            if isinstance(command, Command) and command.replacements:
                command = _without_same_type(self.prov, command, batch, ctx.unavailable)
            if isinstance(command, Command) and self._approved(command, batch, ctx):
                best = command
                low = mid + 1
            else:
                high = mid - 1
        return best, constrained

    def _single(
        self, ctx: _Context, candidates: list[Candidate], budget: dict[str, int], notes: list[str]
    ) -> tuple[Command | None, bool]:
        constrained = False
        ordered = _interleave_pools(_by_savings(self._consolidation_candidates(candidates, notes)))
        verdicts = (
            self._hopeless(ctx, [[c] for c in ordered]) if self.config.precheck else [None] * len(ordered)
        )
        hopeless = {c.name: why for c, why in zip(ordered, verdicts, strict=True)}
        for c in ordered:
            if budget.get(c.pool.name, 0) <= 0:
                constrained = True
                notes.append(f"{c.name}: NodePool {c.pool.name!r} disruption budget is exhausted")
                continue
            if c.pool.consolidation_policy == "Balanced" and not self._passes(
                c.price, c.disruption_cost, c, ctx
            ):
                notes.append(f"{c.name}: Balanced: even deleting it would not save enough for the disruption")
                continue
            why = hopeless[c.name]
            command = why if why is not None else self._consolidate(ctx, [c], "single-node", checked=True)
            if isinstance(command, str):
                notes.append(f"{c.name}: {command}")
                continue
            if not self._approved(command, [c], ctx):
                notes.append(f"{c.name}: Balanced: savings too small for the disruption")
                continue
            return command, constrained
        return None, constrained

    # ----------------------------------------------------------------- consolidation core

    def _simulate(
        self, ctx: _Context, candidates: list[Candidate], consolidation: bool
    ) -> tuple[ProvisioningResult, str | None]:
        moving = [p for c in candidates for p in c.reschedulable if self._currently_reschedulable(p, ctx)]
        moving_ids = {p.id for p in moving}
        result = self.prov.solve(
            list(ctx.pending) + moving,
            ctx.nodes,
            ctx.now_s,
            unavailable=ctx.unavailable,
            exclude={c.name for c in candidates},
            moving=moving_ids,
            consolidation=consolidation,
            snapshot=ctx.snapshot,
        )
        deleting = {p.id for n in ctx.nodes if n.marked_for_deletion for p in n.pods.values()}
        for pid in sorted(moving_ids | deleting):
            if pid in result.unschedulable:
                return result, f"pod {pid} would not schedule: {result.unschedulable[pid]}"
        by_name = {n.name: n for n in ctx.nodes}
        for pid, node_name in sorted(result.nominations.items()):
            node = by_name[node_name]
            if pid in moving_ids and not node.is_ready(ctx.now_s):
                return result, f"pod {pid} would schedule against uninitialized node {node_name}"
        return result, None

    def _currently_reschedulable(self, pod: PodSpec, ctx: _Context) -> bool:
        if pod.do_not_disrupt_active(ctx.now_s):
            return False
        return not any(selects(pdb.selector, pod.labels) and _fully_blocking(pdb) for pdb in ctx.pdbs)

    def _hopeless(self, ctx: _Context, groups: list[list[Candidate]]) -> list[str | None]:
        """For each group of candidates, a cheap proof that simulating would find nothing (or None).

        A group's pods must go to other initialized nodes (outside their
        consolidateAfter window) or to one new node cheaper than the group.
        Two lower bounds on what that new node must hold: the pods that fit
        no other node on their own, and the summed requests beyond all the
        free room elsewhere. Pending pods and placement constraints only make
        things harder, so when no instance type priced below the group can
        hold that much, the simulation cannot succeed and is skipped. This
        changes no outcome, only how often the scheduler runs; all groups are
        checked in a few array operations.
        """
        moving = self._moving(ctx, [c for group in groups for c in group])
        left = np.zeros((len(groups), len(self.prov.index.resource_names)))
        if moving.requests.size:
            owners = np.repeat(np.arange(len(groups)), [len(g) for g in groups])[moving.owner]
            need = np.zeros_like(left)
            np.add.at(need, owners, moving.requests)
            fits = moving.fits.copy()
            room = np.repeat(moving.room_total[None, :], len(groups), axis=0)
            cols = moving.columns
            if all(len(group) == 1 for group in groups):
                col = np.array(cols, dtype=np.intp)
                pod_col = col[owners]
                hit = pod_col >= 0
                fits[np.flatnonzero(hit), pod_col[hit]] = False
                has = col >= 0
                room[has] -= moving.free[col[has]].clip(min=0)
            else:
                start = 0
                for g, group in enumerate(groups):
                    own = [k for k in cols[start : start + len(group)] if k >= 0]
                    start += len(group)
                    if own:
                        fits[np.ix_(owners == g, np.array(own))] = False
                        room[g] -= moving.free[own].clip(min=0).sum(axis=0)
            homeless = ~fits.any(axis=1)
            stranded = np.zeros_like(left)
            np.add.at(stranded, owners[homeless], moving.requests[homeless])
            left = np.maximum(need - room, stranded)
        price = np.array([sum(c.price for c in group) for group in groups])
        all_spot = np.array(
            [all(c.node.capacity_type == "spot" for c in group) for group in groups], dtype=bool
        )
        return self._verdicts(ctx, left, price, all_spot, np.array([len(g) for g in groups]))

    def _prefix_hopeless(self, ctx: _Context, ordered: list[Candidate]) -> list[str | None]:
        """`_hopeless` for every prefix ordered[:k+1] at once (multi-node's binary search)."""
        moving = self._moving(ctx, ordered)
        n = len(ordered)
        left = np.zeros((n, len(self.prov.index.resource_names)))
        if moving.requests.size:
            need = np.zeros_like(left)
            np.add.at(need, moving.owner, moving.requests)
            need = need.cumsum(axis=0)
            own_free = np.zeros_like(left)
            for i, k in enumerate(moving.columns):
                if k >= 0:
                    own_free[i] = moving.free[k].clip(min=0)
            room = moving.room_total[None, :] - own_free.cumsum(axis=0)
            rank = np.full(moving.free.shape[0], -1)
            for i, k in enumerate(moving.columns):
                if k >= 0:
                    rank[k] = i
            elsewhere = (moving.fits & (rank < 0)[None, :]).any(axis=1)
            latest = np.where(moving.fits, rank[None, :], -1).max(axis=1, initial=-1)
            threshold = np.maximum(moving.owner, latest)
            stranded = np.zeros_like(left)
            np.add.at(stranded, threshold[~elsewhere], moving.requests[~elsewhere])
            left = np.maximum(need - room, stranded.cumsum(axis=0))
        price = np.cumsum([c.price for c in ordered])
        all_spot = np.logical_and.accumulate(
            np.array([c.node.capacity_type == "spot" for c in ordered], dtype=bool)
        )
        return self._verdicts(ctx, left, price, all_spot, np.arange(1, n + 1))

    def _moving(self, ctx: _Context, candidates: list[Candidate]) -> _Moving:
        index = self.prov.index
        snap = ctx.snapshot
        vectors: list[np.ndarray] = []
        owner: list[int] = []
        for i, c in enumerate(candidates):
            for pod in c.reschedulable:
                if self._currently_reschedulable(pod, ctx):
                    vector = ctx.vectors.get(pod.id)
                    if vector is None:
                        vector = ctx.vectors[pod.id] = index.vector(pod.requests)
                    vectors.append(vector)
                    owner.append(i)
        dest_rows = np.flatnonzero(ctx.destinations)
        column = {int(r): k for k, r in enumerate(dest_rows)}
        free = snap.free[dest_rows]
        requests = np.array(vectors).reshape(len(vectors), len(index.resource_names))
        used = np.flatnonzero(requests.any(axis=0))
        fits = np.all(free[None, :, used] >= requests[:, None, used] - 1e-6, axis=2)
        columns = [column.get(snap.row.get(c.name, -1), -1) for c in candidates]
        return _Moving(
            requests, np.array(owner, dtype=np.intp), free, fits, free.clip(min=0).sum(axis=0), columns
        )

    def _verdicts(
        self, ctx: _Context, left: np.ndarray, price: np.ndarray, all_spot: np.ndarray, sizes: np.ndarray
    ) -> list[str | None]:
        """Per group: `left` must fit one type cheaper than `price`; spot groups may not be replaced."""
        templates, _ = self.prov.templates(ctx.unavailable)
        spot_pools = all(_allows_spot(t.requirements) for t in templates)
        spot_to_spot = all_spot & spot_pools
        minimum = self.config.spot_to_spot_min_types
        out: list[str | None] = [None] * len(left)
        open_groups = np.flatnonzero(np.any(left > 1e-6, axis=1))
        if not open_groups.size:
            return out
        cheaper = np.zeros(len(left), dtype=bool)
        counts = np.full(len(left), minimum, dtype=np.intp)
        count_groups = open_groups[spot_to_spot[open_groups] & (sizes[open_groups] == 1)]
        if count_groups.size:
            counts[count_groups] = 0
        dims = tuple(np.flatnonzero((left[open_groups] > 1e-6).any(axis=0)).tolist())
        need = left[open_groups][:, dims]
        for t in templates:
            rows = _frontier(t, dims)
            room = (t.index.allocatable[rows] - t.daemon[rows])[:, dims]
            holds = np.all(room[None, :, :] >= need[:, None, :] - 1e-6, axis=2)
            cheaper[open_groups] |= np.any(
                holds & (t.min_price[rows][None, :] < price[open_groups][:, None]), axis=1
            )
            if count_groups.size:
                cands = t.candidates
                room = t.index.allocatable[cands] - t.daemon[cands]
                holds = np.all(room[None, :, :] >= left[count_groups][:, None, :] - 1e-6, axis=2)
                affordable = t.min_price[cands][None, :] < price[count_groups][:, None]
                counts[count_groups] += np.count_nonzero(holds & affordable, axis=1)
        for g in open_groups.tolist():
            if spot_to_spot[g] and not self.config.spot_to_spot:
                out[g] = "SpotToSpotConsolidation is disabled, can't replace a spot node with a spot node"
            elif not cheaper[g]:
                out[g] = "Can't replace with a cheaper node (its pods do not fit on other nodes)"
            elif spot_to_spot[g] and sizes[g] == 1 and counts[g] < minimum:
                out[g] = (
                    f"SpotToSpotConsolidation requires {minimum} cheaper instance type options than the "
                    f"current candidate to consolidate, got at most {counts[g]}"
                )
        return out

    def _consolidate(
        self, ctx: _Context, candidates: list[Candidate], method: Method, checked: bool = False
    ) -> Command | str:
        hopeless = None if checked or not self.config.precheck else self._hopeless(ctx, [candidates])[0]
        if hopeless is not None:
            return hopeless
        result, failure = self._simulate(ctx, candidates, consolidation=True)
        if failure is not None:
            return failure
        names = tuple(c.name for c in candidates)
        price = sum(c.price for c in candidates)
        if not result.claims:
            text = f"{method}: delete {', '.join(names)}; pods fit on other nodes, saving ${price:.4f}/h"
            return Command(method, "Underutilized", names, (), price, text, _pod_sets(candidates))
        if len(result.claims) > 1:
            return f"can't remove without creating {len(result.claims)} nodes"
        plan = result.claims[0]
        ct = plan.requirements.get(LABEL_CAPACITY_TYPE)
        allows_spot = ct is None or ct.has("spot")
        if all(c.node.capacity_type == "spot" for c in candidates) and allows_spot:
            spot_plan = self._spot_to_spot(ctx, plan, price, len(candidates))
            if isinstance(spot_plan, str):
                return spot_plan
            plan = spot_plan
        else:
            cheaper = _cheaper_options(self.prov, plan, price, ctx.unavailable)
            if isinstance(cheaper, str):
                return cheaper
            plan = cheaper
            if ct is None or (ct.has("spot") and ct.has("on-demand")):
                plan = _narrow_to_spot(plan)
        replacement_price = _cheapest_price(self.prov, plan, ctx.unavailable)
        savings = price - replacement_price
        text = (
            f"{method}: replace {', '.join(names)} (${price:.4f}/h) with one node from "
            f"{len(plan.instance_types)} cheaper option(s), cheapest {plan.instance_types[0]} "
            f"at ${replacement_price:.4f}/h"
        )
        return Command(method, "Underutilized", names, (plan,), savings, text, _pod_sets(candidates))

    def _spot_to_spot(self, ctx: _Context, plan: ClaimPlan, price: float, count: int) -> ClaimPlan | str:
        if not self.config.spot_to_spot:
            return "SpotToSpotConsolidation is disabled, can't replace a spot node with a spot node"
        spot_only = _narrow_to_spot(plan)
        spot_only = _only_compatible(self.prov, spot_only, ctx.unavailable)
        cheaper = _cheaper_options(self.prov, spot_only, price, ctx.unavailable)
        if isinstance(cheaper, str) or count > 1:
            return cheaper
        need = self.config.spot_to_spot_min_types
        if len(cheaper.instance_types) < need:
            return (
                f"SpotToSpotConsolidation requires {need} cheaper instance type options than the current "
                f"candidate to consolidate, got {len(cheaper.instance_types)}"
            )
        return replace(cheaper, instance_types=cheaper.instance_types[:need])

    def _approved(self, command: Command, candidates: list[Candidate], ctx: _Context) -> bool:
        pools = {c.pool.name: c.pool for c in candidates}
        if not any(p.consolidation_policy == "Balanced" for p in pools.values()):
            return True
        total_source = sum(c.price for c in candidates)
        for name, pool in pools.items():
            if pool.consolidation_policy != "Balanced":
                continue
            mine = [c for c in candidates if c.pool.name == name]
            share = sum(c.price for c in mine) / total_source if total_source > 0 and len(pools) > 1 else 1.0
            if not self._passes(
                command.savings_usd_per_h * share, sum(c.disruption_cost for c in mine), mine[0], ctx
            ):
                return False
        return True

    def _passes(self, savings: float, disruption: float, candidate: Candidate, ctx: _Context) -> bool:
        """Balanced's gate: (savings / pool cost) / (disruption / pool disruption) >= 1/k."""
        pool_nodes = [n for n in ctx.nodes if n.nodepool == candidate.pool.name and n.is_ready(ctx.now_s)]
        total_cost = sum(n.price_usd_per_h for n in pool_nodes)
        total_disruption = sum(
            1.0 + sum(max(0.0, eviction_cost(p)) for p in n.pods.values() if reschedulable(p))
            for n in pool_nodes
        )
        if total_cost <= 0 or total_disruption <= 0:
            return True
        disruption_fraction = disruption / total_disruption
        if disruption_fraction <= 0:
            return True
        return (savings / total_cost) / disruption_fraction >= 1.0 / self.config.balanced_k

    # ----------------------------------------------------------------- validation

    def validate(
        self,
        command: Command,
        nodes: Sequence[Node],
        pending: Sequence[PodSpec],
        now_s: float,
        *,
        pdbs: Sequence[PDB] = (),
        unavailable: Collection[OfferingKey] = frozenset(),
    ) -> Command | None:
        """Re-check a command `validation_delay_s` after it was computed; None when it must be abandoned."""
        if command.method == "drift":
            return command
        notes: list[str] = []
        allowed_by_pdb = pdb_allowed(pdbs, nodes, pending)
        graceful = {c.name: c for c in self._candidates(nodes, now_s, pdbs, allowed_by_pdb, False, notes)}
        reason: DisruptionReason = "Empty" if command.method == "emptiness" else "Underutilized"
        budget = dict(self._budgets(nodes, now_s)[reason])
        before = dict(command.pod_sets)
        if command.method == "emptiness":
            keep = []
            for name in command.candidates:
                c = graceful.get(name)
                if c is None or not c.empty or budget.get(c.pool.name, 0) <= 0:
                    continue
                budget[c.pool.name] -= 1
                keep.append(c)
            if not keep:
                return None
            return replace(command, candidates=tuple(c.name for c in keep), pod_sets=_pod_sets(keep))
        current = []
        for name in command.candidates:
            c = graceful.get(name)
            if c is None or frozenset(p.id for p in c.reschedulable) != before.get(name):
                return None
            if budget.get(c.pool.name, 0) <= 0:
                return None
            budget[c.pool.name] -= 1
            current.append(c)
        ctx = self._context(nodes, pending, now_s, pdbs, unavailable)
        again = self._consolidate(ctx, current, command.method)
        if isinstance(again, str) or len(again.replacements) != len(command.replacements):
            return None
        if command.replacements and not set(command.replacements[0].instance_types) <= set(
            again.replacements[0].instance_types
        ):
            return None
        return command


@dataclass(frozen=True, slots=True)
class _Moving:
    """The pods candidates would move, against the free room of every possible destination."""

    requests: np.ndarray
    owner: np.ndarray
    """Per pod, the index of its candidate."""
    free: np.ndarray
    """Per destination node, its free room."""
    fits: np.ndarray
    """(pod, destination): the pod alone fits there."""
    room_total: np.ndarray
    columns: list[int]
    """Per candidate, its own column among the destinations (-1: not one)."""


@dataclass(frozen=True, slots=True)
class _Context:
    nodes: Sequence[Node]
    pending: Sequence[PodSpec]
    now_s: float
    pdbs: Sequence[PDB]
    unavailable: frozenset[OfferingKey]
    snapshot: Snapshot
    destinations: np.ndarray
    """Per snapshot node: may take a candidate's pods (initialized, outside its consolidateAfter window)."""
    vectors: dict[str, np.ndarray]
    """Pod requests as resource rows, filled in as the pass needs them."""


def _frontier(t: _Template, dims: tuple[int, ...]) -> np.ndarray:
    """The template's types no cheaper-or-equal type beats on every resource in `dims` (cached on it).

    Asking "is there a type cheaper than p with at least this much room" only
    needs these, which is what makes the consolidation pre-check cheap.
    """
    found = t.frontier.get(dims)
    if found is None:
        cands = t.candidates[np.argsort(t.min_price[t.candidates], kind="stable")]
        room = (t.index.allocatable[cands] - t.daemon[cands])[:, dims]
        keep: list[int] = []
        for i in range(cands.size):
            if keep and np.any(np.all(room[keep] >= room[i], axis=1)):
                continue
            keep.append(i)
        found = t.frontier[dims] = cands[keep]
    return found


def _allows_spot(reqs: Requirements) -> bool:
    ct = reqs.get(LABEL_CAPACITY_TYPE)
    return ct is None or ct.has("spot")


def _protected(node: Node, pool: NodePoolSpec | None, now_s: float) -> bool:
    return pool is not None and under_consolidate_after(node, pool, now_s)


def _pod_blocker(
    pods: Sequence[PodSpec], pdbs: Sequence[PDB], allowed_by_pdb: Mapping[str, int], now_s: float
) -> str | None:
    for pod in pods:
        if pod.do_not_disrupt_active(now_s):
            return f"pod {pod.id} has karpenter.sh/do-not-disrupt"
        matching = [pdb for pdb in pdbs if selects(pdb.selector, pod.labels)]
        if len(matching) > 1:
            return f"pod {pod.id} is selected by more than one PDB ({', '.join(p.name for p in matching)})"
        if matching and allowed_by_pdb.get(matching[0].name, 0) <= 0:
            return f"PDB {matching[0].name} allows no disruption of pod {pod.id}"
    return None


def _pod_sets(candidates: Iterable[Candidate]) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((c.name, frozenset(p.id for p in c.reschedulable)) for c in candidates)


def _by_savings(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Price per unit of disruption, descending; name breaks ties where upstream's sort is unstable."""
    return sorted(candidates, key=lambda c: (-c.savings_ratio, c.name))


def _interleave_pools(candidates: list[Candidate]) -> list[Candidate]:
    by_pool: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_pool.setdefault(c.pool.name, []).append(c)
    out = []
    for i in range(max((len(v) for v in by_pool.values()), default=0)):
        for group in by_pool.values():
            if i < len(group):
                out.append(group[i])
    return out


def _launch_prices(prov: Provisioner, plan: ClaimPlan, unavailable: frozenset[OfferingKey]) -> np.ndarray:
    """(option, zone, capacity type) prices of available offerings the plan allows."""
    index = prov.index_for(plan.nodepool)
    rows = np.array([index.position[n] for n in plan.instance_types], dtype=np.intp)
    return index.compatible_prices(plan.requirements, index.availability(unavailable))[rows]


def _worst_launch_price(prices: np.ndarray) -> np.ndarray:
    """Per option, the dearest offering of the capacity type it would launch as.

    Reserved beats spot beats on-demand (core cloudprovider Offerings.WorstLaunchPrice).
    """
    out = np.full(prices.shape[0], np.inf)
    for c in range(len(CAPACITY_TYPES)):
        cells = prices[:, :, c]
        finite = np.isfinite(cells)
        has = finite.any(axis=1) & np.isinf(out)
        worst = np.where(finite, cells, -np.inf).max(axis=1)
        out = np.where(has, worst, out)
    return out


def _cheaper_options(
    prov: Provisioner, plan: ClaimPlan, price: float, unavailable: frozenset[OfferingKey]
) -> ClaimPlan | str:
    prices = _launch_prices(prov, plan, unavailable)
    keep = _worst_launch_price(prices) < price
    names = tuple(n for n, k in zip(plan.instance_types, keep, strict=True) if k)
    if not names:
        return "Can't replace with a cheaper node"
    return replace(plan, instance_types=names)


def _only_compatible(prov: Provisioner, plan: ClaimPlan, unavailable: frozenset[OfferingKey]) -> ClaimPlan:
    prices = _launch_prices(prov, plan, unavailable)
    ok = np.isfinite(prices).any(axis=(1, 2))
    return replace(plan, instance_types=tuple(n for n, k in zip(plan.instance_types, ok, strict=True) if k))


def _cheapest_price(prov: Provisioner, plan: ClaimPlan, unavailable: frozenset[OfferingKey]) -> float:
    prices = _launch_prices(prov, plan, unavailable)
    return float(prices[0].min()) if prices.size else math.inf


def _narrow_to_spot(plan: ClaimPlan) -> ClaimPlan:
    reqs = plan.requirements.intersect(
        Requirements({LABEL_CAPACITY_TYPE: ValueSet(False, frozenset({"spot"}))})
    )
    return replace(plan, requirements=reqs)


def _without_same_type(
    prov: Provisioner, command: Command, batch: list[Candidate], unavailable: frozenset[OfferingKey]
) -> Command | str:
    """Multi-node must not launch a type it is removing unless cheaper than the cheapest such candidate."""
    plan = command.replacements[0]
    current: dict[str, float] = {}
    for c in batch:
        current[c.node.instance_type] = min(current.get(c.node.instance_type, math.inf), c.price)
    ceiling = min((current[n] for n in plan.instance_types if n in current), default=math.inf)
    if math.isinf(ceiling):
        return command
    cheaper = _cheaper_options(prov, plan, ceiling, unavailable)
    if isinstance(cheaper, str):
        return "replacement would be a type being removed; deleting fewer nodes is better"
    return replace(command, replacements=(cheaper,))
