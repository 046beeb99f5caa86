"""Which series hold a service's traffic, latency, CPU, replicas and pod starts, for the exporters people run.

A query set names the series of one exporter convention. The request and
latency sets are tried in order and the first whose series exist in the
window wins (probed with series look-ups, not guessed):

- `prometheus_client`: `http_requests_total{code}` and `http_request_duration_seconds` (Go promhttp,
  Python prometheus_client middlewares, and what capsim's own simulated series use);
- `flask_exporter`: prometheus-flask-exporter's `flask_http_request_total{status}` and
  `flask_http_request_duration_seconds`;
- `otel_http`: OpenTelemetry's current `http.server.request.duration` (seconds) as Prometheus names it;
- `otel_http_legacy_ms` / `otel_http_legacy`: the older `http.server.duration` in milliseconds,
  with and without the unit suffix newer collectors add;
- `ingress_nginx`: `nginx_ingress_controller_requests` and `..._request_duration_seconds`, whose
  `exported_namespace`/`service` labels name the backend.

App histograms time the handler (service time); the ingress histogram times
the whole request including the wait for a free worker. Kubernetes signals
(cAdvisor CPU, kube-state-metrics replicas, HPA, pod times and node labels,
Karpenter's node count and node-claim timings) have one convention each. A YAML file can add query sets
(tried first) or replace any Kubernetes signal; `${namespace}`,
`${service}`, `${deployment}`, `${container}`, `${hpa}` and `${pod_regex}`
are filled from the command line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sim.calibrate.source import Selector, Source
from sim.errors import InputError
from sim.k8s.yamlsource import load_mapping, validate_model

Measures = Literal["handler", "response"]
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')
_VAR = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class CounterSpec:
    metric: str
    matchers: tuple[str, ...]
    status_label: str | None = None
    error_regex: str = "5.."


@dataclass(frozen=True)
class HistogramSpec:
    """A histogram family by its base name; `unit_s` turns its `le` and `_sum` into seconds."""

    metric: str
    matchers: tuple[str, ...]
    unit_s: float = 1.0
    measures: Measures = "handler"
    status_label: str | None = None
    error_regex: str = "5.."


@dataclass(frozen=True)
class QuerySet:
    """One exporter convention: a request counter (else the histogram's `_count`) and a latency histogram."""

    name: str
    latency: HistogramSpec | None
    requests: CounterSpec | None = None


@dataclass(frozen=True)
class GaugeSpec:
    metric: str
    matchers: tuple[str, ...]


@dataclass(frozen=True)
class KubernetesQueries:
    cpu: CounterSpec = CounterSpec(
        "container_cpu_usage_seconds_total", ('namespace="${namespace}"', 'container="${container}"')
    )
    replicas: GaugeSpec = GaugeSpec(
        "kube_deployment_spec_replicas", ('namespace="${namespace}"', 'deployment="${deployment}"')
    )
    ready: GaugeSpec = GaugeSpec(
        "kube_deployment_status_replicas_ready", ('namespace="${namespace}"', 'deployment="${deployment}"')
    )
    hpa_desired: GaugeSpec = GaugeSpec(
        "kube_horizontalpodautoscaler_status_desired_replicas",
        ('namespace="${namespace}"', 'horizontalpodautoscaler="${hpa}"'),
    )
    pod_created: GaugeSpec = GaugeSpec(
        "kube_pod_created", ('namespace="${namespace}"', 'pod=~"${pod_regex}"')
    )
    pod_ready: GaugeSpec = GaugeSpec(
        "kube_pod_status_ready_time", ('namespace="${namespace}"', 'pod=~"${pod_regex}"')
    )
    nodes: GaugeSpec = GaugeSpec("karpenter_cluster_state_node_count", ())
    node_labels: GaugeSpec = GaugeSpec("kube_node_labels", ())
    node_launch: HistogramSpec = HistogramSpec(
        "operator_nodeclaim_status_condition_transition_seconds", ('type="Initialized"', 'status="Unknown"')
    )


APP_SETS: tuple[QuerySet, ...] = (
    QuerySet(
        "prometheus_client",
        HistogramSpec("http_request_duration_seconds", ('namespace="${namespace}"', 'service="${service}"')),
        CounterSpec("http_requests_total", ('namespace="${namespace}"', 'service="${service}"'), "code"),
    ),
    QuerySet(
        "flask_exporter",
        HistogramSpec(
            "flask_http_request_duration_seconds", ('namespace="${namespace}"', 'service="${service}"')
        ),
        CounterSpec(
            "flask_http_request_total", ('namespace="${namespace}"', 'service="${service}"'), "status"
        ),
    ),
    QuerySet(
        "otel_http",
        HistogramSpec(
            "http_server_request_duration_seconds",
            ('job=~"(.+/)?${service}"',),
            status_label="http_response_status_code",
        ),
    ),
    QuerySet(
        "otel_http_legacy_ms",
        HistogramSpec(
            "http_server_duration_milliseconds",
            ('job=~"(.+/)?${service}"',),
            unit_s=0.001,
            status_label="http_status_code",
        ),
    ),
    QuerySet(
        "otel_http_legacy",
        HistogramSpec(
            "http_server_duration",
            ('job=~"(.+/)?${service}"',),
            unit_s=0.001,
            status_label="http_status_code",
        ),
    ),
)

INGRESS_SETS: tuple[QuerySet, ...] = (
    QuerySet(
        "ingress_nginx",
        HistogramSpec(
            "nginx_ingress_controller_request_duration_seconds",
            ('exported_namespace="${namespace}"', 'service="${service}"'),
            measures="response",
        ),
        CounterSpec(
            "nginx_ingress_controller_requests",
            ('exported_namespace="${namespace}"', 'service="${service}"'),
            "status",
        ),
    ),
)


# --- the override file (pydantic at the edge) ---------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CounterModel(_Model):
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    matchers: list[str] = Field(default_factory=list, description='PromQL matchers, e.g. app="${service}"')
    status_label: str | None = None
    error_regex: str = "5.."

    def spec(self) -> CounterSpec:
        return CounterSpec(self.metric, tuple(self.matchers), self.status_label, self.error_regex)


class HistogramModel(_Model):
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", description="base name, without _bucket")
    matchers: list[str] = Field(default_factory=list)
    unit: Literal["s", "ms"] = "s"
    measures: Measures = Field(default="handler", description="handler time, or response time incl. queueing")
    status_label: str | None = None
    error_regex: str = "5.."

    def spec(self) -> HistogramSpec:
        return HistogramSpec(
            self.metric,
            tuple(self.matchers),
            1.0 if self.unit == "s" else 0.001,
            self.measures,
            self.status_label,
            self.error_regex,
        )


class GaugeModel(_Model):
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    matchers: list[str] = Field(default_factory=list)

    def spec(self) -> GaugeSpec:
        return GaugeSpec(self.metric, tuple(self.matchers))


class QuerySetModel(_Model):
    name: str
    latency: HistogramModel | None = None
    requests: CounterModel | None = None

    def spec(self) -> QuerySet:
        return QuerySet(
            self.name,
            self.latency.spec() if self.latency else None,
            self.requests.spec() if self.requests else None,
        )


class KubernetesModel(_Model):
    cpu: CounterModel | None = None
    replicas: GaugeModel | None = None
    ready: GaugeModel | None = None
    hpa_desired: GaugeModel | None = None
    pod_created: GaugeModel | None = None
    pod_ready: GaugeModel | None = None
    nodes: GaugeModel | None = None
    node_labels: GaugeModel | None = None
    node_launch: HistogramModel | None = None


class QueryFile(_Model):
    """A query-set file: extra app/ingress sets (tried before the built-ins) and Kubernetes overrides."""

    app: list[QuerySetModel] = Field(default_factory=list)
    ingress: list[QuerySetModel] = Field(default_factory=list)
    kubernetes: KubernetesModel = Field(default_factory=KubernetesModel)
    variables: dict[str, str] = Field(default_factory=dict, description="values for ${...} placeholders")


@dataclass(frozen=True)
class Catalog:
    """The query sets in the order they are tried, the Kubernetes signals and the placeholder values."""

    app: tuple[QuerySet, ...] = APP_SETS
    ingress: tuple[QuerySet, ...] = INGRESS_SETS
    kubernetes: KubernetesQueries = field(default_factory=KubernetesQueries)
    variables: dict[str, str] = field(default_factory=dict)


def load_catalog(path: Path | None) -> Catalog:
    """The built-in catalog, with a query file's sets in front and its overrides applied."""
    if path is None:
        return Catalog()
    doc = validate_model(QueryFile, load_mapping(Path(path)))
    k8s = KubernetesQueries()
    overrides = {name: getattr(doc.kubernetes, name) for name in KubernetesModel.model_fields}
    kwargs = {name: model.spec() for name, model in overrides.items() if model is not None}
    k8s = KubernetesQueries(**{**{n: getattr(k8s, n) for n in KubernetesModel.model_fields}, **kwargs})
    return Catalog(
        tuple(s.spec() for s in doc.app) + APP_SETS,
        tuple(s.spec() for s in doc.ingress) + INGRESS_SETS,
        k8s,
        dict(doc.variables),
    )


def selector(metric: str, matchers: tuple[str, ...], variables: dict[str, str]) -> Selector:
    """A selector with `${...}` placeholders filled; an unknown placeholder or a bad matcher is an error."""
    parsed = []
    for text in matchers:
        filled = _VAR.sub(functools.partial(_lookup, variables=variables, text=text), text)
        match = _MATCHER.match(filled)
        if match is None:
            raise InputError(
                f"cannot read matcher {text!r}", field="matchers", valid='label="value", label=~"regex"'
            )
        value = match.group(3).replace('\\"', '"').replace("\\\\", "\\")
        parsed.append((match.group(1), match.group(2), value))
    return Selector(metric, tuple(parsed))


def _lookup(match: re.Match[str], variables: dict[str, str], text: str) -> str:
    name = match.group(1)
    if name not in variables:
        raise InputError(
            f"placeholder ${{{name}}} in {text!r} has no value",
            field="matchers",
            valid=", ".join(f"${{{k}}}" for k in sorted(variables)),
        )
    return variables[name]


@dataclass(frozen=True)
class Chosen:
    """The sets found for a service: its app set and ingress set (either may be missing)."""

    app: QuerySet | None
    ingress: QuerySet | None
    probed: tuple[str, ...]  # every selector looked up, for the report


def probe_selectors(qs: QuerySet, variables: dict[str, str]) -> list[Selector]:
    out = []
    if qs.requests is not None:
        out.append(selector(qs.requests.metric, qs.requests.matchers, variables))
    if qs.latency is not None:
        out.append(selector(qs.latency.metric + "_count", qs.latency.matchers, variables))
    return out


def choose(
    catalog: Catalog, source: Source, variables: dict[str, str], start_s: float, end_s: float
) -> Chosen:
    """The first app set and the first ingress set with series in the window."""
    probed: list[str] = []

    def first(sets: tuple[QuerySet, ...]) -> QuerySet | None:
        for qs in sets:
            sels = probe_selectors(qs, variables)
            probed.extend(s.promql() for s in sels)
            if source.series(sels, start_s, end_s):
                return qs
        return None

    return Chosen(first(catalog.app), first(catalog.ingress), tuple(probed))
