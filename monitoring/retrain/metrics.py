"""Prometheus metrics of the retrain trigger, on its own registry (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitoring.metrics import build

__all__ = ["REGISTRY", "DECISIONS", "WEBHOOK_REQUESTS", "RUNS", "RUNS_IN_FLIGHT",
           "RUN_DURATION", "LAST_STARTED"]

REGISTRY = CollectorRegistry(auto_describe=True)
_m = build(
    [
        "marquee_retrain_decisions_total",
        "marquee_retrain_webhook_requests_total",
        "marquee_retrain_runs_total",
        "marquee_retrain_runs_in_flight",
        "marquee_retrain_run_duration_seconds",
        "marquee_retrain_last_started_timestamp_seconds",
    ],
    REGISTRY,
)
DECISIONS = _m["marquee_retrain_decisions_total"]
WEBHOOK_REQUESTS = _m["marquee_retrain_webhook_requests_total"]
RUNS = _m["marquee_retrain_runs_total"]
RUNS_IN_FLIGHT = _m["marquee_retrain_runs_in_flight"]
RUN_DURATION = _m["marquee_retrain_run_duration_seconds"]
LAST_STARTED = _m["marquee_retrain_last_started_timestamp_seconds"]
