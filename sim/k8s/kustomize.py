"""Read a GitOps tree the way `kustomize build` would, for the features capsim supports.

There is no kustomize binary to lean on, so the supported subset is explicit
and applied in kustomize's order: `resources` (files and directories, nested
to any depth; `bases` is the old spelling), `components` (kind: Component),
then the transformers `patchesStrategicMerge`, `patches` (strategic-merge or
JSON 6902, from a file or inline, with target selectors), `namespace`,
`namePrefix`/`nameSuffix`, `patchesJson6902` and `replicas`.

Fields that cannot change anything capsim simulates or tunes (images, labels
and annotations, ConfigMap/Secret generators, build options) are skipped with
one warning per file. Fields that could rewrite arbitrary values or need a
renderer capsim does not have (replacements, vars, Helm charts, plugins,
transformer configurations, OpenAPI overrides) are refused with an InputError
naming the kustomization and the field, so no number is ever computed from a
manifest that differs from what would be deployed.

Objects that a patch or `replicas` touched carry a `TracedDocument` whose
every value knows the file and node that set it; the manifest writer edits
that node. Untouched objects keep their original document.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.k8s.patches import (
    Origin,
    Traced,
    apply_json6902,
    list_merge_keys,
    node_at,
    plain,
    set_at,
    strategic_merge,
    trace_document,
    traced_document,
)
from sim.k8s.yamlsource import FieldPath, YamlDocument, load_documents, load_mapping

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
APPLIED_FIELDS = (
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "patchesStrategicMerge",
    "patches",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "patchesJson6902",
    "replicas",
)
# Skipped with a warning: none of these changes a field capsim reads or writes.
IGNORED_FIELDS = (
    "images",
    "labels",
    "commonLabels",
    "commonAnnotations",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "buildMetadata",
    "sortOptions",
)
# Refused: each can change any field (or needs a renderer capsim lacks), so a simulation would be wrong.
REFUSED_FIELDS = {
    "replacements": "copies values into arbitrary fields",
    "vars": "substitutes values into arbitrary fields",
    "helmCharts": "needs Helm to render",
    "helmGlobals": "needs Helm to render",
    "helmChartInflationGenerator": "needs Helm to render",
    "generators": "runs generator plugins",
    "transformers": "runs transformer plugins",
    "validators": "runs validator plugins",
    "configurations": "changes how kustomize's transformers rewrite fields",
    "crds": "changes how kustomize's transformers rewrite fields",
    "openapi": "changes how strategic-merge patches merge lists",
}
_REMOTE_PREFIXES = ("http://", "https://", "git@", "ssh://", "github.com/", "gitlab.com/", "bitbucket.org/")
_REPLICA_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"})
# namePrefix/nameSuffix leave these names alone, as kustomize does.
_UNPREFIXED_KINDS = frozenset({"CustomResourceDefinition", "APIService", "Namespace"})

# The kustomize namespace transformer leaves cluster-scoped objects alone.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ResourceGraphDefinition",
        "NodePool",
        "EC2NodeClass",
        "NodeClaim",
        "ClusterTriggerAuthentication",
    }
)


@dataclass(frozen=True)
class Resource:
    """One Kubernetes object from the tree; `namespace` is the effective one after kustomize's transformer."""

    doc: YamlDocument
    api_version: str
    kind: str
    name: str
    namespace: str | None

    @property
    def file(self) -> Path:
        return self.doc.file

    @property
    def group(self) -> str:
        """The API group ("" for the core group), which is what identifies a kind together with its name."""
        return self.api_version.rpartition("/")[0]

    def describe(self) -> str:
        return f"{self.kind}/{self.name} ({self.file})"


@dataclass
class ManifestSet:
    resources: list[Resource] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def find(self, kind: str, name: str | None = None, group: str | None = None) -> list[Resource]:
        return [
            r
            for r in self.resources
            if r.kind == kind and (name is None or r.name == name) and (group is None or r.group == group)
        ]

    def extend(self, other: ManifestSet) -> None:
        self.resources.extend(other.resources)
        self.files.extend(f for f in other.files if f not in self.files)
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)


def kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


class TreeReader:
    """File contents, with planned edits standing in for what is on disk.

    The manifest writer builds the tree again from its planned texts (new
    patch files included) to check that only the requested fields change
    before it writes anything.
    """

    def __init__(self, overrides: Mapping[Path, str] | None = None) -> None:
        self._texts = {_key(path): text for path, text in (overrides or {}).items()}

    def is_file(self, path: Path) -> bool:
        return _key(path) in self._texts or path.is_file()

    def exists(self, path: Path) -> bool:
        return _key(path) in self._texts or path.exists()

    def documents(self, path: Path) -> list[YamlDocument]:
        return load_documents(path, self._texts.get(_key(path)))

    def mapping(self, path: Path) -> YamlDocument:
        return load_mapping(path, self._texts.get(_key(path)))


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def load_manifests(paths: Iterable[Path], *, overrides: Mapping[Path, str] | None = None) -> ManifestSet:
    """Load files and kustomization directories into one set; an object defined twice is an error.

    `overrides` maps file paths to text that replaces (or, for new files, provides) their content.
    """
    reader = TreeReader(overrides)
    build = _Build()
    for path in paths:
        build.extend(_load_path(path, (), reader))
    result = build.manifests()
    _check_unique(result.resources)
    return result


@dataclass
class _Entry:
    """An object being built; `ids` holds every (name, namespace) it has had, the current one last."""

    resource: Resource
    tree: Traced | None = None
    ids: list[tuple[str, str | None]] = field(default_factory=list)

    def current_tree(self) -> Traced:
        return self.tree if self.tree is not None else trace_document(self.resource.doc)

    def rename(self, name: str, namespace: str | None) -> None:
        if (name, namespace) != (self.resource.name, self.resource.namespace):
            self.resource = replace(self.resource, name=name, namespace=namespace)
            self.ids.append((name, namespace))


@dataclass
class _Build:
    entries: list[_Entry] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add_file(self, path: Path) -> None:
        if path not in self.files:
            self.files.append(path)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def extend(self, other: _Build) -> None:
        self.entries.extend(other.entries)
        for path in other.files:
            self.add_file(path)
        for message in other.warnings:
            self.warn(message)

    def manifests(self) -> ManifestSet:
        resources = [
            e.resource if e.tree is None else replace(e.resource, doc=traced_document(e.resource.doc, e.tree))
            for e in self.entries
        ]
        return ManifestSet(resources, list(self.files), list(self.warnings))


def _load_path(path: Path, stack: tuple[Path, ...], reader: TreeReader) -> _Build:
    if path.is_dir():
        kfile = kustomization_file(path)
        if kfile is None:
            raise InputError(
                "directory has no kustomization file",
                file=path,
                valid=f"a directory with one of {', '.join(KUSTOMIZATION_FILES)}, or a YAML file",
            )
        return _load_kustomization(kfile, stack, reader)
    if path.name in KUSTOMIZATION_FILES:
        return _load_kustomization(path, stack, reader)
    return _load_file(path, reader)


def _load_file(path: Path, reader: TreeReader) -> _Build:
    result = _Build(files=[path])
    for doc in reader.documents(path):
        resource = resource_from_document(doc)
        result.entries.append(_Entry(resource, ids=[(resource.name, resource.namespace)]))
    return result


def resource_from_document(doc: YamlDocument) -> Resource:
    """A document as a Kubernetes object; InputError when it lacks apiVersion, kind or metadata.name."""
    if not isinstance(doc.root, dict):
        raise doc.error(
            (), "expected a Kubernetes object (a mapping)", valid="apiVersion, kind, metadata, ..."
        )
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get((key,)), str) or not doc.get((key,)):
            raise doc.error((key,), f"every Kubernetes object needs a string {key}")
    name = doc.get(("metadata", "name"))
    if not isinstance(name, str) or not name:
        raise doc.error(("metadata", "name"), "every Kubernetes object needs metadata.name")
    namespace = doc.get(("metadata", "namespace"))
    return Resource(
        doc=doc,
        api_version=str(doc.get(("apiVersion",))),
        kind=str(doc.get(("kind",))),
        name=str(name),
        namespace=str(namespace) if namespace is not None else None,
    )


def _load_kustomization(
    kfile: Path, stack: tuple[Path, ...], reader: TreeReader, into: _Build | None = None
) -> _Build:
    """Build one kustomization; a component (`into` given) adds to and transforms its parent's objects."""
    directory = kfile.parent.resolve()
    if directory in stack:
        cycle = " -> ".join(str(p) for p in (*stack, directory))
        raise InputError(f"kustomization includes itself: {cycle}", file=kfile)
    doc = reader.mapping(kfile)
    kind = doc.get(("kind",))
    if into is not None and kind != "Component":
        raise doc.error(
            ("kind",), "a directory listed under components must hold a Component", valid="Component"
        )
    if into is None and kind == "Component":
        raise doc.error(("kind",), "a Component can only be listed under components, not as a resource")
    result = into if into is not None else _Build()
    result.add_file(kfile)
    _check_fields(doc, kfile, result)
    inner = (*stack, directory)
    for key in ("resources", "bases"):
        for _, target in _local_paths(doc, key, result):
            result.extend(_load_path(target, inner, reader))
    for i, target in _local_paths(doc, "components", result):
        component = kustomization_file(target) if target.is_dir() else None
        if component is None:
            raise doc.error(("components", i), f"{target} is not a directory with a kustomization file")
        _load_kustomization(component, inner, reader, into=result)
    _transform(doc, kfile, result, reader)
    return result


def _check_fields(doc: YamlDocument, kfile: Path, result: _Build) -> None:
    ignored = []
    for raw in doc.root:
        key = str(raw)
        if key in APPLIED_FIELDS:
            continue
        if key in IGNORED_FIELDS:
            ignored.append(key)
        elif key in REFUSED_FIELDS:
            raise doc.error(
                (key,),
                f"kustomization field {key} is not supported: it {REFUSED_FIELDS[key]}",
                valid=", ".join(APPLIED_FIELDS[3:]),
            )
        else:
            raise doc.error(
                (key,), "unknown kustomization field", valid=", ".join((*APPLIED_FIELDS, *IGNORED_FIELDS))
            )
    if ignored:
        result.warn(
            f"{kfile}: ignored kustomization field(s) {', '.join(ignored)} "
            "(they change no field capsim simulates or tunes)"
        )


def _list(doc: YamlDocument, key: str, what: str) -> list[Any]:
    entries = doc.get((key,))
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise doc.error((key,), f"{key} must be a list of {what}")
    return list(entries)


def _local_paths(doc: YamlDocument, key: str, result: _Build) -> Iterable[tuple[int, Path]]:
    for i, entry in enumerate(_list(doc, key, "paths")):
        if not isinstance(entry, str) or not entry:
            raise doc.error((key, i), "expected a path (string)")
        if entry.startswith(_REMOTE_PREFIXES) or "?ref=" in entry:
            result.warn(
                f"{doc.file}: {key}[{i}]: remote resource {entry} skipped (capsim reads local files only)"
            )
            continue
        target = Path(os.path.normpath(doc.file.parent / entry))
        if not target.exists():
            raise doc.error((key, i), f"{entry} does not exist (looked for {target})")
        yield i, target


# --- transformers, in kustomize's order ---------------------------------------------------------


def _transform(doc: YamlDocument, kfile: Path, result: _Build, reader: TreeReader) -> None:
    for i, entry in enumerate(_list(doc, "patchesStrategicMerge", "patch files or inline patches")):
        if not isinstance(entry, str) or not entry.strip():
            raise doc.error(("patchesStrategicMerge", i), "expected a patch file path or an inline patch")
        inline = "\n" in entry.strip() or ":" in entry
        patches = _patch_documents(doc, ("patchesStrategicMerge", i), entry, inline, reader, result)
        for patch in patches:
            _patch_by_id(result, patch)
    for i, entry in enumerate(_list(doc, "patches", "patch entries")):
        _patch_entry(doc, ("patches", i), entry, reader, result, json_only=False)
    _namespace(doc, result)
    _prefix_suffix(doc, result)
    for i, entry in enumerate(_list(doc, "patchesJson6902", "patch entries")):
        _patch_entry(doc, ("patchesJson6902", i), entry, reader, result, json_only=True)
    _replicas(doc, kfile, result)


def _patch_documents(
    doc: YamlDocument, where: FieldPath, source: str, inline: bool, reader: TreeReader, result: _Build
) -> list[Traced]:
    """The documents of one patch, traced to the patch file or to the string inside the kustomization."""
    if not inline:
        target = Path(os.path.normpath(doc.file.parent / source))
        if not reader.is_file(target):
            raise doc.error(where, f"patch file {source} does not exist (looked for {target})")
        result.add_file(target)
        docs = reader.documents(target)
        if not docs:
            raise doc.error(where, f"patch file {source} is empty")
        return [trace_document(d) for d in docs]
    try:
        docs = load_documents(doc.file, source)
    except InputError as exc:
        raise doc.error(where, f"inline patch is not valid YAML: {exc.message}") from None
    if not docs:
        raise doc.error(where, "inline patch is empty")
    key_line = doc.line_of(where) or 0
    return [trace_document(d, inline=where, line_offset=key_line) for d in docs]


def _patch_entry(
    doc: YamlDocument, where: FieldPath, entry: Any, reader: TreeReader, result: _Build, json_only: bool
) -> None:
    if not isinstance(entry, dict):
        raise doc.error(where, "expected a mapping with path or patch (and target)")
    allowed = {"path", "patch", "target"} | (set() if json_only else {"options"})
    for key in entry:
        if key not in allowed:
            raise doc.error((*where, key), "unknown field", valid=", ".join(sorted(allowed)))
    options = entry.get("options") or {}
    if any(options.get(k) for k in ("allowNameChange", "allowKindChange")):
        raise doc.error((*where, "options"), "patches that rename or re-kind objects are not supported")
    if ("path" in entry) == ("patch" in entry):
        raise doc.error(where, "give exactly one of path or patch")
    source_key = "path" if "path" in entry else "patch"
    source = entry[source_key]
    if not isinstance(source, str) or not source.strip():
        raise doc.error((*where, source_key), "expected a non-empty string")
    patches = _patch_documents(doc, (*where, source_key), source, source_key == "patch", reader, result)
    target = entry.get("target")
    if target is not None and not isinstance(target, dict):
        raise doc.error(
            (*where, "target"), "target must be a mapping", valid="group, version, kind, name, ..."
        )
    is_json = len(patches) == 1 and isinstance(patches[0].value, list)
    if json_only and not is_json:
        raise doc.error((*where, source_key), "a patchesJson6902 entry must hold a list of operations")
    if is_json or target is not None:
        if target is None:
            raise doc.error(where, "a JSON 6902 patch needs a target")
        if len(patches) > 1:
            raise doc.error(where, "a patch with a target must hold a single document")
        selected = _select(doc, (*where, "target"), target, result)
        if not selected:
            result.warn(f"{doc.file}: {format_where(where)}: the target matches no object; patch not applied")
        for e in selected:
            _apply(result, e, patches[0], is_json)
        return
    for patch in patches:
        _patch_by_id(result, patch)


def format_where(where: FieldPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(where))


def _apply(result: _Build, entry: _Entry, patch: Traced, is_json: bool) -> None:
    r = entry.resource
    if is_json:
        entry.tree = apply_json6902(entry.current_tree(), patch)
        return
    merged = strategic_merge(entry.current_tree(), patch, list_merge_keys(r.api_version, r.kind))
    if merged is None:
        result.entries.remove(entry)
    else:
        entry.tree = merged


def _effective_namespace(kind: str, namespace: str | None) -> str:
    if kind in CLUSTER_SCOPED_KINDS:
        return ""
    return namespace or "default"


def _patch_by_id(result: _Build, patch: Traced) -> None:
    """A strategic-merge patch without a target applies to the one object its own identity names."""
    data = plain(patch)
    if not isinstance(data, dict):
        raise _patch_error(patch, (), "a strategic-merge patch must be a mapping")
    api_version, kind = data.get("apiVersion"), data.get("kind")
    metadata: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    name = metadata.get("name")
    if not (isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str)):
        raise _patch_error(
            patch,
            (),
            "a patch without a target must name its object",
            valid="apiVersion, kind, metadata.name",
        )
    namespace = _effective_namespace(kind, metadata.get("namespace"))
    matches = [
        e
        for e in result.entries
        if e.resource.api_version == api_version
        and e.resource.kind == kind
        and any(n == name and _effective_namespace(kind, ns) == namespace for n, ns in e.ids)
    ]
    if len(matches) != 1:
        others = [e.resource.name for e in result.entries if e.resource.kind == kind]
        problem = "no object" if not matches else f"{len(matches)} objects"
        raise _patch_error(
            patch,
            ("metadata", "name"),
            f"{problem} in the kustomization match{'es' if not matches else ''} {kind}/{name}",
            valid=", ".join(f"{kind}/{n}" for n in others) or f"no {kind} in the resources",
        )
    _apply(result, matches[0], patch, is_json=False)


def _patch_error(patch: Traced, path: FieldPath, message: str, valid: str | None = None) -> InputError:
    node = node_at(patch, path)[0]
    o = node.origin
    where = (*o.inline, *o.path) if o.inline else o.path
    return InputError(message, file=o.file, field=format_where(where) or None, line=o.line, valid=valid)


_SELECTOR_FIELDS = ("group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")


def _select(doc: YamlDocument, where: FieldPath, target: dict[str, Any], result: _Build) -> list[_Entry]:
    """Objects a patch target selects, as kustomize matches them: anchored regexes, old or new names."""
    for key, value in target.items():
        if key not in _SELECTOR_FIELDS:
            raise doc.error((*where, key), "unknown target field", valid=", ".join(_SELECTOR_FIELDS))
        if not isinstance(value, str):
            raise doc.error((*where, key), "expected a string")
    patterns: dict[str, re.Pattern[str]] = {}
    for key in ("group", "version", "kind", "name", "namespace"):
        if target.get(key):
            try:
                patterns[key] = re.compile(f"^(?:{target[key]})$")
            except re.error as exc:
                raise doc.error((*where, key), f"not a valid regular expression: {exc}") from None
    labels = _parse_selector(doc, (*where, "labelSelector"), target.get("labelSelector"))
    annotations = _parse_selector(doc, (*where, "annotationSelector"), target.get("annotationSelector"))

    def ok(key: str, *values: str) -> bool:
        return key not in patterns or any(patterns[key].match(v) for v in values)

    selected = []
    for e in result.entries:
        r = e.resource
        first_name, first_ns = e.ids[0] if e.ids else (r.name, r.namespace)
        version = r.api_version.rpartition("/")[2]
        if not (ok("group", r.group) and ok("version", version) and ok("kind", r.kind)):
            continue
        if not ok("name", first_name, r.name):
            continue
        if not ok(
            "namespace", _effective_namespace(r.kind, first_ns), _effective_namespace(r.kind, r.namespace)
        ):
            continue
        meta = plain(node_at(e.current_tree(), ("metadata",))[0]) or {}
        if not (_matches(labels, meta.get("labels")) and _matches(annotations, meta.get("annotations"))):
            continue
        selected.append(e)
    return selected


Requirement = tuple[str, str, frozenset[str]]  # key, operator (=, !=, in, notin, exists, !), values

_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^\s=!,()]+)"
    r"|(?P<key>[^\s=!,()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _parse_selector(doc: YamlDocument, where: FieldPath, text: str | None) -> list[Requirement]:
    if not text:
        return []
    parts = re.split(r",(?![^(]*\))", text)
    requirements: list[Requirement] = []
    for part in parts:
        m = _REQUIREMENT.match(part)
        if m is None:
            raise doc.error(
                where, f"cannot parse selector requirement {part.strip()!r}", valid="a=b,c!=d,e in (f,g),h"
            )
        if m["nkey"]:
            requirements.append((m["nkey"], "!", frozenset()))
        elif m["op"]:
            requirements.append((m["key"], "!=" if m["op"] == "!=" else "=", frozenset({m["value"]})))
        elif m["setop"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append((m["key"], m["setop"], values))
        else:
            requirements.append((m["key"], "exists", frozenset()))
    return requirements


def _matches(requirements: list[Requirement], labels: Any) -> bool:
    labels = labels if isinstance(labels, dict) else {}
    for key, op, values in requirements:
        present = key in labels
        value = str(labels.get(key))
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
        if op in ("=", "in") and (not present or value not in values):
            return False
        if op in ("!=", "notin") and present and value in values:
            return False
    return True


def _namespace(doc: YamlDocument, result: _Build) -> None:
    namespace = doc.get(("namespace",))
    if namespace is None:
        return
    if not isinstance(namespace, str) or not namespace:
        raise doc.error(("namespace",), "namespace must be a non-empty string")
    for e in result.entries:
        if e.resource.kind not in CLUSTER_SCOPED_KINDS:
            e.rename(e.resource.name, namespace)


def _prefix_suffix(doc: YamlDocument, result: _Build) -> None:
    affixes = []
    for key in ("namePrefix", "nameSuffix"):
        value = doc.get((key,))
        if value is not None and not isinstance(value, str):
            raise doc.error((key,), f"{key} must be a string")
        affixes.append(value or "")
    prefix, suffix = affixes
    if not prefix and not suffix:
        return
    for e in result.entries:
        if e.resource.kind not in _UNPREFIXED_KINDS:
            e.rename(prefix + e.resource.name + suffix, e.resource.namespace)


def _replicas(doc: YamlDocument, kfile: Path, result: _Build) -> None:
    for i, item in enumerate(_list(doc, "replicas", "{name, count} entries")):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise doc.error(("replicas", i), "expected name and count", valid="name: <object>, count: <int>")
        count = item.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise doc.error(("replicas", i, "count"), f"count must be a whole number >= 0, got {count!r}")
        path = ("replicas", i, "count")
        value = Traced(Origin(kfile, doc.index, path, doc.line_of(path)), count)
        matched = [
            e
            for e in result.entries
            if e.resource.kind in _REPLICA_KINDS and any(n == item["name"] for n, _ in e.ids)
        ]
        if not matched:
            result.warn(f"{kfile}: replicas[{i}]: no Deployment/StatefulSet/ReplicaSet named {item['name']}")
        for e in matched:
            tree = e.current_tree()
            spec, depth = node_at(tree, ("spec",))
            if depth == 1 and isinstance(spec.value, dict):
                e.tree = set_at(tree, ("spec", "replicas"), value)
            else:
                e.tree = set_at(tree, ("spec",), Traced(value.origin, {"replicas": value}))


def _check_unique(resources: list[Resource]) -> None:
    seen: dict[tuple[str, str, str, str | None], Resource] = {}
    for r in resources:
        key = (r.group, r.kind, r.name, r.namespace)
        if key in seen:
            raise r.doc.error(
                ("metadata", "name"),
                f"{r.kind}/{r.name} is defined twice; the first is in {seen[key].file}",
                valid="each object once per tree, as kustomize requires",
            )
        seen[key] = r
