"""Who else lives on a NodePool: the test before a tuning run may propose to change it.

A NodePool is usually shared. Consolidating sooner, moving to spot or
narrowing instance families looks free in a scenario that simulates only one
of the pool's tenants, and is not: the others' pods are disrupted too, and
their requests change the packing the cost estimate assumed. So a NodePool
change becomes part of a recommendation only when the scenario *covers* the
pool: every workload that can land on it is either simulated or declared as
background load. Otherwise it is advice, with the uncovered tenants named.

A pool's possible tenants are the Deployments, StatefulSets and KRO app
instances found anywhere under the scenario's GitOps root whose pod template
the pool can take (node selector and tolerations against the pool's labels,
requirements and taints), plus any the tune block declares as living outside
the tree (`tune.node_pools.<pool>.other_tenants`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

_WORKLOAD_KINDS = ("Deployment", "StatefulSet")
_NODEPOOL_LABEL = "karpenter.sh/nodepool"
_WELL_KNOWN_DOMAINS = ("kubernetes.io", "k8s.io", "karpenter.sh", "karpenter.k8s.aws")


@dataclass(frozen=True)
class Workload:
    """A pod template's placement constraints, as far as tenancy needs them."""

    name: str
    namespace: str | None
    kind: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Coverage:
    pool: str
    tenants: tuple[str, ...]
    uncovered: tuple[str, ...]
    unreadable: tuple[str, ...] = ()  # files that may hold tenants nobody could read (Helm templates)

    @property
    def covered(self) -> bool:
        return not self.uncovered and not self.unreadable

    def risk(self) -> str:
        if self.covered:
            return ""
        parts = []
        if self.uncovered:
            parts.append(
                f"NodePool {self.pool} also hosts {', '.join(self.uncovered)}, which this scenario neither "
                "simulates nor declares as background load"
            )
        if self.unreadable:
            parts.append(
                f"{', '.join(self.unreadable)} could not be read as YAML and may define more tenants of "
                f"NodePool {self.pool}"
            )
        return (
            "; ".join(parts) + ": the change would disrupt their pods too (consolidation, spot "
            "interruptions, a narrower instance choice), and their requests change the packing this "
            "cost estimate assumed. Add them to the scenario (as services or background workloads) "
            "to have the change proposed."
        )


def coverage(
    pool: Any,
    tenants: Iterable[Workload],
    simulated: Iterable[str],
    background: Iterable[str],
    other_tenants: Sequence[str] = (),
    unreadable: Sequence[str] = (),
) -> Coverage:
    """Which of the pool's possible tenants the scenario does not account for."""
    known = set(simulated) | set(background)
    names = sorted({w.name for w in tenants if can_land_on(w, pool)} | set(other_tenants))
    return Coverage(pool.name, tuple(names), tuple(n for n in names if n not in known), tuple(unreadable))


def pool_coverages(scn: Any) -> dict[str, Coverage]:
    """Coverage of each of the scenario's NodePools (empty without a cluster)."""
    cluster = getattr(scn, "cluster", None)
    if cluster is None:
        return {}
    tree, unreadable = scan_tree(scn.gitops_root)
    simulated = {s.name for s in scn.services} | {s.workload.name for s in scn.services}
    out = {}
    for pool in cluster.node_pools:
        cfg = scn.tune.node_pools.get(pool.name)
        background = {w.name for w in cluster.background if w.nodepool == pool.name}
        others = cfg.other_tenants if cfg else ()
        out[pool.name] = coverage(pool, tree, simulated, background, others, unreadable)
    return out


def can_land_on(workload: Workload, pool: Any) -> bool:
    """Whether the pool can launch a node this workload's pods schedule on (selector and taints)."""
    for key, value in workload.node_selector.items():
        if not _selector_allows(pool, key, str(value)):
            return False
    return all(
        any(_tolerates(t, taint) for t in workload.tolerations)
        for taint in pool.taints
        if taint.effect in ("NoSchedule", "NoExecute")
    )


def _selector_allows(pool: Any, key: str, value: str) -> bool:
    if key == _NODEPOOL_LABEL:
        return value == pool.name
    if key in pool.labels:
        return str(pool.labels[key]) == value
    for req in pool.requirements:
        if req.key != key:
            continue
        op = str(req.operator)
        if op == "In" and value not in req.values:
            return False
        if op == "NotIn" and value in req.values:
            return False
        if op == "DoesNotExist":
            return False
    domain = key.split("/", 1)[0] if "/" in key else ""
    well_known = any(domain == d or domain.endswith("." + d) for d in _WELL_KNOWN_DOMAINS)
    return well_known or any(r.key == key for r in pool.requirements)


def _tolerates(toleration: Mapping[str, Any], taint: Any) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key")
    if toleration.get("operator", "Equal") == "Exists":
        return key in (None, "") or key == taint.key
    return key == taint.key and str(toleration.get("value", "")) == str(taint.value)


def scan_tree(root: Path) -> tuple[list[Workload], list[str]]:
    """Every Deployment, StatefulSet and KRO app instance in the YAML files under `root`, and the
    files that could not be read.

    An unreadable file (a Helm template, say) may define tenants nobody can
    see, so it counts against coverage: tenancy is a safety check.
    """
    yaml = YAML(typ="safe")
    found: list[Workload] = []
    unreadable: list[str] = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        try:
            docs = list(yaml.load_all(path.read_text(encoding="utf-8")))
        except (YAMLError, UnicodeDecodeError, OSError):
            unreadable.append(str(path.relative_to(root)))
            continue
        for doc in docs:
            workload = _workload(doc, path)
            if workload is not None:
                found.append(workload)
    return found, unreadable


def _workload(doc: Any, path: Path) -> Workload | None:
    if not isinstance(doc, dict):
        return None
    kind, api = doc.get("kind"), str(doc.get("apiVersion", ""))
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str):
        return None
    namespace = meta.get("namespace")
    if kind in _WORKLOAD_KINDS and api.startswith("apps/"):
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        selector = pod.get("nodeSelector") or {}
        tolerations = tuple(t for t in pod.get("tolerations") or () if isinstance(t, dict))
        return Workload(name, namespace, kind, dict(selector), tolerations, str(path))
    if api.startswith("kro.run/") and kind not in ("ResourceGraphDefinition", None):
        # The RGD decides placement; without evaluating it the instance may land anywhere.
        return Workload(name, namespace, str(kind), source=str(path))
    return None
