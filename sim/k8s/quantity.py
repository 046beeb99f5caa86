"""Kubernetes resource quantities ("250m", "1.5", "512Mi", "1G", "1e3").

Parsed exactly (Decimal) the way apimachinery's resource.Quantity reads them,
so "1G" (10^9 bytes) and "1Gi" (2^30 bytes) stay different: mixing them up is
a 7% error in memory requests, which is the kind of slip a capacity plan must
not make silently.
"""

from __future__ import annotations

import re
from decimal import Decimal

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_QUANTITY = re.compile(rf"^({_NUMBER})(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([numkMGTPE])|[eE]([+-]?\d+))?$")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_EXP = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

VALID_FORMS = 'a number with an optional suffix: "250m", "1.5", "512Mi", "1Gi", "1G", "2k", "1e3"'


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity; callers add the file, field and line."""


def parse_quantity(value: object) -> Decimal:
    """The quantity's value in base units (cores, bytes, or the metric's own unit)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QuantityError(f"expected a quantity, got {type(value).__name__} {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity")
    number, binary, decimal_suffix, exponent = match.groups()
    amount = Decimal(number)
    if binary:
        return amount * _BINARY[binary]
    if decimal_suffix:
        return amount.scaleb(_DECIMAL_EXP[decimal_suffix])
    if exponent:
        return amount.scaleb(int(exponent))
    return amount


def _non_negative(value: object) -> Decimal:
    amount = parse_quantity(value)
    if amount < 0:
        raise QuantityError(f"{value!r} is negative; resource amounts must be >= 0")
    return amount


def cpu_millicores(value: object) -> float:
    """A CPU quantity ("250m", "1.5", 2) in millicores."""
    return float(_non_negative(value) * 1000)


def memory_mib(value: object) -> float:
    """A memory quantity ("512Mi", "1G", 1073741824) in MiB (2^20 bytes)."""
    return float(_non_negative(value) / 2**20)
