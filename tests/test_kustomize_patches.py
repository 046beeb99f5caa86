"""Kustomize patches as capsim applies them for reading: semantics, selectors, provenance, refusals."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from sim.errors import InputError
from sim.k8s.kustomize import load_manifests
from sim.k8s.patches import TracedDocument

DATA = Path(__file__).parent / "data" / "gitops" / "overlay"

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {tier: front}
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          image: example/app:1
          env:
            - {name: A, value: "1"}
            - {name: B, value: "2"}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
        - name: sidecar
          image: example/sidecar:1
"""

SCALEDOBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: web
  labels: {tier: front}
spec:
  scaleTargetRef: {name: web}
  maxReplicaCount: 10
  triggers:
    - type: prometheus
      name: rps
      metadata: {query: up, threshold: "40", serverAddress: "http://p:9090"}
    - type: cpu
      metricType: Utilization
      metadata: {value: "70"}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def tree(tmp_path: Path, kustomization: str, **files: str) -> Path:
    """An app directory with the two objects and a kustomization listing them (plus `files`)."""
    write(tmp_path / "app" / "deployment.yaml", DEPLOYMENT)
    write(tmp_path / "app" / "scaledobject.yaml", SCALEDOBJECT)
    write(
        tmp_path / "app" / "kustomization.yaml",
        "resources: [deployment.yaml, scaledobject.yaml]\n" + kustomization,
    )
    for name, text in files.items():
        write(tmp_path / "app" / ".".join(name.rsplit("_", 1)), text)  # p_yaml -> p.yaml
    return tmp_path / "app"


def built(root: Path, kind: str, name: str | None = None) -> Any:
    (resource,) = load_manifests([root]).find(kind, name)
    return resource.doc.plain()


def test_strategic_merge_maps_merge_and_null_deletes(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "patches:\n  - path: p.yaml\n",
        p_yaml="""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: null
          template:
            spec:
              containers:
                - name: app
                  resources:
                    requests: {cpu: 250m}
                    limits: {memory: 256Mi}
        """,
    )
    spec = built(root, "Deployment")["spec"]
    assert "replicas" not in spec
    app, sidecar = spec["template"]["spec"]["containers"]
    assert app["name"] == "app" and sidecar["name"] == "sidecar"  # merged by name, patched item first
    assert app["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert app["image"] == "example/app:1"


def test_merged_list_puts_the_patch_items_first_like_kustomize(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "patches:\n  - path: p.yaml\n",
        p_yaml="""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          template:
            spec:
              containers:
                - name: sidecar
                  image: example/sidecar:2
                - name: new
                  image: example/new:1
        """,
    )
    containers = built(root, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "new", "app"]
    assert containers[0]["image"] == "example/sidecar:2"


def test_custom_resource_lists_are_replaced_wholesale(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "patchesStrategicMerge:\n  - p.yaml\n",
        p_yaml="""
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata: {name: web}
        spec:
          triggers:
            - type: cpu
              metricType: Utilization
              metadata: {value: "50"}
        """,
    )
    assert built(root, "ScaledObject")["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}
    ]


def test_patch_directives(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "patches:\n  - path: p.yaml\n",
        p_yaml="""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          template:
            spec:
              containers:
                - name: sidecar
                  $patch: delete
                - name: app
                  resources:
                    $patch: replace
                    requests: {cpu: 1}
        """,
    )
    (app,) = built(root, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert app["resources"] == {"requests": {"cpu": 1}}


def test_inline_json6902_with_target_and_every_op(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        """
        patches:
          - target: {kind: ScaledObject, name: w.b}
            patch: |-
              - {op: test, path: /spec/maxReplicaCount, value: 10}
              - {op: replace, path: /spec/maxReplicaCount, value: 30}
              - {op: add, path: /spec/minReplicaCount, value: 2}
              - {op: copy, from: /spec/minReplicaCount, path: /spec/idleReplicaCount}
              - {op: move, from: /spec/idleReplicaCount, path: /spec/cooldownPeriod}
              - {op: remove, path: /spec/triggers/1}
              - op: add
                path: /spec/triggers/-
                value: {type: memory, metricType: Utilization, metadata: {value: "80"}}
              - {op: replace, path: /spec/triggers/0/metadata/threshold, value: "55"}
        """.replace("\n        ", "\n"),
    )
    spec = built(root, "ScaledObject")["spec"]
    assert spec["maxReplicaCount"] == 30
    assert spec["minReplicaCount"] == 2
    assert spec["cooldownPeriod"] == 2 and "idleReplicaCount" not in spec
    assert [t["type"] for t in spec["triggers"]] == ["prometheus", "memory"]
    assert spec["triggers"][0]["metadata"]["threshold"] == "55"


def test_a_failed_json6902_test_names_the_patch(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "patchesJson6902:\n  - target: {group: keda.sh, version: v1alpha1, kind: ScaledObject, name: web}\n"
        "    path: ops.json\n",
        ops_json='[{"op": "test", "path": "/spec/maxReplicaCount", "value": 11}]',
    )
    with pytest.raises(InputError, match="test failed") as err:
        load_manifests([root])
    assert err.value.file == tmp_path / "app" / "ops.json"


@pytest.mark.parametrize(
    ("target", "patched"),
    [
        ("{kind: Deployment}", {"Deployment"}),
        ("{labelSelector: tier=front}", {"Deployment", "ScaledObject"}),
        ("{labelSelector: 'tier in (back, middle)'}", set()),
        ("{group: apps, name: 'w.*'}", {"Deployment"}),
        ("{name: web, namespace: default}", {"Deployment", "ScaledObject"}),
        ("{name: we}", set()),  # anchored
    ],
)
def test_target_selectors(tmp_path: Path, target: str, patched: set[str]) -> None:
    root = tree(
        tmp_path,
        f"patches:\n  - target: {target}\n    patch: |-\n"
        "      - {op: add, path: /metadata/labels/hit, value: 'yes'}\n",
    )
    result = load_manifests([root])
    hits = {r.kind for r in result.resources if r.doc.get(("metadata", "labels", "hit")) == "yes"}
    assert hits == patched
    assert any("matches no object" in w for w in result.warnings) == (not patched)


def test_overlay_with_component_prefix_namespace_and_replicas() -> None:
    result = load_manifests([DATA / "overlays" / "prod"])
    names = sorted((r.kind, r.name, r.namespace) for r in result.resources)
    assert names == [
        ("Deployment", "prod-api", "prod"),
        ("NodePool", "prod-general", None),  # cluster-scoped: prefixed, not namespaced
        ("ScaledObject", "prod-api", "prod"),
    ]
    (so,) = result.find("ScaledObject")
    spec = so.doc.plain()["spec"]
    assert (spec["pollingInterval"], spec["cooldownPeriod"], spec["maxReplicaCount"]) == (10, 600, 40)
    assert result.find("Deployment")[0].doc.get(("spec", "replicas")) == 3
    assert any("images" in w for w in result.warnings)


def test_provenance_names_the_file_and_line_that_set_each_value() -> None:
    (so,) = load_manifests([DATA / "overlays" / "prod"]).find("ScaledObject")
    doc = so.doc
    assert isinstance(doc, TracedDocument)
    prod = DATA / "overlays" / "prod"

    def where(*path: str | int) -> tuple[str, int | None]:
        loc = doc.locate(path)
        return str(Path(loc.file).relative_to(DATA)), loc.line

    assert where("spec", "maxReplicaCount") == ("overlays/prod/scaledobject-patch.yaml", 6)
    assert where("spec", "pollingInterval") == ("components/fast-poll/kustomization.yaml", 12)
    assert where("spec", "cooldownPeriod") == ("overlays/prod/kustomization.yaml", 18)
    assert where("spec", "triggers", 0, "metadata", "threshold") == ("base/scaledobject.yaml", 17)
    assert where("spec", "advanced") == (
        "base/scaledobject.yaml",
        5,
    )  # absent: the closest parent that exists
    error = doc.error(("spec", "maxReplicaCount"), "too big")
    assert error.file == prod / "scaledobject-patch.yaml" and error.field == "spec.maxReplicaCount"


@pytest.mark.parametrize(
    ("kustomization", "field"),
    [
        ("replacements: []\n", "replacements"),
        ("helmCharts: []\n", "helmCharts"),
        ("vars: []\n", "vars"),
        ("configurations: [c.yaml]\n", "configurations"),
        ("nameSufix: -x\n", "nameSufix"),
    ],
)
def test_unsupported_fields_are_refused_by_name(tmp_path: Path, kustomization: str, field: str) -> None:
    root = tree(tmp_path, kustomization)
    with pytest.raises(InputError) as err:
        load_manifests([root])
    assert err.value.field == field and err.value.file == root / "kustomization.yaml"


def test_ignored_fields_are_reported_once(tmp_path: Path) -> None:
    root = tree(
        tmp_path, "images: [{name: example/app, newTag: '2'}]\nconfigMapGenerator: []\ncommonLabels: {a: b}\n"
    )
    (warning,) = load_manifests([root]).warnings
    assert "images, configMapGenerator, commonLabels" in warning


def test_a_patch_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "patches:\n  - path: p.yaml\n",
        p_yaml="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nope}\nspec: {replicas: 1}\n",
    )
    with pytest.raises(InputError, match="no object") as err:
        load_manifests([root])
    assert err.value.file == root / "p.yaml" and err.value.valid == "Deployment/web"


def test_components_must_be_components(tmp_path: Path) -> None:
    root = tree(tmp_path, "components: [comp]\n")
    write(root / "comp" / "kustomization.yaml", "kind: Kustomization\n")
    with pytest.raises(InputError, match="Component"):
        load_manifests([root])
    write(root / "comp" / "kustomization.yaml", "kind: Component\nnamespace: x\n")
    write(root / "kustomization.yaml", "resources: [comp]\n")
    with pytest.raises(InputError, match="only be listed under components"):
        load_manifests([root])
