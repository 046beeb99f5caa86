"""Scenario files: what to simulate, validated up front, resolved into plain objects.

A scenario names services (traffic, service model, and the manifests that
scale them), SLOs, the horizon and the seed. `load_scenario` validates the
file with pydantic (unknown fields are errors), then loads every manifest it
points at, checks them as the cluster would, compiles their queries, and
returns a `LoadedScenario` of plain dataclasses, so the engine never sees a
half-checked input: every problem is an InputError with file, field path and
line before a simulated second passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from sim.cluster import LoadedCluster, load_cluster
from sim.controllers.autoscaling import HPAControllerConfig
from sim.controllers.keda import compile_scaled_object
from sim.controllers.scaledobject import ScaledObjectSpec
from sim.controllers.scalers import ScaledObjectError
from sim.errors import InputError
from sim.k8s.kro import KroMapping, deployment_name, find_rgd, instances, workload_from_kro
from sim.k8s.kustomize import ManifestSet, Resource, load_manifests, resource_from_document
from sim.k8s.quantity import VALID_FORMS, cpu_millicores, memory_mib
from sim.k8s.scaledobject import API_VERSION as SCALEDOBJECT_API_VERSION
from sim.k8s.scaledobject import DEFAULT_MAX_REPLICAS, ScaledObjectManifest, scaled_object_from_resource
from sim.k8s.scaledobject import KIND as SCALEDOBJECT_KIND
from sim.k8s.workload import WORKLOAD_KINDS, WorkloadView, workload_from_resource
from sim.k8s.yamlsource import (
    FieldPath,
    SourceLocation,
    YamlDocument,
    load_mapping,
    parse_path,
    validate_model,
)
from sim.metrics.promql import Query
from sim.search_space import SpaceError, TuneModel, search_space
from sim.slo import SLO
from sim.workload.durations import Duration, PositiveDuration
from sim.workload.service import Dist, Distribution, LoadBalancing, ServiceModel
from sim.workload.traffic import ReplayTraffic, TrafficSpec, load_replay

HPA_SYNC_S = 15.0  # every step must divide the HPA's sync period so control events fall on step edges
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SCENARIO_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


def _quantity_schema(example: str) -> dict[str, Any]:
    return {
        "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
        "description": VALID_FORMS,
        "examples": [example],
    }


CpuMillicores = Annotated[
    float, BeforeValidator(cpu_millicores), WithJsonSchema(_quantity_schema("20m"), mode="validation")
]
"""A CPU quantity ("20m", "0.5", 1) read as millicores."""

MemoryMiB = Annotated[
    float, BeforeValidator(memory_mib), WithJsonSchema(_quantity_schema("64Mi"), mode="validation")
]
"""A memory quantity ("64Mi", "1G") read as MiB."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- controllers ---------------------------------------------------------------------------------


class HPASettings(_Model):
    """kube-controller-manager's HPA flags (defaults are the production values)."""

    sync_period: PositiveDuration = Field(default=15.0, description="--horizontal-pod-autoscaler-sync-period")
    tolerance: float = Field(default=0.1, ge=0.0, lt=1.0, description="--horizontal-pod-autoscaler-tolerance")
    downscale_stabilization: Duration = Field(
        default=300.0, description="--horizontal-pod-autoscaler-downscale-stabilization"
    )
    cpu_initialization_period: Duration = Field(
        default=300.0, description="--horizontal-pod-autoscaler-cpu-initialization-period"
    )
    initial_readiness_delay: Duration = Field(
        default=30.0, description="--horizontal-pod-autoscaler-initial-readiness-delay"
    )


class MetricsServerSettings(_Model):
    resolution: PositiveDuration = Field(default=15.0, description="metrics-server --metric-resolution")


class PrometheusSettings(_Model):
    scrape_interval: PositiveDuration = Field(
        default=30.0, description="the ServiceMonitor's scrape interval"
    )


class ControllerSettingsModel(_Model):
    hpa: HPASettings = Field(default_factory=HPASettings)
    metrics_server: MetricsServerSettings = Field(default_factory=MetricsServerSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)


# --- services ------------------------------------------------------------------------------------


class DistModel(_Model):
    """A positive random duration by mean and coefficient of variation."""

    distribution: Distribution
    mean: PositiveDuration
    cv: float | None = Field(
        default=None,
        ge=0.0,
        le=10.0,
        description="default 1 for exponential, 0 for deterministic; required otherwise",
    )

    @model_validator(mode="after")
    def _cv_fits(self) -> DistModel:
        fixed = {"exponential": 1.0, "deterministic": 0.0}.get(self.distribution)
        if fixed is not None and self.cv is not None and self.cv != fixed:
            raise ValueError(
                f"the {self.distribution} distribution has cv {fixed:g}; "
                f"use gamma or lognormal for cv {self.cv:g}"
            )
        if fixed is None and self.cv is None:
            raise ValueError(f"the {self.distribution} distribution needs cv (its coefficient of variation)")
        return self

    def to_dist(self) -> Dist:
        cv = self.cv if self.cv is not None else {"exponential": 1.0, "deterministic": 0.0}[self.distribution]
        return Dist(self.distribution, self.mean, cv)


class ServiceModelSpec(_Model):
    """How one pod serves requests. Requests and limits come from the manifests, not from here."""

    workers: int = Field(ge=1, description="requests one pod serves in parallel")
    service_time: DistModel
    cpu_per_request: Duration = Field(default=0.0, description="CPU time one request burns (core-seconds)")
    idle_cpu: CpuMillicores = Field(default=0.0, description="CPU a pod uses with no traffic")
    idle_memory: MemoryMiB = 0.0
    memory_per_inflight: MemoryMiB = Field(default=0.0, description="memory per request in the pod")
    queue_limit: int = Field(default=100, ge=0, description="requests waiting per pod before new ones fail")
    timeout: PositiveDuration = Field(default=30.0, description="a request not done by then fails")
    startup: DistModel = Field(
        default_factory=lambda: DistModel(distribution="lognormal", mean=20.0, cv=0.3),
        description="pod scheduled -> ready",
    )
    load_balancing: LoadBalancing = "random"
    burst_factor: float = Field(
        default=4.0, ge=1.0, description="CPU a pod without a limit can use, × its request"
    )


class MetricNamesModel(_Model):
    """The names and labels the simulated series get, so the ScaledObject's query finds them."""

    labels: dict[Annotated[str, Field(pattern=_LABEL_NAME)], str] = Field(
        default_factory=dict, description="added to the defaults: namespace, service and job"
    )
    requests_total: str = Field(default="http_requests_total", pattern=_METRIC_NAME)
    duration: str = Field(default="http_request_duration_seconds", pattern=_METRIC_NAME)


class InlineManifests(_Model):
    """Manifests written into the scenario instead of a GitOps tree."""

    scaled_object: dict[str, Any]
    deployment: dict[str, Any] | None = None
    kro_instance: dict[str, Any] | None = None


class ServiceEntry(_Model):
    name: str = Field(pattern=_NAME, max_length=63)
    manifests: Annotated[str, Field(min_length=1)] | list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, description="kustomization directory or manifest file(s), relative to gitops_root"
    )
    inline: InlineManifests | None = None
    scaled_object: str | None = Field(
        default=None, description="which ScaledObject, when the manifests hold several"
    )
    kro: KroMapping | None = Field(default=None, description="how to read the app when it is a KRO instance")
    traffic: TrafficSpec
    model: ServiceModelSpec | None = None
    model_file: str | None = Field(
        default=None,
        description="instead of `model`: a workload model written by `capsim calibrate` "
        "(its `model:` block is used), relative to the scenario file",
    )
    metrics: MetricNamesModel = Field(default_factory=MetricNamesModel)
    initial_replicas: int | None = Field(
        default=None, ge=0, description="default: the Deployment's replicas, else the minimum"
    )

    @model_validator(mode="after")
    def _has_manifests(self) -> ServiceEntry:
        if self.manifests is None and self.inline is None:
            raise ValueError("give manifests (paths in the GitOps tree) or inline manifests")
        return self

    @model_validator(mode="after")
    def _one_model(self) -> ServiceEntry:
        if (self.model is None) == (self.model_file is None):
            raise ValueError("give either model (inline) or model_file (a calibrated model)")
        return self


# --- SLOs ----------------------------------------------------------------------------------------


class LatencySLOModel(_Model):
    """`objective` of offered requests are served within `threshold`; failures count as bad."""

    kind: Literal["latency"]
    name: str = Field(min_length=1)
    service: str
    threshold: PositiveDuration
    objective: float = Field(gt=0.0, le=1.0)


class LatencyWindowSLOModel(_Model):
    """The `percentile` latency of each `window` is within `threshold`, in `objective` of the windows."""

    kind: Literal["latency_window"]
    name: str = Field(min_length=1)
    service: str
    percentile: float = Field(gt=0.0, lt=100.0)
    threshold: PositiveDuration
    window: PositiveDuration = 60.0
    objective: float = Field(gt=0.0, le=1.0)


SLOModel = Annotated[LatencySLOModel | LatencyWindowSLOModel, Field(discriminator="kind")]


# --- cluster (nodes, Karpenter) -----------------------------------------------------------------

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PerHour = Annotated[float, Field(ge=0.0)]


class DaemonSetModel(_Model):
    """A DaemonSet on every node (or on the listed NodePools): its pod's requests count against each node."""

    name: str = Field(pattern=_NAME, max_length=63)
    cpu: CpuMillicores = Field(default=0.0, description="the DaemonSet pod's CPU request")
    memory: MemoryMiB = Field(default=0.0, description="the DaemonSet pod's memory request")
    nodepools: list[str] | None = Field(
        default=None, description="only nodes of these NodePools run it; default every node"
    )


class ReplicaSeriesModel(_Model):
    """Replica counts over time (a step function), e.g. exported from kube-state-metrics."""

    path: str = Field(min_length=1, description="CSV file, relative to the scenario file")
    time_column: str = Field(default="time_s", description="seconds since the start of the run")
    replicas_column: str = Field(default="replicas", description="replica count from that time on")


class BackgroundWorkloadModel(_Model):
    """Pods of other tenants of a NodePool: they take room on its nodes and are disrupted with them."""

    name: str = Field(pattern=_NAME, max_length=63)
    nodepool: str = Field(description="the NodePool its pods run on (they tolerate its taints)")
    cpu: CpuMillicores = Field(description="CPU request per pod")
    memory: MemoryMiB = Field(description="memory request per pod")
    replicas: int | None = Field(default=None, ge=0, description="a fixed replica count")
    replica_series: ReplicaSeriesModel | None = Field(
        default=None, description="replica counts over time, instead of a fixed count"
    )

    @model_validator(mode="after")
    def _one_count(self) -> BackgroundWorkloadModel:
        if (self.replicas is None) == (self.replica_series is None):
            raise ValueError("give either replicas or replica_series")
        return self


class KarpenterSettingsModel(_Model):
    """Karpenter's operator options, and the simulator's choices for what EC2 decides at launch."""

    batch_idle_duration: PositiveDuration = Field(
        default=1.0,
        description="BATCH_IDLE_DURATION: a batch of pending pods closes this long after the last new one",
    )
    batch_max_duration: PositiveDuration = Field(
        default=10.0, description="BATCH_MAX_DURATION: a batch closes at the latest this long after it opened"
    )
    min_values_policy: Literal["Strict", "BestEffort"] = Field(
        default="Strict", description="MIN_VALUES_POLICY"
    )
    preference_policy: Literal["Respect", "Ignore"] = Field(
        default="Respect", description="PREFERENCE_POLICY"
    )
    spot_to_spot_consolidation: bool = Field(
        default=False, description="the SpotToSpotConsolidation feature gate (off upstream by default)"
    )
    spot_allocation: Literal["lowest-price", "price-capacity-optimized"] = Field(
        default="lowest-price",
        description="how EC2 picks among spot offerings: the cheapest (optimistic, reproducible), or a "
        "price-weighted random pick among the cheapest few (an assumption, to see what a non-cheapest "
        "choice costs)",
    )


class ClusterModel(_Model):
    """The nodes the services run on: Karpenter NodePools over an instance catalog, and what they cost.

    Without this block pods run on unlimited free capacity.
    """

    nodepools: Annotated[str, Field(min_length=1)] | list[Annotated[str, Field(min_length=1)]] = Field(
        description="kustomization directories or files holding the NodePools and EC2NodeClasses, "
        "relative to gitops_root (e.g. k8s/karpenter)"
    )
    catalog: str | None = Field(
        default=None,
        description="instance catalog CSV (relative to the scenario file) with the bundled file's columns; "
        "default: the bundled AWS us-east-1 catalog",
    )
    region: str = Field(default="us-east-1", min_length=1, description="the region label nodes get")
    zones: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["us-east-1a", "us-east-1b", "us-east-1c"],
        min_length=1,
        description="availability zones with subnets; every instance type is offered in each",
    )
    prices: str | None = Field(
        default=None,
        description="price file (CSV: instance_type, capacity_type, zone (optional), price_usd_per_hour), "
        "relative to the scenario file; overrides catalog and estimated spot prices",
    )
    commitment_discount: Fraction = Field(
        default=0.0,
        description="fraction off on-demand prices for Savings Plans, reserved instances or an enterprise "
        "discount (not applied to spot)",
    )
    spot_discount: Fraction | dict[str, Fraction] | None = Field(
        default=None,
        description="fraction off on-demand for spot: one number, or a map of instance type, family, "
        "category or 'default' to a fraction (most specific wins); default: estimates per category "
        "(0.50-0.68, see sim/catalog/pricing.py)",
    )
    spot_interruption_rate: PerHour | dict[str, PerHour] | None = Field(
        default=None,
        description="spot interruptions per node-hour: one number, or a map like spot_discount; default "
        "7.0e-5/h (5% of instances a month), 2.2e-4/h for GPU and accelerator types (15% a month)",
    )
    daemonsets: list[DaemonSetModel] = Field(
        default_factory=list, description="DaemonSets whose requests every node carries"
    )
    node_launch: DistModel = Field(
        default_factory=lambda: DistModel(distribution="lognormal", mean=45.0, cv=0.3),
        description="NodeClaim created -> node Ready and initialized; default lognormal, mean 45 s, cv 0.3",
    )
    cold_image_pull: DistModel = Field(
        default_factory=lambda: DistModel(distribution="lognormal", mean=10.0, cv=0.5),
        description="extra startup of the first pod of an image on a new node; default lognormal, "
        "mean 10 s, cv 0.5",
    )
    background: list[BackgroundWorkloadModel] = Field(
        default_factory=list, description="other tenants' pods per NodePool (fixed or a replica series)"
    )
    insufficient_capacity: Fraction | dict[str, Fraction] = Field(
        default=0.0,
        description="probability that EC2 refuses one launch attempt of an offering (insufficient capacity): "
        "one number, or a map like spot_discount; default 0 (capacity always there)",
    )
    karpenter: KarpenterSettingsModel = Field(
        default_factory=KarpenterSettingsModel, description="Karpenter options and launch choices"
    )


# --- the file ------------------------------------------------------------------------------------


class ScenarioFile(_Model):
    """A capsim scenario file."""

    name: str | None = Field(
        default=None, pattern=_SCENARIO_NAME, description="default: the file name without .yaml"
    )
    description: str = ""
    horizon: PositiveDuration
    step: PositiveDuration = Field(default=5.0, description="data-plane and output step; must divide 15 s")
    seed: int = 0
    fidelity: Literal["fluid", "requests"] = "fluid"
    gitops_root: str = Field(
        default=".", description="manifest paths resolve from here (relative to the scenario file)"
    )
    controllers: ControllerSettingsModel = Field(default_factory=ControllerSettingsModel)
    services: list[ServiceEntry] = Field(min_length=1)
    slos: list[SLOModel] = Field(default_factory=list)
    max_failure_ratio: float = Field(default=0.001, ge=0.0, le=1.0)
    tune: TuneModel | None = Field(
        default=None, description="what `capsim tune` searches; defaults when absent"
    )
    cluster: ClusterModel | None = Field(
        default=None, description="simulate nodes (Karpenter) and their cost; absent: unlimited free capacity"
    )


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (`capsim schema`)."""
    schema = ScenarioFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# --- loaded, resolved ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricNames:
    labels: dict[str, str]
    requests_total: str
    duration: str


@dataclass(frozen=True)
class ControllerSettings:
    hpa: HPAControllerConfig
    metrics_server_resolution_s: float
    prometheus_scrape_interval_s: float


@dataclass(frozen=True)
class LoadedService:
    """One service with everything resolved.

    `trigger_locations[i]` says where trigger i of the ScaledObject is written
    (file, field path, line), for errors found while simulating; `queries[i]`
    is the compiled PromQL of each prometheus trigger.
    """

    name: str
    scaled_object: ScaledObjectSpec
    scaled_object_file: Path
    trigger_locations: dict[int, SourceLocation]
    queries: dict[int, Query]
    workload: WorkloadView
    model: ServiceModel
    traffic: TrafficSpec
    metrics: MetricNames
    initial_replicas: int
    manifests: ManifestSet
    model_file: Path | None = None


@dataclass(frozen=True)
class LoadedScenario:
    name: str
    description: str
    file: Path
    base_dir: Path  # the scenario file's directory: replay paths resolve from it
    gitops_root: Path
    horizon_s: float
    step_s: float
    seed: int
    fidelity: Literal["fluid", "requests"]
    controllers: ControllerSettings
    services: tuple[LoadedService, ...]
    slos: tuple[SLO, ...]
    max_failure_ratio: float
    input_files: tuple[Path, ...]  # every file read, for fingerprints
    warnings: tuple[str, ...] = field(default=())
    tune: TuneModel = field(default_factory=TuneModel)
    cluster: LoadedCluster | None = None  # None: pods run on unlimited capacity

    def service(self, name: str) -> LoadedService:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)


def load_scenario(path: Path | str) -> LoadedScenario:
    """Read, validate and resolve a scenario file.

    Raises InputError (file, field path, line, what is valid) on the first problem found.
    """
    path = Path(path)
    doc = load_mapping(path)
    spec = validate_model(ScenarioFile, doc)
    _check_scenario(spec, doc)
    base_dir = path.parent
    gitops_root = base_dir / spec.gitops_root
    if not gitops_root.is_dir():
        raise doc.error(
            ("gitops_root",),
            f"{gitops_root} is not a directory",
            valid="a directory relative to the scenario file",
        )
    inputs: list[Path] = [path]
    warnings: list[str] = []
    services = []
    for i, entry in enumerate(spec.services):
        service = _load_service(entry, doc.sub(("services", i)), gitops_root, base_dir, spec)
        services.append(service)
        inputs.extend(f for f in service.manifests.files if f not in inputs)
        if service.model_file is not None:
            inputs.append(service.model_file)
        warnings.extend(w for w in service.manifests.warnings if w not in warnings)
        if isinstance(entry.traffic, ReplayTraffic):
            inputs.append(_replay_path(entry.traffic, base_dir))
    cluster = None
    if spec.cluster is not None:
        cluster = load_cluster(spec.cluster, doc.sub(("cluster",)), gitops_root, services, inputs, warnings)
    hpa = spec.controllers.hpa
    loaded = LoadedScenario(
        name=spec.name or path.stem,
        description=spec.description,
        file=path,
        base_dir=base_dir,
        gitops_root=gitops_root,
        horizon_s=spec.horizon,
        step_s=spec.step,
        seed=spec.seed,
        fidelity=spec.fidelity,
        controllers=ControllerSettings(
            hpa=HPAControllerConfig(
                sync_period_s=hpa.sync_period,
                tolerance=hpa.tolerance,
                downscale_stabilization_s=hpa.downscale_stabilization,
                cpu_initialization_period_s=hpa.cpu_initialization_period,
                initial_readiness_delay_s=hpa.initial_readiness_delay,
            ),
            metrics_server_resolution_s=spec.controllers.metrics_server.resolution,
            prometheus_scrape_interval_s=spec.controllers.prometheus.scrape_interval,
        ),
        services=tuple(services),
        slos=tuple(_slo(s) for s in spec.slos),
        max_failure_ratio=spec.max_failure_ratio,
        input_files=tuple(inputs),
        warnings=tuple(warnings),
        tune=spec.tune or TuneModel(),
        cluster=cluster,
    )
    _check_tune(loaded, doc)
    return loaded


def _check_tune(scn: LoadedScenario, doc: YamlDocument) -> None:
    """The tune block against what was loaded: named services, pools and SLOs exist, ranges fit."""
    slo_names = [s.name for s in scn.slos]
    for i, name in enumerate(scn.tune.hard_slos or ()):
        if name not in slo_names:
            raise doc.error(("tune", "hard_slos", i), f"no SLO named {name!r}", valid=", ".join(slo_names))
    try:
        search_space(scn, scn.tune)
    except SpaceError as exc:
        raise doc.error(tuple(exc.field.split(".")), str(exc), valid=exc.valid) from None


def _multiple(value: float, unit: float) -> bool:
    ratio = value / unit
    return math.isclose(ratio, round(ratio), rel_tol=0.0, abs_tol=1e-9)


def _check_scenario(spec: ScenarioFile, doc: YamlDocument) -> None:
    """Rules that span fields; pydantic has checked each field on its own."""
    if spec.step > HPA_SYNC_S or not _multiple(HPA_SYNC_S, spec.step):
        raise doc.error(
            ("step",), f"step {spec.step:g} s does not divide 15 s", valid="1s, 3s, 5s, 15s (or 0.5s, ...)"
        )
    if not _multiple(spec.controllers.hpa.sync_period, spec.step):
        raise doc.error(
            ("controllers", "hpa", "sync_period"),
            f"sync_period {spec.controllers.hpa.sync_period:g} s is not a multiple of step {spec.step:g} s",
            valid="a multiple of step",
        )
    if not _multiple(spec.horizon, spec.step):
        raise doc.error(("horizon",), f"horizon {spec.horizon:g} s is not a multiple of step {spec.step:g} s")
    names: dict[str, int] = {}
    for i, svc in enumerate(spec.services):
        if svc.name in names:
            raise doc.error(
                ("services", i, "name"), f"service {svc.name!r} is also services[{names[svc.name]}]"
            )
        names[svc.name] = i
    slo_names: set[str] = set()
    for i, slo in enumerate(spec.slos):
        if slo.service not in names:
            raise doc.error(
                ("slos", i, "service"), f"no service named {slo.service!r}", valid=", ".join(names)
            )
        if slo.name in slo_names:
            raise doc.error(("slos", i, "name"), f"SLO name {slo.name!r} is used twice")
        slo_names.add(slo.name)
        if isinstance(slo, LatencyWindowSLOModel) and not _multiple(slo.window, spec.step):
            raise doc.error(
                ("slos", i, "window"), f"window {slo.window:g} s is not a multiple of step {spec.step:g} s"
            )


def _slo(model: LatencySLOModel | LatencyWindowSLOModel) -> SLO:
    if isinstance(model, LatencyWindowSLOModel):
        return SLO(
            model.name,
            model.service,
            "latency_window",
            model.threshold,
            model.objective,
            model.percentile,
            model.window,
        )
    return SLO(model.name, model.service, "latency", model.threshold, model.objective)


def _replay_path(spec: ReplayTraffic, base_dir: Path) -> Path:
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else base_dir / path


# --- one service ---------------------------------------------------------------------------------


def _load_service(
    entry: ServiceEntry, doc: YamlDocument, gitops_root: Path, base_dir: Path, spec: ScenarioFile
) -> LoadedService:
    manifests = _manifests(entry, doc, gitops_root)
    so = _scaled_object(entry, doc, manifests)
    workload = _workload(entry, doc, manifests, so)
    if isinstance(entry.traffic, ReplayTraffic):
        _check_replay(entry.traffic, doc, base_dir)
    initial = _initial_replicas(entry, doc, so, workload)
    labels = {
        "namespace": workload.namespace or so.namespace or "default",
        "service": entry.name,
        "job": entry.name,
    }
    labels.update(entry.metrics.labels)
    model, model_file = _service_model(entry, doc, base_dir)
    return LoadedService(
        name=entry.name,
        scaled_object=so.spec,
        scaled_object_file=so.file,
        trigger_locations=so.trigger_locations,
        queries=so.queries,
        workload=workload,
        model=ServiceModel(
            workers=model.workers,
            service_time=model.service_time.to_dist(),
            cpu_per_request_s=model.cpu_per_request,
            idle_cpu_millicores=model.idle_cpu,
            cpu_request_millicores=workload.cpu_request_millicores,
            cpu_limit_millicores=workload.cpu_limit_millicores,
            memory_request_mib=workload.memory_request_mib,
            memory_limit_mib=workload.memory_limit_mib,
            memory_per_inflight_mib=model.memory_per_inflight,
            idle_memory_mib=model.idle_memory,
            queue_limit=model.queue_limit,
            timeout_s=model.timeout,
            startup=model.startup.to_dist(),
            load_balancing=model.load_balancing,
            burst_factor=model.burst_factor,
        ),
        traffic=entry.traffic,
        metrics=MetricNames(labels, entry.metrics.requests_total, entry.metrics.duration),
        initial_replicas=initial,
        manifests=manifests,
        model_file=model_file,
    )


def _service_model(
    entry: ServiceEntry, doc: YamlDocument, base_dir: Path
) -> tuple[ServiceModelSpec, Path | None]:
    """The inline model, or the `model:` block of a calibrated model file (errors point into it)."""
    if entry.model is not None:
        return entry.model, None
    assert entry.model_file is not None
    path = Path(entry.model_file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise doc.error(
            ("model_file",),
            f"model file {path} does not exist",
            valid="a file written by `capsim calibrate`, relative to the scenario file",
        )
    model_doc = load_mapping(path)
    if not isinstance(model_doc.get(("model",)), dict):
        raise model_doc.error(
            ("model",),
            "the file has no `model:` block",
            valid="a workload model written by `capsim calibrate`",
        )
    return validate_model(ServiceModelSpec, model_doc.sub(("model",))), path


def _manifests(entry: ServiceEntry, doc: YamlDocument, gitops_root: Path) -> ManifestSet:
    paths: list[tuple[FieldPath, Path]] = []
    if isinstance(entry.manifests, str):
        paths.append((("manifests",), gitops_root / entry.manifests))
    elif entry.manifests is not None:
        paths.extend((("manifests", j), gitops_root / p) for j, p in enumerate(entry.manifests))
    for where, target in paths:
        if not target.exists():
            raise doc.error(
                where,
                f"{target} does not exist",
                valid="a kustomization directory or a manifest file, relative to gitops_root",
            )
    manifests = load_manifests(target for _, target in paths)
    if entry.inline is not None:
        for key in ("scaled_object", "deployment", "kro_instance"):
            if getattr(entry.inline, key) is not None:
                manifests.resources.append(resource_from_document(doc.sub(("inline", key))))
    return manifests


def _scaled_object(entry: ServiceEntry, doc: YamlDocument, manifests: ManifestSet) -> ScaledObjectManifest:
    found = [r for r in manifests.find(SCALEDOBJECT_KIND) if r.api_version == SCALEDOBJECT_API_VERSION]
    if entry.scaled_object is not None:
        chosen = [r for r in found if r.name == entry.scaled_object]
        if not chosen:
            raise doc.error(
                ("scaled_object",),
                f"no ScaledObject named {entry.scaled_object!r} in the service's manifests",
                valid=", ".join(r.name for r in found) or "none found",
            )
        found = chosen
    where: FieldPath = ("manifests",) if entry.manifests is not None else ("inline",)
    if not found:
        raise doc.error(where, f"no ScaledObject ({SCALEDOBJECT_API_VERSION}) in the service's manifests")
    if len(found) > 1:
        raise doc.error(
            where,
            "the manifests hold several ScaledObjects: " + ", ".join(r.describe() for r in found),
            valid="name one with scaled_object: <name>",
        )
    so = scaled_object_from_resource(found[0])
    _check_with_keda(so)
    return so


def _check_with_keda(so: ScaledObjectManifest) -> None:
    """What KEDA's webhook and scalers would reject is bad input now, not a crash mid-run."""
    try:
        compile_scaled_object(so.spec)
    except ScaledObjectError as err:
        doc = so.resource.doc
        try:
            path = parse_path(err.field) if err.field else ()
        except ValueError:
            path = ()
        raise doc.error(path, err.message, err.valid) from None


def _workload(
    entry: ServiceEntry, doc: YamlDocument, manifests: ManifestSet, so: ScaledObjectManifest
) -> WorkloadView:
    target = so.target
    ref_path: FieldPath = ("spec", "scaleTargetRef", "name")

    def same_namespace(r: Resource) -> bool:
        return r.namespace is None or so.namespace is None or r.namespace == so.namespace

    if target.kind in WORKLOAD_KINDS:
        matches = [r for r in manifests.find(target.kind, target.name, target.group) if same_namespace(r)]
        if matches:
            return workload_from_resource(matches[0])
    if entry.kro is not None:
        rgd = find_rgd(manifests, entry.kro.kind)
        for instance in instances(manifests, entry.kro):
            if not same_namespace(instance):
                continue
            named = instance.name if target.kind == entry.kro.kind else deployment_name(instance, entry.kro)
            if named == target.name:
                return workload_from_kro(instance, entry.kro, rgd, doc.sub(("kro",)))
    candidates = [r.describe() for r in manifests.resources if r.kind in WORKLOAD_KINDS]
    hint = ""
    if entry.kro is not None:
        candidates += [
            f"{r.kind}/{r.name} renders Deployment/{deployment_name(r, entry.kro)}"
            for r in instances(manifests, entry.kro)
        ]
    elif any(
        r.api_version.startswith("kro.run/") and r.kind != "ResourceGraphDefinition"
        for r in manifests.resources
    ):
        hint = "; the manifests hold a KRO instance: add a kro: mapping to the service"
    raise so.resource.doc.error(
        ref_path,
        f"scaleTargetRef names {target.kind}/{target.name}, which is not in the service's manifests{hint}",
        valid=", ".join(candidates) or "a Deployment or KRO instance in the same kustomization",
    )


def _check_replay(traffic: ReplayTraffic, doc: YamlDocument, base_dir: Path) -> None:
    """Read the series now, so a missing or malformed file stops the run before it starts."""
    path = _replay_path(traffic, base_dir)
    if not path.is_file():
        raise doc.error(
            ("traffic", "path"),
            f"traffic file {path} does not exist",
            valid="a CSV or Parquet file, relative to the scenario",
        )
    try:
        load_replay(traffic, base_dir)
    except InputError as exc:
        if exc.line is not None:
            raise
        # The problem is the file as a whole (empty, wrong type): point at the scenario field that names it.
        where = doc.locate(("traffic", "path"))
        detail = f"{exc.field}: " if exc.field and exc.field != "path" else ""
        raise where.error(f"{path}: {detail}{exc.message}", exc.valid) from exc


def _initial_replicas(
    entry: ServiceEntry, doc: YamlDocument, so: ScaledObjectManifest, workload: WorkloadView
) -> int:
    """The scenario's value, else the manifest's replicas within KEDA's bounds, else the HPA's minimum."""
    spec = so.spec
    max_replicas = spec.max_replica_count if spec.max_replica_count is not None else DEFAULT_MAX_REPLICAS
    hpa_min = max(spec.min_replica_count or 0, 1)
    if entry.initial_replicas is not None:
        if entry.initial_replicas > max_replicas:
            raise doc.error(
                ("initial_replicas",),
                f"initial_replicas {entry.initial_replicas} is above maxReplicaCount "
                f"{max_replicas} ({so.file})",
                valid=f"0 to {max_replicas}",
            )
        return entry.initial_replicas
    if workload.replicas is not None:
        return min(max(workload.replicas, hpa_min), max_replicas)
    return hpa_min
