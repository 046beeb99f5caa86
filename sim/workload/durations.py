"""Durations as people write them in scenario files: `90`, `"90s"`, `"15m"`, `"1h30m"`, `"7d"`.

Bare numbers are seconds. Strings use Prometheus-style units (ms, s, m, h, d,
w) and may chain them, because SREs copy these values from PromQL range
windows and KEDA/HPA settings. The parsed value is always float seconds.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = rf"{_NUMBER}(?:ms|s|m|h|d|w)"
PATTERN = rf"^\s*-?\s*(?:{_NUMBER}|(?:{_PART})+)\s*$"
_PART_RE = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)")
_VALID = 'seconds as a number, or a string such as "90s", "15m", "1h30m", "7d"'


def parse_duration_s(value: object) -> float:
    """Seconds from a number or a duration string; ValueError (with what is valid) otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}; valid: {_VALID}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}; valid: {_VALID}")
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite, got {value!r}")
    return seconds


def _parse_text(text: str) -> float:
    if not re.match(PATTERN, text):
        raise ValueError(f"cannot read {text!r} as a duration; valid: {_VALID}")
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("-").strip()
    if re.fullmatch(_NUMBER, body):
        return sign * float(body)
    return sign * sum(float(number) * _UNIT_S[unit] for number, unit in _PART_RE.findall(body))


def _schema(minimum: float | None) -> dict[str, Any]:
    number: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        number["minimum"] = minimum
    string: dict[str, Any] = {"type": "string", "pattern": PATTERN}
    return {"anyOf": [number, string], "description": f"duration: {_VALID}"}


Duration = Annotated[
    float, BeforeValidator(parse_duration_s), Field(ge=0.0), WithJsonSchema(_schema(0.0), mode="validation")
]
"""A non-negative duration in seconds (start times, windows, rise/hold/decay)."""

PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration_s), Field(gt=0.0), WithJsonSchema(_schema(0.0), mode="validation")
]
"""A strictly positive duration in seconds (correlation times, periods)."""

SignedDuration = Annotated[
    float, BeforeValidator(parse_duration_s), WithJsonSchema(_schema(None), mode="validation")
]
"""A duration that may be negative, such as a time shift ("-2h" moves a series earlier)."""
