"""The instance catalog: bundled data, user catalogs, labels, allocatable, prices and malformed files."""

from __future__ import annotations

import csv
import math
from decimal import Decimal
from pathlib import Path

import pytest

from sim.catalog.instancetypes import (
    LABEL_INSTANCE_ACCELERATOR_COUNT,
    NEURON_RESOURCE,
    instance_type,
    instance_types,
)
from sim.catalog.overhead import MIB, KubeletSettings, NodeClassSettings, estimate
from sim.catalog.pricing import (
    ACCELERATED_INTERRUPTION_RATE_PER_H,
    DEFAULT_INTERRUPTION_RATE_PER_H,
    PricingSettings,
    default_interruption_rate_per_h,
    default_spot_discount,
    hourly_rate,
    load_price_file,
)
from sim.catalog.table import Catalog, bundled_files, load_bundled_catalog, load_catalog
from sim.controllers.karpenter.types import (
    LABEL_ARCH,
    LABEL_INSTANCE_CATEGORY,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GENERATION,
    LABEL_INSTANCE_GPU_COUNT,
    LABEL_INSTANCE_SIZE,
    LABEL_OS,
)
from sim.errors import InputError

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
BUNDLED = load_bundled_catalog()
ENTRIES = BUNDLED.by_name()


def test_bundled_catalog_has_every_row_with_its_source() -> None:
    assert len(BUNDLED.entries) == 1345
    assert len({e.category for e in BUNDLED.entries}) >= 20
    main, detail = bundled_files()
    assert main.is_file() and detail.is_file()
    sources = (main.parent / "SOURCES.md").read_text()
    assert "us-east-1" in sources and "1d927085dd81" in sources


def test_estimated_allocatable_matches_the_upstream_document_for_every_row() -> None:
    """The detail file states the upstream document's allocatable (AL2023, defaults) for all 1345 types."""
    _, detail = bundled_files()
    mismatches = []
    with detail.open() as fh:
        for row in csv.DictReader(fh):
            node = estimate(ENTRIES[row["instance_type"]].hardware, NodeClassSettings()).allocatable
            got = (
                node.cpu_millicores,
                node.memory_bytes / MIB,
                node.pods,
                node.ephemeral_storage_bytes / 2**30,
            )
            want = tuple(
                Decimal(row[k])
                for k in (
                    "alloc_cpu_millicores",
                    "alloc_memory_mib",
                    "alloc_pods",
                    "alloc_ephemeral_storage_gib",
                )
            )
            if got != want:
                mismatches.append((row["instance_type"], got, want))
    assert mismatches == []


def test_instance_type_labels_and_offerings() -> None:
    it = instance_type(ENTRIES["m7g.xlarge"], NodeClassSettings(), ZONES, PricingSettings(), "us-east-1")
    assert it.labels[LABEL_INSTANCE_CATEGORY] == "m"
    assert it.labels[LABEL_INSTANCE_FAMILY] == "m7g"
    assert it.labels[LABEL_INSTANCE_GENERATION] == "7"
    assert it.labels[LABEL_INSTANCE_SIZE] == "xlarge"
    assert it.labels[LABEL_ARCH] == "arm64"
    assert it.labels[LABEL_OS] == "linux"
    assert LABEL_INSTANCE_GPU_COUNT not in it.labels
    assert it.allocatable.cpu_millicores == 3920 and it.allocatable.memory_mib == 14103
    assert it.capacity.pods == 58
    assert {(o.zone, o.capacity_type) for o in it.offerings} == {
        (z, ct) for z in ZONES for ct in ("spot", "on-demand")
    }


def test_accelerators_become_extended_resources() -> None:
    gpu = instance_type(ENTRIES["g5.xlarge"], NodeClassSettings(), ZONES, PricingSettings(), "us-east-1")
    assert gpu.allocatable.extended == {"nvidia.com/gpu": 1.0}
    assert gpu.labels[LABEL_INSTANCE_GPU_COUNT] == "1"
    inf = instance_type(ENTRIES["inf2.xlarge"], NodeClassSettings(), ZONES, PricingSettings(), "us-east-1")
    assert inf.allocatable.extended == {NEURON_RESOURCE: 1.0}
    assert inf.labels[LABEL_INSTANCE_ACCELERATOR_COUNT] == "1"


def test_node_class_settings_change_allocatable() -> None:
    m5 = ENTRIES["m5.xlarge"].hardware
    base = estimate(m5, NodeClassSettings()).allocatable
    capped = estimate(m5, NodeClassSettings(kubelet=KubeletSettings(max_pods=20))).allocatable
    assert capped.pods == 20
    # AL2023 reserves memory for the ENI-limited pod count even when maxPods is lower.
    assert capped.memory_bytes == base.memory_bytes
    bottlerocket = estimate(m5, NodeClassSettings("Bottlerocket", KubeletSettings(max_pods=20))).allocatable
    assert bottlerocket.memory_bytes - base.memory_bytes == 11 * (58 - 20) * MIB
    reserved = KubeletSettings(system_reserved={"cpu": Decimal("0.5"), "memory": Decimal(2**30)})
    less = estimate(m5, NodeClassSettings(kubelet=reserved)).allocatable
    assert base.cpu_millicores - less.cpu_millicores == 500
    assert base.memory_bytes - less.memory_bytes == 2**30


def test_windows_node_classes_have_no_arm64_types_and_110_pods() -> None:
    its = instance_types(BUNDLED, NodeClassSettings("Windows2022"), ZONES, PricingSettings(), "us-east-1")
    assert all(it.labels[LABEL_ARCH] == "amd64" for it in its)
    assert all(it.labels[LABEL_OS] == "windows" for it in its)
    assert {it.capacity.pods for it in its} == {110.0}


# --- prices ----------------------------------------------------------------------------------------


def _offer(pricing: PricingSettings, name: str, ct: str, zone: str = "us-east-1a") -> float:
    it = instance_type(ENTRIES[name], NodeClassSettings(), ZONES, pricing, "us-east-1")
    return next(o.price_usd_per_h for o in it.offerings if o.capacity_type == ct and o.zone == zone)


def test_spot_is_the_documented_discount_off_on_demand() -> None:
    m5 = ENTRIES["m5.large"]
    assert _offer(PricingSettings(), "m5.large", "on-demand") == pytest.approx(0.096)
    assert _offer(PricingSettings(), "m5.large", "spot") == pytest.approx(
        0.096 * (1 - default_spot_discount(m5))
    )
    assert 0.5 <= default_spot_discount(m5) <= 0.7
    assert default_spot_discount(ENTRIES["p4d.24xlarge"]) < default_spot_discount(ENTRIES["r6i.large"])


def test_spot_discount_overrides_pick_the_most_specific_key() -> None:
    pricing = PricingSettings(spot_discount={"default": 0.1, "m": 0.2, "m5": 0.3, "m5.large": 0.4})
    assert _offer(pricing, "m5.large", "spot") == pytest.approx(0.096 * 0.6)
    assert _offer(pricing, "m5.xlarge", "spot") == pytest.approx(0.192 * 0.7)
    assert _offer(pricing, "m6i.large", "spot") == pytest.approx(
        ENTRIES["m6i.large"].ondemand_usd_per_h * 0.8
    )
    assert _offer(pricing, "c5.large", "spot") == pytest.approx(ENTRIES["c5.large"].ondemand_usd_per_h * 0.9)


def test_commitment_discount_applies_to_on_demand_only() -> None:
    pricing = PricingSettings(commitment_discount=0.25)
    assert _offer(pricing, "m5.large", "on-demand") == pytest.approx(0.072)
    assert _offer(pricing, "m5.large", "spot") == pytest.approx(_offer(PricingSettings(), "m5.large", "spot"))


def test_price_file_overrides_zone_rows_before_zoneless_rows(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "instance_type,capacity_type,zone,price_usd_per_hour\n"
        "m5.large,spot,,0.05\n"
        "m5.large,spot,us-east-1b,0.03\n"
        "m5.large,on-demand,,0.08\n"
    )
    prices = load_price_file(path, ENTRIES, ZONES)
    pricing = PricingSettings(overrides=prices, commitment_discount=0.5)
    assert _offer(pricing, "m5.large", "spot", "us-east-1a") == 0.05
    assert _offer(pricing, "m5.large", "spot", "us-east-1b") == 0.03
    assert _offer(pricing, "m5.large", "on-demand") == pytest.approx(0.04)  # file price, then commitment


@pytest.mark.parametrize(
    ("body", "field", "line", "message"),
    [
        (
            "instance_type,capacity_type,price_usd_per_hour\nm5.lorge,spot,0.1\n",
            "instance_type",
            2,
            "m5.lorge",
        ),
        (
            "instance_type,capacity_type,price_usd_per_hour\nm5.large,spot,0.1\nm5.large,od,0.1\n",
            "capacity_type",
            3,
            "od",
        ),
        (
            "instance_type,capacity_type,zone,price_usd_per_hour\nm5.large,spot,eu-west-1a,0.1\n",
            "zone",
            2,
            "eu-west-1a",
        ),
        (
            "instance_type,capacity_type,price_usd_per_hour\nm5.large,spot,-1\n",
            "price_usd_per_hour",
            2,
            "not a price",
        ),
        (
            "instance_type,capacity_type,price_usd_per_hour\nm5.large,spot,cheap\n",
            "price_usd_per_hour",
            2,
            "cheap",
        ),
        ("instance_type,capacity_type,price\nm5.large,spot,0.1\n", "price", 1, "unknown price-file column"),
        (
            "instance_type,capacity_type,price_usd_per_hour\nm5.large,spot,0.1\nm5.large,spot,0.2\n",
            "instance_type",
            3,
            "twice",
        ),
    ],
)
def test_bad_price_file_names_line_and_column(
    tmp_path: Path, body: str, field: str, line: int, message: str
) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(body)
    with pytest.raises(InputError) as caught:
        load_price_file(path, ENTRIES, ZONES)
    assert caught.value.file == path
    assert caught.value.field == field
    assert caught.value.line == line
    assert message in caught.value.message


def test_interruption_rate_defaults() -> None:
    assert default_interruption_rate_per_h(ENTRIES["m5.large"]) == DEFAULT_INTERRUPTION_RATE_PER_H
    assert default_interruption_rate_per_h(ENTRIES["g5.xlarge"]) == ACCELERATED_INTERRUPTION_RATE_PER_H
    # 5% of instances per month: 1 - exp(-730 h * rate) = 0.05
    assert 1 - math.exp(-730 * DEFAULT_INTERRUPTION_RATE_PER_H) == pytest.approx(0.05)
    assert hourly_rate(0.0) == 0.0


# --- user catalogs ---------------------------------------------------------------------------------


def test_a_synthetic_catalog_with_only_the_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "other-cloud.csv"
    path.write_text(
        "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\n"
        "n2-standard-4,amd64,4,16384,110,0.194\n"
        "big.4xlarge,arm64,16,65536,234,0.5\n"
    )
    catalog = load_catalog(path)
    assert isinstance(catalog, Catalog)
    n2, big = catalog.entries
    assert n2.category is None and n2.family is None  # no AWS-style name, no derived labels
    # category and generation need a digit after the letters, as in the AWS provider
    assert (big.category, big.family, big.generation, big.size) == (None, "big", None, "4xlarge")
    it = instance_type(n2, NodeClassSettings(), ("zone-a",), PricingSettings(), "elsewhere")
    assert LABEL_INSTANCE_CATEGORY not in it.labels
    assert it.capacity.pods == 110
    assert it.offerings[0].price_usd_per_h == pytest.approx(0.194 * (1 - 0.6))


@pytest.mark.parametrize(
    ("body", "field", "line", "message"),
    [
        ("instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour,vpcu\n", "vpcu", 1, "unknown"),
        ("instance_type,arch,vcpu,max_pods,ondemand_usd_per_hour\n", None, 1, "memory_mib"),
        (
            "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\nx.large,amd64,two,8192,29,0.1\n",
            "vcpu",
            2,
            "'two'",
        ),
        (
            "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\nx.large,x86_64,2,8192,29,0.1\n",
            "arch",
            2,
            "x86_64",
        ),
        (
            "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\n"
            "x.large,amd64,2,8192,29,0.1\nx.large,amd64,2,8192,29,0.1\n",
            "instance_type",
            3,
            "twice",
        ),
        (
            "instance_type,arch,vcpu,memory_mib,ondemand_usd_per_hour\nx.large,amd64,2,8192,0.1\n",
            "max_pods",
            2,
            "no max_pods",
        ),
        (
            "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\nx.large,amd64,2,8192,29\n",
            None,
            2,
            "5 cells",
        ),
        (
            "instance_type,arch,vcpu,memory_mib,max_pods,ondemand_usd_per_hour\nx.large,amd64,2,8192,29,\n",
            "ondemand_usd_per_hour",
            2,
            "empty",
        ),
        ("", None, 1, "empty"),
    ],
)
def test_bad_catalog_names_line_and_column(
    tmp_path: Path, body: str, field: str | None, line: int, message: str
) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(body)
    with pytest.raises(InputError) as caught:
        load_catalog(path)
    assert caught.value.file == path
    assert caught.value.field == field
    assert caught.value.line == line
    assert message in caught.value.message


def test_eni_columns_derive_max_pods(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(
        "instance_type,arch,vcpu,memory_mib,enis_default_card,ipv4_per_eni,ondemand_usd_per_hour\n"
        "t3.large,amd64,2,8192,3,12,0.0832\n"
    )
    (entry,) = load_catalog(path).entries
    assert entry.hardware.eni_max_pods == 35
