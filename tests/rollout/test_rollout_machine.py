"""The rollout state machine: every phase, outcome and command, and restart invariance."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from serving.rollout.analysis import Analysis
from serving.rollout.machine import awaiting_promotion, desired_routing, next_status
from serving.rollout.spec import RolloutSpec
from serving.rollout.status import START_REASON, Outcome, Phase, RolloutStatus

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
OK, FAIL, WAIT = Outcome.SUCCESSFUL, Outcome.FAILED, Outcome.INCONCLUSIVE


def make_spec(strategy: str = "canary", **kw: Any) -> RolloutSpec:
    body: dict[str, Any] = {"candidate": {"version": "2"}, "baseline": {"version": "1"},
                            "strategy": strategy, "intervalSeconds": 1}
    body.update(kw)
    return RolloutSpec.model_validate(body)


def an(outcome: Outcome = OK, t: float = 0.0, **kw: Any) -> Analysis:
    return Analysis(time=T0 + timedelta(seconds=t), outcome=outcome, reason=str(outcome.value),
                    **kw)


def start(spec: RolloutSpec, t: float = 0.0) -> RolloutStatus:
    return next_status(spec, RolloutStatus(), Analysis(
        time=T0 + timedelta(seconds=t), outcome=OK,
        statistics={"baselineVersion": "1", "candidateVersion": "2",
                    "aliasesBefore": {"production": "1", "candidate": None}}))


# --- start ------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy, phase, weights", [
    ("shadow", Phase.SHADOWING, (100, 0)),
    ("canary", Phase.PROGRESSING, (90, 10)),
    ("ab", Phase.PROGRESSING, (50, 50)),
    ("interleave", Phase.PROGRESSING, (50, 50)),
])
def test_start_enters_the_first_stage(strategy: str, phase: Phase, weights: tuple) -> None:
    s = start(make_spec(strategy))
    assert s.phase == phase
    assert (s.weights.baseline, s.weights.candidate) == weights
    assert s.decisions[0].reason.startswith(START_REASON) and s.started_at == T0
    assert (s.baseline_version, s.candidate_version) == ("1", "2")
    assert s.aliases_before == {"production": "1", "candidate": None}


def test_start_without_resolved_versions_fails() -> None:
    s = next_status(make_spec(), RolloutStatus(), an(OK, statistics={"baselineVersion": "1"}))
    assert s.phase == Phase.FAILED and "candidateVersion" in s.message


# --- canary -------------------------------------------------------------------------------------
def test_canary_walks_its_steps_pauses_and_promotes() -> None:
    spec = make_spec(steps=[{"weight": 5}, {"weight": 25}, {"pause": {"seconds": 10}},
                            {"weight": 50}, {"weight": 100}])
    s = start(spec)
    assert (s.step, s.weights.candidate) == (1, 5)
    s = next_status(spec, s, an(OK, 1))
    assert (s.phase, s.step, s.weights.candidate) == (Phase.PROGRESSING, 2, 25)
    s = next_status(spec, s, an(OK, 2))
    assert (s.phase, s.step, s.weights.candidate) == (Phase.PAUSED, 3, 25)
    assert s.stage_started_at == T0 + timedelta(seconds=2)
    for t in (3, 7, 11.9):
        s = next_status(spec, s, an(OK, t))
        assert s.phase == Phase.PAUSED and s.step == 3
    s = next_status(spec, s, an(OK, 12))
    assert (s.phase, s.step, s.weights.candidate) == (Phase.PROGRESSING, 4, 50)
    s = next_status(spec, s, an(WAIT, 13))
    assert (s.phase, s.step) == (Phase.PROGRESSING, 4)
    s = next_status(spec, s, an(OK, 14))
    assert (s.step, s.weights.candidate) == (5, 100)
    s = next_status(spec, s, an(OK, 15))
    assert s.phase == Phase.PROMOTING and (s.weights.baseline, s.weights.candidate) == (0, 100)
    s = next_status(spec, s, an(WAIT, 16))  # promotion does not wait for analysis
    assert s.phase == Phase.SUCCEEDED and "version 2 is production" in s.message


def test_canary_failed_checks_count_and_roll_back_at_the_limit() -> None:
    spec = make_spec(analysis={"failureLimit": 2})
    s = start(spec)
    s = next_status(spec, s, an(FAIL, 1))
    assert (s.phase, s.failed_checks, s.weights.candidate) == (Phase.PROGRESSING, 1, 10)
    assert "failed check 1/2" in s.message
    s = next_status(spec, s, an(OK, 2))  # failures are counted over the whole rollout
    assert s.step == 2 and s.failed_checks == 1
    s = next_status(spec, s, an(FAIL, 3))
    assert s.phase == Phase.ROLLED_BACK and s.failed_checks == 2
    assert (s.weights.baseline, s.weights.candidate) == (100, 0)
    assert "rolling back" in s.message


def test_failure_limit_one_rolls_back_on_the_first_failure() -> None:
    spec = make_spec(analysis={"failureLimit": 1})
    s = next_status(spec, start(spec), an(FAIL, 1))
    assert s.phase == Phase.ROLLED_BACK


def test_indefinite_pause_waits_for_promote() -> None:
    spec = make_spec(steps=[{"weight": 10}, {"pause": {}}, {"weight": 100}])
    s = next_status(spec, start(spec), an(OK, 1))
    assert s.phase == Phase.PAUSED and not awaiting_promotion(spec, s)
    for t in range(2, 6):
        s = next_status(spec, s, an(OK, t))
        assert s.phase == Phase.PAUSED
    s = next_status(spec, s, an(OK, 6, command="promote"))
    assert s.phase == Phase.PROMOTING


def test_paused_stage_still_counts_failed_checks() -> None:
    spec = make_spec(steps=[{"weight": 10}, {"pause": {}}], analysis={"failureLimit": 1})
    s = next_status(spec, start(spec), an(OK, 1))
    s = next_status(spec, s, an(FAIL, 2))
    assert s.phase == Phase.ROLLED_BACK


def test_without_auto_promote_the_rollout_waits_for_the_release_owner() -> None:
    spec = make_spec(steps=[{"weight": 50}], autoPromote=False)
    s = next_status(spec, start(spec), an(OK, 1))
    assert s.phase == Phase.PAUSED and awaiting_promotion(spec, s)
    s = next_status(spec, s, an(OK, 2))
    assert s.phase == Phase.PAUSED
    s = next_status(spec, s, an(OK, 3, command="promote"))
    assert s.phase == Phase.PROMOTING
    s = next_status(spec, s, an(OK, 4))
    assert s.phase == Phase.SUCCEEDED


def test_inconclusive_ticks_fold_into_one_decision() -> None:
    spec = make_spec()
    s = start(spec)
    for t in range(1, 6):
        s = next_status(spec, s, an(WAIT, t))
    assert len(s.decisions) == 2
    assert s.decisions[-1].statistics["repeats"] == 5
    assert s.decisions[-1].time == T0 + timedelta(seconds=5)
    assert s.stage_started_at == T0


# --- A/B, interleaving, shadow -----------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["ab", "interleave"])
def test_tests_end_on_a_conclusive_result(strategy: str) -> None:
    spec = make_spec(strategy, analysis={"failureLimit": 3})
    s = start(spec)
    s = next_status(spec, s, an(WAIT, 1))
    s = next_status(spec, s, an(OK, 2))  # guardrails fine but the test has not decided
    assert s.phase == Phase.PROGRESSING
    won = next_status(spec, s, an(OK, 3, conclusive=True))
    assert won.phase == Phase.PROMOTING
    lost = next_status(spec, s, an(FAIL, 3, conclusive=True))
    assert lost.phase == Phase.ROLLED_BACK and lost.failed_checks == 0
    guard = next_status(spec, s, an(FAIL, 3))
    assert guard.phase == Phase.PROGRESSING and guard.failed_checks == 1


def test_sample_ratio_mismatch_fails_the_experiment() -> None:
    spec = make_spec("ab")
    s = next_status(spec, start(spec), an(FAIL, 1, invalid=True))
    assert s.phase == Phase.FAILED and s.message.startswith("experiment aborted")
    assert (s.weights.baseline, s.weights.candidate) == (100, 0)


@pytest.mark.parametrize("promote_to, phase, candidate_weight", [
    ("canary", Phase.PROGRESSING, 10), ("ab", Phase.PROGRESSING, 50),
    ("interleave", Phase.PROGRESSING, 50), ("promote", Phase.PROMOTING, 100),
])
def test_clean_shadow_hands_over(promote_to: str, phase: Phase, candidate_weight: int) -> None:
    spec = make_spec("shadow", shadow={"promoteTo": promote_to})
    s = start(spec)
    s = next_status(spec, s, an(WAIT, 1))
    assert s.phase == Phase.SHADOWING
    s = next_status(spec, s, an(OK, 2))
    assert s.phase == phase and s.weights.candidate == candidate_weight
    routing = desired_routing(spec, s, "r")
    assert routing is not None
    if promote_to != "promote":
        assert routing.strategy == promote_to


def test_shadow_failures_roll_back() -> None:
    spec = make_spec("shadow", analysis={"failureLimit": 2})
    s = start(spec)
    s = next_status(spec, next_status(spec, s, an(FAIL, 1)), an(FAIL, 2))
    assert s.phase == Phase.ROLLED_BACK


# --- commands, limits, terminal phases ---------------------------------------------------------
def test_abort_and_limits() -> None:
    spec = make_spec(limits={"maxDurationSeconds": 60})
    s = start(spec)
    aborted = next_status(spec, s, an(OK, 1, command="abort"))
    assert aborted.phase == Phase.ROLLED_BACK and aborted.message == "aborted by user"
    late = next_status(spec, s, an(WAIT, 61))
    assert late.phase == Phase.FAILED and "maxDurationSeconds" in late.message


def test_terminal_phases_never_change() -> None:
    spec = make_spec()
    for phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED):
        s = RolloutStatus(phase=phase)
        for outcome, cmd in itertools.product(Outcome, [None, "promote", "abort"]):
            assert next_status(spec, s, an(outcome, 1, command=cmd)) is s


ALL_SPECS = [
    make_spec("canary", steps=[{"weight": 5}, {"pause": {"seconds": 2}}, {"weight": 50}, {"pause": {}},
                               {"weight": 100}]),
    make_spec("canary", autoPromote=False),
    make_spec("ab"), make_spec("interleave", autoPromote=False),
    make_spec("shadow", shadow={"promoteTo": "canary"}),
    make_spec("shadow", shadow={"promoteTo": "ab"}),
]


def _random_analysis(rng: random.Random, t: float) -> Analysis:
    outcome = rng.choice(list(Outcome))
    return an(outcome, t, conclusive=rng.random() < 0.15, invalid=rng.random() < 0.03,
              command=rng.choices([None, "promote", "abort"], [0.94, 0.03, 0.03])[0])


def _check_invariants(spec: RolloutSpec, before: RolloutStatus, after: RolloutStatus) -> None:
    assert after.weights.baseline + after.weights.candidate == 100
    if after.phase in (Phase.ROLLED_BACK, Phase.FAILED):
        assert after.weights.candidate == 0
    if after.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        assert after.weights.candidate == 100
    if before.phase.terminal:
        assert after == before
    else:
        assert len(after.decisions) >= len(before.decisions)
        assert after.failed_checks in (before.failed_checks, before.failed_checks + 1)
    if after.phase == Phase.SUCCEEDED:
        assert before.phase in (Phase.PROMOTING, Phase.SUCCEEDED)
    if spec.strategy == "canary" and after.phase in (Phase.PROGRESSING, Phase.PAUSED):
        assert 1 <= after.step <= len(spec.steps)
    routing = desired_routing(spec, after, "r")
    assert routing is not None and routing.salt == "r"


def test_every_transition_keeps_the_invariants() -> None:
    rng = random.Random(1234)
    seen: set[tuple[str, str]] = set()
    for spec in ALL_SPECS:
        for _ in range(60):
            s = start(spec)
            for tick in range(1, 40):
                a = _random_analysis(rng, tick)
                before = s.model_copy(deep=True)
                s2 = next_status(spec, s, a)
                assert s == before  # the input is never mutated
                _check_invariants(spec, before, s2)
                seen.add((before.phase.value, s2.phase.value))
                s = s2
    # Every non-terminal phase was left in each allowed direction at least once.
    for phase in ("Shadowing", "Progressing", "Paused"):
        assert (phase, "RolledBack") in seen
    assert ("Promoting", "Succeeded") in seen and ("Progressing", "Failed") in seen
    assert ("Shadowing", "Progressing") in seen and ("Paused", "Progressing") in seen


def test_a_restart_between_any_two_ticks_changes_nothing() -> None:
    """Persisting and reloading the status (what a restarted controller does) is invisible."""
    rng = random.Random(99)
    for spec in ALL_SPECS:
        for _ in range(40):
            analyses = [_random_analysis(rng, t) for t in range(1, 30)]
            a, b = start(spec), start(spec)
            for x in analyses:
                a = next_status(spec, a, x)
                b = next_status(spec, RolloutStatus.from_dict(b.to_dict()), x)
            assert a.to_dict() == b.to_dict()


def test_desired_routing_follows_the_phase() -> None:
    spec = make_spec(stickinessSalt="salty")
    assert desired_routing(spec, RolloutStatus(), "r") is None
    s = start(spec)
    r = desired_routing(spec, s, "r")
    assert r is not None and (r.strategy, r.candidate_weight, r.salt) == ("canary", 10, "salty")
    back = next_status(spec, s, an(OK, 1, command="abort"))
    r = desired_routing(spec, back, "r")
    assert r is not None and r.strategy == "single" and r.baseline.version == "1"
    won = RolloutStatus.from_dict({**s.to_dict(), "phase": "Succeeded"})
    r = desired_routing(spec, won, "r")
    assert r is not None and r.strategy == "single" and r.baseline.version == "2"


def test_status_round_trips_with_contract_field_names() -> None:
    s = next_status(make_spec(), start(make_spec()), an(FAIL, 1))
    d = s.to_dict()
    assert set(d) == {"phase", "step", "weights", "failedChecks", "decisions", "message",
                      "routingError"}
    assert set(d["decisions"][0]) == {"time", "phase", "step", "outcome", "reason", "statistics"}
    assert d["phase"] == "Progressing" and d["decisions"][-1]["outcome"] == "Failed"
    assert RolloutStatus.from_dict(d) == s


# --- timing: a promote before the start, a pause without analysis --------------------------------
def test_promote_before_the_start_is_refused_in_the_status_not_dropped() -> None:
    spec = make_spec(steps=[{"weight": 10}, {"weight": 100}])
    s = next_status(spec, RolloutStatus(), Analysis(
        time=T0, outcome=OK, command="promote",
        statistics={"baselineVersion": "1", "candidateVersion": "2"}))
    assert (s.phase, s.step, s.weights.candidate) == (Phase.PROGRESSING, 1, 10)
    assert s.started is not None and s.candidate_version == "2"
    assert "promote refused" in s.message and "before the rollout started" in s.message
    assert "promote refused" in s.decisions[0].reason


def test_a_timed_pause_ends_only_on_a_passing_analysis() -> None:
    """Analysis that could not be obtained (the router down: Inconclusive) does not count as
    a passing interval: the pause ends at the first Successful analysis after its time."""
    spec = make_spec(steps=[{"weight": 10}, {"pause": {"seconds": 10}}, {"weight": 50}],
                     analysis={"failureLimit": 2})
    s = next_status(spec, start(spec), an(OK, 1))
    assert (s.phase, s.step) == (Phase.PAUSED, 2)
    for t in (5, 11, 30):
        s = next_status(spec, s, an(WAIT, t))
        assert (s.phase, s.step, s.weights.candidate) == (Phase.PAUSED, 2, 10), s.message
        assert s.failed_checks == 0  # not a failed check either: nothing was measured
    assert "pause of 10s over" in s.message and "no passing analysis" in s.message
    s = next_status(spec, s, an(OK, 31))
    assert (s.phase, s.step, s.weights.candidate) == (Phase.PROGRESSING, 3, 50)
    assert "pause of 10s over" in s.message
