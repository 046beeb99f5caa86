"""Apps defined as KRO instances (kro.run): a small field mapping turns one into a WorkloadView.

KRO-based platforms hide the Deployment behind a ResourceGraphDefinition
(RGD): teams write an instance such as `kind: WebApp` with a few fields and
KRO renders the Deployment. Evaluating the RGD's CEL templates would mean
re-implementing KRO, so the scenario says instead which instance field holds
the replica count, the requests and the limits, and which one names the
Deployment the RGD creates (that is what the ScaledObject targets). When the
RGD is in the tree, the mapping is checked against its schema (a typo in a
path is an error, not a silent "no request") and the schema's defaults fill
fields the instance leaves out, as KRO would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from sim.k8s.kustomize import ManifestSet, Resource
from sim.k8s.quantity import cpu_millicores, memory_mib
from sim.k8s.workload import Converter, WorkloadView, convert_quantity
from sim.k8s.yamlsource import FieldPath, YamlDocument, parse_path

RGD_KIND = "ResourceGraphDefinition"
_DEFAULT_MARKER = re.compile(r"""\bdefault=("(?:[^"\\]|\\.)*"|'[^']*'|\S+)""")


def _valid_path(text: str) -> str:
    parse_path(text)  # its ValueError is reported by pydantic at the mapping's field
    return text


PathText = Annotated[str, AfterValidator(_valid_path)]


class KroMapping(BaseModel):
    """Which instance fields play which part. Paths are dotted, with [i] for list items."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, description="The instance kind the RGD defines, e.g. WebApp.")
    api_version: str = Field(
        default="kro.run/v1alpha1", description="The instance apiVersion (kro.run/<version>)."
    )
    name_field: PathText = Field(
        default="metadata.name",
        description="Instance field holding the name of the Deployment the RGD creates.",
    )
    replicas: PathText | None = None
    cpu_request: PathText | None = None
    cpu_limit: PathText | None = None
    memory_request: PathText | None = None
    memory_limit: PathText | None = None


@dataclass(frozen=True)
class _Value:
    """A mapped value and where it was written (the instance, or a default in the RGD's schema)."""

    value: Any
    doc: YamlDocument
    path: FieldPath


def find_rgd(manifests: ManifestSet, kind: str) -> Resource | None:
    """The ResourceGraphDefinition in the tree whose schema defines `kind`."""
    for rgd in manifests.find(RGD_KIND):
        if rgd.doc.get(("spec", "schema", "kind")) == kind:
            return rgd
    return None


def instances(manifests: ManifestSet, mapping: KroMapping) -> list[Resource]:
    return [r for r in manifests.find(mapping.kind) if r.api_version == mapping.api_version]


def deployment_name(instance: Resource, mapping: KroMapping) -> str | None:
    """The name of the Deployment KRO renders for this instance, read from `name_field`."""
    value = instance.doc.get(parse_path(mapping.name_field))
    return value if isinstance(value, str) and value else None


def workload_from_kro(
    instance: Resource, mapping: KroMapping, rgd: Resource | None, mapping_doc: YamlDocument
) -> WorkloadView:
    """Read one instance through the mapping; `mapping_doc` is the scenario's `kro:` block, for errors."""
    name = deployment_name(instance, mapping)
    if name is None:
        raise instance.doc.error(
            parse_path(mapping.name_field),
            f"kro.name_field ({mapping_doc.file}:{mapping_doc.line_of(('name_field',))}) points here, "
            "but there is no name",
            valid="a string naming the Deployment the ResourceGraphDefinition creates",
        )
    found = {
        key: _lookup(instance, rgd, key, getattr(mapping, key), mapping_doc)
        for key in ("replicas", "cpu_request", "cpu_limit", "memory_request", "memory_limit")
    }
    replicas = found["replicas"]
    if replicas is not None and (
        isinstance(replicas.value, bool) or not isinstance(replicas.value, int) or replicas.value < 0
    ):
        raise replicas.doc.error(
            replicas.path, f"replicas must be a whole number >= 0, got {replicas.value!r}"
        )
    return WorkloadView(
        kind=instance.kind,
        name=name,
        namespace=instance.namespace,
        replicas=replicas.value if replicas is not None else None,
        cpu_request_millicores=_quantity(found["cpu_request"], cpu_millicores),
        cpu_limit_millicores=_quantity(found["cpu_limit"], cpu_millicores),
        memory_request_mib=_quantity(found["memory_request"], memory_mib),
        memory_limit_mib=_quantity(found["memory_limit"], memory_mib),
        file=instance.file,
        labels=_labels(instance),
    )


def _labels(instance: Resource) -> dict[str, str]:
    labels = instance.doc.get(("metadata", "labels")) or {}
    if not isinstance(labels, dict):
        raise instance.doc.error(("metadata", "labels"), "labels must be a mapping")
    return {str(k): str(v) for k, v in labels.items()}


def _quantity(found: _Value | None, convert: Converter) -> float | None:
    return None if found is None else convert_quantity(found.doc, found.path, found.value, convert)


def _lookup(
    instance: Resource, rgd: Resource | None, key: str, text: str | None, mapping_doc: YamlDocument
) -> _Value | None:
    """The instance's value at the mapped path, else the RGD schema's default, else None (unset)."""
    if text is None:
        return None
    path = parse_path(text)
    value = instance.doc.get(path)
    if value is not None:
        return _Value(value, instance.doc, path)
    if rgd is None:
        raise mapping_doc.error(
            (key,),
            f"{instance.describe()} has no field {text}, and no ResourceGraphDefinition for "
            f"{instance.kind} is in the tree to give a default",
            valid="a path that exists in the instance",
        )
    schema_path: FieldPath = ("spec", "schema", *path)
    declared = rgd.doc.get(schema_path)
    if declared is None:
        raise mapping_doc.error(
            (key,),
            f"{text} is not a field of {instance.kind} (ResourceGraphDefinition {rgd.name} in {rgd.file})",
            valid="a path declared under the RGD's spec.schema, e.g. spec.replicas",
        )
    default = _default_of(declared, rgd.doc, schema_path)
    return None if default is None else _Value(default, rgd.doc, schema_path)


def _default_of(declared: Any, doc: YamlDocument, path: FieldPath) -> Any:
    """The `default=` marker of a SimpleSchema declaration such as `integer | default=2`."""
    if not isinstance(declared, str):
        return None
    match = _DEFAULT_MARKER.search(declared)
    if match is None:
        return None
    raw = match.group(1)
    type_name = declared.split("|", 1)[0].strip()
    try:
        if raw.startswith('"'):
            return json.loads(raw)
        if raw.startswith("'"):
            return raw[1:-1]
        if type_name == "integer":
            return int(raw)
        if type_name in ("number", "float"):
            return float(raw)
    except ValueError as exc:
        raise doc.error(
            path, f"cannot read the default in {declared!r}", valid='default=2, default="250m"'
        ) from exc
    return raw
