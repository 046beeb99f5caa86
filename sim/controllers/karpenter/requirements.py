"""Node-selector requirement algebra, as Karpenter's scheduler evaluates it.

A requirement on one key is a set of label values: either a finite set
("In a, b"; empty means DoesNotExist) or the complement of one ("NotIn a";
empty means Exists), optionally bounded by integers (Gt/Lt/Gte/Lte). Sets
intersect as pod constraints are layered onto a NodeClaim, which is how its
candidate instance types narrow. Upstream: core pkg/scheduling/requirement.go
and requirements.go; the semantics (not the code) are reproduced here, including
the quirks a simulator must share to agree with Karpenter:

- Gte n is Gt n-1 and Lte n is Lt n+1 (integer semantics); a bounded set only
  contains values that parse as integers.
- Two requirements whose intersection is empty are still compatible when both
  are "negative" (NotIn / DoesNotExist): a label that must not have some value
  and a label that must be absent agree.
- A key the NodeClaim does not define is allowed for well-known labels (the
  cloud provider fills them in) but not for custom labels, unless the pod only
  asks for the label to be absent (NotIn / DoesNotExist).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sim.controllers.karpenter.types import (
    LABEL_ARCH,
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_OS,
    LABEL_REGION,
    LABEL_ZONE,
    Operator,
    PodSpec,
    Requirement,
    Taint,
    Toleration,
)

_WELL_KNOWN = frozenset(
    {
        LABEL_NODEPOOL,
        LABEL_ZONE,
        LABEL_REGION,
        LABEL_INSTANCE_TYPE,
        LABEL_ARCH,
        LABEL_OS,
        LABEL_CAPACITY_TYPE,
        "node.kubernetes.io/windows-build",
    }
)
_WELL_KNOWN_PREFIXES = ("karpenter.k8s.aws/",)


def is_well_known(key: str) -> bool:
    """Labels the cloud provider defines on every node, so a NodePool need not mention them."""
    return key in _WELL_KNOWN or key.startswith(_WELL_KNOWN_PREFIXES)


def _within(value: str, gt: int | None, lt: int | None) -> bool:
    if gt is None and lt is None:
        return True
    try:
        number = int(value)
    except ValueError:
        return False
    return (gt is None or number > gt) and (lt is None or number < lt)


@dataclass(frozen=True, slots=True)
class ValueSet:
    """The values one key may take. `complement` flips `values`; bounds are exclusive integers."""

    complement: bool
    values: frozenset[str] = frozenset()
    gt: int | None = None
    lt: int | None = None
    min_values: int | None = None

    @staticmethod
    def from_requirement(req: Requirement) -> ValueSet:
        op = req.operator
        values = frozenset(req.values)
        if op == Operator.IN:
            return ValueSet(False, values, min_values=req.min_values)
        if op == Operator.NOT_IN:
            return ValueSet(True, values, min_values=req.min_values)
        if op == Operator.EXISTS:
            return ValueSet(True, min_values=req.min_values)
        if op == Operator.DOES_NOT_EXIST:
            return ValueSet(False, min_values=req.min_values)
        bound = int(req.values[0])
        if op == Operator.GT:
            return ValueSet(True, gt=bound, min_values=req.min_values)
        if op == Operator.GTE:
            return ValueSet(True, gt=bound - 1, min_values=req.min_values)
        if op == Operator.LT:
            return ValueSet(True, lt=bound, min_values=req.min_values)
        return ValueSet(True, lt=bound + 1, min_values=req.min_values)

    def has(self, value: str) -> bool:
        if self.complement:
            return value not in self.values and _within(value, self.gt, self.lt)
        return value in self.values and _within(value, self.gt, self.lt)

    def is_empty(self) -> bool:
        """No value at all: a complement is never empty (upstream counts it as MaxInt64 - len)."""
        return not self.complement and not self.values

    def is_negative(self) -> bool:
        """NotIn or DoesNotExist: satisfied by a node without the label."""
        if self.complement:
            return bool(self.values) and self.gt is None and self.lt is None
        return not self.values

    def operator(self) -> str:
        if self.complement:
            return "NotIn" if self.values else "Exists"
        return "In" if self.values else "DoesNotExist"

    def intersect(self, other: ValueSet) -> ValueSet:
        gt = _max_opt(self.gt, other.gt)
        lt = _min_opt(self.lt, other.lt)
        min_values = _max_opt(self.min_values, other.min_values)
        if gt is not None and lt is not None and gt >= lt:
            return ValueSet(False, min_values=min_values)
        if self.complement and other.complement:
            return ValueSet(True, self.values | other.values, gt, lt, min_values)
        if self.complement:
            values = other.values - self.values
        elif other.complement:
            values = self.values - other.values
        else:
            values = self.values & other.values
        values = frozenset(v for v in values if _within(v, gt, lt))
        return ValueSet(False, values, min_values=min_values)

    def describe(self) -> str:
        parts = []
        if self.complement:
            parts.append(f"NotIn {sorted(self.values)}" if self.values else "Exists")
        else:
            parts.append(f"In {sorted(self.values)}" if self.values else "DoesNotExist")
        if self.gt is not None:
            parts.append(f">{self.gt}")
        if self.lt is not None:
            parts.append(f"<{self.lt}")
        if self.min_values is not None:
            parts.append(f"minValues {self.min_values}")
        return " ".join(parts)


def _max_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _min_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class Requirements:
    """An immutable map key -> ValueSet; `key` makes it usable as a cache key."""

    __slots__ = ("_key", "sets")

    def __init__(self, sets: Mapping[str, ValueSet] | None = None) -> None:
        self.sets: dict[str, ValueSet] = dict(sets or {})
        self._key: tuple[tuple[str, ValueSet], ...] | None = None

    @staticmethod
    def of(reqs: Iterable[Requirement]) -> Requirements:
        """AND of requirements; repeated keys intersect."""
        out: dict[str, ValueSet] = {}
        for req in reqs:
            vs = ValueSet.from_requirement(req)
            out[req.key] = out[req.key].intersect(vs) if req.key in out else vs
        return Requirements(out)

    @staticmethod
    def from_labels(labels: Mapping[str, str]) -> Requirements:
        return Requirements({k: ValueSet(False, frozenset((v,))) for k, v in labels.items()})

    @property
    def key(self) -> tuple[tuple[str, ValueSet], ...]:
        if self._key is None:
            self._key = tuple(sorted(self.sets.items()))
        return self._key

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Requirements) and self.key == other.key

    def get(self, key: str) -> ValueSet | None:
        return self.sets.get(key)

    def has_min_values(self) -> bool:
        return any(vs.min_values is not None for vs in self.sets.values())

    def intersect(self, other: Requirements) -> Requirements:
        if not other.sets:
            return self
        if not self.sets:
            return other
        merged = dict(self.sets)
        changed = False
        for key, vs in other.sets.items():
            mine = merged.get(key)
            new = vs if mine is None else mine.intersect(vs)
            if new != mine:
                merged[key] = new
                changed = True
        return Requirements(merged) if changed else self

    def intersects(self, other: Requirements) -> str | None:
        """Why the shared keys have no common value, or None when they do."""
        small, large = (self, other) if len(self.sets) <= len(other.sets) else (other, self)
        for key in small.sets:
            if key not in large.sets:
                continue
            existing, incoming = self.sets[key], other.sets[key]
            if not existing.intersect(incoming).is_empty():
                continue
            if existing.is_negative() and incoming.is_negative():
                continue
            return f"{key} {incoming.describe()} conflicts with {existing.describe()}"
        return None

    def compatible(self, pod: Requirements, allow_undefined_well_known: bool = True) -> str | None:
        """Why `pod`'s requirements cannot be met by a node with these requirements, or None."""
        for key, vs in pod.sets.items():
            if key in self.sets or vs.is_negative():
                continue
            if allow_undefined_well_known and is_well_known(key):
                continue
            return f"label {key!r} is not defined by the NodePool (pod requires {key} {vs.describe()})"
        return self.intersects(pod)

    def describe(self) -> str:
        return ", ".join(f"{k} {v.describe()}" for k, v in sorted(self.sets.items())) or "(none)"


EMPTY = Requirements()


def pod_requirements(
    pod: PodSpec,
    affinity_terms: tuple[tuple[Requirement, ...], ...],
    preferred: tuple[tuple[Requirement, ...], ...] = (),
) -> Requirements:
    """nodeSelector AND the first required affinity term AND (while not relaxed) the heaviest preference.

    Karpenter tries the first OR-term only and drops it when it fails (the
    relaxation loop), and treats the heaviest preferred term as required until
    relaxed; callers pass the current, possibly relaxed, terms.
    """
    reqs: list[Requirement] = [Requirement(k, Operator.IN, (v,)) for k, v in pod.node_selector.items()]
    if preferred:
        reqs.extend(preferred[0])
    if affinity_terms:
        reqs.extend(affinity_terms[0])
    return Requirements.of(reqs)


def tolerates(taint: Taint, tolerations: Iterable[Toleration]) -> bool:
    for tol in tolerations:
        if tol.effect is not None and tol.effect != taint.effect:
            continue
        if tol.key is None:
            if tol.operator == "Exists":
                return True
            continue
        if tol.key != taint.key:
            continue
        if tol.operator == "Exists" or tol.value == taint.value:
            return True
    return False


def untolerated(
    taints: Iterable[Taint], tolerations: Iterable[Toleration], ignore_prefer_no_schedule: bool
) -> Taint | None:
    """The first taint the pod does not tolerate (PreferNoSchedule counts unless ignored)."""
    for taint in taints:
        if ignore_prefer_no_schedule and taint.effect == "PreferNoSchedule":
            continue
        if not tolerates(taint, tolerations):
            return taint
    return None
