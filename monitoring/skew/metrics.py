"""Prometheus gauges of the skew check, on their own registry."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from monitoring.metrics import build, push_group
from monitoring.skew.job import SkewSummary

__all__ = ["REGISTRY", "export", "push"]

REGISTRY = CollectorRegistry(auto_describe=True)
_NAMES = ["marquee_skew_mismatch_rate", "marquee_skew_mismatch_threshold",
          "marquee_skew_distance", "marquee_skew_joined_rows",
          "marquee_skew_last_run_timestamp_seconds"]
G = build(_NAMES, REGISTRY)


def export(s: SkewSummary, now: float | None = None) -> None:
    for name in _NAMES[:-1]:
        G[name].clear()
    v = s.model_version
    for f in s.features:
        G["marquee_skew_mismatch_rate"].labels(model_version=v, feature=f.name).set(
            f.mismatch_rate)
        G["marquee_skew_mismatch_threshold"].labels(model_version=v, feature=f.name).set(
            f.threshold)
        if f.distance is not None:
            G["marquee_skew_distance"].labels(model_version=v, feature=f.name).set(f.distance)
    G["marquee_skew_joined_rows"].labels(model_version=v).set(s.joined)
    G["marquee_skew_last_run_timestamp_seconds"].set(time.time() if now is None else now)


def push(gateway_url: str, namespace: str | None = None, job: str = "marquee-skew"
         ) -> str | None:
    """Replace the job's group on the Pushgateway (grouped by ``namespace`` when set);
    None, or why it failed (``monitoring.drift.metrics.push_failure``)."""
    from monitoring.drift.metrics import push_failure

    try:
        push_group(REGISTRY, gateway_url, job, namespace)
    except OSError as exc:
        return push_failure(gateway_url, exc)
    return None
