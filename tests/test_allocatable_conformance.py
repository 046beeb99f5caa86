"""AWS allocatable conformance: every case of karpenter_allocatable_cases.json through the real code path.

Each case's kubelet block goes through the EC2NodeClass kubelet reader
(sim.k8s.nodepool.kubelet_settings), then the estimate (sim.catalog.overhead),
and every expected quantity is compared exactly, except the percentage
eviction threshold, which upstream itself checks only to within 10 bytes.
The case file is read from CAPSIM_KARPENTER_ALLOCATABLE_CASES when set.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sim.catalog.overhead import GIB, Amounts, BlockDevice, Hardware, NodeClassSettings, estimate
from sim.k8s.nodepool import kubelet_settings
from sim.k8s.quantity import parse_quantity
from sim.k8s.yamlsource import YamlDocument

DEFAULT_CASES = Path(__file__).parent / "data" / "karpenter_allocatable_cases.json"
CASES_FILE = Path(os.environ.get("CAPSIM_KARPENTER_ALLOCATABLE_CASES", DEFAULT_CASES))
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())


def _settings(inputs: dict[str, Any]) -> NodeClassSettings:
    doc = YamlDocument(CASES_FILE, 0, {"kubelet": inputs["kubelet"]})
    kubelet, _ = kubelet_settings(doc, ("kubelet",))
    return NodeClassSettings(
        ami_family=inputs["ami_family"],
        kubelet=kubelet,
        block_devices=(BlockDevice("/dev/xvda", True, int(inputs["root_volume_gib"]) * GIB),),
        vm_memory_overhead_percent=float(inputs["vm_memory_overhead_percent"]),
        reserved_enis=int(inputs["reserved_enis"]),
    )


def _hardware(instance: dict[str, Any]) -> Hardware:
    enis, ipv4 = int(instance["enis_default_card"]), int(instance["ipv4_per_eni"])
    return Hardware(
        vcpu=int(instance["vcpu"]),
        memory_mib=int(instance["memory_mib"]),
        arch=instance["arch"],
        eni_max_pods=enis * (ipv4 - 1) + 2,
        enis_default_card=enis,
        ipv4_per_eni=ipv4,
    )


def _amount(amounts: Amounts, resource: str) -> Decimal:
    if resource == "cpu":
        return amounts.cpu_millicores / 1000
    if resource == "memory":
        return amounts.memory_bytes
    if resource == "ephemeral-storage":
        return amounts.ephemeral_storage_bytes
    if resource == "pods":
        return Decimal(amounts.pods)
    raise AssertionError(f"unexpected resource {resource}")


def test_the_case_file_has_every_case() -> None:
    assert len(CASES) >= 21
    assert {c["kind"] for c in CASES} == {"allocatable"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_allocatable_case(case: dict[str, Any]) -> None:
    inputs = case["inputs"]
    node = estimate(_hardware(inputs["instance"]), _settings(inputs))
    parts = {
        "capacity": node.capacity,
        "kube_reserved": node.kube_reserved,
        "system_reserved": node.system_reserved,
        "eviction_threshold": node.eviction_threshold,
        "allocatable": node.allocatable,
    }
    checked = 0
    for part, expected in case["expected"].items():
        got = parts[part]
        if "memory_bytes_approx" in expected:
            # upstream: Expect(...).To(BeNumerically("~", capacity.memory * 0.1, 10))
            assert abs(float(got.memory_bytes) - float(expected["memory_bytes_approx"])) <= 10
            checked += 1
            continue
        for resource, quantity in expected.items():
            assert _amount(got, resource) == parse_quantity(quantity), f"{part}.{resource}"
            checked += 1
    assert checked > 0
