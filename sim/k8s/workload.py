"""The workload a ScaledObject scales, reduced to what the simulator needs.

A WorkloadView is the same whether the app is a plain Deployment or a KRO
instance (sim.k8s.kro), so the engine never cares how a platform defines its
apps. Requests and limits are per pod, summed over the containers, because
the scheduler and the HPA's utilisation both work per pod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.k8s.kustomize import Resource
from sim.k8s.quantity import VALID_FORMS, QuantityError, cpu_millicores, memory_mib
from sim.k8s.yamlsource import FieldPath, YamlDocument

WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Converter = Callable[[object], float]


@dataclass(frozen=True)
class WorkloadView:
    """One scalable workload.

    `replicas` is None when the manifest leaves the count to the autoscaler.
    A limit is None when any container has none: that container, and so the
    pod, can use whatever CPU the node has spare. `labels` are the pod's
    labels (what Services and ServiceMonitors select).
    """

    kind: str
    name: str
    namespace: str | None
    replicas: int | None
    cpu_request_millicores: float | None
    cpu_limit_millicores: float | None
    memory_request_mib: float | None
    memory_limit_mib: float | None
    file: Path
    labels: dict[str, str] = field(default_factory=dict)


def workload_from_resource(resource: Resource) -> WorkloadView:
    """Read a Deployment or StatefulSet manifest (apps/v1)."""
    doc = resource.doc
    replicas = doc.get(("spec", "replicas"))
    if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0):
        raise doc.error(("spec", "replicas"), f"replicas must be a whole number >= 0, got {replicas!r}")
    containers = doc.get(("spec", "template", "spec", "containers"))
    if not isinstance(containers, list) or not containers:
        raise doc.error(
            ("spec", "template", "spec", "containers"), "a pod template needs at least one container"
        )
    labels = doc.get(("spec", "template", "metadata", "labels")) or {}
    if not isinstance(labels, dict):
        raise doc.error(("spec", "template", "metadata", "labels"), "labels must be a mapping")
    totals = _container_totals(doc, containers)
    return WorkloadView(
        kind=resource.kind,
        name=resource.name,
        namespace=resource.namespace,
        replicas=replicas,
        labels={str(k): str(v) for k, v in labels.items()},
        file=resource.file,
        **totals,
    )


def _container_totals(doc: YamlDocument, containers: list[Any]) -> dict[str, float | None]:
    """Per-pod requests and limits. A request left unset defaults to the limit, as the API server does."""
    cpu_req: list[float | None] = []
    cpu_lim: list[float | None] = []
    mem_req: list[float | None] = []
    mem_lim: list[float | None] = []
    for i, container in enumerate(containers):
        base: FieldPath = ("spec", "template", "spec", "containers", i, "resources")
        if not isinstance(container, dict):
            raise doc.error(base[:-1], "a container must be a mapping")
        cpu_limit = read_quantity(doc, (*base, "limits", "cpu"), cpu_millicores)
        mem_limit = read_quantity(doc, (*base, "limits", "memory"), memory_mib)
        cpu_request = read_quantity(doc, (*base, "requests", "cpu"), cpu_millicores)
        mem_request = read_quantity(doc, (*base, "requests", "memory"), memory_mib)
        cpu_req.append(cpu_request if cpu_request is not None else cpu_limit)
        mem_req.append(mem_request if mem_request is not None else mem_limit)
        cpu_lim.append(cpu_limit)
        mem_lim.append(mem_limit)
    return {
        "cpu_request_millicores": _sum_set(cpu_req),
        "memory_request_mib": _sum_set(mem_req),
        "cpu_limit_millicores": _sum_all(cpu_lim),
        "memory_limit_mib": _sum_all(mem_lim),
    }


def read_quantity(doc: YamlDocument, path: FieldPath, convert: Converter) -> float | None:
    """The quantity at `path` converted by `convert` (cpu_millicores or memory_mib); None when unset."""
    return convert_quantity(doc, path, doc.get(path), convert)


def convert_quantity(doc: YamlDocument, path: FieldPath, value: object, convert: Converter) -> float | None:
    """Convert a quantity read from `path` of `doc` (which is where a bad one is reported)."""
    if value is None:
        return None
    try:
        return convert(value)
    except QuantityError as exc:
        raise doc.error(path, str(exc), valid=VALID_FORMS) from None


def _sum_set(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _sum_all(values: list[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)
