"""Catalog files: one row per instance type (shape, ENI limits, on-demand price), read strictly.

The bundled catalog is the AWS us-east-1 data in sim/data/catalog/ (two files
joined on `instance_type`; see SOURCES.md there). A scenario may point at
another CSV with the same columns (another region, another cloud, a synthetic
set); only the shape columns and the price are required, the rest refine
labels. Every malformed cell is an InputError naming file, line and column,
because a wrong vCPU count or price silently changes every packing and cost
figure downstream.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypeVar

from sim.catalog.overhead import Hardware
from sim.errors import InputError

BUNDLED_DIR = "data/catalog"
BUNDLED_MAIN = "aws_instance_types.csv"
BUNDLED_DETAIL = "aws_instance_types_detail.csv"
BUNDLED_REGION = "us-east-1"

REQUIRED_COLUMNS = ("instance_type", "arch", "vcpu", "memory_mib", "ondemand_usd_per_hour")
OPTIONAL_COLUMNS = (
    "family",
    "category",
    "generation",
    "size",
    "max_pods",
    "enis_default_card",
    "ipv4_per_eni",
    "gpu_count",
    "gpu_name",
    "gpu_manufacturer",
    "gpu_memory_mib",
    "accelerator_name",
    "accelerator_count",
    "cpu_manufacturer",
    "hypervisor",
    "capability_flex",
    "network_bandwidth_mbps",
    "ebs_bandwidth_mbps",
    "local_nvme_gb",
)
REFERENCE_COLUMNS = (
    "network_cards",
    "pod_eni_branch_interfaces",
    "efa_interfaces",
    "alloc_cpu_millicores",
    "alloc_memory_mib",
    "alloc_pods",
    "alloc_ephemeral_storage_gib",
)
"""Columns of the bundled detail file that are facts about the source, not inputs (read and not used)."""

ARCHES = ("amd64", "arm64")

# Same split the AWS provider uses for the category/generation labels: "m7g.xlarge" -> m, 7.
_NAME_SCHEME = re.compile(r"^([a-z]+)(-[0-9]+tb)?([0-9]+).*\.")

T = TypeVar("T")


@dataclass(frozen=True)
class CatalogEntry:
    """One instance type as the catalog states it (before any node-class settings or prices apply)."""

    name: str
    family: str | None
    category: str | None
    generation: str | None
    size: str | None
    hardware: Hardware
    ondemand_usd_per_h: float
    gpu_count: int = 0
    gpu_name: str | None = None
    gpu_manufacturer: str | None = None
    gpu_memory_mib: int | None = None
    accelerator_name: str | None = None
    accelerator_count: int = 0
    cpu_manufacturer: str | None = None
    hypervisor: str | None = None
    capability_flex: str | None = None
    network_bandwidth_mbps: int | None = None
    ebs_bandwidth_mbps: int | None = None
    source: str = ""  # "file:line", for messages about this type

    @property
    def arch(self) -> str:
        return self.hardware.arch


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    files: tuple[Path, ...]
    description: str

    def by_name(self) -> dict[str, CatalogEntry]:
        return {e.name: e for e in self.entries}


def bundled_files() -> tuple[Path, Path]:
    base = resources.files("sim").joinpath(BUNDLED_DIR)
    return Path(str(base.joinpath(BUNDLED_MAIN))), Path(str(base.joinpath(BUNDLED_DETAIL)))


@cache
def load_bundled_catalog() -> Catalog:
    """The AWS us-east-1 catalog carried in the package (read once per process; it is immutable)."""
    main, detail = bundled_files()
    return load_catalog(main, detail=detail, description=f"bundled AWS {BUNDLED_REGION} catalog")


def load_catalog(path: Path, detail: Path | None = None, description: str | None = None) -> Catalog:
    """Read a catalog CSV; `detail` is an optional second file with more columns for the same types."""
    rows = dict(_read_rows(path))
    if detail is not None:
        for name, extra in _read_rows(detail, require=("instance_type",)):
            if name not in rows:
                raise InputError(
                    f"instance type {name!r} is not in {path.name}",
                    file=detail,
                    field="instance_type",
                    line=extra.line,
                )
            rows[name].merge(extra)
    entries = tuple(_entry(row) for row in rows.values())
    if not entries:
        raise InputError(
            "the catalog has no instance types", file=path, valid="a header and one row per type"
        )
    files = (path,) if detail is None else (path, detail)
    return Catalog(entries, files, description or str(path))


@dataclass
class _Row:
    """A CSV row with where each cell came from."""

    file: Path
    line: int
    cells: dict[str, str]
    origin: dict[str, tuple[Path, int]]

    def merge(self, other: _Row) -> None:
        for key, value in other.cells.items():
            if key == "instance_type":
                continue
            self.cells[key] = value
            self.origin[key] = (other.file, other.line)

    def error(self, column: str, message: str, valid: str | None = None) -> InputError:
        file, line = self.origin.get(column, (self.file, self.line))
        return InputError(message, file=file, field=column, line=line, valid=valid)

    def text(self, column: str) -> str | None:
        value = self.cells.get(column, "").strip()
        return value or None

    def parse(self, column: str, convert: Callable[[str], T], valid: str) -> T | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError:
            raise self.error(column, f"{value!r} is not {valid}", valid=valid) from None

    def require(self, column: str, convert: Callable[[str], T], valid: str) -> T:
        value = self.parse(column, convert, valid)
        if value is None:
            raise self.error(column, f"{column} is empty", valid=valid)
        return value


def _read_rows(path: Path, require: tuple[str, ...] = REQUIRED_COLUMNS) -> Iterator[tuple[str, _Row]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("catalog file not found", file=path) from exc
    except UnicodeDecodeError as exc:
        raise InputError("catalog file is not UTF-8 text", file=path) from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise InputError("the catalog file is empty", file=path, line=1, valid="a CSV header row")
    columns = [c.strip() for c in header]
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *REFERENCE_COLUMNS)
    for column in columns:
        if column not in known:
            raise InputError(
                f"unknown catalog column {column!r}", file=path, field=column, line=1, valid=", ".join(known)
            )
    if len(set(columns)) != len(columns):
        raise InputError("a column appears twice in the header", file=path, line=1)
    for column in require:
        if column not in columns:
            raise InputError(f"missing column {column!r}", file=path, line=1, valid=", ".join(require))
    seen: dict[str, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            raise InputError(
                f"row has {len(cells)} cells, the header has {len(columns)}", file=path, line=line
            )
        values = dict(zip(columns, cells, strict=True))
        row = _Row(path, line, values, {})
        name = row.text("instance_type")
        if name is None:
            raise row.error("instance_type", "instance_type is empty")
        if name in seen:
            raise row.error("instance_type", f"{name} is listed twice (first on line {seen[name]})")
        seen[name] = line
        yield name, row


def _int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _price(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _arch(text: str) -> str:
    if text not in ARCHES:
        raise ValueError(text)
    return text


def _entry(row: _Row) -> CatalogEntry:
    name = row.cells["instance_type"].strip()
    scheme = _NAME_SCHEME.match(name)
    parts = name.split(".")
    family_default, size_default = (parts[0], parts[1]) if len(parts) == 2 else (None, None)
    vcpu = row.require("vcpu", _positive_int, "a whole number of vCPUs > 0")
    enis = row.parse("enis_default_card", _int, "a whole number >= 0")
    ipv4 = row.parse("ipv4_per_eni", _positive_int, "a whole number > 0")
    listed_pods = row.parse("max_pods", _int, "a whole number >= 0")
    if listed_pods is None:
        if enis is None or ipv4 is None:
            raise row.error(
                "max_pods", f"{name}: no max_pods, and no enis_default_card and ipv4_per_eni to derive it"
            )
        listed_pods = 0 if enis == 0 else enis * (ipv4 - 1) + 2
    gpu_memory = row.parse("gpu_memory_mib", _int, "a whole number of MiB")
    nvme = row.parse("local_nvme_gb", _int, "a whole number of GB")
    return CatalogEntry(
        name=name,
        family=row.text("family") or family_default,
        category=row.text("category") or (scheme.group(1) if scheme else None),
        generation=row.parse("generation", lambda t: str(_int(t)), "a whole number")
        or (scheme.group(3) if scheme else None),
        size=row.text("size") or size_default,
        hardware=Hardware(
            vcpu=vcpu,
            memory_mib=row.require("memory_mib", _positive_int, "a whole number of MiB > 0"),
            arch=row.require("arch", _arch, "one of " + ", ".join(ARCHES)),
            eni_max_pods=listed_pods,
            enis_default_card=enis,
            ipv4_per_eni=ipv4,
            local_nvme_gb=nvme,
        ),
        ondemand_usd_per_h=row.require("ondemand_usd_per_hour", _price, "a price in USD per hour >= 0"),
        gpu_count=row.parse("gpu_count", _int, "a whole number >= 0") or 0,
        gpu_name=row.text("gpu_name"),
        gpu_manufacturer=row.text("gpu_manufacturer"),
        gpu_memory_mib=gpu_memory,
        accelerator_name=row.text("accelerator_name"),
        accelerator_count=row.parse("accelerator_count", _int, "a whole number >= 0") or 0,
        cpu_manufacturer=row.text("cpu_manufacturer"),
        hypervisor=row.text("hypervisor"),
        capability_flex=row.text("capability_flex"),
        network_bandwidth_mbps=row.parse("network_bandwidth_mbps", _int, "a whole number of Mbit/s"),
        ebs_bandwidth_mbps=row.parse("ebs_bandwidth_mbps", _int, "a whole number of Mbit/s"),
        source=f"{row.file}:{row.line}",
    )
