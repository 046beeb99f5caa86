"""Write tuned values back into a GitOps tree, changing nothing but those values.

`plan_changes` is pure: it finds, for each requested field of a built object
(identity as `kustomize build` would show it), the file and node that set the
value last (a base resource, a patch in the overlay, a `replicas` entry) and
edits that node's text in place (see yamledit). A value that only a shared
base sets (a file outside the overlay directory) is not edited there, since
other overlays read it too: the change goes into a new patch file in the
overlay, listed under `patches:` in its kustomization (strategic merge when
the path can be said that way, JSON 6902 when it goes through a list that
kustomize would replace wholesale). A field that nothing sets is inserted
into the mapping that holds its parent.

Before anything is written the plan is checked: the tree is built again from
the planned texts and every object must equal the old one with exactly the
requested values changed, and every changed custom resource must validate
against its CRD. `WritePlan.apply` then writes every file or none.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.k8s.crd import schema_for, validate_resource
from sim.k8s.kustomize import ManifestSet, Resource, kustomization_file, load_manifests
from sim.k8s.patches import (
    Origin,
    Traced,
    TracedDocument,
    list_merge_keys,
    node_at,
    trace_document,
)
from sim.k8s.yamledit import (
    InlineText,
    Splice,
    YamlText,
    apply_splices,
    block_lines,
    refuse_templated,
)
from sim.k8s.yamlsource import FieldPath, PathPart, format_path


@dataclass(frozen=True)
class FieldChange:
    """Set `path` of one object to `value`.

    The object is named as `kustomize build` shows it (after namespace and
    name prefixes). `path` is dotted with list steps: `[0]` by position or
    `[name=app]` by a field's value, e.g.
    `spec.template.spec.containers[name=app].resources.requests.cpu`; a key
    holding dots or brackets is written `["autoscaling.keda.sh/paused"]`.
    A mapping value sets its keys one by one (other keys stay); a list
    replaces the list. A number given for a field that holds a string (a
    trigger's threshold "40") is written as a string.
    """

    api_version: str
    kind: str
    name: str
    path: str
    value: Any
    namespace: str | None = None

    def describe(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name} {self.path}"


@dataclass(frozen=True)
class Selector:
    """A list step that picks the item whose `key` field equals `value`."""

    key: str
    value: str


Step = str | int | Selector

_STEP = re.compile(r'\.?([^.\[\]"]+)|\[(\d+)\]|\[([^=\]"]+)=([^\]]*)\]|\["((?:[^"\\]|\\.)*)"\]')


def parse_field_path(text: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None or (m.group(1) is not None and pos > 0 and text[pos] != "."):
            raise InputError(
                f"malformed field path {text!r}",
                valid="e.g. spec.triggers[0].metadata.threshold or "
                "spec.template.spec.containers[name=app].resources.requests.cpu",
            )
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        elif m.group(3) is not None:
            steps.append(Selector(m.group(3).strip(), m.group(4).strip().strip("'\"")))
        else:
            steps.append(m.group(5).replace('\\"', '"'))
        pos = m.end()
    if not steps:
        raise InputError("empty field path")
    return tuple(steps)


@dataclass(frozen=True)
class FileWrite:
    path: Path
    before: str | None  # None: the plan creates the file
    after: str


@dataclass(frozen=True)
class WrittenField:
    """Where one requested value ends up: `how` is edited, inserted or patch (a patch file in the overlay)."""

    change: FieldChange
    path: FieldPath
    file: Path
    how: str


@dataclass(frozen=True)
class WritePlan:
    files: tuple[FileWrite, ...]
    fields: tuple[WrittenField, ...]

    def diff(self, relative_to: Path | None = None) -> str:
        """A unified diff of every file the plan writes, `a/` and `b/` paths relative to `relative_to`."""
        base = relative_to.resolve() if relative_to is not None else None
        chunks: list[str] = []
        for f in self.files:
            name = str(f.path.relative_to(base)) if base and f.path.is_relative_to(base) else str(f.path)
            before = f.before.splitlines(keepends=True) if f.before is not None else []
            chunks.extend(
                difflib.unified_diff(
                    before,
                    f.after.splitlines(keepends=True),
                    "/dev/null" if f.before is None else f"a/{name}",
                    f"b/{name}",
                )
            )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in chunks
        )

    def apply(self) -> None:
        """Write every file or none: all staged beside their targets first, then renamed into place.

        A file changed since the plan was made is refused. If a rename fails,
        the files already replaced get their old content back.
        """
        for f in self.files:
            current = _read(f.path) if f.path.exists() else None
            if current != f.before:
                raise InputError("the file changed since the edit was planned; plan again", file=f.path)
        staged: list[tuple[FileWrite, str]] = []
        try:
            for f in self.files:
                staged.append((f, _stage(f.path, f.after)))
        except BaseException:
            for _, tmp in staged:
                _unlink(tmp)
            raise
        done: list[FileWrite] = []
        try:
            for f, tmp in staged:
                os.replace(tmp, f.path)
                done.append(f)
        except BaseException:
            for f, tmp in staged:
                if f not in done:
                    _unlink(tmp)
            for f in done:
                if f.before is None:
                    _unlink(str(f.path))
                else:
                    os.replace(_stage(f.path, f.before), f.path)
            raise


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _stage(path: Path, text: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".capsim-tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- planning ------------------------------------------------------------------------------------------


@dataclass
class _Root:
    path: Path
    manifests: ManifestSet

    @property
    def directory(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    def owns(self, file: Path) -> bool:
        """Files only this overlay reads: under its directory (a single-file root owns just that file)."""
        if not self.path.is_dir() and kustomization_file(self.path.parent) is None:
            return file == self.path
        return file.is_relative_to(self.directory)


@dataclass
class _Leaf:
    change: FieldChange
    root: _Root
    resource: Resource
    path: FieldPath  # concrete path in the built object; the tail past what exists is all keys
    value: Any


@dataclass
class _Planner:
    texts: dict[Path, YamlText] = field(default_factory=dict)
    inline: dict[tuple[Path, int, FieldPath], InlineText] = field(default_factory=dict)
    sets: dict[tuple[Path, FieldPath | None, int, FieldPath], Any] = field(default_factory=dict)
    inserts: dict[tuple[Path, FieldPath | None, int, FieldPath], dict[str, Any]] = field(default_factory=dict)
    appends: list[tuple[Path, FieldPath, Any]] = field(default_factory=list)
    new_files: dict[Path, str] = field(default_factory=dict)
    written: list[WrittenField] = field(default_factory=list)

    def text(self, file: Path) -> YamlText:
        if file not in self.texts:
            self.texts[file] = YamlText(file, _read(file))
        return self.texts[file]

    def target(self, origin: Origin) -> YamlText:
        outer = self.text(origin.file)
        if origin.inline is None:
            return outer
        key = (origin.file, 0, origin.inline)
        if key not in self.inline:
            self.inline[key] = InlineText(outer, 0, origin.inline)
        return self.inline[key].text


def plan_changes(roots: Path | str | Sequence[Path | str], changes: Sequence[FieldChange]) -> WritePlan:
    """Plan the edits for `changes` in the trees at `roots` (kustomization dirs or manifest files).

    Raises InputError, with nothing written, when an object or field cannot
    be found, a file cannot be edited safely, or the result would not
    validate against the CRD schemas.
    """
    root_list = [roots] if isinstance(roots, str | Path) else list(roots)
    built = [_load_root(Path(os.path.abspath(r))) for r in root_list]
    planner = _Planner()
    leaves: list[_Leaf] = []
    for change in changes:
        root, resource = _find(built, change)
        leaves.extend(_leaves(change, root, resource))
    _check_distinct(leaves)
    by_patch: dict[tuple[int, str, str, str | None], list[_Leaf]] = {}
    for leaf in leaves:
        if not _route_in_place(planner, leaf):
            r = leaf.resource
            by_patch.setdefault((id(leaf.root), r.kind, r.name, r.namespace), []).append(leaf)
    for group in by_patch.values():
        _route_to_patch(planner, group)
    writes = _render(planner)
    _verify(built, leaves, {w.path: w.after for w in writes})
    return WritePlan(tuple(writes), tuple(planner.written))


def _load_root(path: Path) -> _Root:
    """A templated file usually fails to parse: say it is templated, not what the parser saw."""
    try:
        return _Root(path, load_manifests([path]))
    except InputError as exc:
        failed = Path(exc.file) if exc.file is not None else None
        if failed is not None and failed.is_file():
            refuse_templated(failed, _read(failed))
        raise


def _find(roots: list[_Root], change: FieldChange) -> tuple[_Root, Resource]:
    found = [
        (root, r)
        for root in roots
        for r in root.manifests.resources
        if r.api_version == change.api_version
        and r.kind == change.kind
        and r.name == change.name
        and (change.namespace is None or r.namespace == change.namespace)
    ]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(
            f"{change.describe()}: {len(found)} objects match; give the namespace",
            valid=", ".join(f"{r.namespace}" for _, r in found),
        )
    same_kind = [
        f"{r.kind}/{r.name}" for root in roots for r in root.manifests.resources if r.kind == change.kind
    ]
    raise InputError(
        f"{change.describe()}: no {change.api_version} {change.kind} named {change.name} in the tree",
        valid=", ".join(same_kind) or f"no {change.kind} found",
    )


def _trace(resource: Resource) -> Traced:
    doc = resource.doc
    if isinstance(doc, TracedDocument) and doc.trace is not None:
        return doc.trace
    return trace_document(doc)


def _resolve(change: FieldChange, data: Any) -> FieldPath:
    """Selectors become positions; the part of the path past what exists must be plain keys."""
    path: list[PathPart] = []
    node = data
    missing = False
    for step in parse_field_path(change.path):
        where = format_path(path) or "the object"
        if missing:
            if not isinstance(step, str):
                raise InputError(
                    f"{change.describe()}: {where} does not exist, so a list item cannot be chosen under it"
                )
            path.append(step)
            continue
        if isinstance(step, Selector):
            if not isinstance(node, list):
                raise InputError(f"{change.describe()}: {where} is not a list")
            hits = [
                i
                for i, item in enumerate(node)
                if isinstance(item, dict) and str(item.get(step.key)) == step.value
            ]
            if len(hits) != 1:
                names = [str(item.get(step.key)) for item in node if isinstance(item, dict)]
                raise InputError(
                    f"{change.describe()}: {len(hits)} items of {where} have {step.key}={step.value}",
                    valid=", ".join(f"{step.key}={n}" for n in names) or "an existing item",
                )
            path.append(hits[0])
            node = node[hits[0]]
        elif isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise InputError(f"{change.describe()}: {where} has no item {step}")
            path.append(step)
            node = node[step]
        else:
            if not isinstance(node, dict) and node is not None:
                raise InputError(f"{change.describe()}: {where} is a {type(node).__name__}, not a mapping")
            path.append(step)
            if node is None or step not in node:
                missing = True
            else:
                node = node[step]
    return tuple(path)


def field_value(resource: Resource, path: str) -> Any:
    """The built object's value at a writer path (`[name=app]` steps allowed); None when absent.

    For before/after tables: what the simulator reads is what the writer changes.
    """
    data = resource.doc.plain()
    change = FieldChange(resource.api_version, resource.kind, resource.name, path, None)
    return _get(data, _resolve(change, data))[1]


def _get(data: Any, path: FieldPath) -> tuple[bool, Any]:
    node = data
    for part in path:
        in_map = isinstance(part, str) and isinstance(node, dict) and part in node
        in_list = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
        if not (in_map or in_list):
            return False, None
        node = node[part]
    return True, node


def _leaves(change: FieldChange, root: _Root, resource: Resource) -> list[_Leaf]:
    data = resource.doc.plain()
    out: list[_Leaf] = []

    def add(path: FieldPath, value: Any) -> None:
        exists, current = _get(data, path)
        if isinstance(value, dict) and exists and isinstance(current, dict) and value:
            for key, child in value.items():
                add((*path, str(key)), child)
            return
        if isinstance(value, list) and exists and _same_shape(current, value):
            # Item by item: the list's comments and quoting survive, only changed items show in the diff.
            for i, item in enumerate(value):
                add((*path, i), item)
            return
        out.append(_Leaf(change, root, resource, path, _coerce(resource, path, exists, current, value)))

    add(_resolve(change, data), change.value)
    return out


def _same_shape(current: Any, value: list[Any]) -> bool:
    """Whether setting the list item by item (and mappings key by key) yields exactly `value`."""
    if not isinstance(current, list) or len(current) != len(value):
        return False
    for old, new in zip(current, value, strict=True):
        if isinstance(old, dict) or isinstance(new, dict):
            same = isinstance(old, dict) and isinstance(new, dict) and set(old) == set(new)
        elif isinstance(old, list) or isinstance(new, list):
            same = isinstance(old, list) and isinstance(new, list) and _same_shape(old, new)
        else:
            same = True
        if not same:
            return False
    return True


def _coerce(resource: Resource, path: FieldPath, exists: bool, current: Any, value: Any) -> Any:
    """A number for a field that holds (or, per the CRD, takes) a string is written as that string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    wants_string = isinstance(current, str) if exists else _schema_type(resource, path) == "string"
    if not wants_string:
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _schema_type(resource: Resource, path: FieldPath) -> str | None:
    schema = schema_for(resource)
    for part in path:
        if schema is None:
            return None
        if isinstance(part, int):
            schema = schema.get("items")
        else:
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            schema = props.get(part, extra if isinstance(extra, dict) else None)
    return schema.get("type") if isinstance(schema, dict) else None


def _check_distinct(leaves: list[_Leaf]) -> None:
    seen: dict[tuple[int, str, str, str | None, FieldPath], _Leaf] = {}
    for leaf in leaves:
        r = leaf.resource
        key = (id(leaf.root), r.kind, r.name, r.namespace, leaf.path)
        for other_key, other in seen.items():
            same_object = other_key[:4] == key[:4]
            a, b = other_key[4], leaf.path
            if same_object and (a[: len(b)] == b or b[: len(a)] == a):
                raise InputError(
                    f"{leaf.change.describe()}: also set by {other.change.describe()}; give each field once"
                )
        seen[key] = leaf


def _nest(path: FieldPath, value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(path):
        nested = {str(part): nested}
    return dict(nested)


def _merge_into(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def _route_in_place(planner: _Planner, leaf: _Leaf) -> bool:
    """Edit the node that sets the value (or the mapping that will hold it) when the overlay owns it."""
    node, depth = node_at(_trace(leaf.resource), leaf.path)
    origin = node.origin
    if not leaf.root.owns(origin.file):
        return False
    key = (origin.file, origin.inline, origin.index, origin.path)
    if depth == len(leaf.path) or node.value is None:
        value = leaf.value if depth == len(leaf.path) else _nest(leaf.path[depth:], leaf.value)
        planner.sets[key] = value
        how = "edited" if depth == len(leaf.path) else "inserted"
    elif isinstance(node.value, dict):
        _merge_into(planner.inserts.setdefault(key, {}), _nest(leaf.path[depth:], leaf.value))
        how = "inserted"
    else:
        where = format_path(leaf.path[:depth]) or "the object"
        raise InputError(
            f"{leaf.change.describe()}: {where} is a {type(node.value).__name__}; cannot add a field to it"
        )
    planner.written.append(WrittenField(leaf.change, leaf.path, origin.file, how))
    return True


def _route_to_patch(planner: _Planner, leaves: list[_Leaf]) -> None:
    """Values that only a shared base sets go into a new patch in the overlay, listed in its kustomization."""
    first = leaves[0]
    root, resource = first.root, first.resource
    kfile = kustomization_file(root.directory)
    if kfile is None:
        raise InputError(
            f"{first.change.describe()}: the value is set in {_origin_file(first)}, outside {root.path}, "
            "and there is no kustomization there to add a patch to",
        )
    original_name = str(resource.doc.get(("metadata", "name")))
    keys = list_merge_keys(resource.api_version, resource.kind)
    smp = _smp_body(resource, leaves, keys)
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{original_name}-{resource.kind.lower()}-patch").strip("-")
    path = root.directory / f"{stem}.yaml"
    n = 2
    while path.exists() or path in planner.new_files:
        path = root.directory / f"{stem}-{n}.yaml"
        n += 1
    if smp is not None:
        body = {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": original_name},
            **smp,
        }
        lines = ["# Written by capsim: tuned values for this overlay (the base sets them for every overlay)."]
        lines += block_lines(body, 0, planner.text(kfile).style)
    else:
        lines = ["# Written by capsim: tuned values for this overlay (the base sets them for every overlay)."]
        lines += block_lines(_json_ops(resource, leaves), 0, planner.text(kfile).style)
    newline = planner.text(kfile).newline
    planner.new_files[path] = newline.join(lines) + newline
    target: dict[str, Any] = {}
    if resource.group:
        target["group"] = resource.group
    target["version"] = resource.api_version.rpartition("/")[2]
    target["kind"] = resource.kind
    target["name"] = original_name
    entry = {"path": path.name, "target": target}
    kdoc = planner.text(kfile)
    if kdoc.docs and any(getattr(k, "value", None) == "patches" for k, _ in kdoc.docs[0].value):
        planner.appends.append((kfile, ("patches",), entry))
    else:
        _merge_into(planner.inserts.setdefault((kfile, None, 0, ()), {}), {"patches": [entry]})
    for leaf in leaves:
        planner.written.append(WrittenField(leaf.change, leaf.path, path, "patch"))


def _origin_file(leaf: _Leaf) -> Path:
    return node_at(_trace(leaf.resource), leaf.path)[0].origin.file


def _smp_body(resource: Resource, leaves: list[_Leaf], keys: Any) -> dict[str, Any] | None:
    """The leaves as one strategic-merge patch, or None when a path crosses a list kustomize would replace."""
    data = resource.doc.plain()
    body: dict[str, Any] = {}
    for leaf in leaves:
        nested: Any = body
        named: list[str] = []
        for i, part in enumerate(leaf.path):
            last = i == len(leaf.path) - 1
            if isinstance(part, int):
                key = keys(tuple(named))
                _, item = _get(data, leaf.path[: i + 1])
                if key is None or not isinstance(item, dict) or key not in item:
                    return None
                items = nested if isinstance(nested, list) else None
                assert items is not None
                match = next((it for it in items if it.get(key) == item[key]), None)
                if match is None:
                    match = {key: item[key]}
                    items.append(match)
                nested = match
                continue
            named.append(part)
            if last:
                nested[part] = leaf.value
                break
            follows_list = isinstance(leaf.path[i + 1], int)
            nested = nested.setdefault(part, [] if follows_list else {})
    return body


def _json_ops(resource: Resource, leaves: list[_Leaf]) -> list[dict[str, Any]]:
    data = resource.doc.plain()
    ops: list[dict[str, Any]] = []
    for leaf in leaves:
        depth = 0
        while depth < len(leaf.path) and _get(data, leaf.path[: depth + 1])[0]:
            depth += 1
        if depth == len(leaf.path):
            op, at, value = "replace", leaf.path, leaf.value
        else:
            at = leaf.path[: depth + 1]
            value = _nest(leaf.path[depth + 1 :], leaf.value) if depth + 1 < len(leaf.path) else leaf.value
            op = "add"
        pointer = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in at)
        ops.append({"op": op, "path": pointer, "value": value})
    return ops


def _render(planner: _Planner) -> list[FileWrite]:
    splices: dict[Path, list[Splice]] = {}
    inline_splices: dict[tuple[Path, int, FieldPath], list[Splice]] = {}

    def add(file: Path, inline: FieldPath | None, splice: Splice) -> None:
        if inline is None:
            splices.setdefault(file, []).append(splice)
        else:
            inline_splices.setdefault((file, 0, inline), []).append(splice)

    for (file, inline, index, path), value in planner.sets.items():
        target = planner.target(Origin(file, index, path, None, inline))
        add(file, inline, target.set_value(index, path, value))
    for (file, inline, index, path), additions in planner.inserts.items():
        target = planner.target(Origin(file, index, path, None, inline))
        add(file, inline, target.insert(index, path, additions))
    for file, path, item in planner.appends:
        add(file, None, planner.text(file).append(0, path, item))
    for key, inner in inline_splices.items():
        inline_text = planner.inline[key]
        splices.setdefault(key[0], []).extend(inline_text.to_outer(s) for s in inner)
    writes: list[FileWrite] = []
    for file, file_splices in splices.items():
        text = planner.text(file)
        text.check_file()
        try:
            after = apply_splices(text.text, file_splices)
        except ValueError:
            raise InputError("two changes edit the same text; give each field once", file=file) from None
        if after != text.text:
            writes.append(FileWrite(file, text.text, after))
    writes.extend(FileWrite(path, None, body) for path, body in planner.new_files.items())
    return writes


def _verify(roots: list[_Root], leaves: list[_Leaf], texts: dict[Path, str]) -> None:
    """Build the trees again from the planned texts: only the requested values may differ, CRDs must pass."""
    for root in roots:
        expected: dict[tuple[str, str, str, str | None], Any] = {
            _ident(r): copy.deepcopy(r.doc.plain()) for r in root.manifests.resources
        }
        changed: set[tuple[str, str, str, str | None]] = set()
        for leaf in leaves:
            if leaf.root is root:
                ident = _ident(leaf.resource)
                _set(expected[ident], leaf.path, leaf.value)
                changed.add(ident)
        if not changed:
            continue
        try:
            after = load_manifests([root.path], overrides=texts)
        except InputError as exc:
            raise InputError(f"the planned edit would break the tree: {exc}") from None
        actual = {_ident(r): r for r in after.resources}
        if set(actual) != set(expected):
            lost = sorted(set(expected) ^ set(actual))
            raise InputError(f"the planned edit would change which objects the tree holds: {lost}")
        for ident, want in expected.items():
            got = actual[ident].doc.plain()
            if got != want:
                where = _first_difference(want, got, ())
                raise InputError(
                    f"the planned edit would also change {ident[1]}/{ident[2]} {format_path(where)}; "
                    "refusing (another object or field shares the edited text)",
                    file=actual[ident].file,
                )
        for ident in changed:
            try:
                validate_resource(actual[ident])
            except InputError as exc:
                already = _fails_validation(next(r for r in root.manifests.resources if _ident(r) == ident))
                when = "even before the change" if already else "after the change"
                raise InputError(
                    f"{when} {ident[1]}/{ident[2]} would not validate against its CRD: " + exc.message,
                    file=exc.file,
                    field=exc.field,
                    line=exc.line,
                    valid=exc.valid,
                ) from None


def _fails_validation(resource: Resource) -> bool:
    try:
        validate_resource(resource)
    except InputError:
        return True
    return False


def _ident(r: Resource) -> tuple[str, str, str, str | None]:
    return (r.api_version, r.kind, r.name, r.namespace)


def _set(data: Any, path: FieldPath, value: Any) -> None:
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and (part not in node or node[part] is None):
            node[part] = {}
        node = node[part]
    node[path[-1]] = copy.deepcopy(value)


def _first_difference(a: Any, b: Any, path: FieldPath) -> FieldPath:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key, _MISSING) != b.get(key, _MISSING):
                return _first_difference(a.get(key), b.get(key), (*path, key))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, (*path, i))
    return path


_MISSING = object()
