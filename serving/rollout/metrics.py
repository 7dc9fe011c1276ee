"""Prometheus metrics of the rollout controller (``marquee_rollout_*``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from serving.rollout.status import Phase, RolloutStatus

if TYPE_CHECKING:
    from serving.rollout.spec import RolloutSpec

__all__ = ["TICKS", "DECISIONS", "LEADER", "ACTIVE", "CANDIDATE_WEIGHT", "PHASE", "FAILED_CHECKS",
           "FAILURE_LIMIT", "STEP", "CANDIDATE_WEIGHT_RATIO", "export_status", "forget_rollouts"]

TICKS = Counter("marquee_rollout_ticks_total",
                "Controller ticks by result (reason: ok, error).", ["reason"])
DECISIONS = Counter("marquee_rollout_decisions_total",
                    "Analysis decisions by strategy and outcome (reason: Successful, Failed, "
                    "Inconclusive).", ["strategy", "reason"])
LEADER = Gauge("marquee_rollout_leader", "1 when this controller holds the leader Lease and "
               "acts on rollouts (or runs without leader election), 0 while it stands by.")
ACTIVE = Gauge("marquee_rollout_active_rollouts", "Rollouts not yet finished, by strategy.",
               ["strategy"])
CANDIDATE_WEIGHT = Gauge("marquee_rollout_candidate_weight_percent",
                         "Candidate weight the controller last applied, by strategy.",
                         ["strategy"])

# Per rollout, labelled by the candidate's model version and the strategy: what the
# RolloutFailing alert and the dashboard's rollout panels read (monitoring/metrics.py).
_ROLLOUT = ["model_version", "strategy"]
PHASE = Gauge("marquee_rollout_phase", "1 for the rollout's current phase (stage label), 0 for "
              "the others.", [*_ROLLOUT, "stage"])
FAILED_CHECKS = Gauge("marquee_rollout_failed_checks",
                      "Failed analysis checks of the rollout so far (absent once it ended).",
                      _ROLLOUT)
FAILURE_LIMIT = Gauge("marquee_rollout_failure_limit",
                      "Failed checks at which the controller rolls the candidate back.", _ROLLOUT)
STEP = Gauge("marquee_rollout_step", "Index of the rollout's current step.", _ROLLOUT)
CANDIDATE_WEIGHT_RATIO = Gauge("marquee_rollout_candidate_weight_ratio",
                               "Share (0-1) of traffic routed to the candidate.", _ROLLOUT)


def export_status(spec: RolloutSpec, status: RolloutStatus) -> None:
    """Set the per-rollout gauges from a status the controller just saved."""
    labels = (status.candidate_version or "pending", spec.strategy)
    for phase in Phase:
        PHASE.labels(*labels, phase.value).set(1.0 if phase == status.phase else 0.0)
    STEP.labels(*labels).set(status.step)
    FAILURE_LIMIT.labels(*labels).set(spec.analysis.failure_limit)
    total = status.weights.baseline + status.weights.candidate
    CANDIDATE_WEIGHT_RATIO.labels(*labels).set(status.weights.candidate / total if total else 0.0)
    if status.phase.terminal:
        # a finished rollout has nothing left to fail: RolloutFailing resolves
        try:
            FAILED_CHECKS.remove(*labels)
        except KeyError:
            pass
    else:
        FAILED_CHECKS.labels(*labels).set(status.failed_checks)


def forget_rollouts() -> None:
    """Drop every per-rollout and per-strategy gauge: a controller that stands by must not
    keep exporting what it last saw as leader next to the leader's own series."""
    for gauge in (ACTIVE, CANDIDATE_WEIGHT, PHASE, FAILED_CHECKS, FAILURE_LIMIT, STEP,
                  CANDIDATE_WEIGHT_RATIO):
        gauge.clear()
