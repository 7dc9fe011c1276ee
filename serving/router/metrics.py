"""Prometheus metrics of the router (``marquee_router_*``), exposed on ``/metrics``.

Module-level objects; labels only from the contract's small sets (``variant``,
``model_version``, ``code``, ``reason``, ``strategy``). ``variant`` is ``baseline``,
``candidate`` or ``interleaved`` (``none`` for a bad request refused before assignment);
``model_version`` is the routing's version (the registry's), on answers and errors alike. The rollout controller's Prometheus source queries these.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "REQUESTS", "ERRORS", "LATENCY", "UPSTREAM_LATENCY", "EXPOSURES", "CLICKED_EXPOSURES",
    "CLICK_THROUGH", "FEEDBACK", "VARIANT_INFO", "ASSIGNED_USERS", "AB_USER_SUMS",
    "SHADOW_REQUESTS",
    "SHADOW_DROPPED", "SHADOW_LATENCY", "SHADOW_TOPK", "SHADOW_RBO", "SHADOW_TAU",
    "SHADOW_COVERAGE", "SHADOW_GINI", "INTERLEAVE_WINS", "INTERLEAVE_REVERSALS",
    "CANDIDATE_WEIGHT", "LOG_DROPPED",
]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                    0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
_RATIO_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_TAU_BUCKETS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 0.9, 1.0)

REQUESTS = Counter("marquee_router_requests_total",
                   "Recommendation requests answered, by variant, model version (the "
                   "routing's) and status code; variant and model_version 'none' for a bad "
                   "request refused before any variant was chosen.",
                   ["variant", "model_version", "code"])
ERRORS = Counter("marquee_router_errors_total",
                 "Model-server calls that failed (reason: status_5xx, status_4xx, timeout, "
                 "connect, bad_response), by the variant that made them.",
                 ["variant", "model_version", "reason"])
LATENCY = Histogram("marquee_router_request_duration_seconds",
                    "Time from request to response at the router, by variant.", ["variant"],
                    buckets=_LATENCY_BUCKETS)
UPSTREAM_LATENCY = Histogram("marquee_router_upstream_duration_seconds",
                             "Time of successful model-server calls, by variant.", ["variant"],
                             buckets=_LATENCY_BUCKETS)
EXPOSURES = Counter("marquee_router_exposures_total",
                    "Recommendation lists served (one per answered request).", ["variant"])
CLICKED_EXPOSURES = Counter("marquee_router_clicked_exposures_total",
                            "Served lists that received at least one click.", ["variant"])
CLICK_THROUGH = Gauge("marquee_router_click_through_ratio",
                      "Clicked lists / served lists since the router started.", ["variant"])
FEEDBACK = Counter("marquee_router_feedback_total",
                   "Feedback events received, by variant and event (impression, click, watch).",
                   ["variant", "event"])
VARIANT_INFO = Gauge("marquee_router_variant_info",
                     "1 for each variant the router serves, labelled with the model version "
                     "behind it.", ["variant", "model_version"])
ASSIGNED_USERS = Counter("marquee_router_assigned_users_total",
                         "Users assigned to a variant for the first time in an experiment "
                         "(for the sample-ratio check).", ["variant"])
# Sums over users u of n_u², c_u² and n_u·c_u (n_u lists shown to u, c_u of them clicked, in the
# current experiment): the A/B test's variance with users as the unit.
AB_USER_SUMS = (
    Counter("marquee_router_ab_user_lists_squared_total",
            "Sum over users of (lists shown to the user)², for the A/B variance.", ["variant"]),
    Counter("marquee_router_ab_user_clicked_squared_total",
            "Sum over users of (clicked lists of the user)², for the A/B variance.", ["variant"]),
    Counter("marquee_router_ab_user_lists_clicked_total",
            "Sum over users of lists shown × clicked lists, for the A/B variance.", ["variant"]),
)
SHADOW_REQUESTS = Counter("marquee_router_shadow_requests_total",
                          "Mirrored candidate calls by outcome (code: 200, 4xx, 5xx, timeout, "
                          "connect, bad_response, error).", ["code"])
SHADOW_DROPPED = Counter("marquee_router_shadow_dropped_total",
                         "Mirrors skipped because too many were in flight.")
SHADOW_LATENCY = Histogram("marquee_router_shadow_duration_seconds",
                           "Latency of both sides of mirrored requests.", ["variant"],
                           buckets=_LATENCY_BUCKETS)
SHADOW_TOPK = Histogram("marquee_router_shadow_topk_overlap_ratio",
                        "Top-k overlap of candidate and baseline lists per mirrored request.",
                        buckets=_RATIO_BUCKETS)
SHADOW_RBO = Histogram("marquee_router_shadow_rank_biased_overlap_ratio",
                       "Rank-biased overlap (p=0.9) per mirrored request.", buckets=_RATIO_BUCKETS)
SHADOW_TAU = Histogram("marquee_router_shadow_kendall_tau_ratio",
                       "Kendall tau on the shared items per mirrored request.",
                       buckets=_TAU_BUCKETS)
SHADOW_COVERAGE = Gauge("marquee_router_shadow_coverage_ratio",
                        "Distinct items / slots over recent mirrored lists, per side.", ["variant"])
SHADOW_GINI = Gauge("marquee_router_shadow_exposure_gini_ratio",
                    "Gini coefficient of item exposure over recent mirrored lists, per side.",
                    ["variant"])
INTERLEAVE_WINS = Counter("marquee_router_interleave_wins_total",
                          "Interleaved lists won by a team (variant baseline, candidate or tie).",
                          ["variant"])
INTERLEAVE_REVERSALS = Counter("marquee_router_interleave_win_reversals_total",
                               "Wins taken back because a later click changed the winner.",
                               ["variant"])
CANDIDATE_WEIGHT = Gauge("marquee_router_candidate_weight_percent",
                         "Percent of users routed to the candidate, by strategy.", ["strategy"])
LOG_DROPPED = Counter("marquee_router_log_dropped_total",
                      "Exposure/feedback log rows dropped (queue full or write failed).",
                      ["reason"])
