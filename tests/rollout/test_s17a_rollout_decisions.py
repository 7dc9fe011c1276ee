"""Rollout decisions that earlier tests left unpinned (found by hand mutation, session 17).

Each test goes through the public entry points ``evaluate`` / ``next_status`` /
``desired_routing`` and asserts a decision that a broken rule would change.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from scipy import stats as sps

from serving.router.schema import ShadowWindow
from serving.rollout.analysis import SRM_MIN_EXPECTED, Analysis, evaluate
from serving.rollout.machine import desired_routing, next_status
from serving.rollout.spec import RolloutSpec
from serving.rollout.status import Outcome, Phase, RolloutStatus
from tests.rollout.test_rollout_analysis import status, window

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
T0 = NOW


def spec(strategy: str, metrics: list[dict[str, Any]] | None = None, **kw: Any) -> RolloutSpec:
    body: dict[str, Any] = {
        "candidate": {"version": "2"}, "baseline": {"version": "1"}, "strategy": strategy,
        "intervalSeconds": 1,
        "analysis": {"minRequests": 50, "metrics": metrics or [{"name": "errorRate", "max": 0.05}]}}
    body.update(kw)
    return RolloutSpec.model_validate(body)


def an(outcome: Outcome = Outcome.SUCCESSFUL, t: float = 0.0, **kw: Any) -> Analysis:
    return Analysis(time=T0 + timedelta(seconds=t), outcome=outcome, reason=outcome.value, **kw)


def start(sp: RolloutSpec) -> RolloutStatus:
    return next_status(sp, RolloutStatus(), Analysis(
        time=T0, outcome=Outcome.SUCCESSFUL,
        statistics={"baselineVersion": "1", "candidateVersion": "2"}))


# --- A/B: the sample-ratio check ---------------------------------------------------------------
def test_an_ab_split_of_90_10_that_matches_its_weights_is_not_a_mismatch() -> None:
    """Observed users are compared with the weights in the same (baseline, candidate) order."""
    a = evaluate(spec("ab"), status(cand=10), window(), NOW)
    assert a.statistics["srm"]["mismatch"] is False
    assert list(a.statistics["srm"]["observed"]) == [900, 100]
    assert not a.invalid and a.outcome != Outcome.FAILED


def test_srm_waits_for_enough_expected_users_on_the_smaller_side() -> None:
    # 90/10 with 150 users: 15 expected on the candidate, under SRM_MIN_EXPECTED: no verdict,
    # even though the candidate has none (the chi-square approximation is not trusted yet).
    assert SRM_MIN_EXPECTED == 20.0
    a = evaluate(spec("ab"), status(cand=10),
                 window(base={"users": 150}, cand={"users": 0, "requests": 0}), NOW)
    assert "srm" not in a.statistics and not a.invalid
    # 200 users: exactly 20 expected on the candidate, so the check runs and 0 users fail it.
    a = evaluate(spec("ab"), status(cand=10),
                 window(base={"users": 200}, cand={"users": 0, "requests": 0}), NOW)
    assert "srm" in a.statistics
    assert a.invalid and a.outcome == Outcome.FAILED and "sample ratio mismatch" in a.reason


def test_the_ab_test_waits_until_each_variant_has_its_minimum_exposures() -> None:
    # The baseline has plenty, the candidate 100 < minSamplesPerVariant=200: no test yet,
    # although 2% vs 30% click-through would be conclusive at once.
    a = evaluate(spec("ab"), status(cand=10), window(cand={"clicked_exposures": 2}), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and not a.conclusive
    assert "need 200 each" in a.reason and "msprt" not in a.statistics


# --- canary guardrails -------------------------------------------------------------------------
def test_latency_ratio_is_skipped_while_the_baseline_has_too_little_traffic() -> None:
    sp = spec("canary", metrics=[{"name": "latencyP99Ratio", "max": 2.0}])
    # Baseline 10 requests (< minRequests 50) at 5 ms: the 4.4x ratio is not trusted.
    a = evaluate(sp, status(cand=90), window(base={"requests": 10, "latency_p99_ms": 5.0}), NOW)
    assert a.outcome == Outcome.SUCCESSFUL, a.reason
    assert a.statistics["checks"]["latencyP99RatioSkipped"] == "baseline has too little traffic"


def test_an_unmeasurable_latency_never_passes() -> None:
    """Docstring of _Checks.bound: a value that could not be measured never passes."""
    sp = spec("canary", metrics=[{"name": "latencyP99Ms", "max": 250}])
    a = evaluate(sp, status(cand=10), window(cand={"latency_p99_ms": None}), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE
    assert "latencyP99Ms not measurable" in a.reason


def test_click_through_interval_is_the_95_percent_delta_method_interval() -> None:
    sp = spec("canary", metrics=[{"name": "clickThroughRatio", "min": 0.9}])
    a = evaluate(sp, status(cand=10), window(), NOW)
    pc, pb = 30.5 / 101, 270.5 / 901
    se = math.sqrt((1 - pc) / (pc * 100) + (1 - pb) / (pb * 900))
    z = sps.norm.ppf(0.975)
    low, high = a.statistics["checks"]["clickThroughRatioInterval"]
    assert math.isclose(low, pc / pb * math.exp(-z * se), rel_tol=1e-3)
    assert math.isclose(high, pc / pb * math.exp(z * se), rel_tol=1e-3)
    # 20% vs 30% on 100 candidate exposures: point 0.68 < 0.9 but the 95% interval reaches
    # above 0.9 -> wait, do not fail.
    a = evaluate(sp, status(cand=10), window(cand={"clicked_exposures": 20}), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and "not significant" in a.reason


# --- shadow ------------------------------------------------------------------------------------
def test_shadow_latency_ratio_is_candidate_over_baseline() -> None:
    sp = spec("shadow", metrics=[{"name": "latencyP99Ratio", "max": 2.0}],
              shadow={"minRequests": 100})
    st = status(cand=0, phase=Phase.SHADOWING, step=0)
    slow = ShadowWindow(mirrored=200, latency_p99_ms=60.0, baseline_latency_p99_ms=20.0)
    a = evaluate(sp, st, window(shadow=slow), NOW)
    assert a.outcome == Outcome.FAILED and "latencyP99Ratio 3 > max 2" in a.reason
    fast = ShadowWindow(mirrored=200, latency_p99_ms=10.0, baseline_latency_p99_ms=30.0)
    a = evaluate(sp, st, window(shadow=fast), NOW)
    assert a.outcome == Outcome.SUCCESSFUL, a.reason


# --- state machine -----------------------------------------------------------------------------
def test_max_duration_counts_from_the_rollout_start_not_the_current_step() -> None:
    sp = spec("canary", steps=[{"weight": 10}, {"weight": 50}], limits={"maxDurationSeconds": 60})
    s = start(sp)
    s = next_status(sp, s, an(Outcome.SUCCESSFUL, 50))  # step 2 begins at t=50
    assert s.phase == Phase.PROGRESSING and s.step == 2
    late = next_status(sp, s, an(Outcome.INCONCLUSIVE, 61))
    assert late.phase == Phase.FAILED and "maxDurationSeconds" in late.message


def test_an_ab_rollout_starts_at_its_declared_candidate_weight() -> None:
    sp = spec("ab", ab={"candidateWeight": 20})
    s = start(sp)
    assert (s.weights.baseline, s.weights.candidate) == (80, 20)
    r = desired_routing(sp, s, "r")
    assert r is not None and (r.strategy, r.candidate_weight) == ("ab", 20)


def test_shadow_routing_mirrors_the_declared_sample_rate() -> None:
    sp = spec("shadow", shadow={"sampleRate": 0.25})
    s = start(sp)
    assert s.phase == Phase.SHADOWING
    r = desired_routing(sp, s, "r")
    assert r is not None and r.strategy == "shadow" and r.shadow_sample_rate == 0.25
