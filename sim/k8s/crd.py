"""Validate custom resources against the real CRD schemas carried in sim/data/crds/.

A manifest that the API server would reject must not be simulated as if it
worked, so custom resources get the checks `kubectl apply` gives them: the
CRD's OpenAPI v3 schema (types, enums, minimums, required fields), and
unknown fields rejected as kubectl's strict field validation does. CEL rules
(`x-kubernetes-validations`) are not evaluated here; the typed loaders check
the few that matter (e.g. minReplicaCount <= maxReplicaCount).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from ruamel.yaml import YAML

from sim.k8s.kustomize import Resource
from sim.k8s.yamlsource import FieldPath

_CRD_DIR = "data/crds"


@cache
def _schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, kind, version) -> openAPIV3Schema, for every CRD in the package."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    yaml = YAML(typ="safe")
    for entry in resources.files("sim").joinpath(_CRD_DIR).iterdir():
        if not entry.name.endswith(".yaml"):
            continue
        crd = yaml.load(entry.read_text(encoding="utf-8"))
        spec = crd["spec"]
        for version in spec["versions"]:
            found[(spec["group"], spec["names"]["kind"], version["name"])] = version["schema"][
                "openAPIV3Schema"
            ]
    return found


def known_versions(group: str, kind: str) -> list[str]:
    return sorted(v for g, k, v in _schemas() if (g, k) == (group, kind))


def schema_for(resource: Resource) -> dict[str, Any] | None:
    group, _, version = resource.api_version.rpartition("/")
    return _schemas().get((group, resource.kind, version))


def validate_resource(resource: Resource) -> None:
    """Raise InputError at the first violation of the resource's CRD schema (file, field path, line).

    The caller decides which kinds must have a schema; a kind capsim carries no CRD for passes.
    """
    schema = schema_for(resource)
    if schema is None:
        group, _, version = resource.api_version.rpartition("/")
        versions = known_versions(group, resource.kind)
        if versions:
            raise resource.doc.error(
                ("apiVersion",),
                f"{resource.kind} has no version {version!r}",
                valid=", ".join(f"{group}/{v}" for v in versions),
            )
        return
    instance = _drop_nulls(resource.doc.plain())
    unknown = next(_unknown_fields(instance, schema, ()), None)
    if unknown is not None:
        path, allowed = unknown
        raise resource.doc.error(
            path, "unknown field (the API server rejects it)", valid="one of " + ", ".join(allowed)
        )
    error = best_match(jsonschema.Draft4Validator(schema).iter_errors(instance))
    if error is not None:
        raise resource.doc.error(tuple(error.absolute_path), _message(error), valid=_valid(error))


def _drop_nulls(node: Any) -> Any:
    """The API server prunes null values of non-nullable fields before validating; so do we."""
    if isinstance(node, dict):
        return {k: _drop_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_drop_nulls(v) for v in node]
    return node


def _unknown_fields(
    node: Any, schema: dict[str, Any], path: FieldPath
) -> Iterator[tuple[FieldPath, list[str]]]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(node, dict):
        properties: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in node.items():
            if key in properties:
                yield from _unknown_fields(value, properties[key], (*path, key))
            elif isinstance(extra, dict):
                yield from _unknown_fields(value, extra, (*path, key))
            elif properties and extra is None:
                yield (*path, key), sorted(properties)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(node):
            yield from _unknown_fields(item, schema["items"], (*path, i))


def _message(error: ValidationError) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    return error.message


def _valid(error: ValidationError) -> str | None:
    expected = error.validator_value
    match error.validator:
        case "type":
            return f"a value of type {expected}"
        case "enum":
            return ", ".join(str(v) for v in expected)
        case "minimum":
            return f">= {expected}"
        case "maximum":
            return f"<= {expected}"
        case "minLength":
            return f"a string of at least {expected} character(s)"
        case "minItems":
            return f"at least {expected} item(s)"
        case "pattern":
            return f"a string matching {expected}"
    return None
