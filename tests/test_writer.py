"""Manifest writer: byte-for-byte edits, routing by provenance, validation before writing, atomic writes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import InputError
from sim.k8s import writer
from sim.k8s.kustomize import load_manifests
from sim.k8s.writer import FieldChange, Selector, field_value, parse_field_path, plan_changes
from sim.k8s.yamledit import YamlText

DATA = Path(__file__).parent / "data" / "gitops"
SO = "keda.sh/v1alpha1"


def so(name: str, path: str, value: Any, namespace: str | None = None) -> FieldChange:
    return FieldChange(SO, "ScaledObject", name, path, value, namespace)


def deploy(name: str, path: str, value: Any, namespace: str | None = None) -> FieldChange:
    return FieldChange("apps/v1", "Deployment", name, path, value, namespace)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(DATA, tmp_path / "gitops")
    return tmp_path / "gitops"


def read(path: Path) -> str:
    return path.read_bytes().decode()


def value_of(root: Path, kind: str, name: str, path: str) -> Any:
    (resource,) = load_manifests([root]).find(kind, name)
    return field_value(resource, path)


# --- golden: one value changes, every other byte stays -----------------------------------------------

# (file, change, text before, text after): the fragment is unique in the file.
EDITS = [
    (
        "scaledobject.yaml",
        so("styles", "spec.pollingInterval", 15),
        "Interval: 30      #",
        "Interval: 15      #",
    ),
    ("scaledobject.yaml", so("styles", "spec.cooldownPeriod", 120), "Period:    300", "Period:    120"),
    (
        "scaledobject.yaml",
        so("styles", "spec.maxReplicaCount", 25),
        "maxReplicaCount: 10",
        "maxReplicaCount: 25",
    ),
    ("scaledobject.yaml", so("styles", "spec.fallback.replicas", 8), "replicas: 6}", "replicas: 8}"),
    (
        "scaledobject.yaml",
        so("styles", "spec.triggers[0].metadata.threshold", 55),  # a number for a string field
        'threshold: "40"',
        'threshold: "55"',
    ),
    (
        "scaledobject.yaml",
        so("styles", "spec.triggers[name=rps].metadata.activationThreshold", "2.5"),
        "activationThreshold: '1.5'",
        "activationThreshold: '2.5'",
    ),
    (
        "scaledobject.yaml",
        so(
            "styles",
            "spec.triggers[0].metadata.query",
            'sum(rate(http_requests_total{service="styles"}[5m]))\n',
        ),
        "[2m]))",
        "[5m]))",
    ),
    (
        "scaledobject.yaml",
        so("styles", "spec.triggers[0].metadata.query", "sum(rate(x[1m]))"),  # no final newline: |- chomping
        'query: |\n          sum(rate(http_requests_total{service="styles"}[2m]))\n',
        "query: |-\n          sum(rate(x[1m]))\n",
    ),
    (
        "scaledobject.yaml",
        so("styles", "spec.triggers[1].metadata.value", 65),
        'value: "70"   ',
        'value: "65"   ',
    ),
    (
        "scaledobject.yaml",
        so("styles", "spec.advanced.restoreToOriginalReplicaCount", True),
        "OriginalReplicaCount: false",
        "OriginalReplicaCount: true",
    ),
    (
        "multi.yaml",
        deploy("multi", "spec.template.spec.containers[name=app].args[1]", "--port=9090"),
        "'--port=8080'",
        "'--port=9090'",
    ),
    (
        "multi.yaml",
        deploy("multi", "spec.template.spec.containers[name=app].resources.requests.cpu", "500m"),
        "cpu: 250m",
        "cpu: 500m",
    ),
    ("multi.yaml", so("multi", "spec.maxReplicaCount", 12), "maxReplicaCount: 8", "maxReplicaCount: 12"),
    ("multi.yaml", so("multi", "spec.triggers[0].metadata.value", 50.0), 'value: "60"', 'value: "50"'),
]

INSERTS = [
    (
        "scaledobject.yaml",
        so(
            "styles",
            "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds",
            60,
        ),
        "    restoreToOriginalReplicaCount: false\n",
        "    restoreToOriginalReplicaCount: false\n"
        "    horizontalPodAutoscalerConfig:\n"
        "      behavior:\n"
        "        scaleDown:\n"
        "          stabilizationWindowSeconds: 60\n",
    ),
    (
        "scaledobject.yaml",
        so("styles", "spec.fallback.behavior", "currentReplicas"),
        "replicas: 6}",
        "replicas: 6, behavior: currentReplicas}",
    ),
    (
        "scaledobject.yaml",
        so("styles", "spec.triggers[0].metadata.ignoreNullValues", "false"),
        "activationThreshold: '1.5'\n",
        "activationThreshold: '1.5'\n        ignoreNullValues: \"false\"\n",
    ),
    (
        "multi.yaml",
        deploy("multi", "spec.template.spec.containers[name=app].resources.limits", {"memory": "1Gi"}),
        "memory: 256Mi}\n",
        "memory: 256Mi}\n            limits:\n              memory: 1Gi\n",
    ),
]


def _golden(tree: Path, file: str, change: FieldChange, before: str, after: str, crlf: bool) -> None:
    path = tree / "styles" / file
    original = read(path)
    if crlf:
        original = original.replace("\n", "\r\n")
        before, after = before.replace("\n", "\r\n"), after.replace("\n", "\r\n")
        path.write_bytes(original.encode())
    assert original.count(before) == 1
    plan = plan_changes(path, [change])
    assert [f.path for f in plan.files] == [path]
    assert plan.files[0].after == original.replace(before, after)
    plan.apply()
    assert read(path) == original.replace(before, after)
    (resource,) = load_manifests([path]).find(change.kind, change.name)
    assert field_value(resource, change.path) is not None


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(
    ("file", "change", "before", "after"), EDITS + INSERTS, ids=lambda v: getattr(v, "path", None)
)
def test_only_the_value_changes(
    tree: Path, file: str, change: FieldChange, before: str, after: str, crlf: bool
) -> None:
    _golden(tree, file, change, before, after, crlf)


def test_setting_the_current_values_changes_nothing(tree: Path) -> None:
    path = tree / "styles" / "scaledobject.yaml"
    plan = plan_changes(
        path, [so("styles", "spec.maxReplicaCount", 10), so("styles", "spec.fallback", {"replicas": 6})]
    )
    assert plan.files == ()
    assert plan.diff() == ""


def test_several_inserts_under_one_new_mapping_share_it(tree: Path) -> None:
    path = tree / "styles" / "scaledobject.yaml"
    behavior = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
    plan = plan_changes(
        path,
        [
            so("styles", f"{behavior}.scaleDown.stabilizationWindowSeconds", 60),
            so(
                "styles",
                f"{behavior}.scaleUp.policies",
                [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            ),
        ],
    )
    plan.apply()
    data = (
        load_manifests([path]).resources[0].doc.plain()["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
    )
    assert data["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 60},
        "scaleUp": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
    }
    assert read(path).count("horizontalPodAutoscalerConfig:") == 1


def test_a_list_of_the_same_shape_is_edited_item_by_item(tree: Path) -> None:
    path = tree / "overlay" / "base" / "nodepool.yaml"
    change = FieldChange(
        "karpenter.sh/v1",
        "NodePool",
        "general",
        "spec.template.spec.requirements[key=karpenter.sh/capacity-type].values",
        ["spot", "spot"],
    )
    plan = plan_changes(path, [change])
    assert plan.files[0].after == read(path).replace('["spot", "on-demand"]', '["spot", "spot"]')


def test_field_paths() -> None:
    assert parse_field_path('spec.containers[name=app].resources["a.b/c"][0]') == (
        "spec",
        "containers",
        Selector("name", "app"),
        "resources",
        "a.b/c",
        0,
    )
    with pytest.raises(InputError, match="malformed"):
        parse_field_path("spec..x[")


# --- refusals: never mangle --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "change", "reason"),
    [
        (
            "styles/scaledobject.yaml",
            so("styles", "spec.triggers[0].metadata.serverAddress", "http://p:9090"),
            "placeholder",
        ),
        ("styles/scaledobject.yaml", so("styles", "metadata.annotations.owner", "team-b"), "placeholder"),
        ("refuse/helm.yaml", so("helm", "spec.maxReplicaCount", 6), "Helm"),
        ("refuse/anchor.yaml", so("anchor", "spec.minReplicaCount", 3), "anchor"),
        ("refuse/anchor.yaml", so("anchor", "spec.fallback.replicas", 3), "anchor"),
        ("refuse/duplicate.yaml", so("duplicate", "spec.maxReplicaCount", 7), "duplicate key"),
        ("styles/scaledobject.yaml", so("styles", "spec.maxReplicaCount", "lots"), "CRD"),
        ("styles/scaledobject.yaml", so("styles", "spec.pollingInterval", "fast"), "CRD"),
        ("styles/scaledobject.yaml", so("styles", "spec.triggers[name=nope].name", "x"), "0 items"),
        (
            "styles/scaledobject.yaml",
            so("nope", "spec.maxReplicaCount", 1),
            "no keda.sh/v1alpha1 ScaledObject",
        ),
    ],
)
def test_unsafe_or_invalid_edits_are_refused_with_nothing_written(
    tree: Path, file: str, change: FieldChange, reason: str
) -> None:
    before = {p: read(p) for p in tree.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match=reason):
        plan_changes(tree / file, [change])
    assert {p: read(p) for p in tree.rglob("*") if p.is_file()} == before


def test_an_invalid_change_names_the_field_and_what_is_valid(tree: Path) -> None:
    path = tree / "overlay" / "base" / "nodepool.yaml"
    change = FieldChange(
        "karpenter.sh/v1", "NodePool", "general", "spec.disruption.consolidationPolicy", "Sometimes"
    )
    with pytest.raises(InputError) as err:
        plan_changes(path, [change])
    assert err.value.field == "spec.disruption.consolidationPolicy"
    assert err.value.valid is not None and "WhenEmpty" in err.value.valid


# --- provenance: edit where the value is set, or add a patch to the overlay ------------------------------

PROD = Path("overlay/overlays/prod")


@pytest.mark.parametrize(
    ("change", "file", "how", "before", "after"),
    [
        # set by the overlay's own strategic-merge patch file
        (so("prod-api", "spec.maxReplicaCount", 60), "scaledobject-patch.yaml", "edited", "40   #", "60   #"),
        # set by an inline JSON 6902 patch inside the overlay's kustomization
        (
            so("prod-api", "spec.cooldownPeriod", 900),
            "kustomization.yaml",
            "edited",
            "value: 600",
            "value: 900",
        ),
        # set by the overlay's replicas field
        (deploy("prod-api", "spec.replicas", 5), "kustomization.yaml", "edited", "count: 3", "count: 5"),
        # absent everywhere, parent set by the overlay's patch: inserted there
    ],
)
def test_values_set_in_the_overlay_are_edited_where_they_are_set(
    tree: Path, change: FieldChange, file: str, how: str, before: str, after: str
) -> None:
    root = tree / PROD
    original = read(root / file)
    plan = plan_changes(root, [change])
    assert [(w.file.name, w.how) for w in plan.fields] == [(file, how)]
    assert [f.path for f in plan.files] == [root / file]
    assert plan.files[0].after == original.replace(before, after)
    plan.apply()
    assert value_of(root, change.kind, change.name, change.path) == change.value


@pytest.mark.parametrize(
    ("change", "patch_name", "body"),
    [
        (  # set only by the shared base: a strategic-merge patch in the overlay
            deploy("prod-api", "spec.template.spec.containers[name=app].resources.requests.cpu", "750m"),
            "api-deployment-patch.yaml",
            "spec:\n  template:\n    spec:\n      containers:\n        - name: app\n"
            "          resources:\n            requests:\n              cpu: 750m\n",
        ),
        (  # set by a component outside the overlay
            so("prod-api", "spec.pollingInterval", 20),
            "api-scaledobject-patch.yaml",
            "spec:\n  pollingInterval: 20\n",
        ),
        (  # inside a list kustomize replaces wholesale for custom resources: JSON 6902
            so("prod-api", "spec.triggers[0].metadata.threshold", 55),
            "api-scaledobject-patch.yaml",
            '- op: replace\n  path: /spec/triggers/0/metadata/threshold\n  value: "55"\n',
        ),
        (  # absent, parent from the base
            so(
                "prod-api",
                "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds",
                30,
            ),
            "api-scaledobject-patch.yaml",
            "spec:\n  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleDown:\n"
            "          stabilizationWindowSeconds: 30\n",
        ),
        (  # cluster-scoped, renamed by namePrefix
            FieldChange(
                "karpenter.sh/v1", "NodePool", "prod-general", "spec.disruption.consolidateAfter", "1m"
            ),
            "general-nodepool-patch.yaml",
            "spec:\n  disruption:\n    consolidateAfter: 1m\n",
        ),
    ],
)
def test_values_only_a_shared_base_sets_go_into_a_new_overlay_patch(
    tree: Path, change: FieldChange, patch_name: str, body: str
) -> None:
    root = tree / PROD
    base_files = {p: read(p) for p in (tree / "overlay" / "base").iterdir()}
    kustomization = read(root / "kustomization.yaml")
    plan = plan_changes(root, [change])
    assert [(w.file.name, w.how) for w in plan.fields] == [(patch_name, "patch")]
    new = {f.path.name: f for f in plan.files}
    assert new[patch_name].before is None
    assert new[patch_name].after.endswith(body)
    group, _, version = change.api_version.rpartition("/")
    name = change.name.removeprefix("prod-")
    entry = f"  - path: {patch_name}\n    target:\n      group: {group}\n      version: {version}\n"
    entry += f"      kind: {change.kind}\n      name: {name}\n"
    # The kustomization gains only the new entry, after the existing patches.
    last = "        value: 600\n"
    assert new["kustomization.yaml"].after == kustomization.replace(last, last + entry)
    plan.apply()
    assert value_of(root, change.kind, change.name, change.path) == (
        str(change.value) if change.path.endswith("threshold") else change.value
    )
    assert {p: read(p) for p in (tree / "overlay" / "base").iterdir()} == base_files
    # The next tuning run finds the value in the overlay's own patch and edits it there.
    again = plan_changes(
        root, [FieldChange(change.api_version, change.kind, change.name, change.path, change.value)]
    )
    assert again.files == ()


def test_an_overlay_without_patches_gets_a_patches_field(tree: Path) -> None:
    root = tree / "overlay" / "overlays" / "dev"
    kustomization = read(root / "kustomization.yaml")
    plan = plan_changes(root, [so("api", "spec.maxReplicaCount", 4)])
    after = {f.path.name: f.after for f in plan.files}["kustomization.yaml"]
    assert after == kustomization + (
        "patches:\n- path: api-scaledobject-patch.yaml\n  target:\n    group: keda.sh\n"
        "    version: v1alpha1\n    kind: ScaledObject\n    name: api\n"
    )
    plan.apply()
    assert value_of(root, "ScaledObject", "api", "spec.maxReplicaCount") == 4
    assert (
        value_of(tree / PROD, "ScaledObject", "prod-api", "spec.maxReplicaCount") == 40
    )  # other overlay untouched


# --- atomic writes -----------------------------------------------------------------------------------


def test_a_failure_mid_write_leaves_every_file_as_it_was(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree / PROD
    before = {p: read(p) for p in tree.rglob("*") if p.is_file()}
    plan = plan_changes(
        root,
        [
            so("prod-api", "spec.maxReplicaCount", 60),  # scaledobject-patch.yaml
            deploy("prod-api", "spec.replicas", 5),  # kustomization.yaml
            so("prod-api", "spec.pollingInterval", 20),  # a new patch file
        ],
    )
    assert len(plan.files) == 3
    real_replace = os.replace
    calls = []

    def failing_replace(src: str, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        plan.apply()
    monkeypatch.setattr(writer.os, "replace", real_replace)
    assert {p: read(p) for p in tree.rglob("*") if p.is_file()} == before  # no temp files left either


def test_a_file_changed_after_planning_is_not_overwritten(tree: Path) -> None:
    path = tree / "styles" / "multi.yaml"
    plan = plan_changes(path, [so("multi", "spec.maxReplicaCount", 12)])
    path.write_text(read(path) + "\n# edited by someone else\n")
    with pytest.raises(InputError, match="changed since"):
        plan.apply()


# --- property: requested values read back, only their lines change --------------------------------------

FIELDS: list[tuple[str, FieldChange, st.SearchStrategy[Any]]] = [
    ("styles/scaledobject.yaml", so("styles", "spec.pollingInterval", 0), st.integers(1, 600)),
    ("styles/scaledobject.yaml", so("styles", "spec.cooldownPeriod", 0), st.integers(0, 3600)),
    ("styles/scaledobject.yaml", so("styles", "spec.minReplicaCount", 0), st.integers(0, 5)),
    ("styles/scaledobject.yaml", so("styles", "spec.maxReplicaCount", 0), st.integers(6, 500)),
    ("styles/scaledobject.yaml", so("styles", "spec.fallback.replicas", 0), st.integers(1, 50)),
    (
        "styles/scaledobject.yaml",
        so("styles", "spec.triggers[0].metadata.threshold", 0),
        st.integers(1, 10**6),
    ),
    (
        "styles/scaledobject.yaml",
        so("styles", "spec.triggers[0].metadata.activationThreshold", 0),
        st.decimals(0, 100, places=2).map(str),
    ),
    (
        "styles/scaledobject.yaml",
        so("styles", "spec.triggers[1].metadata.value", 0),
        st.integers(1, 100).map(str),
    ),
    (
        "styles/scaledobject.yaml",
        so("styles", "spec.advanced.restoreToOriginalReplicaCount", 0),
        st.booleans(),
    ),
    (
        "styles/multi.yaml",
        deploy("multi", "spec.template.spec.containers[name=app].resources.requests.cpu", 0),
        st.integers(10, 4000).map(lambda m: f"{m}m"),
    ),
    (
        "styles/multi.yaml",
        deploy("multi", "spec.template.spec.containers[name=app].args[0]", 0),
        st.text("abcxyz-=:/#' \"", min_size=1, max_size=12),
    ),
    ("styles/multi.yaml", so("multi", "spec.maxReplicaCount", 0), st.integers(1, 100)),
]


@st.composite
def edits(draw: st.DrawFn) -> list[tuple[str, FieldChange]]:
    chosen = draw(st.lists(st.sampled_from(range(len(FIELDS))), min_size=1, max_size=5, unique=True))
    out = []
    for i in chosen:
        file, change, values = FIELDS[i]
        out.append(
            (file, FieldChange(change.api_version, change.kind, change.name, change.path, draw(values)))
        )
    return out


@settings(max_examples=20, deadline=None)
@given(edits(), st.booleans())
def test_applied_values_read_back_and_only_their_lines_change(
    changes: list[tuple[str, FieldChange]], crlf: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("scaledobject.yaml", "multi.yaml"):
            text = read(DATA / "styles" / name)
            (root / "styles").mkdir(exist_ok=True)
            (root / "styles" / name).write_bytes((text.replace("\n", "\r\n") if crlf else text).encode())
        files = sorted({file for file, _ in changes})
        before = {file: read(root / file) for file in files}
        expected_lines: dict[str, set[int]] = {file: set() for file in files}
        for file, change in changes:
            (resource,) = load_manifests([root / file]).find(change.kind, change.name)
            path = writer._resolve(change, resource.doc.plain())
            node = YamlText(root / file, before[file]).find(resource.doc.index, path).node
            expected_lines[file].add(node.start_mark.line)
        for file in files:
            plan_changes(root / file, [c for f, c in changes if f == file]).apply()
        for file, change in changes:
            want = change.value
            if change.path.endswith("threshold"):
                want = str(want)  # a number written into a string field stays a string
            assert value_of(root / file, change.kind, change.name, change.path) == want
        for file in files:
            old, new = before[file].splitlines(keepends=True), read(root / file).splitlines(keepends=True)
            assert len(old) == len(new)
            assert all(o.endswith("\r\n") == crlf for o in new if o.endswith("\n"))
            changed = {i for i, (o, n) in enumerate(zip(old, new, strict=True)) if o != n}
            assert changed <= expected_lines[file]
