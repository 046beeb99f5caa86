"""What `capsim tune` may change, and how a candidate becomes a scenario.

The `tune:` block of a scenario file (pydantic, `TuneModel`) names the
dimensions to search and how to judge candidates. Every dimension it leaves
out gets a default derived from the shipped config, so `capsim tune` works on
a scenario with no `tune:` block at all. `search_space` resolves the block
against a loaded scenario into plain `Dimension`s; `apply_params` turns one
candidate (a flat dict of dimension name -> value, picklable, so it can travel
to a worker) into a `LoadedScenario` with only those fields replaced, which is
what makes every candidate see the same traffic: nothing else changes.

Dimension names are `<service>.<field>` and `pool:<nodepool>.<field>`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.controllers.autoscaling import Behavior, ScalingPolicy, ScalingRules
from sim.controllers.behavior import DEFAULT_SCALE_DOWN_RULES, DEFAULT_SCALE_UP_RULES
from sim.controllers.keda import (
    DEFAULT_COOLDOWN_PERIOD_S,
    DEFAULT_POLLING_INTERVAL_S,
    hpa_max_replicas,
    hpa_min_replicas,
)
from sim.controllers.scaledobject import ScaledObjectSpec, Trigger
from sim.tenancy import pool_coverages

# Kubecost's default list prices (AWS m5-derived): what a pod's requests cost when no nodes are simulated.
DEFAULT_CPU_CORE_HOUR_USD = 0.031611
DEFAULT_MEMORY_GIB_HOUR_USD = 0.004237
HOURS_PER_MONTH = 730.0

Value = int | float | str
Params = dict[str, Value]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeModel(_Model):
    """A numeric range; `step` makes it a grid (and is required for grid mode on floats)."""

    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RangeModel:
        if self.high < self.low:
            raise ValueError(f"high ({self.high:g}) is below low ({self.low:g})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log range needs low > 0 and no step")
        return self


class ChoicesModel(_Model):
    """A fixed list of values to try (numbers, strings, or lists such as [spot, on-demand])."""

    choices: list[Value | list[str]] = Field(min_length=1)


Dim = RangeModel | ChoicesModel | Literal[False] | None
"""A dimension: a range, choices, `false` to keep the shipped value, or absent for the default."""


class PolicyDims(_Model):
    """One direction of the HPA's behavior."""

    stabilization_window: Dim = None
    pods: Dim = Field(default=None, description="the Pods policy's value (pods per period)")
    percent: Dim = Field(default=None, description="the Percent policy's value (% per period)")
    period: Dim = Field(default=None, description="periodSeconds of every policy in this direction")


class RequestsDims(_Model):
    """Right-sizing of the pod's requests; a candidate below its simulated p95 usage is infeasible."""

    cpu: Dim = Field(default=None, description="per-pod CPU request in millicores")
    memory: Dim = Field(default=None, description="per-pod memory request in MiB")


class ServiceTune(_Model):
    trigger: int = Field(default=0, ge=0, description="which trigger's threshold is tuned")
    threshold: Dim = None
    activation_threshold: Dim = None
    min_replicas: Dim = None
    max_replicas: Dim = None
    polling_interval: Dim = None
    cooldown_period: Dim = None
    scale_up: PolicyDims = Field(default_factory=PolicyDims)
    scale_down: PolicyDims = Field(default_factory=PolicyDims)
    requests: RequestsDims | bool = Field(
        default=False, description="true: right-size CPU and memory with default ranges"
    )


class NodePoolTune(_Model):
    instance_categories: Dim = None
    instance_families: Dim = None
    instance_sizes: Dim = None
    capacity_types: Dim = None
    consolidation_policy: Dim = None
    consolidate_after: Dim = Field(default=None, description="seconds")
    budget_nodes: Dim = Field(default=None, description='disruption budget: a count or "10%"')
    other_tenants: list[str] = Field(
        default_factory=list,
        description="workloads on this pool that are neither in the GitOps tree nor simulated",
    )


class PricingModel(_Model):
    cpu_core_hour_usd: float = Field(default=DEFAULT_CPU_CORE_HOUR_USD, ge=0)
    memory_gib_hour_usd: float = Field(default=DEFAULT_MEMORY_GIB_HOUR_USD, ge=0)


class TuneModel(_Model):
    """The `tune:` block: search space, judging rules and budget."""

    services: dict[str, ServiceTune] = Field(default_factory=dict)
    node_pools: dict[str, NodePoolTune] = Field(default_factory=dict)
    hard_slos: list[str] | None = Field(default=None, description="SLOs that must hold; default all")
    slo_margin: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="share of each SLO's error budget kept unused on the worst seed",
    )
    seeds: int = Field(default=3, ge=1, le=50, description="seeds per candidate (common to all candidates)")
    trials: int = Field(default=100, ge=1, description="candidates to evaluate")
    generation: int = Field(default=8, ge=1, description="candidates asked for and evaluated together")
    mode: Literal["auto", "optuna", "grid"] = "auto"
    sampler: Literal["tpe", "nsga2"] = "tpe"
    sampler_seed: int = 0
    tie_tolerance: float = Field(
        default=0.005, ge=0.0, description="costs this close count as equal; scale events break the tie"
    )
    pricing: PricingModel = Field(default_factory=PricingModel)


# --- resolved ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One searchable field. `current` is the shipped value (None when the field is unset)."""

    name: str
    owner: str  # service or NodePool name
    target: Literal["service", "pool"]
    field: str
    kind: Literal["int", "float", "categorical"]
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Value, ...] = ()
    current: Value | None = None

    def grid(self, points: int = 5) -> tuple[Value, ...]:
        """The values grid mode tries: the choices, the stepped range, or `points` spread over it."""
        if self.kind == "categorical":
            return self.choices
        if self.step is not None:
            n = math.floor((self.high - self.low) / self.step + 1e-9)
            values = [self.low + i * self.step for i in range(n + 1)]
        elif self.kind == "int" and self.high - self.low < points:
            values = [self.low + i for i in range(int(self.high - self.low) + 1)]
        elif self.log:
            ratio = (self.high / self.low) ** (1 / (points - 1))
            values = [self.low * ratio**i for i in range(points)]
        else:
            values = [self.low + (self.high - self.low) * i / (points - 1) for i in range(points)]
        return tuple(dict.fromkeys(self._cast(v) for v in values))

    def _cast(self, v: float) -> Value:
        return round(v) if self.kind == "int" else round(v, 6)

    def contains(self, value: Value | None) -> bool:
        if value is None:
            return False
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, str) or not self.low <= float(value) <= self.high:
            return False
        return self.step is None or math.isclose(
            (float(value) - self.low) / self.step, round((float(value) - self.low) / self.step), abs_tol=1e-6
        )


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    def grid_size(self) -> int:
        return math.prod(len(d.grid()) for d in self.dimensions)

    def current(self) -> Params:
        """The shipped config as a candidate (fields left unset take their effective default)."""
        return {d.name: d.current for d in self.dimensions if d.current is not None}

    def by_name(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        raise KeyError(name)


class SpaceError(ValueError):
    """The tune block does not fit the scenario; `field` is its path inside `tune`."""

    def __init__(self, message: str, field: str, valid: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.valid = valid


def encode_choice(value: Value | list[str]) -> Value:
    """Optuna's categorical values are scalars: a list choice travels as "a,b"."""
    return ",".join(str(v) for v in value) if isinstance(value, list) else value


def decode_list(value: Value) -> tuple[str, ...]:
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


# --- defaults ------------------------------------------------------------------------------------


def search_space(scn: Any, tune: TuneModel) -> SearchSpace:
    """Resolve the tune block against a loaded scenario (defaults from the shipped config)."""
    dims: list[Dimension] = []
    names = {s.name for s in scn.services}
    for name in tune.services:
        if name not in names:
            raise SpaceError(f"no service named {name!r}", f"tune.services.{name}", ", ".join(sorted(names)))
    for svc in scn.services:
        dims.extend(_service_dims(svc, tune.services.get(svc.name, ServiceTune())))
    pools = cluster_pools(scn)
    for name in tune.node_pools:
        if name not in pools:
            raise SpaceError(
                f"no NodePool named {name!r} in the scenario's cluster",
                f"tune.node_pools.{name}",
                ", ".join(sorted(pools)) or "a scenario with a cluster (NodePools)",
            )
    covered = pool_coverages(scn) if pools else {}
    for name, pool in pools.items():
        # A pool the scenario does not cover is searched only when named: its results are advice.
        if name in tune.node_pools or covered[name].covered:
            dims.extend(_pool_dims(pool, tune.node_pools.get(name, NodePoolTune())))
    return SearchSpace(tuple(dims))


def _resolve(
    dim: Dim,
    *,
    name: str,
    owner: str,
    target: Literal["service", "pool"],
    fld: str,
    kind: Literal["int", "float", "categorical"],
    current: Value | None,
    default: RangeModel | ChoicesModel | None,
) -> list[Dimension]:
    if dim is False:
        return []
    chosen = dim if dim is not None else default
    if chosen is None:
        return []
    base = Dimension(name=name, owner=owner, target=target, field=fld, kind=kind, current=current)
    if isinstance(chosen, ChoicesModel):
        return [
            dataclasses.replace(
                base, kind="categorical", choices=tuple(encode_choice(c) for c in chosen.choices)
            )
        ]
    if kind == "categorical":
        raise SpaceError(f"{fld} takes choices, not a range", f"tune.{owner}.{fld}", "choices: [...]")
    low, high = chosen.low, chosen.high
    if kind == "int":
        low, high = math.ceil(low), math.floor(high)
    return [dataclasses.replace(base, low=low, high=high, step=chosen.step, log=chosen.log)]


def _threshold(trigger: Trigger, key: str) -> float | None:
    raw = trigger.metadata.get(key)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def threshold_key(trigger: Trigger) -> str:
    """The metadata key holding a trigger's target: `value` for cpu/memory, `threshold` otherwise."""
    return "value" if trigger.type in ("cpu", "memory") else "threshold"


def _service_dims(svc: Any, t: ServiceTune) -> list[Dimension]:
    so: ScaledObjectSpec = svc.scaled_object
    n = svc.name
    dims: list[Dimension] = []

    def add(dim: Dim, fld: str, kind: Any, current: Value | None, default: Any) -> None:
        dims.extend(
            _resolve(
                dim,
                name=f"{n}.{fld}",
                owner=n,
                target="service",
                fld=fld,
                kind=kind,
                current=current,
                default=default,
            )
        )

    if t.trigger >= len(so.triggers):
        raise SpaceError(
            f"the ScaledObject has {len(so.triggers)} trigger(s)", f"tune.services.{n}.trigger", "an index"
        )
    trigger = so.triggers[t.trigger]
    prefix = "" if t.trigger == 0 else f"triggers[{t.trigger}]."
    thr = _threshold(trigger, threshold_key(trigger))
    if thr is not None:
        step = _nice_step(thr / 10)
        default = RangeModel(low=max(step, _ceil_to(thr * 0.5, step)), high=thr * 1.5, step=step)
        add(t.threshold, f"{prefix}threshold", "float", thr, default)
    scale_to_zero = (so.min_replica_count or 0) == 0
    if trigger.type not in ("cpu", "memory"):
        act = _threshold(trigger, "activationThreshold") or 0.0
        add(t.activation_threshold, f"{prefix}activation_threshold", "float", act, None)
    cur_min = so.min_replica_count if so.min_replica_count is not None else 0
    cur_max = hpa_max_replicas(so.max_replica_count)
    add(
        t.min_replicas,
        "min_replicas",
        "int",
        cur_min,
        RangeModel(
            low=1 if cur_min >= 1 else 0, high=max(1, min(max(cur_min * 2, cur_min + 2), cur_max // 2))
        ),
    )
    add(
        t.max_replicas,
        "max_replicas",
        "int",
        cur_max,
        RangeModel(
            low=max(cur_max // 2, hpa_min_replicas(cur_min) + 1), high=cur_max * 3, step=max(1, cur_max // 4)
        ),
    )
    add(
        t.polling_interval,
        "polling_interval",
        "int",
        so.polling_interval_s if so.polling_interval_s is not None else DEFAULT_POLLING_INTERVAL_S,
        ChoicesModel(choices=[5, 15, 30]) if scale_to_zero else None,
    )
    add(
        t.cooldown_period,
        "cooldown_period",
        "int",
        so.cooldown_period_s if so.cooldown_period_s is not None else DEFAULT_COOLDOWN_PERIOD_S,
        RangeModel(low=60, high=900, step=60) if scale_to_zero else None,
    )
    behavior = so.behavior or Behavior()
    up = _rules(behavior.scale_up, DEFAULT_SCALE_UP_RULES)
    down = _rules(behavior.scale_down, DEFAULT_SCALE_DOWN_RULES)
    for direction, rules, dims_cfg, defaults in (
        (
            "scale_up",
            up,
            t.scale_up,
            {"percent": ChoicesModel(choices=[100, 200, 400]), "pods": None, "stabilization_window": None},
        ),
        (
            "scale_down",
            down,
            t.scale_down,
            {"stabilization_window": RangeModel(low=0, high=600, step=60), "pods": None, "percent": None},
        ),
    ):
        add(
            dims_cfg.stabilization_window,
            f"{direction}.stabilization_window",
            "int",
            rules.stabilization_window_s if rules.stabilization_window_s is not None else 300,
            defaults["stabilization_window"],
        )
        for ptype, fld in (("Pods", "pods"), ("Percent", "percent")):
            add(
                getattr(dims_cfg, fld),
                f"{direction}.{fld}",
                "int",
                _policy_value(rules, ptype),
                defaults[fld],
            )
        periods = {p.period_s for p in rules.policies or ()}
        add(dims_cfg.period, f"{direction}.period", "int", min(periods) if periods else 15, None)
    dims.extend(_request_dims(svc, t.requests))
    return dims


def _request_dims(svc: Any, requests: RequestsDims | bool) -> list[Dimension]:
    if requests is False:
        return []
    cfg = RequestsDims() if requests is True else requests
    model = svc.model
    out: list[Dimension] = []
    cpu_now = model.cpu_request_millicores
    if cpu_now is not None:
        floor = max(model.idle_cpu_millicores, 10.0)
        high = cpu_now * 1.5
        if model.cpu_limit_millicores is not None:
            high = min(high, model.cpu_limit_millicores)
        step = _nice_step(cpu_now / 10)
        out += _resolve(
            cfg.cpu,
            name=f"{svc.name}.cpu_request",
            owner=svc.name,
            target="service",
            fld="cpu_request",
            kind="int",
            current=round(cpu_now),
            default=RangeModel(
                low=_ceil_to(max(floor, cpu_now * 0.3), step), high=max(high, floor), step=step
            ),
        )
    mem_now = model.memory_request_mib
    if mem_now is not None:
        floor = memory_floor_mib(model)
        high = mem_now * 1.5
        if model.memory_limit_mib is not None:
            high = min(high, model.memory_limit_mib)
        out += _resolve(
            cfg.memory,
            name=f"{svc.name}.memory_request",
            owner=svc.name,
            target="service",
            fld="memory_request",
            kind="int",
            current=round(mem_now),
            default=RangeModel(low=_ceil_to(floor, 16), high=max(high, floor), step=16),
        )
    return out


def memory_floor_mib(model: Any) -> float:
    """The most memory a pod uses in the model: idle plus every worker busy (requests never go below)."""
    return float(model.idle_memory_mib + model.memory_per_inflight_mib * model.workers)


def _ceil_to(v: float, step: float) -> float:
    return math.ceil(v / step) * step


def _nice_step(x: float) -> float:
    """1, 2 or 5 times a power of ten, at most x: grids people can read."""
    if x <= 0:
        return 1.0
    exp = math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * 10**exp <= x:
            return float(m * 10**exp)
    return float(10**exp)


def _rules(given: ScalingRules | None, default: ScalingRules) -> ScalingRules:
    if given is None:
        return default
    return ScalingRules(
        stabilization_window_s=given.stabilization_window_s
        if given.stabilization_window_s is not None
        else default.stabilization_window_s,
        select_policy=given.select_policy or default.select_policy,
        policies=given.policies if given.policies is not None else default.policies,
        tolerance=given.tolerance,
    )


def _policy_value(rules: ScalingRules, ptype: str) -> int | None:
    for p in rules.policies or ():
        if p.type == ptype:
            return p.value
    return None


# --- node pools ----------------------------------------------------------------------------------

LABEL_FOR_FIELD = {
    "instance_categories": "karpenter.k8s.aws/instance-category",
    "instance_families": "karpenter.k8s.aws/instance-family",
    "instance_sizes": "karpenter.k8s.aws/instance-size",
    "capacity_types": "karpenter.sh/capacity-type",
}


def cluster_pools(scn: Any) -> dict[str, Any]:
    """The scenario's NodePools by name; empty until the scenario simulates nodes."""
    cluster = getattr(scn, "cluster", None)
    if cluster is None:
        return {}
    return {p.name: p for p in cluster.node_pools}


def _pool_dims(pool: Any, t: NodePoolTune) -> list[Dimension]:
    dims: list[Dimension] = []
    for fld, label in LABEL_FOR_FIELD.items():
        current = next(
            (",".join(r.values) for r in pool.requirements if r.key == label and r.operator == "In"), None
        )
        default = (
            ChoicesModel(choices=[["on-demand"], ["spot", "on-demand"]]) if fld == "capacity_types" else None
        )
        dims += _resolve(
            getattr(t, fld),
            name=f"pool:{pool.name}.{fld}",
            owner=pool.name,
            target="pool",
            fld=fld,
            kind="categorical",
            current=current,
            default=default,
        )
    dims += _resolve(
        t.consolidation_policy,
        name=f"pool:{pool.name}.consolidation_policy",
        owner=pool.name,
        target="pool",
        fld="consolidation_policy",
        kind="categorical",
        current=pool.consolidation_policy,
        default=ChoicesModel(choices=["WhenEmpty", "WhenEmptyOrUnderutilized"]),
    )
    dims += _resolve(
        t.consolidate_after,
        name=f"pool:{pool.name}.consolidate_after",
        owner=pool.name,
        target="pool",
        fld="consolidate_after",
        kind="int",
        current=None if pool.consolidate_after_s is None else round(pool.consolidate_after_s),
        default=ChoicesModel(choices=[0, 30, 120, 600]),
    )
    first = next((b.nodes for b in pool.budgets if b.schedule is None), None)
    dims += _resolve(
        t.budget_nodes,
        name=f"pool:{pool.name}.budget_nodes",
        owner=pool.name,
        target="pool",
        fld="budget_nodes",
        kind="categorical",
        current=None if first is None else str(first),
        default=None,
    )
    return dims


# --- applying a candidate ------------------------------------------------------------------------


_TRIGGER_FIELD = re.compile(r"(?:triggers\[(\d+)\]\.)?(threshold|activation_threshold)")


class CandidateError(ValueError):
    """A candidate that cannot be a valid config (min above max, a request above its limit)."""


def apply_params(scn: Any, params: Mapping[str, Value]) -> Any:
    """The scenario with the candidate's fields replaced; everything else, traffic included, is untouched."""
    by_service: dict[str, dict[str, Value]] = {}
    by_pool: dict[str, dict[str, Value]] = {}
    for name, value in params.items():
        if name.startswith("pool:"):
            pool, _, fld = name[5:].partition(".")
            by_pool.setdefault(pool, {})[fld] = value
        else:
            svc, _, fld = name.partition(".")
            by_service.setdefault(svc, {})[fld] = value
    services = tuple(
        _apply_service(s, by_service[s.name]) if s.name in by_service else s for s in scn.services
    )
    out = dataclasses.replace(scn, services=services)
    cluster = getattr(scn, "cluster", None)
    if cluster is None:
        return out
    pods = dict(cluster.pods)
    for old, new in zip(scn.services, services, strict=True):
        if new is not old and new.name in pods:
            pods[new.name] = _resized_pods(pods[new.name], old.workload, new.workload)
    pools = tuple(_apply_pool(p, by_pool[p.name]) if p.name in by_pool else p for p in cluster.node_pools)
    return dataclasses.replace(out, cluster=dataclasses.replace(cluster, node_pools=pools, pods=pods))


def _resized_pods(template: Any, old: Any, new: Any) -> Any:
    """The scheduler's view of a pod follows a request change (by the same delta: sidecars stay)."""
    requests = template.spec.requests
    cpu = requests.cpu_millicores + (new.cpu_request_millicores or 0.0) - (old.cpu_request_millicores or 0.0)
    mem = requests.memory_mib + (new.memory_request_mib or 0.0) - (old.memory_request_mib or 0.0)
    if cpu == requests.cpu_millicores and mem == requests.memory_mib:
        return template
    spec = dataclasses.replace(
        template.spec, requests=dataclasses.replace(requests, cpu_millicores=cpu, memory_mib=mem)
    )
    return dataclasses.replace(template, spec=spec)


def _apply_service(svc: Any, values: dict[str, Value]) -> Any:
    so: ScaledObjectSpec = svc.scaled_object
    triggers = list(so.triggers)
    for key in [k for k in values if _TRIGGER_FIELD.fullmatch(k)]:
        match = _TRIGGER_FIELD.fullmatch(key)
        assert match is not None
        index = int(match.group(1) or 0)
        trig = triggers[index]
        meta = dict(trig.metadata)
        meta_key = threshold_key(trig) if match.group(2) == "threshold" else "activationThreshold"
        meta[meta_key] = format_number(float(values.pop(key)))
        triggers[index] = dataclasses.replace(trig, metadata=meta)
    so = dataclasses.replace(so, triggers=tuple(triggers))
    if "min_replicas" in values:
        so = dataclasses.replace(so, min_replica_count=int(values.pop("min_replicas")))
    if "max_replicas" in values:
        so = dataclasses.replace(so, max_replica_count=int(values.pop("max_replicas")))
    if "polling_interval" in values:
        so = dataclasses.replace(so, polling_interval_s=int(values.pop("polling_interval")))
    if "cooldown_period" in values:
        so = dataclasses.replace(so, cooldown_period_s=int(values.pop("cooldown_period")))
    so = dataclasses.replace(so, behavior=_apply_behavior(so.behavior, values))
    max_count = hpa_max_replicas(so.max_replica_count)
    if (so.min_replica_count or 0) > max_count:
        raise CandidateError(
            f"{svc.name}: minReplicaCount {so.min_replica_count} > maxReplicaCount {max_count}"
        )
    model, workload = svc.model, svc.workload
    if "cpu_request" in values:
        cpu = float(values.pop("cpu_request"))
        if model.cpu_limit_millicores is not None and cpu > model.cpu_limit_millicores:
            raise CandidateError(f"{svc.name}: CPU request {cpu:g}m above its limit")
        model = dataclasses.replace(model, cpu_request_millicores=cpu)
        workload = dataclasses.replace(workload, cpu_request_millicores=cpu)
    if "memory_request" in values:
        mem = float(values.pop("memory_request"))
        if model.memory_limit_mib is not None and mem > model.memory_limit_mib:
            raise CandidateError(f"{svc.name}: memory request {mem:g}Mi above its limit")
        model = dataclasses.replace(model, memory_request_mib=mem)
        workload = dataclasses.replace(workload, memory_request_mib=mem)
    if values:
        raise KeyError(f"unknown tuned fields for {svc.name}: {', '.join(sorted(values))}")
    initial = min(max(svc.initial_replicas, hpa_min_replicas(so.min_replica_count)), max_count)
    return dataclasses.replace(
        svc, scaled_object=so, model=model, workload=workload, initial_replicas=initial
    )


def _apply_behavior(behavior: Behavior | None, values: dict[str, Value]) -> Behavior | None:
    for direction, default in (
        ("scale_up", DEFAULT_SCALE_UP_RULES),
        ("scale_down", DEFAULT_SCALE_DOWN_RULES),
    ):
        keys = {k for k in values if k.startswith(direction + ".")}
        if not keys:
            continue
        behavior = behavior or Behavior()
        given: ScalingRules | None = getattr(behavior, direction)
        rules = given or ScalingRules()
        policies = list(rules.policies if rules.policies is not None else default.policies or ())
        for ptype, fld in (("Pods", "pods"), ("Percent", "percent")):
            key = f"{direction}.{fld}"
            if key in keys:
                value = int(values.pop(key))
                i = next((j for j, p in enumerate(policies) if p.type == ptype), None)
                period = policies[0].period_s if policies else 15
                if i is None:
                    policies.append(ScalingPolicy(ptype, value, period))  # type: ignore[arg-type]
                else:
                    policies[i] = dataclasses.replace(policies[i], value=value)
        if f"{direction}.period" in keys:
            period = int(values.pop(f"{direction}.period"))
            policies = [dataclasses.replace(p, period_s=period) for p in policies]
        window = rules.stabilization_window_s
        if f"{direction}.stabilization_window" in keys:
            window = int(values.pop(f"{direction}.stabilization_window"))
        rules = dataclasses.replace(rules, policies=tuple(policies), stabilization_window_s=window)
        behavior = dataclasses.replace(behavior, **{direction: rules})
    return behavior


def _apply_pool(pool: Any, values: dict[str, Value]) -> Any:
    reqs = list(pool.requirements)
    for fld, label in LABEL_FOR_FIELD.items():
        if fld not in values:
            continue
        chosen = decode_list(values.pop(fld))
        kept = [r for r in reqs if r.key != label]
        req_type = type(reqs[0]) if reqs else _requirement_type()
        reqs = [*kept, req_type(key=label, operator="In", values=chosen)]
    changes: dict[str, Any] = {"requirements": tuple(reqs)}
    if "consolidation_policy" in values:
        changes["consolidation_policy"] = str(values.pop("consolidation_policy"))
    if "consolidate_after" in values:
        changes["consolidate_after_s"] = float(values.pop("consolidate_after"))
    if "budget_nodes" in values:
        nodes = _budget_nodes(values.pop("budget_nodes"))
        budgets = list(pool.budgets)
        i = next((j for j, b in enumerate(budgets) if b.schedule is None), None)
        if i is None:
            budgets.insert(0, _budget_type()(nodes=nodes))
        else:
            budgets[i] = dataclasses.replace(budgets[i], nodes=nodes)
        changes["budgets"] = tuple(budgets)
    if values:
        raise KeyError(f"unknown tuned fields for NodePool {pool.name}: {', '.join(sorted(values))}")
    return dataclasses.replace(pool, **changes)


def _budget_nodes(value: Value) -> int | str:
    text = str(value)
    return text if text.endswith("%") else int(float(text))


def _requirement_type() -> Any:
    from sim.controllers.karpenter.types import Requirement

    return Requirement


def _budget_type() -> Any:
    from sim.controllers.karpenter.types import Budget

    return Budget


def format_number(v: float) -> str:
    """A threshold as people write it in YAML: 30, 27.5 (never 30.0 or 2.75e+01)."""
    return f"{v:.6g}" if not float(v).is_integer() else str(int(v))
