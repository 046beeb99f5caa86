"""Where a workload's pods may run: the pod template's scheduling fields as the Karpenter model's PodSpec.

Requests alone do not decide packing: a toleration opens a tainted spot
pool, a zone spread forces a node per zone, a hostname anti-affinity a node
per pod. So the pod template's requests (with init containers and sidecars
counted as the scheduler counts them), tolerations, nodeSelector, node
affinity, topology spread, pod anti-affinity and host ports are read into a
PodSpec template the engine stamps pods from. For apps defined by a KRO
instance, the same fields are read from the Deployment template in the
ResourceGraphDefinition, with plain `${schema.<path>}` references filled from
the instance; a field that needs a real CEL expression is reported as
ignored. PodDisruptionBudgets (policy/v1) come from the same trees.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim.controllers.karpenter.types import (
    PDB,
    Operator,
    OwnerKind,
    PodAffinityTerm,
    PodSpec,
    Requirement,
    RequirementError,
    Resources,
    Toleration,
    TopologySpreadConstraint,
    WeightedRequirements,
)
from sim.errors import InputError
from sim.k8s.kro import RGD_KIND
from sim.k8s.kustomize import ManifestSet, Resource
from sim.k8s.nodepool import NORMALIZED_LABELS, go_duration_s
from sim.k8s.quantity import VALID_FORMS, QuantityError, parse_quantity
from sim.k8s.workload import WorkloadView
from sim.k8s.yamlsource import FieldPath, YamlDocument, parse_path

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
PDB_KIND = "PodDisruptionBudget"
PDB_API_VERSION = "policy/v1"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
"""Operators a pod's node affinity may use (core/v1 NodeSelectorOperator)."""

_MODELLED_POD_FIELDS = frozenset(
    {
        "containers",
        "initContainers",
        "nodeSelector",
        "affinity",
        "tolerations",
        "topologySpreadConstraints",
        # no effect on placement or capacity: read by the kubelet or the data plane, not by schedulers
        "terminationGracePeriodSeconds",
        "serviceAccountName",
        "securityContext",
        "volumes",
        "imagePullSecrets",
        "automountServiceAccountToken",
        "dnsPolicy",
        "restartPolicy",
        "enableServiceLinks",
    }
)
_REF = re.compile(r"\$\{schema\.([A-Za-z0-9_.\[\]]+)\}")
_ANY_EXPR = re.compile(r"\$\{")
_PERCENT = re.compile(r"^([0-9]+)%$")


class _Unresolved(Exception):
    """A KRO template value that needs a CEL expression evaluated."""


@dataclass(frozen=True)
class PodTemplate:
    """A workload's pods before they exist; stamp one with `dataclasses.replace(spec, id=..., created_s=...)`.

    `images` name the containers' images, so the engine can charge the cold
    image pull once per image and node.
    """

    spec: PodSpec
    images: tuple[str, ...]


def pod_template(resource: Resource, owner: str, warnings: list[str]) -> PodTemplate:
    """The pod template of a Deployment or StatefulSet (apps/v1)."""
    reader = _PodReader(resource.doc, ("spec", "template"), f"{resource.kind}/{resource.name}")
    kind: OwnerKind = "StatefulSet" if resource.kind == "StatefulSet" else "ReplicaSet"
    template = reader.read(owner, kind, requests=None)
    _report(reader, resource, warnings)
    return template


def pod_template_from_kro(
    instance: Resource, rgd: Resource | None, workload: WorkloadView, owner: str, warnings: list[str]
) -> PodTemplate:
    """A KRO app's pods: requests through the scenario's mapping, the rest from the RGD's Deployment."""
    requests = Resources(
        cpu_millicores=workload.cpu_request_millicores or 0.0,
        memory_mib=workload.memory_request_mib or 0.0,
        pods=1.0,
    )
    path = _rgd_deployment(rgd)
    if rgd is None or path is None:
        warnings.append(
            f"{instance.file}: {instance.kind}/{instance.name}: no ResourceGraphDefinition with a Deployment "
            "template in the tree; its pods are scheduled on requests alone (no tolerations, selectors or "
            "spread)"
        )
        return PodTemplate(
            PodSpec(id="", owner=owner, requests=requests, labels=dict(workload.labels)), images=()
        )

    base = (*path, "spec", "template")
    filled = YamlDocument(rgd.doc.file, rgd.doc.index, copy.deepcopy(rgd.doc.root), rgd.doc.base)
    unresolved: list[FieldPath] = []
    for sub in _KRO_FILLED:
        for concrete in _expand(filled, (*base, *sub)):
            _fill(filled, concrete, instance.doc, unresolved)
    reader = _PodReader(filled, base, f"{instance.kind}/{instance.name}")
    for where in unresolved:
        reader.ignored.append(f"{filled.field(where)} (a KRO expression capsim does not evaluate)")
    template = reader.read(owner, "ReplicaSet", requests=requests)
    _report(reader, rgd, warnings)
    return template


def load_pdbs(manifests: ManifestSet, warnings: list[str]) -> list[PDB]:
    """PodDisruptionBudgets (policy/v1) in the tree."""
    found = []
    for resource in manifests.find(PDB_KIND, group="policy"):
        if resource.api_version != PDB_API_VERSION:
            raise resource.doc.error(
                ("apiVersion",), f"{resource.api_version} is not served", valid=PDB_API_VERSION
            )
        pdb = _pdb(resource, warnings)
        if pdb is not None:
            found.append(pdb)
    return found


# --- the pod template ------------------------------------------------------------------------------


class _PodReader:
    def __init__(self, doc: YamlDocument, base: FieldPath, what: str) -> None:
        self.doc = doc
        self.base = base
        self.what = what
        self.ignored: list[str] = []

    def get(self, *path: str | int) -> Any:
        return self.doc.get((*self.base, *path))

    def error(self, path: FieldPath, message: str, valid: str | None = None) -> InputError:
        return self.doc.error((*self.base, *path), message, valid)

    def ignore(self, path: FieldPath, why: str) -> None:
        self.ignored.append(f"{self.doc.field((*self.base, *path))} ({why})")

    def read(self, owner: str, owner_kind: OwnerKind, requests: Resources | None) -> PodTemplate:
        spec = self.get("spec") or {}
        if not isinstance(spec, dict):
            raise self.error(("spec",), "a pod template spec must be a mapping")
        for key in spec:
            if key not in _MODELLED_POD_FIELDS:
                self.ignore(("spec", key), "not modelled")
        annotations = self.get("metadata", "annotations") or {}
        if requests is None:
            requests = self._requests()
        affinity = self.get("spec", "affinity") or {}
        required, preferred = self._node_affinity(affinity)
        return PodTemplate(
            PodSpec(
                id="",
                owner=owner,
                requests=requests,
                labels=self._string_map(("metadata", "labels")),
                node_selector={
                    NORMALIZED_LABELS.get(k, k): v
                    for k, v in self._string_map(("spec", "nodeSelector")).items()
                },
                required_affinity=required,
                preferred_affinity=preferred,
                tolerations=self._tolerations(),
                topology_spread=self._spread(),
                anti_affinity=self._anti_affinity(affinity),
                host_ports=self._host_ports(),
                do_not_disrupt_s=self._do_not_disrupt(annotations),
                owner_kind=owner_kind,
            ),
            images=tuple(
                str(c["image"])
                for c in self._list(("spec", "containers"))
                if isinstance(c, dict)
                and isinstance(c.get("image"), str)
                and not _ANY_EXPR.search(c["image"])
            ),
        )

    def _list(self, path: FieldPath) -> list[Any]:
        value = self.get(*path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, "must be a list")
        return value

    def _string_map(self, path: FieldPath) -> dict[str, str]:
        value = self.get(*path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, "must be a mapping of strings")
        return {str(k): str(v) for k, v in value.items()}

    # requests: max(sum of app containers and sidecars, the largest init step), as kube-scheduler sums them
    def _requests(self) -> Resources:
        app = Resources()
        for i, _ in enumerate(self._list(("spec", "containers"))):
            app = app + self._container_requests(("spec", "containers", i))
        sidecars = Resources()
        init_peak = Resources()
        for i, container in enumerate(self._list(("spec", "initContainers"))):
            own = self._container_requests(("spec", "initContainers", i))
            if isinstance(container, dict) and container.get("restartPolicy") == "Always":
                sidecars = sidecars + own
                init_peak = _max(init_peak, sidecars)
            else:
                init_peak = _max(init_peak, sidecars + own)
        return _max(app + sidecars, init_peak)

    def _container_requests(self, path: FieldPath) -> Resources:
        resources = self.get(*path, "resources") or {}
        requests = dict(resources.get("requests") or {})
        for key, value in (resources.get("limits") or {}).items():
            requests.setdefault(key, value)  # the API server defaults a missing request to its limit
        amounts: dict[str, float] = {}
        for key, value in requests.items():
            where = (
                *path,
                "resources",
                "requests" if key in (resources.get("requests") or {}) else "limits",
                key,
            )
            try:
                amount = parse_quantity(value)
            except QuantityError as exc:
                raise self.error(where, str(exc), valid=VALID_FORMS) from None
            if key == "cpu":
                amounts[key] = float(amount * 1000)
            elif key in ("memory", "ephemeral-storage"):
                amounts[key] = float(amount / 2**20)
            else:
                amounts[str(key)] = float(amount)
        return Resources(
            cpu_millicores=amounts.pop("cpu", 0.0),
            memory_mib=amounts.pop("memory", 0.0),
            ephemeral_storage_mib=amounts.pop("ephemeral-storage", 0.0),
            extended=amounts,
        )

    def _requirements(self, path: FieldPath, expressions: Any) -> tuple[Requirement, ...]:
        found = []
        for i, expr in enumerate(expressions or []):
            where = (*path, i)
            key = str(expr.get("key"))
            operator = str(expr.get("operator"))
            if operator not in OPERATORS:
                raise self.error(
                    (*where, "operator"), f"unknown operator {operator!r}", valid=", ".join(OPERATORS)
                )
            try:
                found.append(
                    Requirement(
                        NORMALIZED_LABELS.get(key, key),
                        Operator(operator),
                        tuple(str(v) for v in expr.get("values") or ()),
                    )
                )
            except RequirementError as exc:
                raise self.error(where, str(exc)) from None
        return tuple(found)

    def _node_affinity(
        self, affinity: Mapping[str, Any]
    ) -> tuple[tuple[tuple[Requirement, ...], ...], tuple[WeightedRequirements, ...]]:
        base: FieldPath = ("spec", "affinity", "nodeAffinity")
        node = affinity.get("nodeAffinity") or {}
        required = []
        req_path = (*base, "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
        for i, term in enumerate(
            (node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
        ):
            if term.get("matchFields"):
                self.ignore((*req_path, i, "matchFields"), "only matchExpressions on labels are modelled")
            required.append(
                self._requirements((*req_path, i, "matchExpressions"), term.get("matchExpressions"))
            )
        preferred = []
        pref_path = (*base, "preferredDuringSchedulingIgnoredDuringExecution")
        for i, term in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            reqs = self._requirements(
                (*pref_path, i, "preference", "matchExpressions"),
                (term.get("preference") or {}).get("matchExpressions"),
            )
            preferred.append(WeightedRequirements(int(term.get("weight", 1)), reqs))
        if affinity.get("podAffinity"):
            self.ignore(("spec", "affinity", "podAffinity"), "pod affinity is not modelled")
        return tuple(required), tuple(preferred)

    def _selector(self, path: FieldPath, selector: Any) -> dict[str, str] | None:
        """matchLabels of a label selector; None (reported) when it needs matchExpressions."""
        selector = selector or {}
        if selector.get("matchExpressions"):
            self.ignore(path, "label selectors with matchExpressions are not modelled")
            return None
        return {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}

    def _anti_affinity(self, affinity: Mapping[str, Any]) -> tuple[PodAffinityTerm, ...]:
        base: FieldPath = ("spec", "affinity", "podAntiAffinity")
        anti = affinity.get("podAntiAffinity") or {}
        terms = []
        for i, term in enumerate(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            where = (*base, "requiredDuringSchedulingIgnoredDuringExecution", i)
            selector = self._selector((*where, "labelSelector"), term.get("labelSelector"))
            if selector is not None:
                terms.append(PodAffinityTerm(str(term.get("topologyKey")), selector))
        for i, weighted in enumerate(anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            where = (*base, "preferredDuringSchedulingIgnoredDuringExecution", i, "podAffinityTerm")
            term = weighted.get("podAffinityTerm") or {}
            selector = self._selector((*where, "labelSelector"), term.get("labelSelector"))
            if selector is not None:
                terms.append(
                    PodAffinityTerm(str(term.get("topologyKey")), selector, int(weighted.get("weight", 1)))
                )
        return tuple(terms)

    def _tolerations(self) -> tuple[Toleration, ...]:
        found = []
        for i, item in enumerate(self._list(("spec", "tolerations"))):
            where: FieldPath = ("spec", "tolerations", i)
            operator = item.get("operator", "Equal")
            if operator not in ("Equal", "Exists"):
                raise self.error(
                    (*where, "operator"), f"unknown operator {operator!r}", valid="Equal, Exists"
                )
            effect = item.get("effect") or None
            if effect not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise self.error(
                    (*where, "effect"),
                    f"unknown effect {effect!r}",
                    valid="NoSchedule, PreferNoSchedule, NoExecute",
                )
            if "tolerationSeconds" in item:
                self.ignore((*where, "tolerationSeconds"), "pods are evicted by drain, not by taint timeouts")
            found.append(Toleration(item.get("key"), operator, str(item.get("value", "")), effect))
        return tuple(found)

    def _spread(self) -> tuple[TopologySpreadConstraint, ...]:
        found = []
        for i, item in enumerate(self._list(("spec", "topologySpreadConstraints"))):
            where: FieldPath = ("spec", "topologySpreadConstraints", i)
            for key in ("matchLabelKeys", "nodeAffinityPolicy", "nodeTaintsPolicy"):
                if key in item:
                    self.ignore((*where, key), "not modelled")
            unsatisfiable = item.get("whenUnsatisfiable")
            if unsatisfiable not in ("DoNotSchedule", "ScheduleAnyway"):
                raise self.error(
                    (*where, "whenUnsatisfiable"),
                    f"whenUnsatisfiable {unsatisfiable!r}",
                    valid="DoNotSchedule, ScheduleAnyway",
                )
            skew = item.get("maxSkew")
            if isinstance(skew, bool) or not isinstance(skew, int) or skew < 1:
                raise self.error((*where, "maxSkew"), f"maxSkew must be a whole number >= 1, got {skew!r}")
            selector = self._selector((*where, "labelSelector"), item.get("labelSelector"))
            if selector is None:
                continue
            found.append(
                TopologySpreadConstraint(
                    topology_key=str(item.get("topologyKey")),
                    max_skew=skew,
                    when_unsatisfiable=unsatisfiable,
                    label_selector=selector,
                    min_domains=item.get("minDomains"),
                )
            )
        return tuple(found)

    def _host_ports(self) -> tuple[int, ...]:
        ports = []
        for container in self._list(("spec", "containers")):
            for port in (container or {}).get("ports") or []:
                if port.get("hostPort"):
                    ports.append(int(port["hostPort"]))
        return tuple(ports)

    def _do_not_disrupt(self, annotations: Mapping[str, Any]) -> float | None:
        value = annotations.get(DO_NOT_DISRUPT)
        if value is None:
            return None
        text = str(value)
        if text == "true":
            return math.inf
        try:
            return go_duration_s(text)
        except ValueError:
            raise self.error(
                ("metadata", "annotations", DO_NOT_DISRUPT),
                f'{text!r} is neither "true" nor a duration',
                valid='"true" or a duration such as "1h"',
            ) from None


def _max(a: Resources, b: Resources) -> Resources:
    extended = {k: max(a.extended.get(k, 0.0), b.extended.get(k, 0.0)) for k in {*a.extended, *b.extended}}
    return Resources(
        max(a.cpu_millicores, b.cpu_millicores),
        max(a.memory_mib, b.memory_mib),
        max(a.pods, b.pods),
        max(a.ephemeral_storage_mib, b.ephemeral_storage_mib),
        extended,
    )


def _report(reader: _PodReader, resource: Resource, warnings: list[str]) -> None:
    if reader.ignored:
        message = f"{resource.file}: {reader.what}: ignored pod field(s) {', '.join(reader.ignored)}"
        if message not in warnings:
            warnings.append(message)


# --- KRO -------------------------------------------------------------------------------------------


def _rgd_deployment(rgd: Resource | None) -> FieldPath | None:
    if rgd is None or rgd.kind != RGD_KIND:
        return None
    for i, item in enumerate(rgd.doc.get(("spec", "resources")) or []):
        template = (item or {}).get("template") or {}
        if template.get("kind") == "Deployment":
            return ("spec", "resources", i, "template")
    return None


_KRO_FILLED: tuple[FieldPath, ...] = (
    ("metadata",),
    ("spec", "nodeSelector"),
    ("spec", "affinity"),
    ("spec", "tolerations"),
    ("spec", "topologySpreadConstraints"),
    ("spec", "containers", "*", "image"),
    ("spec", "containers", "*", "ports", "*", "hostPort"),
)
"""The parts of a KRO Deployment template the pod reader uses (requests come from the scenario's mapping)."""


def _expand(doc: YamlDocument, path: FieldPath) -> list[FieldPath]:
    """Concrete paths for a pattern whose "*" parts stand for every list index."""
    if "*" not in path:
        return [path]
    at = path.index("*")
    items = doc.get(path[:at])
    if not isinstance(items, list):
        return []
    return [p for i in range(len(items)) for p in _expand(doc, (*path[:at], i, *path[at + 1 :]))]


def _fill(doc: YamlDocument, path: FieldPath, instance: YamlDocument, unresolved: list[FieldPath]) -> None:
    """Substitute `${schema...}` references under `path` in place; drop (and list) what cannot be filled."""
    node = doc.get(path)
    parent = doc.get(path[:-1])
    if isinstance(node, str) and isinstance(parent, dict | list):
        _fill_entry(doc, parent, path[-1], path, instance, unresolved)
    elif isinstance(node, dict):
        for key in list(node):
            _fill_entry(doc, node, key, (*path, key), instance, unresolved)
    elif isinstance(node, list):
        for i in reversed(range(len(node))):
            _fill_entry(doc, node, i, (*path, i), instance, unresolved)


def _fill_entry(
    doc: YamlDocument,
    container: Any,
    key: Any,
    path: FieldPath,
    instance: YamlDocument,
    unresolved: list[FieldPath],
) -> None:
    value = container[key]
    if isinstance(value, dict | list):
        _fill(doc, path, instance, unresolved)
        return
    try:
        container[key] = _substitute(value, instance)
    except _Unresolved:
        unresolved.append(path)
        del container[key]


def _substitute(value: Any, instance: YamlDocument) -> Any:
    """Fill `${schema.<path>}` from the instance; any other expression raises _Unresolved."""
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REF.fullmatch(value)
    if whole is not None:
        return _lookup(instance, whole.group(1))
    text = _REF.sub(lambda m: str(_lookup(instance, m.group(1))), value)
    if _ANY_EXPR.search(text):
        raise _Unresolved(value)
    return text


def _lookup(instance: YamlDocument, path: str) -> Any:
    try:
        found = instance.get(parse_path(path))
    except ValueError:
        raise _Unresolved(path) from None
    if found is None:
        raise _Unresolved(path)
    return found


# --- PodDisruptionBudgets --------------------------------------------------------------------------


def _pdb(resource: Resource, warnings: list[str]) -> PDB | None:
    doc = resource.doc
    spec = doc.get(("spec",)) or {}
    ignored = []
    for key in spec:
        if key not in ("selector", "minAvailable", "maxUnavailable"):
            ignored.append(f"spec.{key}")
    selector = spec.get("selector") or {}
    if selector.get("matchExpressions"):
        ignored.append("spec.selector.matchExpressions")
    values = {
        key: _int_or_percent(doc, ("spec", key), spec.get(key)) for key in ("minAvailable", "maxUnavailable")
    }
    if values["minAvailable"] is not None and values["maxUnavailable"] is not None:
        raise doc.error(("spec", "maxUnavailable"), "minAvailable and maxUnavailable cannot both be set")
    where = f"{resource.file}: {PDB_KIND}/{resource.name}"
    if ignored:
        warnings.append(f"{where}: ignored field(s) {', '.join(ignored)}")
    if values["minAvailable"] is None and values["maxUnavailable"] is None:
        warnings.append(f"{where}: sets neither minAvailable nor maxUnavailable, so it limits nothing")
        return None
    match_labels = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    if not match_labels:
        warnings.append(f"{where}: no spec.selector.matchLabels; capsim cannot tell which pods it covers")
        return None
    return PDB(
        name=resource.name,
        selector=match_labels,
        max_unavailable=values["maxUnavailable"],
        min_available=values["minAvailable"],
    )


def _int_or_percent(doc: YamlDocument, path: FieldPath, value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match is not None and int(match.group(1)) <= 100:
            return value
        if value.isdigit():
            return int(value)
    raise doc.error(path, f"{value!r} is not a count or a percentage", valid='an integer >= 0 or "N%"')
