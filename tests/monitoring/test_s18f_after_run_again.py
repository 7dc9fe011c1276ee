"""A succeeded run's after-run step (its rollout) when the trigger died before logging its
decision (helper F, session 18): what a restarted trigger does with the mark the dead one left,
and that the Kubernetes step keeps the ModelRollout a dead trigger had already created.

The trigger, its state store and a command launcher are real; the after-run step of the first
tests is a recording callable (the ``after_run`` interface), of the last the real
``ClusterAutoRollout`` against ``tests.rollout.fake_kube.FakeKubeAPI`` (FAKE: no kube-apiserver
on this machine) with a thread of the test playing KServe.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from monitoring.retrain.cluster import ClusterAutoRollout
from monitoring.retrain.launcher import CommandLauncher
from monitoring.retrain.models import (
    AfterRunMark,
    Decision,
    DecisionKind,
    RunRecord,
    RunStatus,
)
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger
from tests.monitoring.test_retrain_cluster import (
    MODEL,
    NS,
    chart_template,
    custom_api,
    kube,  # noqa: F401 - fixture
    play_kserve,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class Step:
    """The after-run interface, recording each call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, run: RunRecord) -> Decision:
        self.calls.append(run.run_id)
        return Decision(time=NOW, decision=DecisionKind.ROLLOUT_STARTED, source="auto-rollout",
                        model=run.model, run_id=run.run_id, detail="shadow rollout started")


def _succeeded(store: StateStore, mark: AfterRunMark | None) -> RunRecord:
    run = RunRecord(run_id="rt-20260102T030405Z-abcdef", model=MODEL, reason="drift",
                    source="webhook", requested_at=NOW, status=RunStatus.SUCCEEDED,
                    finished_at=NOW, model_version="7", gate_decision="candidate",
                    after_run=mark)
    store.save_run(run)
    return run


def _dead_mark(**kw: object) -> AfterRunMark:
    """The mark of a trigger in a pod that was replaced (another host name)."""
    return AfterRunMark(**{"pid": 1, "host": "marquee-trigger-5d8f-old", "owner": "f" * 32,
                           "since": NOW, **kw})


def _start(store: StateStore, step: Step | None) -> RetrainTrigger:
    trig = RetrainTrigger(store, CommandLauncher(["true"]), default_model=MODEL,
                          after_run=step).start()
    assert trig.wait_idle(60)
    trig.close()
    return trig


def test_a_dead_triggers_step_is_run_again_and_says_so(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "retrain")
    run = _succeeded(store, _dead_mark())
    step = Step()
    _start(store, step)
    assert step.calls == [run.run_id]
    [decision] = store.decisions()
    assert decision.decision is DecisionKind.ROLLOUT_STARTED and decision.run_id == run.run_id
    assert "after a restart" in decision.detail and "marquee-trigger-5d8f-old" in \
        decision.detail, decision.detail
    assert store.load_run(run.run_id).after_run is None
    _start(store, step)  # decided: not again
    assert step.calls == [run.run_id] and len(store.decisions()) == 1


def test_a_step_whose_decision_was_logged_is_not_run_twice(tmp_path: Path) -> None:
    """The trigger died after logging the decision, before clearing the mark."""
    store = StateStore(tmp_path / "retrain")
    run = _succeeded(store, _dead_mark())
    store.append_decisions([Decision(time=NOW, decision=DecisionKind.ROLLOUT_STARTED,
                                     source="auto-rollout", model=MODEL, run_id=run.run_id,
                                     detail="shadow rollout started")])
    step = Step()
    _start(store, step)
    assert step.calls == [] and len(store.decisions()) == 1
    assert store.load_run(run.run_id).after_run is None


@pytest.mark.parametrize("case", ["owner-alive", "no-step-here"])
def test_a_step_that_is_not_this_processs_to_redo_is_left(tmp_path: Path, case: str) -> None:
    """A live trigger on this host still runs it; a process without an after-run step
    (``marquee retrain --local``) cannot run it."""
    store = StateStore(tmp_path / "retrain")
    mark = (_dead_mark(pid=os.getppid(), host=socket.gethostname()) if case == "owner-alive"
            else _dead_mark())
    run = _succeeded(store, mark)
    step = Step()
    _start(store, step if case == "owner-alive" else None)
    assert step.calls == [] and store.decisions() == []
    assert store.load_run(run.run_id).after_run == mark


def test_the_cluster_step_run_again_keeps_the_model_rollout_it_had_created(
        tmp_path: Path, kube) -> None:  # noqa: ANN001, F811
    """Before: the second call (the step run again after the trigger died once the
    ModelRollout existed) ended rollout-failed, "a ModelRollout named ... already exists",
    while that rollout, the step's own, was running."""
    stop = threading.Event()
    play_kserve(kube, "marquee-v7", 0.0, stop, [])
    step = ClusterAutoRollout(api=custom_api(kube), namespace=NS, model_name=MODEL,
                              template=chart_template(), server_ready_timeout=30,
                              poll_seconds=0.02, spec_overrides={"intervalSeconds": 30})
    run = _succeeded(StateStore(tmp_path / "retrain"), None)
    try:
        first = step(run)
        assert first.decision is DecisionKind.ROLLOUT_STARTED, first.detail
        again = step(run.model_copy(update={"rollout": None}))
        assert again.decision is DecisionKind.ROLLOUT_STARTED, again.detail
        assert "retrain-shadow-v7" in again.detail and "kept" in again.detail, again.detail
        # one that differs is not taken for the step's own
        other = ClusterAutoRollout(api=custom_api(kube), namespace=NS, model_name=MODEL,
                                   template=chart_template(), server_ready_timeout=30,
                                   poll_seconds=0.02, spec_overrides={"intervalSeconds": 60})
        refused = other(run)
        assert refused.decision is DecisionKind.ROLLOUT_FAILED
        assert "already exists" in refused.detail and "different spec" in refused.detail
    finally:
        stop.set()
    assert len([k for k in kube.objects if k[0] == "modelrollouts"]) == 1
