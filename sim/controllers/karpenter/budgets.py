"""NodePool disruption budgets: cron-scheduled windows and the allowed-disruptions arithmetic.

Upstream: core pkg/apis/v1/nodepool.go (`GetAllowedDisruptionsByReason`,
`Budget.IsActive`) and disruption/helpers.go (`BuildDisruptionBudgetMapping`).
A budget with a schedule is active at `now` iff the schedule's next firing
after `now - duration` is not after `now`. Percentages round up against the
number of initialized nodes; the smallest active budget for the reason wins,
minus nodes already being disrupted (NotReady or deleting, for any reason);
a pool whose budgets are all inactive allows MaxInt32.

Cron follows the standard 5-field syntax the robfig/cron parser accepts
(numbers, ranges, steps, lists, month/day names, @yearly ... @hourly), in
UTC; when both day-of-month and day-of-week are restricted a day matching
either fires, as in Vixie cron.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sim.controllers.karpenter.types import Budget, DisruptionReason

MAX_INT32 = 2**31 - 1

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_SEARCH_DAYS = 366 * 5


class CronError(ValueError):
    """A schedule the cron parser rejects; the manifest loader adds file and field."""


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool

    def day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def next_after(self, t: datetime) -> datetime:
        """The first firing strictly after `t` (whole minutes, UTC)."""
        start = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for offset in range(_SEARCH_DAYS):
            current = day + timedelta(days=offset)
            if not self.day_matches(current):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    fire = current.replace(hour=hour, minute=minute)
                    if fire >= start:
                        return fire
        raise CronError("schedule never fires within five years")


@lru_cache(maxsize=256)
def parse_cron(expr: str) -> Cron:
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            f"schedule {expr!r} needs 5 fields (minute hour day-of-month month day-of-week) or a macro"
        )
    minute, hour, dom, month, dow = fields
    weekdays = _field(dow, 0, 7, _DAYS, "day-of-week")
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    return Cron(
        minutes=_field(minute, 0, 59, {}, "minute"),
        hours=_field(hour, 0, 23, {}, "hour"),
        days=_field(dom, 1, 31, {}, "day-of-month"),
        months=_field(month, 1, 12, _MONTHS, "month"),
        weekdays=weekdays,
        day_star=dom.startswith(("*", "?")),
        weekday_star=dow.startswith(("*", "?")),
    )


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        step = 1
        part = item
        if "/" in item:
            part, step_text = item.split("/", 1)
            step = _number(step_text, {}, what)
            if step <= 0:
                raise CronError(f"{what} step must be positive in {text!r}")
        if part in ("*", "?"):
            lo, hi = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = _number(a, names, what), _number(b, names, what)
        else:
            lo = _number(part, names, what)
            hi = high if step > 1 else lo
        if not low <= lo <= hi <= high:
            raise CronError(f"{what} {part!r} is outside {low}-{high}")
        values.update(range(lo, hi + 1, step))
    return frozenset(values)


def _number(text: str, names: dict[str, int], what: str) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    try:
        return int(text)
    except ValueError:
        raise CronError(f"{what} value {text!r} is not a number or name") from None


def is_active(budget: Budget, now_utc: datetime) -> bool:
    if budget.schedule is None and budget.duration_s is None:
        return True
    if budget.schedule is None or budget.duration_s is None:
        raise CronError("a budget's schedule and duration must be set together")
    now = now_utc.astimezone(UTC)
    checkpoint = now - timedelta(seconds=budget.duration_s)
    return parse_cron(budget.schedule).next_after(checkpoint) <= now


def budget_value(budget: Budget, num_nodes: int) -> int:
    """A budget's node count; percentages round up (50% of 3 = 2)."""
    nodes = budget.nodes
    if isinstance(nodes, str) and nodes.endswith("%"):
        return math.ceil(float(nodes[:-1]) * num_nodes / 100 - 1e-9)
    return int(nodes)


def allowed_disruptions(
    budgets: tuple[Budget, ...], reason: DisruptionReason, num_nodes: int, disrupting: int, now_utc: datetime
) -> int:
    """How many more nodes of the pool `reason` may disrupt now."""
    if not budgets:
        return MAX_INT32
    smallest = MAX_INT32
    for budget in budgets:
        if budget.reasons and reason not in budget.reasons:
            continue
        if not is_active(budget, now_utc):
            continue
        smallest = min(smallest, budget_value(budget, num_nodes))
    return max(0, smallest - disrupting)
