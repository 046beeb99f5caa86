"""Kustomize patches applied to objects that remember where every value was written.

capsim both reads a GitOps tree (to simulate what `kustomize build` would
deploy) and writes tuned values back into it. Writing back needs to know, for
each field of the built object, which file and which node set it last: the
base resource, a strategic-merge patch, a JSON 6902 operation's `value`, or a
kustomization field such as `replicas`. So objects are built as `Traced`
trees, each value paired with its `Origin`, and patches merge those trees
instead of plain data.

Strategic merge follows kustomize (kyaml merge2 as `kustomize build` calls it):
mappings merge key by key and a null deletes; `$patch: delete|replace|merge`
directives apply; lists are replaced wholesale unless the Kubernetes type
declares a merge key for them (containers by name, ...), and custom resources
have none, so a patch that touches `spec.triggers` replaces every trigger.
Merged lists are ordered like kustomize orders them: the patch's elements
first, then the untouched ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from sim.errors import InputError
from sim.k8s.yamlsource import FieldPath, PathPart, SourceLocation, YamlDocument, format_path, to_plain


@dataclass(frozen=True)
class Origin:
    """Where one value of a built object is written.

    `index`/`path` locate the node in the document; for a patch written inline
    in a kustomization (`patches[i].patch: |`), `inline` is the path of that
    string in the kustomization and `index`/`path` are inside the string.
    """

    file: Path
    index: int
    path: FieldPath
    line: int | None
    inline: FieldPath | None = None


@dataclass(frozen=True)
class Traced:
    """A value with its origin; containers hold Traced children. Never mutated: merges build new trees."""

    origin: Origin
    value: Any  # dict[str, Traced] | list[Traced] | a scalar


def trace_document(doc: YamlDocument, inline: FieldPath | None = None, line_offset: int = 0) -> Traced:
    """The document as a Traced tree, every node pointing at its own position in the file."""

    def walk(node: Any, path: FieldPath, line: int | None) -> Traced:
        origin = Origin(doc.file, doc.index, path, None if line is None else line + line_offset, inline)
        if isinstance(node, dict):
            children = {}
            for key, child in node.items():
                child_line = node.lc.key(key)[0] + 1 if isinstance(node, CommentedMap) else line
                children[str(key)] = walk(child, (*path, str(key)), child_line)
            return Traced(origin, children)
        if isinstance(node, list):
            items = []
            for i, child in enumerate(node):
                item_line = node.lc.item(i)[0] + 1 if isinstance(node, CommentedSeq) else line
                items.append(walk(child, (*path, i), item_line))
            return Traced(origin, items)
        return Traced(origin, to_plain(node))

    root = doc.root
    first = root.lc.line + 1 if isinstance(root, CommentedMap | CommentedSeq) else None
    return walk(root, doc.base, first)


def plain(tree: Traced) -> Any:
    if isinstance(tree.value, dict):
        return {k: plain(v) for k, v in tree.value.items()}
    if isinstance(tree.value, list):
        return [plain(v) for v in tree.value]
    return tree.value


def node_at(tree: Traced, path: Sequence[PathPart]) -> tuple[Traced, int]:
    """The deepest node along `path` that exists, and how many parts of the path it consumed."""
    node = tree
    for depth, part in enumerate(path):
        in_map = isinstance(part, str) and isinstance(node.value, dict) and part in node.value
        in_list = isinstance(part, int) and isinstance(node.value, list) and 0 <= part < len(node.value)
        if not (in_map or in_list):
            return node, depth
        node = node.value[part]
    return node, len(path)


@dataclass(frozen=True)
class TracedDocument(YamlDocument):
    """A built object whose values may come from several files.

    `root` holds the merged values (plain data); positions and errors come
    from the trace, so an error about a field a patch set names the patch.
    `file`/`index` stay those of the base resource.
    """

    trace: Traced | None = field(default=None, compare=False)

    def _trace(self) -> Traced:
        assert self.trace is not None
        return self.trace

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        return node_at(self._trace(), path)[0].origin.line

    def locate(self, path: Sequence[PathPart]) -> SourceLocation:
        origin = node_at(self._trace(), path)[0].origin
        return SourceLocation(origin.file, self.field(path), origin.line)

    def sub(self, path: Sequence[PathPart]) -> TracedDocument:
        node, depth = node_at(self._trace(), path)
        if depth < len(path):
            # A missing subtree: keep the ancestor's trace so errors point at the closest place that exists.
            return TracedDocument(self.file, self.index, None, (*self.base, *path), node)
        return TracedDocument(self.file, self.index, self.get(path), (*self.base, *path), node)


def traced_document(base: YamlDocument, tree: Traced) -> TracedDocument:
    return TracedDocument(base.file, base.index, plain(tree), base.base, tree)


# --- strategic merge ---------------------------------------------------------------------------------

# Merge keys of lists in built-in Kubernetes types (their patchMergeKey); custom resources have none.
_POD_SPEC_LISTS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
_CONTAINER_LISTS = {
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "resizePolicy": "resourceName",
}
_POD_SPEC_AT = {
    ("", "Pod"): ("spec",),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
BUILTIN_GROUPS = frozenset(
    {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"}
)

ListKeys = Callable[[tuple[str, ...]], str | None]


def list_merge_keys(api_version: str, kind: str) -> ListKeys:
    """The merge key of the list at a (index-free) field path of this kind, or None: replace the list."""
    group = api_version.rpartition("/")[0]
    pod_spec = _POD_SPEC_AT.get((group, kind))
    builtin = group in BUILTIN_GROUPS

    def key(path: tuple[str, ...]) -> str | None:
        if not builtin:
            return None
        if path == ("metadata", "ownerReferences"):
            return "uid"
        if (group, kind) == ("", "Service") and path == ("spec", "ports"):
            return "port"
        if pod_spec is None or path[: len(pod_spec)] != pod_spec:
            return None
        rest = path[len(pod_spec) :]
        if len(rest) == 1:
            return _POD_SPEC_LISTS.get(rest[0])
        if len(rest) == 2 and rest[0] in ("containers", "initContainers", "ephemeralContainers"):
            return _CONTAINER_LISTS.get(rest[1])
        return None

    return key


# The identity of the patched object is kept whatever the patch says (kustomize restores it).
_IDENTITY = (("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"))


def strategic_merge(target: Traced, patch: Traced, list_keys: ListKeys) -> Traced | None:
    """Apply one strategic-merge patch document; None when the patch deletes the object."""
    if not isinstance(patch.value, dict):
        raise _error(patch, "a strategic-merge patch must be a mapping")
    merged = _merge_map(target, patch, (), list_keys)
    if merged is None:
        return None
    for path in _IDENTITY:
        merged = _restore(merged, target, path)
    return merged


def _restore(merged: Traced, original: Traced, path: FieldPath) -> Traced:
    before, depth = node_at(original, path)
    after, after_depth = node_at(merged, path)
    if depth == len(path) and (after_depth < len(path) or plain(after) != plain(before)):
        return set_at(merged, path, before)
    return merged


def _error(node: Traced, message: str, valid: str | None = None) -> InputError:
    o = node.origin
    where = format_path((*o.inline, *o.path)) if o.inline else format_path(o.path)
    return InputError(message, file=o.file, field=where or None, line=o.line, valid=valid)


def _directive(node: Traced) -> str | None:
    value = node.value
    if not isinstance(value, dict):
        return None
    for key, child in value.items():
        if key.startswith("$") and key != "$patch":
            raise _error(
                child,
                f"strategic-merge directive {key} is not supported",
                valid="$patch: delete, replace or merge",
            )
    if "$patch" not in value:
        return None
    directive = value["$patch"].value
    if directive not in ("delete", "replace", "merge"):
        raise _error(
            value["$patch"], f"unknown $patch directive {directive!r}", valid="delete, replace, merge"
        )
    return str(directive)


def _strip(node: Traced) -> Traced | None:
    """A patch value as it lands in the object: directives removed, deleted maps and list items dropped."""
    if isinstance(node.value, dict):
        if _directive(node) == "delete":
            return None
        children = {}
        for key, child in node.value.items():
            if key == "$patch" or child.value is None:
                continue
            stripped = _strip(child)
            if stripped is not None:
                children[key] = stripped
        return Traced(node.origin, children)
    if isinstance(node.value, list):
        items = [s for s in (_strip(item) for item in node.value) if s is not None]
        return Traced(node.origin, items)
    return node


def _merge_map(dest: Traced, src: Traced, path: tuple[str, ...], list_keys: ListKeys) -> Traced | None:
    directive = _directive(src)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip(src)
    if not isinstance(dest.value, dict):
        return _strip(src)
    result = dict(dest.value)
    for key, child in src.value.items():
        if key == "$patch":
            continue
        if child.value is None:
            result.pop(key, None)
            continue
        existing = result.get(key)
        merged: Traced | None
        if existing is not None and isinstance(existing.value, dict) and isinstance(child.value, dict):
            merged = _merge_map(existing, child, (*path, key), list_keys)
        elif existing is not None and isinstance(existing.value, list) and isinstance(child.value, list):
            merged = _merge_list(existing, child, (*path, key), list_keys)
        else:
            merged = _strip(child)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return Traced(dest.origin, result)


def _merge_list(dest: Traced, src: Traced, path: tuple[str, ...], list_keys: ListKeys) -> Traced:
    key = list_keys(path)
    items: list[Traced] = src.value
    keyed = all(isinstance(i.value, dict) and key in i.value for i in [*dest.value, *items])
    if key is None or not keyed:
        stripped = _strip(src)
        assert stripped is not None
        return stripped
    remaining = {plain(i.value[key]): i for i in dest.value}
    first: list[Traced] = []
    for item in items:
        ident = plain(item.value[key])
        existing = remaining.pop(ident, None)
        merged = _merge_map(existing, item, path, list_keys) if existing is not None else _strip(item)
        if merged is not None:
            first.append(merged)
    rest = [i for i in dest.value if plain(i.value[key]) in remaining]
    return Traced(dest.origin, first + rest)


# --- JSON 6902 ---------------------------------------------------------------------------------------


def set_at(tree: Traced, path: Sequence[PathPart], value: Traced, insert: bool = False) -> Traced:
    """A copy of `tree` with `value` at `path` (the parent must exist); `insert` inserts into a list."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree.value, dict) and isinstance(head, str):
        children = dict(tree.value)
        children[head] = set_at(children[head], rest, value, insert) if rest else value
        return Traced(tree.origin, children)
    if isinstance(tree.value, list) and isinstance(head, int):
        items = list(tree.value)
        if rest:
            items[head] = set_at(items[head], rest, value, insert)
        elif insert:
            items.insert(head, value)
        else:
            items[head] = value
        return Traced(tree.origin, items)
    raise KeyError(head)


def remove_at(tree: Traced, path: Sequence[PathPart]) -> Traced:
    head, rest = path[0], path[1:]
    if isinstance(tree.value, dict) and isinstance(head, str):
        children = dict(tree.value)
        if rest:
            children[head] = remove_at(children[head], rest)
        else:
            del children[head]
        return Traced(tree.origin, children)
    if isinstance(tree.value, list) and isinstance(head, int):
        items = list(tree.value)
        if rest:
            items[head] = remove_at(items[head], rest)
        else:
            del items[head]
        return Traced(tree.origin, items)
    raise KeyError(head)


def _pointer(tree: Traced, text: Any, op: Traced, for_add: bool = False) -> FieldPath:
    """A JSON pointer resolved against the tree; list indices become ints ("-" appends when adding)."""
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise _error(op, f"{text!r} is not a JSON pointer", valid="a path such as /spec/maxReplicaCount")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in text.split("/")[1:]] if text else []
    path: list[PathPart] = []
    node: Traced | None = tree
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if node is not None and isinstance(node.value, list):
            if token == "-" and last and for_add:
                index = len(node.value)
            elif token.isdigit() and int(token) < len(node.value) + (1 if last and for_add else 0):
                index = int(token)
            else:
                raise _error(op, f"{text}: no list item {token!r}")
            path.append(index)
            node = node.value[index] if index < len(node.value) else None
        elif node is not None and isinstance(node.value, dict):
            if token not in node.value and not (last and for_add):
                raise _error(op, f"{text}: no field {token!r} in the object")
            path.append(token)
            node = node.value.get(token)
        else:
            raise _error(op, f"{text}: {format_path(path) or 'the object'} is not a mapping or list")
    return tuple(path)


def apply_json6902(target: Traced, ops: Traced) -> Traced:
    """Apply a JSON 6902 operation list; values keep their origins in the patch file."""
    if not isinstance(ops.value, list):
        raise _error(ops, "a JSON 6902 patch must be a list of operations")
    tree = target
    for op in ops.value:
        if not isinstance(op.value, dict) or "op" not in op.value or "path" not in op.value:
            raise _error(op, "each JSON 6902 operation needs op and path", valid="op: add|remove|replace|...")
        kind = op.value["op"].value
        where = op.value["path"].value
        if kind in ("add", "replace", "test") and "value" not in op.value:
            raise _error(op, f"a {kind} operation needs a value")
        if kind == "add":
            path = _pointer(tree, where, op, for_add=True)
            parent = node_at(tree, path[:-1])[0] if path else None
            is_list = parent is not None and isinstance(parent.value, list)
            tree = set_at(tree, path, op.value["value"], insert=is_list)
        elif kind == "replace":
            tree = set_at(tree, _pointer(tree, where, op), op.value["value"])
        elif kind == "remove":
            path = _pointer(tree, where, op)
            if not path:
                raise _error(op, "cannot remove the whole object")
            tree = remove_at(tree, path)
        elif kind in ("move", "copy"):
            source_path = _pointer(tree, op.value.get("from", Traced(op.origin, None)).value, op)
            moved = node_at(tree, source_path)[0]
            if kind == "move":
                tree = remove_at(tree, source_path)
            path = _pointer(tree, where, op, for_add=True)
            parent = node_at(tree, path[:-1])[0] if path else None
            tree = set_at(tree, path, moved, insert=parent is not None and isinstance(parent.value, list))
        elif kind == "test":
            path = _pointer(tree, where, op)
            if plain(node_at(tree, path)[0]) != plain(op.value["value"]):
                raise _error(op, f"JSON 6902 test failed: {where} is not {plain(op.value['value'])!r}")
        else:
            raise _error(
                op.value["op"],
                f"unknown JSON 6902 op {kind!r}",
                valid="add, remove, replace, move, copy, test",
            )
    return tree


def constant(value: Any, origin: Origin) -> Traced:
    """A value set by a kustomization field (e.g. `replicas`), traced to that field."""
    return Traced(origin, copy.deepcopy(value))
