"""The instance catalog as numpy arrays, so narrowing a NodeClaim over ~1,300 types is a few vector ops.

Karpenter walks its instance-type list for every pod it adds to a NodeClaim;
doing that in Python objects would make 1,000 pods over the AWS catalog take
seconds. Here each instance type is a row: allocatable and capacity per
resource, each well-known label as a column, and offerings as a
(type, zone, capacity type) price cube with +inf where there is no offering.
Label masks for a requirement set are cached, because a batch of pods
repeats the same few requirement sets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

from sim.controllers.karpenter.requirements import Requirements, ValueSet
from sim.controllers.karpenter.types import (
    CAPACITY_TYPES,
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    RESOURCE_CPU,
    RESOURCE_EPHEMERAL_STORAGE,
    RESOURCE_MEMORY,
    RESOURCE_PODS,
    CapacityType,
    InstanceType,
    Resources,
)

BASE_RESOURCES = (RESOURCE_CPU, RESOURCE_MEMORY, RESOURCE_PODS, RESOURCE_EPHEMERAL_STORAGE)
FIT_SLACK = 1e-6
"""Float slack when comparing summed requests with allocatable (MiB from decimal quantities)."""

OfferingKey = tuple[str, str, str]
"""(instance type, zone, capacity type): the unit EC2 runs out of and Karpenter's ICE cache blocks."""

_OFFERING_KEYS = frozenset({LABEL_ZONE, LABEL_CAPACITY_TYPE})


class InstanceIndex:
    """Row-per-instance-type arrays over one catalog; read-only after construction."""

    def __init__(self, instance_types: Sequence[InstanceType], extra_resources: Iterable[str] = ()) -> None:
        names = [it.name for it in instance_types]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"instance catalog lists these types more than once: {dupes[:5]}")
        self.types: tuple[InstanceType, ...] = tuple(instance_types)
        self.names: tuple[str, ...] = tuple(names)
        self.position: dict[str, int] = {n: i for i, n in enumerate(names)}
        self.name_rank = np.argsort(np.argsort(np.array(names, dtype=object))).astype(np.intp)
        """Each type's position in name order: the deterministic tie-break after price."""
        extended = set(extra_resources)
        for it in self.types:
            extended.update(it.capacity.extended)
            extended.update(it.allocatable.extended)
        self.resource_names: tuple[str, ...] = BASE_RESOURCES + tuple(sorted(extended))
        self.resource_position = {r: i for i, r in enumerate(self.resource_names)}
        self.allocatable = np.array([self.vector(it.allocatable) for it in self.types], dtype=float).reshape(
            len(self.types), len(self.resource_names)
        )
        self.capacity = np.array([self.vector(it.capacity) for it in self.types], dtype=float).reshape(
            len(self.types), len(self.resource_names)
        )
        self.zones: tuple[str, ...] = tuple(sorted({o.zone for it in self.types for o in it.offerings}))
        zone_pos = {z: i for i, z in enumerate(self.zones)}
        ct_pos = {c: i for i, c in enumerate(CAPACITY_TYPES)}
        shape = (len(self.types), len(self.zones), len(CAPACITY_TYPES))
        self.price = np.full(shape, np.inf)
        self.offered = np.zeros(shape, dtype=bool)
        self.available = np.zeros(shape, dtype=bool)
        for i, it in enumerate(self.types):
            for o in it.offerings:
                cell = (i, zone_pos[o.zone], ct_pos[o.capacity_type])
                self.price[cell] = o.price_usd_per_h
                self.offered[cell] = True
                self.available[cell] = o.available
        labels = [{**it.labels, LABEL_INSTANCE_TYPE: it.name} for it in self.types]
        keys = sorted({k for lbls in labels for k in lbls} - _OFFERING_KEYS)
        self.label_keys = frozenset(keys)
        self._columns: dict[str, dict[str | None, np.ndarray]] = {}
        self.codes: dict[str, np.ndarray] = {}
        """Per label key, an integer code per type (-1 = absent): distinct values are distinct codes."""
        for key in keys:
            groups: dict[str | None, list[int]] = {}
            for i, lbls in enumerate(labels):
                groups.setdefault(lbls.get(key), []).append(i)
            self._columns[key] = {v: np.array(ix, dtype=np.intp) for v, ix in groups.items()}
            codes = np.full(len(self.types), -1, dtype=np.intp)
            for code, (value, rows) in enumerate(groups.items()):
                if value is not None:
                    codes[rows] = code
            self.codes[key] = codes
        self._value_cache: dict[tuple[str, ValueSet], np.ndarray] = {}
        self._label_cache: dict[tuple[tuple[str, ValueSet], ...], np.ndarray] = {}

    def vector(self, res: Resources) -> np.ndarray:
        """Resources as a row over `resource_names`; names the catalog lacks are dropped (see `unknown`)."""
        row = np.zeros(len(self.resource_names))
        row[0] = res.cpu_millicores
        row[1] = res.memory_mib
        row[2] = res.pods
        row[3] = res.ephemeral_storage_mib
        for name, amount in res.extended.items():
            pos = self.resource_position.get(name)
            if pos is not None:
                row[pos] = amount
        return row

    def unknown(self, res: Resources) -> list[str]:
        """Requested extended resources no instance type in the catalog has."""
        return sorted(n for n, a in res.extended.items() if a > 0 and n not in self.resource_position)

    def resources(self, row: np.ndarray) -> Resources:
        extended = {
            name: float(row[i]) for i, name in enumerate(self.resource_names[4:], start=4) if row[i] != 0
        }
        return Resources(float(row[0]), float(row[1]), float(row[2]), float(row[3]), extended)

    def label_mask(self, reqs: Requirements) -> np.ndarray:
        """Types whose labels satisfy every requirement on a catalog label (others are the pool's to set).

        A type without a label the catalog defines elsewhere counts as having
        it absent (Karpenter's providers declare such labels DoesNotExist).
        """
        parts = tuple(
            (k, vs)
            for k, vs in reqs.key
            if k in self.label_keys and k not in (LABEL_HOSTNAME, LABEL_ZONE, LABEL_CAPACITY_TYPE)
        )
        cached = self._label_cache.get(parts)
        if cached is not None:
            return cached
        mask = np.ones(len(self.types), dtype=bool)
        for part in parts:
            mask &= self._value_mask(*part)
        self._label_cache[parts] = mask
        return mask

    def _value_mask(self, key: str, vs: ValueSet) -> np.ndarray:
        cached = self._value_cache.get((key, vs))
        if cached is not None:
            return cached
        mask = np.zeros(len(self.types), dtype=bool)
        for value, rows in self._columns[key].items():
            ok = vs.is_negative() if value is None else vs.has(value)
            if ok:
                mask[rows] = True
        self._value_cache[(key, vs)] = mask
        return mask

    def zone_mask(self, reqs: Requirements) -> np.ndarray:
        vs = reqs.get(LABEL_ZONE)
        return np.array([vs is None or vs.has(z) for z in self.zones], dtype=bool)

    def capacity_type_mask(self, reqs: Requirements) -> np.ndarray:
        vs = reqs.get(LABEL_CAPACITY_TYPE)
        return np.array([vs is None or vs.has(c) for c in CAPACITY_TYPES], dtype=bool)

    def availability(self, unavailable: Collection[OfferingKey]) -> np.ndarray:
        """The available-offering cube with the ICE-cached (type, zone, capacity type) cells removed."""
        if not unavailable:
            return self.available
        cube = self.available.copy()
        zone_pos = {z: i for i, z in enumerate(self.zones)}
        for name, zone, ct in unavailable:
            i = self.position.get(name)
            if i is not None and zone in zone_pos and ct in CAPACITY_TYPES:
                cube[i, zone_pos[zone], CAPACITY_TYPES.index(ct)] = False
        return cube

    def compatible_prices(self, reqs: Requirements, available: np.ndarray) -> np.ndarray:
        """(type, zone, capacity type) prices of offerings the requirements allow, +inf elsewhere."""
        allowed = (
            available & self.zone_mask(reqs)[None, :, None] & self.capacity_type_mask(reqs)[None, None, :]
        )
        return np.where(allowed, self.price, np.inf)

    def type_labels(self, i: int, zone: str, capacity_type: CapacityType) -> dict[str, str]:
        labels = dict(self.types[i].labels)
        labels[LABEL_INSTANCE_TYPE] = self.names[i]
        labels[LABEL_ZONE] = zone
        labels[LABEL_CAPACITY_TYPE] = capacity_type
        return labels
