"""Random streams, one per simulated component.

Each component draws from its own generator spawned from the scenario seed, so
changing a scaling setting (which changes how many pod starts are drawn, say)
never shifts the arrivals another component sees: common random numbers make
two configurations comparable on the same traffic.
"""

from __future__ import annotations

import zlib

import numpy as np

COMPONENTS = ("arrivals", "service_times", "routing", "pod_starts", "node_launches", "interruptions")


def stream(seed: int, service: str, component: str) -> np.random.Generator:
    """A generator for one (service, component) pair, independent of every other pair.

    The key is derived from the names rather than from a spawn order, so adding
    a service or a component never renumbers the streams of the others.
    """
    if component not in COMPONENTS:
        raise ValueError(f"unknown random component {component!r}; known: {', '.join(COMPONENTS)}")
    key = [zlib.crc32(service.encode()), zlib.crc32(component.encode())]
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))
