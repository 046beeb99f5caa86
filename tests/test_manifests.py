"""Manifest loading: quantities, YAML positions, Kustomize trees, CRD validation, typed views."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sim.controllers.autoscaling import ScalingPolicy
from sim.errors import InputError
from sim.k8s.kustomize import load_manifests
from sim.k8s.quantity import QuantityError, cpu_millicores, memory_mib, parse_quantity
from sim.k8s.scaledobject import ScaledObjectManifest, scaled_object_from_resource
from sim.k8s.workload import workload_from_resource
from sim.k8s.yamlsource import format_path, load_documents, parse_path


def line_of(path: Path, text: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line of a file containing `text`."""
    hits = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if text in line]
    return hits[occurrence - 1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- quantities --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millicores"),
    [
        ("250m", 250.0),
        ("1.5", 1500.0),
        (2, 2000.0),
        (0.5, 500.0),
        ("1", 1000.0),
        ("100000u", 100.0),
        ("1e-1", 100.0),
    ],
)
def test_cpu_quantities(text: object, millicores: float) -> None:
    assert cpu_millicores(text) == pytest.approx(millicores)


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("512Mi", 512.0),
        ("1Gi", 1024.0),
        ("1G", 1e9 / 2**20),
        ("1024Ki", 1.0),
        ("1e6", 1e6 / 2**20),
        ("128M", 128e6 / 2**20),
    ],
)
def test_memory_quantities(text: str, mib: float) -> None:
    assert memory_mib(text) == pytest.approx(mib)


def test_quantities_are_exact_decimals() -> None:
    assert parse_quantity("1G") != parse_quantity("1Gi")
    assert str(parse_quantity("250m")) == "0.250"
    assert parse_quantity("2k") == 2000


@pytest.mark.parametrize("bad", ["", "Mi", "1.2.3", "12 Mi", "1mi", "1Kb", "half", "1e", True, None, [1]])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_negative_resource_amounts_are_rejected() -> None:
    assert parse_quantity("-1") == -1
    with pytest.raises(QuantityError, match="negative"):
        cpu_millicores("-100m")


# --- YAML positions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a", "spec.triggers[0].metadata.query", "x[1][2].y", "a.b-c.d_e"])
def test_field_paths_round_trip(text: str) -> None:
    assert format_path(parse_path(text)) == text


@pytest.mark.parametrize("bad", ["", ".a", "a.", "a..b", "a[x]", "a[1"])
def test_malformed_field_paths(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_path(bad)


def test_lines_are_absolute_across_documents_and_views(tmp_path: Path) -> None:
    path = write(
        tmp_path / "multi.yaml",
        """
        a: 1
        ---
        # second
        kind: X
        spec:
          items:
            - name: one
            - name: two
              value: 2
        """,
    )
    docs = load_documents(path)
    assert [d.index for d in docs] == [0, 1]
    second = docs[1]
    assert second.line_of(("kind",)) == 4
    assert second.line_of(("spec", "items", 1, "value")) == 9
    assert second.line_of(("spec", "items", 1, "missing")) == 8  # the deepest node that exists
    view = second.sub(("spec", "items", 1))
    assert view.field(("value",)) == "spec.items[1].value"
    assert view.line_of(("value",)) == 9


def test_multi_document_files_skip_empty_documents(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "---\n---\na: 1\n---\n")
    assert [d.plain() for d in load_documents(path)] == [{"a": 1}]


# --- Kustomize ---------------------------------------------------------------------------------------

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  template:
    spec:
      containers:
        - name: app
          image: example/app
"""


def test_kustomize_resources_recurse_through_directories(tmp_path: Path) -> None:
    write(
        tmp_path / "app" / "kustomization.yaml",
        """
        namespace: team-a
        resources:
          - base
          - extra.yaml
        patches:
          - path: patch.yaml
        images:
          - name: example/app
            newTag: "2"
        """,
    )
    write(tmp_path / "app" / "extra.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n")
    write(
        tmp_path / "app" / "patch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: one}\nspec: {replicas: 3}\n",
    )
    write(
        tmp_path / "app" / "base" / "kustomization.yml",
        """
        namespace: base-ns
        resources:
          - ../../shared/deeper
          - both.yaml
          - https://github.com/example/remote//config?ref=v1
        """,
    )
    write(
        tmp_path / "app" / "base" / "both.yaml",
        DEPLOYMENT.format(name="one") + "---\n" + DEPLOYMENT.format(name="two"),
    )
    write(tmp_path / "shared" / "deeper" / "Kustomization", "resources: [rgd.yaml]\ncommonLabels: {a: b}\n")
    write(
        tmp_path / "shared" / "deeper" / "rgd.yaml",
        "apiVersion: kro.run/v1alpha1\nkind: ResourceGraphDefinition\nmetadata: {name: webapp.kro.run}\n",
    )

    result = load_manifests([tmp_path / "app"])

    names = sorted((r.kind, r.name, r.namespace) for r in result.resources)
    assert names == [
        ("Deployment", "one", "team-a"),  # the outermost namespace wins, as with kustomize build
        ("Deployment", "two", "team-a"),
        ("ResourceGraphDefinition", "webapp.kro.run", None),  # cluster-scoped: left alone
        ("Service", "svc", "team-a"),
    ]
    two = result.find("Deployment", "two")[0]
    assert two.doc.index == 1
    assert two.doc.line_of(("metadata", "name")) == line_of(two.file, "name: two")
    assert result.find("Deployment", "one")[0].doc.get(("spec", "replicas")) == 3  # the patch applies
    assert len(result.files) == 7
    ignored = [w for w in result.warnings if "ignored kustomization field" in w]
    assert len(ignored) == 2  # app (images) and deeper (commonLabels), once each
    assert any("field(s) images " in w for w in ignored)
    assert any("remote resource" in w for w in result.warnings)


def test_kustomize_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a" / "kustomization.yaml", "resources: [../b]\n")
    write(tmp_path / "b" / "kustomization.yaml", "resources: [../a]\n")
    with pytest.raises(InputError, match="includes itself"):
        load_manifests([tmp_path / "a"])


def test_the_same_object_twice_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "k" / "kustomization.yaml", "resources: [a.yaml, b.yaml]\n")
    write(tmp_path / "k" / "a.yaml", DEPLOYMENT.format(name="web"))
    write(tmp_path / "k" / "b.yaml", DEPLOYMENT.format(name="web"))
    with pytest.raises(InputError, match="defined twice") as caught:
        load_manifests([tmp_path / "k"])
    assert caught.value.field == "metadata.name"


def test_directory_without_kustomization(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no kustomization"):
        load_manifests([tmp_path / "empty"])


def test_object_without_kind(tmp_path: Path) -> None:
    write(tmp_path / "x.yaml", "apiVersion: v1\nmetadata: {name: a}\n")
    with pytest.raises(InputError) as caught:
        load_manifests([tmp_path / "x.yaml"])
    assert caught.value.field == "kind"


# --- ScaledObject ------------------------------------------------------------------------------------

FULL_SCALEDOBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: web
  annotations:
    autoscaling.keda.sh/paused-replicas: "3"
    autoscaling.keda.sh/paused-scale-in: "true"
spec:
  scaleTargetRef:
    kind: StatefulSet
    name: web
  pollingInterval: 10
  cooldownPeriod: 120
  initialCooldownPeriod: 60
  idleReplicaCount: 0
  minReplicaCount: 2
  maxReplicaCount: 30
  fallback:
    failureThreshold: 3
    replicas: 6
    behavior: currentReplicasIfHigher
  advanced:
    scalingModifiers:
      formula: "rps / 2 + cpu"
      target: "50"
      activationTarget: "5"
      metricType: AverageValue
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          selectPolicy: Max
          policies:
            - {type: Pods, value: 4, periodSeconds: 15}
            - {type: Percent, value: 100, periodSeconds: 15}
        scaleDown:
          tolerance: 50m
  triggers:
    - type: prometheus
      name: rps
      metricType: Value
      useCachedMetrics: true
      metadata:
        serverAddress: http://prometheus:9090
        query: sum(rate(http_requests_total{job="web"}[1m]))
        threshold: "100.5"
        activationThreshold: "3"
    - type: cpu
      name: cpu
      metricType: Utilization
      metadata:
        value: "70"
"""


def _scaled_object(tmp_path: Path, text: str) -> ScaledObjectManifest:
    path = write(tmp_path / "so.yaml", text)
    return scaled_object_from_resource(load_manifests([path]).resources[0])


def test_scaledobject_maps_every_field(tmp_path: Path) -> None:
    loaded = _scaled_object(tmp_path, FULL_SCALEDOBJECT)
    spec = loaded.spec
    assert (spec.min_replica_count, spec.max_replica_count, spec.idle_replica_count) == (2, 30, 0)
    assert (spec.polling_interval_s, spec.cooldown_period_s, spec.initial_cooldown_period_s) == (10, 120, 60)
    assert spec.fallback is not None and spec.fallback.behavior == "currentReplicasIfHigher"
    assert spec.fallback.failure_threshold == 3 and spec.fallback.replicas == 6
    assert spec.scaling_modifiers is not None and spec.scaling_modifiers.target == "50"
    assert spec.behavior is not None and spec.behavior.scale_up is not None
    assert spec.behavior.scale_up.policies == (
        ScalingPolicy("Pods", 4, 15),
        ScalingPolicy("Percent", 100, 15),
    )
    assert (
        spec.behavior.scale_up.select_policy == "Max" and spec.behavior.scale_up.stabilization_window_s == 0
    )
    assert spec.behavior.scale_down is not None and spec.behavior.scale_down.tolerance == pytest.approx(0.05)
    assert spec.annotations.paused_replicas == 3 and spec.annotations.paused_scale_in
    assert not spec.annotations.paused and not spec.annotations.force_activation
    rps, cpu = spec.triggers
    assert rps.metric_type == "Value" and rps.use_cached_metrics and rps.metadata["threshold"] == "100.5"
    assert cpu.type == "cpu" and cpu.metric_type == "Utilization" and cpu.metadata == {"value": "70"}
    assert loaded.target.kind == "StatefulSet" and loaded.target.api_version == "apps/v1"
    assert set(loaded.queries) == {0}
    assert loaded.trigger_locations[0].field == "spec.triggers[0].metadata.query"
    assert loaded.trigger_locations[0].line == line_of(loaded.file, "query:")
    assert loaded.trigger_locations[1].field == "spec.triggers[1].metadata.value"
    assert loaded.trigger_locations[1].line == line_of(loaded.file, 'value: "70"')


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("    failureThreshold: 3\n", "", "spec.fallback", "'failureThreshold' is required"),
        ("behavior: currentReplicasIfHigher", "behavior: always", "spec.fallback.behavior", "is not one of"),
        (
            "metricType: AverageValue",
            "metricType: Utilization",
            "spec.advanced.scalingModifiers.metricType",
            "is not one of",
        ),
        ("      name: rps\n", "      name: rps\n      nme: x\n", "spec.triggers[0].nme", "unknown field"),
        ("cooldownPeriod: 120", "cooldownPeriod: 2m", "spec.cooldownPeriod", "is not of type 'integer'"),
        ("idleReplicaCount: 0", "idleReplicaCount: 2", "spec.idleReplicaCount", "lower than minReplicaCount"),
        (
            "selectPolicy: Max",
            "selectPolicy: Maximum",
            "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.selectPolicy",
            "selectPolicy",
        ),
        (
            "{type: Pods, value: 4, periodSeconds: 15}",
            "{type: Pods, value: 4, periodSeconds: 3600}",
            "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.policies[0].periodSeconds",
            "out of range",
        ),
        (
            "tolerance: 50m",
            "tolerance: lots",
            "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.tolerance",
            "does not match",
        ),
        (
            'paused-replicas: "3"',
            'paused-replicas: "three"',
            "metadata.annotations.autoscaling.keda.sh/paused-replicas",
            "replica count",
        ),
        ('value: "70"', 'value: "70%"', "spec.triggers[1].metadata.value", "utilisation percentage"),
        ("      metricType: Utilization\n", "", "spec.triggers[1].metricType", "needs metricType"),
        ("      name: cpu\n", "", "spec.triggers[1]", "every trigger needs a name"),
        ('threshold: "100.5"', 'threshold: "0"', "spec.triggers[0].metadata.threshold", "out of range"),
        (
            "      metricType: Value\n",
            "      metricType: Utilization\n",
            "spec.triggers[0].metricType",
            "not valid for a prometheus",
        ),
        ("apiVersion: keda.sh/v1alpha1", "apiVersion: keda.sh/v1", "apiVersion", "unsupported"),
    ],
)
def test_scaledobject_violations_are_located(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    assert old in FULL_SCALEDOBJECT
    with pytest.raises(InputError) as caught:
        _scaled_object(tmp_path, FULL_SCALEDOBJECT.replace(old, new, 1))
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.line is not None
    reported = (tmp_path / "so.yaml").read_text().splitlines()[caught.value.line - 1]
    key = field.rsplit(".", 1)[-1].split("[", maxsplit=1)[0]
    if key in new or key in ("fallback", "apiVersion"):
        assert key in reported  # the line of the offending key itself


def test_legacy_metadata_type_on_cpu_triggers(tmp_path: Path) -> None:
    text = FULL_SCALEDOBJECT.replace("      metricType: Utilization\n", "").replace(
        'value: "70"', 'type: AverageValue\n        value: "500m"'
    )
    assert _scaled_object(tmp_path, text).spec.triggers[1].metric_type == "AverageValue"


# --- Deployments -------------------------------------------------------------------------------------


def test_deployment_requests_and_limits_are_summed_per_pod(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.yaml",
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: prod}
        spec:
          replicas: 3
          template:
            metadata:
              labels: {app: web}
            spec:
              containers:
                - name: app
                  resources:
                    requests: {cpu: 500m, memory: 1Gi}
                    limits: {cpu: "2", memory: 1Gi}
                - name: sidecar
                  resources:
                    limits: {cpu: 100m, memory: 64Mi}   # requests default to the limits
        """,
    )
    view = workload_from_resource(load_manifests([path]).resources[0])
    assert (view.name, view.namespace, view.replicas, view.labels) == ("web", "prod", 3, {"app": "web"})
    assert view.cpu_request_millicores == pytest.approx(600.0)
    assert view.cpu_limit_millicores == pytest.approx(2100.0)
    assert view.memory_request_mib == pytest.approx(1088.0)
    assert view.memory_limit_mib == pytest.approx(1088.0)


def test_a_container_without_a_limit_leaves_the_pod_unbounded(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.yaml",
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          template:
            spec:
              containers:
                - {name: a, resources: {limits: {cpu: "1"}}}
                - {name: b}
        """,
    )
    view = workload_from_resource(load_manifests([path]).resources[0])
    assert view.cpu_limit_millicores is None
    assert view.cpu_request_millicores == pytest.approx(1000.0)
    assert view.memory_request_mib is None and view.replicas is None
