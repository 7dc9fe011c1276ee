"""Turn what the router saw in a window into one analysis outcome (pure functions).

``evaluate(spec, status, window, now)`` returns an :class:`Analysis`: Successful, Failed or
Inconclusive, the reason in words, and the statistics it was based on. Which checks run
depends on the stage the rollout is in:

* shadow: the candidate's mirrored requests — error rate, latency, agreement with the
  baseline (top-k overlap, RBO, Kendall tau); Successful once ``shadow.minRequests`` are clean;
* canary: thresholds on the candidate's error rate and latency, and its click-through ratio
  against the baseline (failed only when the confidence interval is below the bound);
* A/B: the sample-ratio check first (a mismatch makes the experiment invalid), guardrails,
  then the mSPRT on click-through; a decision is *conclusive* in either direction;
* interleave: guardrails, then the sequential sign test on team-draft wins.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.router.schema import VariantWindow, WindowStats
from serving.rollout.spec import MetricCheck, RolloutSpec
from serving.rollout.status import Outcome, Phase, RolloutStatus
from serving.stats import (
    clustered_rate_variance,
    msprt_two_proportions,
    sequential_sign_test,
    sign_test,
    srm_check,
)

__all__ = ["Analysis", "Command", "evaluate", "active_strategy", "SRM_MIN_EXPECTED"]

Command = Literal["promote", "abort"]

#: The chi-square approximation needs a few expected units per variant before SRM is checked.
SRM_MIN_EXPECTED = 20.0

_SHADOW_ONLY = {"topKOverlap", "rankBiasedOverlap", "kendallTau"}


class Analysis(BaseModel):
    """The input of one tick of :func:`serving.rollout.machine.next_status`."""

    time: datetime
    outcome: Outcome = Outcome.INCONCLUSIVE
    reason: str = ""
    statistics: dict[str, Any] = Field(default_factory=dict)
    conclusive: bool = False   # a test decided: Successful = candidate wins, Failed = it loses
    invalid: bool = False      # the experiment itself is broken (sample-ratio mismatch)
    command: Command | None = None


def active_strategy(spec: RolloutSpec, status: RolloutStatus) -> str:
    """The strategy of the current stage (a clean shadow hands over to ``promoteTo``)."""
    if spec.strategy == "shadow" and status.phase not in (Phase.PENDING, Phase.SHADOWING):
        return spec.shadow.promote_to
    return spec.strategy


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}"


def _bound_check(check: MetricCheck, value: float) -> str | None:
    """None when within bounds, else the violation in words."""
    if check.min is not None and value < check.min:
        return f"{check.name} {_fmt(value)} < min {_fmt(check.min)}"
    if check.max is not None and value > check.max:
        return f"{check.name} {_fmt(value)} > max {_fmt(check.max)}"
    return None


def _user_variance(v: VariantWindow) -> float | None:
    """Variance of a variant's click-through with users as the unit, when the router reported
    its per-user sums (None: fall back to lists as independent trials)."""
    if v.exposures <= 0 or v.exposures_sq <= 0:
        return None
    return clustered_rate_variance(v.clicked_exposures, v.exposures, v.exposures_sq,
                                   v.clicked_sq, v.exposures_clicked, max(v.users, 1))


def _ctr_ratio(cand: VariantWindow, base: VariantWindow) -> tuple[float, float, float]:
    """Candidate/baseline click-through ratio with a 95% interval (delta method on the log,
    users as the unit when the per-user sums are known)."""
    pc = (cand.clicked_exposures + 0.5) / (cand.exposures + 1.0)
    pb = (base.clicked_exposures + 0.5) / (base.exposures + 1.0)
    ratio = pc / pb
    var_c = _user_variance(cand) or pc * (1 - pc) / cand.exposures
    var_b = _user_variance(base) or pb * (1 - pb) / base.exposures
    se = math.sqrt(var_c / (pc * pc) + var_b / (pb * pb))
    return ratio, ratio * math.exp(-1.96 * se), ratio * math.exp(1.96 * se)


class _Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.waiting: list[str] = []
        self.values: dict[str, Any] = {}

    def bound(self, check: MetricCheck, value: float | None, missing: str | None = None,
              unmeasured: str | None = None) -> None:
        """Check ``value`` against the bounds. ``None``: with ``missing``, the check does not
        apply here (skipped, said in the statistics); with ``unmeasured``, the candidate gave
        nothing to measure (every request failed …), so the check waits: a value that could
        not be measured never passes."""
        self.values[check.name] = value
        if value is None:
            if unmeasured:
                self.waiting.append(f"{check.name} not measurable: {unmeasured}")
            elif missing:
                self.values[f"{check.name}Skipped"] = missing
            return
        problem = _bound_check(check, value)
        if problem:
            self.failed.append(problem)

    def result(self, time: datetime, ok_reason: str, stats: dict[str, Any],
               done: bool = True) -> Analysis:
        stats = {"checks": self.values, **stats}
        if self.failed:
            return Analysis(time=time, outcome=Outcome.FAILED, reason="; ".join(self.failed),
                            statistics=stats)
        if self.waiting or not done:
            reason = "; ".join(self.waiting) if self.waiting else ok_reason
            return Analysis(time=time, outcome=Outcome.INCONCLUSIVE, reason=reason,
                            statistics=stats)
        return Analysis(time=time, outcome=Outcome.SUCCESSFUL, reason=ok_reason, statistics=stats)


def _variant_stats(v: VariantWindow) -> dict[str, Any]:
    return {"requests": v.requests, "errors": v.errors, "errorRate": v.error_rate,
            "latencyP99Ms": v.latency_p99_ms, "exposures": v.exposures,
            "clickedExposures": v.clicked_exposures, "clickThroughRate": v.click_through_rate,
            "users": v.users}


def _guardrails(spec: RolloutSpec, checks: _Checks, cand: VariantWindow, base: VariantWindow,
                with_ctr: bool) -> None:
    min_n = spec.analysis.min_requests
    for check in spec.analysis.metrics:
        if check.name in _SHADOW_ONLY:
            continue
        if check.name == "errorRate":
            checks.bound(check, cand.error_rate, unmeasured="no candidate requests")
        elif check.name == "latencyP99Ms":
            checks.bound(check, cand.latency_p99_ms,
                         unmeasured="no successful candidate requests")
        elif check.name == "latencyP99Ratio":
            if cand.latency_p99_ms is None:
                checks.bound(check, None, unmeasured="no successful candidate requests")
            elif base.requests >= min_n and base.latency_p99_ms:
                checks.bound(check, cand.latency_p99_ms / base.latency_p99_ms)
            else:
                checks.bound(check, None, "baseline has too little traffic")
        elif check.name == "clickThroughRatio" and with_ctr:
            if base.exposures < min_n:
                checks.bound(check, None, "baseline has too little traffic")
                continue
            if cand.exposures < min_n:
                checks.values[check.name] = None
                checks.waiting.append(f"{cand.exposures}/{min_n} candidate exposures for "
                                      "clickThroughRatio")
                continue
            ratio, low, high = _ctr_ratio(cand, base)
            checks.values[check.name] = ratio
            checks.values[f"{check.name}Interval"] = [low, high]
            # Fail only when the whole interval is out of bounds; wait while it straddles.
            if (check.min is not None and high < check.min) or (
                    check.max is not None and low > check.max):
                checks.failed.append(f"{_bound_check(check, ratio)} "
                                     f"(95% interval {_fmt(low)}..{_fmt(high)})")
            elif _bound_check(check, ratio):
                checks.waiting.append(f"{_bound_check(check, ratio)} but not significant yet")


def _shadow(spec: RolloutSpec, window: WindowStats, now: datetime) -> Analysis:
    sh = window.shadow
    stats: dict[str, Any] = {"shadow": sh.model_dump()}
    checks = _Checks()
    if sh.mirrored < spec.analysis.min_requests:
        return Analysis(time=now, outcome=Outcome.INCONCLUSIVE, statistics=stats,
                        reason=f"{sh.mirrored}/{spec.analysis.min_requests} mirrored requests")
    for check in spec.analysis.metrics:
        if check.name == "errorRate":
            checks.bound(check, sh.error_rate, unmeasured="no mirrored requests")
        elif check.name == "latencyP99Ms":
            checks.bound(check, sh.latency_p99_ms, unmeasured="no successful mirrors")
        elif check.name == "latencyP99Ratio":
            ratio = (sh.latency_p99_ms / sh.baseline_latency_p99_ms
                     if sh.latency_p99_ms and sh.baseline_latency_p99_ms else None)
            checks.bound(check, ratio, unmeasured="no latency on one side")
        elif check.name == "topKOverlap":
            checks.bound(check, sh.topk_overlap_mean, unmeasured="no successful mirrors")
        elif check.name == "rankBiasedOverlap":
            checks.bound(check, sh.rbo_mean, unmeasured="no successful mirrors")
        elif check.name == "kendallTau":
            checks.bound(check, sh.kendall_tau_mean,
                         unmeasured="no mirrored list shares two items with the baseline's")
    done = sh.mirrored >= spec.shadow.min_requests
    ok = (f"shadow clean over {sh.mirrored} mirrored requests" if done else
          f"shadow clean so far: {sh.mirrored}/{spec.shadow.min_requests} mirrored requests")
    return checks.result(now, ok, stats, done=done)


def _canary(spec: RolloutSpec, window: WindowStats, now: datetime) -> Analysis:
    cand, base = window.variant("candidate"), window.variant("baseline")
    stats = {"baseline": _variant_stats(base), "candidate": _variant_stats(cand)}
    if cand.requests < spec.analysis.min_requests:
        return Analysis(time=now, outcome=Outcome.INCONCLUSIVE, statistics=stats,
                        reason=f"{cand.requests}/{spec.analysis.min_requests} candidate requests")
    checks = _Checks()
    _guardrails(spec, checks, cand, base, with_ctr=True)
    return checks.result(now, "all checks passed", stats)


def _ab(spec: RolloutSpec, status: RolloutStatus, window: WindowStats, now: datetime) -> Analysis:
    cand, base = window.variant("candidate"), window.variant("baseline")
    stats: dict[str, Any] = {"baseline": _variant_stats(base), "candidate": _variant_stats(cand)}
    weights = [status.weights.baseline, status.weights.candidate]
    total_users = base.users + cand.users
    if total_users * min(weights) / max(1, sum(weights)) >= SRM_MIN_EXPECTED:
        srm = srm_check([base.users, cand.users], weights, spec.ab.srm_p_value)
        stats["srm"] = srm.as_dict()
        if srm.mismatch:
            return Analysis(
                time=now, outcome=Outcome.FAILED, invalid=True, statistics=stats,
                reason=(f"sample ratio mismatch: users {base.users}/{cand.users} for declared "
                        f"{weights[0]}/{weights[1]} (chi2 {srm.chi2:.1f}, p {srm.p_value:.2g})"))
    checks = _Checks()
    if cand.requests >= spec.analysis.min_requests:
        _guardrails(spec, checks, cand, base, with_ctr=False)
        if checks.failed:
            return checks.result(now, "", stats)
    need = spec.ab.min_samples_per_variant
    if min(base.exposures, cand.exposures) < need:
        return Analysis(time=now, outcome=Outcome.INCONCLUSIVE, statistics=stats,
                        reason=f"exposures {base.exposures}/{cand.exposures}, need {need} each")
    # Users, not lists, are the unit: a user who comes back sees several lists and clicks
    # alike on all of them, so the variance is the per-user (clustered) one.
    var_b, var_c = _user_variance(base), _user_variance(cand)
    test = msprt_two_proportions(base.clicked_exposures, base.exposures,
                                 cand.clicked_exposures, cand.exposures, alpha=spec.ab.alpha,
                                 variance_a=var_b, variance_b=var_c)
    stats["msprt"] = test.as_dict()
    stats["msprt"]["unit"] = "list" if var_b is None or var_c is None else "user"
    summary = (f"CTR {_fmt(test.rate_b)} vs {_fmt(test.rate_a)}, difference "
               f"{test.difference:+.4f} in [{test.ci_low:+.4f}, {test.ci_high:+.4f}], "
               f"always-valid p {test.p_value:.3g}")
    if test.winner == "b":
        return Analysis(time=now, outcome=Outcome.SUCCESSFUL, conclusive=True, statistics=stats,
                        reason=f"candidate wins the A/B test: {summary}")
    if test.winner == "a":
        return Analysis(time=now, outcome=Outcome.FAILED, conclusive=True, statistics=stats,
                        reason=f"candidate loses the A/B test: {summary}")
    return Analysis(time=now, outcome=Outcome.INCONCLUSIVE, statistics=stats,
                    reason=f"no decision yet: {summary}")


def _interleave(spec: RolloutSpec, window: WindowStats, now: datetime) -> Analysis:
    cand, base = window.variant("candidate"), window.variant("baseline")
    il = window.interleave
    stats: dict[str, Any] = {"baseline": _variant_stats(base), "candidate": _variant_stats(cand),
                             "interleave": il.model_dump()}
    checks = _Checks()
    if cand.requests >= spec.analysis.min_requests:
        _guardrails(spec, checks, cand, base, with_ctr=False)
        if checks.failed:
            return checks.result(now, "", stats)
    decided = il.baseline_wins + il.candidate_wins
    if decided < spec.interleave.min_decisions:
        return Analysis(time=now, outcome=Outcome.INCONCLUSIVE, statistics=stats,
                        reason=f"{decided}/{spec.interleave.min_decisions} decided impressions")
    test = sequential_sign_test(il.candidate_wins, il.baseline_wins, spec.interleave.alpha)
    stats["signTest"] = test.as_dict()
    stats["fixedHorizonSignTestP"] = sign_test(il.candidate_wins, il.baseline_wins).p_value
    summary = (f"candidate won {il.candidate_wins}, baseline {il.baseline_wins} "
               f"(share {test.share_b:.3f}, always-valid p {test.p_value:.3g})")
    if test.winner == "b":
        return Analysis(time=now, outcome=Outcome.SUCCESSFUL, conclusive=True, statistics=stats,
                        reason=f"candidate wins interleaving: {summary}")
    if test.winner == "a":
        return Analysis(time=now, outcome=Outcome.FAILED, conclusive=True, statistics=stats,
                        reason=f"candidate loses interleaving: {summary}")
    return Analysis(time=now, outcome=Outcome.INCONCLUSIVE, statistics=stats,
                    reason=f"no decision yet: {summary}")


def evaluate(spec: RolloutSpec, status: RolloutStatus, window: WindowStats, now: datetime,
             command: Command | None = None) -> Analysis:
    """The analysis of one tick for the rollout's current stage."""
    if status.phase in (Phase.PENDING, Phase.PROMOTING) or status.phase.terminal:
        result = Analysis(time=now, outcome=Outcome.SUCCESSFUL, reason="no analysis in this phase")
    elif status.phase == Phase.SHADOWING:
        result = _shadow(spec, window, now)
    else:
        strategy = active_strategy(spec, status)
        if strategy == "ab":
            result = _ab(spec, status, window, now)
        elif strategy == "interleave":
            result = _interleave(spec, window, now)
        else:  # canary, or "promote" after a shadow (nothing left to analyse)
            result = _canary(spec, window, now)
    result.statistics.setdefault("window", {"since": window.since, "until": window.until})
    result.command = command
    return result
