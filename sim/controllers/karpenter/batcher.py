"""Karpenter's provisioning batch window as a state machine the engine drives with trigger times.

The window opens at the first trigger; each trigger from a pod not yet seen
in this window pushes the idle deadline out; repeats do not. It closes at
min(last new trigger + idle, first trigger + max) (core provisioning/batcher.go).
The engine calls `trigger` whenever a pod becomes (or, every requeue period,
stays) provisionable, schedules a wake-up at `close_s`, and when that time
comes calls `close` and runs the provisioner over all pending pods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.controllers.karpenter.config import BatchConfig


@dataclass
class Batcher:
    config: BatchConfig = field(default_factory=BatchConfig)
    first_s: float | None = None
    last_new_s: float | None = None
    seen: set[str] = field(default_factory=set)

    def trigger(self, pod_id: str, now_s: float) -> None:
        if self.first_s is None:
            self.first_s = now_s
        if pod_id not in self.seen:
            self.seen.add(pod_id)
            self.last_new_s = now_s

    @property
    def close_s(self) -> float | None:
        """When the open window closes; None when no window is open."""
        if self.first_s is None or self.last_new_s is None:
            return None
        return min(self.last_new_s + self.config.idle_s, self.first_s + self.config.max_s)

    def is_open(self, now_s: float) -> bool:
        close = self.close_s
        return close is not None and now_s < close

    def close(self) -> frozenset[str]:
        """End the window; the pods that triggered it (the batch itself is all pending pods)."""
        seen = frozenset(self.seen)
        self.first_s = None
        self.last_new_s = None
        self.seen = set()
        return seen
