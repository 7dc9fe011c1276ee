"""Prometheus metrics of the payload-log sink (``marquee_serving_payload_sink_*``).

Module-level objects; ``reason`` is one of ``missing`` (no token presented) or ``wrong``.
Requests are also counted by ``serving.metrics.REQUESTS`` (route ``payload_sink``).
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["SINK_UNAUTHORIZED", "UNAUTHORIZED_REASONS"]

UNAUTHORIZED_REASONS = ("missing", "wrong")

SINK_UNAUTHORIZED = Counter(
    "marquee_serving_payload_sink_unauthorized_total",
    "Payload-sink requests refused with 401 (token missing or wrong); nothing was written.",
    ["reason"],
)
