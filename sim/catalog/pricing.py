"""What an instance costs per hour: on-demand from the catalog, spot estimated, both overridable.

Upstream ships no spot prices (Karpenter reads DescribeSpotPriceHistory at
run time), so spot is the on-demand price less a discount per instance
category. The defaults below are ESTIMATES of typical us-east-1 Linux spot
savings as the AWS Spot Instance Advisor presents them ("savings over
on-demand", mostly 55–70% for current m/c/r families, more for burstable and
memory-heavy types, less for scarce accelerated ones); they are not quotes.
For a decision that hinges on spot price, give a price file with observed
prices. A commitment discount (Savings Plans, reserved instances, an
enterprise discount) applies to on-demand only, on top of the list or
price-file price, because those programmes discount the list price and do
not cover spot.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sim.catalog.table import CatalogEntry
from sim.controllers.karpenter.types import CapacityType, Offering
from sim.errors import InputError

PRICED_CAPACITY_TYPES: tuple[CapacityType, ...] = ("spot", "on-demand")
HOURS_PER_MONTH = 730.0

DEFAULT_SPOT_DISCOUNT = 0.60
DEFAULT_SPOT_DISCOUNT_BY_CATEGORY: Mapping[str, float] = {
    # general purpose, compute, Graviton 1
    "m": 0.60,
    "c": 0.60,
    "a": 0.60,
    # burstable and memory-optimised pools are deep and idle more often
    "t": 0.68,
    "r": 0.68,
    "x": 0.65,
    "z": 0.60,
    "u": 0.50,
    # storage-optimised
    "i": 0.65,
    "im": 0.65,
    "is": 0.65,
    "d": 0.65,
    "h": 0.65,
    # accelerated: GPU pools are shallow, the discount is smaller
    "g": 0.60,
    "gr": 0.60,
    "p": 0.50,
    "inf": 0.55,
    "trn": 0.50,
    "dl": 0.50,
    "f": 0.50,
    "vt": 0.55,
    "hpc": 0.50,
}
"""Fraction off the on-demand price, by instance category (estimates; see the module docstring)."""

DEFAULT_INTERRUPTIONS_PER_MONTH = 0.05
ACCELERATED_CATEGORIES = frozenset({"g", "gr", "p", "inf", "trn", "dl", "f", "vt"})
ACCELERATED_INTERRUPTIONS_PER_MONTH = 0.15
"""The Spot Instance Advisor's interruption-frequency bands are the share of instances reclaimed per
month; most general-purpose types sit in the lowest band (<5%), GPU types often in 10–20%. The upper
edge of the low band and the middle of the 10–20% band are used as defaults (estimates)."""


def hourly_rate(fraction_per_month: float) -> float:
    """A Poisson rate per instance-hour that reclaims `fraction_per_month` of instances in 730 h."""
    return -math.log(1.0 - fraction_per_month) / HOURS_PER_MONTH


DEFAULT_INTERRUPTION_RATE_PER_H = hourly_rate(DEFAULT_INTERRUPTIONS_PER_MONTH)
ACCELERATED_INTERRUPTION_RATE_PER_H = hourly_rate(ACCELERATED_INTERRUPTIONS_PER_MONTH)


def most_specific(entry: CatalogEntry, table: Mapping[str, float]) -> float | None:
    """The value for the instance type, else its family, else its category, else `default`."""
    for key in (entry.name, entry.family, entry.category, "default"):
        if key is not None and key in table:
            return table[key]
    return None


def default_spot_discount(entry: CatalogEntry) -> float:
    if entry.category is None:
        return DEFAULT_SPOT_DISCOUNT
    return DEFAULT_SPOT_DISCOUNT_BY_CATEGORY.get(entry.category, DEFAULT_SPOT_DISCOUNT)


def default_interruption_rate_per_h(entry: CatalogEntry) -> float:
    if entry.category in ACCELERATED_CATEGORIES:
        return ACCELERATED_INTERRUPTION_RATE_PER_H
    return DEFAULT_INTERRUPTION_RATE_PER_H


PriceKey = tuple[str, CapacityType, str | None]
"""(instance type, capacity type, zone or None for every zone) of a price-file row."""


@dataclass(frozen=True)
class PricingSettings:
    """How offerings are priced.

    `spot_discount` and `interruption_rate_per_h` map an instance type, a
    family, a category or "default" to a value (the most specific wins) and
    fall back to the documented defaults. Price-file rows win over both the
    catalog and the discount; a zone-specific row wins over a zone-less one.
    """

    spot_discount: Mapping[str, float] = field(default_factory=dict)
    commitment_discount: float = 0.0
    overrides: Mapping[PriceKey, float] = field(default_factory=dict)

    def spot_discount_for(self, entry: CatalogEntry) -> float:
        found = most_specific(entry, self.spot_discount)
        return found if found is not None else default_spot_discount(entry)

    def _listed(self, name: str, capacity_type: CapacityType, zone: str) -> float | None:
        if not self.overrides:
            return None
        found = self.overrides.get((name, capacity_type, zone))
        return found if found is not None else self.overrides.get((name, capacity_type, None))

    def offerings(self, entry: CatalogEntry, zones: Sequence[str]) -> tuple[Offering, ...]:
        """One offering per zone and capacity type (spot first, then on-demand, zones in order)."""
        spot = entry.ondemand_usd_per_h * (1.0 - self.spot_discount_for(entry))
        on_demand = entry.ondemand_usd_per_h * (1.0 - self.commitment_discount)
        offers = []
        defaults: tuple[tuple[CapacityType, float], ...] = (("spot", spot), ("on-demand", on_demand))
        for ct, default in defaults:
            for zone in zones:
                listed = self._listed(entry.name, ct, zone)
                if listed is None:
                    price = default
                elif ct == "on-demand":
                    price = listed * (1.0 - self.commitment_discount)
                else:
                    price = listed
                offers.append(Offering(zone=zone, capacity_type=ct, price_usd_per_h=price))
        return tuple(offers)


PRICE_FILE_COLUMNS = ("instance_type", "capacity_type", "zone", "price_usd_per_hour")


def load_price_file(
    path: Path, known_types: Mapping[str, object], zones: Sequence[str]
) -> dict[PriceKey, float]:
    """Rows of `instance_type,capacity_type[,zone],price_usd_per_hour`; InputError at the bad cell."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("price file not found", file=path) from exc
    except UnicodeDecodeError as exc:
        raise InputError("price file is not UTF-8 text", file=path) from exc
    reader = csv.reader(text.splitlines())
    header = [c.strip() for c in next(reader, [])]
    if not header:
        raise InputError("the price file is empty", file=path, line=1, valid=", ".join(PRICE_FILE_COLUMNS))
    for column in header:
        if column not in PRICE_FILE_COLUMNS:
            raise InputError(
                f"unknown price-file column {column!r}",
                file=path,
                field=column,
                line=1,
                valid=", ".join(PRICE_FILE_COLUMNS),
            )
    for column in ("instance_type", "capacity_type", "price_usd_per_hour"):
        if column not in header:
            raise InputError(
                f"missing column {column!r}", file=path, line=1, valid=", ".join(PRICE_FILE_COLUMNS)
            )
    prices: dict[PriceKey, float] = {}
    lines: dict[PriceKey, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise InputError(
                f"row has {len(cells)} cells, the header has {len(header)}", file=path, line=line
            )
        row = {k: v.strip() for k, v in zip(header, cells, strict=True)}

        def bad(column: str, message: str, valid: str | None = None, at: int = line) -> InputError:
            return InputError(message, file=path, field=column, line=at, valid=valid)

        name = row["instance_type"]
        if name not in known_types:
            raise bad(
                "instance_type", f"{name!r} is not in the catalog", valid="an instance type of the catalog"
            )
        ct = next((c for c in PRICED_CAPACITY_TYPES if c == row["capacity_type"]), None)
        if ct is None:
            raise bad(
                "capacity_type",
                f"{row['capacity_type']!r} is not a priced capacity type",
                ", ".join(PRICED_CAPACITY_TYPES),
            )
        zone = row.get("zone") or None
        if zone is not None and zone not in zones:
            raise bad("zone", f"zone {zone!r} is not one of the scenario's zones", ", ".join(zones))
        try:
            price = float(row["price_usd_per_hour"])
        except ValueError:
            price = math.nan
        if not (price >= 0 and math.isfinite(price)):
            raise bad(
                "price_usd_per_hour", f"{row['price_usd_per_hour']!r} is not a price", "USD per hour >= 0"
            )
        key: PriceKey = (name, ct, zone)
        if key in lines:
            raise bad(
                "instance_type", f"{name} {ct} {zone or '(all zones)'} is priced twice (line {lines[key]})"
            )
        lines[key] = line
        prices[key] = price
    return prices
