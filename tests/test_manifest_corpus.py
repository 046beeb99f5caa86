"""Round trips of the manifest writer over real third-party manifests.

The corpus (tests/data/corpus/, or the directory in CAPSIM_MANIFEST_CORPUS)
holds files and kustomization trees as their authors published them. Every
manifest file outside a kustomization tree, and every directory holding a
kustomization, is one case. `expectations.yaml` beside the corpus says what
the writer must do with a case when that is not the default (edit the first
tuned field found): edit a named field, or refuse with a reason. A case
without a tuned field and without an expectation fails, so nothing in the
corpus is skipped silently.

Expectation strings:
  "edit"                                     the first tuned field found
  "edit: Kind/name path[ = value]"           that field (inserted if absent)
  "refuse: reason"                           planning the auto-picked (or any) change fails
  "refuse: Kind/name path: reason"           planning a change to that field fails
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from sim.errors import InputError
from sim.k8s.kustomize import Resource, kustomization_file, load_manifests
from sim.k8s.writer import FieldChange, WritePlan, field_value, plan_changes

CORPUS = Path(os.environ.get("CAPSIM_MANIFEST_CORPUS") or Path(__file__).parent / "data" / "corpus")
INDEX = CORPUS / "expectations.yaml"

# The fields capsim tunes, in the order a case picks them; the first present one is changed.
TUNED: dict[str, tuple[str, ...]] = {
    "ScaledObject": (
        "spec.maxReplicaCount",
        "spec.pollingInterval",
        "spec.cooldownPeriod",
        "spec.triggers[0].metadata.threshold",
        "spec.triggers[0].metadata.value",
    ),
    "NodePool": ("spec.disruption.consolidateAfter", "spec.limits.cpu", "spec.weight"),
    # EC2NodeClass has nothing in capsim's search space; the root volume size stands in as a
    # numeric field a reviewer might see tuned, so the writer is exercised on that kind too.
    "EC2NodeClass": ("spec.blockDeviceMappings[0].ebs.volumeSize", "spec.kubelet.maxPods"),
}
PLACEHOLDER = re.compile(r"\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|<<[A-Z_]+>>")


def _in_kustomization_tree(path: Path) -> bool:
    return any(kustomization_file(d) is not None for d in path.parents if d.is_relative_to(CORPUS))


def cases() -> list[str]:
    found: list[str] = []
    for p in sorted(CORPUS.rglob("*")):
        tree = p.is_dir() and kustomization_file(p) is not None
        manifest = p.is_file() and p.suffix in (".yaml", ".yml") and p != INDEX
        if tree or (manifest and not _in_kustomization_tree(p)):
            found.append(str(p.relative_to(CORPUS)))
    return found


def expectations() -> dict[str, list[str]]:
    if not INDEX.exists():
        return {}
    raw = YAML(typ="safe").load(INDEX.read_text()) or {}
    return {str(k): v if isinstance(v, list) else [v] for k, v in raw.items()}


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bumped(value: Any, path: str) -> Any:
    """A different value of the same shape: the first number in it raised by one, `Never` a duration."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    text = str(value)
    if re.search(r"\d", text) is None:
        return "5m" if path.endswith(("consolidateAfter", "expireAfter")) else text + "x"
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 1), text, count=1)


def parse_target(spec: str, manifests: list[Resource]) -> tuple[Resource, str, Any]:
    """`Kind/name path[ = value]` against the built objects; the value defaults to the current one bumped."""
    ident, _, rest = spec.strip().partition(" ")
    kind, _, name = ident.partition("/")
    path, _, literal = rest.partition(" = ")
    (resource,) = [r for r in manifests if r.kind == kind and r.name == name]
    value = YAML(typ="safe").load(literal) if literal else bumped(field_value(resource, path.strip()), path)
    return resource, path.strip(), value


def auto_target(manifests: list[Resource]) -> tuple[Resource, str, Any] | None:
    for kind, paths in TUNED.items():
        for resource in (r for r in manifests if r.kind == kind):
            for path in paths:
                try:
                    current = field_value(resource, path)
                except InputError:
                    continue
                if current is not None:
                    return resource, path, bumped(current, path)
    return None


def change_for(resource: Resource, path: str, value: Any) -> FieldChange:
    return FieldChange(resource.api_version, resource.kind, resource.name, path, value, resource.namespace)


def copy_case(case: str, tmp: Path) -> Path:
    """The case's whole source repository directory, so `../` references of overlays still resolve."""
    top = Path(case).parts[0]
    shutil.copytree(CORPUS / top, tmp / top)
    return tmp / case


def check_lines(plan: WritePlan, key: str) -> None:
    """Every file the plan edits changes only the tuned field's line (or gains only inserted lines)."""
    for w in plan.files:
        if w.before is None:
            continue
        old, new = w.before.splitlines(keepends=True), w.after.splitlines(keepends=True)
        ops = [
            op
            for op in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
            if op[0] != "equal"
        ]
        assert ops, w.path
        kinds = {op[0] for op in ops}
        if kinds == {"insert"}:
            continue
        assert ops == [("replace", ops[0][1], ops[0][1] + 1, ops[0][3], ops[0][3] + 1)], (w.path, ops)
        before, after = old[ops[0][1]], new[ops[0][3]]
        at = before.find(f"{key}:")
        assert at >= 0, (before, key)
        assert after[: at + len(key) + 1] == before[: at + len(key) + 1]  # indentation and key kept
        assert before.endswith("\r\n") == after.endswith("\r\n")
        comment = re.search(r"\s#.*$", before.rstrip("\r\n"))
        if comment is not None:
            assert after.rstrip("\r\n").endswith(comment.group())
        for token in PLACEHOLDER.findall(w.before):
            assert w.before.count(token) == w.after.count(token), token


@pytest.mark.parametrize("case", cases())
def test_corpus_case(case: str, tmp_path: Path) -> None:
    root = copy_case(case, tmp_path)
    tree = tmp_path / Path(case).parts[0]
    for rule in expectations().get(case, ["edit"]):
        verb, _, arg = rule.partition(":")
        if verb == "refuse":
            check_refusal(root, tree, arg.strip())
        else:
            assert verb == "edit", rule
            check_edit(root, tree, arg.strip() or None)


def check_refusal(root: Path, tree: Path, arg: str) -> None:
    before = snapshot(tree)
    named = re.match(r"(\S+/\S+ \S+(?: = \S+)?): (.*)$", arg)
    with pytest.raises(InputError) as refused:
        try:
            manifests = load_manifests([root]).resources
        except InputError:  # the writer must refuse the same tree, with its own reason
            manifests = []
            plan_changes(
                root, [FieldChange("keda.sh/v1alpha1", "ScaledObject", "any", "spec.maxReplicaCount", 1)]
            )
        if named:
            resource, path, value = parse_target(named.group(1), manifests)
        else:
            picked = auto_target(manifests)
            assert picked is not None, "nothing tunable to attempt; name the field in expectations.yaml"
            resource, path, value = picked
        plan_changes(root, [change_for(resource, path, value)])
    reason = named.group(2) if named else arg
    assert reason in str(refused.value), str(refused.value)
    assert snapshot(tree) == before  # never mangled, nothing written


def check_edit(root: Path, tree: Path, spec: str | None) -> None:
    manifests = load_manifests([root]).resources
    target = parse_target(spec, manifests) if spec else auto_target(manifests)
    assert target is not None, "no tuned field in this case; add an expectation to expectations.yaml"
    resource, path, value = target
    current = field_value(resource, path)
    before = snapshot(tree)
    if current is not None:  # the same value again: nothing to write
        same = plan_changes(root, [change_for(resource, path, current)])
        assert same.files == ()
        same.apply()
        assert snapshot(tree) == before

    plan = plan_changes(root, [change_for(resource, path, value)])
    assert plan.files
    check_lines(plan, re.sub(r"(\[[^]]*\])+$", "", path.rsplit(".", 1)[-1]))
    plan.apply()
    after = snapshot(tree)
    written = {w.path: w.after.encode() for w in plan.files}
    assert {p for p in after if before.get(p) != after[p]} == set(written)
    assert all(after[p] == body for p, body in written.items())
    (rebuilt,) = [
        r for r in load_manifests([root]).resources if r.kind == resource.kind and r.name == resource.name
    ]
    want = str(value) if isinstance(current, str) and not isinstance(value, str) else value
    assert field_value(rebuilt, path) == want


def test_the_corpus_is_big_and_every_expectation_names_a_case() -> None:
    names = cases()
    assert len(names) >= 20 or "CAPSIM_MANIFEST_CORPUS" in os.environ
    assert set(expectations()) <= set(names), set(expectations()) - set(names)
