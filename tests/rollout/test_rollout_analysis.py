"""Window statistics → one analysis outcome, per stage."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from serving.router.schema import InterleaveWindow, ShadowWindow, VariantWindow, WindowStats
from serving.rollout.analysis import evaluate
from serving.rollout.spec import RolloutSpec
from serving.rollout.status import Outcome, Phase, RolloutStatus, Weights

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)

METRICS = [{"name": "errorRate", "max": 0.05}, {"name": "latencyP99Ms", "max": 250},
           {"name": "clickThroughRatio", "min": 0.9}, {"name": "latencyP99Ratio", "max": 2.0}]


def spec(strategy: str, **kw: Any) -> RolloutSpec:
    body = {"candidate": {"version": "2"}, "strategy": strategy,
            "analysis": {"minRequests": 50, "metrics": METRICS}}
    body.update(kw)
    return RolloutSpec.model_validate(body)


def status(phase: Phase = Phase.PROGRESSING, cand: int = 10, step: int = 1) -> RolloutStatus:
    return RolloutStatus(phase=phase, step=step,
                         weights=Weights(baseline=100 - cand, candidate=cand))


def window(base: dict[str, Any] | None = None, cand: dict[str, Any] | None = None,
           **kw: Any) -> WindowStats:
    b = {"requests": 900, "errors": 1, "latency_p99_ms": 20.0, "exposures": 900,
         "clicked_exposures": 270, "users": 900}
    c = {"requests": 100, "errors": 0, "latency_p99_ms": 22.0, "exposures": 100,
         "clicked_exposures": 30, "users": 100}
    b.update(base or {})
    c.update(cand or {})
    return WindowStats(since=0, until=1, variants={"baseline": VariantWindow(**b),
                                                   "candidate": VariantWindow(**c)}, **kw)


def test_canary_waits_for_enough_candidate_requests() -> None:
    a = evaluate(spec("canary"), status(), window(cand={"requests": 12}), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and "12/50" in a.reason


def test_canary_passes_a_healthy_candidate() -> None:
    a = evaluate(spec("canary"), status(), window(), NOW)
    assert a.outcome == Outcome.SUCCESSFUL, a.reason
    assert a.statistics["checks"]["errorRate"] == 0.0
    assert a.statistics["candidate"]["requests"] == 100


def test_canary_fails_on_errors_and_latency_naming_the_metric() -> None:
    a = evaluate(spec("canary"), status(), window(cand={"errors": 20}), NOW)
    assert a.outcome == Outcome.FAILED and "errorRate 0.2 > max 0.05" in a.reason
    a = evaluate(spec("canary"), status(), window(cand={"latency_p99_ms": 60.0}), NOW)
    assert a.outcome == Outcome.FAILED and "latencyP99Ratio 3 > max 2" in a.reason
    a = evaluate(spec("canary"), status(), window(cand={"latency_p99_ms": 300.0}), NOW)
    assert "latencyP99Ms 300 > max 250" in a.reason


def test_click_through_ratio_fails_only_when_clearly_below() -> None:
    # 2% vs 30%: the whole interval is below 0.9.
    a = evaluate(spec("canary"), status(), window(cand={"clicked_exposures": 2}), NOW)
    assert a.outcome == Outcome.FAILED and "clickThroughRatio" in a.reason
    # 25% vs 30% on 100 exposures: below 0.9 as a point, not significantly: wait.
    a = evaluate(spec("canary"), status(), window(cand={"clicked_exposures": 25}), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and "not significant" in a.reason
    # A canary at 100%: nothing to compare with, the ratio is skipped.
    a = evaluate(spec("canary"), status(cand=100),
                 window(base={"requests": 0, "exposures": 0, "clicked_exposures": 0}), NOW)
    assert a.outcome == Outcome.SUCCESSFUL
    assert a.statistics["checks"]["clickThroughRatioSkipped"]


def test_ab_sample_ratio_mismatch_invalidates_the_experiment() -> None:
    a = evaluate(spec("ab"), status(cand=50),
                 window(base={"users": 600}, cand={"users": 400, "requests": 400}), NOW)
    assert a.outcome == Outcome.FAILED and a.invalid
    assert "sample ratio mismatch" in a.reason and a.statistics["srm"]["p_value"] < 1e-6


def test_ab_decides_with_msprt_in_both_directions() -> None:
    base = {"users": 2000, "requests": 2000, "exposures": 2000, "clicked_exposures": 400}
    better = {"users": 2000, "requests": 2000, "exposures": 2000, "clicked_exposures": 520}
    worse = {"users": 2000, "requests": 2000, "exposures": 2000, "clicked_exposures": 280}
    same = {"users": 2000, "requests": 2000, "exposures": 2000, "clicked_exposures": 410}
    st = status(cand=50)
    a = evaluate(spec("ab"), st, window(base=base, cand=better), NOW)
    assert (a.outcome, a.conclusive) == (Outcome.SUCCESSFUL, True), a.reason
    a = evaluate(spec("ab"), st, window(base=base, cand=worse), NOW)
    assert (a.outcome, a.conclusive) == (Outcome.FAILED, True)
    a = evaluate(spec("ab"), st, window(base=base, cand=same), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and a.statistics["msprt"]["p_value"] > 0.05
    a = evaluate(spec("ab"), st, window(base={**base, "exposures": 150},
                                        cand={**same, "exposures": 150}), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and "need 200" in a.reason


def test_ab_takes_users_as_the_unit_when_the_router_reports_per_user_sums() -> None:
    """The counts that decide above (2,000 lists a side, CTR 0.20 vs 0.26) come here from 200
    users a side who saw 10 lists each, a few of them clicking on most: with users as the
    unit that is no evidence yet; without the per-user sums the test counts lists."""
    base = {"users": 200, "requests": 2000, "exposures": 2000, "clicked_exposures": 400,
            "exposures_sq": 200 * 10**2, "clicked_sq": 50 * 8**2, "exposures_clicked": 50 * 80}
    better = {"users": 200, "requests": 2000, "exposures": 2000, "clicked_exposures": 520,
              "exposures_sq": 200 * 10**2, "clicked_sq": 65 * 8**2, "exposures_clicked": 65 * 80}
    a = evaluate(spec("ab"), status(cand=50), window(base=base, cand=better), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and a.statistics["msprt"]["unit"] == "user"
    lists = {k: v for k, v in better.items() if k not in ("exposures_sq", "clicked_sq",
                                                          "exposures_clicked")}
    a = evaluate(spec("ab"), status(cand=50), window(base=base, cand=lists), NOW)
    assert a.statistics["msprt"]["unit"] == "list"


def test_ab_guardrails_count_as_plain_failures() -> None:
    a = evaluate(spec("ab"), status(cand=50),
                 window(base={"users": 500}, cand={"users": 500, "requests": 500, "errors": 100}),
                 NOW)
    assert a.outcome == Outcome.FAILED and not a.conclusive and not a.invalid


def test_interleave_decides_with_the_sign_test() -> None:
    st = status(cand=50)
    a = evaluate(spec("interleave"), st,
                 window(interleave=InterleaveWindow(baseline_wins=30, candidate_wins=20)), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and "50/100" in a.reason
    a = evaluate(spec("interleave"), st,
                 window(interleave=InterleaveWindow(baseline_wins=40, candidate_wins=110)), NOW)
    assert (a.outcome, a.conclusive) == (Outcome.SUCCESSFUL, True)
    assert a.statistics["signTest"]["sequential"] is True
    a = evaluate(spec("interleave"), st,
                 window(interleave=InterleaveWindow(baseline_wins=110, candidate_wins=40)), NOW)
    assert (a.outcome, a.conclusive) == (Outcome.FAILED, True)
    a = evaluate(spec("interleave"), st,
                 window(interleave=InterleaveWindow(baseline_wins=70, candidate_wins=80)), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE


def test_shadow_checks_errors_and_agreement() -> None:
    sp = spec("shadow", shadow={"minRequests": 200},
              analysis={"minRequests": 50, "metrics": METRICS + [
                  {"name": "rankBiasedOverlap", "min": 0.2}]})
    st = status(Phase.SHADOWING, cand=0, step=0)
    a = evaluate(sp, st, window(shadow=ShadowWindow(mirrored=20)), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE
    dead = ShadowWindow(mirrored=100, errors=100)
    a = evaluate(sp, st, window(shadow=dead), NOW)
    assert a.outcome == Outcome.FAILED and "errorRate 1 > max 0.05" in a.reason
    fine = dict(latency_p99_ms=20.0, baseline_latency_p99_ms=18.0, rbo_mean=0.6)
    a = evaluate(sp, st, window(shadow=ShadowWindow(mirrored=100, **fine)), NOW)
    assert a.outcome == Outcome.INCONCLUSIVE and "100/200" in a.reason
    a = evaluate(sp, st, window(shadow=ShadowWindow(mirrored=250, **fine)), NOW)
    assert a.outcome == Outcome.SUCCESSFUL
    a = evaluate(sp, st, window(shadow=ShadowWindow(mirrored=250, **{**fine, "rbo_mean": 0.05})),
                 NOW)
    assert a.outcome == Outcome.FAILED and "rankBiasedOverlap" in a.reason
