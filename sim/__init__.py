"""capsim: simulate KEDA/HPA and Karpenter autoscaling before the config reaches the cluster.

The public API is small on purpose; the CLI, the notebooks and the CI gate all
go through it:

    scn = sim.load_scenario("scenarios/flash-crowd.yaml")
    result = sim.simulate(scn)
    result.timeseries, result.events, result.summary
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "load_scenario", "simulate"]

if TYPE_CHECKING:
    from sim.engine import simulate
    from sim.result import Result
    from sim.scenario import load_scenario


def __getattr__(name: str) -> Any:
    # Lazy, so `capsim schema` and `import sim` do not pay for SimPy, pandas and matplotlib.
    if name == "simulate":
        from sim.engine import simulate

        return simulate
    if name == "load_scenario":
        from sim.scenario import load_scenario

        return load_scenario
    if name == "Result":
        from sim.result import Result

        return Result
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
