"""The catalogue of Prometheus metrics that alerts, dashboards and monitoring jobs rely on.

Every metric an alert rule (``monitoring/prometheus/alerts.yaml``) or the Grafana dashboard
(``monitoring/grafana/marquee.json``) reads is declared here once: name, type, labels, unit
and who emits it. A test checks that the rules and the dashboard name nothing else.

The monitoring jobs build their own Prometheus objects from these specs, each on its own
registry (``monitoring/drift/metrics.py``, ``monitoring/skew/metrics.py``,
``monitoring/retrain/metrics.py``). Metrics owned by ``serving`` are declared here for the
alerts' and the dashboard's sake; the model server (``serving/metrics.py``), the router and
the rollout controller create them with these names, labels and buckets (tests check that
both sides agree).

Naming: ``marquee_<subsystem>_<thing>_<unit>``; labels only from the small fixed set in
``docs/CONTRACTS.md`` § Metrics (plus ``event`` on feedback and ``rollout``, ``model`` on the
rollout controller's per-rollout gauges, see ``EXTRA_LABELS``).

Gauges that carry a verdict come with a ``*_threshold`` twin holding the threshold the job
used, so an alert compares ``score >= threshold`` and the threshold lives in one place: the
job's configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    push_to_gateway,
)

__all__ = [
    "MetricSpec",
    "CATALOGUE",
    "ALLOWED_LABELS",
    "EXTRA_LABELS",
    "spec",
    "build",
    "metric_names",
    "push_group",
    "pushgateway_url",
]

Kind = Literal["gauge", "counter", "histogram"]

#: Labels allowed by docs/CONTRACTS.md § Metrics.
ALLOWED_LABELS = frozenset(
    {"model_version", "variant", "route", "code", "stage", "feature", "strategy", "reason",
     "alertname"}
)
#: Labels beyond the first list, named in CONTRACTS.md § Metrics after it. ``rollout`` (the
#: ModelRollout's name) and ``model`` (its modelName) tell apart rollouts whose candidates share
#: a version number and a strategy; a rollout's name is unique within its namespace.
EXTRA_LABELS = frozenset({"event", "rollout", "model"})

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
#: The router's own buckets (serving/router/metrics.py), finer than LATENCY_BUCKETS.
ROUTER_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                          0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
#: The model server's buckets (serving/metrics.py): per-stage latencies, down to 250 µs.
SERVING_LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
                           0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The model server's buckets for the final scores of returned items (serving/metrics.py).
SERVING_SCORE_BUCKETS = (-10.0, -5.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5,
                         0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0, 10.0)
RATIO_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
TAU_BUCKETS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
RUN_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: what it measures, its labels and which part of Marquee emits it."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    owner: str = "monitoring"
    buckets: tuple[float, ...] | None = None

    @property
    def series_names(self) -> tuple[str, ...]:
        """Names of the time series Prometheus stores for this metric."""
        if self.kind == "histogram":
            return tuple(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.name,)


_DRIFT = "monitoring.drift"
_SKEW = "monitoring.skew"
_RETRAIN = "monitoring.retrain"
_SERVING = "serving"
_ROUTER = "serving.router"
_ROLLOUT = "serving.rollout"
#: Labels of the rollout controller's per-rollout gauges (serving/rollout/metrics.py), in order.
_PER_ROLLOUT = ("rollout", "model", "model_version", "strategy")

CATALOGUE: tuple[MetricSpec, ...] = (
    # --- drift job (marquee drift check) ------------------------------------------------
    MetricSpec("marquee_drift_share", "gauge",
               "Share (0-1) of monitored features whose drift score reached its threshold in "
               "the last drift check.", ("model_version",), _DRIFT),
    MetricSpec("marquee_drift_share_threshold", "gauge",
               "Share of drifted features at which the drift check calls the dataset drifted "
               "(drift_share in monitoring/drift/config.yaml).", ("model_version",), _DRIFT),
    MetricSpec("marquee_drift_feature_score", "gauge",
               "Drift score of one feature in the last drift check (normed Wasserstein, "
               "Jensen-Shannon distance, ... as configured per feature).",
               ("model_version", "feature"), _DRIFT),
    MetricSpec("marquee_drift_feature_threshold", "gauge",
               "Threshold the feature's drift score is compared with.",
               ("model_version", "feature"), _DRIFT),
    MetricSpec("marquee_drift_feature_drifted", "gauge",
               "1 when the feature drifted by its method (a distance at or above its "
               "threshold, a p-value test's p below it), else 0.",
               ("model_version", "feature"), _DRIFT),
    MetricSpec("marquee_prediction_drift_score", "gauge",
               "Drift of what the model returns: feature=score (score distribution), "
               "item_popularity (log popularity of recommended items), genre_mix (genres of "
               "recommended items).", ("model_version", "feature"), _DRIFT),
    MetricSpec("marquee_prediction_drift_threshold", "gauge",
               "Threshold of each prediction drift score.", ("model_version", "feature"),
               _DRIFT),
    MetricSpec("marquee_prediction_drift_drifted", "gauge",
               "1 when the prediction feature drifted by its method (a distance at or above "
               "its threshold, a p-value test's p below it), else 0; PredictionDrift fires on "
               "it.", ("model_version", "feature"), _DRIFT),
    MetricSpec("marquee_embedding_drift_score", "gauge",
               "Drift score of user embeddings (Evidently embedding drift method).",
               ("model_version",), _DRIFT),
    MetricSpec("marquee_embedding_drift_threshold", "gauge",
               "Threshold of the user-embedding drift score.", ("model_version",), _DRIFT),
    MetricSpec("marquee_drift_window_rows", "gauge",
               "Payload-log rows in the window the last drift check compared.",
               ("model_version",), _DRIFT),
    MetricSpec("marquee_drift_last_run_timestamp_seconds", "gauge",
               "Unix time at which the last drift check completed (whatever its verdict).",
               (), _DRIFT),
    MetricSpec("marquee_drift_last_run_duration_seconds", "gauge",
               "Wall time of the last completed drift check.", (), _DRIFT),
    # --- skew job (marquee skew check) --------------------------------------------------
    MetricSpec("marquee_skew_mismatch_rate", "gauge",
               "Share (0-1) of joined requests whose served feature value differs from the "
               "offline recomputation.", ("model_version", "feature"), _SKEW),
    MetricSpec("marquee_skew_mismatch_threshold", "gauge",
               "Mismatch rate above which a feature is reported as skewed.",
               ("model_version", "feature"), _SKEW),
    MetricSpec("marquee_skew_distance", "gauge",
               "Distribution distance between served and recomputed values of a feature.",
               ("model_version", "feature"), _SKEW),
    MetricSpec("marquee_skew_joined_rows", "gauge",
               "Requests joined by request_id in the last skew check.", ("model_version",),
               _SKEW),
    MetricSpec("marquee_skew_last_run_timestamp_seconds", "gauge",
               "Unix time at which the last skew check completed.", (), _SKEW),
    # --- model servers (serving/metrics.py, scraped by the ServiceMonitor marquee-model) ---
    MetricSpec("marquee_serving_requests_total", "counter",
               "Requests answered by the model server, by route and HTTP status code (a gRPC "
               "call's status as its HTTP equivalent, on the grpc_* routes).",
               ("model_version", "variant", "route", "code"), _SERVING),
    MetricSpec("marquee_serving_errors_total", "counter",
               "Requests answered with a 4xx or 5xx, by route and HTTP status code.",
               ("model_version", "variant", "route", "code"), _SERVING),
    MetricSpec("marquee_serving_stage_latency_seconds", "histogram",
               "Time spent per recommendation stage (features, retrieve, rank, rerank, total).",
               ("model_version", "stage"), _SERVING, SERVING_LATENCY_BUCKETS),
    MetricSpec("marquee_serving_cold_starts_total", "counter",
               "Recommendations for unknown users or users with too little history.",
               ("model_version",), _SERVING),
    MetricSpec("marquee_serving_fallbacks_total", "counter",
               "Recommendations answered from popularity because a stage failed or ran over "
               "budget.", ("model_version", "reason"), _SERVING),
    MetricSpec("marquee_serving_score", "histogram",
               "Distribution of the final scores of returned items.",
               ("model_version",), _SERVING, SERVING_SCORE_BUCKETS),
    MetricSpec("marquee_serving_payload_log_dropped_total", "counter",
               "Payload-log rows dropped (queue full, or a flush that failed for good).",
               ("reason",), _SERVING),
    MetricSpec("marquee_serving_payload_log_rows_total", "counter",
               "Payload-log rows written to the object store.",
               ("model_version",), _SERVING),
    MetricSpec("marquee_serving_payload_log_flush_errors_total", "counter",
               "Failed attempts to write a payload-log file (retried).",
               (), _SERVING),
    MetricSpec("marquee_serving_payload_sink_unauthorized_total", "counter",
               "Payload-sink requests refused with 401 (token missing or wrong); nothing was "
               "written.", ("reason",), _SERVING),
    MetricSpec("marquee_serving_index_recall_ratio", "gauge",
               "Recall@candidates of the retrieval index against exact search, measured at "
               "load.", ("model_version",), _SERVING),
    MetricSpec("marquee_serving_model_ready", "gauge",
               "1 once the bundle is loaded and the index is built.",
               ("model_version",), _SERVING),
    # --- router (serving/router) ---------------------------------------------------------
    MetricSpec("marquee_router_requests_total", "counter",
               "Requests answered by the router, by variant, model version and HTTP status "
               "code.", ("variant", "model_version", "code"), _ROUTER),
    MetricSpec("marquee_router_request_duration_seconds", "histogram",
               "End-to-end latency of /recommend at the router, by variant.", ("variant",),
               _ROUTER, ROUTER_LATENCY_BUCKETS),
    MetricSpec("marquee_router_feedback_total", "counter",
               "Feedback events received, by variant and event (impression, click, watch).",
               ("variant", "event"), _ROUTER),
    MetricSpec("marquee_router_variant_info", "gauge",
               "1 for each variant the router serves, labelled with the model version behind "
               "it (join on variant to show a variant's series per model version).",
               ("variant", "model_version"), _ROUTER),
    # --- rollout controller (serving/rollout) --------------------------------------------
    # per rollout: ``rollout`` is the ModelRollout's name, ``model`` its modelName and
    # ``model_version`` its candidate's version
    MetricSpec("marquee_rollout_phase", "gauge",
               "1 for the rollout's current phase (stage=Pending, Shadowing, Progressing, "
               "Paused, Promoting, Succeeded, RolledBack, Failed), 0 for the others.",
               (*_PER_ROLLOUT, "stage"), _ROLLOUT),
    MetricSpec("marquee_rollout_failed_checks", "gauge",
               "Failed analysis checks of the rollout so far (absent once it ended).",
               _PER_ROLLOUT, _ROLLOUT),
    MetricSpec("marquee_rollout_failure_limit", "gauge",
               "Failed checks at which the controller rolls the candidate back "
               "(spec.analysis.failureLimit).", _PER_ROLLOUT, _ROLLOUT),
    MetricSpec("marquee_rollout_step", "gauge",
               "Index of the rollout's current step.", _PER_ROLLOUT, _ROLLOUT),
    MetricSpec("marquee_rollout_candidate_weight_ratio", "gauge",
               "Share (0-1) of traffic routed to the candidate.", _PER_ROLLOUT, _ROLLOUT),
    # --- what the router and the controller also export (rollout analysis, dashboards) ----
    MetricSpec("marquee_router_errors_total", "counter",
               "Model-server calls that failed (reason: status_5xx, status_4xx, timeout, "
               "connect, bad_response), by the variant that made them.",
               ("variant", "model_version", "reason"), _ROUTER),
    MetricSpec("marquee_router_upstream_duration_seconds", "histogram",
               "Time of successful model-server calls, by variant.",
               ("variant",), _ROUTER, ROUTER_LATENCY_BUCKETS),
    MetricSpec("marquee_router_exposures_total", "counter",
               "Recommendation lists served (one per answered request).",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_clicked_exposures_total", "counter",
               "Served lists that received at least one click.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_click_through_ratio", "gauge",
               "Clicked lists / served lists since the router started.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_assigned_users_total", "counter",
               "Users assigned to a variant for the first time in an experiment (for the sample-"
               "ratio check).",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_ab_user_lists_squared_total", "counter",
               "Sum over users of (lists shown to the user)², for the A/B variance.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_ab_user_clicked_squared_total", "counter",
               "Sum over users of (clicked lists of the user)², for the A/B variance.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_ab_user_lists_clicked_total", "counter",
               "Sum over users of lists shown × clicked lists, for the A/B variance.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_shadow_requests_total", "counter",
               "Mirrored candidate calls by outcome (code: 200, 4xx, 5xx, timeout, connect, "
               "bad_response, error).",
               ("code",), _ROUTER),
    MetricSpec("marquee_router_shadow_dropped_total", "counter",
               "Mirrors skipped because too many were in flight.",
               (), _ROUTER),
    MetricSpec("marquee_router_shadow_duration_seconds", "histogram",
               "Latency of both sides of mirrored requests.",
               ("variant",), _ROUTER, ROUTER_LATENCY_BUCKETS),
    MetricSpec("marquee_router_shadow_topk_overlap_ratio", "histogram",
               "Top-k overlap of candidate and baseline lists per mirrored request.",
               (), _ROUTER, RATIO_BUCKETS),
    MetricSpec("marquee_router_shadow_rank_biased_overlap_ratio", "histogram",
               "Rank-biased overlap (p=0.9) per mirrored request.",
               (), _ROUTER, RATIO_BUCKETS),
    MetricSpec("marquee_router_shadow_kendall_tau_ratio", "histogram",
               "Kendall tau on the shared items per mirrored request.",
               (), _ROUTER, TAU_BUCKETS),
    MetricSpec("marquee_router_shadow_coverage_ratio", "gauge",
               "Distinct items / slots over recent mirrored lists, per side.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_shadow_exposure_gini_ratio", "gauge",
               "Gini coefficient of item exposure over recent mirrored lists, per side.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_interleave_wins_total", "counter",
               "Interleaved lists won by a team (variant baseline, candidate or tie).",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_interleave_win_reversals_total", "counter",
               "Wins taken back because a later click changed the winner.",
               ("variant",), _ROUTER),
    MetricSpec("marquee_router_candidate_weight_percent", "gauge",
               "Percent of users routed to the candidate, by strategy.",
               ("strategy",), _ROUTER),
    MetricSpec("marquee_router_log_dropped_total", "counter",
               "Exposure/feedback log rows dropped (queue full or write failed).",
               ("reason",), _ROUTER),
    MetricSpec("marquee_rollout_ticks_total", "counter",
               "Controller ticks by result (reason: ok, error).",
               ("reason",), _ROLLOUT),
    MetricSpec("marquee_rollout_decisions_total", "counter",
               "Analysis decisions by strategy and outcome (reason: Successful, Failed, "
               "Inconclusive).",
               ("strategy", "reason"), _ROLLOUT),
    MetricSpec("marquee_rollout_leader", "gauge",
               "1 when this controller holds the leader Lease and acts on rollouts (or runs "
               "without leader election), 0 while it stands by.",
               (), _ROLLOUT),
    MetricSpec("marquee_rollout_active_rollouts", "gauge",
               "Rollouts not yet finished, by strategy.",
               ("strategy",), _ROLLOUT),
    MetricSpec("marquee_rollout_candidate_weight_percent", "gauge",
               "Candidate weight the controller last applied, by strategy.",
               ("strategy",), _ROLLOUT),
    # --- retrain trigger (monitoring/retrain) --------------------------------------------
    MetricSpec("marquee_retrain_decisions_total", "counter",
               "Decisions of the retrain trigger, by reason (started, duplicate, cooldown, "
               "busy, resolved-ignored, not-retrain, other-model, unauthorized, canceled).", ("reason",), _RETRAIN),
    MetricSpec("marquee_retrain_webhook_requests_total", "counter",
               "HTTP requests to the retrain webhook, by status code.", ("code",), _RETRAIN),
    MetricSpec("marquee_retrain_runs_total", "counter",
               "Retraining runs that ended, by reason (succeeded, failed).", ("reason",),
               _RETRAIN),
    MetricSpec("marquee_retrain_runs_in_flight", "gauge",
               "Retraining runs in flight (0 or 1).", (), _RETRAIN),
    MetricSpec("marquee_retrain_run_duration_seconds", "histogram",
               "Wall time of retraining runs started by the trigger.", (), _RETRAIN,
               RUN_BUCKETS),
    MetricSpec("marquee_retrain_last_started_timestamp_seconds", "gauge",
               "Unix time at which the trigger last started a retraining run.", (), _RETRAIN),
)

_BY_NAME = {m.name: m for m in CATALOGUE}


def spec(name: str) -> MetricSpec:
    """The spec of ``name``; KeyError names the metric when it is not in the catalogue."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} is not in monitoring.metrics.CATALOGUE") from None


def metric_names(owner: str | None = None) -> set[str]:
    """Every series name Prometheus stores for the catalogue (``_bucket`` etc. included)."""
    return {s for m in CATALOGUE if owner is None or m.owner == owner for s in m.series_names}


def build(names: Iterable[str], registry: CollectorRegistry) -> dict[str, Gauge | Counter | Histogram]:
    """Prometheus objects for ``names`` on ``registry``, created from their specs."""
    out: dict[str, Gauge | Counter | Histogram] = {}
    for name in names:
        m = spec(name)
        if m.kind == "gauge":
            out[name] = Gauge(m.name, m.help, m.labels, registry=registry)
        elif m.kind == "counter":
            # prometheus_client appends _total itself
            out[name] = Counter(m.name.removesuffix("_total"), m.help, m.labels,
                                registry=registry)
        else:
            out[name] = Histogram(m.name, m.help, m.labels, registry=registry,
                                  buckets=m.buckets or Histogram.DEFAULT_BUCKETS)
    return out


def push_group(registry: CollectorRegistry, gateway_url: str, job: str,
               namespace: str | None) -> None:
    """Replace (PUT) the Pushgateway group ``job/<job>[/namespace/<namespace>]`` with
    ``registry``'s series. The grouping key's labels are added to every series; scraped
    with ``honor_labels`` they win over the Pushgateway's own ``job`` and ``namespace``, so
    the alerts built on them carry the namespace of the job that pushed (what a namespaced
    AlertmanagerConfig matches), not the Pushgateway's."""
    push_to_gateway(gateway_url, job=job, registry=registry,
                    grouping_key={"namespace": namespace} if namespace else None)


def pushgateway_url(flag: str | None, configured: str | None) -> str | None:
    """Where a check pushes its gauges: ``--pushgateway`` when given ('' for nowhere), else
    the ``MARQUEE_PUSHGATEWAY_URL`` setting (``configured``; the chart's
    ``settings.pushgatewayUrl``, which the drift and skew CronJobs run with)."""
    return (configured if flag is None else flag) or None
