"""The rollout state machine: one pure ``next_status(spec, status, analysis)`` per tick.

No I/O and no clock: the analysis carries the time, the controller applies the effects
(router weights, registry aliases) that the returned status asks for. The transitions::

    Pending ──start──► Shadowing ──clean──► Progressing (promoteTo) ─┐
       │                   │                                         │
       └───────────────────┼──► Progressing ⇄ Paused (canary steps, ─┤
                           │      or an A/B / interleaving test)     │
                           │                                         ▼
                           │        failed checks ≥ failureLimit   Promoting ──► Succeeded
                           │        or the test says it loses        (autoPromote, or
                           ▼        or `abort`                        `marquee rollout promote`)
                      RolledBack ◄──────────────────────────────────┘
                      Failed       sample-ratio mismatch, or no decision within maxDurationSeconds

Analysis outcomes (Successful / Failed / Inconclusive) advance a step, count a failed check,
or wait. Conclusive test results (A/B, interleaving) and invalid experiments (SRM) end the
stage at once; plain failed checks roll back when they reach ``analysis.failureLimit``.

Timing rules:

* a timed pause ends at the first *Successful* analysis once its time is up: an Inconclusive
  one (too little traffic, or no metrics at all because the router or Prometheus was down)
  is not a passing interval, so the pause waits (bounded by ``limits.maxDurationSeconds``);
* ``promote`` before the rollout started (Pending) is refused, said in the start decision:
  nothing is resolved or analysed yet, so there is nothing to vouch for the candidate
  (``abort`` is honoured in every phase).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from serving.router.schema import RoutingConfig, Upstream
from serving.rollout.analysis import Analysis, active_strategy
from serving.rollout.spec import RolloutSpec
from serving.rollout.status import (
    START_REASON,
    Decision,
    Outcome,
    Phase,
    RolloutStatus,
    Weights,
)

__all__ = ["next_status", "ended", "desired_routing", "awaiting_promotion", "current_step"]

_ALL_BASELINE = Weights(baseline=100, candidate=0)
_ALL_CANDIDATE = Weights(baseline=0, candidate=100)


def current_step(spec: RolloutSpec, status: RolloutStatus):  # -> CanaryStep | None
    if active_strategy(spec, status) != "canary" or not 1 <= status.step <= len(spec.steps):
        return None
    return spec.steps[status.step - 1]


def awaiting_promotion(spec: RolloutSpec, status: RolloutStatus) -> bool:
    """Paused because the candidate passed and ``autoPromote`` is off."""
    if status.phase != Phase.PAUSED:
        return False
    step = current_step(spec, status)
    return step is None or step.pause is None


def _repeats(value: Any) -> int:
    """How many "not yet" decisions a folded one stands for. The status may have been edited
    by hand (``"repeats": "many"``, a list, NaN): counted as one then, not an exception that
    failed every tick and stopped the rollout where it stood (maxDurationSeconds and abort
    included)."""
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return 1
    return max(n, 1)


def _record(status: RolloutStatus, analysis: Analysis, outcome: Outcome, reason: str,
            extra: dict[str, Any] | None = None) -> RolloutStatus:
    stats = {**analysis.statistics, **(extra or {})}
    decision = Decision(time=analysis.time, phase=status.phase, step=status.step,
                        outcome=outcome, reason=reason, statistics=stats)
    d = status.decisions
    key = (status.phase, status.step)
    if (outcome == Outcome.INCONCLUSIVE and len(d) >= 2 and d[-1].outcome == Outcome.INCONCLUSIVE
            and (d[-1].phase, d[-1].step) == key and (d[-2].phase, d[-2].step) == key):
        # Repeated "not yet" decisions in one stage are folded into one (count kept).
        decision.statistics["repeats"] = _repeats(d[-1].statistics.get("repeats", 1)) + 1
        d[-1] = decision
    else:
        d.append(decision)
    status.message = reason
    return status


def _enter(status: RolloutStatus, analysis: Analysis, phase: Phase, step: int, weights: Weights,
           outcome: Outcome, reason: str, extra: dict[str, Any] | None = None) -> RolloutStatus:
    status.phase, status.step, status.weights = phase, step, weights
    return _record(status, analysis, outcome, reason, extra)


def _enter_step(spec: RolloutSpec, status: RolloutStatus, analysis: Analysis, index: int,
                reason: str, extra: dict[str, Any] | None = None) -> RolloutStatus:
    """Enter canary step ``index`` (1-based), or get ready to promote past the last one."""
    if index > len(spec.steps):
        return _ready(spec, status, analysis, f"{reason}; all {len(spec.steps)} steps passed",
                      extra)
    step = spec.steps[index - 1]
    if step.pause is not None:
        how = (f"{step.pause.seconds:g}s" if step.pause.seconds is not None
               else "until `marquee rollout promote`")
        return _enter(status, analysis, Phase.PAUSED, index, status.weights, Outcome.SUCCESSFUL,
                      f"{reason}; step {index}: pause {how}", extra)
    w = int(step.weight or 0)
    return _enter(status, analysis, Phase.PROGRESSING, index,
                  Weights(baseline=100 - w, candidate=w), Outcome.SUCCESSFUL,
                  f"{reason}; step {index}: candidate weight {w}%", extra)


def _enter_strategy(spec: RolloutSpec, status: RolloutStatus, analysis: Analysis, strategy: str,
                    reason: str, extra: dict[str, Any] | None = None) -> RolloutStatus:
    if strategy == "shadow":
        return _enter(status, analysis, Phase.SHADOWING, 0, _ALL_BASELINE, Outcome.SUCCESSFUL,
                      f"{reason}; shadowing {spec.shadow.sample_rate:.0%} of requests", extra)
    if strategy == "canary":
        return _enter_step(spec, status, analysis, 1, reason, extra)
    if strategy == "ab":
        w = spec.ab.candidate_weight
        return _enter(status, analysis, Phase.PROGRESSING, 1, Weights(baseline=100 - w, candidate=w),
                      Outcome.SUCCESSFUL, f"{reason}; A/B test {100 - w}/{w}", extra)
    if strategy == "interleave":
        return _enter(status, analysis, Phase.PROGRESSING, 1, Weights(baseline=50, candidate=50),
                      Outcome.SUCCESSFUL, f"{reason}; team-draft interleaving", extra)
    return _ready(spec, status, analysis, reason, extra)  # "promote" after a clean shadow


def _ready(spec: RolloutSpec, status: RolloutStatus, analysis: Analysis, reason: str,
           extra: dict[str, Any] | None = None) -> RolloutStatus:
    if spec.auto_promote:
        return _enter(status, analysis, Phase.PROMOTING, status.step, _ALL_CANDIDATE,
                      Outcome.SUCCESSFUL, f"{reason}; promoting", extra)
    return _enter(status, analysis, Phase.PAUSED, status.step, status.weights, Outcome.SUCCESSFUL,
                  f"{reason}; awaiting `marquee rollout promote`", extra)


def _end(status: RolloutStatus, analysis: Analysis, phase: Phase, outcome: Outcome,
         reason: str) -> RolloutStatus:
    return _enter(status, analysis, phase, status.step, _ALL_BASELINE, outcome, reason)


def ended(status: RolloutStatus, phase: Phase, reason: str, time: datetime) -> RolloutStatus:
    """``status`` ended in ``phase`` without a tick (the manager, when the spec no longer
    parses): all traffic on the baseline, one failed decision saying why. Never mutates it."""
    return _end(status.model_copy(deep=True), Analysis(time=time), phase, Outcome.FAILED, reason)


def next_status(spec: RolloutSpec, status: RolloutStatus, analysis: Analysis) -> RolloutStatus:
    """The status after one tick. Never mutates its arguments; terminal phases stay put."""
    if status.phase.terminal:
        return status
    s = status.model_copy(deep=True)
    now = analysis.time

    if analysis.command == "abort":  # in Promoting too: the controller then restores the
        # aliases instead of moving them (a crash may have moved them already)
        return _end(s, analysis, Phase.ROLLED_BACK, Outcome.FAILED, "aborted by user")

    if s.phase == Phase.PENDING:
        for key in ("baselineVersion", "candidateVersion"):
            if not analysis.statistics.get(key):
                return _end(s, analysis, Phase.FAILED, Outcome.FAILED,
                            f"cannot start: {key} unresolved ({analysis.reason or 'no reason'})")
        if analysis.outcome == Outcome.FAILED:  # resolved, but it may not start (another
            # rollout of the model runs): said as it is, nothing routed or moved
            return _end(s, analysis, Phase.FAILED, Outcome.FAILED,
                        f"cannot start: {analysis.reason}")
        reason = START_REASON
        if analysis.command == "promote":
            reason += (" (promote refused: it was issued before the rollout started, with "
                       "nothing analysed yet; promote again once it runs)")
        return _enter_strategy(spec, s, analysis, spec.strategy, reason)

    if s.phase == Phase.PROMOTING:  # the controller has moved the aliases before this tick
        return _enter(s, analysis, Phase.SUCCEEDED, s.step, _ALL_CANDIDATE, Outcome.SUCCESSFUL,
                      f"promoted: version {s.candidate_version} is production, "
                      f"{s.baseline_version} is previous")

    started = s.started_at
    if started is not None and (now - started).total_seconds() > spec.limits.max_duration_seconds:
        return _end(s, analysis, Phase.FAILED, Outcome.INCONCLUSIVE,
                    f"no decision within maxDurationSeconds={spec.limits.max_duration_seconds:g}")

    if analysis.command == "promote":
        return _enter(s, analysis, Phase.PROMOTING, s.step, _ALL_CANDIDATE, Outcome.SUCCESSFUL,
                      "promoted by user")

    if analysis.outcome == Outcome.FAILED:
        if analysis.invalid:
            return _end(s, analysis, Phase.FAILED, Outcome.FAILED,
                        f"experiment aborted: {analysis.reason}")
        if analysis.conclusive:
            return _end(s, analysis, Phase.ROLLED_BACK, Outcome.FAILED, analysis.reason)
        s.failed_checks += 1
        limit = spec.analysis.failure_limit
        reason = f"{analysis.reason} (failed check {s.failed_checks}/{limit})"
        if s.failed_checks >= limit:
            return _end(s, analysis, Phase.ROLLED_BACK, Outcome.FAILED,
                        f"{reason}; rolling back")
        return _record(s, analysis, Outcome.FAILED, reason)

    if s.phase == Phase.PAUSED:
        if awaiting_promotion(spec, s):
            return _record(s, analysis, Outcome.INCONCLUSIVE,
                           "awaiting `marquee rollout promote`")
        pause = spec.steps[s.step - 1].pause
        assert pause is not None
        if pause.seconds is None:
            return _record(s, analysis, Outcome.INCONCLUSIVE,
                           "paused until `marquee rollout promote`")
        since = s.stage_started_at or now
        elapsed = (now - since).total_seconds()
        waiting = f" ({analysis.reason})" if analysis.outcome == Outcome.INCONCLUSIVE \
            and analysis.reason else ""
        if elapsed < pause.seconds:
            return _record(s, analysis, Outcome.INCONCLUSIVE,
                           f"paused, {pause.seconds - elapsed:.0f}s left{waiting}")
        if analysis.outcome != Outcome.SUCCESSFUL:  # no analysis is not a passing interval
            return _record(s, analysis, Outcome.INCONCLUSIVE,
                           f"pause of {pause.seconds:g}s over, but no passing analysis "
                           f"yet{waiting}")
        return _enter_step(spec, s, analysis, s.step + 1, f"pause of {pause.seconds:g}s over")

    if analysis.outcome == Outcome.INCONCLUSIVE:
        return _record(s, analysis, Outcome.INCONCLUSIVE, analysis.reason)

    # Successful.
    if s.phase == Phase.SHADOWING:
        return _enter_strategy(spec, s, analysis, spec.shadow.promote_to, analysis.reason)
    strategy = active_strategy(spec, s)
    if strategy in ("ab", "interleave"):
        if analysis.conclusive:
            return _ready(spec, s, analysis, analysis.reason)
        return _record(s, analysis, Outcome.INCONCLUSIVE, analysis.reason)
    return _enter_step(spec, s, analysis, s.step + 1, analysis.reason)


def desired_routing(spec: RolloutSpec, status: RolloutStatus, name: str) -> RoutingConfig | None:
    """The router configuration the status asks for (None before versions are known). It
    names the rollout and its run (``status.run_id``): the router's epoch, which its stats and
    feedback are kept by, is then this run's own, also when an earlier run of the same name
    had the same spec."""
    base, cand = status.baseline_version, status.candidate_version
    if base is None or cand is None:
        return None
    named: dict[str, Any] = {"salt": spec.salt(name), "rollout": name, "run": status.run_id}
    if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        return RoutingConfig(strategy="single", baseline=Upstream(version=cand), **named)
    if status.phase in (Phase.PENDING, Phase.ROLLED_BACK, Phase.FAILED):
        return RoutingConfig(strategy="single", baseline=Upstream(version=base), **named)
    common: dict[str, Any] = {"baseline": Upstream(version=base),
                              "candidate": Upstream(version=cand), **named}
    if status.phase == Phase.SHADOWING:
        return RoutingConfig(strategy="shadow", shadow_sample_rate=spec.shadow.sample_rate,
                             **common)
    strategy = active_strategy(spec, status)
    if strategy == "interleave":
        return RoutingConfig(strategy="interleave", candidate_weight=50, **common)
    if strategy == "ab":
        return RoutingConfig(strategy="ab", candidate_weight=status.weights.candidate, **common)
    return RoutingConfig(strategy="canary", candidate_weight=status.weights.candidate, **common)
