"""Scenario files: the demo scenarios load, values land where the engine reads them, defaults hold."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from sim.controllers.autoscaling import HPAControllerConfig, ScalingPolicy
from sim.errors import InputError
from sim.scenario import LoadedScenario, load_scenario, scenario_json_schema
from sim.slo import SLO
from sim.workload.service import Dist
from sim.workload.traffic import AddSpikeTransform, DiurnalTraffic, ReplayTraffic

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
DEMO = ROOT / "scenarios" / "demo" / "k8s" / "argocd" / "apps" / "dev"


@pytest.fixture(scope="module")
def day() -> LoadedScenario:
    return load_scenario(ROOT / "scenarios" / "diurnal-day.yaml")


def test_there_are_at_least_three_demo_scenarios() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"diurnal-day", "flash-crowd", "replay-elb"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_demo_scenarios_load_without_warnings(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.horizon_s <= 86400.0  # the demo stays quick
    # The only notes allowed: EC2NodeClass/NodePool fields capsim does not model (role, subnets, ...).
    assert [w for w in scenario.warnings if "/k8s/karpenter/" not in w] == []
    for service in scenario.services:
        assert service.queries  # every demo ScaledObject scales on a Prometheus query
        assert min(service.scaled_object.min_replica_count or 1, 1) <= service.initial_replicas
        assert service.initial_replicas <= (service.scaled_object.max_replica_count or 100)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_demo_scenarios_satisfy_the_published_json_schema(path: Path) -> None:
    schema = scenario_json_schema()
    data = YAML(typ="safe").load(path.read_text())
    jsonschema.Draft202012Validator(schema).validate(data)


def test_json_schema_is_strict_and_serialisable() -> None:
    schema = scenario_json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert {"horizon", "services"} <= set(schema["required"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"horizon": "1h", "services": [], "colour": "red"}, schema)


def test_front_values_land_in_place(day: LoadedScenario) -> None:
    front = day.service("front")
    assert (day.horizon_s, day.step_s, day.seed, day.fidelity) == (86400.0, 15.0, 42, "fluid")
    so = front.scaled_object
    assert (so.name, so.min_replica_count, so.max_replica_count) == ("front", 2, 20)
    assert (so.polling_interval_s, so.cooldown_period_s) == (15, 300)
    assert so.behavior is not None and so.behavior.scale_down is not None
    assert so.behavior.scale_down.policies == (ScalingPolicy("Percent", 50, 60),)
    trigger = so.triggers[0]
    assert trigger.type == "prometheus" and trigger.name == "rps"
    assert trigger.metadata["threshold"] == "40" and trigger.metadata["activationThreshold"] == "1"
    assert front.scaled_object_file == DEMO / "front" / "scaledobject.yaml"
    where = front.trigger_locations[0]
    assert where.file == front.scaled_object_file and where.field == "spec.triggers[0].metadata.query"
    assert where.line is not None
    assert "query:" in where.file.read_text().splitlines()[where.line - 1]
    assert front.queries[0].text == trigger.metadata["query"]

    workload = front.workload
    assert (workload.kind, workload.name, workload.namespace, workload.replicas) == (
        "Deployment",
        "front",
        "dev",
        None,
    )
    # front 500m/512Mi with no CPU limit, plus the log shipper's 50m/64Mi (limits 200m/128Mi).
    assert workload.cpu_request_millicores == pytest.approx(550.0)
    assert workload.memory_request_mib == pytest.approx(576.0)
    assert workload.cpu_limit_millicores is None
    assert workload.memory_limit_mib == pytest.approx(640.0)

    model = front.model
    assert model.workers == 4 and model.queue_limit == 64
    assert model.service_time == Dist("lognormal", 0.06, 1.0)
    assert model.cpu_per_request_s == pytest.approx(0.01)
    assert model.idle_cpu_millicores == pytest.approx(20.0) and model.idle_memory_mib == pytest.approx(180.0)
    assert model.cpu_request_millicores == workload.cpu_request_millicores
    assert model.cpu_limit_millicores is None and model.memory_limit_mib == pytest.approx(640.0)
    assert model.startup == Dist("lognormal", 25.0, 0.3)

    assert isinstance(front.traffic, DiurnalTraffic) and front.traffic.trough_peak_rps == (60.0, 420.0)
    assert front.metrics.labels == {"namespace": "dev", "service": "front", "job": "front"}
    assert front.initial_replicas == 2  # no replicas in the Deployment: the HPA's minimum


def test_kro_instance_is_read_through_the_mapping(day: LoadedScenario) -> None:
    app = day.service("flask-app-2")
    workload = app.workload
    assert (workload.kind, workload.name, workload.namespace) == ("WebApp", "flask-app-2", "dev")
    assert workload.file == DEMO / "flask-app-2" / "webapp.yaml"
    assert workload.replicas == 2
    assert workload.cpu_request_millicores == pytest.approx(500.0)
    assert workload.cpu_limit_millicores == pytest.approx(1000.0)
    assert workload.memory_request_mib == pytest.approx(384.0)
    assert workload.memory_limit_mib == pytest.approx(512.0)  # not in the instance: the RGD's default
    assert app.model.cpu_limit_millicores == pytest.approx(1000.0)
    assert app.initial_replicas == 2
    assert app.scaled_object.max_replica_count == 10


def test_slos_and_controller_settings(day: LoadedScenario) -> None:
    assert day.slos[0] == SLO("front-latency", "front", "latency", 0.5, 0.99)
    assert day.slos[1] == SLO("front-p95-minutes", "front", "latency_window", 0.3, 0.99, 95.0, 60.0)
    assert day.controllers.hpa == HPAControllerConfig()
    assert day.controllers.prometheus_scrape_interval_s == 30.0
    assert day.controllers.metrics_server_resolution_s == 15.0
    assert day.max_failure_ratio == pytest.approx(0.001)
    assert day.file in day.input_files and DEMO / "flask-app-2" / "rgd-webapp.yaml" in day.input_files


def test_flash_crowd_spikes_front_sixfold_within_a_minute() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "flash-crowd.yaml")
    front = scenario.service("front")
    spikes = [t for t in front.traffic.transforms if isinstance(t, AddSpikeTransform)]
    assert len(spikes) == 1 and spikes[0].multiplier == 6 and spikes[0].rise == 60.0
    assert front.initial_replicas == 6 and scenario.step_s == 5.0


def test_replay_points_at_the_bundled_series() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "replay-elb.yaml")
    traffic = scenario.service("front").traffic
    assert isinstance(traffic, ReplayTraffic) and traffic.offset == 2 * 86400.0
    assert (
        scenario.base_dir / traffic.path
    ).resolve() == ROOT / "scenarios/data/traffic/elb_requests_14d.csv"
    assert scenario.base_dir / traffic.path in scenario.input_files


# --- defaults and inline manifests -------------------------------------------------------------------

MINIMAL = """
horizon: 30m
services:
  - name: web
    inline:
      scaled_object:
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata: {name: web}
        spec:
          scaleTargetRef: {name: web}
          minReplicaCount: 1
          triggers:
            - type: cpu
              metricType: Utilization
              metadata: {value: "60"}
      deployment:
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 0
          template:
            spec:
              containers:
                - name: web
                  resources: {requests: {cpu: 200m}}
    traffic: {kind: constant, rps: 5}
    model:
      workers: 2
      service_time: {distribution: exponential, mean: 100ms}
"""


def write_scenario(tmp_path: Path, text: str, name: str = "minimal.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_with(path: Path, text: str) -> int:
    return next(i + 1 for i, line in enumerate(path.read_text().splitlines()) if text in line)


def test_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(write_scenario(tmp_path, MINIMAL))
    assert scenario.name == "minimal"
    assert (scenario.step_s, scenario.seed, scenario.fidelity) == (5.0, 0, "fluid")
    assert scenario.controllers.hpa == HPAControllerConfig()
    assert scenario.slos == () and scenario.max_failure_ratio == pytest.approx(0.001)
    web = scenario.service("web")
    assert web.model.service_time == Dist("exponential", 0.1, 1.0)
    assert web.model.startup == Dist("lognormal", 20.0, 0.3)
    assert (web.model.queue_limit, web.model.timeout_s, web.model.load_balancing) == (100, 30.0, "random")
    assert web.metrics.labels == {"namespace": "default", "service": "web", "job": "web"}
    assert (web.metrics.requests_total, web.metrics.duration) == (
        "http_requests_total",
        "http_request_duration_seconds",
    )
    assert web.scaled_object.min_replica_count == 1 and web.queries == {}
    assert web.initial_replicas == 1  # replicas: 0 in the Deployment, raised to the HPA's minimum
    assert web.trigger_locations[0].file == scenario.file
    assert (
        web.trigger_locations[0].field == "services[0].inline.scaled_object.spec.triggers[0].metadata.value"
    )
    assert web.trigger_locations[0].line == line_with(scenario.file, 'metadata: {value: "60"}')


def test_keda_rejects_cpu_only_triggers_without_a_floor(tmp_path: Path) -> None:
    # KEDA's webhook refuses this (nil or 0 minReplicaCount): it could never scale to zero.
    path = write_scenario(tmp_path, MINIMAL.replace("          minReplicaCount: 1\n", ""))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    assert caught.value.field == "services[0].inline.scaled_object.spec.minReplicaCount"
    assert "only cpu/memory triggers" in caught.value.message


def test_errors_in_inline_manifests_point_into_the_scenario(tmp_path: Path) -> None:
    text = MINIMAL.replace('metadata: {value: "60"}', 'metadata: {value: "60"}\n              nam: x')
    path = write_scenario(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    assert caught.value.field == "services[0].inline.scaled_object.spec.triggers[0].nam"
    assert caught.value.line == line_with(path, "nam: x")


def test_scaledobject_may_target_the_kro_instance_itself(tmp_path: Path) -> None:
    text = f"""
    horizon: 1h
    gitops_root: {DEMO}
    services:
      - name: app
        manifests: [flask-app-2/rgd-webapp.yaml, flask-app-2/webapp.yaml, so.yaml]
        kro: {{kind: WebApp, replicas: spec.replicas, cpu_request: spec.resources.requests.cpu}}
        traffic: {{kind: constant, rps: 5}}
        model: {{workers: 2, service_time: {{distribution: deterministic, mean: 10ms}}}}
    """
    so = (DEMO / "flask-app-2" / "scaledobject.yaml").read_text()
    so = so.replace(
        "apiVersion: apps/v1\n    kind: Deployment", "apiVersion: kro.run/v1alpha1\n    kind: WebApp"
    )
    (tmp_path / "so.yaml").write_text(so)
    path = write_scenario(tmp_path, text.replace("so.yaml]", f"{tmp_path / 'so.yaml'}]"))
    app = load_scenario(path).service("app")
    assert app.workload.name == "flask-app-2" and app.workload.cpu_request_millicores == pytest.approx(500.0)
    assert app.workload.memory_request_mib is None  # not mapped
    assert app.model.service_time == Dist("deterministic", 0.01, 0.0)


def test_a_kro_app_without_a_mapping_gets_a_hint(tmp_path: Path) -> None:
    text = f"""
    horizon: 1h
    gitops_root: {DEMO}
    services:
      - name: app
        manifests: flask-app-2
        traffic: {{kind: constant, rps: 5}}
        model: {{workers: 2, service_time: {{distribution: exponential, mean: 10ms}}}}
    """
    with pytest.raises(InputError, match="add a kro: mapping") as caught:
        load_scenario(write_scenario(tmp_path, text))
    assert caught.value.field == "spec.scaleTargetRef.name"
    assert caught.value.file == DEMO / "flask-app-2" / "scaledobject.yaml"


def test_several_scaledobjects_need_a_choice(tmp_path: Path) -> None:
    second = (
        (DEMO / "front" / "scaledobject.yaml").read_text().replace("name: front\nspec", "name: front-b\nspec")
    )
    (tmp_path / "so-b.yaml").write_text(second)
    text = f"""
    horizon: 1h
    gitops_root: {DEMO}
    services:
      - name: front
        manifests: [front, {tmp_path / "so-b.yaml"}]
        traffic: {{kind: constant, rps: 5}}
        model: {{workers: 2, service_time: {{distribution: exponential, mean: 10ms}}}}
    """
    with pytest.raises(InputError, match="several ScaledObjects") as caught:
        load_scenario(write_scenario(tmp_path, text))
    assert caught.value.field == "services[0].manifests"
    chosen = text.replace("    traffic:", "    scaled_object: front-b\n        traffic:", 1)
    service = load_scenario(write_scenario(tmp_path, chosen, "chosen.yaml")).service("front")
    assert service.scaled_object.name == "front-b"
