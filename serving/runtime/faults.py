"""Fault injection for rollout tests: an error rate and extra latency, both off by default.

Set ``MARQUEE_SERVING_FAULT_ERROR_RATE`` (0..1) and ``MARQUEE_SERVING_FAULT_EXTRA_LATENCY_MS``
on a model server to make it a bad candidate on purpose. Injected errors are 500s with code
``injected_fault``; they are counted like any other error and written to the payload log.
"""

from __future__ import annotations

import asyncio
import random

from serving.errors import InjectedFault

__all__ = ["FaultInjector"]


class FaultInjector:
    def __init__(self, error_rate: float = 0.0, extra_latency_ms: float = 0.0,
                 seed: int | None = None) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be within 0..1, got {error_rate}")
        if extra_latency_ms < 0:
            raise ValueError(f"extra_latency_ms must be ≥ 0, got {extra_latency_ms}")
        self.error_rate = error_rate
        self.extra_latency_ms = extra_latency_ms
        self._rng = random.Random(seed)

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.extra_latency_ms > 0

    def should_fail(self) -> bool:
        return self.error_rate > 0 and self._rng.random() < self.error_rate

    async def apply(self) -> None:
        """Sleep the extra latency (without blocking the loop), then maybe raise."""
        if self.extra_latency_ms > 0:
            await asyncio.sleep(self.extra_latency_ms / 1000.0)
        if self.should_fail():
            raise InjectedFault(f"injected fault (error_rate={self.error_rate})")
