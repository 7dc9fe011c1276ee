"""Prometheus metrics of the model server (``marquee_serving_*``), exposed on ``/metrics``.

Module-level objects, labels only from small fixed sets: ``model_version``, ``variant``,
``route``, ``code``, ``stage``, ``reason``. Latencies are ``_seconds`` histograms.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "REQUESTS", "ERRORS", "STAGE_LATENCY", "COLD_STARTS", "FALLBACKS", "SCORES",
    "PAYLOG_DROPPED", "PAYLOG_ROWS", "PAYLOG_FLUSH_ERRORS", "INDEX_RECALL", "MODEL_READY",
    "STAGES", "count_request",
]

STAGES = ("features", "retrieve", "rank", "rerank", "total")

_LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
                    0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SCORE_BUCKETS = (-10.0, -5.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                  0.8, 0.9, 1.0, 2.0, 5.0, 10.0)

REQUESTS = Counter(
    "marquee_serving_requests_total",
    "Requests answered by the model server, by route and HTTP status code (a gRPC call's "
    "status as its HTTP equivalent, on the grpc_* routes).",
    ["model_version", "variant", "route", "code"],
)
ERRORS = Counter(
    "marquee_serving_errors_total",
    "Requests answered with a 4xx or 5xx, by route and HTTP status code.",
    ["model_version", "variant", "route", "code"],
)
STAGE_LATENCY = Histogram(
    "marquee_serving_stage_latency_seconds",
    "Time spent per recommendation stage (features, retrieve, rank, rerank, total).",
    ["model_version", "stage"],
    buckets=_LATENCY_BUCKETS,
)
COLD_STARTS = Counter(
    "marquee_serving_cold_starts_total",
    "Recommendations for unknown users or users with too little history.",
    ["model_version"],
)
FALLBACKS = Counter(
    "marquee_serving_fallbacks_total",
    "Recommendations answered from popularity because a stage failed or ran over budget.",
    ["model_version", "reason"],
)
SCORES = Histogram(
    "marquee_serving_score",
    "Distribution of the final scores of returned items.",
    ["model_version"],
    buckets=_SCORE_BUCKETS,
)
PAYLOG_DROPPED = Counter(
    "marquee_serving_payload_log_dropped_total",
    "Payload-log rows dropped (queue full, or a flush that failed for good).",
    ["reason"],
)
PAYLOG_ROWS = Counter(
    "marquee_serving_payload_log_rows_total",
    "Payload-log rows written to the object store.",
    ["model_version"],
)
PAYLOG_FLUSH_ERRORS = Counter(
    "marquee_serving_payload_log_flush_errors_total",
    "Failed attempts to write a payload-log file (retried).",
)
INDEX_RECALL = Gauge(
    "marquee_serving_index_recall_ratio",
    "Recall@candidates of the retrieval index against exact search, measured at load.",
    ["model_version"],
)
MODEL_READY = Gauge(
    "marquee_serving_model_ready",
    "1 once the bundle is loaded and the index is built.",
    ["model_version"],
)


def count_request(model_version: str, variant: str, route: str, code: int) -> None:
    """One answered request in ``REQUESTS`` (and ``ERRORS`` when ``code`` is a 4xx or 5xx):
    REST and gRPC count through here, so both series keep one meaning for ``code``."""
    REQUESTS.labels(model_version, variant, route, str(code)).inc()
    if code >= 400:
        ERRORS.labels(model_version, variant, route, str(code)).inc()
