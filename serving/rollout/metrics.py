"""Prometheus metrics of the rollout controller (``marquee_rollout_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["TICKS", "DECISIONS", "ACTIVE", "CANDIDATE_WEIGHT"]

TICKS = Counter("marquee_rollout_ticks_total",
                "Controller ticks by result (reason: ok, error).", ["reason"])
DECISIONS = Counter("marquee_rollout_decisions_total",
                    "Analysis decisions by strategy and outcome (reason: Successful, Failed, "
                    "Inconclusive).", ["strategy", "reason"])
ACTIVE = Gauge("marquee_rollout_active_rollouts", "Rollouts not yet finished, by strategy.",
               ["strategy"])
CANDIDATE_WEIGHT = Gauge("marquee_rollout_candidate_weight_percent",
                         "Candidate weight the controller last applied, by strategy.",
                         ["strategy"])
