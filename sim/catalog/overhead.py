"""Capacity and allocatable of an EC2 node, with the AWS provider's formulas (spec §5).

Karpenter packs pods against the allocatable it *estimates* before a node
exists, not against what the kubelet later reports, so the simulator must
estimate the same way or it will pack differently: capacity memory loses the
VM overhead percentage (and 64 MiB CMA on Graviton), kube-reserved grows with
the ENI-limited pod count, the eviction threshold defaults to 100Mi, and an
EC2NodeClass's kubelet block can override each piece. Amounts are exact
(Decimal, base units) until the last step, because the upstream formulas
round at specific points and a one-MiB drift changes which type fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from sim.controllers.karpenter.types import Resources
from sim.k8s.quantity import parse_quantity

AmiFamily = Literal["AL2", "AL2023", "Bottlerocket", "Custom", "Windows2019", "Windows2022", "Windows2025"]
AMI_FAMILIES: tuple[AmiFamily, ...] = (
    "AL2",
    "AL2023",
    "Bottlerocket",
    "Custom",
    "Windows2019",
    "Windows2022",
    "Windows2025",
)

MIB = 2**20
GIB = 2**30
DEFAULT_VM_MEMORY_OVERHEAD_PERCENT = 0.075  # aws VM_MEMORY_OVERHEAD_PERCENT
GRAVITON_CMA_MIB = 64
WINDOWS_MAX_PODS = 110
DEFAULT_EVICTION_MEMORY_BYTES = 100 * MIB
DEFAULT_KUBE_RESERVED_STORAGE_BYTES = GIB

MEMORY_AVAILABLE = "memory.available"
NODEFS_AVAILABLE = "nodefs.available"
ALLOCATABLE_EVICTION_SIGNALS = (MEMORY_AVAILABLE, NODEFS_AVAILABLE)
"""evictionHard signals that reduce allocatable; the others (inodes, imagefs, pid) do not."""

RESERVABLE = ("cpu", "memory", "ephemeral-storage")
"""kubeReserved/systemReserved keys that reduce allocatable (`pid` is reserved too, but is not scheduled)."""

# kube-reserved CPU: a share of each core band (from Bottlerocket's and EKS's defaults).
_CPU_BANDS_MILLICORES: tuple[tuple[int, int, float], ...] = (
    (0, 1000, 0.06),
    (1000, 2000, 0.01),
    (2000, 4000, 0.005),
    (4000, 1 << 31, 0.0025),
)


@dataclass(frozen=True)
class AmiTraits:
    """What an AMI family changes in the estimate (aws `amifamily` FeatureFlags and default volumes)."""

    eni_limited_memory_overhead: bool
    pods_per_core_enabled: bool
    eni_limited_pod_density: bool
    ephemeral_device: str | None
    default_root_volume_bytes: int
    os: str


_DEFAULT_VOLUME_BYTES = 20 * GIB

AMI_TRAITS: Mapping[str, AmiTraits] = {
    "AL2": AmiTraits(True, True, True, "/dev/xvda", _DEFAULT_VOLUME_BYTES, "linux"),
    "AL2023": AmiTraits(True, True, True, "/dev/xvda", _DEFAULT_VOLUME_BYTES, "linux"),
    "Bottlerocket": AmiTraits(False, False, True, "/dev/xvdb", _DEFAULT_VOLUME_BYTES, "linux"),
    "Custom": AmiTraits(True, True, True, None, _DEFAULT_VOLUME_BYTES, "linux"),
    **{
        name: AmiTraits(False, True, False, "/dev/sda1", 50 * GIB, "windows")
        for name in ("Windows2019", "Windows2022", "Windows2025")
    },
}


@dataclass(frozen=True)
class BlockDevice:
    """One EC2NodeClass blockDeviceMappings entry, reduced to what sizes ephemeral storage."""

    device_name: str | None
    root_volume: bool
    volume_size_bytes: int | None


@dataclass(frozen=True)
class KubeletSettings:
    """The EC2NodeClass `kubelet` fields that change allocatable.

    Reserved amounts are in base units (cores, bytes) keyed by resource name;
    a key given here replaces that key's default, the others keep theirs.
    `eviction_hard` values are a quantity ("500Mi") or a percentage ("10%").
    """

    max_pods: int | None = None
    pods_per_core: int | None = None
    kube_reserved: Mapping[str, Decimal] = field(default_factory=dict)
    system_reserved: Mapping[str, Decimal] = field(default_factory=dict)
    eviction_hard: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeClassSettings:
    """Everything an EC2NodeClass (and the operator's options) contributes to the estimate."""

    ami_family: AmiFamily = "AL2023"
    kubelet: KubeletSettings = field(default_factory=KubeletSettings)
    block_devices: tuple[BlockDevice, ...] = ()
    instance_store_raid0: bool = False
    vm_memory_overhead_percent: float = DEFAULT_VM_MEMORY_OVERHEAD_PERCENT
    reserved_enis: int = 0


@dataclass(frozen=True)
class Hardware:
    """The catalog's facts about one instance type.

    `eni_max_pods` is the ENI-limited pod count with no reserved ENIs; it is
    used when the ENI figures themselves are not in the catalog.
    """

    vcpu: int
    memory_mib: int
    arch: str
    eni_max_pods: int
    enis_default_card: int | None = None
    ipv4_per_eni: int | None = None
    local_nvme_gb: int | None = None


@dataclass(frozen=True)
class Amounts:
    """Exact amounts: CPU in millicores, memory and storage in bytes, pods as a count."""

    cpu_millicores: Decimal = Decimal(0)
    memory_bytes: Decimal = Decimal(0)
    ephemeral_storage_bytes: Decimal = Decimal(0)
    pods: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cpu_millicores + other.cpu_millicores,
            self.memory_bytes + other.memory_bytes,
            self.ephemeral_storage_bytes + other.ephemeral_storage_bytes,
            self.pods + other.pods,
        )

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cpu_millicores - other.cpu_millicores,
            self.memory_bytes - other.memory_bytes,
            self.ephemeral_storage_bytes - other.ephemeral_storage_bytes,
            self.pods - other.pods,
        )

    def to_resources(self, extended: Mapping[str, float] | None = None) -> Resources:
        """As the Karpenter model's Resources (MiB); negative amounts (nothing fits) become 0."""
        return Resources(
            cpu_millicores=max(float(self.cpu_millicores), 0.0),
            memory_mib=max(float(self.memory_bytes / MIB), 0.0),
            pods=float(max(self.pods, 0)),
            ephemeral_storage_mib=max(float(self.ephemeral_storage_bytes / MIB), 0.0),
            extended=dict(extended or {}),
        )


@dataclass(frozen=True)
class NodeEstimate:
    """Capacity, each overhead, and allocatable = capacity − (kube + system reserved + eviction)."""

    capacity: Amounts
    kube_reserved: Amounts
    system_reserved: Amounts
    eviction_threshold: Amounts

    @property
    def allocatable(self) -> Amounts:
        overhead = self.kube_reserved + self.system_reserved + self.eviction_threshold
        return Amounts(
            self.capacity.cpu_millicores - overhead.cpu_millicores,
            self.capacity.memory_bytes - overhead.memory_bytes,
            self.capacity.ephemeral_storage_bytes - overhead.ephemeral_storage_bytes,
            self.capacity.pods,
        )


def estimate(hw: Hardware, settings: NodeClassSettings) -> NodeEstimate:
    """Karpenter's pre-launch estimate for one instance type under one EC2NodeClass."""
    traits = AMI_TRAITS[settings.ami_family]
    kubelet = settings.kubelet
    memory = capacity_memory_bytes(hw, settings.vm_memory_overhead_percent)
    storage = ephemeral_storage_bytes(hw, settings)
    pods = max_pods(hw, settings)
    capacity = Amounts(Decimal(1000 * hw.vcpu), memory, storage, pods)
    reserved_pods = eni_limited_pods(hw, 0) if traits.eni_limited_memory_overhead else pods
    return NodeEstimate(
        capacity=capacity,
        kube_reserved=_override(
            Amounts(
                Decimal(kube_reserved_cpu_millicores(hw.vcpu)),
                Decimal((11 * reserved_pods + 255) * MIB),
                Decimal(DEFAULT_KUBE_RESERVED_STORAGE_BYTES),
            ),
            kubelet.kube_reserved,
        ),
        system_reserved=_override(Amounts(), kubelet.system_reserved),
        eviction_threshold=eviction_threshold(memory, storage, kubelet.eviction_hard),
    )


def capacity_memory_bytes(hw: Hardware, vm_overhead_percent: float) -> Decimal:
    """Memory less the Graviton CMA reserve and the VM overhead share, rounded up to whole MiB."""
    mib = hw.memory_mib - (GRAVITON_CMA_MIB if hw.arch == "arm64" else 0)
    overhead_mib = math.ceil(float(mib * MIB) * vm_overhead_percent / 1024 / 1024)
    return Decimal((mib - overhead_mib) * MIB)


def eni_limited_pods(hw: Hardware, reserved_enis: int) -> int:
    """ENIs × (IPv4 per ENI − 1) + 2 on the default network card, after reserving ENIs."""
    if hw.enis_default_card is None or hw.ipv4_per_eni is None:
        if reserved_enis:
            raise ValueError("reserving ENIs needs the catalog's enis_default_card and ipv4_per_eni")
        return hw.eni_max_pods
    usable = max(hw.enis_default_card - reserved_enis, 0)
    return 0 if usable == 0 else usable * (hw.ipv4_per_eni - 1) + 2


def max_pods(hw: Hardware, settings: NodeClassSettings) -> int:
    traits = AMI_TRAITS[settings.ami_family]
    kubelet = settings.kubelet
    if kubelet.max_pods is not None:
        count = kubelet.max_pods
    elif traits.eni_limited_pod_density:
        count = eni_limited_pods(hw, settings.reserved_enis)
    else:
        count = WINDOWS_MAX_PODS
    if kubelet.pods_per_core and traits.pods_per_core_enabled:
        count = min(kubelet.pods_per_core * hw.vcpu, count)
    return count


def kube_reserved_cpu_millicores(vcpu: int) -> int:
    """6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% above; each band truncated."""
    cpu = 1000 * vcpu
    total = 0
    for start, end, share in _CPU_BANDS_MILLICORES:
        if cpu >= start:
            total += int(float(min(cpu, end) - start) * share)
    return total


def ephemeral_storage_bytes(hw: Hardware, settings: NodeClassSettings) -> Decimal:
    """The root (or the family's ephemeral) volume, or the local NVMe total under RAID0."""
    if settings.instance_store_raid0 and hw.local_nvme_gb is not None:
        return Decimal(hw.local_nvme_gb * 10**9)
    traits = AMI_TRAITS[settings.ami_family]
    devices = settings.block_devices
    if devices:
        root = next((d for d in devices if d.root_volume), None)
        if root is not None and root.volume_size_bytes is not None:
            return Decimal(root.volume_size_bytes)
        if traits.ephemeral_device is None:  # Custom: the last mapping is the best guess
            last = devices[-1].volume_size_bytes
            return Decimal(last if last is not None else traits.default_root_volume_bytes)
        match = next((d for d in devices if d.device_name == traits.ephemeral_device), None)
        if match is not None and match.volume_size_bytes is not None:
            return Decimal(match.volume_size_bytes)
    return Decimal(traits.default_root_volume_bytes)


def eviction_threshold(memory: Decimal, storage: Decimal, eviction_hard: Mapping[str, str]) -> Amounts:
    """100Mi of memory and 10% of storage, unless evictionHard says otherwise (evictionSoft never counts)."""
    memory_threshold = Decimal(DEFAULT_EVICTION_MEMORY_BYTES)
    storage_threshold = Decimal(math.ceil(float(storage) / 100 * 10))
    if MEMORY_AVAILABLE in eviction_hard:
        memory_threshold = eviction_signal(memory, eviction_hard[MEMORY_AVAILABLE])
    if NODEFS_AVAILABLE in eviction_hard:
        storage_threshold = eviction_signal(storage, eviction_hard[NODEFS_AVAILABLE])
    return Amounts(memory_bytes=memory_threshold, ephemeral_storage_bytes=storage_threshold)


def eviction_signal(capacity: Decimal, value: str) -> Decimal:
    """A percentage of capacity (100% disables the threshold, as in the kubelet), else a quantity."""
    text = value.strip()
    if text.endswith("%"):
        percent = float(text[:-1])
        if percent == 100:
            percent = 0.0
        return Decimal(math.ceil(float(capacity) / 100 * percent))
    return parse_quantity(text)


def _override(defaults: Amounts, given: Mapping[str, Decimal]) -> Amounts:
    return Amounts(
        given["cpu"] * 1000 if "cpu" in given else defaults.cpu_millicores,
        given.get("memory", defaults.memory_bytes),
        given.get("ephemeral-storage", defaults.ephemeral_storage_bytes),
        defaults.pods,
    )
