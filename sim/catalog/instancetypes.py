"""Catalog entries -> the Karpenter model's InstanceTypes, for one EC2NodeClass and one set of zones.

An instance type's allocatable depends on the node class (its AMI family,
kubelet reservations, root volume), so the same catalog yields one set of
InstanceTypes per EC2NodeClass. Labels are the single-valued well-known
labels the AWS provider puts on its instance types, so NodePool requirements
on category, family, generation, size, cpu, memory, GPU, ... select exactly
what they would in a cluster. Zones are a scenario setting: every type is
offered in every zone, spot and on-demand.
"""

from __future__ import annotations

from collections.abc import Sequence

from sim.catalog.overhead import AMI_TRAITS, NodeClassSettings, estimate
from sim.catalog.pricing import PricingSettings
from sim.catalog.table import Catalog, CatalogEntry
from sim.controllers.karpenter.types import (
    LABEL_ARCH,
    LABEL_INSTANCE_CATEGORY,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GENERATION,
    LABEL_INSTANCE_GPU_COUNT,
    LABEL_INSTANCE_GPU_NAME,
    LABEL_INSTANCE_MEMORY,
    LABEL_INSTANCE_SIZE,
    LABEL_INSTANCE_TYPE,
    LABEL_OS,
    LABEL_REGION,
    InstanceType,
)

_AWS = "karpenter.k8s.aws/"
LABEL_INSTANCE_CPU_MANUFACTURER = _AWS + "instance-cpu-manufacturer"
LABEL_INSTANCE_HYPERVISOR = _AWS + "instance-hypervisor"
LABEL_INSTANCE_CAPABILITY_FLEX = _AWS + "instance-capability-flex"
LABEL_INSTANCE_NETWORK_BANDWIDTH = _AWS + "instance-network-bandwidth"
LABEL_INSTANCE_EBS_BANDWIDTH = _AWS + "instance-ebs-bandwidth"
LABEL_INSTANCE_LOCAL_NVME = _AWS + "instance-local-nvme"
LABEL_INSTANCE_GPU_MANUFACTURER = _AWS + "instance-gpu-manufacturer"
LABEL_INSTANCE_GPU_MEMORY = _AWS + "instance-gpu-memory"
LABEL_INSTANCE_ACCELERATOR_NAME = _AWS + "instance-accelerator-name"
LABEL_INSTANCE_ACCELERATOR_MANUFACTURER = _AWS + "instance-accelerator-manufacturer"
LABEL_INSTANCE_ACCELERATOR_COUNT = _AWS + "instance-accelerator-count"

WELL_KNOWN_LABELS = frozenset(
    {
        LABEL_INSTANCE_TYPE,
        LABEL_ARCH,
        LABEL_OS,
        LABEL_REGION,
        LABEL_INSTANCE_CATEGORY,
        LABEL_INSTANCE_FAMILY,
        LABEL_INSTANCE_GENERATION,
        LABEL_INSTANCE_SIZE,
        LABEL_INSTANCE_CPU,
        LABEL_INSTANCE_MEMORY,
        LABEL_INSTANCE_GPU_COUNT,
        LABEL_INSTANCE_GPU_NAME,
        LABEL_INSTANCE_CPU_MANUFACTURER,
        LABEL_INSTANCE_HYPERVISOR,
        LABEL_INSTANCE_CAPABILITY_FLEX,
        LABEL_INSTANCE_NETWORK_BANDWIDTH,
        LABEL_INSTANCE_EBS_BANDWIDTH,
        LABEL_INSTANCE_LOCAL_NVME,
        LABEL_INSTANCE_GPU_MANUFACTURER,
        LABEL_INSTANCE_GPU_MEMORY,
        LABEL_INSTANCE_ACCELERATOR_NAME,
        LABEL_INSTANCE_ACCELERATOR_MANUFACTURER,
        LABEL_INSTANCE_ACCELERATOR_COUNT,
    }
)
"""Labels the catalog can set on an instance type (zone and capacity type come from offerings)."""

# Device plugin resources a pod requests for accelerators.
_GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "habana": "habana.ai/gaudi"}
NEURON_RESOURCE = "aws.amazon.com/neuron"


def instance_types(
    catalog: Catalog,
    node_class: NodeClassSettings,
    zones: Sequence[str],
    pricing: PricingSettings,
    region: str,
) -> tuple[InstanceType, ...]:
    """Every catalog type the node class can run (Windows AMIs have no arm64 build)."""
    os = AMI_TRAITS[node_class.ami_family].os
    return tuple(
        instance_type(entry, node_class, zones, pricing, region)
        for entry in catalog.entries
        if not (os == "windows" and entry.arch != "amd64")
    )


def instance_type(
    entry: CatalogEntry,
    node_class: NodeClassSettings,
    zones: Sequence[str],
    pricing: PricingSettings,
    region: str,
) -> InstanceType:
    node = estimate(entry.hardware, node_class)
    extended = extended_resources(entry)
    return InstanceType(
        name=entry.name,
        capacity=node.capacity.to_resources(extended),
        allocatable=node.allocatable.to_resources(extended),
        labels=labels(entry, AMI_TRAITS[node_class.ami_family].os, region),
        offerings=pricing.offerings(entry, zones),
    )


def extended_resources(entry: CatalogEntry) -> dict[str, float]:
    found: dict[str, float] = {}
    if entry.gpu_count:
        resource = _GPU_RESOURCE.get((entry.gpu_manufacturer or "nvidia").lower())
        if resource is not None:
            found[resource] = float(entry.gpu_count)
    if entry.accelerator_count:
        found[NEURON_RESOURCE] = float(entry.accelerator_count)
    return found


def labels(entry: CatalogEntry, os: str, region: str) -> dict[str, str]:
    hw = entry.hardware
    found: dict[str, str | int | None] = {
        LABEL_INSTANCE_TYPE: entry.name,
        LABEL_ARCH: hw.arch,
        LABEL_OS: os,
        LABEL_REGION: region,
        LABEL_INSTANCE_CATEGORY: entry.category,
        LABEL_INSTANCE_FAMILY: entry.family,
        LABEL_INSTANCE_GENERATION: entry.generation,
        LABEL_INSTANCE_SIZE: entry.size,
        LABEL_INSTANCE_CPU: hw.vcpu,
        LABEL_INSTANCE_MEMORY: hw.memory_mib,
        LABEL_INSTANCE_CPU_MANUFACTURER: entry.cpu_manufacturer,
        LABEL_INSTANCE_HYPERVISOR: entry.hypervisor,
        LABEL_INSTANCE_CAPABILITY_FLEX: entry.capability_flex,
        LABEL_INSTANCE_NETWORK_BANDWIDTH: entry.network_bandwidth_mbps,
        LABEL_INSTANCE_EBS_BANDWIDTH: entry.ebs_bandwidth_mbps,
        LABEL_INSTANCE_LOCAL_NVME: hw.local_nvme_gb,
    }
    if entry.gpu_count:
        found[LABEL_INSTANCE_GPU_COUNT] = entry.gpu_count
        found[LABEL_INSTANCE_GPU_NAME] = entry.gpu_name
        found[LABEL_INSTANCE_GPU_MANUFACTURER] = entry.gpu_manufacturer
        found[LABEL_INSTANCE_GPU_MEMORY] = entry.gpu_memory_mib
    if entry.accelerator_count:
        found[LABEL_INSTANCE_ACCELERATOR_COUNT] = entry.accelerator_count
        found[LABEL_INSTANCE_ACCELERATOR_NAME] = entry.accelerator_name
        found[LABEL_INSTANCE_ACCELERATOR_MANUFACTURER] = "aws"
    return {key: str(value) for key, value in found.items() if value is not None and value != ""}
