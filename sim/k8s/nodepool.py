"""Karpenter v1 NodePools and EC2NodeClasses from the GitOps tree, checked as the cluster would.

A NodePool that the API server or Karpenter would reject (an unknown
operator, `Gt` with a non-integer, a schedule without a duration, a
restricted label) must not be simulated as if it worked, so each object gets
the CRD schema check (sim.k8s.crd), then the CEL rules and Karpenter's own
runtime validation, each failure an InputError at the field's line. What the
simulator does not model (AMI selection, subnets, user data, kubelet fields
that do not change allocatable, ...) is listed once per object in the
scenario's warnings, so a user sees what did not take part in the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sim.catalog.instancetypes import WELL_KNOWN_LABELS
from sim.catalog.overhead import (
    AMI_FAMILIES,
    RESERVABLE,
    AmiFamily,
    BlockDevice,
    KubeletSettings,
    NodeClassSettings,
)
from sim.controllers.karpenter.requirements import ValueSet
from sim.controllers.karpenter.types import (
    DISRUPTION_REASONS,
    LABEL_ARCH,
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_OS,
    LABEL_REGION,
    LABEL_ZONE,
    RESOURCE_CPU,
    RESOURCE_EPHEMERAL_STORAGE,
    RESOURCE_MEMORY,
    Budget,
    ConsolidationPolicy,
    DisruptionReason,
    InstanceType,
    NodePoolSpec,
    Operator,
    Requirement,
    RequirementError,
    Taint,
    TaintEffect,
)
from sim.k8s.crd import validate_resource
from sim.k8s.kustomize import ManifestSet, Resource
from sim.k8s.quantity import QuantityError, parse_quantity
from sim.k8s.yamlsource import FieldPath, YamlDocument

NODEPOOL_API_VERSION = "karpenter.sh/v1"
NODECLASS_API_VERSION = "karpenter.k8s.aws/v1"
NODEPOOL_KIND = "NodePool"
NODECLASS_KIND = "EC2NodeClass"
NODECLASS_GROUP = "karpenter.k8s.aws"

# Older label spellings Karpenter rewrites to the stable ones (core labels.go NormalizedLabels).
NORMALIZED_LABELS = {
    "failure-domain.beta.kubernetes.io/zone": LABEL_ZONE,
    "failure-domain.beta.kubernetes.io/region": LABEL_REGION,
    "beta.kubernetes.io/arch": LABEL_ARCH,
    "beta.kubernetes.io/os": LABEL_OS,
    "beta.kubernetes.io/instance-type": LABEL_INSTANCE_TYPE,
}
RESTRICTED_DOMAINS = ("karpenter.sh", "karpenter.k8s.aws")
OFFERING_LABELS = (LABEL_ZONE, LABEL_CAPACITY_TYPE)
ALLOWED_REQUIREMENT_KEYS = frozenset({*WELL_KNOWN_LABELS, *OFFERING_LABELS, LABEL_NODEPOOL})
_AWS = "karpenter.k8s.aws/"
UPSTREAM_WELL_KNOWN = frozenset(
    {
        *ALLOWED_REQUIREMENT_KEYS,
        LABEL_REGION,
        "node.kubernetes.io/windows-build",
        "topology.k8s.aws/zone-id",
        *(
            _AWS + name
            for name in (
                "capacity-reservation-id",
                "capacity-reservation-type",
                "capacity-reservation-interruptible",
                "instance-encryption-in-transit-supported",
                "nitro-sandbox",
                "instance-cpu-sustained-clock-speed-mhz",
                "instance-tenancy",
                "placement-group-id",
                "placement-group-partition",
            )
        ),
    }
)
"""Labels Karpenter (core and AWS) lets a NodePool require; the catalog has values for the ALLOWED ones."""
CAPACITY_TYPE_VALUES = ("on-demand", "spot", "reserved")
SUPPORTED_EVICTION_SIGNALS = (
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
)
SUPPORTED_RESERVED = (*RESERVABLE, "pid")
ALLOCATABLE_KUBELET_FIELDS = ("maxPods", "podsPerCore", "kubeReserved", "systemReserved", "evictionHard")

_GO_DURATION = re.compile(r"([0-9]+)(h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0}
_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class NodeClassView:
    """One EC2NodeClass: what it contributes to allocatable, and where it was written."""

    name: str
    settings: NodeClassSettings
    resource: Resource


@dataclass(frozen=True)
class NodePoolView:
    """One NodePool as the Karpenter model's NodePoolSpec, with its source for later messages."""

    spec: NodePoolSpec
    resource: Resource


def load_node_classes(manifests: ManifestSet, warnings: list[str]) -> dict[str, NodeClassView]:
    """Every EC2NodeClass in the set, validated; unmodelled fields are appended to `warnings` once."""
    found: dict[str, NodeClassView] = {}
    for resource in manifests.find(NODECLASS_KIND, group=NODECLASS_GROUP):
        validate_resource(resource)
        view = _node_class(resource, warnings)
        found[view.name] = view
    return found


def load_nodepools(
    manifests: ManifestSet, node_classes: Mapping[str, NodeClassView], warnings: list[str]
) -> list[NodePoolView]:
    """Every NodePool in the set, validated and defaulted as the CRD defaults it."""
    return [
        _nodepool(resource, node_classes, warnings)
        for resource in manifests.find(NODEPOOL_KIND, group="karpenter.sh")
    ]


def go_duration_s(text: str) -> float:
    """`1h30m`, `90s`, `720h` -> seconds (the forms the Karpenter CRD patterns allow)."""
    pos = 0
    total = 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            raise ValueError(text)
        total += int(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(text)
    return total


# --- EC2NodeClass ---------------------------------------------------------------------------------

_NODECLASS_MODELLED = (
    "amiFamily",
    "amiSelectorTerms",
    "kubelet",
    "blockDeviceMappings",
    "instanceStorePolicy",
)


def _node_class(resource: Resource, warnings: list[str]) -> NodeClassView:
    doc = resource.doc
    spec = doc.get(("spec",)) or {}
    if ("role" in spec) == ("instanceProfile" in spec):
        raise doc.error(("spec",), "must specify exactly one of 'role' and 'instanceProfile'")
    family = _ami_family(doc, spec)
    ignored = [f"spec.{key}" for key in spec if key not in _NODECLASS_MODELLED]
    if any(set(term) - {"alias"} for term in spec.get("amiSelectorTerms", []) if isinstance(term, dict)):
        ignored.append("spec.amiSelectorTerms (only an alias's AMI family is used)")
    kubelet, kubelet_ignored = kubelet_settings(doc, ("spec", "kubelet"))
    ignored.extend(kubelet_ignored)
    devices = _block_devices(doc)
    raid0 = spec.get("instanceStorePolicy") == "RAID0"
    if ignored:
        _warn_once(
            warnings,
            f"{_where(resource)}: {NODECLASS_KIND}/{resource.name}: ignored field(s) {', '.join(ignored)} "
            "(capsim models the AMI family, kubelet reservations, eviction thresholds, max pods and the "
            "root volume; zones come from the scenario's cluster.zones)",
        )
    return NodeClassView(
        name=resource.name,
        settings=NodeClassSettings(
            ami_family=family, kubelet=kubelet, block_devices=devices, instance_store_raid0=raid0
        ),
        resource=resource,
    )


def _ami_family(doc: YamlDocument, spec: Mapping[str, Any]) -> AmiFamily:
    """The family from `amiFamily`, else from the alias (`al2023@latest`), as the CRD's CEL rules demand."""
    aliases = [
        (i, str(term["alias"]))
        for i, term in enumerate(spec.get("amiSelectorTerms") or [])
        if isinstance(term, dict) and "alias" in term
    ]
    from_alias: AmiFamily | None = None
    if aliases:
        i, alias = aliases[0]
        prefix = alias.split("@", 1)[0].lower()
        from_alias = next((f for f in AMI_FAMILIES if f.lower() == prefix and f != "Custom"), None)
        if from_alias is None or "@" not in alias:
            raise doc.error(
                ("spec", "amiSelectorTerms", i, "alias"),
                f"alias {alias!r} is not <family>@<version>",
                valid="al2@latest, al2023@latest, bottlerocket@latest, windows2019@latest, "
                "windows2022@latest, windows2025@latest",
            )
        if len(spec.get("amiSelectorTerms") or []) != 1:
            raise doc.error(("spec", "amiSelectorTerms"), "an alias must be the only amiSelectorTerm")
    declared = spec.get("amiFamily")
    if declared is None:
        if from_alias is None:
            raise doc.error(
                ("spec", "amiFamily"),
                "amiFamily is required when amiSelectorTerms has no alias",
                valid=", ".join(AMI_FAMILIES),
            )
        return from_alias
    family = next(f for f in AMI_FAMILIES if f == declared)  # the CRD enum has checked it
    if from_alias is not None and family not in (from_alias, "Custom"):
        raise doc.error(
            ("spec", "amiFamily"),
            f"amiFamily {family} does not match the alias's family {from_alias}",
            valid=f"{from_alias} or Custom",
        )
    return family


def kubelet_settings(doc: YamlDocument, path: FieldPath) -> tuple[KubeletSettings, list[str]]:
    """The kubelet fields that change allocatable, and the names of the ones that do not (ignored)."""
    block = doc.get(path)
    if block is None:
        return KubeletSettings(), []
    if not isinstance(block, dict):
        raise doc.error(path, "kubelet must be a mapping")
    ignored = [
        f"{'.'.join(str(p) for p in path)}.{key}" for key in block if key not in ALLOCATABLE_KUBELET_FIELDS
    ]
    max_pods = _count(doc, (*path, "maxPods"), "maxPods")
    pods_per_core = _count(doc, (*path, "podsPerCore"), "podsPerCore")
    kube_reserved = _reserved(doc, (*path, "kubeReserved"), ignored)
    system_reserved = _reserved(doc, (*path, "systemReserved"), ignored)
    eviction = _eviction_hard(doc, (*path, "evictionHard"), ignored)
    settings = KubeletSettings(max_pods, pods_per_core, kube_reserved, system_reserved, eviction)
    return settings, ignored


def _count(doc: YamlDocument, path: FieldPath, name: str) -> int | None:
    value = doc.get(path)
    if value is None:
        return None
    if isinstance(value, str):
        raise doc.error(
            path,
            f"{name} {value!r} is an expression; those need the NodeClassCEL feature gate (off by default)",
            valid="a whole number >= 0",
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise doc.error(path, f"{name} must be a whole number >= 0, got {value!r}")
    return value


def _reserved(doc: YamlDocument, path: FieldPath, ignored: list[str]) -> dict[str, Decimal]:
    block = doc.get(path)
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise doc.error(path, "must be a mapping of resource name to quantity")
    found: dict[str, Decimal] = {}
    for key, value in block.items():
        where = (*path, key)
        if key not in SUPPORTED_RESERVED:
            raise doc.error(where, f"{key!r} cannot be reserved", valid=", ".join(SUPPORTED_RESERVED))
        amount = _quantity(doc, where, value)
        if key == "pid":
            ignored.append(f"{doc.field(where)} (pid reservations do not change what fits)")
            continue
        found[str(key)] = amount
    return found


def _eviction_hard(doc: YamlDocument, path: FieldPath, ignored: list[str]) -> dict[str, str]:
    block = doc.get(path)
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise doc.error(path, "evictionHard must be a mapping of signal to threshold")
    found: dict[str, str] = {}
    for key, value in block.items():
        where = (*path, key)
        if key not in SUPPORTED_EVICTION_SIGNALS:
            raise doc.error(
                where, f"unknown eviction signal {key!r}", valid=", ".join(SUPPORTED_EVICTION_SIGNALS)
            )
        text = str(value).strip()
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                percent = -1.0
            if not 0 <= percent <= 100:
                raise doc.error(where, f"{text!r} is not a percentage", valid="0% to 100%, or a quantity")
        else:
            _quantity(doc, where, text)
        if key in ("memory.available", "nodefs.available"):
            found[str(key)] = text
        else:
            ignored.append(
                f"{doc.field(where)} (only memory.available and nodefs.available reduce allocatable)"
            )
    return found


def _quantity(doc: YamlDocument, path: FieldPath, value: object) -> Decimal:
    try:
        amount = parse_quantity(value)
    except QuantityError as exc:
        raise doc.error(path, str(exc), valid='a quantity such as "100m", "1Gi"') from None
    if amount < 0:
        raise doc.error(path, f"{value!r} is negative")
    return amount


def _block_devices(doc: YamlDocument) -> tuple[BlockDevice, ...]:
    devices = []
    for i, entry in enumerate(doc.get(("spec", "blockDeviceMappings")) or []):
        size = (entry.get("ebs") or {}).get("volumeSize")
        size_bytes = None
        if size is not None:
            size_bytes = int(_quantity(doc, ("spec", "blockDeviceMappings", i, "ebs", "volumeSize"), size))
        devices.append(BlockDevice(entry.get("deviceName"), bool(entry.get("rootVolume")), size_bytes))
    return tuple(devices)


# --- NodePool -------------------------------------------------------------------------------------


def _nodepool(
    resource: Resource, node_classes: Mapping[str, NodeClassView], warnings: list[str]
) -> NodePoolView:
    validate_resource(resource)
    doc = resource.doc
    spec_path: FieldPath = ("spec", "template", "spec")
    if doc.get(("spec", "replicas")) is not None:
        raise doc.error(
            ("spec", "replicas"),
            "static NodePools (spec.replicas, alpha StaticCapacity gate) are not simulated",
            valid="a dynamic NodePool (no replicas)",
        )
    node_class = _node_class_ref(doc, node_classes)
    ignored: list[str] = []
    if doc.get(("spec", "template", "metadata", "annotations")):
        ignored.append("spec.template.metadata.annotations")
    labels = _template_labels(doc)
    requirements = _requirements(doc, (*spec_path, "requirements"), ignored)
    taints = _taints(doc, (*spec_path, "taints"), ignored, seen=set())
    startup = _taints(doc, (*spec_path, "startupTaints"), ignored, seen={(t.key, t.effect) for t in taints})
    disruption = doc.get(("spec", "disruption")) or {}
    policy: ConsolidationPolicy = disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized")
    grace = doc.get((*spec_path, "terminationGracePeriod"))
    if ignored:
        _warn_once(
            warnings,
            f"{_where(resource)}: {NODEPOOL_KIND}/{resource.name}: ignored field(s) {', '.join(ignored)}",
        )
    spec = NodePoolSpec(
        name=resource.name,
        weight=int(doc.get(("spec", "weight")) or 0),
        requirements=requirements,
        labels=labels,
        taints=taints,
        startup_taints=startup,
        limits=_limits(doc),
        consolidation_policy=policy,
        consolidate_after_s=_never_or_duration(disruption.get("consolidateAfter", "0s")),
        budgets=_budgets(doc),
        expire_after_s=_never_or_duration(doc.get((*spec_path, "expireAfter")) or "720h"),
        termination_grace_period_s=go_duration_s(grace) if grace is not None else None,
        node_class=node_class,
    )
    return NodePoolView(spec, resource)


def _where(resource: Resource) -> str:
    line = resource.doc.line_of(())
    return f"{resource.file}:{line}" if line is not None else str(resource.file)


def _warn_once(warnings: list[str], message: str) -> None:
    if message not in warnings:
        warnings.append(message)


def _never_or_duration(text: str) -> float | None:
    return None if text == "Never" else go_duration_s(text)  # the CRD pattern has checked the form


def _node_class_ref(doc: YamlDocument, node_classes: Mapping[str, NodeClassView]) -> str:
    path: FieldPath = ("spec", "template", "spec", "nodeClassRef")
    ref = doc.get(path) or {}
    if ref.get("group") != NODECLASS_GROUP or ref.get("kind") != NODECLASS_KIND:
        raise doc.error(
            path,
            f"nodeClassRef names {ref.get('group')}/{ref.get('kind')}; capsim simulates the AWS provider",
            valid=f"group {NODECLASS_GROUP}, kind {NODECLASS_KIND}",
        )
    name = str(ref.get("name"))
    if name not in node_classes:
        raise doc.error(
            (*path, "name"),
            f"no {NODECLASS_KIND} named {name!r} in the cluster's manifests",
            valid=", ".join(sorted(node_classes)) or f"add the {NODECLASS_KIND} to cluster.nodepools",
        )
    return name


def _restricted(key: str) -> bool:
    """Karpenter reserves its own label domains (and the hostname) except for its well-known labels."""
    if key in UPSTREAM_WELL_KNOWN and key != LABEL_NODEPOOL:
        return False
    domain = key.split("/", 1)[0] if "/" in key else ""
    if any(domain == d or domain.endswith("." + d) for d in RESTRICTED_DOMAINS):
        return True
    return key in (LABEL_HOSTNAME, LABEL_NODEPOOL)


def _template_labels(doc: YamlDocument) -> dict[str, str]:
    path: FieldPath = ("spec", "template", "metadata", "labels")
    labels = doc.get(path) or {}
    for key, value in labels.items():
        if _restricted(str(key)):
            raise doc.error((*path, key), f"label {key!r} is restricted (Karpenter sets it itself)")
        if not _QUALIFIED_NAME.match(str(key)):
            raise doc.error((*path, key), f"{key!r} is not a qualified label name")
        if not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", str(value)) or len(str(value)) > 63:
            raise doc.error((*path, key), f"{value!r} is not a valid label value")
    return {str(k): str(v) for k, v in labels.items()}


def _requirements(doc: YamlDocument, path: FieldPath, ignored: list[str]) -> tuple[Requirement, ...]:
    found = []
    for i, item in enumerate(doc.get(path) or []):
        where = (*path, i)
        key = NORMALIZED_LABELS.get(str(item["key"]), str(item["key"]))
        operator = str(item["operator"])
        values = [str(v) for v in item.get("values") or []]
        min_values = item.get("minValues")
        if _restricted(key):
            raise doc.error(
                (*where, "key"),
                f"label {key!r} is restricted: Karpenter sets it itself",
                valid="a well-known label or a label outside karpenter.sh / karpenter.k8s.aws",
            )
        numeric = operator in ("Gt", "Lt", "Gte", "Lte")
        if numeric and (len(values) != 1 or not re.fullmatch(r"\+?[0-9]+", values[0])):
            raise doc.error(
                (*where, "values"),
                f"operator {operator} needs a single non-negative integer value, got {values}",
                valid='one integer, e.g. ["5"]',
            )
        if operator == "In" and min_values is not None and len(values) < min_values:
            raise doc.error(
                (*where, "minValues"),
                f"minValues {min_values} is more than the {len(values)} value(s) listed",
                valid=f"at most {len(values)}",
            )
        if key == LABEL_CAPACITY_TYPE and operator == "In" and not set(values) & set(CAPACITY_TYPE_VALUES):
            raise doc.error(
                (*where, "values"),
                f"no valid capacity type in {values}",
                valid=", ".join(CAPACITY_TYPE_VALUES),
            )
        try:
            requirement = Requirement(key, Operator(operator), tuple(values), min_values)
        except (RequirementError, ValueError) as exc:
            raise doc.error(
                where, str(exc), valid="operators " + ", ".join(o.value for o in Operator)
            ) from None
        if key in UPSTREAM_WELL_KNOWN - ALLOWED_REQUIREMENT_KEYS:
            ignored.append(f"{doc.field(where)} (the catalog has no {key} values; not applied)")
        else:
            found.append(requirement)
    return tuple(found)


def _taints(
    doc: YamlDocument, path: FieldPath, ignored: list[str], seen: set[tuple[str, str]]
) -> tuple[Taint, ...]:
    keys = set(seen)
    found = []
    for i, item in enumerate(doc.get(path) or []):
        key = str(item["key"])
        effect: TaintEffect = item["effect"]
        if (key, effect) in keys:
            raise doc.error((*path, i), f"duplicate taint {key}:{effect}", valid="each key/effect pair once")
        keys.add((key, effect))
        if "timeAdded" in item:
            ignored.append(doc.field((*path, i, "timeAdded")))
        found.append(Taint(key, effect, str(item.get("value", ""))))
    return tuple(found)


def _limits(doc: YamlDocument) -> dict[str, float] | None:
    limits = doc.get(("spec", "limits"))
    if limits is None:
        return None
    found: dict[str, float] = {}
    for key, value in limits.items():
        amount = _quantity(doc, ("spec", "limits", key), value)
        if key == RESOURCE_CPU:
            found[key] = float(amount * 1000)
        elif key in (RESOURCE_MEMORY, RESOURCE_EPHEMERAL_STORAGE):
            found[key] = float(amount / 2**20)
        else:
            found[str(key)] = float(amount)
    return found


def _budgets(doc: YamlDocument) -> tuple[Budget, ...]:
    path: FieldPath = ("spec", "disruption", "budgets")
    items = doc.get(path)
    if items is None:
        return (Budget(nodes="10%"),)
    budgets = []
    for i, item in enumerate(items):
        where = (*path, i)
        schedule = item.get("schedule")
        duration = item.get("duration")
        if (schedule is None) != (duration is None):
            missing = "duration" if duration is None else "schedule"
            raise doc.error(
                where,
                f"a budget with {'a schedule' if duration is None else 'a duration'} needs {missing} too",
                valid="both schedule and duration, or neither (always active)",
            )
        if schedule is not None:
            problem = cron_problem(str(schedule))
            if problem is not None:
                raise doc.error(
                    (*where, "schedule"), problem, valid="5-field cron (UTC) or @daily, @weekly, ..."
                )
        nodes_text = str(item.get("nodes", "10%"))
        nodes: int | str = nodes_text if nodes_text.endswith("%") else int(nodes_text)
        reasons: tuple[DisruptionReason, ...] = tuple(
            r for reason in item.get("reasons") or [] for r in DISRUPTION_REASONS if r == reason
        )
        budgets.append(
            Budget(
                nodes=nodes,
                schedule=str(schedule) if schedule is not None else None,
                duration_s=go_duration_s(str(duration)) if duration is not None else None,
                reasons=reasons,
            )
        )
    return tuple(budgets)


# --- cron (robfig/cron ParseStandard syntax, as Karpenter's budgets use) ------------------------

CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS: tuple[tuple[str, int, int, Sequence[str]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def cron_problem(schedule: str) -> str | None:
    """Why robfig/cron's standard parser would reject `schedule`, or None when it parses."""
    text = schedule.strip()
    if text.startswith("@"):
        return None if text in CRON_MACROS else f"unknown schedule descriptor {text!r}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 cron fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in value.split(","):
            problem = _cron_part(part, low, high, names, allow_any=name in ("day of month", "day of week"))
            if problem is not None:
                return f"{name} field {value!r}: {problem}"
    return None


def _cron_part(part: str, low: int, high: int, names: Sequence[str], allow_any: bool) -> str | None:
    span, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return f"bad step {step!r}"
    if span == "*" or (allow_any and span == "?"):
        return None
    start_text, dash, end_text = span.partition("-")
    bounds = []
    for text in (start_text, end_text) if dash else (start_text,):
        number = _cron_number(text, names)
        if number is None or not low <= number <= high:
            return f"{text!r} is not in {low}-{high}"
        bounds.append(number)
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        return f"range {span!r} runs backwards"
    return None


def _cron_number(text: str, names: Sequence[str]) -> int | None:
    if text.isdigit():
        return int(text)
    upper = text.upper()
    if upper in names:
        return names.index(upper) + (1 if len(names) == 12 else 0)
    return None


# --- satisfiability -------------------------------------------------------------------------------


def check_satisfiable(pool: NodePoolView, instance_types: Sequence[InstanceType]) -> None:
    """InputError naming the pool when its requirements leave no instance type to launch.

    Karpenter would skip such a pool silently (it never becomes a NodeClaim
    template); in a plan that is almost always a typo, so it is an error here.
    """
    candidates = list(instance_types)
    path: FieldPath = ("spec", "template", "spec", "requirements")
    for i, req in enumerate(pool.spec.requirements):
        remaining = [it for it in candidates if requirement_allows(req, it)]
        if not remaining:
            seen = sorted(
                {v for it in candidates for v in _values(req.key, it)},
                key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v),
            )
            shown = ", ".join(seen[:12]) + (", ..." if len(seen) > 12 else "")
            raise pool.resource.doc.error(
                (*path, i),
                f"NodePool {pool.spec.name}: no instance type satisfies this requirement together with the "
                f"ones before it ({len(candidates)} candidate(s) left before it)",
                valid=f"values of {req.key} among them: {shown or 'none (the label is never set)'}",
            )
        candidates = remaining


def requirement_allows(req: Requirement, it: InstanceType) -> bool:
    """Whether an instance type (its labels, and its offerings' zones and capacity types) meets `req`.

    The operator semantics are the Karpenter model's (`ValueSet`); a type with
    several values for a key (zones, capacity types) passes when any does.
    Labels outside the catalog's well-known set (team labels and the like) are
    put on the node by the pool itself, so they never rule a type out.
    """
    if req.key not in ALLOWED_REQUIREMENT_KEYS or req.key == LABEL_NODEPOOL:
        return True
    allowed = ValueSet.from_requirement(req)
    values = _values(req.key, it)
    return any(allowed.has(v) for v in values) if values else allowed.is_negative()


def _values(key: str, it: InstanceType) -> set[str]:
    if key == LABEL_ZONE:
        return {o.zone for o in it.offerings if o.available}
    if key == LABEL_CAPACITY_TYPE:
        return {o.capacity_type for o in it.offerings if o.available}
    value = it.labels.get(key)
    return {value} if value is not None else set()
