"""A small synthetic instance catalog in the KWOK provider's shape, for Karpenter tests.

Families c/m/r at 2/4/8 GiB per vCPU, sizes 1-16 vCPU, prices linear in
size, three zones, spot at 40 % of on-demand. Allocatable keeps 100m CPU and
512 MiB back; max pods is 8 per vCPU + 2. Small enough for hypothesis to
explore and for the MILP to solve.
"""

from __future__ import annotations

from sim.controllers.karpenter.types import (
    LABEL_ARCH,
    LABEL_INSTANCE_CATEGORY,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GENERATION,
    LABEL_INSTANCE_MEMORY,
    LABEL_INSTANCE_SIZE,
    LABEL_OS,
    InstanceType,
    Node,
    Offering,
    Resources,
)

ZONES = ("zone-a", "zone-b", "zone-c")
_FAMILIES = {"c": (2, 0.0425), "m": (4, 0.048), "r": (8, 0.063)}
_SIZES = {1: "medium", 2: "large", 4: "xlarge", 8: "2xlarge", 16: "4xlarge"}


def catalog(zones: tuple[str, ...] = ZONES, spot: bool = True) -> list[InstanceType]:
    out = []
    for family, (gib_per_cpu, usd_per_cpu) in _FAMILIES.items():
        for cpu, size in _SIZES.items():
            memory_mib = cpu * gib_per_cpu * 1024.0
            capacity = Resources(cpu * 1000.0, memory_mib, cpu * 8 + 2)
            allocatable = capacity - Resources(100.0, 512.0)
            price = cpu * usd_per_cpu
            offers = [Offering(z, "on-demand", price) for z in zones]
            if spot:
                offers += [Offering(z, "spot", round(price * 0.4, 6)) for z in zones]
            labels = {
                LABEL_ARCH: "amd64",
                LABEL_OS: "linux",
                LABEL_INSTANCE_CATEGORY: family,
                LABEL_INSTANCE_FAMILY: f"{family}9",
                LABEL_INSTANCE_GENERATION: "9",
                LABEL_INSTANCE_SIZE: size,
                LABEL_INSTANCE_CPU: str(cpu),
                LABEL_INSTANCE_MEMORY: str(int(memory_mib)),
            }
            out.append(InstanceType(f"{family}9.{size}", capacity, allocatable, labels, tuple(offers)))
    return out


def committed(node: Node) -> tuple[Resources, float]:
    """What the node's pods and DaemonSets ask for, and how many pods it holds."""
    return node.requested(), float(len(node.pods)) + node.daemon_requests.pods
