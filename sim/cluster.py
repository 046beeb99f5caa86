"""A scenario's cluster: NodePools over an instance catalog, the pods' scheduling needs, and the settings.

`load_cluster` turns the scenario's `cluster:` block and the manifests it
names into plain data the Karpenter model and the engine read: NodePoolSpecs,
InstanceTypes per EC2NodeClass (allocatable depends on the node class),
PodSpec templates per service, PDBs, DaemonSet and background pods, and the
cloud-side settings (zones, prices, launch latency, interruption rates).
Everything is checked here, so a run never starts on a pool no instance
type can satisfy or a price file with a typo.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sim.catalog.instancetypes import instance_types
from sim.catalog.pricing import (
    PricingSettings,
    default_interruption_rate_per_h,
    load_price_file,
    most_specific,
)
from sim.catalog.table import Catalog, CatalogEntry, load_bundled_catalog, load_catalog
from sim.controllers.karpenter.config import (
    BatchConfig,
    DisruptionConfig,
    KarpenterConfig,
    LaunchConfig,
    ProvisioningConfig,
)
from sim.controllers.karpenter.types import (
    LABEL_NODEPOOL,
    PDB,
    InstanceType,
    NodePoolSpec,
    Operator,
    PodSpec,
    Requirement,
    Resources,
    Toleration,
)
from sim.errors import InputError
from sim.k8s.kro import find_rgd
from sim.k8s.kustomize import ManifestSet, Resource, load_manifests
from sim.k8s.nodepool import NodePoolView, check_satisfiable, load_node_classes, load_nodepools
from sim.k8s.scheduling import PodTemplate, load_pdbs, pod_template, pod_template_from_kro
from sim.k8s.workload import WORKLOAD_KINDS, WorkloadView
from sim.k8s.yamlsource import FieldPath, SourceLocation, YamlDocument
from sim.workload.service import Dist

if TYPE_CHECKING:
    from sim.scenario import BackgroundWorkloadModel, ClusterModel, DaemonSetModel, LoadedService


@dataclass(frozen=True)
class BackgroundWorkload:
    """Another tenant's pods on one NodePool; `replicas[i]` holds from `times_s[i]` until the next time."""

    name: str
    nodepool: str
    pod: PodSpec
    times_s: tuple[float, ...]
    replicas: tuple[int, ...]

    def replicas_at(self, t_s: float) -> int:
        i = bisect.bisect_right(self.times_s, t_s) - 1
        return self.replicas[i] if i >= 0 else 0


@dataclass(frozen=True)
class LoadedCluster:
    """Everything about nodes a run needs, resolved.

    `instance_types` is keyed by EC2NodeClass name (a pool's `node_class`);
    `pods` by service name. `interruption_rate_per_h` is the spot
    interruption rate of every instance type, `insufficient_capacity` the
    probability that one launch attempt of each type is refused (0 for every
    type by default). `node_pool_sources` says where each NodePool is
    written, for explanations and the manifest writer.
    """

    node_pools: tuple[NodePoolSpec, ...]
    instance_types: Mapping[str, tuple[InstanceType, ...]]
    pods: Mapping[str, PodTemplate]
    pdbs: tuple[PDB, ...]
    daemonsets: tuple[PodSpec, ...]
    background: tuple[BackgroundWorkload, ...]
    region: str
    zones: tuple[str, ...]
    node_launch: Dist
    cold_image_pull: Dist
    interruption_rate_per_h: Mapping[str, float]
    insufficient_capacity: Mapping[str, float]
    karpenter: KarpenterConfig
    catalog: str
    node_pool_sources: Mapping[str, SourceLocation] = field(default_factory=dict)

    def instance_types_for(self, pool: NodePoolSpec) -> tuple[InstanceType, ...]:
        return self.instance_types[pool.node_class]


def load_cluster(
    model: ClusterModel,
    doc: YamlDocument,
    gitops_root: Path,
    services: Sequence[LoadedService],
    inputs: list[Path],
    warnings: list[str],
) -> LoadedCluster:
    """Resolve the `cluster:` block (`doc` is that block); files read and warnings are appended."""
    base_dir = doc.file.parent
    manifests = _manifests(model, doc, gitops_root)
    inputs.extend(f for f in manifests.files if f not in inputs)
    _extend_once(warnings, manifests.warnings)
    node_classes = load_node_classes(manifests, warnings)
    pools = load_nodepools(manifests, node_classes, warnings)
    if not pools:
        raise doc.error(("nodepools",), "no NodePool (karpenter.sh/v1) in these manifests")
    catalog = _catalog(model, doc, base_dir)
    inputs.extend(f for f in catalog.files if f not in inputs)
    pricing = _pricing(model, doc, base_dir, catalog, inputs)
    types = {
        name: instance_types(catalog, view.settings, model.zones, pricing, model.region)
        for name, view in node_classes.items()
    }
    for pool in pools:
        check_satisfiable(pool, types[pool.spec.node_class])
    pool_names = [p.spec.name for p in pools]
    pdbs = _pdbs(manifests, services, warnings)
    return LoadedCluster(
        node_pools=tuple(p.spec for p in pools),
        instance_types=types,
        pods={svc.name: _service_pods(svc, warnings) for svc in services},
        pdbs=tuple(pdbs),
        daemonsets=tuple(_daemonset(doc, i, ds, pool_names) for i, ds in enumerate(model.daemonsets)),
        background=tuple(
            _background(doc, i, bg, pools, base_dir, inputs) for i, bg in enumerate(model.background)
        ),
        region=model.region,
        zones=tuple(model.zones),
        node_launch=model.node_launch.to_dist(),
        cold_image_pull=model.cold_image_pull.to_dist(),
        interruption_rate_per_h=_per_type(
            model.spot_interruption_rate, catalog, default_interruption_rate_per_h
        ),
        insufficient_capacity=_per_type(model.insufficient_capacity, catalog, lambda _: 0.0),
        karpenter=_karpenter(model),
        catalog=catalog.description,
        node_pool_sources={p.spec.name: p.resource.doc.locate(()) for p in pools},
    )


def _extend_once(warnings: list[str], new: Sequence[str]) -> None:
    warnings.extend(w for w in new if w not in warnings)


def _manifests(model: ClusterModel, doc: YamlDocument, gitops_root: Path) -> ManifestSet:
    entries = [model.nodepools] if isinstance(model.nodepools, str) else list(model.nodepools)
    paths: list[Path] = []
    for j, entry in enumerate(entries):
        where: FieldPath = ("nodepools",) if isinstance(model.nodepools, str) else ("nodepools", j)
        target = gitops_root / entry
        if not target.exists():
            raise doc.error(
                where,
                f"{target} does not exist",
                valid="a kustomization directory or a manifest file, relative to gitops_root",
            )
        paths.append(target)
    return load_manifests(paths)


def _catalog(model: ClusterModel, doc: YamlDocument, base_dir: Path) -> Catalog:
    if model.catalog is None:
        return load_bundled_catalog()
    path = base_dir / model.catalog
    if not path.is_file():
        raise doc.error(
            ("catalog",), f"catalog file {path} does not exist", valid="a CSV file, relative to the scenario"
        )
    return load_catalog(path)


def _pricing(
    model: ClusterModel, doc: YamlDocument, base_dir: Path, catalog: Catalog, inputs: list[Path]
) -> PricingSettings:
    overrides = {}
    if model.prices is not None:
        path = base_dir / model.prices
        if not path.is_file():
            raise doc.error(
                ("prices",), f"price file {path} does not exist", valid="a CSV file, relative to the scenario"
            )
        overrides = load_price_file(path, catalog.by_name(), model.zones)
        inputs.append(path)
    spot = model.spot_discount
    return PricingSettings(
        spot_discount={"default": spot} if isinstance(spot, float | int) else dict(spot or {}),
        commitment_discount=model.commitment_discount,
        overrides=overrides,
    )


def _per_type(
    given: float | Mapping[str, float] | None,
    catalog: Catalog,
    default: Callable[[CatalogEntry], float],
) -> dict[str, float]:
    """A value for every instance type from one number or a type/family/category/default map."""
    table = {"default": given} if isinstance(given, float | int) else dict(given or {})
    values = {}
    for entry in catalog.entries:
        found = most_specific(entry, table)
        values[entry.name] = found if found is not None else default(entry)
    return values


def _karpenter(model: ClusterModel) -> KarpenterConfig:
    k = model.karpenter
    return KarpenterConfig(
        batch=BatchConfig(idle_s=k.batch_idle_duration, max_s=k.batch_max_duration),
        provisioning=ProvisioningConfig(
            preference_policy=k.preference_policy, min_values_policy=k.min_values_policy
        ),
        launch=LaunchConfig(spot_allocation=k.spot_allocation),
        disruption=DisruptionConfig(spot_to_spot=k.spot_to_spot_consolidation),
    )


# --- pods --------------------------------------------------------------------------------------------


def _service_pods(svc: LoadedService, warnings: list[str]) -> PodTemplate:
    workload = svc.workload
    resource = _workload_resource(svc.manifests, workload)
    if resource is not None:
        return pod_template(resource, svc.name, warnings)
    instance = _kro_instance(svc.manifests, workload)
    rgd = find_rgd(svc.manifests, workload.kind)
    return pod_template_from_kro(instance, rgd, workload, svc.name, warnings)


def _workload_resource(manifests: ManifestSet, workload: WorkloadView) -> Resource | None:
    if workload.kind not in WORKLOAD_KINDS:
        return None
    for r in manifests.find(workload.kind, workload.name):
        if r.namespace == workload.namespace and r.file == workload.file:
            return r
    return None


def _kro_instance(manifests: ManifestSet, workload: WorkloadView) -> Resource:
    """The KRO instance a WorkloadView was read from (same kind, file and namespace; by name if several)."""
    found = [
        r
        for r in manifests.find(workload.kind)
        if r.file == workload.file and r.namespace == workload.namespace
    ]
    named = [r for r in found if r.name == workload.name]
    return (named or found)[0]


def _pdbs(manifests: ManifestSet, services: Sequence[LoadedService], warnings: list[str]) -> list[PDB]:
    seen: set[tuple[Path, str]] = set()
    found = []
    for tree in (manifests, *(svc.manifests for svc in services)):
        for pdb_resource in tree.find("PodDisruptionBudget", group="policy"):
            key = (pdb_resource.file, pdb_resource.name)
            if key in seen:
                continue
            seen.add(key)
            found.extend(load_pdbs(ManifestSet(resources=[pdb_resource]), warnings))
    return found


def _daemonset(doc: YamlDocument, i: int, model: DaemonSetModel, pools: Sequence[str]) -> PodSpec:
    affinity: tuple[tuple[Requirement, ...], ...] = ()
    if model.nodepools is not None:
        for j, name in enumerate(model.nodepools):
            if name not in pools:
                raise doc.error(
                    ("daemonsets", i, "nodepools", j), f"no NodePool named {name!r}", valid=", ".join(pools)
                )
        affinity = ((Requirement(LABEL_NODEPOOL, Operator.IN, tuple(model.nodepools)),),)
    return PodSpec(
        id=f"daemonset/{model.name}",
        owner=model.name,
        requests=Resources(cpu_millicores=model.cpu, memory_mib=model.memory, pods=1.0),
        required_affinity=affinity,
        tolerations=(Toleration(operator="Exists"),),  # node agents tolerate every taint
        owner_kind="DaemonSet",
    )


def _background(
    doc: YamlDocument,
    i: int,
    model: BackgroundWorkloadModel,
    pools: Sequence[NodePoolView],
    base_dir: Path,
    inputs: list[Path],
) -> BackgroundWorkload:
    by_name = {p.spec.name: p.spec for p in pools}
    pool = by_name.get(model.nodepool)
    if pool is None:
        raise doc.error(
            ("background", i, "nodepool"), f"no NodePool named {model.nodepool!r}", valid=", ".join(by_name)
        )
    pod = PodSpec(
        id=f"background/{model.name}",
        owner=model.name,
        requests=Resources(cpu_millicores=model.cpu, memory_mib=model.memory, pods=1.0),
        labels={"app.kubernetes.io/name": model.name},
        node_selector={LABEL_NODEPOOL: pool.name},
        tolerations=tuple(Toleration(t.key, "Exists", effect=t.effect) for t in pool.taints),
    )
    times: tuple[float, ...] = (0.0,)
    counts: tuple[int, ...] = (model.replicas or 0,)
    if model.replicas is None:
        series = model.replica_series
        assert series is not None  # the model validator requires one of the two
        path = base_dir / series.path
        if not path.is_file():
            raise doc.error(
                ("background", i, "replica_series", "path"),
                f"replica series {path} does not exist",
                valid="a CSV file, relative to the scenario",
            )
        times, counts = load_replica_series(path, series.time_column, series.replicas_column)
        inputs.append(path)
    return BackgroundWorkload(model.name, pool.name, pod, times, counts)


def load_replica_series(
    path: Path, time_column: str, replicas_column: str
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """A step function of replica counts; InputError at the line and column of a bad cell."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in (time_column, replicas_column):
            if column not in columns:
                raise InputError(
                    f"missing column {column!r}",
                    file=path,
                    line=1,
                    valid=", ".join(columns) or "a header row",
                )
        times: list[float] = []
        counts: list[int] = []
        for row in reader:
            line = reader.line_num
            try:
                t = float(row[time_column])
            except (TypeError, ValueError):
                t = math.nan
            if not (math.isfinite(t) and t >= 0) or (times and t <= times[-1]):
                raise InputError(
                    f"{row[time_column]!r} is not a time after the previous row's",
                    file=path,
                    field=time_column,
                    line=line,
                    valid="seconds since the start of the run, >= 0 and increasing",
                )
            text = (row[replicas_column] or "").strip()
            if not text.isdigit():
                raise InputError(
                    f"{text!r} is not a replica count",
                    file=path,
                    field=replicas_column,
                    line=line,
                    valid="an integer >= 0",
                )
            times.append(t)
            counts.append(int(text))
    if not times:
        raise InputError("the replica series has no rows", file=path, line=1)
    return tuple(times), tuple(counts)
