"""The cheapest possible set of nodes for a set of pods, by integer programming: a yardstick for packing.

Karpenter packs greedily (first-fit over cheapest-first candidate sets), so
its node bill is not the minimum; how far it is off is a number worth
reporting, not assuming. This solves the variable-size bin-packing problem
exactly with scipy's MILP (HiGHS): bins are candidate nodes, each takes at
most one instance type, each pod goes to exactly one bin, per-resource sums
stay within the chosen type's allocatable (DaemonSet overhead already
subtracted by the caller), and the objective is the summed hourly price.
Bins are ordered by price to cut the symmetric search. Only small problems
(tens of pods) are practical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp


def optimal_cost(
    requests: np.ndarray,
    allocatable: np.ndarray,
    prices: Sequence[float],
    max_nodes: int | None = None,
    time_limit_s: float = 60.0,
) -> float:
    """Minimum hourly cost to hold every pod (rows of `requests`) on nodes of the given types.

    `requests` is (pods x resources) including the pod slot; `allocatable`
    is (types x resources). Identical pods are grouped into shapes, whose
    counts are integer variables, which removes most of the symmetry.
    `max_nodes` bounds the number of nodes (any known solution's cost over
    the cheapest price is a valid bound). Raises ValueError when a pod fits
    no type or the solver does not prove optimality within the time limit.
    """
    shapes, counts = np.unique(requests, axis=0, return_counts=True)
    n_shapes, res = shapes.shape
    types = allocatable.shape[0]
    if not all(np.any(np.all(shapes[s] <= allocatable + 1e-9, axis=1)) for s in range(n_shapes)):
        raise ValueError("a pod fits no instance type; the packing problem has no solution")
    price = np.asarray(prices, dtype=float)
    bins = int(counts.sum()) if max_nodes is None else max(1, min(int(counts.sum()), max_nodes))
    n_y = n_shapes * bins
    n_z = bins * types
    width = n_y + n_z
    cost = np.concatenate([np.zeros(n_y), np.tile(price, bins)])

    def y(s: int, b: int) -> int:
        return s * bins + b

    def z(b: int, t: int) -> int:
        return n_y + b * types + t

    rows: list[np.ndarray] = []
    lower: list[float] = []
    upper: list[float] = []

    def add(row: np.ndarray, lo: float, hi: float) -> None:
        rows.append(row)
        lower.append(lo)
        upper.append(hi)

    for s in range(n_shapes):
        row = np.zeros(width)
        row[[y(s, b) for b in range(bins)]] = 1
        add(row, counts[s], counts[s])
    for b in range(bins):
        row = np.zeros(width)
        row[[z(b, t) for t in range(types)]] = 1
        add(row, 0, 1)
        for r in range(res):
            if not shapes[:, r].any():
                continue
            row = np.zeros(width)
            for s in range(n_shapes):
                row[y(s, b)] = shapes[s, r]
            for t in range(types):
                row[z(b, t)] = -allocatable[t, r]
            add(row, -np.inf, 1e-9)
        if b + 1 < bins:
            row = np.zeros(width)
            row[[z(b, t) for t in range(types)]] = price
            row[[z(b + 1, t) for t in range(types)]] = -price
            add(row, 0, np.inf)
    upper_bounds = np.concatenate([np.repeat(counts, bins), np.ones(n_z)])
    result = milp(
        cost,
        constraints=LinearConstraint(np.array(rows), np.array(lower), np.array(upper)),
        integrality=np.ones(width),
        bounds=Bounds(np.zeros(width), upper_bounds),
        options={"time_limit": time_limit_s},
    )
    if result.status != 0 or result.fun is None:
        raise ValueError(f"MILP did not reach a proven optimum: {result.message}")
    return float(result.fun)
