"""Prometheus gauges of the drift check, on their own registry.

Locally ``marquee drift check --metrics-port`` serves them; in a cluster the CronJob pushes
them to a Pushgateway (``--pushgateway``, default ``MARQUEE_PUSHGATEWAY_URL``; grouped by
job and namespace). Every export replaces the previous one, so a
model version that is no longer checked disappears instead of lingering; a failed check
(``withdraw``) drops the last verdict, so a long-running exporter never serves an old drift
share as if fresh, and keeps the time of the last completed check, from which
``DriftJobStale`` counts.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from marquee.errors import redact_uri
from monitoring.drift.summary import DriftSummary
from monitoring.metrics import build, push_group

__all__ = ["REGISTRY", "export", "withdraw", "push", "push_failure"]

REGISTRY = CollectorRegistry(auto_describe=True)
_NAMES = [
    "marquee_drift_share", "marquee_drift_share_threshold", "marquee_drift_feature_score",
    "marquee_drift_feature_threshold", "marquee_drift_feature_drifted",
    "marquee_prediction_drift_score", "marquee_prediction_drift_threshold",
    "marquee_prediction_drift_drifted",
    "marquee_embedding_drift_score", "marquee_embedding_drift_threshold",
    "marquee_drift_window_rows", "marquee_drift_last_run_timestamp_seconds",
    "marquee_drift_last_run_duration_seconds",
]
G = build(_NAMES, REGISTRY)
#: What a check found; the last two names tell when the last completed check ran.
_VERDICT = [n for n in _NAMES if n not in ("marquee_drift_last_run_timestamp_seconds",
                                           "marquee_drift_last_run_duration_seconds")]


def withdraw() -> None:
    """Drop the last verdict's series (every labelled gauge); the last completed check's
    timestamp and duration stay."""
    for name in _VERDICT:
        G[name].clear()


def export(s: DriftSummary, duration_seconds: float, now: float | None = None) -> None:
    withdraw()
    v = s.model_version
    G["marquee_drift_share"].labels(model_version=v).set(s.drift_share)
    G["marquee_drift_share_threshold"].labels(model_version=v).set(s.drift_share_threshold)
    for f in s.features:
        if f.skipped is not None:  # too few values: no verdict, and no NaN score pushed
            continue
        G["marquee_drift_feature_score"].labels(model_version=v, feature=f.name).set(f.score)
        G["marquee_drift_feature_threshold"].labels(model_version=v, feature=f.name).set(
            f.threshold)
        G["marquee_drift_feature_drifted"].labels(model_version=v, feature=f.name).set(
            float(f.drifted))
    for p in s.prediction:
        if p.score is None:
            continue
        G["marquee_prediction_drift_score"].labels(model_version=v, feature=p.name).set(p.score)
        G["marquee_prediction_drift_threshold"].labels(model_version=v, feature=p.name).set(
            p.threshold)
        G["marquee_prediction_drift_drifted"].labels(model_version=v, feature=p.name).set(
            float(p.drifted))
    if s.embedding is not None and s.embedding.score is not None:
        G["marquee_embedding_drift_score"].labels(model_version=v).set(s.embedding.score)
        G["marquee_embedding_drift_threshold"].labels(model_version=v).set(
            s.embedding.threshold)
    G["marquee_drift_window_rows"].labels(model_version=v).set(s.window.rows)
    G["marquee_drift_last_run_duration_seconds"].set(duration_seconds)
    G["marquee_drift_last_run_timestamp_seconds"].set(time.time() if now is None else now)


def push(gateway_url: str, namespace: str | None = None, job: str = "marquee-drift"
         ) -> str | None:
    """Replace the job's group on the Pushgateway (grouped by ``namespace`` when set);
    None, or why it failed (:func:`push_failure`)."""
    try:
        push_group(REGISTRY, gateway_url, job, namespace)
    except OSError as exc:
        return push_failure(gateway_url, exc)
    return None


def push_failure(gateway_url: str, exc: OSError) -> str:
    """One line for a push that did not reach the Pushgateway (refused, timed out, an HTTP
    error). The check's verdict stands (printed, published), but the alerts never see it, so
    the command says so and exits 1 rather than a traceback that hides the verdict."""
    from urllib.error import HTTPError, URLError

    if isinstance(exc, HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    else:
        reason = str(exc.reason if isinstance(exc, URLError) else exc)
    return (f"the gauges were not pushed to {redact_uri(gateway_url)} (the alerts do not see "
            f"this verdict): {' '.join(reason.split())}")
