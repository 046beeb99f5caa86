"""Plain values shared by the Karpenter model, the instance catalog and the manifest loader.

Everything here is data: the catalog builds `InstanceType`s, the manifest
loader builds `NodePoolSpec`s, `PodSpec`s and `PDB`s, the engine owns the
mutable `Node`s, and the controller functions in this package read them all.

Units (named in every field): CPU in millicores, memory and ephemeral storage
in MiB (2^20 bytes, floats so "2000M" stays exact enough), pods as a count,
prices in USD per hour, times in simulated seconds. Extended resources
(GPUs, "fake.com/vendor-a", ...) are counts keyed by their Kubernetes name.

A NodePool's `limits` and resource lookups by name use the Kubernetes
resource names below, converted to the same units ("cpu" in millicores,
"memory" in MiB), so a limit and a capacity are always compared like for like.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

# Kubernetes resource names, as used in limits and in `Resources.get`.
RESOURCE_CPU = "cpu"
RESOURCE_MEMORY = "memory"
RESOURCE_PODS = "pods"
RESOURCE_EPHEMERAL_STORAGE = "ephemeral-storage"
RESOURCE_NODES = "nodes"  # only meaningful in NodePool limits

# Well-known labels (core pkg/apis/v1/labels.go, aws pkg/apis/v1/labels.go).
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_REGION = "topology.kubernetes.io/region"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_OS = "kubernetes.io/os"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
LABEL_INSTANCE_CATEGORY = "karpenter.k8s.aws/instance-category"
LABEL_INSTANCE_FAMILY = "karpenter.k8s.aws/instance-family"
LABEL_INSTANCE_GENERATION = "karpenter.k8s.aws/instance-generation"
LABEL_INSTANCE_SIZE = "karpenter.k8s.aws/instance-size"
LABEL_INSTANCE_CPU = "karpenter.k8s.aws/instance-cpu"
LABEL_INSTANCE_MEMORY = "karpenter.k8s.aws/instance-memory"
LABEL_INSTANCE_GPU_COUNT = "karpenter.k8s.aws/instance-gpu-count"
LABEL_INSTANCE_GPU_NAME = "karpenter.k8s.aws/instance-gpu-name"

CapacityType = Literal["spot", "on-demand", "reserved"]
CAPACITY_TYPES: tuple[CapacityType, ...] = ("reserved", "spot", "on-demand")
"""In Karpenter's launch precedence: reserved before spot before on-demand (spec §4.2 step 6)."""

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
ConsolidationPolicy = Literal["WhenEmpty", "WhenEmptyOrUnderutilized", "Balanced"]
DisruptionReason = Literal["Empty", "Underutilized", "Drifted"]
DISRUPTION_REASONS: tuple[DisruptionReason, ...] = ("Empty", "Underutilized", "Drifted")
WhenUnsatisfiable = Literal["DoNotSchedule", "ScheduleAnyway"]
OwnerKind = Literal["ReplicaSet", "StatefulSet", "DaemonSet", "Job", "None"]


class Operator(StrEnum):
    """Node-selector operators a NodePool requirement may use (the CRD's enum)."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"
    GTE = "Gte"
    LTE = "Lte"


VALID_OPERATORS = ", ".join(op.value for op in Operator)


class RequirementError(ValueError):
    """A requirement that Kubernetes would reject; the manifest loader adds file, field and line."""


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of every resource the scheduler compares; missing means zero."""

    cpu_millicores: float = 0.0
    memory_mib: float = 0.0
    pods: float = 0.0
    ephemeral_storage_mib: float = 0.0
    extended: Mapping[str, float] = field(default_factory=dict)

    def get(self, name: str) -> float:
        """The amount of a resource by its Kubernetes name (in this module's units)."""
        if name == RESOURCE_CPU:
            return self.cpu_millicores
        if name == RESOURCE_MEMORY:
            return self.memory_mib
        if name == RESOURCE_PODS:
            return self.pods
        if name == RESOURCE_EPHEMERAL_STORAGE:
            return self.ephemeral_storage_mib
        return self.extended.get(name, 0.0)

    def items(self) -> Iterator[tuple[str, float]]:
        """Every resource with a non-zero amount, by Kubernetes name."""
        for name, amount in (
            (RESOURCE_CPU, self.cpu_millicores),
            (RESOURCE_MEMORY, self.memory_mib),
            (RESOURCE_PODS, self.pods),
            (RESOURCE_EPHEMERAL_STORAGE, self.ephemeral_storage_mib),
        ):
            if amount:
                yield name, amount
        for name, amount in self.extended.items():
            if amount:
                yield name, amount

    def __add__(self, other: Resources) -> Resources:
        extended = dict(self.extended)
        for name, amount in other.extended.items():
            extended[name] = extended.get(name, 0.0) + amount
        return Resources(
            self.cpu_millicores + other.cpu_millicores,
            self.memory_mib + other.memory_mib,
            self.pods + other.pods,
            self.ephemeral_storage_mib + other.ephemeral_storage_mib,
            extended,
        )

    def __sub__(self, other: Resources) -> Resources:
        extended = dict(self.extended)
        for name, amount in other.extended.items():
            extended[name] = extended.get(name, 0.0) - amount
        return Resources(
            self.cpu_millicores - other.cpu_millicores,
            self.memory_mib - other.memory_mib,
            self.pods - other.pods,
            self.ephemeral_storage_mib - other.ephemeral_storage_mib,
            extended,
        )

    def fits_in(self, available: Resources) -> bool:
        """Every requested amount is within `available`; a resource `available` lacks counts as 0."""
        return all(amount <= available.get(name) + _EPS for name, amount in self.items())

    @staticmethod
    def total(parts: Iterator[Resources] | list[Resources] | tuple[Resources, ...]) -> Resources:
        result = Resources()
        for part in parts:
            result = result + part
        return result


_EPS = 1e-9
"""Slack for float sums of MiB converted from decimal quantities (1.8G + 1.8G + 400M)."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One node-selector requirement; `values` are strings as in the API (Gt/Lt/Gte/Lte take one integer).

    `min_values` is the NodePool's minimum number of distinct values of `key`
    among a NodeClaim's instance-type options (spec §3.8); None means no minimum.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    min_values: int | None = None

    def __post_init__(self) -> None:
        try:
            op = Operator(self.operator)
        except ValueError:
            raise RequirementError(
                f"requirement on {self.key!r}: unknown operator {self.operator!r} (valid: {VALID_OPERATORS})"
            ) from None
        object.__setattr__(self, "operator", op)
        object.__setattr__(self, "values", tuple(str(v) for v in self.values))
        if op in (Operator.GT, Operator.LT, Operator.GTE, Operator.LTE):
            if len(self.values) != 1:
                raise RequirementError(
                    f"requirement on {self.key!r}: {op.value} takes exactly one integer value, "
                    f"got {list(self.values)}"
                )
            try:
                int(self.values[0])
            except ValueError:
                raise RequirementError(
                    f"requirement on {self.key!r}: {op.value} needs an integer value, got {self.values[0]!r}"
                ) from None
        elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if self.values:
                raise RequirementError(
                    f"requirement on {self.key!r}: {op.value} takes no values, got {list(self.values)}"
                )
        elif op == Operator.IN and not self.values:
            raise RequirementError(f"requirement on {self.key!r}: In needs at least one value")
        if self.min_values is not None and not 1 <= self.min_values <= 50:
            raise RequirementError(
                f"requirement on {self.key!r}: minValues must be between 1 and 50, got {self.min_values}"
            )


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: TaintEffect
    value: str = ""


@dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration; `key` None with operator Exists tolerates everything, `effect` None any effect."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: TaintEffect | None = None


@dataclass(frozen=True, slots=True)
class Offering:
    """Where and how an instance type can be bought; `available` False models an ICE'd or absent pool."""

    zone: str
    capacity_type: CapacityType
    price_usd_per_h: float
    available: bool = True


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One machine shape as Karpenter's scheduler sees it.

    `labels` carries the single-valued well-known labels (instance-type, arch,
    os, category, family, generation, size, cpu, memory, ...). Zone and
    capacity type are not labels here: they come from `offerings`.
    `allocatable` is capacity minus kube-reserved, system-reserved, eviction
    threshold and (already inside capacity.memory) the VM memory overhead.
    `capacity.pods` is the max-pods figure.
    """

    name: str
    capacity: Resources
    allocatable: Resources
    labels: Mapping[str, str]
    offerings: tuple[Offering, ...]

    @property
    def overhead(self) -> Resources:
        return self.capacity - self.allocatable


@dataclass(frozen=True, slots=True)
class Budget:
    """A disruption budget: `nodes` is a count or a percentage string ("10%").

    `schedule` (cron, UTC) and `duration_s` are both set or both None; a budget
    with neither is always active. Empty `reasons` applies to every reason.
    """

    nodes: int | str
    schedule: str | None = None
    duration_s: float | None = None
    reasons: tuple[DisruptionReason, ...] = ()


DEFAULT_BUDGETS: tuple[Budget, ...] = (Budget(nodes="10%"),)
DEFAULT_EXPIRE_AFTER_S = 720 * 3600.0


@dataclass(frozen=True, slots=True)
class NodePoolSpec:
    """A Karpenter v1 NodePool, with the CRD's defaults.

    `limits` maps Kubernetes resource names ("cpu", "memory", "nodes", ...) to
    amounts in this module's units; a name left out is unbounded, None means no
    limits at all. `consolidate_after_s` None is `Never`; `expire_after_s` None
    is `Never`.
    """

    name: str
    weight: int = 0
    requirements: tuple[Requirement, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    startup_taints: tuple[Taint, ...] = ()
    limits: Mapping[str, float] | None = None
    consolidation_policy: ConsolidationPolicy = "WhenEmptyOrUnderutilized"
    consolidate_after_s: float | None = 0.0
    budgets: tuple[Budget, ...] = DEFAULT_BUDGETS
    expire_after_s: float | None = DEFAULT_EXPIRE_AFTER_S
    termination_grace_period_s: float | None = None
    node_class: str = "default"


@dataclass(frozen=True, slots=True)
class WeightedRequirements:
    """A preferred node-affinity term."""

    weight: int
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class TopologySpreadConstraint:
    """`topology_key` is LABEL_ZONE or LABEL_HOSTNAME (or any node label); selector matches pod labels."""

    topology_key: str
    max_skew: int
    when_unsatisfiable: WhenUnsatisfiable
    label_selector: Mapping[str, str]
    min_domains: int | None = None


@dataclass(frozen=True, slots=True)
class PodAffinityTerm:
    """A pod (anti-)affinity term over `topology_key`; `weight` None means required."""

    topology_key: str
    label_selector: Mapping[str, str]
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class PodSpec:
    """One pod as the schedulers see it.

    `requests` is the effective request (max of init vs. sum of containers,
    plus RuntimeClass overhead); its `pods` is forced to 1. `owner` is the service
    or workload name (PDBs and cost apportioning use it). Required node
    affinity terms are ORed; requirements inside a term are ANDed, and all of
    them are ANDed with `node_selector`. `do_not_disrupt_s` is the
    `karpenter.sh/do-not-disrupt` annotation: None = absent, math.inf =
    "true", a finite number = a Go duration counted from `started_s`.
    """

    id: str
    owner: str
    requests: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    required_affinity: tuple[tuple[Requirement, ...], ...] = ()
    preferred_affinity: tuple[WeightedRequirements, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    topology_spread: tuple[TopologySpreadConstraint, ...] = ()
    anti_affinity: tuple[PodAffinityTerm, ...] = ()
    host_ports: tuple[int, ...] = ()
    do_not_disrupt_s: float | None = None
    priority: int = 0
    deletion_cost: int = 0
    owner_kind: OwnerKind = "ReplicaSet"
    created_s: float = 0.0
    started_s: float | None = None
    terminating: bool = False

    def __post_init__(self) -> None:
        # Every pod takes one of the node's pod slots whatever its containers ask for.
        if self.requests.pods != 1:
            object.__setattr__(self, "requests", replace(self.requests, pods=1.0))

    def do_not_disrupt_active(self, now_s: float) -> bool:
        if self.do_not_disrupt_s is None:
            return False
        if math.isinf(self.do_not_disrupt_s):
            return True
        return self.started_s is None or now_s - self.started_s < self.do_not_disrupt_s


@dataclass(frozen=True, slots=True)
class PDB:
    """A PodDisruptionBudget over the pods whose labels match `selector`; one of the two is set.

    Values are counts or percentage strings ("50%"), as in policy/v1.
    """

    name: str
    selector: Mapping[str, str]
    max_unavailable: int | str | None = None
    min_available: int | str | None = None


@dataclass(eq=False, slots=True)
class Node:
    """A NodeClaim and its Node, as the engine keeps them (mutable; one object per machine).

    `nodepool` None is a node Karpenter does not manage. Timeline: created_s
    (NodeClaim created) <= launched_s (instance exists, type and price fixed)
    <= ready_s (registered and initialized; kube-scheduler may bind). A node
    with `ready_s` None or in the future is in flight. `pods` are the bound
    (or, while in flight, nominated) non-DaemonSet pods by id; DaemonSet pods
    are not listed, their requests are in `daemon_requests`.
    """

    name: str
    nodepool: str | None
    instance_type: str
    capacity_type: CapacityType
    zone: str
    price_usd_per_h: float
    capacity: Resources
    allocatable: Resources
    labels: dict[str, str]
    taints: tuple[Taint, ...] = ()
    created_s: float = 0.0
    launched_s: float | None = None
    ready_s: float | None = None
    pods: dict[str, PodSpec] = field(default_factory=dict)
    daemon_requests: Resources = field(default_factory=Resources)
    nominated_until_s: float = -math.inf
    marked_for_deletion: bool = False
    deletion_started_s: float | None = None
    do_not_disrupt: bool = False
    last_pod_event_s: float | None = None
    drifted_s: float | None = None

    def is_ready(self, now_s: float) -> bool:
        return self.ready_s is not None and self.ready_s <= now_s

    def requested(self) -> Resources:
        """What the bound pods and the DaemonSets ask for (what kube-scheduler subtracts)."""
        return Resources.total([p.requests for p in self.pods.values()]) + self.daemon_requests

    def available(self) -> Resources:
        return self.allocatable - self.requested()
