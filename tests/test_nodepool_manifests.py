"""NodePools, EC2NodeClasses, pod scheduling fields and PDBs loaded from a GitOps tree into the scenario."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from sim.controllers.karpenter.types import (
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_CATEGORY,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GENERATION,
    LABEL_NODEPOOL,
    LABEL_ZONE,
    Budget,
    Operator,
    Taint,
    Toleration,
)
from sim.errors import InputError
from sim.k8s.nodepool import cron_problem, go_duration_s, requirement_allows
from sim.scenario import LoadedScenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).parent / "data" / "bad" / "_app"

NODECLASS = """\
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  role: KarpenterNodeRole
  amiSelectorTerms:
    - alias: al2023@latest
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: test}
  securityGroupSelectorTerms:
    - tags: {karpenter.sh/discovery: test}
"""

POOL = """\
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: general
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
"""

SERVICE = """\
  - name: api
    manifests: app
    traffic: {kind: constant, rps: 50}
    model:
      workers: 4
      service_time: {distribution: exponential, mean: 50ms}
"""


def _scenario(
    tmp_path: Path,
    pools: str = POOL,
    nodeclass: str = NODECLASS,
    cluster: str = "",
    app: Path | None = APP,
    services: str = SERVICE,
) -> Path:
    tree = tmp_path / "k8s"
    tree.mkdir()
    (tree / "nodeclass.yaml").write_text(nodeclass)
    (tree / "nodepools.yaml").write_text(pools)
    (tree / "kustomization.yaml").write_text("resources: [nodeclass.yaml, nodepools.yaml]\n")
    if app is not None:
        (tmp_path / "app").symlink_to(app)
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "horizon: 1h\nstep: 5s\ngitops_root: .\ncluster:\n  nodepools: k8s\n"
        + textwrap.indent(textwrap.dedent(cluster), "  ")
        + "services:\n"
        + services
    )
    return path


def _load(tmp_path: Path, **kwargs: str) -> LoadedScenario:
    return load_scenario(_scenario(tmp_path, **kwargs))


def _error(tmp_path: Path, **kwargs: str) -> InputError:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, **kwargs)
    return caught.value


def _pool_with(requirements: str, spec: str = "", template: str = "", name: str = "general") -> str:
    body = f"""\
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: {name}
spec:
{textwrap.indent(textwrap.dedent(spec), "  ")}  template:
{textwrap.indent(textwrap.dedent(template), "    ")}    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      requirements:
{textwrap.indent(textwrap.dedent(requirements), "        ")}"""
    return body


# --- NodePools ---------------------------------------------------------------------------------------


def test_every_operator_and_min_values(tmp_path: Path) -> None:
    pools = _pool_with(
        """\
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
        - {key: karpenter.k8s.aws/instance-category, operator: NotIn, values: [t, x]}
        - {key: karpenter.k8s.aws/instance-family, operator: Exists, minValues: 3}
        - {key: karpenter.k8s.aws/instance-gpu-count, operator: DoesNotExist}
        - {key: karpenter.k8s.aws/instance-generation, operator: Gt, values: ["5"]}
        - {key: karpenter.k8s.aws/instance-cpu, operator: Lt, values: ["64"]}
        - {key: karpenter.k8s.aws/instance-cpu, operator: Gte, values: ["2"]}
        - {key: karpenter.k8s.aws/instance-memory, operator: Lte, values: ["65536"]}
        - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a, us-east-1b], minValues: 2}
        """
    )
    scenario = _load(tmp_path, pools=pools)
    assert scenario.cluster is not None
    (pool,) = scenario.cluster.node_pools
    ops = [(r.key, r.operator, r.values, r.min_values) for r in pool.requirements]
    assert ops == [
        (LABEL_CAPACITY_TYPE, Operator.IN, ("spot", "on-demand"), None),
        (LABEL_INSTANCE_CATEGORY, Operator.NOT_IN, ("t", "x"), None),
        (LABEL_INSTANCE_FAMILY, Operator.EXISTS, (), 3),
        ("karpenter.k8s.aws/instance-gpu-count", Operator.DOES_NOT_EXIST, (), None),
        (LABEL_INSTANCE_GENERATION, Operator.GT, ("5",), None),
        (LABEL_INSTANCE_CPU, Operator.LT, ("64",), None),
        (LABEL_INSTANCE_CPU, Operator.GTE, ("2",), None),
        ("karpenter.k8s.aws/instance-memory", Operator.LTE, ("65536",), None),
        (LABEL_ZONE, Operator.IN, ("us-east-1a", "us-east-1b"), 2),
    ]
    types = {it.name: it for it in scenario.cluster.instance_types_for(pool)}
    allowed = {
        name for name, it in types.items() if all(requirement_allows(r, it) for r in pool.requirements)
    }
    assert "m6i.large" in allowed  # gen 6 > 5, 2 vCPU >= 2
    assert "m5.large" not in allowed  # gen 5 is not > 5
    assert "m6i.16xlarge" not in allowed  # 64 vCPU is not < 64
    assert "m6i.4xlarge" in allowed and "m6i.8xlarge" not in allowed  # 64 GiB <= 65536 MiB < 128 GiB
    assert "t3.large" not in allowed and "g5.xlarge" not in allowed


def test_defaults_follow_the_crd(tmp_path: Path) -> None:
    scenario = _load(tmp_path)
    assert scenario.cluster is not None
    (pool,) = scenario.cluster.node_pools
    assert pool.weight == 0
    assert pool.consolidation_policy == "WhenEmptyOrUnderutilized"
    assert pool.consolidate_after_s == 0.0
    assert pool.budgets == (Budget(nodes="10%"),)
    assert pool.expire_after_s == 720 * 3600
    assert pool.limits is None
    assert pool.node_class == "default"


def test_never_values_budgets_limits_taints_and_weight(tmp_path: Path) -> None:
    pools = _pool_with(
        "- {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n",
        spec="""\
        weight: 60
        limits: {cpu: "100", memory: 400Gi, nodes: "20"}
        disruption:
          consolidationPolicy: WhenEmpty
          consolidateAfter: Never
          budgets:
            - nodes: "20%"
            - nodes: "3"
              reasons: [Drifted]
            - nodes: "0"
              schedule: "@daily"
              duration: 1h30m
              reasons: [Underutilized, Empty]
        """,
        template="""\
        metadata:
          labels: {team: shop}
        """,
    ).replace(
        "      requirements:",
        "      expireAfter: Never\n      terminationGracePeriod: 2h\n"
        "      taints:\n        - {key: spot, value: 'true', effect: NoSchedule}\n"
        "      startupTaints:\n        - {key: node.cilium.io/agent-not-ready, effect: NoExecute}\n"
        "      requirements:",
    )
    scenario = _load(tmp_path, pools=pools)
    assert scenario.cluster is not None
    (pool,) = scenario.cluster.node_pools
    assert pool.weight == 60
    assert pool.limits == {"cpu": 100_000.0, "memory": 400 * 1024.0, "nodes": 20.0}
    assert pool.consolidation_policy == "WhenEmpty"
    assert pool.consolidate_after_s is None
    assert pool.expire_after_s is None
    assert pool.termination_grace_period_s == 7200.0
    assert pool.budgets == (
        Budget(nodes="20%"),
        Budget(nodes=3, reasons=("Drifted",)),
        Budget(nodes=0, schedule="@daily", duration_s=5400.0, reasons=("Underutilized", "Empty")),
    )
    assert pool.labels == {"team": "shop"}
    assert pool.taints == (Taint("spot", "NoSchedule", "true"),)
    assert pool.startup_taints == (Taint("node.cilium.io/agent-not-ready", "NoExecute"),)


def test_demo_pools_load_with_their_weights(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "shared-nodes.yaml")
    assert scenario.cluster is not None
    pools = {p.name: p for p in scenario.cluster.node_pools}
    assert pools["spot"].weight > pools["on-demand"].weight
    assert {r.key: r.values for r in pools["spot"].requirements}[LABEL_CAPACITY_TYPE] == ("spot",)
    assert {b.reasons for b in pools["on-demand"].budgets} == {(), ("Underutilized",)}
    assert {bg.name for bg in scenario.cluster.background} == {"checkout"}


# --- EC2NodeClass ------------------------------------------------------------------------------------


def test_kubelet_settings_that_change_allocatable_are_applied(tmp_path: Path) -> None:
    nodeclass = NODECLASS + (
        "  kubelet:\n"
        "    maxPods: 20\n"
        "    systemReserved: {cpu: 100m, memory: 100Mi}\n"
        "    kubeReserved: {cpu: 200m}\n"
        "    evictionHard: {memory.available: 5%}\n"
        "  blockDeviceMappings:\n"
        "    - {deviceName: /dev/xvda, rootVolume: true, ebs: {volumeSize: 80Gi}}\n"
    )
    scenario = _load(tmp_path, nodeclass=nodeclass)
    assert scenario.cluster is not None
    m5 = next(it for it in scenario.cluster.instance_types["default"] if it.name == "m5.xlarge")
    assert m5.capacity.pods == 20
    assert m5.allocatable.cpu_millicores == 4000 - 200 - 100
    # memory: 15155 Mi capacity - kube-reserved 893 (ENI pods, not maxPods) - 100 - ceil(5% of capacity)
    assert m5.allocatable.memory_mib == pytest.approx(15155 - 893 - 100 - 15155 * 0.05, abs=1 / 1024)
    assert m5.capacity.ephemeral_storage_mib == 80 * 1024


def test_ignored_fields_are_reported_once(tmp_path: Path) -> None:
    nodeclass = NODECLASS + "  userData: |\n    echo hello\n  kubelet:\n    imageGCHighThresholdPercent: 85\n"
    services = SERVICE + SERVICE.replace("name: api", "name: api-two")
    scenario = _load(tmp_path, nodeclass=nodeclass, services=services)
    notes = [w for w in scenario.warnings if "EC2NodeClass/default" in w]
    assert len(notes) == 1
    for name in (
        "spec.userData",
        "spec.role",
        "spec.subnetSelectorTerms",
        "spec.kubelet.imageGCHighThresholdPercent",
    ):
        assert name in notes[0]
    assert "spec.kubelet.maxPods" not in notes[0]


def test_ami_family_from_alias_and_windows(tmp_path: Path) -> None:
    nodeclass = NODECLASS.replace("al2023@latest", "windows2022@latest")
    scenario = _load(tmp_path, nodeclass=nodeclass)
    assert scenario.cluster is not None
    types = scenario.cluster.instance_types["default"]
    assert {it.labels["kubernetes.io/os"] for it in types} == {"windows"}
    assert {it.capacity.pods for it in types} == {110.0}


def test_well_known_labels_without_catalog_data_are_ignored_not_rejected(tmp_path: Path) -> None:
    pools = _pool_with(
        "- {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n"
        "- {key: karpenter.k8s.aws/instance-tenancy, operator: In, values: [default]}\n"
        "- {key: topology.k8s.aws/zone-id, operator: In, values: [use1-az1]}\n"
        "- {key: team, operator: In, values: [shop]}\n"
    )
    scenario = _load(tmp_path, pools=pools)
    assert scenario.cluster is not None
    (pool,) = scenario.cluster.node_pools
    assert [r.key for r in pool.requirements] == [LABEL_CAPACITY_TYPE, "team"]
    (note,) = [w for w in scenario.warnings if "NodePool/general" in w]
    assert "requirements[1]" in note and "requirements[2]" in note and "requirements[3]" not in note


# --- bad manifests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "field", "message"),
    [
        (
            "- {key: karpenter.sh/capacity-type, operator: Matches, values: [spot]}\n",
            "[0].operator",
            "Matches",
        ),
        ("- {key: karpenter.k8s.aws/instance-cpu, operator: Gt, values: ['4.5']}\n", "[0].values", "integer"),
        (
            "- {key: karpenter.k8s.aws/instance-cpu, operator: Lte, values: ['2', '4']}\n",
            "[0].values",
            "single",
        ),
        ("- {key: kubernetes.io/arch, operator: In, values: []}\n", "[0]", "at least one value"),
        (
            "- {key: kubernetes.io/arch, operator: In, values: [amd64], minValues: 2}\n",
            "[0].minValues",
            "minValues 2",
        ),
        (
            "- {key: karpenter.sh/capacity-type, operator: In, values: [ondemand]}\n",
            "[0].values",
            "capacity type",
        ),
        ("- {key: kubernetes.io/hostname, operator: Exists}\n", "[0].key", "restricted"),
        ("- {key: karpenter.k8s.aws/instance-fam, operator: Exists}\n", "[0].key", "restricted"),
        ("- {key: karpenter.k8s.aws/instance-category, operator: In, values: [zz]}\n", "[0]", "general"),
    ],
)
def test_requirements_karpenter_would_reject(
    tmp_path: Path, requirements: str, field: str, message: str
) -> None:
    error = _error(tmp_path, pools=_pool_with(requirements))
    assert error.file is not None and Path(error.file).name == "nodepools.yaml"
    assert error.field == "spec.template.spec.requirements" + field
    assert error.line is not None
    assert message in error.message + (error.valid or "")


def test_unsatisfiable_pool_names_the_pool_and_the_values_left(tmp_path: Path) -> None:
    error = _error(
        tmp_path,
        pools=_pool_with(
            "- {key: karpenter.k8s.aws/instance-category, operator: In, values: [t]}\n"
            "- {key: karpenter.k8s.aws/instance-cpu, operator: Gte, values: ['64']}\n",
            name="burst",
        ),
    )
    assert "NodePool burst" in error.message
    assert error.field == "spec.template.spec.requirements[1]"
    assert error.valid is not None and "2, 4, 8" in error.valid


def test_zone_outside_the_scenarios_zones_is_unsatisfiable(tmp_path: Path) -> None:
    error = _error(
        tmp_path,
        pools=_pool_with("- {key: topology.kubernetes.io/zone, operator: In, values: [eu-west-1a]}\n"),
    )
    assert "no instance type satisfies" in error.message
    assert error.valid is not None and "us-east-1a" in error.valid


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            "disruption:\n  budgets:\n    - {nodes: '1', duration: 1h}\n",
            "spec.disruption.budgets[0]",
            "schedule",
        ),
        (
            "disruption:\n  budgets:\n    - {nodes: '1', schedule: '0 25 * * *', duration: 1h}\n",
            "spec.disruption.budgets[0].schedule",
            "hour",
        ),
        ("disruption:\n  budgets:\n    - {nodes: '150%'}\n", "spec.disruption.budgets[0].nodes", "match"),
        ("disruption:\n  consolidateAfter: 10 minutes\n", "spec.disruption.consolidateAfter", "match"),
        ("disruption:\n  consolidationPolicy: Always\n", "spec.disruption.consolidationPolicy", "Always"),
        ("weight: 101\n", "spec.weight", "101"),
        ("replicas: 3\n", "spec.replicas", "static"),
        ("limits: {cpu: lots}\n", "spec.limits.cpu", "match"),
    ],
)
def test_pool_fields_karpenter_would_reject(tmp_path: Path, spec: str, field: str, message: str) -> None:
    pools = _pool_with("- {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n", spec=spec)
    error = _error(tmp_path, pools=pools)
    assert error.field == field
    assert error.line is not None
    assert message in error.message


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("  role: KarpenterNodeRole\n", "", "spec", "exactly one of"),
        ("  role: KarpenterNodeRole\n", "  role: r\n  instanceProfile: p\n", "spec", "exactly one of"),
        ("alias: al2023@latest", "alias: ubuntu@latest", "spec.amiSelectorTerms[0].alias", "ubuntu"),
        ("  role: KarpenterNodeRole\n", "  role: r\n  amiFamily: Bottlerocket\n", "spec.amiFamily", "alias"),
        (
            "  role: KarpenterNodeRole\n",
            "  role: r\n  kubelet: {maxPods: many}\n",
            "spec.kubelet.maxPods",
            "NodeClassCEL",
        ),
        (
            "  role: KarpenterNodeRole\n",
            "  role: r\n  kubelet: {kubeReserved: {gpu: '1'}}\n",
            "spec.kubelet.kubeReserved.gpu",
            "cannot be reserved",
        ),
        (
            "  role: KarpenterNodeRole\n",
            "  role: r\n  kubelet: {evictionHard: {memory.free: 1Gi}}\n",
            "spec.kubelet.evictionHard.memory.free",
            "unknown eviction signal",
        ),
    ],
)
def test_node_classes_karpenter_would_reject(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    assert old in NODECLASS
    error = _error(tmp_path, nodeclass=NODECLASS.replace(old, new))
    assert error.file is not None and Path(error.file).name == "nodeclass.yaml"
    assert error.field == field
    assert message in error.message


def test_cluster_block_errors_point_at_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    error = _error(
        tmp_path / "a",
        cluster="background:\n  - {name: batch, nodepool: gpu, cpu: 1, memory: 1Gi, replicas: 2}\n",
    )
    assert error.field == "cluster.background[0].nodepool"
    assert error.valid == "general"
    error = _error(tmp_path / "b", cluster="daemonsets:\n  - {name: agent, cpu: 10m, nodepools: [gpu]}\n")
    assert error.field == "cluster.daemonsets[0].nodepools[0]"


def test_a_pod_no_pool_can_hold_is_not_a_load_error(tmp_path: Path) -> None:
    app = tmp_path / "huge"
    app.mkdir()
    for f in APP.iterdir():
        (app / f.name).write_text(f.read_text().replace("cpu: 250m", "cpu: '500'"))
    scenario = _load(tmp_path, app=app)
    assert scenario.cluster is not None
    assert scenario.cluster.pods["api"].spec.requests.cpu_millicores == 500_000


# --- pods, PDBs, background ---------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api, tier: web}
      annotations: {karpenter.sh/do-not-disrupt: "30m"}
    spec:
      priorityClassName: high
      nodeSelector: {beta.kubernetes.io/arch: amd64}
      tolerations:
        - {key: spot, operator: Equal, value: "true", effect: NoSchedule}
        - {operator: Exists, effect: NoExecute, tolerationSeconds: 300}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
              - matchExpressions:
                  - {key: karpenter.k8s.aws/instance-category, operator: In, values: [m]}
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 50
              preference:
                matchExpressions:
                  - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: api}}}
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 10
              podAffinityTerm:
                {topologyKey: topology.kubernetes.io/zone, labelSelector: {matchLabels: {app: api}}}
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
           labelSelector: {matchLabels: {app: api}}, minDomains: 3}
        - {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
           labelSelector: {matchLabels: {app: api}}}
      initContainers:
        - {name: migrate, image: example/migrate:1, resources: {requests: {cpu: "2", memory: 64Mi}}}
        - name: proxy
          image: example/proxy:1
          restartPolicy: Always
          resources: {requests: {cpu: 100m, memory: 32Mi}}
      containers:
        - name: api
          image: example/api:1.0
          ports: [{containerPort: 8080, hostPort: 9100}]
          resources:
            requests: {cpu: 250m, memory: 256Mi, nvidia.com/gpu: "1"}
            limits: {cpu: "1", memory: 512Mi, nvidia.com/gpu: "1"}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: api
spec:
  maxUnavailable: 25%
  selector:
    matchLabels: {app: api}
"""


def _app_with(tmp_path: Path, deployment: str) -> Path:
    app = tmp_path / "app-src"
    app.mkdir()
    (app / "deployment.yaml").write_text(deployment)
    (app / "scaledobject.yaml").write_text((APP / "scaledobject.yaml").read_text())
    (app / "kustomization.yaml").write_text(
        "namespace: shop\nresources: [deployment.yaml, scaledobject.yaml]\n"
    )
    return app


def test_pod_scheduling_fields_from_the_deployment(tmp_path: Path) -> None:
    scenario = _load(tmp_path, app=_app_with(tmp_path, DEPLOYMENT))
    assert scenario.cluster is not None
    template = scenario.cluster.pods["api"]
    pod = template.spec
    assert template.images == ("example/api:1.0",)
    # max(app 250m + sidecar 100m, init 2000m + sidecars started before it (none)) = 2000m
    assert pod.requests.cpu_millicores == 2000
    assert pod.requests.memory_mib == 288  # 256 + 32 beats 64
    assert pod.requests.extended == {"nvidia.com/gpu": 1.0}
    assert pod.labels == {"app": "api", "tier": "web"}
    assert pod.node_selector == {"kubernetes.io/arch": "amd64"}
    assert pod.tolerations == (
        Toleration("spot", "Equal", "true", "NoSchedule"),
        Toleration(None, "Exists", "", "NoExecute"),
    )
    assert [[(r.key, r.values) for r in term] for term in pod.required_affinity] == [
        [(LABEL_CAPACITY_TYPE, ("spot",))],
        [(LABEL_INSTANCE_CATEGORY, ("m",))],
    ]
    assert pod.preferred_affinity[0].weight == 50
    assert [
        (t.topology_key, t.max_skew, t.when_unsatisfiable, t.min_domains) for t in pod.topology_spread
    ] == [
        (LABEL_ZONE, 1, "DoNotSchedule", 3),
        ("kubernetes.io/hostname", 2, "ScheduleAnyway", None),
    ]
    assert [(a.topology_key, a.weight) for a in pod.anti_affinity] == [
        ("kubernetes.io/hostname", None),
        (LABEL_ZONE, 10),
    ]
    assert pod.host_ports == (9100,)
    assert pod.do_not_disrupt_s == 1800.0
    assert pod.owner == "api" and pod.owner_kind == "ReplicaSet"
    (pdb,) = scenario.cluster.pdbs
    assert (pdb.name, pdb.selector, pdb.max_unavailable, pdb.min_available) == (
        "api",
        {"app": "api"},
        "25%",
        None,
    )
    notes = [w for w in scenario.warnings if "Deployment/api" in w]
    assert len(notes) == 1
    assert "priorityClassName" in notes[0] and "tolerationSeconds" in notes[0]


def test_kro_app_pods_come_from_the_rgd_template(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "shared-nodes.yaml")
    assert scenario.cluster is not None
    pod = scenario.cluster.pods["flask-app-2"].spec
    assert pod.labels == {"app.kubernetes.io/name": "flask-app-2"}  # ${schema.metadata.name} filled in
    assert pod.requests.cpu_millicores == 500 and pod.requests.memory_mib == 384
    assert scenario.cluster.pods["flask-app-2"].images == ("ghcr.io/example-shop/flask-app-2:2.3.1",)


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("maxUnavailable: 25%", "maxUnavailable: 25%\n  minAvailable: 1", "spec.maxUnavailable", "both"),
        ("maxUnavailable: 25%", "maxUnavailable: lots", "spec.maxUnavailable", "lots"),
        ('do-not-disrupt: "30m"', 'do-not-disrupt: "yes"', "spec.template.metadata.annotations", "yes"),
        (
            "whenUnsatisfiable: DoNotSchedule",
            "whenUnsatisfiable: Never",
            "spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable",
            "Never",
        ),
        ("operator: Equal", "operator: Matches", "spec.template.spec.tolerations[0].operator", "Matches"),
    ],
)
def test_bad_pod_fields(tmp_path: Path, old: str, new: str, field: str, message: str) -> None:
    assert old in DEPLOYMENT
    error = _error(tmp_path, app=_app_with(tmp_path, DEPLOYMENT.replace(old, new)))
    assert error.field is not None and error.field.startswith(field)
    assert message in error.message


def test_background_replica_series(tmp_path: Path) -> None:
    (tmp_path / "batch.csv").write_text("time_s,replicas\n0,2\n3600,5\n7200,0\n")
    cluster = """\
    background:
      - {name: batch, nodepool: general, cpu: 500m, memory: 1Gi, replica_series: {path: batch.csv}}
      - {name: cache, nodepool: general, cpu: 1, memory: 4Gi, replicas: 3}
    daemonsets:
      - {name: agent, cpu: 50m, memory: 64Mi, nodepools: [general]}
    """
    pools = _pool_with("- {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n").replace(
        "      requirements:", "      taints: [{key: batch, effect: NoSchedule}]\n      requirements:"
    )
    scenario = _load(tmp_path, cluster=cluster, pools=pools)
    assert scenario.cluster is not None
    batch, cache = scenario.cluster.background
    assert [batch.replicas_at(t) for t in (0, 3599, 3600, 7199, 7200, 10**6)] == [2, 2, 5, 5, 0, 0]
    assert cache.replicas_at(123.0) == 3
    assert batch.pod.node_selector == {LABEL_NODEPOOL: "general"}
    assert batch.pod.tolerations == (Toleration("batch", "Exists", "", "NoSchedule"),)
    assert batch.pod.requests.memory_mib == 1024
    (agent,) = scenario.cluster.daemonsets
    assert agent.owner_kind == "DaemonSet" and agent.requests.cpu_millicores == 50
    assert agent.required_affinity[0][0].values == ("general",)
    assert tmp_path / "batch.csv" in scenario.input_files


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ("time_s,replicas\n0,2\n0,3\n", "time_s", 3),
        ("time_s,replicas\n0,two\n", "replicas", 2),
        ("time,replicas\n0,2\n", None, 1),
    ],
)
def test_bad_replica_series(tmp_path: Path, body: str, field: str | None, line: int) -> None:
    (tmp_path / "batch.csv").write_text(body)
    cluster = (
        "background:\n"
        "  - {name: batch, nodepool: general, cpu: 1, memory: 1Gi, replica_series: {path: batch.csv}}\n"
    )
    error = _error(tmp_path, cluster=cluster)
    assert error.file == tmp_path / "batch.csv"
    assert error.field == field and error.line == line


def test_cluster_settings_reach_the_loaded_cluster(tmp_path: Path) -> None:
    (tmp_path / "prices.csv").write_text(
        "instance_type,capacity_type,zone,price_usd_per_hour\nm5.large,spot,zone-b,0.01\n"
    )
    cluster = """\
    zones: [zone-a, zone-b]
    region: test-region
    prices: prices.csv
    commitment_discount: 0.3
    spot_discount: {default: 0.5, m5: 0.7}
    spot_interruption_rate: {default: 0.001, m5.large: 0.01}
    node_launch: {distribution: gamma, mean: 60s, cv: 0.5}
    cold_image_pull: {distribution: deterministic, mean: 5s}
    insufficient_capacity: {m5: 0.25}
    karpenter:
      batch_idle_duration: 2s
      batch_max_duration: 20s
      spot_allocation: price-capacity-optimized
      spot_to_spot_consolidation: true
      min_values_policy: BestEffort
    """
    scenario = _load(tmp_path, cluster=cluster)
    assert scenario.cluster is not None
    c = scenario.cluster
    assert c.zones == ("zone-a", "zone-b") and c.region == "test-region"
    assert (c.node_launch.kind, c.node_launch.mean_s, c.node_launch.cv) == ("gamma", 60.0, 0.5)
    assert (c.cold_image_pull.kind, c.cold_image_pull.mean_s) == ("deterministic", 5.0)
    assert c.interruption_rate_per_h["m5.large"] == 0.01 and c.interruption_rate_per_h["c5.large"] == 0.001
    assert c.insufficient_capacity["m5.xlarge"] == 0.25 and c.insufficient_capacity["m6i.large"] == 0.0
    assert (c.karpenter.batch.idle_s, c.karpenter.batch.max_s) == (2.0, 20.0)
    assert c.karpenter.launch.spot_allocation == "price-capacity-optimized"
    assert c.karpenter.disruption.spot_to_spot is True
    assert c.karpenter.provisioning.min_values_policy == "BestEffort"
    m5 = next(it for it in c.instance_types["default"] if it.name == "m5.large")
    prices = {(o.zone, o.capacity_type): o.price_usd_per_h for o in m5.offerings}
    assert prices[("zone-b", "spot")] == 0.01
    assert prices[("zone-a", "spot")] == pytest.approx(0.096 * 0.3)
    assert prices[("zone-a", "on-demand")] == pytest.approx(0.096 * 0.7)
    assert m5.labels["topology.kubernetes.io/region"] == "test-region"
    assert tmp_path / "prices.csv" in scenario.input_files


def test_a_user_catalog_replaces_the_bundled_one(tmp_path: Path) -> None:
    header = "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\n"
    (tmp_path / "tiny.csv").write_text(
        header + "x1.large,amd64,2,8192,29,0.1\nx1.xlarge,amd64,4,16384,58,0.2\n"
    )
    scenario = _load(tmp_path, cluster="catalog: tiny.csv\n")
    assert scenario.cluster is not None
    assert [it.name for it in scenario.cluster.instance_types["default"]] == ["x1.large", "x1.xlarge"]
    assert scenario.cluster.catalog.endswith("tiny.csv")
    assert tmp_path / "tiny.csv" in scenario.input_files


def test_a_bad_user_catalog_names_its_cell(tmp_path: Path) -> None:
    header = "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\n"
    (tmp_path / "tiny.csv").write_text(header + "x1.large,amd64,2,8Gi,29,0.1\n")
    error = _error(tmp_path, cluster="catalog: tiny.csv\n")
    assert (error.file, error.field, error.line) == (tmp_path / "tiny.csv", "memory_mib", 2)


def test_default_latencies_and_rates() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "diurnal-day.yaml")
    assert scenario.cluster is not None
    launch = scenario.cluster.node_launch
    assert (launch.kind, launch.mean_s, launch.cv) == ("lognormal", 45.0, 0.3)
    assert scenario.cluster.cold_image_pull.mean_s == 10.0
    assert 5e-5 < scenario.cluster.interruption_rate_per_h["m6i.large"] < 1e-4
    assert set(scenario.cluster.insufficient_capacity.values()) == {0.0}
    assert scenario.cluster.karpenter.launch.spot_allocation == "lowest-price"
    assert scenario.cluster.karpenter.batch.idle_s == 1.0 and scenario.cluster.karpenter.batch.max_s == 10.0


# --- helpers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        ("@daily", True),
        ("@fortnightly", False),
        ("0 9 * * mon-fri", True),
        ("*/15 0-6 1,15 JAN-MAR ?", True),
        ("0 9 * *", False),
        ("60 * * * *", False),
        ("0 9 * * fri-mon", False),
        ("0 9 * * 1/0", False),
    ],
)
def test_cron_syntax(schedule: str, ok: bool) -> None:
    assert (cron_problem(schedule) is None) == ok


def test_go_durations() -> None:
    assert go_duration_s("1h30m") == 5400.0
    assert go_duration_s("720h") == 2_592_000.0
    assert go_duration_s("45s") == 45.0
    for bad in ("", "1d", "h", "1.5h"):
        with pytest.raises(ValueError):
            go_duration_s(bad)
    assert math.isclose(go_duration_s("2m10s"), 130.0)
