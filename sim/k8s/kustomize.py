"""Read a GitOps tree the way `kustomize build` would, for the features capsim supports.

There is no kustomize binary to lean on, so the supported subset is explicit:
`resources` (files and directories, nested to any depth; `bases` is the old
spelling of the same thing) and `namespace`. Every other kustomization field
(patches, generators, labels, images, ...) is reported once per file in
`ManifestSet.warnings`, so a user sees that a patch did not take part in the
simulation instead of getting numbers from a silently different manifest.
Documents are kept unmodified, with their positions, so later tools can edit
them in place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sim.errors import InputError
from sim.k8s.yamlsource import YamlDocument, load_documents, load_mapping

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
APPLIED_FIELDS = ("apiVersion", "kind", "resources", "bases", "namespace")
_REMOTE_PREFIXES = ("http://", "https://", "git@", "ssh://", "github.com/", "gitlab.com/", "bitbucket.org/")

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


def load_manifests(paths: Iterable[Path]) -> ManifestSet:
    """Load files and kustomization directories into one set; an object defined twice is an error."""
    result = ManifestSet()
    for path in paths:
        result.extend(_load_path(path, ()))
    _check_unique(result.resources)
    return result


def _load_path(path: Path, stack: tuple[Path, ...]) -> ManifestSet:
    if path.is_dir():
        kfile = kustomization_file(path)
        if kfile is None:
            raise InputError(
                "directory has no kustomization file",
                file=path,
                valid=f"a directory with one of {', '.join(KUSTOMIZATION_FILES)}, or a YAML file",
            )
        return _load_kustomization(kfile, stack)
    if path.name in KUSTOMIZATION_FILES:
        return _load_kustomization(path, stack)
    return _load_file(path)


def _load_file(path: Path) -> ManifestSet:
    result = ManifestSet(files=[path])
    for doc in load_documents(path):
        result.resources.append(resource_from_document(doc))
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


def _load_kustomization(kfile: Path, stack: tuple[Path, ...]) -> ManifestSet:
    directory = kfile.parent.resolve()
    if directory in stack:
        cycle = " -> ".join(str(p) for p in (*stack, directory))
        raise InputError(f"kustomization includes itself: {cycle}", file=kfile)
    doc = load_mapping(kfile)
    result = ManifestSet(files=[kfile])
    ignored = [str(key) for key in doc.root if key not in APPLIED_FIELDS]
    if ignored:
        result.warnings.append(
            f"{kfile}: ignored kustomization field(s) {', '.join(ignored)} "
            f"(capsim applies only {', '.join(APPLIED_FIELDS[2:])})"
        )
    for key in ("resources", "bases"):
        entries = doc.get((key,))
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise doc.error((key,), f"{key} must be a list of paths")
        for i, entry in enumerate(entries):
            if not isinstance(entry, str) or not entry:
                raise doc.error((key, i), "expected a path (string)")
            if entry.startswith(_REMOTE_PREFIXES) or "?ref=" in entry:
                result.warnings.append(
                    f"{kfile}: {key}[{i}]: remote resource {entry} skipped (capsim reads local files only)"
                )
                continue
            target = Path(os.path.normpath(kfile.parent / entry))
            if not target.exists():
                raise doc.error((key, i), f"{entry} does not exist (looked for {target})")
            result.extend(_load_path(target, (*stack, directory)))
    namespace = doc.get(("namespace",))
    if namespace is not None:
        if not isinstance(namespace, str) or not namespace:
            raise doc.error(("namespace",), "namespace must be a non-empty string")
        result.resources = [
            r if r.kind in CLUSTER_SCOPED_KINDS else replace(r, namespace=namespace) for r in result.resources
        ]
    return result


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
